"""Many intersections in one SUMO simulation, each its own Agent, stepped in virtual time.

    rig = NetworkRig(net, [routes, ev_routes], netmap, additional=[loops], seed=1).start()
    r = rig.step({"J1": vehicle, ...})       # show each light, advance SUMO one step
    r["J1"].detectors, r["J1"].pulses       # what that light's loops saw during the step
    measures = rig.close()

The rig pushes a light's state to SUMO only when it changed and reads the
loops through one subscription each (vehicle ids on the loop this step).
``run_agents`` composes it with one ``Agent`` per light and, if given, a
brain hook; ``run_program`` runs SUMO's own static or actuated programs on
the same network, demand and seed.
"""

import os
import shutil
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from edge_agent.agent import Agent, Inputs
from edge_agent.indications import GREEN, RED, YELLOW, MAX_PHASES
from edge_agent.intersection import parse_site

from hil.sumo import build as _build
from hil.sumo.bridge import StepResult, _constants, _libsumo_in_use


def _sumo_args(net, routes, additional, seed, step_s, work, end_s=None):
    args = ["-n", str(net), "-r", ",".join(str(r) for r in routes),
            "--step-length", "%g" % step_s, "--seed", str(int(seed)),
            "--time-to-teleport", "-1",
            "--tripinfo-output", str(work / "tripinfo.xml"),
            "--tripinfo-output.write-unfinished", "true",
            "--statistic-output", str(work / "statistics.xml"),
            "--no-step-log", "true", "--duration-log.disable", "true",
            "--log", str(work / "sumo.log")]
    if additional:
        args += ["-a", ",".join(str(a) for a in additional)]
    if end_s is not None:
        args += ["--begin", "0", "--end", "%g" % end_s]
    return args


class NetworkRig:
    """SUMO (libsumo) playing every light of a network for the map's sites."""

    def __init__(self, net, routes, netmap, additional=(), seed=1, step_ms=100, keep_files=False):
        if step_ms <= 0 or step_ms % 10:
            raise ValueError("step_ms must be a positive multiple of 10")
        self.net, self.routes, self.map = Path(net), [Path(r) for r in routes], netmap
        self.additional = [Path(a) for a in additional]
        self.seed, self.step_ms, self.keep_files = seed, int(step_ms), keep_files
        self.time_ms = 0
        self.pushes = 0                 # setRedYellowGreenState calls
        self._conn = None
        self._measures = None
        self.work_dir = None

    def start(self):
        if _libsumo_in_use[0]:
            raise RuntimeError("a libsumo simulation is already running in this process")
        import libsumo
        self.work_dir = Path(tempfile.mkdtemp(prefix="sumo-net-"))
        libsumo.start(["sumo"] + _sumo_args(self.net, self.routes, self.additional, self.seed,
                                            self.step_ms / 1000.0, self.work_dir))
        _libsumo_in_use[0] = True
        self._conn = libsumo
        var = _constants().LAST_STEP_VEHICLE_ID_LIST
        self._var = var
        self._loops = []                # (loop id, tls, channel)
        for tls, t in sorted(self.map.tls.items()):
            for loop, ch in sorted(t.loops.items()):
                libsumo.inductionloop.subscribe(loop, (var,))
                self._loops.append((loop, tls, ch))
        self._prev = {loop: () for loop, _, _ in self._loops}
        self._shown = {tls: None for tls in self.map.tls}
        self._state = {tls: None for tls in self.map.tls}
        return self

    def show(self, tls, vehicle):
        """Show phase indications on light ``tls``; pushed to SUMO only on a change."""
        if vehicle == self._shown[tls]:
            return
        self._shown[tls] = list(vehicle)
        state = self.map.tls[tls].state(vehicle)
        if state != self._state[tls]:
            self._conn.trafficlight.setRedYellowGreenState(tls, state)
            self._state[tls] = state
            self.pushes += 1

    def step(self, shows=None):
        """Show ``{tls: vehicle}``, advance one step; return {tls: StepResult}."""
        for tls, vehicle in (shows or {}).items():
            self.show(tls, vehicle)
        conn = self._conn
        conn.simulationStep()
        self.time_ms += self.step_ms
        res = conn.inductionloop.getAllSubscriptionResults()
        var = self._var
        out = {tls: StepResult(self.time_ms, {}, {}) for tls in self.map.tls}
        for loop, tls, ch in self._loops:
            ids = res[loop][var]
            prev = self._prev[loop]
            r = out[tls]
            r.detectors[ch] = bool(ids)
            r.pulses[ch] = sum(1 for v in ids if v not in prev) if ids else 0
            self._prev[loop] = ids
        return out

    def vehicle_ids(self):
        """The ids of the vehicles in the network now."""
        return self._conn.vehicle.getIDList()

    def vehicle_position(self, vid):
        """(edge id, position on it m) of a vehicle now, or None when not in the network."""
        try:
            return self._conn.vehicle.getRoadID(vid), self._conn.vehicle.getLanePosition(vid)
        except Exception:       # libsumo raises TraCIException for an unknown id
            return None

    def close(self):
        """End the simulation; return the corridor measures (idempotent)."""
        if self._measures is not None or self._conn is None:
            return self._measures
        try:
            self._conn.close()
        finally:
            _libsumo_in_use[0] = False
            self._conn = None
        m = trip_measures(self.work_dir / "tripinfo.xml", self.work_dir / "statistics.xml")
        m["pushes"] = self.pushes
        self._measures = m
        if self.keep_files:
            m["files"] = str(self.work_dir)
        else:
            shutil.rmtree(self.work_dir, ignore_errors=True)
        return m


