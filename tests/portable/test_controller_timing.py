"""Exact-timing tests of the actuated controller, read like a timing sheet.

Site: one ring, phases 2 and 4; start-up all-red 2.0 s, then phase 2 green at
2,000 ms. Phase 2: min 10 s, passage 3 s, max 40 s, yellow 4 s, red 1.5 s.
"""

try:
    from tests.portable.sheets import two_phase_site, phase_timing, run, first, times, green_intervals
except ImportError:
    from sheets import two_phase_site, phase_timing, run, first, times, green_intervals
from edge_agent import events as ev
from edge_agent.indications import GREEN, YELLOW, RED, WALK, PED_CLEAR, DONT_WALK


def test_startup_all_red_then_startup_phase_green():
    _, log, frames = run(two_phase_site(), 3_000)
    assert frames[0].vehicle[2] == RED and frames[0].vehicle[4] == RED
    assert frames[19].vehicle[2] == RED          # 1,900 ms: still all red
    assert frames[20].vehicle[2] == GREEN        # 2,000 ms
    assert first(log, ev.PHASE_BEGIN_GREEN, 2) == 2_000


def test_phase_gaps_out_when_passage_expires_after_min_green():
    # Conflicting call on 4 at 3.0 s; actuations on 2 at 5, 9, 11.5 s.
    _, log, _ = run(two_phase_site(), 30_000,
                    pulses={4: [3_000], 2: [5_000, 9_000, 11_500]})
    assert first(log, ev.PHASE_MIN_COMPLETE, 2) == 12_000
    assert first(log, ev.PHASE_GAP_OUT, 2) == 14_500          # 11.5 s + 3.0 s passage
    assert first(log, ev.PHASE_BEGIN_YELLOW, 2) == 14_500
    assert first(log, ev.PHASE_BEGIN_RED_CLEAR, 2) == 18_500  # + 4.0 s yellow
    assert first(log, ev.PHASE_BEGIN_GREEN, 4) == 20_000      # + 1.5 s red clearance


def test_gap_shorter_than_passage_does_not_gap_out():
    # 12.0 s passes with the 9.0 s actuation's passage just expired: gap-out.
    _, log, _ = run(two_phase_site(), 30_000,
                    pulses={4: [3_000], 2: [5_000, 9_000, 13_000]})
    assert first(log, ev.PHASE_GAP_OUT, 2) == 12_000


def test_gap_out_at_min_green_when_no_actuation_extends():
    _, log, _ = run(two_phase_site(), 20_000, pulses={4: [3_000]})
    assert first(log, ev.PHASE_GAP_OUT, 2) == 12_000
    assert first(log, ev.PHASE_MAX_OUT, 2) is None


def test_steady_stream_maxes_out_40_s_after_the_conflicting_call():
    stream = list(range(2_000, 80_000, 1_000))
    _, log, _ = run(two_phase_site(), 60_000, pulses={4: [3_000], 2: stream})
    assert first(log, ev.PHASE_GAP_OUT, 2) is None
    assert first(log, ev.PHASE_MAX_OUT, 2) == 43_000


def test_max_timer_starts_on_the_conflicting_call_not_at_green():
    stream = list(range(2_000, 90_000, 1_000))
    _, log, _ = run(two_phase_site(), 70_000, pulses={4: [20_000], 2: stream})
    assert first(log, ev.PHASE_MAX_OUT, 2) == 60_000


def test_rest_in_green_without_conflicting_demand():
    _, log, frames = run(two_phase_site(), 120_000)
    assert frames[-1].vehicle[2] == GREEN
    assert first(log, ev.PHASE_BEGIN_YELLOW, 2) is None


def test_presence_extends_until_the_zone_clears_then_passage():
    # A vehicle sits on the zone from 10 s to 20 s: last seen occupied 19.9 s.
    _, log, _ = run(two_phase_site(), 40_000, pulses={4: [3_000]},
                    presence={2: [(10_000, 20_000)]})
    assert first(log, ev.PHASE_GAP_OUT, 2) == 22_900


