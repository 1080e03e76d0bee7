"""`edge-agent hil`: closed-loop runs of the agent on the rig's simulated intersections.

    edge-agent hil run arterial            agent vs Webster fixed time, built-in simulator
    edge-agent hil sumo --duration 3600    agent vs SUMO's actuated and static programs
    edge-agent hil run arterial --export out/   ... and the agent's log for ATSPM (tools/export.py)
    edge-agent hil sumo --net N --routes R[,EV] --map M [--additional A]   any SUMO network
    edge-agent hil sumo map NET.net.xml    write a starting map, sites and loops to edit
    edge-agent hil corridor                the corridor measurement (docs/corridor.md)
    edge-agent hil realtime --minutes 10   the corridor at wall-clock speed, real processes

`hil sumo` runs headless: the agent drives SUMO's traffic light through the
bridge (hil.sumo.bridge), then SUMO runs its own controllers on the same
network, demand and seed, with the min/max greens and clearances of the same
site; the measures come from SUMO's tripinfo output.
"""

import json
import sys

from edge_agent.intersection import parse_site

from tools import report
from tools.export import ExportError, add_export_arguments, export_rig_run
from tools.cmd_demo import ProgressBar, open_scenario, print_comparison, run_pair
from tools.timeline import summary_lines

SUMO_COLUMNS = (("completed", "completed", "%d"), ("unfinished", "unfinished", "%d"),
                ("mean time loss", "mean_time_loss_s", "%.2f s"),
                ("mean waiting", "mean_waiting_time_s", "%.2f s"),
                ("mean travel time", "mean_travel_time_s", "%.2f s"))


def run_scenario(args):
    opened = open_scenario(args, "edge-agent hil run")
    if opened is None:
        return 2
    sc, site, duration, seed = opened
    agent, fixed = run_pair(sc, duration, seed)
    print_comparison(sc, site, agent, fixed, args.cycles)
    if args.movements:
        for name, r in (("actuated agent", agent), ("Webster fixed time", fixed)):
            print("\nMeasures per movement, %s:" % name)
            for line in r.measures.summary_lines():
                print("  " + line)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"scenario": sc.name, "seed": seed, "duration_s": agent.duration_s,
                       "agent": agent.measures.as_dict(), "fixed_time": fixed.measures.as_dict(),
                       "comparison": report.comparison_rows(agent.measures, fixed.measures)}, f, indent=1)
        print("\nmeasures: %s" % args.json)
    if args.export and write_export(args, site, agent.events, sc.start_tod_ms):
        return 2
    return 1 if agent.fault is not None else 0


def write_export(args, site, events, start_tod_ms):
    """The run's ATSPM export into args.export; a true value when it failed."""
    try:
        paths = export_rig_run(args.export, site, events, start_tod_ms, args.start,
                               args.export_format)
    except (ExportError, OSError) as e:
        print("export: %s" % e, file=sys.stderr)
        return True
    print("\nexport for ATSPM (%s): %s" % (site.time_zone, ", ".join(paths)))
    return False


def sumo_lines(results):
    """The SUMO comparison as aligned text: one row per controller."""
    head = ("controller",) + tuple(c[0] for c in SUMO_COLUMNS)
    rows = [(name,) + tuple(fmt % m[key] for _, key, fmt in SUMO_COLUMNS) for name, m in results.items()]
    w = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    fmt = "  ".join(["%-{}s".format(w[0])] + ["%{}s".format(x) for x in w[1:]])
    return [fmt % head, "  ".join("-" * x for x in w)] + [fmt % r for r in rows]


