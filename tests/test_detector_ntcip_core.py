"""Core fixes for polled (NTCIP) detectors, in virtual time, read like a timing sheet.

Site: the portable sheets' two-phase site (tests/portable/test_detectors.py),
detector channel 2 on phase 2; the agent runs its detectors from 2,000 ms.
Reports come from source "ntcip" with src_ms on the local clock (offset 0).
"""

from edge_agent import events as ev
from edge_agent.detectors import Report, PRESENCE, COUNTS, STALE
from tests.portable.test_detectors import drive, site_with
from tests.portable.sheets import times


def polled(until_ms, stale_every_ms=0, on=()):
    """PRESENCE of channel 2 every 100 ms from 2,000 ms (on during the (start, end) spans in
    `on`), and a STALE report (one lost poll) every stale_every_ms, instead of that poll."""
    reps = []
    for t in range(2_000, until_ms + 1, 100):
        if stale_every_ms and t > 2_000 and (t - 2_000) % stale_every_ms == 0:
            reps.append(Report("ntcip", STALE, t, None, channels=[2]))
            continue
        level = any(a <= t < b for a, b in on)
        reps.append(Report("ntcip", PRESENCE, t, t, presence={2: level}))
    return reps


def test_no_activity_fires_at_its_limit_although_polls_are_lost():
    # No activity 0.1 min = 6 s from the agent's start at 0 ms: fault at 6,000 ms.
    # One poll in 20 is lost (STALE, the next poll answers): 5 % of polls dropped. Before
    # the fix each STALE restarted the no-activity timer and the fault never came.
    site = site_with(ch2={"no_activity": 0.1, "watchdog": 2.0})
    _, log = drive(site, 12_000, polled(12_000))
    assert times(log, ev.DETECTOR_FAULT_OTHER, 2) == [6_000]
    _, log = drive(site, 12_000, polled(12_000, stale_every_ms=2_000))
    assert times(log, ev.DETECTOR_FAULT_OTHER, 2) == [6_000]


def test_a_watchdog_outage_still_restarts_no_activity():
    # No report from 4,000 to 6,500 ms: watchdog fault (85) 2 s after the last one. While the link
    # was down no road activity could be seen, so no-activity counts again from the
    # detector's restoration (83 at 7,500 ms): 6 s later, 13,500 ms.
    site = site_with(ch2={"no_activity": 0.1, "watchdog": 2.0, "restore": 1.0})
    reps = [r for r in polled(20_000) if not 4_000 <= r.rx_ms < 6_500]
    _, log = drive(site, 20_000, reps)
    assert times(log, ev.DETECTOR_FAULT_WATCHDOG, 2) == [5_900]
    assert times(log, ev.DETECTOR_RESTORED, 2) == [7_500]
    assert times(log, ev.DETECTOR_FAULT_OTHER, 2) == [13_500]


def one_second_counts(until_ms, arrivals, occupied_ms, late_ms, sample_late_ms, slack_ms):
    """COUNTS of 1 s periods ending at 3,000, 4,000 ...: the vehicles whose on-edge falls in
    the period, read `late_ms` after it closed (the poll that saw the sequence move on sampled
    the unit `sample_late_ms` after the close) with the given slack."""
    reps = []
    for end in range(3_000, until_ms - late_ms, 1_000):
        n = sum(1 for a in arrivals if end - 1_000 < a <= end)
        on = sum(max(0, min(a + occupied_ms, end) - max(a, end - 1_000)) for a in arrivals)
        reps.append(Report("ntcip", COUNTS, end + late_ms, end + sample_late_ms,
                           counts={2: (n, on * 1000 // 1_000)}, interval_ms=1_000,
                           slack_ms=slack_ms))
    return reps


def test_steady_traffic_with_a_1s_volume_period_is_not_implausible():
    # A vehicle every 1.7 s, 300 ms on the loop, presence polled every 100 ms. The poller
    # reads each 1 s period's counts within a poll of its close: sampled 100 ms after it,
    # slack 200 ms, arriving 150 ms after it. Two minutes: no implausible fault.
    arrivals = list(range(2_050, 120_000, 1_700))
    on = [(a, a + 300) for a in arrivals]
    site = site_with(ch2={"watchdog": 2.0, "lanes": 1})
    reps = polled(120_000, on=on) + one_second_counts(120_000, arrivals, 300, 150, 100, 200)
    _, log = drive(site, 120_000, reps)
    assert times(log, ev.DETECTOR_FAULT_OTHER, 2) == []


def test_counts_compared_with_the_time_between_reports_were_implausible():
    # The defect this fixes: the same traffic, counts read up to a slow poll (900 ms) after
    # the close and compared with the on-edges seen since the previous counts report.
    arrivals = list(range(2_050, 40_000, 1_700))
    on = [(a, a + 300) for a in arrivals]
    site = site_with(ch2={"watchdog": 2.0, "lanes": 1})
    late = one_second_counts(40_000, arrivals, 300, 900, 850, 0)
    for r in late:
        r.src_ms = None                     # no end: the window is the time between reports
    _, log = drive(site, 40_000, polled(40_000, on=on) + late)
    assert times(log, ev.DETECTOR_FAULT_OTHER, 2) == [6_900]


def test_counts_with_no_edge_in_their_window_are_still_implausible():
    # The loop is dead in presence (never on), the unit counts 3 every period: the third
    # contradicting period (ending 5,000, read at 5,150) faults the detector.
    site = site_with(ch2={"watchdog": 2.0})
    arrivals = [a for end in range(3_000, 10_000, 1_000) for a in (end - 700, end - 400, end - 100)]
    reps = polled(10_000) + one_second_counts(10_000, arrivals, 100, 150, 100, 200)
    _, log = drive(site, 10_000, reps)
    assert times(log, ev.DETECTOR_FAULT_OTHER, 2) == [5_200]
