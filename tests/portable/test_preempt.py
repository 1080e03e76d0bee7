"""Exact-timing sheets of preemption (NTCIP 1202 preempt table).

Site: the standard 8-phase site with start-up phases 4+8 (green at 4.0 s
after the all-red), phase 4's walk 12 s, no recall on 2 and 6, so phase 4
rests in walk from 4.0 s when its button is pressed then. Preempt 1
(emergency): dwell 2+6, entry min green 5 s, min walk 5 s, entry pedestrian
clearance 8 s, entry red clearance 2.0 s, min dwell 10 s, exit to 4+8.
Preempt 2 (railroad): track clearance on 4+8 for 15 s, dwell 2+5, entry min
green 0 (the site floor, 4 s).
"""

from edge_agent import events as ev
from edge_agent.agent import Agent, Inputs, MODE_PREEMPT, MODE_RUN
from edge_agent.intersection import parse_site
from edge_agent.standard import standard_site
from edge_agent.indications import GREEN, YELLOW, RED, WALK, PED_CLEAR, DONT_WALK
from edge_agent.validate import ConfigError

EMERGENCY = {"number": 1, "type": "emergency", "dwell_phases": [2, 6],
             "min_green": 5.0, "min_walk": 5.0, "ped_clear": 8.0,
             "enter_red_clear": 2.0, "min_dwell": 10.0, "exit_phases": [4, 8]}
RAILROAD = {"number": 2, "type": "railroad", "track_phases": [4, 8], "track_green": 15.0,
            "dwell_phases": [2, 5], "min_green": 0.0, "min_dwell": 10.0,
            "exit_phases": [2, 6]}


def site(*preempts, changes=None):
    s = standard_site()
    s["startup"]["phases"] = [4, 8]
    for t in s["fallback_plan"]["phases"]:
        t["recall"] = "none"
        if t["phase"] == 4:
            t["walk"] = 12.0
    changes = changes or {}
    s["preempts"] = [dict(p, **changes.get(p["number"], {})) for p in preempts]
    return s


def _levels(spans, t):
    return {n: any(a <= t < b for a, b in spans[n]) for n in spans} if spans else None


def drive(site_dict, until, preempt=None, peds=None, step=100, warning=None, gate=None):
    """Run to `until` ms; preempt, warning, gate: {number: [(on_ms, off_ms)]} levels of the
    preempt inputs, advance warning inputs and gate down inputs."""
    agent = Agent(parse_site(site_dict))
    preempt = preempt or {}
    peds = peds or {}
    log, frames = [], {}
    t = 0
    while t <= until:
        pd = {ch: True for ch in peds if t in peds[ch]}
        out = agent.step(t, Inputs(preempts=_levels(preempt, t), peds=pd,
                                   advance_warning=_levels(warning, t),
                                   gate_down=_levels(gate, t)))
        log.extend(out.events)
        frames[t] = out
        t += step
    return agent, log, frames


def at(log, code, param):
    return [e[0] for e in log if e[1] == code and e[2] == param]


