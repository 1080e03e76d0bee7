"""Exact-timing sheets of the explicit phase machine: red revert, phase check,
phase skipped, omit events, volume density (added initial, gap reduction).

Site: one ring, phases 2 and 4; start-up all-red 2.0 s, then phase 2 green at
2,000 ms. Phase 2 and 4: min 10 s, passage 3 s, max 40 s, yellow 4 s, red 1.5 s.
"""

try:
    from tests.portable.sheets import two_phase_site, phase_timing, run, first, times, card
except ImportError:
    from sheets import two_phase_site, phase_timing, run, first, times, card
from edge_agent import events as ev
from edge_agent.agent import Agent, Inputs
from edge_agent.intersection import parse_site
from edge_agent.intervals import (transition, IntervalError, RED_REST, YELLOW_CHANGE,
                                  MIN_GREEN, TRANSITIONS, NAMES)


def _rest_red(t2=None, floors_revert=None):
    s = two_phase_site(t2=t2)
    s["rest"] = "red"
    if floors_revert is not None:
        s["floors"]["min_red_revert"] = floors_revert
        for ch in s["monitor"]["channels"]:      # the card programmed to match
            ch["red_revert"] = floors_revert
    return s


# -- red revert ------------------------------------------------------------------

def test_red_revert_holds_a_recalled_phase_red_2_s_after_its_yellow():
    # Rest in red: phase 2 gaps out at 12.0 s with no demand, yellow 12.0-16.0,
    # red clearance 16.0-17.5. A call on 2 at 14.0 s (its yellow) may bring it
    # back only 2.0 s (the site red revert) after its yellow ended: 18.0 s.
    _, log, _ = run(_rest_red(), 25_000, pulses={2: [14_000]})
    assert first(log, ev.PHASE_GAP_OUT, 2) == 12_000
    assert first(log, ev.PHASE_END_RED_CLEAR, 2) == 17_500
    assert times(log, ev.PHASE_BEGIN_GREEN, 2) == [2_000, 18_000]


def test_plan_red_revert_of_3_s_counts_from_the_end_of_yellow():
    t2 = phase_timing(2)
    t2["red_revert"] = 3.0
    _, log, _ = run(_rest_red(t2=t2), 25_000, pulses={2: [14_000]})
    assert times(log, ev.PHASE_BEGIN_GREEN, 2) == [2_000, 19_000]


def test_red_revert_shorter_than_red_clearance_changes_nothing():
    t2 = phase_timing(2)
    t2["red_revert"] = 1.0
    _, log, _ = run(_rest_red(t2=t2, floors_revert=1.0), 25_000, pulses={2: [14_000]})
    assert times(log, ev.PHASE_BEGIN_GREEN, 2) == [2_000, 17_500]


def test_plan_red_revert_below_the_site_floor_is_refused():
    from edge_agent.validate import ConfigError as CE
    t2 = phase_timing(2)
    t2["red_revert"] = 1.5
    try:
        parse_site(two_phase_site(t2=t2))
    except CE as e:
        assert any("fallback_plan.phases[0].red_revert: 1.5 s is below the site minimum "
                   "red revert 2.0 s" in m for m in e.errors), e.errors
    else:
        raise AssertionError("red revert below the floor accepted")


# -- the transition table ----------------------------------------------------------

class _Phases:
    def __init__(self):
        self.interval = [RED_REST] * 17
        self.since = [0] * 17


def test_the_table_has_no_way_from_min_green_or_red_straight_to_yellow():
    c = _Phases()
    log = []
    transition(c, 2, MIN_GREEN, 1_000, log)
    assert log == [(1_000, ev.PHASE_ON, 2), (1_000, ev.PHASE_BEGIN_GREEN, 2)]
    for frm in (MIN_GREEN, RED_REST):
        c.interval[2] = frm
        try:
            transition(c, 2, YELLOW_CHANGE, 2_000, log)
        except IntervalError as e:
            assert "phase 2: no transition from %s to yellow at 2000 ms" % NAMES[frm] in str(e)
        else:
            raise AssertionError("illegal transition accepted")
    assert len(TRANSITIONS) == 11


# -- events a real controller logs ---------------------------------------------------

def test_phase_check_when_a_conflicting_call_meets_the_green():
    _, log, _ = run(two_phase_site(), 30_000, pulses={4: [3_000]})
    assert times(log, ev.PHASE_CHECK, 2) == [3_000]
    assert first(log, ev.PHASE_GAP_OUT, 2) == 12_000


def _steps(agent, until, inputs_at):
    log = []
    t = 0
    while t <= until:
        out = agent.step(t, inputs_at(t))
        log.extend(out.events)
        t += 100
    return log


