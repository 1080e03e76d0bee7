"""Run reports: the agent-vs-fixed-time table, the figures, and a self-contained HTML page.

    rows = comparison_rows(agent.measures, fixed.measures)
    print("\\n".join(comparison_lines(rows)))
    write_html("reports/demo-arterial.html", title, agent, fixed, site, notes)

The figures (matplotlib, Agg backend, imported only when drawn):

- ring diagram: the first cycles as an engineer draws them, one row per ring,
  each phase's green, yellow and red clearance in sequence, walk and
  pedestrian clearance under it, barrier crossings as dashed lines; below,
  one row per phase;
- queues: stopped vehicles per approach over the run, agent against fixed time;
- Purdue Coordination Diagram of the PCD phase (the main through): each
  arrival at its time in the cycle (cycle = red onset to red onset) against
  the time of day, with the green and yellow of each cycle as bands.
"""

import base64
import html
import io
import platform
import time

from edge_agent import events as ev

GREEN_C, YELLOW_C, RED_C = "#2ca02c", "#f2c200", "#d62728"
RED_REST_C = "#f4c7c3"
WALK_C, PED_CLEAR_C = "#4c72b0", "#9ecae1"
APPROACH_NAMES = {"EB": "eastbound", "WB": "westbound", "NB": "northbound", "SB": "southbound"}


# -- the comparison table -------------------------------------------------------------

def _cycle(m):
    c = m.cycle_summary()
    if not c["count"]:
        return "-"
    if c["min_s"] == c["max_s"]:
        return "%.1f s" % c["mean_s"]
    return "%.1f s (%.0f-%.0f)" % (c["mean_s"], c["min_s"], c["max_s"])


def _change(a, f):
    if f == 0:
        return "-"
    return "%+.1f %%" % (100.0 * (a - f) / f)


def comparison_rows(agent, fixed):
    """[(measure, agent text, fixed-time text, change)] from two Measures."""
    a, f = agent.total, fixed.total
    sf_a = sum(p.split_failures for p in agent.phases.values())
    sf_f = sum(p.split_failures for p in fixed.phases.values())
    ca, cf = agent.cycle_summary()["mean_s"] or 0, fixed.cycle_summary()["mean_s"] or 0
    return [
        ("mean control delay", "%.1f s/veh" % a.mean_delay_s, "%.1f s/veh" % f.mean_delay_s,
         _change(a.mean_delay_s, f.mean_delay_s)),
        ("vehicles stopped", "%.1f %%" % (100 * a.stop_rate), "%.1f %%" % (100 * f.stop_rate),
         _change(a.stop_rate, f.stop_rate)),
        ("max queue", "%d veh" % a.max_queue, "%d veh" % f.max_queue, _change(a.max_queue, f.max_queue)),
        ("95th-percentile queue", "%d veh" % a.p95_queue, "%d veh" % f.p95_queue,
         _change(a.p95_queue, f.p95_queue)),
        ("arrivals on green", "%.1f %%" % (100 * a.aog_share), "%.1f %%" % (100 * f.aog_share),
         _change(a.aog_share, f.aog_share)),
        ("split failures", "%d" % sf_a, "%d" % sf_f, _change(sf_a, sf_f)),
        ("cycle length", _cycle(agent), _cycle(fixed), _change(ca, cf)),
        ("vehicles served", "%d of %d" % (a.departures, a.arrivals),
         "%d of %d" % (f.departures, f.arrivals), _change(a.departures, f.departures)),
    ]


def comparison_lines(rows, heads=("actuated agent", "Webster fixed time")):
    """The comparison as aligned text."""
    w = [max(len(r[i]) for r in rows + [("measure",) + tuple(heads) + ("change",)]) for i in range(4)]
    fmt = "%-{0}s  %{1}s  %{2}s  %{3}s".format(*w)
    out = [fmt % (("measure",) + tuple(heads) + ("change",)), "  ".join("-" * x for x in w)]
    out += [fmt % r for r in rows]
    return out


# -- signal intervals from the event log ------------------------------------------------

