"""An emulated detector card on a real pseudo-terminal, fed by the simulator's loops.

    emu = CardEmulator(channels=range(1, 17), link="/tmp/rig/card0", period_ms=100)
    emu.open()                              # os.openpty(); /tmp/rig/card0 -> /dev/pts/N
    emu.observe(sim.detector_log[k:])       # exact (ms, channel, on) edges of the loops
    emu.tick(now_ms)                        # writes every frame due by now_ms

The driver opens the link path with pyserial, exactly as it would open
/dev/serial/by-id/... of a real USB adapter. The emulator speaks the framed
protocol of drivers/detector_protocol.py: presence (bitmap and the on/off
edges of the last two report periods) every `period_ms` plus up to
`jitter_ms`, counts and occupancy every `counts_ms`, status every
`status_ms`, heartbeat every `heartbeat_ms`; its own clock runs
`card_clock_ms` ahead of the rig's.

Faults, switched on and off between ticks:
  drop_rate, dup_rate, bit_error_rate (per frame), garbage_rate (random bytes
  between frames), stuck_on(ch), chatter(ch, every_ms), open_loop(ch),
  shorted_loop(ch), dead (writes nothing), unplug() / replug() (the pty and
  the link vanish and come back, as a USB adapter does).
"""

import os
import random
import time
import tty

from drivers import detector_protocol as proto