def run_sumo(args):
    if args.action:
        return sumo_map(args)
    if args.net or args.map or args.routes:
        return sumo_network(args)
    try:
        from hil.sumo import build
        from hil.sumo.bridge import run_sumo_program
        from hil.sumo.run import load_arterial_site, run_agent_on_sumo
    except ImportError as e:
        print("edge-agent hil sumo: %s (pip install -e '.[sumo]')" % e, file=sys.stderr)
        return 2
    if not build.sumo_available():
        print("edge-agent hil sumo: SUMO not found (pip install -e '.[sumo]')", file=sys.stderr)
        return 2
    if args.site:
        with open(args.site) as f:
            site = json.load(f)
    else:
        site = load_arterial_site()
    print("SUMO arterial (hil/sumo/network), %.0f s simulated, seed %d, 100 ms steps, %s"
          % (args.duration, args.seed, build.netconvert_version().replace("Eclipse SUMO netconvert ", "SUMO ")))
    bar = ProgressBar("edge-agent")
    end_ms = round(args.duration * 1000)

    def on_step(now_ms, _out, _r):
        if now_ms % 60_000 == 0:
            bar(now_ms, end_ms)

    agent = run_agent_on_sumo(site, args.duration, args.seed, on_step=on_step)
    bar.done()
    results = {"edge-agent": agent["measures"]}
    timings = build.plan_timings(site)
    for prog in ("actuated", "static"):
        print("  running SUMO's %s program..." % prog, file=sys.stderr)
        results["sumo-" + prog] = run_sumo_program(prog, duration_s=args.duration, seed=args.seed,
                                                   timings=timings)
    print()
    for line in sumo_lines(results):
        print("  " + line)
    a, s = results["edge-agent"]["mean_time_loss_s"], results["sumo-actuated"]["mean_time_loss_s"]
    print("  edge-agent against SUMO actuated: %+.2f s mean time loss per vehicle (%+.1f %%)"
          % (a - s, 100 * (a - s) / s if s else 0))
    print("  SUMO actuated and static use the site's min/max greens, yellows and red clearances; "
          "static greens from the network mapping.")
    faults = results["edge-agent"].get("agent_faults")
    if faults:
        print("  AGENT FAULTS: %s" % faults)
    print("\nPhase terminations of the agent on SUMO:")
    for line in summary_lines(agent["events"], parse_site(site)):
        print("  " + line)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"seed": args.seed, "duration_s": args.duration, "results": results}, f, indent=1)
        print("\nmeasures: %s" % args.json)
    if args.export and write_export(args, parse_site(site), agent["events"], 0):
        return 2
    return 1 if faults else 0


def sumo_map(args):
    from hil.sumo.netmap import MapError, starting_map
    if len(args.action) != 2 or args.action[0] != "map":
        print("edge-agent hil sumo: expected 'map NET.net.xml', got %s" % " ".join(args.action),
              file=sys.stderr)
        return 2
    try:
        out = starting_map(args.action[1], args.out or ".")
    except (MapError, OSError) as e:
        print("edge-agent hil sumo map: %s" % e, file=sys.stderr)
        return 2
    print("map:   %s" % out["map"])
    print("loops: %s (stop-bar loops, pass with --additional)" % out["loops"])
    for s in out["sites"]:
        print("site:  %s" % s)
    print("Check each site's phases, detectors and timings before running them.")
    return 0


def sumo_network(args):
    from hil.sumo.netmap import MapError, link_counts, load_map
    from hil.sumo import network_rig
    if not (args.net and args.map and args.routes):
        print("edge-agent hil sumo: --net, --routes and --map go together", file=sys.stderr)
        return 2
    try:
        m = load_map(args.map, link_counts(args.net))
        for t in m.tls.values():
            parse_site(t.site)
    except MapError as e:
        print("edge-agent hil sumo: the map does not fit the network:", file=sys.stderr)
        for line in e.errors:
            print("  " + line, file=sys.stderr)
        return 2
    except ValueError as e:
        print("edge-agent hil sumo: %s" % e, file=sys.stderr)
        return 2
    routes = args.routes.split(",")
    additional = args.additional.split(",") if args.additional else []
    print("%s: %d signals, %.0f s simulated, seed %d, 100 ms steps"
          % (args.net, len(m.tls), args.duration, args.seed))
    r = network_rig.run_agents(m, args.net, routes, additional, args.duration, args.seed)
    results = {"edge-agent": r["measures"],
               "sumo-actuated": network_rig.run_program("actuated", m, args.net, routes, additional,
                                                        args.duration, args.seed)}
    for line in network_lines(results):
        print("  " + line)
    hours = len(m.tls) * args.duration / 3600.0
    print("  agents' share of wall time %.1f %% (%.3f s of %.3f s); core %.0f ms per "
          "intersection-hour; %d light changes pushed"
          % (100.0 * r["agents_s"] / r["wall_s"], r["agents_s"], r["wall_s"],
             1000.0 * r["agents_s"] / hours if hours else 0, r["measures"]["pushes"]))
    faults = {t: f for t, f in r["faults"].items() if f}
    if faults:
        print("  AGENT FAULTS: %s" % faults)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"seed": args.seed, "duration_s": args.duration, "results": results}, f, indent=1)
    return 1 if faults else 0


