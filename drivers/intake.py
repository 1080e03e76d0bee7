"""Plan envelopes and commands checked off the control loop: verify, store, hand back.

    intake = Intake(verifier, store, commands)
    intake.start()
    intake.submit(PLAN, payload)           # control loop: never blocks (bounded, counted)
    for r in intake.results(): ...         # control loop: PlanResult / CommandResult

Verification (HMAC or Ed25519, plan parsing) and the store's fsynced writes
run on this thread. The sequence for a plan is the one of
docs/protocols/plan-envelope.md: `Verifier.check(data,
store.high_water(intersection), wall_s)`; accepted → `store.accept(res)`
(high-water mark on disk first) and only then handed to the runtime. The
envelope that is already active (a retained plan/desired delivered again
after a reconnect) is recognised by its bytes and reported as current, not
as a replay.
"""

import collections
import json
import threading
import time

from drivers.mqtt_link import CMD, PLAN
from drivers.store import StoreError
from drivers.topics import dumps

CMD_HIGH_WATER = "cmd-high-water.json"

ACCEPTED = "accepted"
REJECTED = "rejected"
CURRENT = "current"            # the active envelope again: nothing to do


class PlanResult:
    """The outcome of one plan/desired message."""
    __slots__ = ("status", "accepted", "reason", "message", "version", "at")

    def __init__(self, status, accepted=None, reason=None, message=None, version=None):
        self.status, self.accepted = status, accepted
        self.reason, self.message, self.version = reason, message, version
        self.at = time.time()


class CommandResult:
    """The outcome of one cmd message: a drivers.commands Command or Refused."""
    __slots__ = ("outcome",)

    def __init__(self, outcome):
        self.outcome = outcome


class Intake:
    """One worker thread for everything central sends that needs checking."""

    def __init__(self, verifier, store, commands=None, wall_clock=time.time, queue_max=256,
                 active_envelope=None, log=None):
        self.verifier = verifier
        self.store = store
        self.commands = commands
        self.wall_clock = wall_clock
        self.queue = collections.deque()
        self.queue_max = queue_max
        self.out = collections.deque()
        self.active_envelope = active_envelope     # bytes of the stored active envelope
        self.cmd_last = self._load_cmd_high_water()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.thread = None
        self.log = log or (lambda level, msg, **kw: None)
        self.counters = collections.Counter()

    def _load_cmd_high_water(self):
        try:
            return int(json.loads(self.store.read(CMD_HIGH_WATER).decode())["id"])
        except (StoreError, ValueError, KeyError, TypeError):
            return None

    def submit(self, kind, payload):
        """Queue a plan or command payload; the oldest is dropped (and counted) when full."""
        if len(self.queue) >= self.queue_max:
            self.queue.popleft()
            self.counters["dropped"] += 1
        self.queue.append((kind, payload))
        self.wake.set()

    def results(self):
        out = []
        while self.out:
            out.append(self.out.popleft())
        return out

    def start(self):
        self.thread = threading.Thread(target=self._run, name="intake", daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.stopping.set()
        self.wake.set()
        if self.thread is not None:
            self.thread.join(5)
            self.thread = None

    def _run(self):
        while not self.stopping.is_set():
            self.wake.wait(0.5)
            self.wake.clear()
            while self.queue and not self.stopping.is_set():
                kind, payload = self.queue.popleft()
                try:
                    if kind == PLAN:
                        self.out.append(self.plan(payload))
                    elif kind == CMD:
                        self.out.append(self.command(payload))
                except Exception as e:      # a bug here must not end the worker
                    self.counters["errors"] += 1
                    self.log("error", "intake error", kind=kind, error=repr(e))

    def plan(self, payload):
        """Check one plan/desired payload (this thread, or a test calling it directly)."""
        payload = bytes(payload)
        self.counters["plans"] += 1
        if self.active_envelope is not None and payload == self.active_envelope:
            self.counters["plans_current"] += 1
            return PlanResult(CURRENT)
        site = self.verifier.site
        res = self.verifier.check(payload, self.store.high_water(site.intersection),
                                  self.wall_clock())
        if not res.ok:
            self.counters["plans_rejected"] += 1
            return PlanResult(REJECTED, reason=res.reason, message=res.message, version=res.version)
        try:
            self.store.accept(res)
        except OSError as e:
            self.counters["store_errors"] += 1
            return PlanResult(REJECTED, reason="store_failed",
                              message="accepted but not stored: %s" % e, version=res.version)
        self.active_envelope = bytes(res.envelope)
        self.counters["plans_accepted"] += 1
        return PlanResult(ACCEPTED, accepted=res, version=res.version)

    def command(self, payload):
        """Check one cmd payload; an accepted id becomes the command replay mark."""
        self.counters["commands"] += 1
        if self.commands is None:
            from drivers.commands import Refused
            return CommandResult(Refused("unsupported", "no command verifier configured"))
        res = self.commands.check(bytes(payload), self.cmd_last, self.wall_clock())
        if res.ok:
            self.cmd_last = res.id
            try:
                self.store.write(CMD_HIGH_WATER, dumps({"id": res.id}))
            except OSError as e:
                self.counters["store_errors"] += 1
                self.log("warning", "command mark not stored", error=str(e))
            self.counters["commands_accepted"] += 1
        else:
            self.counters["commands_rejected"] += 1
        return CommandResult(res)
