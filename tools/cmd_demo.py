"""`edge-agent demo`: the agent on a built-in intersection, against the Webster fixed-time plan.

Runs the real agent (the scenario's fully actuated fallback plan) in the
built-in simulator for a simulated hour in a few seconds, then the Webster
fixed-time baseline on the same demand and seed, and prints the first cycles,
the comparison and the phase terminations; writes an HTML report with the
ring diagram, the queues and the Purdue Coordination Diagram.

`--realtime` steps the same run at wall-clock speed (or `--speed` times it)
and shows the controller's front panel on one line.
"""

import os
import sys
import time

from edge_agent.indications import PED_LETTERS, VEHICLE_LETTERS
from edge_agent.intersection import parse_site

from hil.rig import run_actuated, run_fixed_time
from hil.scenario import ScenarioError, load_scenario
from tools import report
from tools.timeline import summary_lines, termination_summary, timeline_lines


class ProgressBar:
    """A text progress bar on stderr, redrawn in place: `bar(now_ms, end_ms)`, then `bar.done()`.

    Not on a terminal (a log, a pipe) only the finished bar is written.
    """

    def __init__(self, label, start_tod_ms=0, stream=None, width=30):
        self.label, self.start_tod_ms, self.width = label, start_tod_ms, width
        self.stream = stream or sys.stderr
        self.live = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = time.monotonic()
        self.end_ms = 1

    def __call__(self, now_ms, end_ms, final=False):
        self.end_ms = max(end_ms, 1)
        if not (self.live or final):
            return
        frac = min(1.0, now_ms / self.end_ms)
        n = int(round(frac * self.width))
        self.stream.write("\r  %-18s [%s%s] %3d %%  %s simulated  %5.1f s"
                          % (self.label, "#" * n, "-" * (self.width - n), round(100 * frac),
                             clock(self.start_tod_ms + now_ms), time.monotonic() - self.t0))
        self.stream.flush()

    def done(self):
        self(self.end_ms, self.end_ms, final=True)
        self.stream.write("\n")
        self.stream.flush()


