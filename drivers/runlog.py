"""Structured logs that never block the control loop: a bounded queue and a writer thread.

    log = RunLog(sys.stderr, json_lines=True)
    log.context = lambda: {"step": n, "mode": "central", "plan": 7}
    log("warning", "plan rejected", reason="bad_mac")
    log.limited("junk:heartbeat", "warning", "bad heartbeat", reason="malformed")
    log.close()

Each record gets the time (unix "ts" and the local date and time with its
zone offset, "time"), level, message, the runtime context (step, mode,
plan version) and its fields. JSON lines or plain `key=value` text. A full
queue drops the record and counts it. `limited` lets the first few records
of a key through every window and counts the rest, so a flood of junk is
logged as a summary instead of a flood of lines.
"""

import collections
import json
import threading
import time

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


class RunLog:
    """A non-blocking logger for the runtime."""

    def __init__(self, stream, json_lines=False, level="info", queue_max=10000,
                 burst=5, window_s=10.0):
        self.stream = stream
        self.json_lines = json_lines
        self.min_level = LEVELS.get(level, 20)
        self.queue = collections.deque()
        self.queue_max = queue_max
        self.burst, self.window_s = burst, window_s
        self.windows = {}                 # key -> [window start, passed, suppressed]
        self.context = lambda: {}
        self.dropped = 0
        self.wake = threading.Event()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="runlog", daemon=True)
        self.thread.start()

    def __call__(self, level, msg, **fields):
        if LEVELS.get(level, 20) < self.min_level:
            return
        if len(self.queue) >= self.queue_max:
            self.dropped += 1
            return
        rec = {"ts": round(time.time(), 3), "level": level, "msg": msg}
        try:
            rec.update(self.context())
        except Exception:
            pass
        rec.update(fields)
        self.queue.append(rec)
        self.wake.set()

    def limited(self, key, level, msg, **fields):
        """Log at most `burst` records per key and window; the rest are counted."""
        now = time.monotonic()
        w = self.windows.get(key)
        if w is None or now - w[0] >= self.window_s:
            if w is not None and w[2]:
                self(level, msg + " (summary)", suppressed=w[2], window_s=self.window_s, key=key)
            w = self.windows[key] = [now, 0, 0]
        if w[1] < self.burst:
            w[1] += 1
            self(level, msg, **fields)
        else:
            w[2] += 1

    def _run(self):
        while True:
            self.wake.wait(0.2)
            self.wake.clear()
            self._drain()
            if self.stopping:
                self._drain()
                return

    def _drain(self):
        q = self.queue
        lines = []
        while q:
            lines.append(self._format(q.popleft()))
        if lines:
            try:
                self.stream.write("".join(lines))
                self.stream.flush()
            except (OSError, ValueError):
                pass

    def _format(self, rec):
        rec["time"] = local_time(rec["ts"])
        if self.json_lines:
            return json.dumps(rec, default=str, separators=(",", ":")) + "\n"
        rec.pop("ts")
        t = rec.pop("time")
        level, msg = rec.pop("level"), rec.pop("msg")
        rest = " ".join("%s=%s" % (k, _text(v)) for k, v in rec.items())
        return "%s %-7s %s%s\n" % (t, level, msg, "  " + rest if rest else "")

    def close(self):
        for key, w in list(self.windows.items()):
            if w[2]:
                self("info", "suppressed log records", key=key, suppressed=w[2])
                w[2] = 0
        self.stopping = True
        self.wake.set()
        self.thread.join(5)


def local_time(ts):
    """ISO 8601 local date and time with its zone offset: 2026-11-26T10:15:27.123+01:00."""
    lt = time.localtime(ts)
    z = time.strftime("%z", lt)
    return "%s.%03d%s:%s" % (time.strftime("%Y-%m-%dT%H:%M:%S", lt), int(ts * 1000) % 1000,
                             z[:3], z[3:])


def _text(v):
    if isinstance(v, str):
        return v if v and " " not in v else json.dumps(v)
    return json.dumps(v, default=str, separators=(",", ":"))
