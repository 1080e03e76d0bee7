"""`edge-agent hil corridor`: the corridor measurement, one table over seeds, then the fault runs.

    edge-agent hil corridor --duration 3600 --seeds 1,2,3 --json corridor.json [--export DIR]

Same network, demand and seeds, 0.1 s steps, for SUMO's static program
(netconvert's), SUMO's actuated program, a fixed-time green wave (the brain's
plan from the free run's hour of telemetry, frozen, run by SUMO), the agents
free actuated, the agents with the brain, and the agents with the brain and its
escort of the emergency vehicles (signed priority requests to each signal ahead).
Then the fault runs on the brain case.

--export DIR writes every agent run's event log for ATSPM, one export per
intersection (tools/export.py): DIR/seed<N>-<case>/<device id>/events.csv and
detectors.csv, stamped with the rig's wall clock (it starts at 2026-01-01 00:00
UTC) in each site's zone.
"""

import json
import sys
import time

COLUMNS = (("e2e travel", "e2e_travel_time_s", "%.1f s"), ("e2e speed", "e2e_speed_kmh", "%.2f km/h"),
           ("time loss (all)", "mean_time_loss_s", "%.1f s"), ("stops/e2e trip", "e2e_stops", "%.2f"),
           ("EV travel", "ev_travel_time_s", "%.1f s"), ("EV time loss", "ev_time_loss_s", "%.1f s"),
           ("completed", "completed", "%.0f"),
           ("monitor trips", "monitor_trips", "%.0f"), ("collisions", "collisions", "%.0f"))


def mean_rows(per_seed):
    """{case: [measures per seed]} -> {case: mean measures}."""
    out = {}
    for case, rows in per_seed.items():
        m = {}
        for _, key, _ in COLUMNS:
            vals = [r[key] for r in rows if r.get(key) is not None]
            m[key] = sum(vals) / len(vals) if vals else None
        out[case] = m
    return out


def table(results):
    from tools.cmd_hil import network_lines
    return network_lines(results, COLUMNS)


