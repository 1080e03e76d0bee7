"""Coordination: one hand-computed cycle, early return, offset seeking, validation.

Pattern (tests/portable/coordsheets.py): cycle 100 s, offset 30 s, 2 + 6
coordinated, splits 15/35/15/35 in both rings, fixed force-offs, max inhibit.
Cycle position 0 is the start of barrier group 1-2/5-6. Laid out:

    phase  start  force-off (split - yellow - red)
    1, 5     0.0    10.0   (15 - 3.5 - 1.5)
    2, 6    15.0    44.5   (35 - 4.0 - 1.5)  = yield point
    3, 7    50.0    60.0
    4, 8    65.0    94.5

The wall clock is mono + 26 s, so at mono 4.0 s (end of start-up all-red) the
wall-clock cycle is at (30 - 30) mod 100 = 0: the unit starts in step, and
each cycle begins at mono 4 + 100 k seconds.
"""

try:
    from tests.portable.coordsheets import coordinated_site, coordinated_plan
    from tests.portable.sheets import first, times, green_intervals, central_agent, offer
except ImportError:
    from coordsheets import coordinated_site, coordinated_plan
    from sheets import first, times, green_intervals, central_agent, offer
from edge_agent.intersection import parse_site
from edge_agent.plan import parse_plan
from edge_agent.validate import ConfigError
from edge_agent.agent import Agent, Inputs
from edge_agent import events as ev

WALL = 26_000
ALL = dict((ch, True) for ch in range(1, 17))


def drive(site_d, until, detectors=None, pulses_at=None, plan_at=None, peds_at=None):
    agent = central_agent(parse_site(site_d))
    log = []
    for t in range(0, until, 100):
        plan = plan_at[1] if plan_at and t == plan_at[0] else None
        pulses = pulses_at.get(t) if pulses_at else None
        peds = peds_at.get(t) if peds_at else None
        out = agent.step(t, Inputs(detectors=detectors, pulses=pulses, peds=peds,
                                   wall_ms=t + WALL, **offer(plan, 1)))
        log.extend(out.events)
    return agent, log


def greens_between(log, a, b):
    """{phase: [(green start, yellow start, end reason)]} for greens starting in [a, b)."""
    out = {}
    began = {}
    for ms, code, p in log:
        if code == ev.PHASE_BEGIN_GREEN:
            began[p] = ms
        elif code in (ev.PHASE_GAP_OUT, ev.PHASE_MAX_OUT, ev.PHASE_FORCE_OFF) and p in began:
            g = began.pop(p)
            if a <= g < b:
                out.setdefault(p, []).append((g, ms, code))
    return out


def test_hand_computed_cycle_with_full_demand_matches_the_table():
    _, log = drive(coordinated_site(), 320_000, detectors=ALL)
    F = ev.PHASE_FORCE_OFF
    # The second cycle, mono 104.0 s .. 204.0 s (cycle positions 0 .. 100).
    assert greens_between(log, 104_000, 204_000) == {
        1: [(104_000, 114_000, F)], 5: [(104_000, 114_000, F)],    # 0.0 -> 10.0
        2: [(119_000, 148_500, F)], 6: [(119_000, 148_500, F)],    # 15.0 -> 44.5 (yield)
        3: [(154_000, 164_000, F)], 7: [(154_000, 164_000, F)],    # 50.0 -> 60.0
        4: [(169_000, 198_500, F)], 8: [(169_000, 198_500, F)],    # 65.0 -> 94.5
    }
    assert times(log, ev.COORD_YIELD, 2)[:3] == [48_500, 148_500, 248_500]
    assert times(log, ev.BARRIER_TERMINATION, 1)[:3] == [54_000, 154_000, 254_000]


def test_without_side_street_demand_the_coordinated_phases_rest_in_green():
    _, log = drive(coordinated_site(), 320_000)
    assert times(log, ev.PHASE_BEGIN_GREEN, 2) == [4_000]
    assert times(log, ev.PHASE_BEGIN_GREEN, 6) == [4_000]
    for p in (1, 3, 4, 5, 7, 8):
        assert times(log, ev.PHASE_BEGIN_GREEN, p) == []
    assert times(log, ev.COORD_YIELD, 6) == [48_500, 148_500, 248_500]
    assert (4_000, ev.COORD_PATTERN_CHANGE, 3) in log
    assert (4_000, ev.CYCLE_LENGTH_CHANGE, 100) in log
    assert (4_000, ev.OFFSET_LENGTH_CHANGE, 30) in log


