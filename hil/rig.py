"""Closed-loop runs on the built-in simulator: the real agent, or the fixed-time baseline.

    result = run_actuated("suburban", duration_s=900, seed=1)
    result.measures.total.mean_delay_s, result.events[:5]

Both runners use the scenario's embedded site (and, for the agent, its
fallback plan), drive the simulator at a fixed step and return a RunResult:
the measures, the controller's event log as (ms, code, param) tuples with the
Indiana codes, and the simulator and controller for closer inspection.

`on_step(now_ms, outputs, agent)` lets a caller watch (or pace) every step of
the agent's run; with `interruptible=True` a Ctrl-C ends the run early and the
result covers the time simulated so far (`result.interrupted` is then True).
"""

from edge_agent.agent import Agent, Inputs
from edge_agent.intersection import parse_site

from hil.fixed_time import FixedTimeController, fixed_time_plan
from hil.loop import run_loop
from hil.scenario import load_scenario
from hil.sim import IntersectionSim


class RunResult:
    """What a run leaves: measures, event log, and the simulator and controller objects."""

    __slots__ = ("scenario", "seed", "duration_s", "measures", "events", "sim", "controller",
                 "interrupted")

    def __iter__(self):
        """Unpacks as (measures, events)."""
        return iter((self.measures, self.events))

    @property
    def fault(self):
        """The agent's latched monitor fault as a dict (None: none, or not an agent)."""
        status = getattr(self.controller, "status", None)
        if status is None:
            return None
        return status(self.controller.last_ms or 0)["fault"]


def _result(sc, sim, duration_s, events, controller, interrupted=False):
    r = RunResult()
    r.scenario, r.seed, r.duration_s = sc, sim.seed, duration_s
    r.measures, r.events, r.sim, r.controller = sim.measures(), events, sim, controller
    r.interrupted = interrupted
    return r


def run_actuated(scenario, duration_s=None, seed=None, step_ms=100, progress=None,
                 on_step=None, interruptible=False):
    """Run the edge agent (site fallback plan, fully actuated) against the simulator."""
    sc = load_scenario(scenario)
    duration_s = sc.duration_s if duration_s is None else duration_s
    agent = Agent(parse_site(sc.site), now=0)
    sim = IntersectionSim(sc, seed)
    events = []

    def decide(now, inputs):
        out = agent.step(now, Inputs(detectors=inputs.detectors, pulses=inputs.pulses, peds=inputs.peds))
        events.extend(out.events)
        if on_step is not None:
            on_step(now, out, agent)
        return out.vehicle

    try:
        run_loop(sim, decide, duration_s, step_ms, progress)
    except KeyboardInterrupt:
        if not interruptible or sim.prev_ms is None:
            raise
        return _result(sc, sim, sim.prev_ms / 1000, events, agent, interrupted=True)
    return _result(sc, sim, duration_s, events, agent)


def run_fixed_time(scenario, duration_s=None, seed=None, step_ms=100, progress=None):
    """Run the Webster fixed-time baseline (hil.fixed_time) against the simulator."""
    sc = load_scenario(scenario)
    duration_s = sc.duration_s if duration_s is None else duration_s
    ctl = FixedTimeController(fixed_time_plan(sc, duration_s))
    sim = IntersectionSim(sc, seed)
    run_loop(sim, lambda now, inputs: ctl.step(now).vehicle, duration_s, step_ms, progress)
    return _result(sc, sim, duration_s, ctl.events, ctl)
