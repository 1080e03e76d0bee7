"""The corridor in real time: SUMO at wall-clock speed, one `edge-agent run` process per signal
on an emulated TS2 cabinet, a real Mosquitto and `edge-agent brain run`.

    rt = RealtimeCorridor(corridor, netmap, work_dir, duration_s=600, brain_over={...})
    r = rt.run()          # r["plans"], r["verdicts"], r["active"], r["lateness_ms"], r["measures"]
    twin = virtual_twin(corridor, netmap, rt.brain_config, duration_s=600)
    diffs = compare(twin, r)

Every part a field deployment has is a real one here. Each signal's agent is an
``edge-agent run`` process started as the cabinet's service starts it (Nice=-5),
with ``--cabinet`` on the pseudo-terminal of a ``CabinetEmulator`` (T&F BIUs,
a detector BIU per 16 loops, the MMU programmed with the site's compatibility
card). The brain is an ``edge-agent brain run`` process; both talk to a
Mosquitto on 127.0.0.1. This process owns SUMO (libsumo, never TraCI's socket)
and steps it every ``step_ms`` of wall time: before each step it reads what
each cabinet's load switches drive and shows it on that light; after it, it
puts the light's loops on its detector BIU as calls. An observer on the broker
records what the brain published (``plan/desired``), each agent's verdict per
version (``plan/verdict/<v>``) and, from telemetry, when each plan took effect.

``virtual_twin`` runs the same corridor, demand, seed and brain config in
virtual time (``network_rig.run_agents`` with ``corridor_run.BrainLoop``), and
``compare`` sets the two side by side: the same plans must reach the same agents.

The rig's link tolerance is the cabinet tests' (tests/test_cabinet.py): on a
pty the emulator's answers pass through a kernel worker that other load on a
shared machine can hold back for a few 100 ms cycles, so the agents allow 10
missed cycles and 2 s without MMU status. The MMU's own port 1 watchdog
(300 ms) is left as a real one has it.
"""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from drivers.topics import PREFIX
from edge_agent import events as ev
from edge_agent.envelope import HMAC, open_envelope
from edge_agent.indications import DARK, GREEN, MAX_PHASES, RED, YELLOW

from hil.broker import Broker
from hil.cabinet_emulator import CabinetEmulator
from hil.sumo import network_rig
from hil.sumo.corridor_run import (BrainLoop, HOLDOVER_MS, PROBE_SHARE, WALL0, brain_config,
                                   probe_reports, probe_routes)

REPO = Path(__file__).resolve().parents[2]
NICE = -5                      # deploy/edge-agent.service's Nice=
RIG_MISS_LIMIT = 10
RIG_LINK_TIMEOUT_MS = 2000
SITE = "corridor"

_COLOUR = {(True, False, False): RED, (False, True, False): YELLOW, (False, False, True): GREEN}


def _renice():
    try:
        os.setpriority(os.PRIO_PROCESS, 0, NICE)
    except OSError:            # not root: the normal priority
        pass