def test_unused_side_street_time_returns_early_to_the_coordinated_phases():
    # One vehicle on 4's advance detector (channel 12) at 150 s, after the yield
    # at 148.5 s and inside 4's permissive window.
    _, log = drive(coordinated_site(), 260_000, pulses_at={150_000: {12: 1}})
    g = greens_between(log, 140_000, 260_000)
    # 2/6 end at 150.0 (force-off once a permitted call waits), 4 + dual-entry 8
    # start at 155.5 and gap out at their 10 s min (165.5); 2/6 return at 171.0.
    assert (150_000, ev.PHASE_FORCE_OFF, 2) in log
    assert g[4] == [(155_500, 165_500, ev.PHASE_GAP_OUT)]
    assert g[8] == [(155_500, 165_500, ev.PHASE_GAP_OUT)]
    assert times(log, ev.PHASE_BEGIN_GREEN, 2) == [4_000, 171_000]
    # Returned early, 2 is held to its next yield point at 248.5 s.
    assert times(log, ev.COORD_YIELD, 2) == [48_500, 148_500, 248_500]


def test_side_street_call_after_its_permissive_window_waits_for_the_next_cycle():
    # Without a pedestrian waiting 4 needs its 10 s min green: its window
    # closes at 94.5 - 10 = 84.5 s into the cycle (mono 188.5); a call at
    # 190 s waits for the next cycle.
    _, log = drive(coordinated_site(), 320_000, pulses_at={190_000: {12: 1}})
    assert times(log, ev.PHASE_BEGIN_GREEN, 4) == [254_000]      # next cycle, after 3's slot


def test_a_waiting_pedestrian_closes_the_window_earlier():
    # At 180 s (76 s into the cycle) a vehicle calls 4. Alone it needs its
    # 10 s min green: 76 + 10 <= 94.5, served after 2/6 clear (185.5 s). With
    # a pedestrian pressing 4's button too it needs walk + clearance, 21 s:
    # 76 + 21 > 94.5, so both wait for 4's slot in the next cycle (254.0 s).
    _, with_ped = drive(coordinated_site(), 320_000, pulses_at={180_000: {12: 1}},
                        peds_at={180_000: {2: True}})
    _, vehicle_only = drive(coordinated_site(), 320_000, pulses_at={180_000: {12: 1}})
    assert times(with_ped, ev.PHASE_BEGIN_GREEN, 4) == [254_000]
    assert first(with_ped, ev.PED_BEGIN_WALK, 4) == 254_000
    assert times(vehicle_only, ev.PHASE_BEGIN_GREEN, 4) == [185_500]


def test_offset_change_is_reached_by_short_way_within_two_cycles():
    site_d = coordinated_site()
    site = parse_site(site_d)
    new = parse_plan(coordinated_plan("coord-b", offset=60.0), site)
    agent, log = drive(site_d, 700_000, detectors=ALL, plan_at=(150_000, new))
    assert first(log, ev.PLAN_ACTIVATED, 0) == 154_000           # at the barrier
    # At the boundary at 204 s the wall-clock cycle is 70 s ahead: shortening
    # 70 s (8.5 s a cycle) is slower than lengthening 30 s (17 s a cycle).
    assert times(log, ev.COORD_CYCLE_STATE, ev.COORD_ADD) == [204_000]
    assert times(log, ev.COORD_CYCLE_STATE, ev.COORD_IN_STEP)[-1] == 434_000     # 204 + 117 + 113
    assert times(log, ev.COORD_YIELD, 2)[2:6] == [265_500, 378_500, 478_500, 578_500]
    assert agent.coordinator.offset_error(700_000) == 0
    # The lengthened cycles give the extra time to the coordinated phases only.
    g = greens_between(log, 200_000, 440_000)
    # 2 starts on time (15 s in) and its force-off moves by the correction;
    # 4's slot keeps its length and moves with it.
    assert g[2] == [(219_000, 265_500, ev.PHASE_FORCE_OFF), (336_000, 378_500, ev.PHASE_FORCE_OFF)]
    assert g[4] == [(286_000, 315_500, ev.PHASE_FORCE_OFF), (399_000, 428_500, ev.PHASE_FORCE_OFF)]


