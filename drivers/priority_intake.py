"""Priority requests from the `priority` topic, checked on the control thread.

    intake = PriorityIntake(site, prov.keys, prov.policy, store)
    intake.submit(payload)                        # the link delivered a message
    inputs.priority = intake.take(now_ms, wall_s, plan)

Each payload is a signed envelope checked by `edge_agent.priority` (signature,
wrong intersection, replay, expiry, unknown preempt); a rejected one is counted
by reason, logged, and changes nothing. The replay mark (the highest version
accepted) is kept in the store, so a restart cannot be fed an old request.
"""

import json

from drivers.topics import dumps
from edge_agent.priority import PriorityVerifier

HIGH_WATER = "priority-high-water.json"
QUEUE_MAX = 64


class PriorityIntake:
    """Verifies priority-request envelopes and keeps their replay mark."""

    def __init__(self, site, keys, policy=None, store=None, ed25519_verify=None, log=None):
        self.verifier = PriorityVerifier(site, keys, policy, ed25519_verify)
        self.store = store
        self.log = log
        self.queue = []
        self.last_version = self._load()
        self.counters = {"received": 0, "accepted": 0, "rejected": 0, "dropped": 0}
        self.rejected = {}            # reason -> count
        self.last = None              # the last outcome, for status views

    def _load(self):
        if self.store is None:
            return None
        try:
            return int(json.loads(self.store.read(HIGH_WATER).decode())["version"])
        except Exception:             # none yet, or unreadable: no mark
            return None

    def submit(self, payload):
        """Queue one received payload (bytes); the oldest is dropped past QUEUE_MAX."""
        self.counters["received"] += 1
        if len(self.queue) >= QUEUE_MAX:
            self.queue.pop(0)
            self.counters["dropped"] += 1
        self.queue.append(bytes(payload))

    def take(self, now_ms, wall_s, plan):
        """The accepted PriorityRequests of the queued payloads (None if there are none)."""
        if not self.queue:
            return None
        queue, self.queue = self.queue, []
        out = []
        for data in queue:
            r = self.verifier.check(data, self.last_version, wall_s, now_ms, plan)
            if getattr(r, "ok", True) is False:
                self.counters["rejected"] += 1
                self.rejected[r.reason] = self.rejected.get(r.reason, 0) + 1
                self.last = {"result": "rejected", "reason": r.reason, "message": r.message}
                if self.log is not None:
                    self.log.limited("priority-rejected", "warning", "priority request rejected",
                                     reason=r.reason, detail=r.message)
                continue
            self.counters["accepted"] += 1
            self.last_version = r.version
            self.last = {"result": "accepted", "preempt": r.number, "version": r.version,
                         "clear": r.clear}
            if self.store is not None:
                try:
                    self.store.write(HIGH_WATER, dumps({"version": r.version}))
                except OSError:
                    self.counters["store_errors"] = self.counters.get("store_errors", 0) + 1
            if self.log is not None:
                self.log("info", "priority request accepted", preempt=r.number,
                         version=r.version, clear=r.clear)
            out.append(r)
        return out or None
