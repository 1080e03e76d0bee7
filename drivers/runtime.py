"""The running agent: a fixed 100 ms loop binding the drivers to the core.

    rt = Runtime(site, prov, link_cfg, sources=[...], outputs=[...], log=RunLog(...))
    rt.run()          # until rt.stop() (SIGTERM/SIGINT in `edge-agent run`)

Each step: drain what the link received (heartbeats, plan envelopes and
commands go to the intake thread), take the intake's results, read the
detector sources, `Agent.step`, write the outputs, queue the events for the
outbox, and publish state, plan/reported and telemetry when due. Nothing in
the step waits for the network, the disk or the log: MQTT runs on its own
thread (drivers.mqtt_link), verification and the store's fsynced writes on
the intake thread, the event journal on the outbox thread, logs on the log
thread. The loop measures how late it wakes and reports it in telemetry.

No control decision is made here: link health goes to the core as
`link_up` and `heartbeat`, accepted plans as `central_plan`; the supervisor
decides central or local and the controller changes plans at its safe point.
"""

import gc
import os
import sys
import time

from drivers.history import EventHistory
from drivers.intake import Intake, REJECTED
from drivers.localtime import site_zone, utc_offset_ms
from drivers.onsite import OnSite
from drivers.publishing import Publisher
from drivers.central_inbox import CentralInbox
from drivers.priority_intake import PriorityIntake
from drivers.outbox import EventOutbox
from drivers.store import FROM_ACTIVE, FROM_LAST_GOOD, MISSING, Store
from drivers.telemetry import DetectorActivity, Lateness, PhaseActivity, phase_view
from drivers.topics import dumps
from edge_agent import __version__
from edge_agent.agent import (Agent, Inputs, MODE_FLASH, MODE_PREEMPT,
                              MODE_STARTUP_ALL_RED, MODE_STARTUP_FLASH)
from edge_agent.envelope import Verifier
from edge_agent.events import BOOT_PLAN, LINK_DOWN, LINK_UP
from edge_agent.supervisor import LinkPolicy

# Vendor event codes written by the runtime into the event stream (docs/protocols/mqtt.md).
BOOT_SOURCES = {FROM_ACTIVE: 1, FROM_LAST_GOOD: 2}


class RuntimeConfig:
    """Loop settings: period, telemetry period, link supervision times."""

    __slots__ = ("step_ms", "telemetry_s", "policy", "messages_per_step", "switch_interval_s",
                 "events_capacity", "reported_min_s", "fsync", "lateness_file",
                 "control_socket", "allow_trip", "panel", "panel_password_hash",
                 "history_days", "history_max_bytes")

    def __init__(self, step_ms=100, telemetry_s=1.0, policy=None, messages_per_step=250,
                 switch_interval_s=0.001, events_capacity=200_000, reported_min_s=0.5,
                 fsync=True, lateness_file=None, control_socket=None, allow_trip=False,
                 panel=None, panel_password_hash=None, history_days=7,
                 history_max_bytes=512 << 20):
        self.panel = panel                      # (host, port) of the front panel, or None
        self.panel_password_hash = panel_password_hash
        self.lateness_file = lateness_file      # every step's (unix s, lateness ms), at exit
        self.control_socket = control_socket    # the local command socket's path (None: off)
        self.allow_trip = allow_trip            # HIL rigs only: "trip" on the local socket
        self.step_ms = step_ms
        self.telemetry_s = telemetry_s
        self.policy = policy or LinkPolicy()
        self.messages_per_step = messages_per_step
        self.switch_interval_s = switch_interval_s
        self.events_capacity = events_capacity
        self.reported_min_s = reported_min_s
        self.fsync = fsync
        self.history_days = history_days            # the local event history (drivers/history.py)
        self.history_max_bytes = history_max_bytes


def monotonic_ms():
    """The runtime's clock: integer monotonic ms, shared with the drivers' arrival stamps."""
    return time.monotonic_ns() // 1_000_000


def mode_name(agent_mode, source):
    """The `state` mode: startup, central, local or flash."""
    if agent_mode in (MODE_STARTUP_FLASH, MODE_STARTUP_ALL_RED):
        return "startup"
    if agent_mode == MODE_FLASH:
        return "flash"
    if agent_mode == MODE_PREEMPT:
        return "preempt"
    return source


