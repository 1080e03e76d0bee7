"""The event log as ATSPM reads it: an events table and a detector table.

    rows = event_rows(site, [(unix_ms, code, param), ...])
    write_export("out/", site, rows, fmt="csv")     # out/events.csv, out/detectors.csv

events: `TimeStamp, DeviceId, EventId, Parameter`, TimeStamp in the site's
local time with its UTC offset (`2026-03-08 03:00:00.100-04:00`; in Parquet a
millisecond timestamp carrying the zone). detectors: `DeviceId, Phase,
Parameter, Function`, one row per function of each detector channel (ped
buttons: Function `Ped`). The events come from three places, all reduced to
(unix ms, code, param): the unit's history (drivers/history.py), a run log
(`events tail --json` lines, or the outbox journal `[seq, unix, mono, code,
param]`), and a rig run (the core's monotonic ms from a given local start).
"""

import csv
import json
import os
from datetime import datetime

from drivers.history import read_history
from drivers.localtime import local_stamp, parse_local, site_zone
from edge_agent.intersection import parse_site
from edge_agent.validate import ConfigError

EVENT_COLUMNS = ("TimeStamp", "DeviceId", "EventId", "Parameter")
DETECTOR_COLUMNS = ("DeviceId", "Phase", "Parameter", "Function")
FORMATS = ("csv", "parquet")


class ExportError(Exception):
    """An export that cannot be made, with the reason for the user."""


def load_site(path):
    """The Site of a site file (or a run config wrapping one as {"site": ...})."""
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError) as e:
        raise ExportError("site %s: %s" % (path, e))
    if isinstance(doc, dict) and "site" in doc:
        doc = doc["site"]
    try:
        site = parse_site(doc)
        site_zone(site.time_zone)
    except ConfigError as e:
        raise ExportError("site %s is invalid:\n  %s" % (path, "\n  ".join(e.errors)))
    except ValueError as e:
        raise ExportError("site %s: %s" % (path, e))
    return site