def test_emergency_call_at_12_3_s_during_phase_4_walk():
    _, log, f = drive(site(EMERGENCY), 60_000, preempt={1: [(12_300, 40_000)]},
                      peds={2: [4_000]})
    assert at(log, ev.PED_BEGIN_WALK, 4) == [4_000]
    assert at(log, ev.PREEMPT_CALL_ON, 1) == [12_300]
    assert at(log, ev.PREEMPT_ENTRY, 1) == [12_300]
    assert at(log, ev.PREEMPT_FORCE_OFF, 1) == [12_300]
    # Walk truncated to the preempt minimum walk: 5 s from 4.0 s is past, so
    # it ends now; the entry pedestrian clearance 8 s (own 14 s) follows.
    assert at(log, ev.PED_BEGIN_CLEAR, 4) == [12_300]
    assert at(log, ev.PED_BEGIN_DONT_WALK, 4) == [20_300]
    # Phase 8 (no walk) is forced off by preemption at once (phase event 20);
    # phase 4 as soon as its clearance is over: yellow 4.0 s, red 2.0 s.
    assert at(log, ev.PHASE_PREEMPT_FORCE_OFF, 8) == [12_300]
    assert at(log, ev.PHASE_PREEMPT_FORCE_OFF, 4) == [20_300]
    assert at(log, ev.PHASE_BEGIN_RED_CLEAR, 4) == [24_300]
    assert at(log, ev.PHASE_END_RED_CLEAR, 4) == [26_300]
    # Dwell on 2+6 from the exact millisecond they turn green.
    assert at(log, ev.PHASE_BEGIN_GREEN, 2) == [26_300]
    assert at(log, ev.PHASE_BEGIN_GREEN, 6) == [26_300]
    assert at(log, ev.PREEMPT_DWELL, 1) == [26_300]
    assert f[26_300].vehicle[2] == GREEN and f[26_300].preempt == (1, "dwell")
    assert f[26_200].preempt == (1, "entry") and f[26_200].mode == MODE_PREEMPT
    # Omits and ped omits while preempted.
    assert at(log, ev.PHASE_OMIT_ON, 4) == [12_300]
    assert at(log, ev.PED_OMIT_ON, 2) == [12_300]
    # Call off at 40.0 s, after the 10 s min dwell: exit to 4+8.
    assert at(log, ev.PREEMPT_CALL_OFF, 1) == [40_000]
    assert at(log, ev.PREEMPT_EXIT, 1) == [40_000]
    assert at(log, ev.PHASE_GAP_OUT, 2) == [40_000]          # no actuation: gapped out long ago
    assert at(log, ev.PHASE_BEGIN_GREEN, 4) == [4_000, 45_500]     # 4.0 yellow + 1.5 red
    assert f[45_400].preempt == (1, "exit")
    assert f[45_500].preempt is None and f[45_500].mode == MODE_RUN
    # The omits lift with the first step after the release.
    assert at(log, ev.PHASE_OMIT_OFF, 1) == [45_600]
    assert at(log, ev.PED_OMIT_OFF, 2) == [40_000]


def test_dwell_lasts_the_min_dwell_when_the_call_is_short():
    _, log, _ = drive(site(EMERGENCY), 60_000, preempt={1: [(12_300, 13_000)]},
                      peds={2: [4_000]})
    assert at(log, ev.PREEMPT_DWELL, 1) == [26_300]
    assert at(log, ev.PREEMPT_EXIT, 1) == [36_300]


def test_non_locking_call_shorter_than_the_delay_starts_nothing():
    s = site(EMERGENCY, changes={1: {"delay": 2.0, "non_locking": True}})
    _, log, _ = drive(s, 30_000, preempt={1: [(12_300, 13_300)]})
    assert at(log, ev.PREEMPT_CALL_ON, 1) == [12_300]
    assert at(log, ev.PREEMPT_ENTRY, 1) == []
    s = site(EMERGENCY, changes={1: {"delay": 2.0}})              # locking memory (default)
    _, log, _ = drive(s, 30_000, preempt={1: [(12_300, 13_300)]})
    assert at(log, ev.PREEMPT_ENTRY, 1) == [14_300]


def test_railroad_call_during_emergency_dwell_takes_over_with_track_clearance():
    _, log, f = drive(site(EMERGENCY, RAILROAD), 120_000,
                      preempt={1: [(12_300, 100_000)], 2: [(30_000, 60_000)]},
                      peds={2: [4_000]})
    assert at(log, ev.PREEMPT_DWELL, 1)[0] == 26_300
    assert at(log, ev.PREEMPT_ENTRY, 2) == [30_000]
    # 2+6 green since 26.3 s: the railroad entry cuts their min green to the
    # site floor 4 s: 30.3 s, then yellow 4.0 s and red 1.5 s.
    assert at(log, ev.PHASE_PREEMPT_FORCE_OFF, 2) == [30_300]
    assert at(log, ev.PREEMPT_TRACK_CLEARANCE, 2) == [35_800]
    assert f[35_800].vehicle[4] == GREEN and f[35_800].vehicle[8] == GREEN
    assert f[35_800].preempt == (2, "track")
    # Track green 15 s, then 4+8 clear and the dwell on 2+5 begins.
    assert at(log, ev.PHASE_PREEMPT_FORCE_OFF, 4) == [20_300, 50_800]
    assert at(log, ev.PREEMPT_DWELL, 2) == [56_300]
    assert f[56_300].vehicle[2] == GREEN and f[56_300].vehicle[5] == GREEN
    # The railroad call ends at 60.0 s; min dwell to 66.3 s; exit to 2+6.
    assert at(log, ev.PREEMPT_EXIT, 2) == [66_300]
    # The emergency call, still on, waited and is served again after the exit.
    entries = at(log, ev.PREEMPT_ENTRY, 1)
    assert entries[0] == 12_300 and len(entries) == 2 and entries[1] > 66_300
    assert f[entries[1] + 100].preempt[0] == 1


