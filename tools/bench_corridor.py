"""Corridor rig cost: the agents' share of wall time and the core's cost per intersection-hour."""

import os
import platform

TARGET_SHARE = 0.20
TARGET_CORE_MS = 50.0


def add_arguments(p):
    p.add_argument("--duration", type=float, default=3600.0, metavar="S", help="simulated s (3600)")
    p.add_argument("--seed", type=int, default=1)


def run(args):
    from hil.sumo.corridor import build_corridor
    from hil.sumo.netmap import link_counts, load_map
    from hil.sumo import network_rig
    c = build_corridor()
    m = load_map(c.map, link_counts(c.net))
    routes, add = [c.routes, c.ev_routes], [c.loops]
    peer = network_rig.run_program("actuated", m, c.net, routes, add, args.duration, args.seed)
    n = len(m.tls)
    hours = n * args.duration / 3600.0
    print("machine: %s, %s; %s %s; load average %s"
          % (platform.machine(), platform.processor() or platform.platform(),
             platform.python_implementation(), platform.python_version(),
             " ".join("%.2f" % x for x in os.getloadavg())))
    from hil.sumo.corridor_run import BrainLoop, brain_config, ev_routes, probe_routes, PROBE_SHARE
    runs = []
    for label, event_driven, brain in (("every agent stepped every 100 ms", False, False),
                                       ("event-driven (loop change or next_ms)", True, False),
                                       ("with the brain, its escort and probes, every tick", False, True),
                                       ("with the brain, its escort and probes, event-driven", True, True)):
        hooks = None
        if brain:
            cfg = brain_config(m, c)
            hooks = BrainLoop(m, cfg, seed=args.seed, escort=ev_routes(c),
                              probes=(PROBE_SHARE, probe_routes(c, cfg)))
        r = network_rig.run_agents(m, c.net, routes, add, args.duration, args.seed,
                                   hooks=hooks, event_driven=event_driven)
        r["brain"] = brain
        runs.append(r)
        share = r["agents_s"] / r["wall_s"]
        core_ms = 1000.0 * r["agents_s"] / hours
        print("corridor: %d signals, %.0f s simulated, seed %d, SUMO at 100 ms, %d vehicles "
              "completed; %s" % (n, args.duration, args.seed, r["measures"]["completed"], label))
        print("  agents in the loop (libsumo)  %7.2f s wall" % r["wall_s"])
        print("  of which the agents' cores    %7.2f s = %.1f %% (target <= %.0f %%: %s)"
              % (r["agents_s"], 100 * share, 100 * TARGET_SHARE,
                 "met" if share <= TARGET_SHARE else "NOT met"))
        print("  core per intersection-hour    %7.0f ms (target <= %.0f ms: %s)"
              % (core_ms, TARGET_CORE_MS, "met" if core_ms <= TARGET_CORE_MS else "NOT met"))
        print("  agent steps                   %7d of %d signal-ticks (%.1f %%)"
              % (r["agent_steps"], r["steps"] * n, 100.0 * r["agent_steps"] / (r["steps"] * n)))
        print("  light states pushed to SUMO   %7d of %d signal-ticks (%.2f %%: only on a change)"
              % (r["measures"]["pushes"], r["steps"] * n,
                 100.0 * r["measures"]["pushes"] / (r["steps"] * n)))
    same = True
    for a, b, what in ((runs[0], runs[1], "free"), (runs[2], runs[3], "with the brain")):
        logs = all(a["events"][t] == b["events"][t] for t in a["events"])
        same = same and logs and a["measures"] == b["measures"]
        print("  %s: event logs every tick / event-driven identical: %s; same traffic measures: %s"
              % (what, "yes" if logs else "NO", "yes" if a["measures"] == b["measures"] else "NO"))
    print("  peer: SUMO's actuated program alone (sumo binary, same net, demand, seed) %.2f s wall"
          % peer["wall_s"])
    return 0 if same else 1