def phase_intervals(log, end_ms):
    """{phase: [(start, end, kind)]} with kind 'green', 'yellow', 'red_clear', 'walk', 'ped_clear'."""
    veh_open, ped_open, out = {}, {}, {}
    starts = {ev.PHASE_BEGIN_GREEN: "green", ev.PHASE_BEGIN_YELLOW: "yellow",
              ev.PHASE_BEGIN_RED_CLEAR: "red_clear"}
    peds = {ev.PED_BEGIN_WALK: "walk", ev.PED_BEGIN_CLEAR: "ped_clear"}

    def close(table, p, t):
        if p in table:
            t0, kind = table.pop(p)
            if t > t0:
                out.setdefault(p, []).append((t0, t, kind))

    for t, code, p in log:
        if t > end_ms:
            break
        if code in starts:
            close(veh_open, p, t)
            veh_open[p] = (t, starts[code])
        elif code == ev.PHASE_END_RED_CLEAR:
            close(veh_open, p, t)
        elif code in peds:
            close(ped_open, p, t)
            ped_open[p] = (t, peds[code])
        elif code == ev.PED_BEGIN_DONT_WALK:
            close(ped_open, p, t)
        elif code == ev.MONITOR_FAULT:
            break
    for table in (veh_open, ped_open):
        for p in list(table):
            close(table, p, end_ms)
    return out


def first_cycles_end_ms(log, phase, cycles=3):
    """End of the first `cycles` cycles of `phase` (or None): the last barrier crossing
    before its green onset number cycles + 1, else that onset."""
    onsets = [t for t, code, p in log if code == ev.PHASE_BEGIN_GREEN and p == phase]
    if len(onsets) <= cycles:
        return None
    end = onsets[cycles]
    crossings = [t for t, code, _ in log if code == ev.BARRIER_TERMINATION and onsets[cycles - 1] < t <= end]
    return crossings[-1] if crossings else end


# -- figures -----------------------------------------------------------------------------

def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.rcParams.update({"font.size": 11, "axes.titlesize": 13, "axes.titleweight": "bold",
                         "axes.spines.top": False, "axes.spines.right": False})
    return plt


