"""`edge-agent report`: the charts traffic engineers look at, from an export, on one page.

    write_report("report.html", "out/events.csv", "out/detectors.csv")

The measures come from ODOT's `atspm` package (tools/atspm_measures.py):
terminations, phase waits, arrivals on green, split failures, yellow/red
actuations, pedestrian services, actuations and delay, and its timeline of
green, yellow and red intervals. This module only draws them (matplotlib)
and lays them out as one self-contained HTML page (images inline). Two
charts plot atspm's own tables event by event rather than by bin: the Purdue
phase termination chart (each termination event) and the split monitor
(atspm's green intervals, coloured by the termination that ended them). The
Purdue coordination diagram and approach delay place each advance-detector
arrival in its cycle, from atspm's timeline and raw events; atspm itself
gives the arrival-on-green share printed over it.

Every time-of-day chart shares one axis: the export's first to last event,
in the site's local time.
"""

import html

from tools.atspm_measures import run_atspm
from tools.report import CSS, _img, _png, _plt, _table

TERM_COLORS = {"GapOut": "#2ca02c", "MaxOut": "#d62728", "ForceOff": "#1f77b4"}
TERM_CODES = {4: "GapOut", 5: "MaxOut", 6: "ForceOff"}
PHASE_COLORS = ["#7f7f7f", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                "#e377c2", "#17becf", "#bcbd22"]
BIN_MIN = 15


class Data:
    """atspm's tables plus what the charts share: phases, the time span, the site."""

    def __init__(self, tables):
        import pandas as pd
        self.t = tables
        raw = tables["raw_data"].sort_values(["TimeStamp", "EventId"], kind="stable")
        self.raw = raw
        self.device = str(raw["DeviceId"].iloc[0]) if len(raw) else "?"
        self.t0, self.t1 = raw["TimeStamp"].min(), raw["TimeStamp"].max()
        self.phases = sorted(int(p) for p in raw[raw["EventId"] == 1]["Parameter"].unique())
        tl = tables["timeline"]
        # Intervals with both ends, valid or not: atspm also marks every interval of
        # a 15-minute bin without data in each 5 minutes invalid (a short run's
        # last bin), which says nothing about the interval itself.
        self.greens = tl[(tl["EventClass"] == "Green") & tl["EndTime"].notna()].copy()
        self.yellows = tl[(tl["EventClass"] == "Yellow") & tl["EndTime"].notna()].copy()
        ends = raw[raw["EventId"].isin(list(TERM_CODES))]
        self.terms = pd.DataFrame({"TimeStamp": ends["TimeStamp"].values,
                                   "Phase": ends["Parameter"].astype(int).values,
                                   "How": [TERM_CODES[int(c)] for c in ends["EventId"]]})

    def hours(self):
        return max((self.t1 - self.t0).total_seconds() / 3600.0, 1e-9)