def clock(tod_ms, tenths=False):
    """'07:03:12' (or '07:03:12.3') for a time of day in ms (wraps at midnight)."""
    s, ms = divmod(int(tod_ms) % 86_400_000, 1000)
    text = "%02d:%02d:%02d" % (s // 3600, s % 3600 // 60, s % 60)
    return text + (".%d" % (ms // 100)) if tenths else text


def phases_of(mask):
    return [p for p in range(1, 17) if mask & (1 << p)]


class FrontPanel:
    """The live status line a technician reads off the controller's front panel.

    Called after every agent step; paces the run to `speed` simulated seconds
    per wall second and rewrites one line (\\r) at most `fps` times a wall
    second: clock, mode, each phase's indication letter (and walk letter),
    the timers of the active phases, and the calls.
    """

    def __init__(self, site, start_tod_ms, speed=1.0, stream=None, fps=10):
        self.site, self.start_tod_ms, self.speed = site, start_tod_ms, speed
        self.stream = stream or sys.stdout
        self.min_wall = 1.0 / fps
        self.t0 = None
        self.last_draw = -1.0
        self.width = 0
        self.pending = None       # the last step not drawn yet

    def __call__(self, now_ms, out, agent):
        wall = time.monotonic()
        if self.t0 is None:
            self.t0 = wall - now_ms / 1000 / self.speed
        ahead = self.t0 + now_ms / 1000 / self.speed - wall
        if ahead > 0:
            time.sleep(ahead)
            wall += ahead
        if wall - self.last_draw >= self.min_wall:
            self.last_draw = wall
            self.pending = None
            self.draw(self.line(now_ms, out, agent))
        else:
            self.pending = (now_ms, out, agent)

    def line(self, now, out, agent):
        site, st = self.site, agent.status(now)
        heads = []
        for p in site.phases:
            ped = PED_LETTERS[out.ped[p]] if site.has_ped[p] else " "
            heads.append("%d%s%s" % (p, VEHICLE_LETTERS[out.vehicle[p]], ped))
        timers = []
        for p in site.phases:
            e = st["phases"][p]
            iv = e.get("interval", "red")
            if iv == "red":
                continue
            t = e["elapsed_ms"] / 1000
            if iv in ("min_green", "extension", "green_rest"):
                parts = ["\u00d8%d G %5.1f" % (p, t)]
                if e["min_left_ms"]:
                    parts.append("min %4.1f" % (e["min_left_ms"] / 1000))
                parts.append("gap %3.1f" % (e["gap_left_ms"] / 1000))
                parts.append("max %4.1f" % (e["max_left_ms"] / 1000) if "max_left_ms" in e
                             else "max  -  ")
                timers.append(" ".join(parts))
            else:
                timers.append("\u00d8%d %s %4.1f" % (p, "Y" if iv == "yellow" else "R", t))
        calls = " ".join(str(p) for p in site.phases if st["phases"][p]["call"]) or "-"
        return "%s %-5s %s | %s | calls %s" % (
            clock(self.start_tod_ms + now, tenths=True), st["mode"].replace("startup-", "st-"),
            " ".join(heads), " | ".join(timers) or "all red", calls)

    def draw(self, text):
        pad = max(0, self.width - len(text))
        self.width = len(text)
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()

    def close(self):
        if self.pending is not None:
            self.draw(self.line(*self.pending))
        self.stream.write("\n")
        self.stream.flush()


def run_pair(sc, duration_s, seed, quiet=False, realtime_panel=None):
    """(agent RunResult, fixed-time RunResult) on the same scenario, demand and seed."""
    bar = None if quiet or realtime_panel else ProgressBar("actuated agent", sc.start_tod_ms)
    agent = run_actuated(sc, duration_s, seed, progress=bar, on_step=realtime_panel,
                         interruptible=realtime_panel is not None)
    if bar:
        bar.done()
    if realtime_panel is not None:
        realtime_panel.close()
        if agent.interrupted:
            print("stopped at %s (%.0f s simulated)" % (clock(sc.start_tod_ms + agent.duration_s * 1000),
                                                        agent.duration_s))
    bar = None if quiet else ProgressBar("fixed-time baseline", sc.start_tod_ms)
    fixed = run_fixed_time(sc, agent.duration_s, seed, progress=bar)
    if bar:
        bar.done()
    return agent, fixed


def print_comparison(sc, site, agent, fixed, cycles=3):
    """The first cycles, the comparison table and the terminations, as text."""
    until = report.first_cycles_end_ms(agent.events, sc.reference_phase, cycles)
    print()
    print("First %d cycles of the actuated agent (time from the start of the run):" % cycles)
    for line in timeline_lines(agent.events, site, until_ms=until):
        print("  " + line)
    print()
    print("Actuated agent against the Webster fixed-time baseline (%s, seed %d):"
          % (span(sc, agent.duration_s), agent.seed))
    for line in report.comparison_lines(report.comparison_rows(agent.measures, fixed.measures)):
        print("  " + line)
    print("  fixed-time plan: " + fixed.controller.plan.describe()[0])
    caveat = report.baseline_caveat(agent.measures, fixed.measures, phase_of(sc))
    if caveat:
        print("  NOTE: " + caveat)
    print()
    print("Phase terminations of the actuated agent:")
    for line in summary_lines(agent.events, site):
        print("  " + line)


def span(sc, duration_s):
    return "%s-%s, %.0f s simulated" % (clock(sc.start_tod_ms)[:5],
                                        clock(sc.start_tod_ms + duration_s * 1000)[:5], duration_s)


def phase_of(sc):
    """{movement id: phase} of a scenario."""
    return {m.id: m.phase for m in sc.movements}


def atspm_figures(site, sc, agent):
    """The `edge-agent report` charts (atspm) of the agent's run, or [] without atspm."""
    try:
        from tools.atspm_report import build
    except ImportError:
        return []
    import tempfile
    from tools.export import export_rig_run
    with tempfile.TemporaryDirectory() as tmp:
        events, detectors = export_rig_run(tmp, site, agent.events, sc.start_tod_ms)
        return build(events, detectors)[1]


def write_report(path, sc, site, agent, fixed, cycles=3):
    """The HTML report with its figures; returns the path written."""
    until = report.first_cycles_end_ms(agent.events, sc.reference_phase, cycles)
    until = until or round(agent.duration_s * 1000)
    pcd_name = site.phase_names[sc.pcd_phase] or "phase %d" % sc.pcd_phase
    figures = [
        (report.ring_diagram_png(agent.events, site, 0, until,
                                 "Ring-barrier diagram: first %d cycles of the actuated agent" % cycles,
                                 sc.start_tod_ms),
         "Ring-barrier diagram",
         "Top: each ring's phases in sequence (green, yellow, red clearance; walk and pedestrian "
         "clearance underneath). Bottom: every phase's indication. Dashed lines: barrier crossings."),
        (report.queue_png(agent.measures, fixed.measures, sc.start_tod_ms,
                          "Queue length per approach (stopped vehicles)"),
         "Queue length over time",
         "Stopped vehicles on each approach, all lanes and movements, sampled every second."),
        (report.pcd_png(agent.measures, fixed.measures, sc.start_tod_ms, pcd_name),
         "Purdue Coordination Diagram",
         "Each dot is a vehicle of phase %d at the time it would reach the stop bar at free flow; "
         "its height is the time since the phase turned red. Dots in the green band arrive on green."
         % sc.pcd_phase),
    ]
    figures += [(png, "%s (agent, atspm)" % heading, caption)
                for png, heading, caption in atspm_figures(site, sc, agent)]
    plan = fixed.controller.plan
    intro = [sc.description,
             "%s, seed %d, 100 ms steps. Agent: the site's fallback plan (fully actuated). Baseline: "
             "%s." % (span(sc, agent.duration_s), agent.seed, plan.describe()[0])]
    caveat = report.baseline_caveat(agent.measures, fixed.measures, phase_of(sc))
    if caveat:
        intro.append(caveat)
    sections = [("Fixed-time plan (cycle %.1f s)" % (plan.cycle_ms / 1000), report.PLAN_HEAD,
                 report.plan_rows(plan)),
                ("Agent measures per movement", report.MOVEMENT_HEAD,
                 report.movement_rows(agent.measures)),
                ("Fixed-time measures per movement", report.MOVEMENT_HEAD,
                 report.movement_rows(fixed.measures))]
    page = report.render_html("edge-agent demo: %s" % (site.name or sc.name), intro,
                              report.comparison_rows(agent.measures, fixed.measures),
                              termination_summary(agent.events, site), figures, sections)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(page)
    return path


def monitor_fault(result):
    """The agent's latched monitor fault, if the run ended in flash."""
    return result.fault


def open_scenario(args, prog):
    """(scenario, site, duration s, seed) from the command line, headed on stdout;
    None (with the reason on stderr) when the scenario cannot be loaded."""
    try:
        sc = load_scenario(args.scenario)
    except (OSError, ValueError, ScenarioError) as e:
        print("%s: scenario %s: %s" % (prog, args.scenario, e), file=sys.stderr)
        return None
    site = parse_site(sc.site)
    duration = sc.duration_s if args.duration is None else args.duration
    seed = sc.seed if args.seed is None else args.seed
    print("%s (%s): %s, seed %d" % (site.name or sc.name, sc.name, span(sc, duration), seed))
    return sc, site, duration, seed


def run(args):
    opened = open_scenario(args, "edge-agent demo")
    if opened is None:
        return 2
    sc, site, duration, seed = opened
    panel = None
    if args.realtime:
        print("real time x%g, Ctrl-C stops. Letters: G green, Y yellow, R red; W walk, "
              "F ped clearance, D don't walk." % args.speed)
        panel = FrontPanel(site, sc.start_tod_ms, speed=args.speed)
    agent, fixed = run_pair(sc, duration, seed, realtime_panel=panel)
    print_comparison(sc, site, agent, fixed, args.cycles)
    status = 0
    fault = monitor_fault(agent)
    if fault is not None:
        print("\nMONITOR FAULT: the agent went to flash: %s" % (getattr(fault, "detail", fault),))
        status = 1
    if not args.no_report:
        path = args.out or os.path.join("reports", "demo-%s.html" % sc.name)
        write_report(path, sc, site, agent, fixed, args.cycles)
        print("\nreport: %s" % path)
    return status


def register(sub):
    p = sub.add_parser("demo", help="run the agent on a built-in intersection against fixed time",
                       description=__doc__.split("\n\n")[1].replace("\n", " "))
    p.add_argument("--scenario", default="arterial", metavar="NAME|PATH",
                   help="built-in scenario name (arterial, suburban, night) or a scenario JSON file")
    p.add_argument("--seed", type=int, help="random seed of the demand (default: the scenario's)")
    p.add_argument("--duration", type=float, metavar="S",
                   help="simulated seconds (default: the scenario's, 3600 for arterial)")
    p.add_argument("--out", metavar="PATH", help="report file (default reports/demo-<scenario>.html)")
    p.add_argument("--no-report", action="store_true", help="print only, write no report")
    p.add_argument("--realtime", action="store_true",
                   help="run at wall-clock speed with a live front-panel status line")
    p.add_argument("--speed", type=float, default=1.0, metavar="X",
                   help="with --realtime: simulated seconds per wall second (default 1)")
    p.add_argument("--cycles", type=int, default=3, help="cycles in the timeline and ring diagram")
    p.set_defaults(func=run)
