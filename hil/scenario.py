"""Scenario files for the built-in intersection simulator: geometry, demand, detectors, site.

A scenario is one JSON object (see hil/scenarios/*.json):

- "seed", "start" (time of day the simulation begins, "07:00"), "duration_s"
  (what a demo runs), "model" (speed, saturation flow, lost time… defaults below);
- "approaches": {"EB": {"L": {...}, "T": {...}, "R": {...}}, ...} where each
  movement gives its controller "phase", "lanes", and optionally
  "permissive_phase" (a left that may also filter through gaps while that
  phase is green), "sat_flow_vphpl", and the approach may set "speed_kmh";
- "demand": {"base_vph": {"EB_T": 800, ...}, "base_peds_ph": {"P2": 30},
  "periods": [{"from": "07:00", "scale": 1.2, "vph": {...overrides...}}, ...]}
  piecewise constant by time of day, repeating daily;
- "platoons": {"EB_T": {"cycle_s": 100, "green_s": 45, "offset_s": 10, "share": 0.8}};
- "detectors": [{"channel", "phase", "name", "movements", "at_m", "length_m", "lanes"?}]
  — the simulator's loops and the controller channel each one feeds;
- "ped_buttons": [{"id", "channel", "phase", "name"}];
- "measures": {"reference_phase": 2, "pcd_phase": 2};
- "site": the controller site configuration for the agent (edge_agent.intersection format).

Movement ids are approach + "_" + turn: "EB_L", "EB_T", "EB_R"; approaches are
named by travel direction.
"""

import json
import os

from hil.demand import DailyProfile, Platoon, parse_time_of_day

SCENARIO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scenarios")

APPROACHES = ("EB", "WB", "NB", "SB")
TURNS = ("L", "T", "R")
OPPOSITE = {"EB": "WB", "WB": "EB", "NB": "SB", "SB": "NB"}

DEFAULT_MODEL = {
    "speed_kmh": 50.0,          # approach speed (free flow)
    "approach_m": 250.0,        # where vehicles enter, upstream of the stop bar
    "vehicle_length_m": 5.0,
    "jam_spacing_m": 7.0,       # stop-bar-to-stop-bar spacing of queued vehicles
    "sat_flow_vphpl": 1900.0,   # saturation flow per lane
    "startup_lost_s": 2.0,      # start-up lost time of a standing queue
    "yellow_entry_s": 2.0,      # drivers still enter during the first part of yellow
    "critical_gap_s": 4.5,      # permissive left: gap needed in the opposing flow
    "stop_headway_s": 4.0,      # flash / dark: every vehicle stops, one per lane per headway
}


SCENARIO_KEYS = ("name", "description", "timing_basis", "seed", "start", "duration_s", "model",
                 "approaches", "demand", "platoons", "detectors", "ped_buttons", "measures", "site")
DEMAND_KEYS = ("base_vph", "base_peds_ph", "periods")