def test_event_14_when_a_ring_passes_over_an_omitted_called_phase():
    # One ring 2 -> 3 -> 4 in one barrier group; calls on 3 and 4 at 3.0 s,
    # phase 3 omitted from outside: 2 gaps out at 12.0 s and the ring goes to
    # 4 at 17.5 s, skipping 3 (14).
    s = two_phase_site()
    s["rings"] = [[2, 3, 4]]
    s["barriers"] = [[2, 3, 4]]
    s["phases"].append({"phase": 3, "ped": False})
    s["detectors"].append({"channel": 3, "phase": 3, "locking": True})
    s["fallback_plan"]["sequence"] = [[2, 3, 4]]
    s["fallback_plan"]["phases"].append(phase_timing(3))
    s["monitor"] = card(s)
    agent = Agent(parse_site(s))
    log = _steps(agent, 20_000, lambda t: Inputs(
        pulses={3: 1, 4: 1} if t == 3_000 else None, omit=1 << 3))
    assert first(log, ev.PHASE_GAP_OUT, 2) == 12_000
    assert first(log, ev.PHASE_BEGIN_GREEN, 4) == 17_500
    assert times(log, ev.PHASE_SKIPPED, 3) == [17_500]
    assert times(log, ev.PHASE_OMIT_ON, 3) == [2_000]     # first controller step
    assert first(log, ev.PHASE_BEGIN_GREEN, 3) is None


def test_omit_on_and_off_are_logged_when_the_request_changes():
    agent = Agent(parse_site(two_phase_site()))
    log = _steps(agent, 10_000, lambda t: Inputs(omit=(1 << 4) if 3_000 <= t < 7_000 else 0))
    assert times(log, ev.PHASE_OMIT_ON, 4) == [3_000]
    assert times(log, ev.PHASE_OMIT_OFF, 4) == [7_000]


# -- volume density --------------------------------------------------------------------

def _density_site(**t4):
    t = phase_timing(4)
    t.update(t4)
    return two_phase_site(t4=t)


def test_added_initial_per_actuation_on_red_lengthens_the_initial_interval():
    # Phase 4: 2.0 s per actuation, max initial 20 s. Seven actuations while
    # red -> 14 s initial. 2 gaps out at 12.0, 4 is green at 17.5 s and, with
    # no actuation on green, gaps out when its 14 s initial ends: 31.5 s (a
    # call on 2 at 20.0 s asks it to).
    pulses = {4: [3_000, 4_000, 5_000, 6_000, 7_000, 8_000, 9_000], 2: [20_000]}
    _, log, _ = run(_density_site(added_initial=2.0, max_initial=20.0), 40_000,
                    pulses=pulses)
    assert first(log, ev.PHASE_BEGIN_GREEN, 4) == 17_500
    assert first(log, ev.PHASE_MIN_COMPLETE, 4) == 31_500
    assert first(log, ev.PHASE_GAP_OUT, 4) == 31_500


def test_added_initial_never_below_min_green_nor_above_max_initial():
    few = {4: [3_000, 4_000], 2: [20_000]}                     # 4 s < min 10 s
    _, log, _ = run(_density_site(added_initial=2.0, max_initial=20.0), 40_000, pulses=few)
    assert first(log, ev.PHASE_GAP_OUT, 4) == 27_500           # 17.5 + 10
    many = {4: list(range(3_000, 11_000, 500)), 2: [20_000]}   # 16 x 2 s = 32 s > 20 s
    _, log, _ = run(_density_site(added_initial=2.0, max_initial=20.0), 50_000, pulses=many)
    assert first(log, ev.PHASE_GAP_OUT, 4) == 37_500           # 17.5 + 20


def _reduction_site():
    t2 = phase_timing(2, passage=5.0)
    t2.update({"min_gap": 2.0, "time_before_reduction": 10.0, "time_to_reduce": 6.0})
    return two_phase_site(t2=t2)


def test_gap_reduction_gaps_out_a_3_s_headway_once_the_gap_has_fallen_to_2_s():
    # Phase 2: passage 5 s, reduced after 10 s (from the phase check at 3.0 s,
    # the conflicting call) over 6 s to a minimum gap of 2 s: 13.0-19.0 s.
    # Actuations every 3 s would hold a 5 s passage to max-out (43.0 s); with
    # reduction the gap after the 17.0 s actuation is 2.0 s at 19.0 s.
    stream = list(range(2_000, 60_000, 3_000))
    _, log, _ = run(_reduction_site(), 50_000, pulses={4: [3_000], 2: stream})
    assert times(log, ev.PHASE_CHECK, 2) == [3_000]
    assert first(log, ev.PHASE_GAP_OUT, 2) == 19_000
    assert first(log, ev.PHASE_MAX_OUT, 2) is None


def test_gap_reduction_midway_allows_the_linearly_reduced_gap():
    # Last actuation at 14.0 s: at 17.0 s the allowed gap is
    # 5.0 - 3.0 x (17.0 - 13.0) / 6.0 = 3.0 s, exactly the time since it.
    stream = list(range(2_000, 14_001, 1_000))
    _, log, _ = run(_reduction_site(), 50_000, pulses={4: [3_000], 2: stream})
    assert first(log, ev.PHASE_GAP_OUT, 2) == 17_000


def test_without_gap_reduction_the_3_s_headway_maxes_out():
    stream = list(range(2_000, 60_000, 3_000))
    t2 = phase_timing(2, passage=5.0)
    _, log, _ = run(two_phase_site(t2=t2), 50_000, pulses={4: [3_000], 2: stream})
    assert first(log, ev.PHASE_MAX_OUT, 2) == 43_000
