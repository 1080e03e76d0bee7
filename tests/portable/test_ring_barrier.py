"""Dual-ring, barrier and sequencing behaviour on the standard 8-phase site.

Standard plan: lefts min 5 / passage 2 / max 20 / yellow 3.5 / red 1.5 s,
throughs min 10 / passage 3 / max 40 / yellow 4 / red 1.5 s, 2 and 6 on min
recall, dual entry 2 6 4 8. Start-up: 4 s all-red, then 2 + 6 green.
Detector channel p = stop bar of phase p (non-locking), 8 + p = advance (locking).
"""

try:
    from tests.portable.sheets import run, first, times, green_intervals, central_agent, offer
except ImportError:
    from sheets import run, first, times, green_intervals, central_agent, offer
from edge_agent.standard import standard_site, standard_plan
from edge_agent import events as ev

FOREVER = 10 ** 9


def test_both_rings_cross_the_barrier_together():
    # A side-street call on 4 (advance, locking) at 5 s: 2 and 6 gap out at
    # their 10 s min (14 s), clear together, and the barrier is crossed at 19.5 s.
    _, log, _ = run(standard_site(), 40_000, pulses={12: [5_000]})
    assert first(log, ev.PHASE_GAP_OUT, 2) == 14_000
    assert first(log, ev.PHASE_GAP_OUT, 6) == 14_000
    assert first(log, ev.BARRIER_TERMINATION, 1) == 19_500
    assert first(log, ev.PHASE_BEGIN_GREEN, 4) == 19_500
    # Dual entry: 8 has no call but times with 4.
    assert first(log, ev.PHASE_BEGIN_GREEN, 8) == 19_500


def test_a_ring_that_gaps_out_first_dwells_in_green_until_the_barrier():
    # 6 is extended by a vehicle stream until 30 s; 2 gapped out at 14 s but
    # stays green (it is barrier-bound) and both end together at 32.9 s.
    stream = list(range(4_000, 30_000, 1_000))
    _, log, _ = run(standard_site(), 60_000, pulses={12: [5_000], 6: stream})
    assert green_intervals(log, 6)[0] == (4_000, 32_000)       # 29.0 s + 3.0 s passage
    assert green_intervals(log, 2)[0] == (4_000, 32_000)


def test_left_turn_leads_its_through_within_the_barrier_group():
    # Call on 1 (WB left) at 5 s: the main street must cross the barrier and
    # come back around, since 1 leads 2 in ring 1.
    _, log, _ = run(standard_site(), 60_000, pulses={9: [5_000]})
    assert first(log, ev.PHASE_GAP_OUT, 2) == 14_000
    assert first(log, ev.PHASE_BEGIN_GREEN, 1) == 19_500
    # 1 times its 5 s min, gaps out, and hands over to 2 after 3.5 + 1.5 s.
    assert green_intervals(log, 1)[0] == (19_500, 24_500)
    assert times(log, ev.PHASE_BEGIN_GREEN, 2) == [4_000, 29_500]


def test_lagging_left_follows_its_through():
    plan = standard_plan("lag")
    plan["sequence"] = [[2, 1, 3, 4], [5, 6, 7, 8]]
    site = standard_site()
    site["fallback_plan"] = plan
    _, log, _ = run(site, 60_000, pulses={9: [5_000]})
    # 1 lags 2 in this plan: it follows 2 in the same group visit while 6 times on.
    assert green_intervals(log, 2)[0] == (4_000, 14_000)
    assert green_intervals(log, 1)[0] == (19_500, 24_500)
    # 6 dwells until 1 is done; both end at 24.5 s, 6's 4.0 + 1.5 s clearance
    # sets the crossing back into the group (recalls on 2 and 6) at 30.0 s.
    assert green_intervals(log, 6)[0] == (4_000, 24_500)
    assert first(log, ev.BARRIER_TERMINATION, 1) == 30_000
    assert times(log, ev.PHASE_BEGIN_GREEN, 2) == [4_000, 30_000]


def test_no_phase_stays_green_after_a_partner_call_drops():
    # Regression (found on the SUMO rig): ring 1 reached the barrier while ring 2
    # still had a phase to serve in the group; ring 2's green was then stuck.
    pres = {4: [(10_000, 30_000)], 7: [(10_000, 40_000)], 8: [(25_000, FOREVER)],
            3: [(25_000, FOREVER)], 2: [(25_000, FOREVER)]}
    _, log, _ = run(standard_site(), 200_000, presence=pres)
    assert green_intervals(log, 7)[0] == (19_500, 39_500)       # max-out at 20 s
    assert green_intervals(log, 8)[0] == (44_500, 84_500)       # max-out at 40 s
    # 4 dwells in green at the barrier until 8 ends.
    assert green_intervals(log, 4)[0] == (19_500, 84_500)
    assert times(log, ev.BARRIER_TERMINATION, 2) == [90_000, 181_000]
    assert times(log, ev.PHASE_BEGIN_GREEN, 3) == [135_500]


def test_omitted_phase_is_never_served():
    plan = standard_plan("omit-1")
    plan["phases"][0]["omit"] = True
    site = standard_site()
    site["fallback_plan"] = plan
    _, log, _ = run(site, 120_000, pulses={9: [5_000, 50_000]}, presence={1: [(0, FOREVER)]})
    assert times(log, ev.PHASE_BEGIN_GREEN, 1) == []


def test_rest_in_red_when_configured_and_no_demand():
    site = standard_site()
    site["rest"] = "red"
    for t in site["fallback_plan"]["phases"]:
        t["recall"] = "none"
    _, log, frames = run(site, 60_000)
    # Start-up phases gap out at min green and the unit rests in all-red.
    assert green_intervals(log, 2)[0] == (4_000, 14_000)
    assert all(frames[-1].vehicle[p] == 1 for p in range(1, 9))


def test_plan_change_waits_for_the_barrier():
    from edge_agent.plan import parse_plan
    from edge_agent.intersection import parse_site
    from edge_agent.agent import Agent, Inputs
    site = parse_site(standard_site())
    new = standard_plan("long-min")
    for t in new["phases"]:
        if t["phase"] in (4, 8):
            t["min_green"] = 20.0
    plan = parse_plan(new, site)
    agent = central_agent(site)
    log = []
    for t in range(0, 80_000, 100):
        inp = Inputs(pulses={12: 1} if t == 5_000 else None,
                     **offer(plan if t == 8_000 else None, 1))
        out = agent.step(t, inp)
        log.extend(out.events)
    assert first(log, ev.PLAN_PENDING, 0) == 8_000
    assert first(log, ev.PLAN_ACTIVATED, 0) == 19_500            # at the barrier
    assert green_intervals(log, 4)[0] == (19_500, 39_500)         # the new 20 s min
    assert out.plan_id == "long-min"