def test_advance_warning_and_gate_down_are_logged_when_they_come_on_and_time_nothing():
    calls = {2: [(30_000, 60_000)]}
    _, plain, f0 = drive(site(RAILROAD), 90_000, preempt=calls)
    # Advance warning 5 s before the call; the gates come down 10 s into it, rise, and
    # come down again; inputs of a preempt the site does not have (5) are ignored.
    _, log, f = drive(site(RAILROAD), 90_000, preempt=calls,
                      warning={2: [(25_000, 70_000)], 5: [(1_000, 2_000)]},
                      gate={2: [(40_000, 65_000), (68_000, 69_000)]})
    assert [e for e in log if e[1] in (101, 103)] == [
        (25_000, ev.PREEMPT_ADVANCE_WARNING, 2), (40_000, ev.PREEMPT_GATE_DOWN, 2),
        (68_000, ev.PREEMPT_GATE_DOWN, 2)]
    # Neither input changes the sequence: every indication as without them.
    assert all(f[t].vehicle == f0[t].vehicle and f[t].ped == f0[t].ped for t in f0)
    assert [e for e in log if e[1] not in (101, 103)] == plain


def test_emergency_call_during_railroad_sequence_waits():
    _, log, _ = drive(site(EMERGENCY, RAILROAD), 90_000,
                      preempt={2: [(12_300, 20_000)], 1: [(20_000, 21_000)]})
    rr_exit = at(log, ev.PREEMPT_EXIT, 2)
    assert len(rr_exit) == 1
    assert at(log, ev.PREEMPT_ENTRY, 1) == [rr_exit[0] + 100]


def test_max_presence_ends_a_stuck_input():
    s = site(EMERGENCY, changes={1: {"max_presence": 30.0}})
    _, log, f = drive(s, 80_000, preempt={1: [(12_300, 10**9)]}, peds={2: [4_000]})
    assert at(log, ev.PREEMPT_MAX_PRESENCE, 1) == [42_300]
    assert at(log, ev.PREEMPT_EXIT, 1) == [42_300]
    assert f[79_000].preempt is None


def test_yellow_and_red_clearance_never_shortened_by_an_override():
    # An entry yellow of 3.0 s (the site floor) does not shorten phase 4's 4.0 s.
    s = site(EMERGENCY, changes={1: {"enter_yellow": 3.0, "enter_red_clear": 1.0}})
    _, log, _ = drive(s, 40_000, preempt={1: [(12_300, 40_000)]}, peds={2: [4_000]})
    assert at(log, ev.PHASE_BEGIN_RED_CLEAR, 4) == [24_300]
    assert at(log, ev.PHASE_END_RED_CLEAR, 4) == [25_800]


def test_min_green_truncation_never_below_the_site_floor():
    # Without a ped call phase 4 is in min green (10 s from 4.0 s) at 5.0 s: a
    # preempt min green of 0 s cuts it to the site floor, 4 s: 8.0 s.
    s = site(EMERGENCY, changes={1: {"min_green": 0.0}})
    _, log, _ = drive(s, 30_000, preempt={1: [(5_000, 30_000)]})
    assert at(log, ev.PHASE_PREEMPT_FORCE_OFF, 4) == [8_000]
    assert at(log, ev.PREEMPT_DWELL, 1) == [8_000 + 4_000 + 2_000]


def test_plan_change_waits_for_the_preempt_to_exit():
    from edge_agent.supervisor import CentralPlan
    from edge_agent.plan import parse_plan
    sd = site(EMERGENCY)
    agent = Agent(parse_site(sd))
    pd = dict(sd["fallback_plan"], id="other")
    other = parse_plan(pd, agent.site)
    log = []
    for t in range(0, 70_001, 100):
        inp = Inputs(preempts={1: 12_300 <= t < 40_000}, link_up=True, heartbeat=True,
                     central_plan=CentralPlan(other, 2) if t == 20_000 else None,
                     pulses={10: 1} if t == 50_000 else None)
        out = agent.step(t, inp)
        log.extend(out.events)
    # Pending from 20.0 s; the barrier crossings of the entry (26.3 s) and the
    # exit (45.5 s) pass; the first crossing after the exit, toward the call
    # on 2 at 50.0 s, takes it: 4+8 (green at 45.5 s) gap out at their min
    # green 55.5 s, yellow 4.0 s, red 1.5 s: 61.0 s.
    assert [e[0] for e in log if e[1] == ev.PLAN_PENDING] == [20_000]
    assert at(log, ev.PREEMPT_EXIT, 1) == [40_000]
    assert [e[0] for e in log if e[1] == ev.PLAN_ACTIVATED] == [61_000]
    assert out.plan_id == "other"