def cabinet_wiring(site):
    """One signal's cabinet for its site dict: (cabinet config, {site channel: (biu, bit)},
    monitored load-switch channels, MMU permits).

    Phase p drives load switch p; the site's detector channels go, in order, on
    detector BIU channels 1, 2, ... (16 a BIU); the MMU permits exactly the card's
    permissive pairs (card channels are the phases' load switches here)."""
    phases = sorted(int(p["phase"]) for p in site["phases"])
    peds = sorted(int(p["phase"]) for p in site["phases"] if p.get("ped"))
    if peds:
        raise ValueError("the real-time rig wires vehicle heads only; site %s has pedestrian "
                         "phases %s" % (site.get("intersection"), peds))
    dets = sorted(int(d["channel"]) for d in site["detectors"])
    det_map = {ch: (i // 16 + 1, i % 16) for i, ch in enumerate(dets)}
    cab = {"channels": {str(p): p for p in phases}, "ped_channels": {},
           "det_channels": {str(i + 1): ch for i, ch in enumerate(dets)},
           "det_bius": max(1, (len(dets) + 15) // 16), "tf_bius": 2,
           "miss_limit": RIG_MISS_LIMIT, "link_timeout_ms": RIG_LINK_TIMEOUT_MS}
    permits = {tuple(sorted((int(a), int(b)))) for a, b in site["monitor"]["permissive"]}
    return cab, det_map, phases, permits


def vehicle_from_field(field, phases):
    """Phase indications (indexed by phase) from the load switches' (red, yellow, green)."""
    v = [RED] * (MAX_PHASES + 1)
    v[0] = 0
    for p in phases:
        v[p] = _COLOUR.get(field[p - 1], DARK)
    return v


class Observer:
    """Central's view on the broker: what the brain published, each agent's verdicts, and
    from telemetry when each plan took effect and what mode each agent ran."""

    def __init__(self, host, port, key):
        import paho.mqtt.client as mqtt
        self.keys = {key["kid"]: (HMAC, bytes.fromhex(key["secret"]))}
        self.lock = threading.Lock()
        self.t0 = None                  # monotonic s of the brain's start: plan times count from it
        self.plans = []                 # {tls, version, plan_id, cycle, offset, splits, at_s}
        self.verdicts = []              # {tls, version, result, at_s}
        self.active = {}                # tls -> [(at_s, version, plan id, source)] on each change
        self.modes = {}                 # tls -> [(at_s, mode)] on each change
        self.faults = {}                # tls -> [(at_s, fault)]
        self.online = {}
        self.telemetry = {}             # tls -> messages received
        self.subscribed = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="realtime-observer",
                        clean_session=True)
        c.on_connect = self._on_connect
        c.on_subscribe = lambda *a: self.subscribed.set()
        c.on_message = self._on_message
        self.client = c
        self.host, self.port = host, port

    def start(self, timeout_s=10.0):
        self.client.connect(self.host, self.port, keepalive=10)
        self.client.loop_start()
        if not self.subscribed.wait(timeout_s):
            raise RuntimeError("observer: no SUBACK from %s:%d" % (self.host, self.port))
        return self

    def stop(self):
        self.client.loop_stop()
        self.client.disconnect()

    def _on_connect(self, client, userdata, flags, rc, props):
        base = "%s/%s/+/" % (PREFIX, SITE)
        client.subscribe([(base + "state", 1), (base + "plan/desired", 1),
                          (base + "plan/verdict/+", 1), (base + "telemetry", 0)])

    def _at(self):
        return None if self.t0 is None else round(time.monotonic() - self.t0, 3)

    def _on_message(self, client, userdata, msg):
        try:
            parts = msg.topic.split("/")
            tls, what = parts[3], "/".join(parts[4:])
            if not msg.payload:
                return
            with self.lock:
                if what == "plan/desired":
                    self._plan(tls, msg.payload)
                    return
                data = json.loads(msg.payload)
                if what == "state":
                    self.online[tls] = bool(data.get("online"))
                elif what.startswith("plan/verdict/"):
                    self.verdicts.append({"tls": tls, "version": data["version"],
                                          "result": data["result"], "at_s": self._at()})
                elif what == "telemetry":
                    self._telemetry(tls, data)
        except Exception:        # a callback that raises stops paho's network thread
            pass

    def _plan(self, tls, payload):
        opened = open_envelope(payload, self.keys)
        if not isinstance(opened, tuple):
            return
        body = json.loads(opened[1])
        co = body["plan"]["coordination"]
        self.plans.append({"tls": tls, "version": int(body["version"]), "plan_id": body["plan"]["id"],
                           "cycle": int(co["cycle"]), "offset": int(co["offset"]),
                           "splits": {int(p): float(s) for p, s in co["splits"].items()},
                           "at_s": self._at()})

    def _telemetry(self, tls, t):
        self.telemetry[tls] = self.telemetry.get(tls, 0) + 1
        at = self._at()
        p = t.get("plan") or {}
        cur = (p.get("version"), p.get("id"), p.get("source"))
        hist = self.active.setdefault(tls, [])
        if not hist or hist[-1][1:] != cur:
            hist.append((at,) + cur)
        modes = self.modes.setdefault(tls, [])
        if not modes or modes[-1][1] != t.get("mode"):
            modes.append((at, t.get("mode")))
        if t.get("fault"):
            self.faults.setdefault(tls, []).append((at, t["fault"]))


class RealtimeCorridor:
    """The whole city loop of one corridor, at wall-clock speed, with real processes."""

    def __init__(self, corridor, netmap, work_dir, duration_s=600.0, seed=1, step_ms=100,
                 brain_over=None, agent_start_timeout_s=60.0, probe_share=PROBE_SHARE):
        self.corridor, self.map = corridor, netmap
        self.work = Path(work_dir)
        self.duration_s, self.seed, self.step_ms = float(duration_s), seed, int(step_ms)
        self.brain_config = brain_config(netmap, corridor, site=SITE, **(brain_over or {}))
        self.agent_start_timeout_s = agent_start_timeout_s
        self.probe_share = probe_share        # end-to-end trips reporting as probes (published here)
        self.probes_sent = 0
        self.broker = None
        self.cabinets = {}
        self.wiring = {}
        self.agents = {}
        self.brain = None
        self.observer = None
        self.files = []                       # the processes' output files, closed at the end

    # ---------------------------------------------------------------- set-up

    def _write_agent(self, tls, cab):
        """The agent's config (site, cabinet wiring, link policy) and provisioning files."""
        d = self.work / tls
        d.mkdir(parents=True, exist_ok=True)
        (d / "site.json").write_text(json.dumps({
            "site": self.map.tls[tls].site, "cabinet": cab,
            "link": {"loss_s": 3, "stable_s": 10, "holdover_s": HOLDOVER_MS / 1000}}))
        key = self.brain_config["key"]
        (d / "provision.json").write_text(json.dumps({
            "store_dir": str(d / "store"),
            "keys": [{"kid": key["kid"], "scheme": "hmac", "secret": key["secret"]}],
            "mqtt": {"brokers": ["127.0.0.1:%d" % self.broker.port], "site": SITE,
                     "backoff_base_s": 0.2, "backoff_cap_s": 2.0}}))
        return d

    def _start_agents(self):
        """One agent after the other, each online and showing a green before the next starts:
        six Python processes importing at once on a 2-core machine starve the running
        ones past the MMU's 300 ms port 1 watchdog (seen: two cabinets flashed)."""
        for tls in sorted(self.map.tls):
            cab, det_map, phases, permits = cabinet_wiring(self.map.tls[tls].site)
            self.wiring[tls] = (det_map, phases)
            emu = CabinetEmulator(tf_bius=cab["tf_bius"], det_bius=cab["det_bius"],
                                  monitored=phases, permits=permits, nice=NICE)
            emu.open()
            emu.start()
            self.cabinets[tls] = emu
            d = self._write_agent(tls, cab)
            seconds = self.duration_s + len(self.map.tls) * self.agent_start_timeout_s + 60
            err = open(d / "agent.err", "w")
            self.files.append(err)
            self.agents[tls] = subprocess.Popen(
                [sys.executable, "-m", "tools.cli", "run", "--config", str(d / "site.json"),
                 "--provision", str(d / "provision.json"), "--cabinet", emu.path, "--log-json",
                 "--log-file", str(d / "agent.log"), "--seconds", "%g" % seconds],
                cwd=str(REPO), stdout=subprocess.DEVNULL, stderr=err, preexec_fn=_renice)
            self._wait_agents()

    def _wait_agents(self):
        """Every agent started so far online on the broker and its cabinet showing a green."""
        end = time.monotonic() + self.agent_start_timeout_s
        while time.monotonic() < end:
            dead = {t: p.returncode for t, p in self.agents.items() if p.poll() is not None}
            if dead:
                raise RuntimeError("agents exited during start-up: %s (logs in %s)" % (dead, self.work))
            with self.observer.lock:
                online = {t for t, v in self.observer.online.items() if v}
            green = {t for t, emu in self.cabinets.items()
                     if any(f == (False, False, True) for f in emu.field)}
            if online >= set(self.agents) and green >= set(self.agents):
                return
            time.sleep(0.05)
        raise RuntimeError("agents not online with a green within %.0f s: online %s"
                           % (self.agent_start_timeout_s, sorted(self.observer.online)))

    def _start_brain(self):
        path = self.work / "brain.json"
        path.write_text(json.dumps(self.brain_config))
        out = open(self.work / "brain.out", "w")
        self.files.append(out)
        self.brain = subprocess.Popen(
            [sys.executable, "-m", "tools.cli", "brain", "run", "--broker",
             "127.0.0.1:%d" % self.broker.port, "--config", str(path),
             "--store", str(self.work / "brain.store.json"),
             "--seconds", "%g" % (self.duration_s + 30)],
            cwd=str(REPO), stdout=out, stderr=subprocess.STDOUT, text=True)
        end = time.monotonic() + 30
        while time.monotonic() < end:      # it prints its first line once connected
            if (self.work / "brain.out").read_text().startswith("brain for"):
                return
            if self.brain.poll() is not None:
                raise RuntimeError("brain exited: %s" % (self.work / "brain.out").read_text())
            time.sleep(0.02)
        raise RuntimeError("brain did not start within 30 s")

    # ---------------------------------------------------------------- the run

    def run(self):
        self.work.mkdir(parents=True, exist_ok=True)
        self.broker = Broker(self.work / "broker", persistence=False)
        self.broker.start()
        rig = None
        try:
            # SUMO loads its network before any cabinet runs: libsumo holds the GIL while
            # it loads (about a second), and the emulated MMUs, threads of this process,
            # would miss their controllers' frames for that long and flash (seen).
            rig = network_rig.NetworkRig(self.corridor.net,
                                         [self.corridor.routes, self.corridor.ev_routes],
                                         self.map, [self.corridor.loops], self.seed, self.step_ms)
            rig.start()
            self.observer = Observer("127.0.0.1", self.broker.port, self.brain_config["key"]).start()
            self._start_agents()
            self._start_brain()
            self.observer.t0 = time.monotonic()
            # This thread steps SUMO and holds the GIL the emulated cabinets (threads at
            # Nice=-5, hardware of their own in the field) need to answer: at normal
            # priority a busy machine could deschedule it with the GIL held and make the
            # cabinets late. It runs at their priority for the run.
            me = threading.get_native_id()
            try:
                was = os.getpriority(os.PRIO_PROCESS, me)
                os.setpriority(os.PRIO_PROCESS, me, NICE)
            except OSError:            # not root: the normal priority
                was = None
            try:
                lateness = self._step(rig)
            finally:
                if was is not None:
                    os.setpriority(os.PRIO_PROCESS, me, was)
            out = self._result(lateness)        # before SUMO writes its output (GIL held)
            out["measures"] = rig.close()
            rig = None
            return out
        finally:
            if rig is not None:
                rig.close()
            self._stop()

    def _step(self, rig):
        """SUMO one step every step_ms of wall time; returns how late each step began (ms)."""
        step_s = self.step_ms / 1000.0
        steps = int(round(self.duration_s * 1000)) // self.step_ms
        late = []
        t0 = self.observer.t0
        routes = probe_routes(self.corridor, self.brain_config) if self.probe_share else None
        probe_topic = "%s/%s/central/probe" % (PREFIX, SITE)
        per_s = 1000 // self.step_ms
        for k in range(steps):
            target = t0 + k * step_s
            wait = target - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            late.append((time.monotonic() - target) * 1000.0)
            shows = {}
            for tls, emu in self.cabinets.items():
                with emu.lock:
                    field = emu.field
                shows[tls] = vehicle_from_field(field, self.wiring[tls][1])
            res = rig.step(shows)
            for tls, emu in self.cabinets.items():
                bitmaps = {}
                for ch, on in res[tls].detectors.items():
                    if on:
                        biu, bit = self.wiring[tls][0][ch]
                        bitmaps[biu] = bitmaps.get(biu, 0) | 1 << bit
                for biu in range(1, emu.det_bius + 1):
                    emu.set_calls(biu, bitmaps.get(biu, 0))
            if routes is not None and k % per_s == 0:      # the probes' GPS units, once a second
                for msg in probe_reports(rig, self.probe_share, routes, time.time()):
                    self.observer.client.publish(probe_topic, json.dumps(msg), qos=0)
                    self.probes_sent += 1
        return late

    def _result(self, late):
        obs = self.observer
        with obs.lock:
            s = sorted(late)
            out = {"plans": list(obs.plans), "verdicts": list(obs.verdicts),
                   "active": {t: list(v) for t, v in obs.active.items()},
                   "modes": {t: list(v) for t, v in obs.modes.items()},
                   "faults": {t: list(v) for t, v in obs.faults.items()},
                   "telemetry": dict(obs.telemetry),
                   "lateness_ms": {"p50": round(s[len(s) // 2], 1),
                                   "p99": round(s[int(len(s) * 0.99)], 1),
                                   "max": round(s[-1], 1), "over_100": sum(1 for x in s if x > 100)},
                   "steps": len(late), "probes_sent": self.probes_sent}
        out["mmu"] = {t: emu.mmu_flags for t, emu in self.cabinets.items()}
        out["field_logs"] = {t: list(emu.field_log) for t, emu in self.cabinets.items()}
        out["brain_out"] = (self.work / "brain.out").read_text() if (self.work / "brain.out").exists() else ""
        out["flagged"] = brain_flags(out["brain_out"])
        return out

    def _stop(self):
        for p in list(self.agents.values()) + ([self.brain] if self.brain else []):
            if p.poll() is None:
                p.terminate()
        for tls, p in self.agents.items():
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        self.agent_rc = {t: p.returncode for t, p in self.agents.items()}
        if self.brain is not None:
            try:
                self.brain.wait(15)
            except subprocess.TimeoutExpired:
                self.brain.kill()
                self.brain.wait(5)
        for f in self.files:
            f.close()
        for emu in self.cabinets.values():
            emu.stop()
        if self.observer is not None:
            self.observer.stop()
        if self.broker is not None:
            self.broker.stop()


def brain_flags(text):
    """[[flagged ids] per plan] from `edge-agent brain run`'s output lines."""
    import ast
    out = []
    for line in text.splitlines():
        if " plan: cycle " in line and "; flagged " in line:
            rest = line.rsplit("; flagged ", 1)[1].strip()
            out.append([] if rest == "none" else sorted(ast.literal_eval(rest)))
    return out


# -------------------------------------------------------------------- the virtual twin

def virtual_twin(corridor, netmap, config, duration_s, seed=1, step_ms=100, probe_share=PROBE_SHARE):
    """The same corridor, demand, seed, probes and brain config in virtual time: plans in the
    Observer's shape, and each agent's accepted versions."""
    probes = (probe_share, probe_routes(corridor, config)) if probe_share else None
    loop = BrainLoop(netmap, config, seed=seed, probes=probes)
    r = network_rig.run_agents(netmap, corridor.net, [corridor.routes, corridor.ev_routes],
                               [corridor.loops], duration_s, seed, step_ms=step_ms, hooks=loop)
    plans = []
    versions = {}
    for wall, cycle, record in loop.brain.plans:
        for tls, (splits, offset) in sorted(record.items()):
            versions[tls] = versions.get(tls, 0) + 1
            plans.append({"tls": tls, "version": versions[tls], "plan_id": "brain-%d" % versions[tls],
                          "cycle": cycle, "offset": offset, "splits": dict(splits),
                          "at_s": round(wall - WALL0, 3)})
    accepted = {t: [(ms / 1000.0, v, pid) for ms, v, pid in acc] for t, acc in loop.accepted.items()}
    activated = {t: [ms / 1000.0 for ms, code, _ in log if code == ev.PLAN_ACTIVATED]
                 for t, log in r["events"].items()}
    return {"plans": plans, "accepted": accepted, "activated": activated, "measures": r["measures"],
            "faults": r["faults"], "flag_log": list(loop.brain.flag_log),
            "travel_log": list(loop.brain.travel_log),
            "flagged": list(loop.brain.flagged)}


def _cyclic(d, cycle):
    """An offset difference as the shorter way round the cycle (59 s in 60 is -1 s)."""
    return (d + cycle // 2) % cycle - cycle // 2


def compare(twin, real):
    """Plan by plan, (tls, version): what each run published and how far apart they are."""
    rp = {(p["tls"], p["version"]): p for p in real["plans"]}
    rows = []
    for p in twin["plans"]:
        q = rp.get((p["tls"], p["version"]))
        row = {"tls": p["tls"], "version": p["version"], "virtual_at_s": p["at_s"],
               "virtual_cycle": p["cycle"], "real": q is not None}
        if q is not None:
            row.update(real_at_s=q["at_s"], real_cycle=q["cycle"], plan_id=(p["plan_id"], q["plan_id"]),
                       cycle_diff=q["cycle"] - p["cycle"],
                       split_diff=max(abs(q["splits"].get(ph, 0.0) - s) for ph, s in p["splits"].items()),
                       offset_diff=_cyclic(q["offset"] - p["offset"], p["cycle"]))
        rows.append(row)
    return rows