def _time_of_day_axis(ax, start_tod_ms, span_s):
    """Label an axis in seconds from the start as hh:mm, ticks on round clock minutes."""
    from matplotlib.ticker import FixedLocator, FuncFormatter
    step = next((m * 60 for m in (1, 2, 5, 10, 15, 30, 60, 120, 240) if span_s / (m * 60) <= 8), 14400)
    t0 = start_tod_ms / 1000
    first = -(-t0 // step) * step - t0
    ax.xaxis.set_major_locator(FixedLocator([first + k * step for k in range(int(span_s // step) + 2)]))

    def fmt(x, _pos):
        s = int(round(t0 + x)) % 86400
        return "%02d:%02d" % (s // 3600, s % 3600 // 60)
    ax.xaxis.set_major_formatter(FuncFormatter(fmt))


def _png(fig):
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def ring_diagram_png(log, site, t0_ms, t1_ms, title, start_tod_ms=0):
    """Ring-barrier diagram (one row per ring) over per-phase indications, [t0, t1],
    on the time-of-day axis of the other charts (start_tod_ms: the run's start)."""
    plt = _plt()
    from matplotlib.patches import Patch
    from matplotlib.lines import Line2D
    iv = phase_intervals(log, t1_ms)
    colours = {"green": GREEN_C, "yellow": YELLOW_C, "red_clear": RED_C,
               "walk": WALK_C, "ped_clear": PED_CLEAR_C}
    rings = site.rings
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(13, 7.2), sharex=True,
                                   gridspec_kw={"height_ratios": [len(rings), len(site.phases)]})
    s = lambda t: (t - t0_ms) / 1000  # noqa: E731
    # A label goes inside a green only where it fits at this scale: the full
    # "Ø2  54 s" on long greens, "Ø2" on short ones, none on the shortest.
    span = max(s(t1_ms), 1.0)
    full_s, short_s = span * 0.06, span * 0.022
    for r, ring in enumerate(rings):
        y = len(rings) - 1 - r
        for p in ring:
            for a, b, kind in iv.get(p, ()):
                if b < t0_ms or a > t1_ms:
                    continue
                a, b = max(a, t0_ms), min(b, t1_ms)
                if kind in ("walk", "ped_clear"):
                    ax1.broken_barh([(s(a), s(b) - s(a))], (y - 0.42, 0.16), color=colours[kind])
                    continue
                ax1.broken_barh([(s(a), s(b) - s(a))], (y - 0.22, 0.6), color=colours[kind],
                                edgecolor="white", linewidth=0.5)
                w = s(b) - s(a)
                if kind == "green" and w >= short_s:
                    text = ("\u00d8%d  %.0f s" % (p, (b - a) / 1000) if w >= full_s
                            else "\u00d8%d" % p)
                    ax1.text((s(a) + s(b)) / 2, y + 0.08, text,
                             ha="center", va="center", color="white", fontsize=9, fontweight="bold")
    ax1.set_yticks(range(len(rings)))
    ax1.set_yticklabels(["ring %d" % (len(rings) - i) for i in range(len(rings))])
    ax1.set_ylim(-0.6, len(rings) - 0.4)
    ax1.set_title(title)
    order = [p for ring in rings for p in ring]
    for i, p in enumerate(order):
        y = len(order) - 1 - i
        ax2.broken_barh([(0, s(t1_ms))], (y - 0.35, 0.7), color=RED_REST_C)
        for a, b, kind in iv.get(p, ()):
            if kind in ("walk", "ped_clear") or b < t0_ms or a > t1_ms:
                continue
            a, b = max(a, t0_ms), min(b, t1_ms)
            ax2.broken_barh([(s(a), s(b) - s(a))], (y - 0.35, 0.7), color=colours[kind])
    ax2.set_yticks(range(len(order)))
    ax2.set_yticklabels(["\u00d8%d %s" % (p, site.phase_names[p] or "") for p in reversed(order)],
                        fontsize=9)
    ax2.set_xlabel("time of day (hh:mm)")
    ax2.set_xlim(0, s(t1_ms))
    _time_of_day_axis(ax2, start_tod_ms + t0_ms, s(t1_ms))
    for t, code, g in log:
        if code == ev.BARRIER_TERMINATION and t0_ms <= t <= t1_ms:
            for ax in (ax1, ax2):
                ax.axvline(s(t), color="black", linestyle="--", linewidth=1)
    handles = [Patch(color=GREEN_C, label="green"), Patch(color=YELLOW_C, label="yellow"),
               Patch(color=RED_C, label="red clearance"), Patch(color=RED_REST_C, label="red"),
               Patch(color=WALK_C, label="walk"), Patch(color=PED_CLEAR_C, label="ped clearance"),
               Line2D([], [], color="black", linestyle="--", label="barrier crossing")]
    fig.legend(handles=handles, loc="lower center", ncol=7, frameon=False, bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return _png(fig)


def queue_png(agent, fixed, start_tod_ms, title, smooth_s=30):
    """Stopped vehicles per approach over time, agent (solid) against fixed time (dashed)."""
    plt = _plt()
    approaches = [k for k in agent.queue_series if k != "t_s"]
    n = len(approaches)
    cols = 2 if n > 1 else 1
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(13, 3.2 * rows + 0.6), sharex=True, squeeze=False)
    top = 1
    for m in (agent, fixed):
        for a in approaches:
            top = max(top, max(m.queue_series[a] or [0]))

    def smooth(xs):
        out, acc = [], 0
        for i, x in enumerate(xs):
            acc += x
            if i >= smooth_s:
                acc -= xs[i - smooth_s]
            out.append(acc / min(i + 1, smooth_s))
        return out

    for i, a in enumerate(approaches):
        ax = axes[i // cols][i % cols]
        for m, label, style, colour in ((agent, "actuated agent", "-", "#1f77b4"),
                                        (fixed, "Webster fixed time", "--", "#7f7f7f")):
            ax.plot(m.queue_series["t_s"], smooth(m.queue_series[a]), style, color=colour,
                    linewidth=1.4, label=label)
        ax.set_title("%s (%s)" % (a, APPROACH_NAMES.get(a, a)), fontsize=11)
        ax.set_ylabel("stopped vehicles")
        ax.set_ylim(0, top * 1.05)
        ax.set_xlim(0, agent.duration_s)
        _time_of_day_axis(ax, start_tod_ms, agent.duration_s)
        ax.grid(alpha=0.3)
    for j in range(n, rows * cols):
        axes[j // cols][j % cols].set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("time of day (hh:mm)")
    axes[0][0].legend(loc="upper left", frameon=False)
    fig.suptitle("%s, %d s moving average" % (title, smooth_s), fontweight="bold", fontsize=13)
    fig.tight_layout()
    return _png(fig)


def _pcd_panel(ax, pcd, start_tod_ms, span_s, title, aog):
    for c0, g, y, c1 in pcd["cycles"]:
        x, w = c0 / 1000, (c1 - c0) / 1000
        if g is not None:
            ax.broken_barh([(x, w)], ((g - c0) / 1000, ((y or c1) - g) / 1000), color=GREEN_C, alpha=0.35)
        if y is not None:
            ax.broken_barh([(x, w)], ((y - c0) / 1000, (c1 - y) / 1000), color=YELLOW_C, alpha=0.6)
    pts = pcd["arrivals"]
    ax.scatter([t / 1000 for t, _ in pts], [d / 1000 for _, d in pts], s=3, color="black", alpha=0.7)
    ax.set_title("%s: arrivals on green %.0f %%" % (title, 100 * aog), fontsize=11)
    ax.set_ylabel("time in cycle (s)")
    ax.set_xlabel("time of day (hh:mm)")
    ax.set_xlim(0, span_s)
    _time_of_day_axis(ax, start_tod_ms, span_s)


def pcd_png(agent, fixed, start_tod_ms, phase_label):
    """Purdue Coordination Diagrams of the PCD phase, agent and fixed time side by side."""
    plt = _plt()
    from matplotlib.patches import Patch
    from matplotlib.lines import Line2D
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2), sharey=True)
    p = agent.pcd["phase"]
    for ax, m, name in ((axes[0], agent, "actuated agent"), (axes[1], fixed, "Webster fixed time")):
        _pcd_panel(ax, m.pcd, start_tod_ms, agent.duration_s, name,
                   m.phases[p].aog_share if p in m.phases else 0)
    longest = [(c1 - c0) / 1000 for m in (agent, fixed) for c0, _, _, c1 in m.pcd["cycles"]]
    axes[0].set_ylim(0, max(longest + [60]) * 1.02)
    axes[1].set_ylabel("")
    handles = [Patch(color=GREEN_C, alpha=0.35, label="green"),
               Patch(color=YELLOW_C, alpha=0.6, label="yellow"),
               Line2D([], [], marker="o", linestyle="", color="black", markersize=3,
                      label="vehicle arrival (free-flow time at the stop bar)")]
    fig.legend(handles=handles, loc="lower center", ncol=3, frameon=False, bbox_to_anchor=(0.5, -0.03))
    fig.suptitle("Purdue Coordination Diagram, phase %d (%s); cycles begin at the end of yellow"
                 % (p, phase_label), fontweight="bold", fontsize=13)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return _png(fig)


# -- tables with units, and what the baseline comparison hides ---------------------------

MOVEMENT_HEAD = ("movement", "arrivals (veh)", "departures (veh)", "mean delay (s/veh)",
                 "stopped (%)", "max queue (veh)", "95th-percentile queue (veh)",
                 "arrivals on green (%)")


def movement_rows(m):
    """Rows of MOVEMENT_HEAD for each movement of a run's Measures, then the total."""
    rows = []
    for k, x in list(m.movements.items()) + [("total", m.total)]:
        rows.append((k, x.arrivals, x.departures, "%.1f" % x.mean_delay_s,
                     "%.0f" % (100 * x.stop_rate), x.max_queue, x.p95_queue,
                     "%.0f" % (100 * x.aog_share)))
    return rows


PLAN_HEAD = ("phase", "start in cycle (s)", "green (s)", "yellow (s)", "red clearance (s)",
             "flow ratio v/s")


def plan_rows(plan):
    """Rows of PLAN_HEAD for a fixed-time plan (hil.fixed_time)."""
    return [(p, "%.1f" % (t.start / 1000), "%.1f" % (t.green / 1000), "%.1f" % (t.yellow / 1000),
             "%.1f" % (t.red_clear / 1000), "%.3f" % plan.flow_ratios.get(p, 0.0))
            for p, t in sorted(plan.timings.items())]


def starved_phases(fixed, share=0.5):
    """Phases the fixed-time plan fails in at least `share` of their greens."""
    return [p for p, ph in sorted(fixed.phases.items())
            if ph.greens and ph.split_failures >= share * ph.greens]


def baseline_caveat(agent, fixed, phase_of):
    """A plain sentence when the baseline flatters the agent, else None.

    A fixed-time plan that leaves a left turn's queue growing cycle after
    cycle loads the baseline's total with a few movements' huge delays; the
    sentence names them and gives both totals without them.
    phase_of: {movement id: phase}.
    """
    starved = starved_phases(fixed)
    if not starved:
        return None
    movs = [k for k in fixed.movements if phase_of.get(k) in starved]
    rest = [k for k in fixed.movements if k not in movs]

    def mean(m, keys):
        served = sum(m.movements[k].departures for k in keys)
        return sum(m.movements[k].delay_s for k in keys) / served if served else 0.0

    fp = fixed.phases
    return ("The Webster baseline does not serve phase%s %s: split failures in %s; %s wait %s. "
            "Its total delay flatters the agent. Without %s: agent %.1f s/veh, fixed time "
            "%.1f s/veh." % (
                "s" if len(starved) > 1 else "", ", ".join(str(p) for p in starved),
                ", ".join("%d of %d greens" % (fp[p].split_failures, fp[p].greens) for p in starved),
                ", ".join(movs), ", ".join("%.0f s/veh" % fixed.movements[k].mean_delay_s
                                           for k in movs),
                " and ".join(movs), mean(agent, rest), mean(fixed, rest)))


# -- the HTML page ---------------------------------------------------------------------

CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{padding:.3em .8em;border-bottom:1px solid #ddd}
th{text-align:left;background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;margin:1em 0}pre{background:#f7f7f7;padding:1em;overflow-x:auto}
.small{color:#666;font-size:.9em}"""


def _table(head, rows, numeric_from=1):
    out = ["<table><tr>%s</tr>" % "".join("<th>%s</th>" % html.escape(h) for h in head)]
    for r in rows:
        out.append("<tr>%s</tr>" % "".join(
            '<td%s>%s</td>' % (' class="n"' if i >= numeric_from else "", html.escape(str(c)))
            for i, c in enumerate(r)))
    out.append("</table>")
    return "\n".join(out)


def _img(png, alt):
    return '<img alt="%s" src="data:image/png;base64,%s">' % (
        html.escape(alt), base64.b64encode(png).decode("ascii"))


def render_html(title, intro, comparison, terminations, figures, sections=()):
    """One self-contained page: comparison table, terminations, figures [(png, alt, caption)]."""
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>%s</title><style>%s</style>"
             "</head><body>" % (html.escape(title), CSS), "<h1>%s</h1>" % html.escape(title)]
    parts += ["<p>%s</p>" % html.escape(x) for x in intro]
    parts.append("<h2>Actuated agent against the Webster fixed-time baseline</h2>")
    parts.append(_table(("measure", "actuated agent", "Webster fixed time", "change"), comparison))
    parts.append("<h2>Phase terminations (agent)</h2>")
    parts.append(_table(("phase", "name", "greens (count)", "gap-outs (count)", "max-outs (count)",
                         "force-offs (count)", "mean green (s)"),
                        [(p, name, n, g, m, f, "%.1f" % mean)
                         for p, name, n, g, m, f, mean in terminations], numeric_from=2))
    for png, alt, caption in figures:
        parts.append("<h2>%s</h2>" % html.escape(alt))
        parts.append(_img(png, alt))
        parts.append('<p class="small">%s</p>' % html.escape(caption))
    for section in sections:
        if len(section) == 3:                   # (heading, column heads, rows): a table
            heading, head, rows = section
            parts.append("<h2>%s</h2>" % html.escape(heading))
            parts.append(_table(head, rows))
        else:
            heading, lines = section
            parts.append("<h2>%s</h2><pre>%s</pre>" % (html.escape(heading),
                                                       html.escape("\n".join(lines))))
    parts.append('<p class="small">generated %s on %s, Python %s</p></body></html>' % (
        time.strftime("%Y-%m-%d %H:%M"), html.escape(platform.node() or platform.machine()),
        platform.python_version()))
    return "\n".join(parts)