class ScenarioError(ValueError):
    """A scenario that failed validation; the message lists every problem."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("invalid scenario:\n  " + "\n  ".join(self.problems))


class MovementSpec:
    """One movement (e.g. EB through) with its phase, lanes and demand."""

    __slots__ = ("id", "approach", "turn", "phase", "permissive_phase", "lanes",
                 "sat_flow_vphpl", "speed_mps", "opposing", "profile", "platoon")

    def __repr__(self):
        return f"MovementSpec({self.id}, phase {self.phase}, {self.lanes} lanes)"


class DetectorSpec:
    """A simulated loop: which lanes it covers, where it lies, which channel it feeds."""

    __slots__ = ("channel", "phase", "name", "movements", "lanes", "at_m", "length_m")

    def __repr__(self):
        return f"DetectorSpec(ch {self.channel}, {self.name!r}, {self.at_m} m)"


class PedButtonSpec:
    """A pedestrian push button with its ped channel and its own arrival rate."""

    __slots__ = ("id", "channel", "phase", "name", "profile")


class Scenario:
    """A parsed, validated scenario. `raw` keeps the original dict; `site` the controller config."""

    __slots__ = ("name", "description", "seed", "start_tod_ms", "duration_s", "model",
                 "movements", "detectors", "ped_buttons", "reference_phase", "pcd_phase",
                 "site", "raw")

    def movement(self, mid):
        """The MovementSpec with id `mid`."""
        for m in self.movements:
            if m.id == mid:
                return m
        raise KeyError(mid)

    def phases(self):
        """Vehicle phases that serve at least one movement, ascending."""
        return sorted({m.phase for m in self.movements})


def scenario_path(name):
    """Path of a bundled scenario: 'suburban' -> .../hil/scenarios/suburban.json."""
    return os.path.join(SCENARIO_DIR, name + ".json")


def load_scenario(source):
    """Parse a scenario from a JSON file path, a bundled scenario's name, or a dict; raise ScenarioError."""
    if isinstance(source, Scenario):
        return source
    name = None
    if isinstance(source, str) and not os.path.exists(source) and os.path.exists(scenario_path(source)):
        source = scenario_path(source)
    if isinstance(source, (str, os.PathLike)):
        with open(source, encoding="utf-8") as f:
            raw = json.load(f)
        name = os.path.splitext(os.path.basename(os.fspath(source)))[0]
    elif isinstance(source, dict):
        raw = source
    else:
        raise TypeError("load_scenario takes a path or a dict")
    return _parse(raw, name)


def _num(d, key, where, problems, default=None, lo=None, hi=None):
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        problems.append(f"{where}.{key}: {v!r} is not a number")
        return default if default is not None else 0
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        problems.append(f"{where}.{key}: {v} is outside [{lo}, {hi}]")
    return v


def _parse(raw, name):
    p = []
    for k in raw:
        if k not in SCENARIO_KEYS:
            p.append(f"{k}: unknown key (known: {', '.join(SCENARIO_KEYS)})")
    for k in raw.get("demand") or {}:
        if k not in DEMAND_KEYS:
            p.append(f"demand.{k}: unknown key (known: {', '.join(DEMAND_KEYS)})")
    sc = Scenario()
    sc.raw = raw
    sc.name = raw.get("name", name or "scenario")
    sc.description = raw.get("description", "")
    sc.seed = raw.get("seed", 0)
    if isinstance(sc.seed, bool) or not isinstance(sc.seed, int):
        p.append(f"seed: {sc.seed!r} is not an integer")
    try:
        sc.start_tod_ms = parse_time_of_day(raw.get("start", "00:00"), "start")
    except ValueError as e:
        p.append(str(e))
        sc.start_tod_ms = 0
    sc.duration_s = _num(raw, "duration_s", "", p, 3600, 1, 7 * 86400)

    model = dict(DEFAULT_MODEL)
    for k, v in (raw.get("model") or {}).items():
        if k not in DEFAULT_MODEL:
            p.append(f"model.{k}: unknown parameter (known: {', '.join(sorted(DEFAULT_MODEL))})")
        else:
            model[k] = _num(raw["model"], k, "model", p, DEFAULT_MODEL[k], 0)
    for k in ("speed_kmh", "approach_m", "vehicle_length_m", "jam_spacing_m", "sat_flow_vphpl"):
        if model[k] <= 0:
            p.append(f"model.{k}: must be positive")
    if model["jam_spacing_m"] < model["vehicle_length_m"]:
        p.append("model.jam_spacing_m: shorter than the vehicle length")
    sc.model = model

    demand = raw.get("demand") or {}
    periods = demand.get("periods") or [{"from": "00:00"}]
    starts = []
    for i, per in enumerate(periods):
        try:
            starts.append(parse_time_of_day(per.get("from"), f"demand.periods[{i}].from"))
        except ValueError as e:
            p.append(str(e))
            starts.append(0)
    if len(set(starts)) != len(starts):
        p.append("demand.periods: two periods start at the same time of day")

    sc.movements = _parse_movements(raw, model, demand, periods, starts, p)
    mids = {m.id for m in sc.movements}
    for where, table in (("demand.base_vph", demand.get("base_vph") or {}),) + tuple(
            (f"demand.periods[{i}].vph", per.get("vph") or {}) for i, per in enumerate(periods)):
        for mid in table:
            if mid not in mids:
                p.append(f"{where}.{mid}: no such movement")
    sc.detectors = _parse_detectors(raw, sc.movements, p)
    sc.ped_buttons = _parse_ped_buttons(raw, demand, periods, starts, p)
    meas = raw.get("measures") or {}
    sc.reference_phase = meas.get("reference_phase", 2)
    sc.pcd_phase = meas.get("pcd_phase", sc.reference_phase)
    meas_phases = {m.phase for m in sc.movements}
    for key in ("reference_phase", "pcd_phase"):
        if getattr(sc, key) not in meas_phases:
            p.append(f"measures.{key}: {getattr(sc, key)} serves no movement")
    for i, d in enumerate(sc.detectors):
        if d.at_m + d.length_m >= model["approach_m"]:
            p.append(f"detectors[{i}]: reaches past the approach entry at {model['approach_m']} m")
    sc.site = raw.get("site")
    _check_site(sc, p)
    if p:
        raise ScenarioError(p)
    return sc