class CardEmulator:
    """One detector card: channel states from observed edges, frames onto a pty."""

    def __init__(self, channels, link=None, period_ms=100, jitter_ms=0, counts_ms=5000,
                 status_ms=1000, heartbeat_ms=1000, card_clock_ms=3_000_000, seed=1,
                 edge_history_periods=2):
        self.channels = sorted(channels)
        self.nch = max(self.channels)
        self.link = link
        self.period_ms, self.jitter_ms = period_ms, jitter_ms
        self.counts_ms, self.status_ms, self.heartbeat_ms = counts_ms, status_ms, heartbeat_ms
        self.card_clock_ms = card_clock_ms
        self.history_ms = edge_history_periods * period_ms + jitter_ms
        self.rng = random.Random(seed)
        self.master = self.slave = None
        self.path = None
        self.seq = 0
        self.state = {ch: False for ch in self.channels}
        self.edges = []                # [(ms, ch, on)] applied, kept for the history window
        self.pending = []              # observed but not yet applied (ahead of the clock)
        self.on_ms = {ch: 0 for ch in self.channels}   # occupancy in the counts interval
        self.on_count = {ch: 0 for ch in self.channels}
        self.on_since = {ch: None for ch in self.channels}
        self.clock_ms = None
        self.next_presence = None
        self.next_counts = self.next_status = self.next_heartbeat = None
        self.power_up = True
        # faults
        self.drop_rate = self.dup_rate = self.bit_error_rate = self.garbage_rate = 0.0
        self.dead = False
        self.stuck = set()
        self.chatter_every = {}        # ch -> ms between on-edges
        self.faults = {}               # ch -> fault bits reported in STATUS
        self.preempt_inputs = None     # bitmap of preempt inputs on; None: the card has none
        # what happened (the tests compare it with the driver's counters)
        self.sent = {"frames": 0, "bytes": 0, "dropped": 0, "duplicated": 0, "corrupted": 0,
                     "garbage_bytes": 0, "overflow": 0}
        self.baudrate = None           # set: each write waits for the frame's wire time first
        self.write_log = None          # a list: [(type, card ms, perf_counter at write)] for benches

    # -- the pseudo-terminal ----------------------------------------------------

    def open(self):
        """Create the pty pair (raw mode) and point the link at its slave."""
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)
        if self.link:
            tmp = self.link + ".new"
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(self.path, tmp)
            os.replace(tmp, self.link)
        return self.link or self.path

    def unplug(self):
        """The adapter is pulled: the pty and the link disappear."""
        if self.link and os.path.lexists(self.link):
            os.unlink(self.link)
        for fd in (self.master, self.slave):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.master = self.slave = None

    def replug(self):
        self.power_up = True
        return self.open()

    close = unplug

    # -- faults -------------------------------------------------------------------

    def stuck_on(self, ch, on=True):
        if on:
            self.stuck.add(ch)
        else:
            self.stuck.discard(ch)

    def chatter(self, ch, every_ms=100):
        """On-edges every `every_ms` on channel ch (None stops it)."""
        if every_ms:
            self.chatter_every[ch] = every_ms
        else:
            self.chatter_every.pop(ch, None)

    def open_loop(self, ch, on=True):
        self._fault(ch, proto.FAULT_OPEN_LOOP, on)

    def shorted_loop(self, ch, on=True):
        self._fault(ch, proto.FAULT_SHORTED_LOOP, on)

    def preempt(self, n, on=True):
        """Turn preempt input n (1..6) on or off: sent with every report period
        from the next one on (a card with preempt inputs always reports them)."""
        bits = self.preempt_inputs or 0
        self.preempt_inputs = bits | (1 << (n - 1)) if on else bits & ~(1 << (n - 1))

    def _fault(self, ch, bit, on):
        bits = self.faults.get(ch, 0)
        self.faults[ch] = bits | bit if on else bits & ~bit

    # -- time -------------------------------------------------------------------------

    def observe(self, edges):
        """Exact loop edges (ms, channel, on) from the simulator's detector log."""
        for t, ch, on in edges:
            if ch in self.state:
                self.pending.append((t, ch, bool(on)))

    def tick(self, now_ms):
        """Emit every frame due by now_ms (each stamped with its own due time)."""
        if self.clock_ms is None:
            self.clock_ms = now_ms
            self.presence_start, self.presence_k = now_ms, 1
            self.next_presence = now_ms + self.period_ms
            self.next_counts = now_ms + self.counts_ms if self.counts_ms else None
            self.next_status = now_ms
            self.next_heartbeat = now_ms
        due = []
        for name in ("next_presence", "next_counts", "next_status", "next_heartbeat"):
            t = getattr(self, name)
            while t is not None and t <= now_ms:
                due.append((t, name))
                t = self._after(name, t)
            setattr(self, name, t)
        due.sort()
        for t, name in due:
            self._advance(t)
            if name == "next_presence":
                self._send(proto.PRESENCE, self._presence(t), t)
                if self.preempt_inputs is not None:
                    self._send(proto.PREEMPT, proto.preempt_payload(self._card(t),
                                                                    self.preempt_inputs), t)
            elif name == "next_counts":
                self._send(proto.COUNTS, self._counts(t), t)
            elif name == "next_status":
                self._send(proto.STATUS, self._status(t), t)
            else:
                flags = proto.CARD_POWER_UP if self.power_up else 0
                self._send(proto.HEARTBEAT, proto.heartbeat_payload(self._card(t), flags, self.nch), t)
        self._advance(now_ms)

    def _after(self, name, t):
        if name == "next_presence":
            self.presence_k += 1
            jitter = self.rng.randint(0, self.jitter_ms) if self.jitter_ms else 0
            return self.presence_start + self.presence_k * self.period_ms + jitter
        if name == "next_counts":
            return t + self.counts_ms
        if name == "next_status":
            return t + self.status_ms
        return t + self.heartbeat_ms

    def _card(self, t):
        return t + self.card_clock_ms

    def _advance(self, t):
        """Apply observed and synthetic edges up to t."""
        prev = self.clock_ms
        new = []
        keep = []
        for e in self.pending:
            if e[0] > t:
                keep.append(e)
            elif e[1] not in self.stuck and e[1] not in self.chatter_every:
                new.append(e)          # a stuck or chattering channel drowns its real loop
        self.pending = keep
        for ch, every in self.chatter_every.items():
            if ch in self.stuck:
                continue
            half = every // 2
            for k in range((prev - half) // every, t // every + 1):
                on_t = k * every
                if prev < on_t <= t:
                    new.append((on_t, ch, True))
                if prev < on_t + half <= t:
                    new.append((on_t + half, ch, False))
        new.sort()
        for et, ch, on in new:
            self._set(ch, on, et)
        for ch in self.stuck:
            if not self.state[ch]:
                self._set(ch, True, t)
        self.clock_ms = max(prev, t)
        horizon = t - self.history_ms
        if self.edges and self.edges[0][0] < horizon:
            self.edges = [e for e in self.edges if e[0] >= horizon]

    def _set(self, ch, on, t):
        if self.state[ch] == on:
            return
        self.state[ch] = on
        self.edges.append((t, ch, on))
        if on:
            self.on_since[ch] = t
            self.on_count[ch] += 1
        elif self.on_since[ch] is not None:
            self.on_ms[ch] += t - self.on_since[ch]
            self.on_since[ch] = None

    # -- frames -------------------------------------------------------------------------

    def _presence(self, t):
        bitmap = 0
        for ch in self.channels:
            if self.state[ch]:
                bitmap |= 1 << (ch - 1)
        recent = [(self._card(et), ch, on) for et, ch, on in self.edges
                  if t - self.history_ms < et <= t]
        recent = recent[-70:]           # what fits one frame (oldest dropped first)
        return proto.presence_payload(self._card(t), self.nch, bitmap, recent)

    def _counts(self, t):
        counts = []
        start = t - self.counts_ms
        for ch in self.channels:
            on = self.on_ms[ch]
            if self.on_since[ch] is not None:
                on += t - max(self.on_since[ch], start)
                self.on_since[ch] = t
            occ = min(1000, on * 1000 // self.counts_ms)
            counts.append((ch, self.on_count[ch], occ))
            self.on_ms[ch] = 0
            self.on_count[ch] = 0
        return proto.counts_payload(self._card(t), self.counts_ms, counts[:48])

    def _status(self, t):
        flags = proto.CARD_POWER_UP if self.power_up else 0
        self.power_up = False
        faults = [(ch, self.faults.get(ch, 0)) for ch in self.channels]
        return proto.status_payload(self._card(t), flags, faults[:120])

    def _send(self, mtype, payload, t):
        seq = self.seq
        self.seq = (self.seq + 1) & 0xFF
        if self.dead or self.master is None:
            return
        rng = self.rng
        if self.drop_rate and rng.random() < self.drop_rate:
            self.sent["dropped"] += 1
            return
        data = proto.frame(seq, mtype, payload)
        if self.bit_error_rate and rng.random() < self.bit_error_rate:
            b = bytearray(data)
            i = rng.randrange(1, len(b))
            b[i] ^= 1 << rng.randrange(8)
            data = bytes(b)
            self.sent["corrupted"] += 1
        if self.garbage_rate and rng.random() < self.garbage_rate:
            junk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 40)))
            self.sent["garbage_bytes"] += len(junk)
            data = junk + data
        if self.write_log is not None:     # the first byte goes on the wire now
            self.write_log.append((mtype, self._card(t), time.perf_counter()))
        if self.baudrate:
            time.sleep(len(data) * 10 / self.baudrate)     # start bit, 8 data bits, stop bit
        self._write(data)
        self.sent["frames"] += 1
        if self.dup_rate and rng.random() < self.dup_rate:
            self._write(data)
            self.sent["duplicated"] += 1

    def _write(self, data):
        try:
            n = os.write(self.master, data)
        except BlockingIOError:
            n = 0
        except OSError:
            return
        self.sent["bytes"] += n
        if n < len(data):
            self.sent["overflow"] += len(data) - n    # nobody reading: the pty buffer is full