def rig_start_ms(site, start_tod_ms, start=None):
    """Unix ms of a rig run's start: `start` (local text), or today at the
    scenario's time of day in the site's zone."""
    zone = site_zone(site.time_zone)
    try:
        if start:
            return parse_local(start, zone)
        s = start_tod_ms // 1000
        return parse_local("%sT%02d:%02d:%02d" % (datetime.now(zone).date(), s // 3600 % 24,
                                                   s % 3600 // 60, s % 60), zone)
    except ValueError as e:
        raise ExportError("--start: %s" % e)


def run_and_export(scenario, duration_s=None, seed=None, start=None):
    """Run the agent on a rig scenario: (site, [(unix ms, code, param)])."""
    from hil.rig import run_actuated
    from hil.scenario import ScenarioError, load_scenario
    try:
        sc = load_scenario(scenario)
    except (OSError, ValueError, ScenarioError) as e:
        raise ExportError("scenario %s: %s" % (scenario, e))
    site = parse_site(sc.site)
    start_ms = rig_start_ms(site, sc.start_tod_ms, start)
    r = run_actuated(sc, duration_s, seed)
    return site, rig_events(r.events, start_ms)


def export_rig_run(directory, site, events, start_tod_ms=0, start=None, fmt="csv"):
    """Write a finished rig run's export (`hil run/sumo --export`); returns the paths."""
    return write_export(directory, site, rig_events(events, rig_start_ms(site, start_tod_ms, start)),
                        fmt)


def add_export_arguments(parser):
    """--export DIR, --export-format, --start: the same export from any rig command."""
    parser.add_argument("--export", metavar="DIR",
                        help="write the agent's event log and detector table for ATSPM here")
    parser.add_argument("--export-format", choices=FORMATS, default="csv")
    parser.add_argument("--start", metavar="TIME",
                        help="local start of the run in the export (default: today, the "
                             "scenario's time of day)")


def rig_events(events, start_ms):
    """A rig run's (mono ms from 0, code, param) as (unix ms, code, param), the
    run starting at unix ms start_ms; in time order (ties keep their order)."""
    out = [(start_ms + ms, code, param) for ms, code, param in events]
    out.sort(key=lambda e: e[0])
    return out


def log_events(path, intersection=None):
    """Events of a run log: `events tail --json` lines ({"intersection", "unix_ms",
    "code", "param"}) or outbox journal lines ([seq, unix_ms, mono_ms, code, param])."""
    out = []
    with open(path, "rb") as f:
        for n, line in enumerate(f.read().split(b"\n"), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                raise ExportError("%s line %d: not JSON" % (path, n))
            if isinstance(rec, dict):
                if "gap" in rec:
                    continue
                if intersection is not None and rec.get("intersection") not in (None, intersection):
                    continue
                t, code, param = rec.get("unix_ms"), rec.get("code"), rec.get("param")
            elif isinstance(rec, list) and len(rec) >= 5:
                t, code, param = rec[1], rec[3], rec[4]
            else:
                raise ExportError("%s line %d: neither an events tail record nor a journal line"
                                  % (path, n))
            if not all(isinstance(x, int) for x in (t, code, param)):
                continue            # a loss record without times or params
            out.append((t, code, param))
    out.sort(key=lambda e: e[0])
    return out


def history_events(directory, since_ms=None, until_ms=None):
    """Events of a unit's history directory in [since_ms, until_ms)."""
    if not os.path.isdir(directory):
        raise ExportError("%s: no event history here (the runtime keeps it in <store_dir>/history)"
                          % directory)
    return read_history(directory, since_ms, until_ms)


def window(events, since_ms=None, until_ms=None):
    return [e for e in events if (since_ms is None or e[0] >= since_ms)
            and (until_ms is None or e[0] < until_ms)]


def event_rows(site, events):
    """(TimeStamp, DeviceId, EventId, Parameter) rows, TimeStamp local with offset."""
    zone = site_zone(site.time_zone)
    dev = site.device_id
    return [(local_stamp(zone, t), dev, code, param) for t, code, param in events]


def detector_rows(site):
    """(DeviceId, Phase, Parameter, Function) rows: the site's detector table."""
    rows = []
    for d in site.detectors:
        for fn in d.functions:
            rows.append((site.device_id, d.phase, d.channel, fn))
    for d in site.ped_detectors:
        for fn in d.functions:
            rows.append((site.device_id, d.phase, d.channel, fn))
    return rows


def write_export(directory, site, events, fmt="csv"):
    """Write events.<fmt> and detectors.<fmt> into directory; returns their paths."""
    if fmt not in FORMATS:
        raise ExportError("format %r: use csv or parquet" % (fmt,))
    os.makedirs(directory, exist_ok=True)
    ev_path = os.path.join(directory, "events." + fmt)
    det_path = os.path.join(directory, "detectors." + fmt)
    if fmt == "csv":
        _csv(ev_path, EVENT_COLUMNS, event_rows(site, events))
        _csv(det_path, DETECTOR_COLUMNS, detector_rows(site))
    else:
        _parquet_events(ev_path, site, events)
        _parquet_detectors(det_path, site)
    return ev_path, det_path


def _csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _arrow():
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise ExportError("parquet needs pyarrow (pip install -e '.[atspm]')")
    return pyarrow


def _parquet_events(path, site, events):
    pa = _arrow()
    table = pa.table({
        "TimeStamp": pa.array([t for t, _, _ in events], pa.int64()).cast(
            pa.timestamp("ms", tz=site.time_zone)),
        "DeviceId": pa.array([site.device_id] * len(events), pa.string()),
        "EventId": pa.array([c for _, c, _ in events], pa.int32()),
        "Parameter": pa.array([p for _, _, p in events], pa.int32())})
    pa.parquet.write_table(table, path)


def _parquet_detectors(path, site):
    pa = _arrow()
    rows = detector_rows(site)
    table = pa.table({name: [r[i] for r in rows] for i, name in enumerate(DETECTOR_COLUMNS)})
    pa.parquet.write_table(table, path)


def parse_window(site, since, until):
    """(since_ms, until_ms) from user text in the site's zone (either may be None)."""
    zone = site_zone(site.time_zone)
    try:
        lo = parse_local(since, zone) if since else None
        hi = parse_local(until, zone) if until else None
    except ValueError as e:
        raise ExportError(str(e))
    if lo is not None and hi is not None and hi <= lo:
        raise ExportError("--until %s is not after --since %s" % (until, since))
    return lo, hi


def read_events_frame(path, zone_name=None):
    """An exported events file as a pandas DataFrame with TimeStamp as naive local
    time, the way ATSPM bins it (DuckDB would turn an offset into its own zone)."""
    import pandas as pd
    if path.endswith(".parquet"):
        df = pd.read_parquet(path)
        ts = df["TimeStamp"]
        if getattr(ts.dt, "tz", None) is not None:
            df["TimeStamp"] = ts.dt.tz_localize(None) if zone_name is None else \
                ts.dt.tz_convert(zone_name).dt.tz_localize(None)
        return df
    df = pd.read_csv(path, dtype={"TimeStamp": str, "DeviceId": str})
    # Local wall time is the text before the offset: "YYYY-MM-DD HH:MM:SS.mmm".
    df["TimeStamp"] = pd.to_datetime(df["TimeStamp"].str.slice(0, 23), format="%Y-%m-%d %H:%M:%S.%f")
    return df