def _parse_movements(raw, model, demand, periods, starts, p):
    approaches = raw.get("approaches") or {}
    if not approaches:
        p.append("approaches: none given")
    base = demand.get("base_vph") or {}
    platoons = raw.get("platoons") or {}
    out = []
    for a in approaches:
        if a not in APPROACHES:
            p.append(f"approaches.{a}: not one of {', '.join(APPROACHES)}")
    for a in APPROACHES:
        if a not in approaches:
            continue
        adef = approaches[a]
        speed_kmh = _num(adef, "speed_kmh", f"approaches.{a}", p, model["speed_kmh"], 5, 130)
        for t in adef:
            if t not in TURNS and t != "speed_kmh":
                p.append(f"approaches.{a}.{t}: not one of L, T, R")
        for t in TURNS:
            if t not in adef:
                continue
            where = f"approaches.{a}.{t}"
            md = adef[t]
            m = MovementSpec()
            m.id = f"{a}_{t}"
            m.approach, m.turn = a, t
            m.phase = _num(md, "phase", where, p, 0, 1, 16)
            m.permissive_phase = md.get("permissive_phase")
            if m.permissive_phase is not None:
                _num(md, "permissive_phase", where, p, 0, 1, 16)
                if t != "L":
                    p.append(f"{where}.permissive_phase: only a left turn filters through gaps")
            m.lanes = _num(md, "lanes", where, p, 1, 1, 6)
            if not isinstance(m.lanes, int):
                p.append(f"{where}.lanes: {m.lanes!r} is not a whole number")
                m.lanes = 1
            m.sat_flow_vphpl = _num(md, "sat_flow_vphpl", where, p, model["sat_flow_vphpl"], 100, 3000)
            m.speed_mps = speed_kmh / 3.6
            opp = OPPOSITE[a]
            m.opposing = tuple(f"{opp}_{x}" for x in ("T", "R") if x in approaches.get(opp, {}))
            rates = []
            for i, per in enumerate(periods):
                scale = per.get("scale", 1.0)
                rate = (per.get("vph") or {}).get(m.id, base.get(m.id, 0.0) * scale)
                if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate < 0:
                    p.append(f"demand.periods[{i}]: rate of {m.id} {rate!r} is not a non-negative number")
                    rate = 0.0
                rates.append((starts[i], rate))
            m.profile = DailyProfile(rates)
            m.platoon = None
            if m.id in platoons:
                pd = platoons[m.id]
                pw = f"platoons.{m.id}"
                cyc = _num(pd, "cycle_s", pw, p, 100, 20, 300)
                grn = _num(pd, "green_s", pw, p, cyc / 2, 1, cyc)
                m.platoon = Platoon(round(cyc * 1000), round(grn * 1000),
                                    round(_num(pd, "offset_s", pw, p, 0, 0, cyc) * 1000),
                                    _num(pd, "share", pw, p, 0.8, 0, 1))
            out.append(m)
    for mid in platoons:
        if mid not in {m.id for m in out}:
            p.append(f"platoons.{mid}: no such movement")
    for m in out:
        if m.permissive_phase is not None and not m.opposing:
            p.append(f"approaches.{m.approach}.L.permissive_phase: no opposing through to yield to")
    return out