class Runtime:
    """One intersection's agent with its drivers, stepped in real time."""

    def __init__(self, site, prov, link_cfg=None, sources=(), outputs=(), config=None, log=None,
                 ed25519_verify=None, link_factory=None, wall_clock=time.time):
        from drivers.commands import CommandVerifier
        self.site = site
        self.cfg = config or RuntimeConfig()
        self.log = log or NullLog()
        self.wall_clock = wall_clock
        self.sources = list(sources)
        self.outputs = list(outputs)
        self.store = Store(prov.store_dir, fsync=self.cfg.fsync)
        self.verifier = Verifier(site, prov.keys, prov.policy, ed25519_verify)
        self.counters = {}                # error counts here, message counts in the inbox
        self.step_no = 0
        self.now = 0
        self.out = None
        self.status = None                # Agent.status of the last step: the one door out
        self.stopping = False
        self.late = Lateness()
        self.late_log = [] if self.cfg.lateness_file else None
        self.activity = DetectorActivity()
        self.phase_activity = PhaseActivity()
        self.boot_offer = None

        boot = self.store.load_plan(self.verifier, wall_clock())
        self.boot = boot
        for what, reason, message in boot.events:
            # A missing file is a first boot (normal); a damaged or refused one is not.
            level = "info" if what == "plan" or reason == MISSING else "warning"
            self.log(level, "plan store at start-up", what=what, reason=reason, detail=message)
        active_env = None
        if boot.accepted is not None:
            a = boot.accepted
            self.boot_offer = CentralInbox.offer(a)
            active_env = bytes(a.envelope)
            self.log("info", "stored central plan loaded", source=boot.source,
                     version=a.version, plan_id=a.plan.id)
        # A latched flash survives a restart and a power cycle: boot straight into it.
        self.onsite = OnSite(site, self.store, self.cfg, self.log)
        self.agent = Agent(site, now=monotonic_ms(), link_policy=self.cfg.policy,
                           latched=self.onsite.boot_fault())
        self.outbox = EventOutbox(os.path.join(prov.store_dir, "events"),
                                  capacity=self.cfg.events_capacity, fsync=self.cfg.fsync)
        self.zone = site_zone(site.time_zone)
        self.history = EventHistory(os.path.join(prov.store_dir, "history"), self.cfg.history_days,
                                    self.cfg.history_max_bytes, fsync=self.cfg.fsync)
        boot_event = [(0, BOOT_PLAN, BOOT_SOURCES.get(boot.source, 3))]
        self.outbox.put(boot_event, int(wall_clock() * 1000))
        self.history.put(boot_event, int(wall_clock() * 1000), 0)
        commands = CommandVerifier(site.intersection, prov.keys, ed25519_verify,
                                   max_future_s=prov.policy.max_future_s or 300,
                                   max_id_jump=prov.policy.max_version_jump)
        self.intake = Intake(self.verifier, self.store, commands, wall_clock,
                             active_envelope=active_env, log=self.log)
        self.priority = PriorityIntake(site, prov.keys, prov.policy, self.store, ed25519_verify,
                                       log=self.log)
        self.link = None
        self.topics = None
        if link_cfg is not None:
            from drivers.mqtt_link import MqttLink
            from drivers.topics import Topics
            self.topics = Topics(link_cfg.site, site.intersection)
            make = link_factory or MqttLink
            self.link = make(link_cfg, self.topics, self.outbox, self.store, log=self.log)
        self.publisher = Publisher(self.link, self.topics, self.cfg.telemetry_s,
                                   self.cfg.reported_min_s, wall_clock, self.log)
        self.inbox = CentralInbox(self.link, self.topics, self.intake, self.priority,
                                  self.publisher, self.counters, self.cfg, wall_clock, self.log)
        self.log.context = self._context

    # What central sent, as the inbox keeps it (tests and tools read these).
    junk = property(lambda self: self.inbox.junk)
    hold_until = property(lambda self: self.inbox.hold_until)
    last_command = property(lambda self: self.inbox.last_command)

    # -- lifecycle ----------------------------------------------------------------------

    def stop(self):
        """Ask the loop to finish its step and shut down (signal handlers call this)."""
        self.stopping = True

    def run(self, max_steps=None):
        """The control loop; returns when stopped (or after max_steps)."""
        old_switch = sys.getswitchinterval()
        if self.cfg.switch_interval_s:
            # A thread parsing a flood of junk must not keep the loop waiting for the GIL.
            sys.setswitchinterval(self.cfg.switch_interval_s)
        self._start()
        gc.collect()
        gc.freeze()           # start-up objects out of the collector's way: shorter pauses
        step_ns = self.cfg.step_ms * 1_000_000
        t0 = time.monotonic_ns()
        t0 = max(t0, (self.agent.last_ms or 0) * 1_000_000 + step_ns)
        k = 0
        try:
            while not self.stopping and (max_steps is None or self.step_no < max_steps):
                deadline = t0 + k * step_ns
                now_ns = time.monotonic_ns()
                if now_ns < deadline:
                    time.sleep((deadline - now_ns) / 1e9)
                    now_ns = time.monotonic_ns()
                late_ms = (now_ns - deadline) / 1e6
                self.late.add(late_ms, self.cfg.step_ms)
                if self.late_log is not None:
                    self.late_log.append((round(time.time(), 3), round(late_ms, 3)))
                self.step(now_ns // 1_000_000)
                k += 1
                after = time.monotonic_ns()
                if after >= t0 + k * step_ns + step_ns:
                    k = (after - t0) // step_ns + 1     # overran: skip, never step twice at once
        finally:
            self._shutdown()
            gc.unfreeze()
            sys.setswitchinterval(old_switch)

    def _start(self):
        self.onsite.start()
        self.outbox.start()
        self.history.start()
        self.intake.start()
        for s in self.sources:
            s.start()
        for o in self.outputs:
            o.start()
        if self.link is not None:
            self.link.start()
        self.log("info", "runtime started", intersection=self.site.intersection,
                 agent=__version__, boot=self.boot.source)

    def _shutdown(self):
        self.log("info", "runtime stopping")
        if self.link is not None:
            self.link.stop(final_state=self._state_payload(online=False))
        self.intake.stop()
        for s in self.sources:
            _quiet(s.stop)
        for o in self.outputs:
            _quiet(o.stop)
        self.outbox.stop()
        self.history.stop()
        self.onsite.stop()
        if self.late_log is not None:
            try:
                with open(self.cfg.lateness_file, "w") as f:
                    f.write(dumps(self.late_log).decode())
            except OSError as e:
                self.log("warning", "lateness file not written", error=str(e))
        self.log("info", "runtime stopped", steps=self.step_no,
                 events_backlog=self.outbox.backlog())

    # -- one step ---------------------------------------------------------------------------

    def step(self, now):
        """One control step at `now` (monotonic ms, the clock every driver stamps with).

        Only `Agent.step` is unguarded (the core turns its own failures into
        flash); a driver, the link or telemetry that raises is counted and
        logged, and the step goes on without it.
        """
        self.now = now
        wall_ms = int(self.wall_clock() * 1000)
        inputs = Inputs(wall_ms=wall_ms, utc_offset_ms=utc_offset_ms(self.zone, wall_ms))
        link = self.link
        inputs.link_up = False
        if link is not None:
            inputs.link_up = link.connected
            self._guard("link", self.inbox.take_link, link, inputs)
        if self.step_no == 0 and self.boot_offer is not None:
            inputs.central_plan = self.boot_offer
        self._guard("intake", self.inbox.take_results, now, inputs)
        for s in self.sources:
            self._guard("source", s.read, now, inputs)
        inputs.hold_central_ms = self.inbox.hold(now)
        pending = self.onsite.before_step(now, inputs, self.agent)
        # The lead time of a priority request depends on the plan the controller runs.
        inputs.priority = self.priority.take(now, wall_ms / 1000, self.agent.plan)
        out = self.agent.step(now, inputs)
        out.events.extend(pending.events)
        # The latch is on disk before the flash reaches the load switches.
        self._guard("latch", self.onsite.persist, out)
        self._log_transitions(out)
        for o in self.outputs:
            self._guard("output", o.write, now, out)
        self._guard("on-site", self.onsite.after_step, now, out, pending, self.agent, wall_ms)
        self.out = out
        self.step_no += 1
        self.outbox.put(out.events, wall_ms)
        self.history.put(out.events, wall_ms, now)
        self.status = self.agent.status(now)
        self.activity.sample(self.status["detectors"])
        self.phase_activity.sample(now, out.vehicle, out.events)
        if link is not None:
            self._guard("publish", self._publish, now, out)
        return out

    def _log_transitions(self, out):
        """The central link lost at warning, back at info (a latched flash: _persist_latch)."""
        for _, code, _ in out.events:
            if code == LINK_DOWN:
                self.log("warning", "central link lost: local control")
            elif code == LINK_UP:
                self.log("info", "central link healthy")

    def _guard(self, what, fn, *args):
        try:
            fn(*args)
        except Exception as e:
            key = what + "_errors"
            self.counters[key] = self.counters.get(key, 0) + 1
            self.log.limited(key, "error", "%s error in the control step" % what,
                             error=repr(e), where=getattr(fn, "__qualname__", what))

    # -- what goes out ---------------------------------------------------------------------------

    def active_plan(self):
        """(version or None, plan id, "central" or "local") of the plan the controller runs."""
        if self.status is None:
            plan = self.boot_offer.plan if self.boot_offer is not None else self.site.fallback_plan
            return None, plan.id, "local"
        p = self.status["plan"]
        return p["version"], p["id"], p["source"]

    def _context(self):
        out = self.out
        mode = mode_name(out.mode, out.source) if out is not None else "startup"
        return {"step": self.step_no, "mode": mode, "plan": self.active_plan()[0]}

    def _state_payload(self, online=True):
        out = self.out
        version, pid, source = self.active_plan()
        mode = mode_name(out.mode, out.source) if out is not None else "startup"
        d = {"online": online, "mode": mode, "agent": __version__,
             "plan": {"version": version, "id": pid, "source": source},
             "since": self.publisher.mode_since, "session": self.link.session if self.link else 0}
        if not online:
            d["reason"] = "shutdown"
        return dumps(d)

    def _reported_payload(self):
        version, pid, source = self.active_plan()
        d = {"active": {"version": version, "id": pid, "source": source},
             "boot": {"source": self.boot.source,
                      "problems": [{"what": w, "reason": r, "message": m}
                                   for w, r, m in self.boot.events]},
             "last": None}
        plan = self.status["plan"] if self.status is not None else {}
        if plan.get("pending") is not None:
            d["pending"] = {"id": plan["pending"], "version": plan["pending_version"]}
        r = self.inbox.last_result
        if r is not None:
            d["last"] = {"result": r.status, "version": r.version, "at": round(r.at, 3)}
            if r.status == REJECTED:
                d["last"]["reason"] = r.reason
                d["last"]["message"] = r.message
        return dumps(d)

    def _publish(self, now, out):
        version, pid, source = self.active_plan()
        self.publisher.step(now, mode_name(out.mode, out.source), (version, pid, source),
                            self._state_payload, self._reported_payload,
                            lambda: self.telemetry(now, out))

    def telemetry(self, now, out):
        """The telemetry message (a dict; the link thread serialises it)."""
        site = self.site
        st = self.status
        chans = [d.channel for d in site.detectors]
        counts, occ = self.activity.take(chans)
        version, pid, source = self.active_plan()
        link = st["link"]
        return {
            "ts": round(self.wall_clock(), 3), "step": self.step_no, "ms": now,
            "mode": mode_name(out.mode, out.source),
            "plan": {"version": version, "id": pid, "source": source},
            "fault": out.fault.to_dict() if out.fault is not None else None,
            "link": {"healthy": link["healthy"], "connected": link["connected"],
                     "heartbeat_age_ms": link["heartbeat_age_ms"],
                     "hold_left_ms": (self.inbox.hold_until - now
                                      if self.inbox.hold_until else None)},
            "phases": phase_view(st),
            "detectors": {"counts": counts, "occupancy_pct": occ,
                          "status": [_without(d, "pulses") for d in st["detectors"]]},
            "period_s": self.cfg.telemetry_s,
            "interval_s": self.publisher.interval_s(now),
            "greens": self.phase_activity.take(),
            "drivers": {getattr(s, "name", "source%d" % i): _stats(s)
                        for i, s in enumerate(self.sources)},
            "counters": {"input": dict(self.counters), "junk": dict(self.inbox.junk),
                         "link": self.link.stats() if self.link else None,
                         "intake": dict(self.intake.counters), "outbox": self.outbox.stats()},
            "command": self.inbox.last_command,
            "preempt": ({"number": out.preempt[0], "stage": out.preempt[1]}
                        if out.preempt is not None else None),
            "priority": {"counters": dict(self.priority.counters),
                         "rejected": dict(self.priority.rejected), "last": self.priority.last},
            "loop": self.late.take(),
        }



class NullLog:
    """A RunLog that writes nothing (tests, benches)."""

    def __init__(self):
        self.context = lambda: {}

    def __call__(self, level, msg, **fields):
        pass

    def limited(self, key, level, msg, **fields):
        pass


def _without(d, key):
    out = dict(d)
    out.pop(key, None)
    return out


def _stats(s):
    try:
        return s.stats()
    except Exception as e:       # a driver's stats must never stop telemetry
        return {"error": repr(e)}


def _quiet(fn):
    try:
        fn()
    except Exception:
        pass