def level_pulses(r, last_level):
    """The agent's pulses from a StepResult: vehicles beyond the one a rising level shows."""
    pulses = {}
    for ch, n in r.pulses.items():
        if n:
            extra = n - (1 if r.detectors[ch] and not last_level.get(ch) else 0)
            if extra > 0:
                pulses[ch] = extra
    return pulses


class Timer:
    """Wall time spent in the agents' cores."""
    __slots__ = ("agents_s", "steps")

    def __init__(self):
        self.agents_s = 0.0
        self.steps = 0


def run_agents(netmap, net, routes, additional=(), duration_s=3600.0, seed=1, step_ms=100,
               hooks=None, keep_files=False, event_driven=False):
    """One Agent per light of ``netmap`` on the network; returns the measures and costs.

    hooks: the brain's side of the rig, or None: an object with
    ``inputs(now, tls)`` (a dict of extra Inputs fields, or None), ``after(now, tls,
    outputs)``, ``seen(now, tls, step_result)`` and ``tick(now, rig)`` (once a step).
    event_driven: step an agent only when its loops changed, the hooks gave it
    inputs, or its ``next_ms`` arrived (the core's own deadlines); before an input
    change, while a loop was occupied, it also steps at the tick before with the old
    inputs (the contract in edge_agent/nextstep.py). Its log and lights are the same as
    stepping every tick. Hooks used with it must give inputs only when something
    changed (levels such as ``link_up`` are held by the agent between steps) and set
    no held inputs (``hold_central_ms``, ``local_until_ms``): the tick before a change
    is replayed without the hooks' inputs; they declare it with ``event_driven = True``.
    Returns {"measures", "faults": {tls: [(ms, text)]}, "events": {tls: log},
    "wall_s", "agents_s", "steps", "agent_steps"}.
    """
    if event_driven and hooks is not None and not getattr(hooks, "event_driven", False):
        raise ValueError("event-driven stepping takes only hooks that give inputs on a change "
                         "and hold none (event_driven = True): held inputs (hold_central_ms, "
                         "local_until_ms) are not replayed at the tick before a change")
    agents = {tls: Agent(parse_site(t.site), link_policy=getattr(hooks, "link_policy", None))
              for tls, t in sorted(netmap.tls.items())}
    logs = {tls: [] for tls in agents}
    faults = {tls: [] for tls in agents}
    rig = NetworkRig(net, routes, netmap, additional, seed, step_ms, keep_files)
    end = int(round(duration_s * 1000))
    timer = Timer()
    t0 = time.perf_counter()
    perf = time.perf_counter
    rig.start()
    try:
        levels = {tls: {} for tls in agents}
        pulses = {tls: {} for tls in agents}
        now = 0
        due = {tls: 0 for tls in agents}       # event-driven: the agent's next_ms
        last = {tls: None for tls in agents}   # ms of its last step
        used = {tls: None for tls in agents}   # the levels it last stepped with
        agent_steps = 0
        while now < end:
            shows = {}
            for tls, agent in agents.items():
                extra = hooks.inputs(now, tls) if hooks is not None else None
                if event_driven:
                    changed = bool(extra) or bool(pulses[tls]) or levels[tls] != used[tls]
                    if not changed and now < due[tls]:
                        continue
                    if changed and last[tls] is not None and last[tls] < now - step_ms \
                            and any(used[tls].values()):
                        # The tick before the change, as a tick-by-tick rig steps it
                        # (only a held presence leaves a trace of the skipped ticks).
                        t = now - step_ms
                        a = perf()
                        out = agent.step(t, Inputs(detectors=used[tls], wall_ms=t))
                        timer.agents_s += perf() - a
                        agent_steps += 1
                        if out.events:
                            logs[tls].extend(out.events)
                inp = Inputs(detectors=levels[tls], pulses=pulses[tls], wall_ms=now)
                if extra:
                    for k, v in extra.items():
                        setattr(inp, k, v)
                a = perf()
                out = agent.step(now, inp)
                if event_driven:
                    due[tls] = agent.next_ms(now)
                    last[tls], used[tls] = now, levels[tls]
                timer.agents_s += perf() - a
                agent_steps += 1
                if out.events:
                    logs[tls].extend(out.events)
                if out.fault is not None and not faults[tls]:
                    faults[tls].append((now, getattr(out.fault, "detail", None) or repr(out.fault)))
                shows[tls] = out.vehicle
                if hooks is not None:
                    hooks.after(now, tls, out)
            res = rig.step(shows)
            timer.steps += 1
            for tls in agents:
                r = res[tls]
                pulses[tls] = level_pulses(r, levels[tls])
                levels[tls] = r.detectors
                if hooks is not None:
                    hooks.seen(now, tls, r)
            if hooks is not None:
                hooks.tick(rig.time_ms, rig)
            now = rig.time_ms
    finally:
        measures = rig.close()
    wall = time.perf_counter() - t0
    return {"measures": measures, "faults": faults, "events": logs, "wall_s": round(wall, 3),
            "agents_s": round(timer.agents_s, 3), "steps": timer.steps,
            "agent_steps": agent_steps,
            "modes": {tls: a.mode_name for tls, a in agents.items()}}


