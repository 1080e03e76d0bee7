"""The SUMO side of the hardware-in-the-loop rig.

``SumoBridge`` plays the intersection for a controller: each ``step`` takes
the vehicle indications the controller drives (one per NEMA phase), shows
them on SUMO's traffic light, advances SUMO by one step (0.1 s by default)
and reads the induction loops back as detector channels.

``run_sumo_program`` runs SUMO's own controller (``actuated`` or ``static``)
on the same network, demand and seed, for comparison.

Both return the same measures, parsed from SUMO's tripinfo and statistics
output (see ``hil.sumo.build.parse_measures``).
"""

import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from edge_agent.indications import DARK, RED, YELLOW, GREEN, FLASH_RED, FLASH_YELLOW

from hil.sumo import build as _build

# SUMO link states per indication. A flashing red is a stop sign ('s': stop,
# then go when clear); a flashing yellow is 'o' (signal off, yield); a dark
# signal is treated as the law treats it, an all-way stop ('s').
LINK_STATE = {
    GREEN: "G",
    YELLOW: "y",
    RED: "r",
    FLASH_RED: "s",
    FLASH_YELLOW: "o",
    DARK: "s",
}

_libsumo_in_use = [False]
_labels = itertools.count()


class StepResult:
    """What the detectors saw during one step.

    detectors: {channel: presence} (True while a vehicle is over the loop)
    pulses:    {channel: vehicles that reached the loop this step}
    time_ms:   simulation time at the end of the step
    """
    __slots__ = ("time_ms", "detectors", "pulses")

    def __init__(self, time_ms, detectors, pulses):
        self.time_ms, self.detectors, self.pulses = time_ms, detectors, pulses

    def __repr__(self):
        on = sorted(ch for ch, v in self.detectors.items() if v)
        return "StepResult(t=%d ms, on=%s)" % (self.time_ms, on)


def _sumo_args(b, routes, additional, seed, step_s, tripinfo, statistics, log):
    return ["-n", str(b.net), "-r", str(routes), "-a", ",".join(str(a) for a in additional),
            "--step-length", "%g" % step_s, "--seed", str(int(seed)),
            "--time-to-teleport", "-1",          # a stuck vehicle stays stuck: we want to see it
            "--tripinfo-output", str(tripinfo), "--tripinfo-output.write-unfinished", "true",
            "--statistic-output", str(statistics),
            "--no-step-log", "true", "--duration-log.disable", "true",
            "--log", str(log)]