NETWORK_COLUMNS = (("completed", "completed", "%d"), ("unfinished", "unfinished", "%d"),
                   ("time loss", "mean_time_loss_s", "%.1f s"),
                   ("e2e travel", "e2e_travel_time_s", "%.1f s"),
                   ("e2e speed", "e2e_speed_kmh", "%.1f km/h"), ("e2e stops", "e2e_stops", "%.2f"),
                   ("EV travel", "ev_travel_time_s", "%.1f s"))


def network_lines(results, columns=NETWORK_COLUMNS):
    """A table of trip measures: one row per run (None shows as '-')."""
    head = ("run",) + tuple(c[0] for c in columns)
    rows = [(name,) + tuple("-" if m.get(key) is None else fmt % m[key] for _, key, fmt in columns)
            for name, m in results.items()]
    w = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    fmt = "  ".join(["%-{}s".format(w[0])] + ["%{}s".format(x) for x in w[1:]])
    return [fmt % head, "  ".join("-" * x for x in w)] + [fmt % r for r in rows]


def register(sub):
    p = sub.add_parser("hil", help="run the agent in the hardware-in-the-loop rig's simulators",
                       description=__doc__.split("\n\n")[0])
    hsub = p.add_subparsers(dest="hil", metavar="WHAT")
    hsub.required = True
    r = hsub.add_parser("run", help="agent vs Webster fixed time on a built-in scenario")
    r.add_argument("scenario", nargs="?", default="arterial", metavar="NAME|PATH",
                   help="built-in scenario (arterial, suburban, night) or a scenario JSON file")
    r.add_argument("--seed", type=int, help="demand seed (default: the scenario's)")
    r.add_argument("--duration", type=float, metavar="S", help="simulated seconds (default: the scenario's)")
    r.add_argument("--cycles", type=int, default=3, help="cycles in the printed timeline")
    r.add_argument("--movements", action="store_true", help="also print the measures per movement")
    r.add_argument("--json", metavar="PATH", help="write both runs' measures as JSON")
    add_export_arguments(r)
    r.set_defaults(func=run_scenario)
    s = hsub.add_parser("sumo", help="agent vs SUMO's actuated and static programs (needs eclipse-sumo)")
    s.add_argument("--duration", type=float, default=3600.0, metavar="S",
                   help="simulated seconds (default 3600)")
    s.add_argument("--seed", type=int, default=1, help="SUMO seed of the demand (default 1)")
    s.add_argument("--site", metavar="PATH",
                   help="site JSON for the agent and SUMO's programs (default hil/sumo/network/arterial.site.json)")
    s.add_argument("--json", metavar="PATH", help="write the measures as JSON")
    add_export_arguments(s)
    s.add_argument("action", nargs="*", metavar="map NET.net.xml",
                   help="'map NET.net.xml': write a starting map, sites and loops (see --out)")
    s.add_argument("--out", metavar="DIR", help="where 'map' writes (default: here)")
    s.add_argument("--net", metavar="NET.net.xml", help="your own SUMO network (with --routes, --map)")
    s.add_argument("--routes", metavar="R.rou.xml[,EV.rou.xml]", help="route files, comma-separated")
    s.add_argument("--map", metavar="MAP.json", help="which site runs each traffic light (docs/corridor.md)")
    s.add_argument("--additional", metavar="A.add.xml[,...]", help="additional files (induction loops)")
    s.set_defaults(func=run_sumo)
    from tools import corridor_table, realtime_table
    corridor_table.add_parser(hsub)
    realtime_table.add_parser(hsub)