def _time_axis(ax, d):
    """The one time axis of every chart: first to last event, ticks on bin edges."""
    import matplotlib.dates as mdates
    ax.set_xlim(d.t0, d.t1)
    hours = d.hours()
    if hours <= 3:
        ax.xaxis.set_major_locator(mdates.MinuteLocator(byminute=range(0, 60, BIN_MIN)))
    else:
        ax.xaxis.set_major_locator(mdates.HourLocator(interval=max(1, int(hours // 8))))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
    ax.set_xlabel("local time (%s)" % d.t0.strftime("%Y-%m-%d"))


def termination_chart(d):
    """Purdue phase termination chart: every termination at its time, by phase."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(11, 0.45 * len(d.phases) + 1.8))
    for how, color in TERM_COLORS.items():
        rows = d.terms[d.terms["How"] == how]
        ax.scatter(rows["TimeStamp"], rows["Phase"], s=14, color=color, label=how, zorder=3)
    walks = d.raw[d.raw["EventId"] == 21]
    ax.scatter(walks["TimeStamp"], walks["Parameter"] + 0.28, s=8, marker="v", color="#9467bd",
               label="ped walk")
    ax.set_yticks(d.phases)
    ax.set_yticklabels(["phase %d" % p for p in d.phases])
    ax.set_ylim(min(d.phases) - 0.6, max(d.phases) + 0.6)
    ax.invert_yaxis()
    _time_axis(ax, d)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=9)
    ax.set_title("Purdue phase termination")
    return _png(fig)


def split_monitor(d):
    """Green time of every cycle by phase, coloured by how the green ended."""
    import pandas as pd
    plt = _plt()
    g = d.greens.rename(columns={"EventValue": "Phase"})
    g["Phase"] = g["Phase"].astype("int64")
    g["EndTime"] = g["EndTime"].astype("datetime64[ns]")
    ends = d.terms.rename(columns={"TimeStamp": "EndTime"})
    ends["EndTime"] = ends["EndTime"].astype("datetime64[ns]")
    g = pd.merge_asof(g.sort_values("EndTime"), ends.sort_values("EndTime"), on="EndTime",
                      by="Phase", direction="nearest", tolerance=pd.Timedelta("1ms"))
    n = len(d.phases)
    cols = 2
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(11, 2.3 * rows), sharex=True, squeeze=False)
    longest = g["Duration"].max() if len(g) else None
    top = max(float(longest) if longest == longest and longest is not None else 0.0, 1.0) * 1.1
    for i, p in enumerate(d.phases):
        ax = axes[i // cols][i % cols]
        mine = g[g["Phase"] == p]
        for how, color in TERM_COLORS.items():
            r = mine[mine["How"] == how]
            ax.scatter(r["StartTime"], r["Duration"], s=10, color=color, label=how)
        ax.set_ylim(0, top)
        ax.set_ylabel("green (s)")
        ax.set_title("phase %d" % p, fontsize=11)
        _time_axis(ax, d)
        if i // cols < rows - 1:
            ax.set_xlabel("")
    for j in range(n, rows * cols):
        axes[j // cols][j % cols].axis("off")
    handles = [plt.Line2D([], [], marker="o", ls="", color=c, label=h) for h, c in TERM_COLORS.items()]
    fig.legend(handles=handles, loc="lower center", ncol=3, frameon=False)
    fig.suptitle("Split monitor: green per cycle, by termination", fontweight="bold")
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    return _png(fig)


def advance_arrivals(d, detectors, phase):
    """Arrival times (82 on the phase's Advance detectors) as a sorted Series."""
    chans = detectors[(detectors["Phase"] == phase) & (detectors["Function"] == "Advance")]
    chans = set(int(c) for c in chans["Parameter"])
    r = d.raw[(d.raw["EventId"] == 82) & d.raw["Parameter"].isin(chans)]
    return r["TimeStamp"].sort_values()


def cycles_of(d, phase):
    """[(red onset = cycle start, green start, yellow start, next cycle start)] of a phase."""
    g = d.greens[d.greens["EventValue"] == phase].sort_values("StartTime")
    y = d.yellows[d.yellows["EventValue"] == phase].sort_values("StartTime")
    y_end = list(y["EndTime"])
    starts, ends = list(g["StartTime"]), list(g["EndTime"])
    out = []
    for k in range(len(starts) - 1):
        red_on = next((e for e in y_end if ends[k] <= e <= starts[k + 1]), ends[k])
        nxt_y = next((e for e in y_end if ends[k + 1] <= e), None)
        if nxt_y is None:
            break
        out.append((red_on, starts[k + 1], ends[k + 1], nxt_y))
    return out


def pcd_chart(d, detectors, phase, aog):
    """Purdue coordination diagram: arrivals by time in cycle (cycle = red onset to red onset)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(11, 3.6))
    arr = list(advance_arrivals(d, detectors, phase))
    cyc = cycles_of(d, phase)
    xs, ys = [], []
    k = 0
    for c0, g0, y0, c1 in cyc:
        ax.plot([c0, c1], [(g0 - c0).total_seconds()] * 2, color="#2ca02c", lw=1)
        ax.plot([c0, c1], [(y0 - c0).total_seconds()] * 2, color="#f2c200", lw=1)
        while k < len(arr) and arr[k] < c1:
            if arr[k] >= c0:
                xs.append(arr[k])
                ys.append((arr[k] - c0).total_seconds())
            k += 1
    ax.scatter(xs, ys, s=3, color="#222")
    ax.set_ylabel("time in cycle (s)")
    _time_axis(ax, d)
    ax.set_title("Purdue coordination diagram, phase %d: %d arrivals, %s on green (atspm)"
                 % (phase, len(xs), "%.0f %%" % (100 * aog) if aog is not None else "-"))
    ax.plot([], [], color="#2ca02c", label="green start")
    ax.plot([], [], color="#f2c200", label="yellow start")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=9)
    return _png(fig)


def approach_delay(d, detectors, phase):
    """Per 15 minutes: (bin start, arrivals, mean delay s) of advance arrivals waiting for green."""
    arr = list(advance_arrivals(d, detectors, phase))
    g = d.greens[d.greens["EventValue"] == phase].sort_values("StartTime")
    starts, ends = list(g["StartTime"]), list(g["EndTime"])
    bins = {}
    j = 0
    for a in arr:
        while j < len(starts) and ends[j] < a:
            j += 1
        if j >= len(starts):
            break
        wait = max(0.0, (starts[j] - a).total_seconds())
        b = a.floor("%dmin" % BIN_MIN)
        n, s = bins.get(b, (0, 0.0))
        bins[b] = (n + 1, s + wait)
    return [(b, n, s / n) for b, (n, s) in sorted(bins.items())]


def binned_chart(d, table, value, ylabel, title, scale=1.0):
    """atspm's 15-minute bins as grouped bars, one colour per phase, each bar
    inside its bin (the bin's start is its TimeStamp)."""
    import pandas as pd
    plt = _plt()
    fig, ax = plt.subplots(figsize=(11, 3.4))
    phases = [p for p in d.phases if len(table) and (table["Phase"] == p).any()]
    width = pd.Timedelta(minutes=BIN_MIN) / (len(phases) + 1)
    for i, p in enumerate(phases):
        r = table[table["Phase"] == p]
        ax.bar(r["TimeStamp"] + width * (i + 0.5), r[value] * scale, width=width, align="edge",
               label="phase %d" % p, color=PHASE_COLORS[p % len(PHASE_COLORS)])
    _time_axis(ax, d)
    if phases:
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=9)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.set_ylim(bottom=0)
    return _png(fig)


def yellow_red_chart(d, before_s=6, after_s=15):
    """Actuations on Yellow_Red detectors from 6 s before to 15 s after the red
    onset, in 1 s bins stacked by phase (atspm's yellow_red table)."""
    import numpy as np
    plt = _plt()
    yr = d.t["yellow_red"]
    yr = yr[(yr["Red_Offset"] >= -before_s) & (yr["Red_Offset"] < after_s)]
    edges = np.arange(-before_s, after_s + 1)
    fig, ax = plt.subplots(figsize=(11, 3.4))
    ax.axvspan(-before_s, 0, color="#f2c200", alpha=0.15, lw=0)
    ax.axvspan(0, after_s, color="#d62728", alpha=0.07, lw=0)
    bottom = np.zeros(len(edges) - 1)
    for p in sorted(int(x) for x in yr["Phase"].unique()):
        r = yr[yr["Phase"] == p]
        counts, _ = np.histogram(r["Red_Offset"], bins=edges, weights=r["Count"])
        ax.bar(edges[:-1], counts, width=1.0, align="edge", bottom=bottom, label="phase %d" % p,
               color=PHASE_COLORS[p % len(PHASE_COLORS)], edgecolor="white", lw=0.5)
        bottom += counts
    ax.axvline(0, color="#d62728", lw=1)
    ax.set_xlim(-before_s, after_s)
    ax.set_xlabel("seconds from red onset (left of 0: yellow and the end of green; right: red)")
    ax.set_ylabel("actuations (veh per 1 s)")
    ax.set_title("Yellow and red actuations (atspm)")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=9)
    return _png(fig)


def volume_delay_chart(d, detectors, rows):
    """Approach volume (advance actuations, veh/h) and delay (s/veh) per 15 minutes."""
    plt = _plt()
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(11, 5.2), sharex=True)
    import pandas as pd
    half = pd.Timedelta(minutes=BIN_MIN / 2)       # each bin drawn at its middle
    for p, series in rows:
        if series:
            c = PHASE_COLORS[p % len(PHASE_COLORS)]
            a1.plot([b + half for b, _, _ in series], [n * 60 / BIN_MIN for _, n, _ in series],
                    marker="o", ms=4, label="phase %d" % p, color=c)
            a2.plot([b + half for b, _, _ in series], [m for _, _, m in series], marker="o", ms=4,
                    label="phase %d" % p, color=c)
    a1.set_ylabel("volume (veh/h)")
    a1.set_title("Approach volume and delay (advance detectors)")
    a2.set_ylabel("delay (s/veh)")
    for ax in (a1, a2):
        _time_axis(ax, d)
        ax.set_ylim(bottom=0)
    a1.set_xlabel("")
    if any(series for _, series in rows):
        a1.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=9)
    fig.tight_layout()
    return _png(fig)


def summary_rows(d):
    """Per phase, over the whole export: counts and means with their units."""
    t = d.t
    rows = []
    for p in d.phases:
        term = t["terminations"][t["terminations"]["Phase"] == p]
        n = lambda how: int(term[term["PerformanceMeasure"] == how]["Total"].sum())
        greens = d.greens[d.greens["EventValue"] == p]["Duration"]
        pw = t["phase_wait"][t["phase_wait"]["Phase"] == p]
        aog = t["arrival_on_green"][t["arrival_on_green"]["Phase"] == p]
        sf = t["split_failures"][t["split_failures"]["Phase"] == p]
        ped = t["ped"][t["ped"]["Phase"] == p]
        pdl = t["ped_delay"][t["ped_delay"]["Phase"] == p]
        aog_share = (float((aog["Percent_AOG"] * aog["Total_Actuations"]).sum()
                           / aog["Total_Actuations"].sum()) if aog["Total_Actuations"].sum() else None)
        rows.append((p, len(greens), n("GapOut"), n("MaxOut"), n("ForceOff"),
                     _f(greens.mean(), "%.1f"), _f(_weighted(pw, "AvgPhaseWait", None), "%.1f"),
                     _f(pw["MaxPhaseWait"].max() if len(pw) else None, "%.1f"),
                     _f(100 * aog_share if aog_share is not None else None, "%.0f"),
                     int(sf["Split_Failure"].sum()) if len(sf) else 0,
                     int(ped["PedActuation"].sum()) if len(ped) else 0,
                     int(ped["PedServices"].sum()) if len(ped) else 0,
                     _f(_weighted(pdl, "AvgPedDelay", "Samples"), "%.1f")))
    return rows


SUMMARY_HEAD = ("phase", "greens ended (count)", "gap-outs (count)", "max-outs (count)",
                "force-offs (count)", "mean green (s)", "mean phase wait (s)",
                "max phase wait (s)", "arrivals on green (%)", "split failures (count)",
                "ped actuations (count)", "ped walks (count)", "mean ped delay (s)")


def _weighted(df, col, weight):
    if not len(df):
        return None
    if weight is None:
        return float(df[col].mean())
    return float((df[col] * df[weight]).sum() / df[weight].sum())


def _f(x, fmt):
    if x is None or x != x:
        return "-"
    return fmt % x


def flash_rows(d):
    tl = d.t["timeline"]
    fl = tl[tl["EventClass"].astype(str).str.startswith("Flash")]
    return [(str(r.StartTime)[:19], str(r.EndTime)[:19], r.EventClass) for r in fl.itertuples()]


def build(events_path, detectors_path, title=None):
    """(title, figures [(png, heading, caption)], summary rows, flash rows)."""
    import pandas as pd
    tables = run_atspm(events_path, detectors_path)
    if not len(tables["raw_data"]):
        raise ValueError("%s holds no events" % events_path)
    d = Data(tables)
    if not d.phases:
        raise ValueError("%s: no phase turned green in these events, nothing to chart" % events_path)
    if detectors_path.endswith(".parquet"):
        detectors = pd.read_parquet(detectors_path)
    else:
        detectors = pd.read_csv(detectors_path, dtype={"DeviceId": str})
    title = title or "Signal performance measures: %s, %s to %s" % (
        d.device, d.t0.strftime("%Y-%m-%d %H:%M"), d.t1.strftime("%H:%M"))
    figs = [(termination_chart(d), "Purdue phase termination",
             "Each green's end at its local time: gap-out, max-out or force-off; triangles "
             "mark walks. Counts per 15 minutes are atspm's terminations table.")]
    figs.append((split_monitor(d), "Split monitor",
                 "atspm's green intervals (s), one dot per cycle, coloured by the termination "
                 "that ended them."))
    aog = d.t["arrival_on_green"]
    adv_phases = sorted(int(p) for p in detectors[detectors["Function"] == "Advance"]["Phase"].unique())
    coord = d.raw[d.raw["EventId"] == 151]
    pcd_phases = sorted(int(p) for p in coord["Parameter"].unique()) or adv_phases
    for p in pcd_phases:
        a = aog[aog["Phase"] == p]
        share = (float((a["Percent_AOG"] * a["Total_Actuations"]).sum() / a["Total_Actuations"].sum())
                 if a["Total_Actuations"].sum() else None)
        figs.append((pcd_chart(d, detectors, p, share), "Purdue coordination diagram, phase %d" % p,
                     "Each advance-detector arrival at its time in the cycle (red onset to red "
                     "onset); lines: green and yellow start of each cycle. %s"
                     % ("Coordinated phase (yield point logged)." if len(coord) else
                        "Free operation: the phase's cycle is its own red-to-red.")))
    figs.append((binned_chart(d, aog, "Percent_AOG", "arrivals on green (%)",
                              "Arrivals on green per 15 minutes (atspm)", scale=100),
                 "Arrivals on green", "Share of advance-detector arrivals during green."))
    figs.append((binned_chart(d, d.t["split_failures"], "Split_Failure", "split failures (count)",
                              "Split failures per 15 minutes (atspm, by approach)"),
                 "Split failures", "Cycles with stop-bar occupancy >= 80 % in green and in the "
                 "first 5 s of red."))
    figs.append((yellow_red_chart(d), "Yellow and red actuations",
                 "Stop-bar (Yellow_Red) actuations by their offset from the red onset."))
    figs.append((binned_chart(d, d.t["ped_delay"], "AvgPedDelay", "mean ped delay (s)",
                              "Pedestrian delay per 15 minutes (atspm)"),
                 "Pedestrian delay", "From the button press (90) to the walk (21) of its phase."))
    figs.append((binned_chart(d, d.t["phase_wait"], "AvgPhaseWait", "mean phase wait (s)",
                              "Phase wait per 15 minutes (atspm)"),
                 "Phase wait", "From a call (43) to the phase's green (1)."))
    rows = [(p, approach_delay(d, detectors, p)) for p in adv_phases]
    figs.append((volume_delay_chart(d, detectors, rows), "Approach volume and delay",
                 "Advance-detector actuations scaled to vehicles per hour, and each arrival's "
                 "wait from arrival to the next green (0 on green), averaged per 15 minutes."))
    return title, figs, summary_rows(d), flash_rows(d)


def render(title, figs, summary, flashes, sources):
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>%s</title><style>%s</style>"
             "</head><body>" % (html.escape(title), CSS), "<h1>%s</h1>" % html.escape(title)]
    parts.append('<p class="small">Measures by atspm (ODOT, PyPI) over %s; charts drawn by '
                 'edge-agent. Times are the site\'s local time.</p>' % html.escape(sources))
    parts.append("<h2>Per phase, whole period</h2>")
    parts.append(_table(SUMMARY_HEAD, summary))
    if flashes:
        parts.append("<h2>Flash</h2>")
        parts.append(_table(("from (local)", "to (local)", "status (event 173)"), flashes))
    for png, heading, caption in figs:
        parts.append("<h2>%s</h2>" % html.escape(heading))
        parts.append(_img(png, heading))
        parts.append('<p class="small">%s</p>' % html.escape(caption))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(out_path, events_path, detectors_path, title=None, png_dir=None):
    """Write the HTML page (and, with png_dir, each chart as a PNG); returns the figures."""
    import os
    title, figs, summary, flashes = build(events_path, detectors_path, title)
    with open(out_path, "w") as f:
        f.write(render(title, figs, summary, flashes, "%s, %s" % (
            os.path.basename(events_path), os.path.basename(detectors_path))))
    if png_dir:
        os.makedirs(png_dir, exist_ok=True)
        for png, heading, _ in figs:
            name = "".join(c if c.isalnum() else "-" for c in heading.lower()).strip("-")
            with open(os.path.join(png_dir, name + ".png"), "wb") as f:
                f.write(png)
    return figs