def run(args):
    from hil.sumo import build
    if not build.sumo_available():
        print("edge-agent hil corridor: SUMO not found (pip install -e '.[sumo]')", file=sys.stderr)
        return 2
    from hil.sumo.corridor import build_corridor, describe
    from hil.sumo.corridor_run import CASES, FAULTS, WALL0, frozen_plan, run_case
    from hil.sumo.netmap import link_counts, load_map
    c = build_corridor()
    m = load_map(c.map, link_counts(c.net))
    seeds = [int(s) for s in args.seeds.split(",")]
    faults = FAULTS if args.faults else ()
    print("corridor %s: %s" % (c.dir, "; ".join(describe(c))))
    print("%.0f s simulated, seeds %s, 100 ms steps" % (args.duration, seeds))
    per_seed = {k: [] for k in CASES + faults}
    detail = {k: [] for k in CASES + faults}
    cost = []
    for seed in seeds:
        frozen = None
        for case in ("agents-free", "sumo-static", "sumo-actuated", "green-wave",
                     "agents-brain", "agents-escort") + faults:
            t0 = time.time()
            r = run_case(case, c, m, args.duration, seed, frozen)
            ms = dict(r["measures"])
            info = {"seed": seed, "wall_s": round(time.time() - t0, 1)}
            if "faults" in r:
                ms["monitor_trips"] = sum(len(f) for f in r["faults"].values())
                info.update(agents_s=r["agents_s"], run_wall_s=r["wall_s"],
                            faults={t: f for t, f in r["faults"].items() if f})
                cost.append((r["agents_s"], r["wall_s"], len(m.tls) * args.duration / 3600.0))
                loop = r["loop"]
                info["flags"] = loop.flag_log
                info["plans"] = [(w - WALL0, C) for w, C, _ in loop.plans]
                info["rejected"] = loop.rejected[:20]
                info["restarts"] = loop.restarts
                info["accepted"] = {t: len(a) for t, a in loop.accepted.items()}
                if loop.escort is not None:
                    info["priority"] = {t: len(p) for t, p in loop.priority.items()}
                    info["preempt_calls"] = {t: sum(1 for e in log if e[1] == 102)
                                             for t, log in r["events"].items()}
                if case == "agents-free":
                    frozen = frozen_plan(loop, WALL0 + args.duration)
                    info["frozen"] = frozen
                if args.export:
                    info["export"] = export_case(args, m, r["events"], seed, case, WALL0)
            else:
                ms["monitor_trips"] = 0
            per_seed[case].append(ms)
            detail[case].append({"measures": ms, **info})
            print("  seed %d %-14s %5.1f s  e2e %s km/h, EV %s s%s"
                  % (seed, case, time.time() - t0, ms.get("e2e_speed_kmh"), ms.get("ev_travel_time_s"),
                     ", flagged %s" % sorted(set(f[1] for f in info.get("flags", ())))
                     if info.get("flags") else ""), flush=True)
    means = mean_rows(per_seed)
    print("\nMeans over seeds %s" % seeds)
    for line in table({k: means[k] for k in CASES}):
        print("  " + line)
    b = means["agents-brain"]
    for ref in ("green-wave", "agents-free"):
        r = means[ref]
        if r["e2e_speed_kmh"]:
            print("  agents with the brain vs %s: end-to-end speed %+.1f %%"
                  % (ref, 100.0 * (b["e2e_speed_kmh"] / r["e2e_speed_kmh"] - 1)))
    for key, what in (("ev_travel_time_s", "travel"), ("ev_time_loss_s", "time loss")):
        e = means["agents-escort"][key]
        for ref in ("agents-brain", "agents-free", "sumo-actuated"):
            r = means[ref][key]
            if e is not None and r:
                print("  EV %s with the escort %.1f s vs %s (no preemption) %.1f s: %.2f of it%s"
                      % (what, e, ref, r, e / r, " (target <= 0.50)" if key == "ev_travel_time_s" else ""))
    if faults:
        print("\nFault runs (agents with the brain):")
        for line in table({k: means[k] for k in ("agents-brain",) + faults}):
            print("  " + line)
        for k in faults:
            if b["e2e_speed_kmh"] and means[k]["e2e_speed_kmh"]:
                flagged = sorted(set((f[1], f[2].split(":")[0]) for d in detail[k] for f in d["flags"]))
                print("  %-13s speed %+.1f %% of the clean run; flagged: %s"
                      % (k, 100.0 * (means[k]["e2e_speed_kmh"] / b["e2e_speed_kmh"] - 1),
                         flagged[:6] or "nothing"))
    a = sum(x[0] for x in cost)
    w = sum(x[1] for x in cost)
    h = sum(x[2] for x in cost)
    print("\nAgents' share of the agent runs' wall time: %.1f %% (%.1f s of %.1f s); core %.0f ms per "
          "intersection-hour at 100 ms steps" % (100.0 * a / w, a, w, 1000.0 * a / h))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"duration_s": args.duration, "seeds": seeds, "means": means, "runs": detail,
                       "agents_share": a / w, "core_ms_per_intersection_hour": 1000.0 * a / h},
                      f, indent=1, default=str)
        print("measures: %s" % args.json)
    trips = sum(r["monitor_trips"] for rows in per_seed.values() for r in rows)
    return 1 if trips else 0


def export_case(args, m, events, seed, case, wall0_s):
    """One agent run's ATSPM export per intersection; returns the directories written."""
    import os
    from edge_agent.intersection import parse_site
    from tools.export import rig_events, write_export
    out = []
    for tls in sorted(events):
        site = parse_site(m.tls[tls].site)
        d = os.path.join(args.export, "seed%d-%s" % (seed, case), site.device_id or tls)
        write_export(d, site, rig_events(events[tls], wall0_s * 1000), args.export_format)
        out.append(d)
    return out


def add_parser(hsub):
    p = hsub.add_parser("corridor", help="the corridor measurement: SUMO programs, green wave, "
                        "agents free, with the brain, with its escort, fault runs")
    p.add_argument("--duration", type=float, default=3600.0, metavar="S", help="simulated s (3600)")
    p.add_argument("--seeds", default="1,2,3", help="comma-separated SUMO seeds (1,2,3)")
    p.add_argument("--no-faults", dest="faults", action="store_false", help="skip the fault runs")
    p.add_argument("--json", metavar="PATH", help="write every run's measures and flags as JSON")
    p.add_argument("--export", metavar="DIR",
                   help="write each agent run's event log and detector table for ATSPM here, "
                        "one export per intersection")
    p.add_argument("--export-format", choices=("csv", "parquet"), default="csv")
    p.set_defaults(func=run)