def test_short_way_shortens_without_cutting_a_coordinated_green_below_its_minimum():
    site_d = coordinated_site()
    site = parse_site(site_d)
    new = parse_plan(coordinated_plan("coord-c", offset=20.0), site)
    agent, log = drive(site_d, 900_000, detectors=ALL, plan_at=(150_000, new))
    # Offset 30 -> 20 s: the wall-clock cycle is 10 s ahead. Shorten by at most
    # the coordinated slack 35 - 5.5 - 21 (walk + ped clearance) = 8.5 s, then 1.5 s.
    assert times(log, ev.COORD_CYCLE_STATE, ev.COORD_SUBTRACT) == [204_000]
    assert times(log, ev.COORD_CYCLE_STATE, ev.COORD_IN_STEP)[-1] == 394_000      # 204 + 91.5 + 98.5
    assert times(log, ev.COORD_YIELD, 2)[2:5] == [240_000, 338_500, 438_500]
    for g0, g1, _ in greens_between(log, 150_000, 900_000)[2]:
        assert g1 - g0 >= 21_000
    assert agent.coordinator.offset_error(900_000) == 0


def test_dwell_correction_only_lengthens():
    site_d = coordinated_site(correction="dwell")
    site = parse_site(site_d)
    new = parse_plan(coordinated_plan("coord-d", offset=20.0, correction="dwell"), site)
    agent, log = drive(site_d, 700_000, detectors=ALL, plan_at=(150_000, new))
    # Offset 30 -> 20 s: short way would shorten; dwell lengthens 90 s in one cycle.
    assert times(log, ev.COORD_CYCLE_STATE, ev.COORD_DWELL) == [204_000]
    assert times(log, ev.COORD_CYCLE_STATE, ev.COORD_SUBTRACT) == []
    assert times(log, ev.COORD_YIELD, 2)[2:4] == [338_500, 438_500]
    assert agent.coordinator.offset_error(700_000) == 0


def test_floating_force_off_limits_a_late_phase_to_its_split():
    # 3 and 7 have no call, so 4 starts at the barrier (cycle 50.0 s); a floating
    # force-off ends it one split green (29.5 s) later at 79.5, a fixed one at 94.5.
    site_d = coordinated_site(force_mode="floating")
    det = dict(ALL)
    det[3] = det[11] = det[7] = det[15] = False
    _, log = drive(site_d, 320_000, detectors=det)
    g = greens_between(log, 104_000, 204_000)
    assert g[4] == [(154_000, 183_500, ev.PHASE_FORCE_OFF)]
    fixed = greens_between(drive(coordinated_site(), 320_000, detectors=det)[1], 104_000, 204_000)
    assert fixed[4] == [(154_000, 198_500, ev.PHASE_FORCE_OFF)]


def errors(plan_d):
    from edge_agent.standard import standard_site
    site = parse_site(standard_site())
    try:
        parse_plan(plan_d, site)
    except ConfigError as e:
        return e.errors
    raise AssertionError("accepted")


def test_split_that_does_not_cover_min_green_and_clearances_is_refused():
    plan = coordinated_plan(splits={"1": 9.0, "2": 41.0, "3": 15.0, "4": 35.0,
                                    "5": 15.0, "6": 35.0, "7": 15.0, "8": 35.0})
    assert errors(plan) == [
        "coordination.splits.1: 9.0 s does not cover min green/ped service 5.0 s + yellow 3.5 s "
        "+ red clearance 1.5 s"]


def test_splits_must_add_up_and_line_up_at_the_barriers():
    plan = coordinated_plan(splits={"1": 15.0, "2": 35.0, "3": 15.0, "4": 35.0,
                                    "5": 20.0, "6": 35.0, "7": 15.0, "8": 35.0})
    assert errors(plan) == [
        "coordination.splits: ring 2 splits add up to 105.0 s, not the cycle 100.0 s",
        "coordination.splits: barrier group 1 does not line up between rings: 50.0, 55.0 s"]


def test_coordinated_phases_must_be_one_per_ring_in_one_group():
    assert errors(coordinated_plan(coordinated=[2])) == [
        "coordination.coordinated: needs one coordinated phase in each of the 2 rings"]
    assert "coordination.coordinated: phases [2, 8] are not in one barrier group" in \
        errors(coordinated_plan(coordinated=[2, 8]))
