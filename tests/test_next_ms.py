"""Event-driven stepping (Agent.next_ms) against stepping every 100 ms.

The same agent, site, plans and inputs are run two ways: a step every 100 ms,
and event-driven (a step only at an input change or at next_ms rounded up to
the 100 ms grid, plus the tick before an input change while a detector is
occupied - the contract in edge_agent/nextstep.py). Both must log exactly the same events and show
exactly the same indication changes.
"""

import os

from hypothesis import event, given, settings, HealthCheck, strategies as st

from edge_agent.agent import Agent, Inputs
from edge_agent.intersection import parse_site
from edge_agent.plan import parse_plan
from edge_agent.standard import standard_site, standard_plan
from tests.family import sites, plans, preempts, tenths
from tests.test_coordination_props import coordinated_plans
from tests.portable.sheets import ALWAYS_UP, offer

SOAK = os.environ.get("EDGE_AGENT_SOAK") == "1"
TICK = 100


@st.composite
def scenarios(draw):
    site = draw(sites())
    # Detector diagnostics with short limits, so that their timers fire and restore.
    for d in site["detectors"] + site["ped_detectors"]:
        if draw(st.booleans()):
            d["no_activity"] = draw(st.sampled_from([0.5, 1.0]))
            d["max_presence"] = draw(st.sampled_from([0.25, 0.5]))
            d["erratic"] = draw(st.sampled_from([0, 3]))
            d["restore"] = draw(tenths(1.0, 20.0))
    # Preempts configured on some sites: an idle table must cost no steps, a called
    # one (delay, sequence, max presence) steps every tick.
    if draw(st.booleans()):
        site["preempts"] = draw(preempts(site))
    numbers = [e["number"] for e in site.get("preempts", [])]
    extra = draw(plans(site, "plan-a"))
    channels = [d["channel"] for d in site["detectors"]]
    peds = [d["channel"] for d in site["ped_detectors"]]
    end = draw(st.integers(60, 400)) * 1000
    changes = {}
    for _ in range(draw(st.integers(0, 60))):
        t = draw(st.integers(1, end // TICK)) * TICK
        kind = draw(st.sampled_from(["level", "level", "level", "pulse", "ped", "ped-off", "plan",
                                     "preempt"]))
        if kind in ("ped", "ped-off") and not peds or kind == "preempt" and not numbers:
            kind = "level"
        if kind == "plan":
            ch = draw(st.integers(0, 1))
        elif kind == "preempt":
            ch = draw(st.sampled_from(numbers))
        else:
            ch = draw(st.sampled_from(peds if kind.startswith("ped") else channels))
        changes.setdefault(t, []).append((kind, ch))
    return site, extra, end, changes


def _inputs(state, t, changes, plans_, version, wall0=None):
    """Apply the changes at t to state; the Inputs of a step at t (changes=True) or between."""
    pulses, plan = {}, None
    for kind, ch in changes.get(t, ()):
        if kind == "level":
            state["levels"][ch] = not state["levels"].get(ch, False)
        elif kind == "pulse":
            pulses[ch] = pulses.get(ch, 0) + 1
        elif kind == "ped":
            state["peds"][ch] = True
        elif kind == "ped-off":
            state["peds"][ch] = False
        elif kind == "preempt":
            state["preempts"][ch] = not state["preempts"].get(ch, False)
        else:
            plan = plans_[ch]
            version[0] += 1
    link = offer(plan, version[0]) if plan is not None else {}
    return Inputs(detectors=dict(state["levels"]), pulses=pulses, peds=dict(state["peds"]),
                  preempts=dict(state["preempts"]), wall_ms=_wall(wall0, t), **link)


def _quiet(state, t=None, wall0=None):
    return Inputs(detectors=dict(state["levels"]), peds=dict(state["peds"]),
                  preempts=dict(state["preempts"]), wall_ms=_wall(wall0, t))


def _wall(wall0, t):
    """The wall clock of a step at t: None, or advancing with the monotonic clock."""
    return None if wall0 is None else wall0 + t


class Trace:
    def __init__(self):
        self.events, self.shown, self.last, self.steps = [], [], None, 0

    def add(self, out):
        self.steps += 1
        self.events.extend(out.events)
        shown = (out.vehicle, out.ped, out.mode, out.fault is not None)
        if shown != self.last:
            self.shown.append((out.ms, shown))
            self.last = shown


def run_every_tick(site, plans_, end, changes, wall0=None):
    agent = Agent(site, link_policy=ALWAYS_UP)
    state, version, trace = {"levels": {}, "peds": {}, "preempts": {}}, [0], Trace()
    for t in range(0, end + 1, TICK):
        inp = _inputs(state, t, changes, plans_, version, wall0) if t in changes \
            else _quiet(state, t, wall0)
        trace.add(agent.step(t, inp))
    return trace


def run_event_driven(site, plans_, end, changes, wall0=None):
    agent = Agent(site, link_policy=ALWAYS_UP)
    state, version, trace = {"levels": {}, "peds": {}, "preempts": {}}, [0], Trace()
    times = sorted(changes)
    t = 0
    trace.add(agent.step(0, _inputs(state, 0, changes, plans_, version, wall0)))
    i = 0
    while True:
        while i < len(times) and times[i] <= t:
            i += 1
        due = agent.next_ms(t)
        assert due > t, "next_ms(%d) = %d is not after the step" % (t, due)
        due = -(-due // TICK) * TICK
        change = times[i] if i < len(times) else None
        if change is not None and change <= due:
            if change - TICK > t and any(state["levels"].values()):
                # The tick before an input change, with the old inputs.
                trace.add(agent.step(change - TICK, _quiet(state, change - TICK, wall0)))
            t = change
            inp = _inputs(state, t, changes, plans_, version, wall0)
        else:
            t = due
            inp = _quiet(state, t, wall0)
        if t > end:
            break
        trace.add(agent.step(t, inp))
    return trace


@settings(max_examples=400 if SOAK else 60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenarios())
def test_event_driven_matches_every_tick(scenario):
    site_d, extra, end, changes = scenario
    site = parse_site(site_d)
    plans_ = [parse_plan(site_d["fallback_plan"], site), parse_plan(extra, site)]
    a = run_every_tick(site, plans_, end, changes)
    b = run_event_driven(site, plans_, end, changes)
    assert b.events == a.events
    assert b.shown == a.shown


@st.composite
def coordinated_scenarios(draw):
    """The standard site under two random coordinated plans (fixed or floating force-offs,
    short-way or dwell corrections), plan changes among them and the free plan, random
    vehicle and pedestrian demand, a wall clock or none."""
    site = standard_site()
    pa = draw(coordinated_plans("coord-a"))
    pb = draw(coordinated_plans("coord-b"))
    channels = [d["channel"] for d in site["detectors"]]
    peds = [d["channel"] for d in site["ped_detectors"]]
    end = draw(st.integers(200, 600)) * 1000
    changes = {draw(st.integers(1, 20)) * TICK: [("plan", 1)]}
    for _ in range(draw(st.integers(0, 80))):
        t = draw(st.integers(1, end // TICK)) * TICK
        kind = draw(st.sampled_from(["level", "level", "level", "pulse", "ped", "ped-off",
                                     "plan"]))
        if kind == "plan":
            ch = draw(st.integers(0, 2))
        else:
            ch = draw(st.sampled_from(peds if kind.startswith("ped") else channels))
        changes.setdefault(t, []).append((kind, ch))
    wall0 = draw(st.one_of(st.none(), st.integers(0, 86_400_000 - 1)))
    return site, [pa, pb], end, changes, wall0


@settings(max_examples=300 if SOAK else 60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(coordinated_scenarios())
def test_event_driven_matches_every_tick_under_a_cycle_timer(scenario):
    # A running cycle timer no longer means a step every tick: next_ms names its cycle
    # end, yield points and force-offs. The two rigs must still
    # log the same events (yield points, force-offs, cycle states) and show the same.
    site_d, coordinated, end, changes, wall0 = scenario
    site = parse_site(site_d)
    plans_ = [parse_plan(site_d["fallback_plan"], site)] + [parse_plan(p, site)
                                                             for p in coordinated]
    a = run_every_tick(site, plans_, end, changes, wall0)
    b = run_event_driven(site, plans_, end, changes, wall0)
    assert b.events == a.events
    assert b.shown == a.shown
    event("a cycle timer ran: %s" % any(e[1] == 131 for e in a.events))


def test_under_a_running_cycle_timer_event_driven_steps_a_fraction_of_the_ticks():
    # 10 minutes of a coordinated plan (100 s cycle, fixed force-offs) with side-street
    # and left-turn demand every 20 s: identical logs, the timer entered and corrected,
    # and most ticks skipped.
    site_d = standard_site()
    site = parse_site(site_d)
    plan = standard_plan("coord-fixed")
    plan["coordination"] = {
        "pattern": 3, "cycle": 100.0, "offset": 17.0,
        "splits": {"1": 15.0, "2": 35.0, "3": 15.0, "4": 35.0,
                   "5": 15.0, "6": 35.0, "7": 15.0, "8": 35.0},
        "coordinated": [2, 6], "force_mode": "fixed", "max_mode": "max1",
        "correction": "shortway", "max_correction": 0.17}
    plans_ = [parse_plan(site_d["fallback_plan"], site), parse_plan(plan, site)]
    by_phase = {d["phase"]: d["channel"] for d in site_d["detectors"]}
    changes = {100: [("plan", 1)]}
    for t in range(20_000, 600_000, 20_000):
        for p in (1, 3, 4, 8):
            changes.setdefault(t, []).append(("pulse", by_phase[p]))
    a = run_every_tick(site, plans_, 600_000, changes, wall0=36_000_000)
    b = run_event_driven(site, plans_, 600_000, changes, wall0=36_000_000)
    assert b.events == a.events and b.shown == a.shown
    codes = [e[1] for e in a.events]
    assert codes.count(131) == 1 and codes.count(151) >= 8     # entered; yields in both rings
    assert a.steps == 6001 and b.steps < a.steps // 4, (a.steps, b.steps)
