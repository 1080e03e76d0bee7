"""The unit's local event history: every event kept N days on disk, acknowledged or not.

    hist = EventHistory("/var/lib/edge-agent/history", days=7, max_bytes=512 << 20)
    hist.start()                              # writer thread: memory -> disk
    hist.put(out.events, wall_ms, now_ms)     # control loop: non-blocking, once per step
    for unix_ms, code, param in hist.read(since_ms, until_ms): ...
    hist.stop()                               # flush what is left

The outbox (drivers/outbox.py) deletes what central has acknowledged; this
history is the unit's own record for `edge-agent events export`, kept for a
configured number of days whatever the link did. One file per UTC day,
`YYYY-MM-DD.jsonl`, one line `[unix_ms, code, param]` per event. It is
bounded twice: files older than `days` are deleted, and a step's events that
would take the files over `max_bytes` first delete the oldest days; if the
current day alone is full they are dropped (and counted) until the next day. An event's unix time is its step's wall-clock reading moved by the
event's own offset from the step (the core stamps some events a few ms
before the step, e.g. a detector pulse between two steps).
"""

import collections
import json
import os
import threading
import time

DAY_MS = 86_400_000


def _day_name(unix_ms):
    return time.strftime("%Y-%m-%d", time.gmtime(unix_ms // 1000)) + ".jsonl"


class EventHistory:
    """Day files of events under one directory, pruned by age and size."""

    def __init__(self, directory, days=7, max_bytes=512 << 20, fsync=True, fsync_every_s=5.0):
        if days < 1:
            raise ValueError("history days: %r, must be at least 1" % (days,))
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.days = days
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.fsync_every_s = fsync_every_s
        self.pending = collections.deque()      # (wall_ms, now_ms, events) from the loop
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.thread = None
        self.counters = {"events": 0, "dropped_full": 0, "files_pruned": 0, "write_errors": 0}
        self.last_error = None
        self._file = None
        self._name = None
        self._bytes = 0                         # all day files together, as last counted
        self._synced_at = 0.0

    # -- the control loop's side ----------------------------------------------------

    def put(self, events, wall_ms, now_ms):
        """Queue one step's events (the core's (ms, code, param)); never blocks."""
        if events and wall_ms is not None:
            self.pending.append((wall_ms, now_ms, events))
            self.wake.set()

    # -- the writer ----------------------------------------------------------------------

    def start(self):
        self.thread = threading.Thread(target=self._run, name="event-history", daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.stopping.set()
        self.wake.set()
        if self.thread is not None:
            self.thread.join(10)
            self.thread = None
        self.flush(sync=True)
        with self.lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def _run(self):
        while not self.stopping.is_set():
            self.wake.wait(0.5)
            self.wake.clear()
            self.flush()

    def flush(self, sync=False):
        """Write the queued events, then prune by age and size."""
        with self.lock:
            try:
                wrote = self._write_pending()
                now = time.monotonic()
                if self._file is not None and (wrote or sync) and (
                        sync or now - self._synced_at >= self.fsync_every_s):
                    self._file.flush()
                    if self.fsync:
                        os.fsync(self._file.fileno())
                    self._synced_at = now
            except OSError as e:
                self.counters["write_errors"] += 1
                self.last_error = str(e)

    def _write_pending(self):
        wrote = 0
        while self.pending:
            wall_ms, now_ms, events = self.pending.popleft()
            name = _day_name(wall_ms)
            if name != self._name:
                self._open(name, wall_ms)
            lines = [json.dumps([wall_ms - (now_ms - ms), code, param], separators=(",", ":"))
                     for ms, code, param in events]
            data = ("\n".join(lines) + "\n").encode()
            if self._bytes + len(data) > self.max_bytes:
                self._prune_size(len(data))          # older days go first
                if self._bytes + len(data) > self.max_bytes:
                    self.counters["dropped_full"] += len(events)
                    continue
            self._file.write(data)
            self._bytes += len(data)
            wrote += len(lines)
        self.counters["events"] += wrote
        if wrote:
            self._file.flush()
        return wrote

    def _open(self, name, wall_ms):
        if self._file is not None:
            self._file.flush()
            if self.fsync:
                os.fsync(self._file.fileno())
            self._file.close()
        self._file = open(os.path.join(self.dir, name), "ab")
        self._name = name
        self._prune(wall_ms)

    def _files(self):
        return sorted(n for n in os.listdir(self.dir) if n.endswith(".jsonl") and len(n) == 16)

    def _prune(self, wall_ms):
        """Delete day files older than `days`, then the oldest while over max_bytes."""
        oldest_kept = _day_name(wall_ms - (self.days - 1) * DAY_MS)
        files = self._files()
        for n in files:
            if n < oldest_kept and n != self._name:
                os.unlink(os.path.join(self.dir, n))
                self.counters["files_pruned"] += 1
        self._prune_size()

    def _prune_size(self, extra=0):
        """Delete the oldest day files until `extra` more bytes fit under max_bytes."""
        files = [n for n in self._files() if n != self._name]
        self._bytes = self._size()
        while files and self._bytes + extra > self.max_bytes:
            os.unlink(os.path.join(self.dir, files.pop(0)))
            self.counters["files_pruned"] += 1
            self._bytes = self._size()

    def _size(self):
        total = 0
        for n in self._files():
            try:
                total += os.path.getsize(os.path.join(self.dir, n))
            except OSError:
                pass
        return total

    # -- reading ---------------------------------------------------------------------------

    def read(self, since_ms=None, until_ms=None):
        """[(unix_ms, code, param)] with since_ms <= unix_ms < until_ms, in time order."""
        with self.lock:
            if self._file is not None:
                self._file.flush()
        return read_history(self.dir, since_ms, until_ms)

    def stats(self):
        c = dict(self.counters)
        c["files"] = len(self._files())
        c["bytes"] = self._size()
        return c


def read_history(directory, since_ms=None, until_ms=None):
    """The events of a history directory in [since_ms, until_ms), in time order;
    a torn last line (power lost mid-write) is skipped."""
    lo = _day_name(since_ms) if since_ms is not None else ""
    hi = _day_name(until_ms) if until_ms is not None else "~"
    out = []
    for n in sorted(os.listdir(directory)):
        if not (n.endswith(".jsonl") and len(n) == 16) or n < lo or n > hi:
            continue
        with open(os.path.join(directory, n), "rb") as f:
            for line in f.read().split(b"\n"):
                try:
                    t, code, param = json.loads(line)
                except ValueError:
                    continue
                if (since_ms is None or t >= since_ms) and (until_ms is None or t < until_ms):
                    out.append((t, code, param))
    out.sort(key=lambda e: e[0])        # stable: events of one ms keep their logged order
    return out