def _parse_detectors(raw, movements, p):
    by_id = {m.id: m for m in movements}
    out, seen = [], set()
    for i, dd in enumerate(raw.get("detectors") or []):
        where = f"detectors[{i}]"
        d = DetectorSpec()
        d.channel = _num(dd, "channel", where, p, 0, 1, 128)
        if d.channel in seen:
            p.append(f"{where}.channel: {d.channel} used twice")
        seen.add(d.channel)
        d.phase = _num(dd, "phase", where, p, 0, 1, 16)
        d.name = dd.get("name", f"detector {d.channel}")
        d.movements = tuple(dd.get("movements") or ())
        if not d.movements:
            p.append(f"{where}.movements: none given")
        for mid in d.movements:
            if mid not in by_id:
                p.append(f"{where}.movements: {mid!r} is no movement of this scenario")
        d.lanes = dd.get("lanes")
        if d.lanes is not None:
            d.lanes = tuple(d.lanes)
            for mid in d.movements:
                if mid in by_id and any(not 0 <= k < by_id[mid].lanes for k in d.lanes):
                    p.append(f"{where}.lanes: {list(d.lanes)} outside the lanes of {mid}")
        d.at_m = _num(dd, "at_m", where, p, 0.0, 0, 2000)
        d.length_m = _num(dd, "length_m", where, p, 2.0, 0.1, 200)
        out.append(d)
    return out


def _parse_ped_buttons(raw, demand, periods, starts, p):
    base = demand.get("base_peds_ph") or {}
    out, seen = [], set()
    for i, bd in enumerate(raw.get("ped_buttons") or []):
        where = f"ped_buttons[{i}]"
        b = PedButtonSpec()
        b.id = bd.get("id", f"P{i}")
        b.channel = _num(bd, "channel", where, p, 0, 1, 64)
        if b.channel in seen:
            p.append(f"{where}.channel: {b.channel} used twice")
        seen.add(b.channel)
        b.phase = _num(bd, "phase", where, p, 0, 1, 16)
        b.name = bd.get("name", b.id)
        rates = []
        for k, per in enumerate(periods):
            scale = per.get("ped_scale", per.get("scale", 1.0))
            rate = (per.get("peds_ph") or {}).get(b.id, base.get(b.id, 0.0) * scale)
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate < 0:
                p.append(f"demand.periods[{k}]: ped rate of {b.id} {rate!r} is not a non-negative number")
                rate = 0.0
            rates.append((starts[k], rate))
        b.profile = DailyProfile(rates)
        out.append(b)
    return out


def _check_site(sc, p):
    """The simulator's channels must be the site's channels, on the same phases."""
    site = sc.site
    if site is None:
        return
    if not isinstance(site, dict):
        p.append("site: not an object")
        return
    site_phases = {ph.get("phase") for ph in site.get("phases") or ()}
    for m in sc.movements:
        for ph in (m.phase, m.permissive_phase):
            if ph is not None and ph not in site_phases:
                p.append(f"approaches.{m.approach}.{m.turn}: phase {ph} is not a phase of the site")
    site_det = {d.get("channel"): d.get("phase") for d in site.get("detectors") or ()}
    for i, d in enumerate(sc.detectors):
        if d.channel not in site_det:
            p.append(f"detectors[{i}].channel: {d.channel} is not a detector channel of the site")
        elif site_det[d.channel] != d.phase:
            p.append(f"detectors[{i}].phase: {d.phase}, but the site assigns channel "
                     f"{d.channel} to phase {site_det[d.channel]}")
    site_ped = {d.get("channel"): d.get("phase") for d in site.get("ped_detectors") or ()}
    for i, b in enumerate(sc.ped_buttons):
        if b.channel not in site_ped:
            p.append(f"ped_buttons[{i}].channel: {b.channel} is not a ped detector channel of the site")
        elif site_ped[b.channel] != b.phase:
            p.append(f"ped_buttons[{i}].phase: {b.phase}, but the site assigns ped channel "
                     f"{b.channel} to phase {site_ped[b.channel]}")
