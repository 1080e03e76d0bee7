"""The event outbox: every controller event numbered, journalled on disk, sent until acknowledged.

    box = EventOutbox("/var/lib/edge-agent/events")
    box.start()                          # writer thread: memory -> disk, never the control loop
    box.put(events, wall_ms)             # control loop: non-blocking, once per step
    batch = box.next_batch(500)          # link thread: (first, last, records) or None
    box.sent(batch)                      # link thread: handed to the broker
    box.acked_range(first, last)         # link thread: central says it has stored these
    box.stop()                           # flush and fsync what is left

Each event gets the next per-agent sequence number (kept across restarts)
and is written as one JSON line `[seq, unix_ms, mono_ms, code, param]` to
segment files `<first seq>.log` of SEGMENT events each. A segment is deleted
once every event in it is acknowledged by central (events/ack, by sequence
range) — never on the broker's PUBACK: a broker that crashes before central
stored a batch must not lose it. While the link is down events pile
up on disk; beyond `capacity` unacknowledged events the oldest segment is
dropped and a loss event `[seq, unix_ms, mono_ms, EVENTS_LOST, count, first,
last]` is appended in its place, so central sees a gap it can explain. After
a restart everything after the acknowledged mark is sent again: central
de-duplicates by sequence number.
"""

import collections
import json
import os
import threading
import time

from drivers.store import Store, StoreError
from edge_agent.events import EVENTS_LOST

SEGMENT = 5000
ACKED = "acked.json"