def test_preempt_table_errors_name_path_and_reason():
    bad = dict(EMERGENCY, dwell_phases=[2, 4], link=3, enter_yellow=2.0)
    try:
        parse_site(site(bad))
    except ConfigError as e:
        msgs = "\n".join(e.errors)
        assert "preempts[0].dwell_phases[1]: phase 4 conflicts with another phase of this list" in msgs
        assert "preempts[0].enter_yellow: 2.0 s is below the site minimum yellow 3.0 s" in msgs
        assert "preempt 1 links to preempt 3, which is not defined" in msgs
    else:
        raise AssertionError("bad preempt accepted")


def test_link_calls_the_linked_preempt_at_the_end_of_dwell_while_the_call_lasts():
    first = dict(EMERGENCY, link=3, exit_phases=[])
    linked = {"number": 3, "dwell_phases": [4, 8], "min_dwell": 5.0}
    _, log, f = drive(site(first, linked), 60_000, preempt={1: [(12_300, 50_000)]},
                      peds={2: [4_000]})
    assert at(log, ev.PREEMPT_DWELL, 1) == [26_300]
    # Min dwell over at 36.3 s with the call still on: preempt 3 is called.
    assert at(log, ev.PREEMPT_LINK_ON, 3) == [36_300]
    assert at(log, ev.PREEMPT_ENTRY, 3) == [36_400]
    # 2+6 (min green 10 s from 26.3 s, done) end, yellow 4.0 s, red 1.5 s.
    assert at(log, ev.PREEMPT_DWELL, 3) == [41_900]
    assert f[41_900].preempt == (3, "dwell")
    # The linking call ends at 50.0 s: the link goes off and 3 exits.
    assert at(log, ev.PREEMPT_LINK_OFF, 3) == [50_000]
    assert at(log, ev.PREEMPT_EXIT, 3) == [50_000]
    assert at(log, ev.PREEMPT_EXIT, 1) == []
    assert f[50_000].preempt is None


def test_coordination_is_suspended_and_resumes_by_its_offset_transition():
    # Coordinated plan (cycle 100 s, offset 30 s, 2+6 coordinated, max green
    # inhibited), every detector occupied. Preempt 1 dwells on 4+8, 150-160 s.
    try:
        from tests.portable.coordsheets import coordinated_site
    except ImportError:
        from coordsheets import coordinated_site
    s = coordinated_site()
    s["preempts"] = [{"number": 1, "dwell_phases": [4, 8], "min_dwell": 5.0,
                      "min_green": 0.0, "min_walk": 0.0, "ped_clear": 0.0}]
    agent = Agent(parse_site(s))
    log = []
    for t in range(0, 700_001, 100):
        out = agent.step(t, Inputs(detectors={ch: True for ch in range(1, 17)},
                                   preempts={1: 150_000 <= t < 160_000}))
        log.extend(out.events)

    def when(code, param=None):
        return [e[0] for e in log if e[1] == code and (param is None or e[2] == param)]
    # 2+6 end at 150.0 s by preemption; dwell at 155.5 s; min dwell to 160.5 s.
    assert when(ev.PHASE_PREEMPT_FORCE_OFF, 2) == [150_000]
    assert when(ev.PREEMPT_DWELL, 1) == [155_500] and when(ev.PREEMPT_EXIT, 1) == [160_500]
    # No cycle timer while preempted: 4+8 time max 1 (40 s, from the phase
    # check at 155.5 s) instead of the inhibited max, and the next barrier
    # crossing, at 201.0 s, starts the timer again (131) ...
    assert when(ev.PHASE_MAX_OUT, 4) == [195_500]
    assert when(ev.COORD_PATTERN_CHANGE) == [4_000, 201_000]
    assert not [t for t in when(ev.COORD_YIELD) if 150_000 <= t < 201_000]
    # ... which corrects to the offset by the short way and is back in step.
    assert [(e[0], e[2]) for e in log if e[1] == ev.COORD_CYCLE_STATE and e[0] > 201_000] \
        == [(301_000, 2), (530_000, 1)]      # 150: 2 lengthening, 1 in step (enumeration)
    assert agent.coordinator.offset_error(700_000) == 0