class SumoBridge:
    """Drive SUMO's traffic light from phase indications; read the loops.

    SumoBridge(network_dir=None, demand=None, seed=42, step_ms=100, gui=False,
               use_libsumo=None, cache_dir=None, keep_files=False)

    demand: {approach: {movement: veh/h}}, approaches EB/WB/NB/SB, movements
    through/left/right; missing entries take ``build.DEFAULT_DEMAND``.
    use_libsumo: None = libsumo when it is installed and no GUI is asked
    (one libsumo simulation per process at a time), else TraCI over a socket.
    """

    def __init__(self, network_dir=None, demand=None, seed=42, step_ms=100, gui=False,
                 use_libsumo=None, cache_dir=None, keep_files=False, extra_args=()):
        if step_ms <= 0 or step_ms % 10:
            raise ValueError("step_ms must be a positive multiple of 10")
        self.network_dir = network_dir
        self.demand = _build.normalize_demand(demand)
        self.seed = seed
        self.step_ms = int(step_ms)
        self.gui = gui
        if use_libsumo is None:
            use_libsumo = not gui and _have_libsumo()
        if use_libsumo and gui:
            raise ValueError("libsumo has no GUI; use_libsumo=False for gui=True")
        self.use_libsumo = use_libsumo
        self.cache_dir = cache_dir
        self.keep_files = keep_files
        self.extra_args = list(extra_args)
        self.build = None
        self.mapping = _build.load_mapping(network_dir)
        self._link_phase = _link_phases(self.mapping)
        self.channels = sorted(int(d["channel"]) for d in self.mapping["detectors"])
        self.work_dir = None
        self.time_ms = 0
        self.steps = 0
        self.exit_count = 0         # vehicles over the exit loops since start
        self.exited = []            # their ids, in order
        self.last_state = None
        self._conn = None
        self._label = None
        self._prev = {}
        self._measures = None

    # ------------------------------------------------------------ life cycle

    def start(self):
        if self._conn is not None:
            raise RuntimeError("already started")
        b = _build.build_network(self.network_dir, self.cache_dir)
        self.build = b
        if len(b.links) != len(self._link_phase):
            raise ValueError("%s has %d links, the mapping %d"
                             % (self.mapping["tls"], len(b.links), len(self._link_phase)))
        if self.use_libsumo and _libsumo_in_use[0]:
            raise RuntimeError("a libsumo simulation is already running in this process "
                               "(close it, or use_libsumo=False)")
        self.work_dir = Path(tempfile.mkdtemp(prefix="sumo-bridge-"))
        routes = self.work_dir / "routes.rou.xml"
        _build.write_routes(routes, self.mapping, self.demand)
        args = _sumo_args(b, routes, [b.detectors], self.seed, self.step_ms / 1000.0,
                          self.work_dir / "tripinfo.xml", self.work_dir / "statistics.xml",
                          self.work_dir / "sumo.log") + self.extra_args
        self._dets = [(d["id"], int(d["channel"])) for d in self.mapping["detectors"]]
        self._exits = [d["id"] for d in self.mapping.get("exit_detectors", ())]
        if self.use_libsumo:
            import libsumo
            libsumo.start(["sumo"] + args)
            _libsumo_in_use[0] = True
            self._conn = libsumo
        else:
            import traci
            binary = _build.sumo_binary("sumo-gui" if self.gui else "sumo")
            if self.gui:
                args += ["--start", "true", "--quit-on-end", "true"]
            self._label = "edge-agent-%d-%d" % (os.getpid(), next(_labels))
            traci.start([binary] + args, label=self._label)
            self._conn = traci.getConnection(self._label)
        tc = _constants()
        for det_id in [d for d, _ in self._dets] + self._exits:
            self._conn.inductionloop.subscribe(det_id, (tc.LAST_STEP_VEHICLE_ID_LIST,))
        self._var = tc.LAST_STEP_VEHICLE_ID_LIST
        self._prev = {d: () for d, _ in self._dets}
        self._prev_exit = {d: () for d in self._exits}
        self.time_ms = 0
        return self

    def __enter__(self):
        if self._conn is None:
            self.start()
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # ------------------------------------------------------------ stepping

    def state_string(self, vehicle):
        """The SUMO link state string for phase indications ``vehicle``
        (a list indexed by phase; index 0 unused)."""
        out = []
        for p in self._link_phase:
            ind = vehicle[p] if p < len(vehicle) else DARK
            try:
                out.append(LINK_STATE[ind])
            except KeyError:
                raise ValueError("phase %d: unknown indication %r" % (p, ind))
        return "".join(out)

    def step(self, vehicle):
        """Show ``vehicle`` for one step; return the detectors (StepResult)."""
        if self._conn is None:
            raise RuntimeError("not started")
        state = self.state_string(vehicle)
        conn = self._conn
        if state != self.last_state:
            conn.trafficlight.setRedYellowGreenState(self.mapping["tls"], state)
            self.last_state = state
        conn.simulationStep()
        self.steps += 1
        self.time_ms = self.steps * self.step_ms
        res = conn.inductionloop.getAllSubscriptionResults()
        var = self._var
        presence, pulses = {}, {}
        for det_id, ch in self._dets:
            ids = res[det_id][var]
            prev = self._prev[det_id]
            presence[ch] = bool(ids)
            pulses[ch] = sum(1 for v in ids if v not in prev)
            self._prev[det_id] = ids
        for det_id in self._exits:
            ids = res[det_id][var]
            prev = self._prev_exit[det_id]
            for v in ids:
                if v not in prev:
                    self.exit_count += 1
                    self.exited.append(v)
            self._prev_exit[det_id] = ids
        return StepResult(self.time_ms, presence, pulses)

    @property
    def traci(self):
        """The live TraCI connection (the libsumo module, or a traci
        Connection): for tests and displays, not for the controller."""
        return self._conn

    def vehicles_on(self, edge):
        """Ids of the vehicles on an edge now (for tests and displays)."""
        return list(self._conn.edge.getLastStepVehicleIDs(edge))

    # ------------------------------------------------------------ results

    def close(self):
        """End the simulation; return the measures (idempotent)."""
        if self._measures is not None:
            return self._measures
        if self._conn is None:
            return None
        try:
            self._conn.close()
        finally:
            if self.use_libsumo:
                _libsumo_in_use[0] = False
            self._conn = None
        m = _build.parse_measures(self.work_dir / "tripinfo.xml", self.work_dir / "statistics.xml",
                                  end_s=self.time_ms / 1000.0)
        m["exit_count"] = self.exit_count
        m["controller"] = "bridge"
        m["seed"] = self.seed
        self._measures = m
        if self.keep_files:
            m["files"] = str(self.work_dir)
        else:
            shutil.rmtree(self.work_dir, ignore_errors=True)
        return m


