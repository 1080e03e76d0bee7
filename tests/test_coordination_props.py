"""Coordination properties over random coordinated plans and random demand.

For random cycles, splits, offsets, force and correction modes on the
standard 8-phase site, with plan changes (coordinated <-> coordinated <->
free) at random moments:
- the safety rules hold after every step (independent SafetyChecker);
- once the last plan has had time to correct (at most 4 cycles at 17 %),
  every coordinated yield point falls exactly where the wall clock, the
  offset and the splits put it, and every non-coordinated green ends by its
  force-off point - positions computed here from the plan dict alone.
"""

import os
import random

from hypothesis import given, settings, strategies as st, HealthCheck

from edge_agent.agent import Agent, Inputs
from edge_agent.intersection import parse_site
from edge_agent.plan import parse_plan
from edge_agent.standard import standard_site, standard_plan
from edge_agent import events as ev
from tests.portable.sheets import ALWAYS_UP, offer
from tests.safety_checker import SafetyChecker

SOAK = os.environ.get("EDGE_AGENT_SOAK") == "1"
DAY = 86_400_000
LEFT_FLOOR, THROUGH_FLOOR = 100, 265      # tenths of a second: min/ped + clearances


@st.composite
def coordinated_plans(draw, plan_id, slack=0):
    """slack: tenths of a second of split every phase gets beyond its floor."""
    lf, tf = LEFT_FLOOR + slack, THROUGH_FLOOR + slack
    cycle = draw(st.integers(max(80, (2 * (lf + tf) + 9) // 10), 150)) * 10     # tenths
    g1 = draw(st.integers(lf + tf, cycle - lf - tf))
    g2 = cycle - g1
    splits = {}
    for (a, b), total in (((1, 2), g1), ((5, 6), g1), ((3, 4), g2), ((7, 8), g2)):
        left = draw(st.integers(lf, total - tf))
        splits[str(a)] = left / 10
        splits[str(b)] = (total - left) / 10
    plan = standard_plan(plan_id)
    plan["coordination"] = {
        "pattern": draw(st.integers(1, 253)), "cycle": cycle / 10,
        "offset": draw(st.integers(0, cycle - 1)) / 10, "splits": splits,
        "coordinated": [2, 6], "force_mode": draw(st.sampled_from(["fixed", "floating"])),
        "max_mode": draw(st.sampled_from(["inhibit", "max1", "max2"])),
        # Dwell may stretch a cycle to twice its length: keep that within the
        # site's 240 s maximum cycle, as validation demands.
        "correction": draw(st.sampled_from(["shortway", "dwell"] if cycle <= 1200 else ["shortway"])),
        "max_correction": 0.17}
    return plan


def layout(plan):
    """Force-off and yield positions (ms into the cycle), from the dict alone."""
    k = plan["coordination"]
    t = {x["phase"]: x for x in plan["phases"]}
    fo = {}
    for ring in ([1, 2, 3, 4], [5, 6, 7, 8]):
        pos = 0
        for p in ring:
            split = round(k["splits"][str(p)] * 1000)
            fo[p] = pos + split - round((t[p]["yellow"] + t[p]["red_clear"]) * 1000)
            pos += split
    return fo


@settings(max_examples=250 if SOAK else 25, deadline=None, derandomize=not SOAK,
          suppress_health_check=[HealthCheck.too_slow])
@given(coordinated_plans("coord-a"), coordinated_plans("coord-b"),
       st.integers(0, 2**32 - 1), st.sampled_from([0.005, 0.03, 0.1]))
def test_coordinated_plans_hold_their_force_offs_offsets_and_safety(pa, pb, seed, level):
    site_d = standard_site()
    site = parse_site(site_d)
    plans = [parse_plan(pa, site), parse_plan(pb, site), site.fallback_plan]
    agent = Agent(site, link_policy=ALWAYS_UP)
    checker = SafetyChecker(site_d, [pa, pb, site_d["fallback_plan"]])
    rng = random.Random(seed)
    # Start anywhere in the day but finish before midnight: a cycle that does
    # not divide 24 h re-references there and corrects again (by design).
    wall0 = rng.randrange(DAY - 3_600_000)
    levels = {}
    # Random plan changes early on; the last one is plan b, at a random moment.
    changes = sorted(rng.randrange(0, 300_000, 100) for _ in range(3))
    schedule = {t: plans[rng.randrange(3)] for t in changes[:-1]}
    schedule[changes[-1]] = plans[1]
    k = pb["coordination"]
    cycle = round(k["cycle"] * 1000)
    # The last change waits for a barrier (<= one free cycle, 141 s), then up to a
    # partial cycle and six corrections of at most 17 % each reach the offset.
    settle = changes[-1] + 150_000 + cycle + 6 * (cycle + cycle // 5)
    until = settle + 3 * cycle
    fo = layout(pb)
    offset = round(k["offset"] * 1000)
    began = {}
    agent_log = []
    for now in range(0, until, 100):
        for ch in range(1, 17):
            if rng.random() < level:
                levels[ch] = not levels.get(ch, False)
        peds = {ch: True for ch in range(1, 5) if rng.random() < level / 5}
        version = sum(1 for t in changes if t <= now)
        out = agent.step(now, Inputs(detectors=dict(levels), peds=peds, wall_ms=wall0 + now,
                                     **offer(schedule.get(now), version)))
        assert out.fault is None, out.fault
        agent_log.extend(out.events)
        checker.check(now, out)
        if now < settle:
            continue
        assert out.plan_id == "coord-b"
        tc = ((wall0 + now) % DAY - offset) % cycle
        for ms, code, p in out.events:
            if code == ev.COORD_YIELD:
                # Steps are 100 ms apart: the yield shows at the first step at or after it.
                assert 0 <= (tc - fo[p]) % cycle < 100, \
                    "yield of %d at cycle %d ms, expected %d" % (p, tc, fo[p])
            elif code == ev.PHASE_BEGIN_GREEN:
                began[p] = now
            elif code == ev.PHASE_BEGIN_YELLOW and p not in (2, 6) and p in began:
                # The green lies within the cycle window that ends at its force-off.
                start = ((wall0 + began[p]) % DAY - offset) % cycle
                assert (tc - start) % cycle <= (fo[p] - start) % cycle + 100, \
                    "phase %d green %d..%d ms ran past its force-off %d" % (p, start, tc, fo[p])
                if k["force_mode"] == "floating":
                    t = {x["phase"]: x for x in pb["phases"]}[p]
                    split_green = round((k["splits"][str(p)] - t["yellow"] - t["red_clear"]) * 1000)
                    assert now - began[p] <= split_green, \
                        "phase %d floating green %d..%d ms longer than its split green %d ms: %s" % (
                            p, began[p], now, split_green,
                            [e for e in agent_log if began[p] - 30_000 <= e[0] <= now and e[1] in
                             (1, 4, 5, 6, 8, 21, 22, 23, 150, 151)])