# ---------------------------------------------------------------- SUMO's own programs

def _vec(green=(), yellow=()):
    v = [RED] * (MAX_PHASES + 1)
    for p in green:
        v[p] = GREEN
    for p in yellow:
        v[p] = YELLOW
    v[0] = 0
    return v


def program_groups(phases):
    """Phase groups in order for a single-sequence program: lefts, throughs, side."""
    groups = []
    for g in ((1, 5), (2, 6), (3, 7), (4, 8)):
        present = tuple(p for p in g if p in phases)
        if present:
            groups.append(present)
    return groups


def write_programs(path, netmap, kind, timings, coord=None):
    """A tlLogic per light for SUMO's own controller.

    kind 'actuated': SUMO's gap actuation, minDur/maxDur from ``timings[tls][phase]``;
    kind 'static': greens from ``coord[tls]`` ({cycle, offset, splits}) - the
    cycle starts at the coordinated (2+6) green, shifted by the offset.
    """
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', "<additional>"]
    for tls, t in sorted(netmap.tls.items()):
        tm = timings[tls]
        groups = program_groups(t.phases)
        # start with the coordinated group so the offset lands on its green
        k = next(i for i, g in enumerate(groups) if 2 in g or 6 in g)
        groups = groups[k:] + groups[:k]
        offset = 0.0
        if kind == "static":
            offset = float(coord[tls]["offset"])
        lines.append('    <tlLogic id="%s" type="%s" programID="edge-%s" offset="%.1f">'
                     % (tls, kind, kind, offset))
        if kind == "actuated":
            lines += ['        <param key="max-gap" value="3.0"/>',
                      '        <param key="detector-gap" value="2.0"/>',
                      '        <param key="passing-time" value="2.0"/>']
        for g in groups:
            y = max(tm[p]["yellow"] for p in g)
            r = max(tm[p]["red_clear"] for p in g)
            green_state = t.state(_vec(green=g))
            if kind == "static":
                splits = coord[tls]["splits"]
                gr = max(float(splits[str(p)]) for p in g) - y - r
                lines.append('        <phase duration="%.1f" state="%s"/>' % (gr, green_state))
            else:
                mn = max(tm[p]["min_green"] for p in g)
                mx = max(tm[p]["max_green"] for p in g)
                lines.append('        <phase duration="%.1f" minDur="%.1f" maxDur="%.1f" state="%s"/>'
                             % (mn, mn, mx, green_state))
            lines.append('        <phase duration="%.1f" state="%s"/>' % (y, t.state(_vec(yellow=g))))
            lines.append('        <phase duration="%.1f" state="%s"/>' % (r, t.state(_vec())))
        lines.append("    </tlLogic>")
    lines.append("</additional>")
    Path(path).write_text("\n".join(lines) + "\n")


