"""Coordination counts from local midnight of the site's zone; DST days are transitions.

The runtime feeds the core the zone's UTC offset with each wall-clock reading
(drivers.localtime); these runs do the same in virtual time. Pattern: cycle
110 s (3,600 s is not a whole number of cycles, so an hour's shift moves the
cycle by 80 s), offset 30 s, coordinated 2 + 6, phase 2's yield point at
54.5 s into the cycle (15 s split of 1, then 45 s of 2 less 4.0 s yellow and
1.5 s red). In step, phase 2 yields when local time of day t satisfies
(t - 30 s) mod 110 s = 54.5 s.
"""

from datetime import datetime, timezone

from drivers.localtime import local_datetime, local_stamp, parse_local, site_zone, utc_offset_ms
from edge_agent import events as ev
from edge_agent.agent import Agent, Inputs
from edge_agent.intersection import parse_site
from tests.portable.coordsheets import coordinated_site

CHICAGO = site_zone("America/Chicago")
ALL = dict((ch, True) for ch in range(1, 17))
CYCLE, OFFSET, YIELD_2 = 110_000, 30_000, 54_500


def site():
    return parse_site(coordinated_site(cycle=110.0, splits={
        "1": 15.0, "2": 45.0, "3": 15.0, "4": 35.0, "5": 15.0, "6": 45.0, "7": 15.0, "8": 35.0}))


def run(start_local, minutes):
    """Step the coordinated agent from a local start; (log, wall ms at mono 0)."""
    wall0 = parse_local(start_local, CHICAGO)
    agent = Agent(site())
    log = []
    for t in range(0, minutes * 60_000, 100):
        wall = wall0 + t
        out = agent.step(t, Inputs(detectors=ALL, wall_ms=wall,
                                   utc_offset_ms=utc_offset_ms(CHICAGO, wall)))
        log.extend(out.events)
    return log, wall0


def local_tod_ms(wall_ms):
    d = local_datetime(CHICAGO, wall_ms)
    return ((d.hour * 60 + d.minute) * 60 + d.second) * 1000 + d.microsecond // 1000


def yields(log, wall0):
    """(unix ms, local time of day ms) of every phase-2 yield point."""
    return [(wall0 + ms, local_tod_ms(wall0 + ms)) for ms, code, p in log
            if code == ev.COORD_YIELD and p == 2]


def in_step(tod):
    return (tod - OFFSET) % CYCLE == YIELD_2


def test_utc_offsets_and_local_stamps_of_the_zone():
    winter = parse_local("2026-01-15 08:00", CHICAGO)
    assert winter == int(datetime(2026, 1, 15, 14, 0, tzinfo=timezone.utc).timestamp() * 1000)
    assert utc_offset_ms(CHICAGO, winter) == -6 * 3_600_000
    assert local_stamp(CHICAGO, winter + 123) == "2026-01-15 08:00:00.123-06:00"
    # Just before and after the spring change (02:00 CST -> 03:00 CDT).
    assert utc_offset_ms(CHICAGO, parse_local("2026-03-08 01:59", CHICAGO)) == -6 * 3_600_000
    assert utc_offset_ms(CHICAGO, parse_local("2026-03-08 03:00", CHICAGO)) == -5 * 3_600_000
    summer = parse_local("2026-07-15 08:00", CHICAGO)
    assert utc_offset_ms(CHICAGO, summer) == -5 * 3_600_000
    assert local_stamp(CHICAGO, summer) == "2026-07-15 08:00:00.000-05:00"


def test_coordination_counts_from_local_midnight_not_utc():
    log, wall0 = run("2026-01-15 08:00", 20)
    ys = yields(log, wall0)[3:]            # past the first cycles' offset seeking
    assert len(ys) >= 6
    assert all(in_step(tod) for _, tod in ys), ys
    # Counted from UTC midnight the cycle would sit 21,600 s mod 110 s = 40 s away.
    assert not any((utc % 86_400_000 - OFFSET) % CYCLE == YIELD_2 for utc, _ in ys)


def _transition(start_local, jump_local, minutes):
    """Yields in step before the change, a seek after it, in step again."""
    log, wall0 = run(start_local, minutes)
    ys = yields(log, wall0)
    jump = parse_local(jump_local, CHICAGO)
    before = [tod for wall, tod in ys if wall0 + 5 * 60_000 <= wall < jump]
    after = [tod for wall, tod in ys if wall >= jump + 15 * 60_000]
    assert len(before) >= 10 and len(after) >= 10
    assert all(in_step(tod) for tod in before)
    assert all(in_step(tod) for tod in after)
    # The coordinator saw the hour's jump as an offset error and corrected it
    # over whole cycles (lengthening or shortening), as on any offset change.
    states = [(ms, s) for ms, code, s in log if code == ev.COORD_CYCLE_STATE and wall0 + ms >= jump]
    assert states and states[0][1] in (ev.COORD_ADD, ev.COORD_SUBTRACT)
    assert states[-1][1] == ev.COORD_IN_STEP
    assert wall0 + states[-1][0] - jump < 15 * 60_000
    return log


def test_spring_forward_day_is_a_transition_to_the_new_local_midnight():
    # 2026-03-08: 02:00 CST becomes 03:00 CDT; the run spans 01:30 CST .. 03:50 CDT.
    _transition("2026-03-08 01:30", "2026-03-08 03:00", 80)


def test_fall_back_day_is_a_transition_to_the_new_local_midnight():
    # 2026-11-01: 02:00 CDT becomes 01:00 CST; the run spans 01:30 CDT .. 01:50 CST.
    _transition("2026-11-01 01:30-05:00", "2026-11-01 01:00-06:00", 80)
