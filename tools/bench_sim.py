"""Built-in simulator throughput: simulated hours per wall second with the agent in the loop."""

import platform
import time

from hil.rig import run_actuated, run_fixed_time
from hil.scenario import load_scenario

TARGET_REALTIME = 1000.0


def bench_sim(scenario="arterial", hours=1.0, seed=None, step_ms=100):
    """Wall time of the agent-in-the-loop run and of the simulator under fixed time alone."""
    sc = load_scenario(scenario)
    dur = hours * 3600
    t0 = time.perf_counter()
    agent = run_actuated(sc, dur, seed, step_ms)
    wall_agent = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_fixed_time(sc, dur, seed, step_ms)
    wall_sim = time.perf_counter() - t0
    return {
        "scenario": sc.name, "hours": hours, "seed": agent.seed, "step_ms": step_ms,
        "vehicles": agent.measures.total.arrivals,
        "wall_s": wall_agent, "realtime_factor": dur / wall_agent,
        "sim_hours_per_wall_s": hours / wall_agent,
        "fixed_wall_s": wall_sim, "fixed_realtime_factor": dur / wall_sim,
        "python": "%s %s" % (platform.python_implementation(), platform.python_version()),
        "machine": "%s, %s" % (platform.machine(), platform.processor() or platform.platform()),
    }


def add_arguments(p):
    p.add_argument("--scenario", default="arterial", help="built-in scenario or JSON file (default arterial)")
    p.add_argument("--hours", type=float, default=1.0, help="simulated hours (default 1)")
    p.add_argument("--seed", type=int, help="demand seed (default: the scenario's)")


def run(args):
    r = bench_sim(args.scenario, args.hours, args.seed)
    print("machine: %s; %s" % (r["machine"], r["python"]))
    print("%s: %.1f simulated h, %d vehicles, %d ms steps, seed %d"
          % (r["scenario"], r["hours"], r["vehicles"], r["step_ms"], r["seed"]))
    print("  agent in the loop    %6.2f s wall  = %6.0fx real time = %5.2f simulated hours per wall second"
          % (r["wall_s"], r["realtime_factor"], r["sim_hours_per_wall_s"]))
    print("  fixed time (no agent) %5.2f s wall  = %6.0fx real time (the simulator's own share)"
          % (r["fixed_wall_s"], r["fixed_realtime_factor"]))
    print("  target >= %.0fx real time: %s" % (TARGET_REALTIME,
                                              "met" if r["realtime_factor"] >= TARGET_REALTIME else "NOT met"))
    return 0