def site_timings(netmap):
    """{tls: {phase: {min_green, max_green, yellow, red_clear}}} from each site's fallback plan."""
    out = {}
    for tls, t in netmap.tls.items():
        out[tls] = {int(p["phase"]): {k: float(p[k]) for k in ("min_green", "max_green", "yellow",
                                                                 "red_clear", "passage")}
                    for p in t.site["fallback_plan"]["phases"]}
    return out


def run_program(kind, netmap, net, routes, additional=(), duration_s=3600.0, seed=1, step_ms=100,
                coord=None, keep_files=False):
    """SUMO's own program on every light (a sumo subprocess, no TraCI): 'netconvert' (the
    static program netconvert wrote into the net), 'actuated' (the sites' min/max greens),
    'static' (``coord``: {tls: {cycle, offset, splits}}, a fixed-time green wave)."""
    work = Path(tempfile.mkdtemp(prefix="sumo-%s-" % kind))
    try:
        programs = []
        if kind != "netconvert":
            programs = [work / "programs.add.xml"]
            write_programs(programs[0], netmap, kind, site_timings(netmap), coord)
        args = _sumo_args(net, routes, list(additional) + programs, seed, step_ms / 1000.0, work,
                          end_s=duration_s)
        t0 = time.perf_counter()
        res = subprocess.run([_build.sumo_binary("sumo")] + args, capture_output=True, text=True)
        if res.returncode != 0:
            log = (work / "sumo.log").read_text() if (work / "sumo.log").exists() else ""
            raise RuntimeError("sumo failed (%d): %s%s%s" % (res.returncode, res.stdout, res.stderr, log))
        m = trip_measures(work / "tripinfo.xml", work / "statistics.xml")
        m["wall_s"] = round(time.perf_counter() - t0, 3)
        if keep_files:
            m["files"] = str(work)
        return m
    finally:
        if not keep_files:
            shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------- measures

END_TO_END = ("EB~", "WB~")
EMERGENCY = "EV_"


def _mean(xs):
    return sum(xs) / len(xs) if xs else None


def trip_measures(tripinfo, statistics=None):
    """The corridor table's measures from SUMO's tripinfo: end-to-end arterial trips
    (ids EB~/WB~), all vehicles, and emergency vehicles (EV_)."""
    e2e, allv, evs, unfinished = [], [], [], 0
    for _, el in ET.iterparse(str(tripinfo)):
        if el.tag != "tripinfo":
            continue
        if float(el.get("arrival")) < 0 or el.get("vaporized") == "end":
            unfinished += 1
            continue
        vid = el.get("id")
        rec = (float(el.get("duration")), float(el.get("routeLength")), float(el.get("timeLoss")),
               int(el.get("waitingCount")))
        allv.append(rec)
        if vid.startswith(END_TO_END):
            e2e.append(rec)
        elif vid.startswith(EMERGENCY):
            evs.append(rec)
        el.clear()
    m = {"completed": len(allv), "unfinished": unfinished,
         "e2e_trips": len(e2e),
         "e2e_travel_time_s": _r(_mean([r[0] for r in e2e])),
         "e2e_speed_kmh": _r(_mean([3.6 * r[1] / r[0] for r in e2e if r[0] > 0])),
         "e2e_stops": _r(_mean([r[3] for r in e2e])),
         "mean_time_loss_s": _r(_mean([r[2] for r in allv])),
         "ev_trips": len(evs),
         "ev_travel_time_s": _r(_mean([r[0] for r in evs]))}
    if statistics and os.path.exists(str(statistics)):
        root = ET.parse(str(statistics)).getroot()
        s = root.find("safety")
        if s is not None:
            m["collisions"] = int(s.get("collisions"))
        t = root.find("teleports")
        if t is not None:
            m["teleports"] = int(t.get("total"))
    return m


def _r(x):
    return None if x is None else round(x, 2)