def test_ped_service_holds_green_for_walk_and_clearance():
    t2 = phase_timing(2, walk=7.0, ped_clear=14.0)
    site = two_phase_site(t2=t2, ped2=True, startup=(4,))
    # Phase 4 starts green at 2 s; a ped call on 2 at 3 s; 4 gaps out at 12 s.
    _, log, frames = run(site, 60_000, peds={1: [3_000]})
    g2 = first(log, ev.PHASE_BEGIN_GREEN, 2)
    assert g2 == 12_000 + 4_000 + 1_500                      # 17.5 s
    assert first(log, ev.PED_BEGIN_WALK, 2) == g2
    assert first(log, ev.PED_BEGIN_CLEAR, 2) == g2 + 7_000
    assert first(log, ev.PED_BEGIN_DONT_WALK, 2) == g2 + 21_000
    # A ped call is demand on 2; nothing calls 4 back, so 2 rests in green.
    assert first(log, ev.PHASE_BEGIN_YELLOW, 2) is None
    at = g2 // 100
    assert frames[at].ped[2] == WALK
    assert frames[at + 70].ped[2] == PED_CLEAR
    assert frames[at + 210].ped[2] == DONT_WALK


def test_ped_clearance_holds_green_past_gap_out():
    t2 = phase_timing(2, walk=7.0, ped_clear=14.0)
    site = two_phase_site(t2=t2, ped2=True, startup=(4,))
    # Phase 4 called back at 20 s: 2 has gapped out at min (27.5 s) but the
    # walk + clearance run to 38.5 s; the green ends there, not earlier.
    _, log, _ = run(site, 60_000, peds={1: [3_000]}, pulses={4: [20_000]})
    assert green_intervals(log, 2) == [(17_500, 38_500)]
    assert first(log, ev.PHASE_GAP_OUT, 2) == 38_500


def test_locking_call_on_red_is_remembered_and_served():
    _, log, _ = run(two_phase_site(), 40_000, pulses={4: [3_000]})
    assert first(log, ev.PHASE_CALL_REGISTERED, 4) == 3_000
    assert first(log, ev.PHASE_BEGIN_GREEN, 4) == 17_500     # 12.0 + 4.0 + 1.5
    # No call on 2 after it was served: 4 rests in green.
    assert len(times(log, ev.PHASE_BEGIN_GREEN, 2)) == 1


def test_served_call_is_dropped_at_its_green_so_every_43_pairs_with_a_44():
    # ATSPM's phase wait runs from 43 to the green and is valid only when the
    # call's next call event is a 44, as a field controller logs at service.
    _, log, _ = run(two_phase_site(), 60_000, pulses={4: [3_000, 40_000]})
    assert times(log, ev.PHASE_CALL_REGISTERED, 4) == [3_000]
    assert times(log, ev.PHASE_CALL_DROPPED, 4) == [17_500]    # with its green at 17.5 s
    assert times(log, ev.PHASE_BEGIN_GREEN, 4) == [17_500]
    at = [(code, p) for t, code, p in log if t == 17_500 and p == 4]
    assert at.index((ev.PHASE_BEGIN_GREEN, 4)) < at.index((ev.PHASE_CALL_DROPPED, 4))


def test_non_locking_call_drops_when_the_zone_clears():
    site = two_phase_site()
    site["detectors"][1]["locking"] = False
    # Vehicle on 4's zone from 3.0 to 3.5 s only: 2 has no reason to end.
    _, log, _ = run(site, 40_000, presence={4: [(3_000, 3_500)]})
    assert first(log, ev.PHASE_BEGIN_YELLOW, 2) is None
    assert times(log, ev.PHASE_CALL_REGISTERED, 4) == [3_000]
    assert times(log, ev.PHASE_CALL_DROPPED, 4) == [3_500]


def test_min_recall_serves_a_phase_with_no_detector_call():
    t4 = phase_timing(4, recall="min")
    t2 = phase_timing(2, recall="min")
    _, log, _ = run(two_phase_site(t2=t2, t4=t4), 60_000)
    assert first(log, ev.PHASE_GAP_OUT, 2) == 12_000
    assert green_intervals(log, 4)[0] == (17_500, 27_500)   # its 10 s min green


def test_max_recall_runs_to_max_green():
    t4 = phase_timing(4, recall="max", max_green=30.0)
    t2 = phase_timing(2, recall="min")
    _, log, _ = run(two_phase_site(t2=t2, t4=t4), 60_000)
    assert green_intervals(log, 4)[0] == (17_500, 47_500)
    assert first(log, ev.PHASE_MAX_OUT, 4) == 47_500
