"""`edge-agent hil realtime`: the corridor at wall-clock speed with real processes, beside its
virtual-time twin (hil/sumo/realtime.py, docs/corridor.md "The real-time run").

    edge-agent hil realtime --minutes 10 --plan-every 130

Prints, plan by plan, when the brain published it and with which cycle in each
run, when each agent accepted it and when it was in force, then how late SUMO's
wall-clock steps began, the MMUs' flags and SUMO's safety counts.
"""

import json
import sys
import tempfile


def add_parser(hsub):
    p = hsub.add_parser("realtime", help="the corridor in real time: edge-agent run per signal on "
                        "an emulated cabinet, Mosquitto, brain run; vs virtual time")
    p.add_argument("--minutes", type=float, default=10.0, help="wall-clock minutes (default 10)")
    p.add_argument("--plan-every", type=float, default=130.0, metavar="S",
                   help="the brain's first plan and planning period, s (default 130)")
    p.add_argument("--bin", type=float, default=10.0, metavar="S", help="the brain's bin, s (default 10)")
    p.add_argument("--seed", type=int, default=1, help="SUMO seed (default 1)")
    p.add_argument("--work", metavar="DIR", help="keep the processes' files here (default: a temp dir)")
    p.add_argument("--json", metavar="PATH", help="write both runs' plans, verdicts and measures")
    p.set_defaults(func=run)


def table(rows, real, twin):
    """The plan table's lines."""
    active = {}
    for t, hist in real["active"].items():
        for at, v, _, source in hist:
            if source == "central" and (t, v) not in active:
                active[(t, v)] = at
    acc = {(d["tls"], d["version"]): d["at_s"] for d in real["verdicts"] if d["result"] == "accepted"}
    out = ["%-4s %3s  %-15s  %-11s  %-9s  %-9s  %-15s" % ("sig", "v", "published s v/r", "cycle v/r",
                                                        "split Δ", "offset Δ", "in force s v/r")]
    for r in rows:
        key = (r["tls"], r["version"])
        twin_act = twin["activated"][r["tls"]]
        va = twin_act[r["version"] - 1] if len(twin_act) >= r["version"] else None
        if not r["real"]:
            out.append("%-4s %3d  %6.1f / -   never published in real time" % (r["tls"], r["version"],
                                                                              r["virtual_at_s"]))
            continue
        out.append("%-4s %3d  %6.1f / %6.1f  %4d / %4d  %7.1f s  %7d s  %6s / %6s%s" % (
            r["tls"], r["version"], r["virtual_at_s"], r["real_at_s"], r["virtual_cycle"],
            r["real_cycle"], r["split_diff"], r["offset_diff"],
            "-" if va is None else "%.1f" % va,
            "-" if key not in active else "%.1f" % active[key],
            "" if key in acc else "  NOT ACCEPTED"))
    return out


def run(args):
    from hil.sumo import build as sb
    if not sb.sumo_available():
        print("edge-agent hil realtime: Eclipse SUMO is not installed (pip install -e '.[sumo]')",
              file=sys.stderr)
        return 2
    if args.minutes <= 0 or args.plan_every <= 0 or args.bin <= 0:
        print("edge-agent hil realtime: --minutes, --plan-every and --bin must be positive",
              file=sys.stderr)
        return 2
    from hil.sumo.corridor import build_corridor
    from hil.sumo.netmap import link_counts, load_map
    from hil.sumo.realtime import RealtimeCorridor, compare, virtual_twin
    c = build_corridor()
    m = load_map(c.map, link_counts(c.net))
    duration = args.minutes * 60.0
    over = {"first_plan_s": args.plan_every, "plan_every_s": args.plan_every,
            "window_s": args.plan_every, "bin_s": args.bin}
    work = args.work or tempfile.mkdtemp(prefix="edge-agent-realtime-")
    print("real time: %d signals, %.0f s, brain planning every %g s; files in %s"
          % (len(m.tls), duration, args.plan_every, work), flush=True)
    rt = RealtimeCorridor(c, m, work, duration_s=duration, seed=args.seed, brain_over=over)
    real = rt.run()
    print("virtual time: the same corridor, demand, seed and brain config", flush=True)
    twin = virtual_twin(c, m, rt.brain_config, duration, seed=args.seed)
    rows = compare(twin, real)
    for line in table(rows, real, twin):
        print(line)
    late = real["lateness_ms"]
    print("SUMO steps: %d, late p50 %.1f ms, p99 %.1f ms, max %.1f ms, %d over 100 ms"
          % (real["steps"], late["p50"], late["p99"], late["max"], late["over_100"]))
    print("flagged per plan: real %s, virtual %s" % (real["flagged"], twin["flagged"]))
    print("agents' exit codes %s; MMU flags %s; faults reported %s"
          % (rt.agent_rc, real["mmu"], real["faults"] or "none"))
    for name, meas in (("real", real["measures"]), ("virtual", twin["measures"])):
        print("%-7s completed %d, mean time loss %s s, collisions %s, teleports %s"
              % (name, meas["completed"], meas["mean_time_loss_s"], meas.get("collisions"),
                 meas.get("teleports")))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "real": {k: v for k, v in real.items() if k != "field_logs"},
                       "virtual": twin, "agent_rc": rt.agent_rc}, f, indent=1, default=str)
    bad = [r for r in rows if not r["real"]] or any(real["mmu"].values()) or \
        any(v != 0 for v in rt.agent_rc.values())
    return 1 if bad else 0