class EventOutbox:
    """Sequence-numbered events on disk, read back in order for the link."""

    def __init__(self, directory, capacity=200_000, segment=SEGMENT, fsync=True,
                 fsync_every_s=1.0):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.capacity = max(capacity, segment)
        self.segment = segment
        self.fsync = fsync
        self.fsync_every_s = fsync_every_s
        self.meta = Store(directory, fsync=fsync)
        self.pending = collections.deque()      # (wall_ms, [(ms, code, param)]) from the loop
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.thread = None
        self.counters = {"events": 0, "lost": 0, "loss_events": 0, "segments_dropped": 0,
                         "write_errors": 0, "sent": 0, "acked_batches": 0}
        self.last_error = None
        self.acked_seq = self._load_acked()
        self.ack_ranges = []                    # acknowledged (first, last) beyond a gap
        self.segments = self._scan()            # [first seq] in order
        last = self._recover_tail()
        self.next_seq = max(last, self.acked_seq) + 1
        self.cursor = None                      # (segment first, offset, next seq) for sending
        self.send_from = self.acked_seq + 1
        self._file = None
        self._file_first = None
        self._dirty_since = None
        self._acked_saved = self.acked_seq
        self._acked_saved_at = 0.0
        self._drop_acked_segments()

    # -- start-up ---------------------------------------------------------------

    def _load_acked(self):
        try:
            return int(json.loads(self.meta.read(ACKED).decode())["acked"])
        except (StoreError, ValueError, KeyError, TypeError):
            return 0

    def _scan(self):
        firsts = []
        for name in os.listdir(self.dir):
            if name.endswith(".log") and name[:-4].isdigit():
                firsts.append(int(name[:-4]))
        return sorted(firsts)

    def _path(self, first):
        return os.path.join(self.dir, "%012d.log" % first)

    def _recover_tail(self):
        """The last complete sequence number on disk; a torn last line is cut off."""
        while self.segments:
            first = self.segments[-1]
            path = self._path(first)
            with open(path, "rb") as f:
                data = f.read()
            good = 0
            last = None
            for line in data.split(b"\n")[:-1]:
                rec = _parse(line)
                if rec is None:
                    break
                good += len(line) + 1
                last = rec[0]
            if good != len(data):
                with open(path, "r+b") as f:
                    f.truncate(good)
            if last is not None:
                return last
            os.unlink(path)
            self.segments.pop()
        return 0

    # -- the control loop's side ----------------------------------------------------

    def put(self, events, wall_ms):
        """Queue one step's events (the core's (ms, code, param) tuples); never blocks."""
        if events:
            self.pending.append((wall_ms, events))
            self.wake.set()

    # -- the writer -------------------------------------------------------------------

    def start(self):
        self.thread = threading.Thread(target=self._run, name="event-outbox", daemon=True)
        self.thread.start()
        return self

    def stop(self):
        """Write and fsync everything queued; the outbox can be read afterwards."""
        self.stopping.set()
        self.wake.set()
        if self.thread is not None:
            self.thread.join(10)
            self.thread = None
        self.flush(sync=True)

    def _run(self):
        while not self.stopping.is_set():
            self.wake.wait(0.2)
            self.wake.clear()
            self.flush()

    def flush(self, sync=False):
        """Move queued events to the journal (the writer thread, or stop())."""
        with self.lock:
            try:
                wrote = self._write_pending()
                now = time.monotonic()
                if wrote and self._dirty_since is None:
                    self._dirty_since = now
                if self._file is not None and self._dirty_since is not None and (
                        sync or now - self._dirty_since >= self.fsync_every_s):
                    self._file.flush()
                    if self.fsync:
                        os.fsync(self._file.fileno())
                    self._dirty_since = None
                if self.acked_seq != self._acked_saved and (
                        sync or now - self._acked_saved_at >= self.fsync_every_s):
                    self.meta.write(ACKED, json.dumps({"acked": self.acked_seq}).encode())
                    self._acked_saved = self.acked_seq
                    self._acked_saved_at = now
                self._drop_acked_segments()
            except OSError as e:
                self.counters["write_errors"] += 1
                self.last_error = "%s" % e

    def _write_pending(self):
        wrote = 0
        while self.pending:
            wall_ms, events = self.pending.popleft()
            for ms, code, param in events:
                self._append([self.next_seq, wall_ms, ms, code, param])
                wrote += 1
        if wrote:
            self._file.flush()
        return wrote

    def _append(self, rec):
        seq = rec[0]
        if self._file is None or seq - self._file_first >= self.segment:
            self._open_segment(seq)
        self._file.write(json.dumps(rec, separators=(",", ":")).encode() + b"\n")
        self.next_seq = seq + 1
        self.counters["events"] += 1
        if self.next_seq - 1 - self.acked_seq > self.capacity:
            self._drop_oldest()

    def _open_segment(self, seq):
        if self._file is not None:
            self._file.flush()
            if self.fsync:
                os.fsync(self._file.fileno())
            self._file.close()
        if self.segments and seq - self.segments[-1] < self.segment and self._file is None:
            first = self.segments[-1]           # continue the last segment after a restart
        else:
            first = seq
            self.segments.append(first)
        self._file = open(self._path(first), "ab")
        self._file_first = first

    def _drop_oldest(self):
        """The outbox is full: drop the oldest segment, log the loss in the stream."""
        if len(self.segments) < 2:
            return
        first = self.segments.pop(0)
        last = self.segments[0] - 1
        lo = max(first, self.acked_seq + 1)
        os.unlink(self._path(first))
        self.counters["segments_dropped"] += 1
        count = last - lo + 1
        self.acked_seq = max(self.acked_seq, last)
        if self.send_from <= last:
            self.send_from = last + 1
            self.cursor = None
        if count <= 0:
            return
        self.counters["lost"] += count
        self.counters["loss_events"] += 1
        seq = self.next_seq
        self._file.write(json.dumps([seq, int(time.time() * 1000), None, EVENTS_LOST, count,
                                     lo, last], separators=(",", ":")).encode() + b"\n")
        self.next_seq = seq + 1

    def _drop_acked_segments(self):
        while len(self.segments) > 1 and self.segments[1] - 1 <= self.acked_seq:
            first = self.segments.pop(0)
            try:
                os.unlink(self._path(first))
            except FileNotFoundError:
                pass
        if self.segments and self._file is None and self.next_seq - 1 <= self.acked_seq \
                and self.segments[-1] <= self.acked_seq:
            # Everything acknowledged and nothing open: the last segment can go too.
            try:
                os.unlink(self._path(self.segments.pop()))
            except FileNotFoundError:
                pass

    # -- the link's side -----------------------------------------------------------------

    def next_batch(self, limit=500):
        """(first seq, last seq, [records]) of journalled events not yet sent, or None."""
        with self.lock:
            if self.send_from >= self.next_seq:
                return None
            if self._file is not None:
                self._file.flush()
            recs = self._read(self.send_from, limit)
            if not recs:
                return None
            return recs[0][0], recs[-1][0], recs

    def sent(self, batch):
        """The batch was handed to the MQTT client: continue after it."""
        with self.lock:
            self.send_from = max(self.send_from, batch[1] + 1)
            self.counters["sent"] += len(batch[2])

    def acked(self, last_seq):
        """Everything up to last_seq is acknowledged (batches acknowledged in order)."""
        with self.lock:
            if last_seq > self.acked_seq:
                self.acked_seq = last_seq
                self.counters["acked_batches"] += 1
        self.wake.set()

    def acked_range(self, first, last):
        """Central stored first..last: the mark moves once the ranges join up from it.

        Returns True when the acknowledged mark moved. Ranges ahead of a gap are
        kept (a few) until the gap is acknowledged; unknown or bogus ranges change
        nothing.
        """
        if not (isinstance(first, int) and isinstance(last, int)) or first > last \
                or isinstance(first, bool) or isinstance(last, bool):
            return False
        with self.lock:
            if last >= self.next_seq:
                return False                    # not an event of ours: ignore it
            before = self.acked_seq
            ranges = self.ack_ranges
            ranges.append((first, last))
            ranges.sort()
            keep = []
            for lo, hi in ranges:
                if lo <= self.acked_seq + 1:
                    self.acked_seq = max(self.acked_seq, hi)
                elif hi > self.acked_seq:
                    keep.append((lo, hi))
            self.ack_ranges = keep[-64:]
            moved = self.acked_seq > before
            if moved:
                self.counters["acked_batches"] += 1
                if self.send_from <= self.acked_seq:
                    self.send_from = self.acked_seq + 1
                    self.cursor = None
        if moved:
            self.wake.set()
        return moved

    def unacked_sent(self):
        """Events handed to the broker that central has not acknowledged yet."""
        return max(0, self.send_from - 1 - self.acked_seq)

    def rewind(self):
        """Send again from the first unacknowledged event (a new client, a lost session)."""
        with self.lock:
            self.send_from = self.acked_seq + 1
            self.cursor = None

    def backlog(self):
        """Events journalled or queued but not yet acknowledged."""
        queued = sum(len(e) for _, e in list(self.pending))
        return self.next_seq - 1 - self.acked_seq + queued

    def _read(self, seq, limit):
        out = []
        cur = self.cursor
        if cur is None or cur[2] != seq:
            cur = self._seek(seq)
            if cur is None:
                return out
        first, offset, _ = cur
        while len(out) < limit:
            try:
                with open(self._path(first), "rb") as f:
                    f.seek(offset)
                    data = f.read(256 * limit)
            except FileNotFoundError:
                data = b""
            lines = data.split(b"\n")[:-1]
            for line in lines:
                offset += len(line) + 1
                rec = _parse(line)
                if rec is None:
                    break
                if rec[0] >= seq:
                    out.append(rec)
                    seq = rec[0] + 1
                    if len(out) >= limit:
                        break
            if len(out) >= limit:
                break
            if not lines:
                k = self.segments.index(first) if first in self.segments else -1
                if k < 0 or k + 1 >= len(self.segments):
                    break
                first, offset = self.segments[k + 1], 0
        self.cursor = (first, offset, seq)
        return out

    def _seek(self, seq):
        first = None
        for f in self.segments:
            if f <= seq:
                first = f
        if first is None:
            if not self.segments:
                return None
            first = self.segments[0]
        return first, 0, seq

    def stats(self):
        c = dict(self.counters)
        c["next_seq"] = self.next_seq
        c["acked_seq"] = self.acked_seq
        c["backlog"] = self.backlog()
        return c


def _parse(line):
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    if isinstance(rec, list) and len(rec) >= 5 and isinstance(rec[0], int):
        return rec
    return None
