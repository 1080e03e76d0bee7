"""Run the edge agent on the SUMO intersection and measure it.

    from hil.sumo.run import run_agent_on_sumo, load_arterial_site
    result = run_agent_on_sumo(load_arterial_site(), duration_s=600, seed=42)
    result["measures"]["mean_time_loss_s"]

Every ``step_ms`` the agent gets the loops SUMO reported for the last step and
its indications are shown in SUMO for the next one (the agent sees at time t
what the detectors saw up to t, like a real cabinet polling its detector
cards).
"""

import time

from edge_agent import events as ev
from edge_agent.agent import Agent, Inputs
from edge_agent.intersection import parse_site

from hil.sumo import build as _build
from hil.sumo.bridge import SumoBridge, run_sumo_program


def load_arterial_site(network_dir=None):
    """The site configuration of the SUMO arterial (a plain dict)."""
    return _build.load_site(network_dir)


def step_pulses(r, last_level):
    """The agent's pulses for a bridge StepResult: the loop's level shows the
    first vehicle of a rising edge; every further vehicle that reached the loop
    this step is a pulse, so the agent's detector-on events count vehicles."""
    pulses = {}
    for ch, n in r.pulses.items():
        if n:
            extra = n - (1 if r.detectors[ch] and not last_level[ch] else 0)
            if extra > 0:
                pulses[ch] = extra
    return pulses


def run_agent_on_sumo(site_dict=None, duration_s=600.0, seed=42, demand=None, network_dir=None,
                      step_ms=100, use_libsumo=None, cache_dir=None, gui=False, on_step=None):
    """Drive ``Agent(parse_site(site_dict))`` through ``SumoBridge``.

    Returns {"measures": SUMO measures (see build.parse_measures) plus
    "agent_faults", "agent_mode"; "events": the agent's event log as
    (ms, code, param) tuples; "terminations": {phase: {gap_out, max_out,
    force_off}}; "wall_s": run time}.
    ``on_step(now_ms, outputs, step_result)`` is called each step if given.
    """
    site_dict = site_dict if site_dict is not None else load_arterial_site(network_dir)
    agent = Agent(parse_site(site_dict))
    duration_ms = int(round(duration_s * 1000))
    log = []
    faults = []
    t0 = time.time()
    bridge = SumoBridge(network_dir=network_dir, demand=demand, seed=seed, step_ms=step_ms,
                        use_libsumo=use_libsumo, cache_dir=cache_dir, gui=gui)
    bridge.start()
    try:
        now = 0
        levels, pulses = {}, {}
        last_level = {ch: False for ch in bridge.channels}
        while now < duration_ms:
            out = agent.step(now, Inputs(detectors=levels, pulses=pulses))
            if out.events:
                log.extend(out.events)
            if out.fault is not None and not faults:
                faults.append((now, out.fault))
            r = bridge.step(out.vehicle)
            if on_step is not None:
                on_step(now, out, r)
            now = r.time_ms
            levels = r.detectors
            pulses = step_pulses(r, last_level)
            last_level = levels
        mode = agent.mode_name
    finally:
        measures = bridge.close()
    measures["controller"] = "edge-agent"
    measures["agent_mode"] = mode
    measures["agent_faults"] = [(ms, _fault_text(f)) for ms, f in faults]
    return {"measures": measures, "events": log, "terminations": terminations(log),
            "wall_s": round(time.time() - t0, 3)}


def _fault_text(f):
    return getattr(f, "detail", None) or repr(f)


def terminations(log):
    """{phase: {"gap_out": n, "max_out": n, "force_off": n}} from an event log."""
    names = {ev.PHASE_GAP_OUT: "gap_out", ev.PHASE_MAX_OUT: "max_out",
             ev.PHASE_FORCE_OFF: "force_off"}
    out = {}
    for _, code, param in log:
        if code in names:
            d = out.setdefault(param, {"gap_out": 0, "max_out": 0, "force_off": 0})
            d[names[code]] += 1
    return out


def compare(duration_s=600.0, seed=42, demand=None, **kw):
    """The agent, SUMO's actuated controller and a static program on the same
    network, demand and seed: {name: measures}."""
    res = {"edge-agent": run_agent_on_sumo(None, duration_s, seed, demand, **kw)["measures"]}
    for prog in ("actuated", "static"):
        res["sumo-" + prog] = run_sumo_program(prog, duration_s=duration_s, seed=seed, demand=demand)
    return res


if __name__ == "__main__":   # python -m hil.sumo.run [duration_s] [seed]
    import sys
    dur = float(sys.argv[1]) if len(sys.argv) > 1 else 600.0
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 42
    for name, m in compare(dur, seed).items():
        print("%-14s completed %4d  time loss %6.2f s  waiting %6.2f s  unfinished %3d"
              % (name, m["completed"], m["mean_time_loss_s"], m["mean_waiting_time_s"], m["unfinished"]))