def _link_phases(mapping):
    """For each TLS link index, the phase that drives it (every link exactly once)."""
    n = int(mapping["link_count"])
    out = [None] * n
    for p, v in mapping["phases"].items():
        for i in v["links"]:
            if not 0 <= i < n:
                raise ValueError("phase %s: link %d outside 0..%d" % (p, i, n - 1))
            if out[i] is not None:
                raise ValueError("link %d mapped to phases %s and %s" % (i, out[i], p))
            out[i] = int(p)
    missing = [i for i, p in enumerate(out) if p is None]
    if missing:
        raise ValueError("links %s of %s are mapped to no phase" % (missing, mapping["tls"]))
    return out


def _have_libsumo():
    try:
        import libsumo  # noqa: F401
        return True
    except ImportError:
        return False


def _constants():
    try:
        from traci import constants
    except ImportError:
        from libsumo import constants
    return constants


def run_sumo_program(program="actuated", duration_s=600.0, network_dir=None, demand=None, seed=42,
                     step_ms=100, cache_dir=None, timings=None, static_greens=None, keep_files=False,
                     **tls_options):
    """Run SUMO's own controller on the network and return the measures.

    program: 'actuated' (SUMO's gap-based actuated controller, min/max greens
    from the site's fallback plan) or 'static' (fixed greens: the mapping's
    ``static_greens``). Same phase groups, yellow and all-red as the plan.
    Runs the ``sumo`` binary as a subprocess (no TraCI).
    """
    b = _build.build_network(network_dir, cache_dir)
    if timings is None:
        site_dir = network_dir or _build.NETWORK_DIR
        timings = _build.plan_timings(_build.load_site(site_dir))
    work = Path(tempfile.mkdtemp(prefix="sumo-%s-" % program))
    try:
        routes = work / "routes.rou.xml"
        _build.write_routes(routes, b.mapping, demand)
        tls = work / "program.tll.xml"
        _build.write_tls_program(tls, program, b, timings=timings, static_greens=static_greens,
                                 **tls_options)
        args = _sumo_args(b, routes, [b.detectors, tls], seed, step_ms / 1000.0,
                          work / "tripinfo.xml", work / "statistics.xml", work / "sumo.log")
        args += ["--begin", "0", "--end", "%g" % duration_s]
        res = subprocess.run([_build.sumo_binary("sumo")] + args, capture_output=True, text=True)
        if res.returncode != 0:
            log = (work / "sumo.log").read_text() if (work / "sumo.log").exists() else ""
            raise RuntimeError("sumo failed (%d): %s%s%s" % (res.returncode, res.stdout, res.stderr, log))
        m = _build.parse_measures(work / "tripinfo.xml", work / "statistics.xml", end_s=duration_s)
        m["controller"] = "sumo-" + program
        m["seed"] = seed
        if keep_files:
            m["files"] = str(work)
        return m
    finally:
        if not keep_files:
            shutil.rmtree(work, ignore_errors=True)
