"""An emulated TS2 Type 1 cabinet (T&F BIUs, detector BIUs, MMU) on a real pseudo-terminal.

    cab = CabinetEmulator(tf_bius=2, det_bius=1)
    cab.open()            # os.openpty(); the agent opens cab.path with pyserial
    cab.start()           # answer every command frame on a thread, as the stations do
    cab.field_log         # [(ms, ((red, yellow, green) per channel 1..16))] on each change

It answers the controller's Port 1 frames (drivers/ts2_frames.py): Type 0 →
128 (the MMU learns what the controller commands), Type 10.. → 138.. (each
T&F BIU holds its outputs), Type 18 (the BIUs switch their load switches
together: the field changes), Type 1 → 129 (the MMU's view of the field and
its flags), Type 3 → 131 (its programming: `permits`, the compatible channel
pairs of its compatibility card), Type 20.. → 148.. (detector calls set with `set_calls`).

The MMU is a real one in miniature: a channel programmed in `monitored`
that shows no lamp at all for `red_fail_ms` while the controller is not
commanding flash is a red failure; no Type 0 frame for `port1_timeout_ms`
(after the first) is a port 1 timeout. Either latches: the MMU's output
relay transfers, the field flashes red on every channel, and status 129
carries the fault until `mmu_reset()`.

Faults: stuck(channel, (r, y, g)) welds a load switch; dead_biu(n) silences
T&F BIU n (its channels go dark, it never answers); trip(flag) makes the MMU
trip with one of ts2.MMU_* (e.g. MMU_CONFLICT); cut_cable() loses every frame both
ways (the MMU's port 1 watchdog then flashes the field); corrupt_rate flips a bit in
that share of the responses; garbage_rate adds random bytes between them.
"""

import os
import random
import select
import threading
import time
import tty

from drivers import ts2_frames as ts2

OFF = (False, False, False)


def monotonic_ms():
    return time.monotonic_ns() // 1_000_000


class CabinetEmulator:
    """BIUs and MMU of one cabinet, answering on a pty."""

    def __init__(self, tf_bius=2, det_bius=1, monitored=range(1, 13), red_fail_ms=1000,
                 port1_timeout_ms=300, permits=(), seed=1, clock=monotonic_ms, nice=None):
        self.tf_bius, self.det_bius = tf_bius, det_bius
        # A real MMU and BIUs are hardware of their own and never wait for a CPU; on a
        # shared machine the emulator's thread can be given a negative nice (root only)
        # so that it answers like them.
        self.nice = nice
        self.monitored = set(monitored)
        self.permits = set(permits)       # the compatibility card: channel pairs (a < b)
        self.red_fail_ms = red_fail_ms
        self.port1_timeout_ms = port1_timeout_ms
        self.rng = random.Random(seed)
        self.clock = clock
        self.master = self.slave = None
        self.path = None
        self.parser = ts2.FrameParser()
        self.lock = threading.Lock()
        self.pending = {}                 # channel -> drive held by its BIU, not yet transferred
        self.applied = {}                 # channel -> drive the load switches give
        self.commanded = {}               # channel -> drive from the last Type 0
        self.controller_flash = False
        self.last_type0 = None
        self.dark_since = {}
        self.mmu_flags = 0                # latched MMU faults
        self.field = tuple([OFF] * ts2.CHANNELS)
        self.field_log = []               # [(ms, field)] on each change
        self.calls = {}                   # detector BIU -> calls bitmap
        self.sent_calls = {}
        self.frames_in = {}               # frame type -> count received
        # faults
        self.stuck_switches = {}
        self.dead = set()
        self.corrupt_rate = 0.0
        self.garbage_rate = 0.0
        self.cut = False                  # the Port 1 cable: nothing arrives, nothing answers
        self.thread = None
        self.stopping = threading.Event()

    # -- the pty ----------------------------------------------------------------------

    def open(self):
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        tty.setraw(self.master)
        self.path = os.ttyname(self.slave)
        return self.path

    def start(self):
        self.stopping.clear()
        self.thread = threading.Thread(target=self._run, name="cabinet-emulator", daemon=True)
        self.thread.start()

    def stop(self):
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=2.0)
            self.thread = None
        for fd in (self.master, self.slave):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.master = self.slave = None

    def _run(self):
        if self.nice is not None:
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.nice)
            except OSError:                  # not root: it runs at the normal priority
                pass
        while not self.stopping.is_set():
            r, _, _ = select.select([self.master], [], [], 0.02)
            now = self.clock()
            if r:
                try:
                    data = os.read(self.master, 4096)
                except OSError:
                    return
                with self.lock:
                    if not self.cut:
                        for f in self.parser.feed(data):
                            self._command(f, now)
            with self.lock:
                self._supervise(now)

    # -- faults -------------------------------------------------------------------------

    def stuck(self, channel, drive):
        with self.lock:
            self.stuck_switches[channel] = tuple(bool(x) for x in drive)

    def dead_biu(self, n, dead=True):
        with self.lock:
            (self.dead.add if dead else self.dead.discard)(n)

    def cut_cable(self, cut=True):
        with self.lock:
            self.cut = cut

    def trip(self, flag=ts2.MMU_CONFLICT):
        with self.lock:
            self.mmu_flags |= flag | ts2.MMU_FAILED_RELAY_TRANSFERRED

    def mmu_reset(self):
        with self.lock:
            self.mmu_flags = 0
            self.dark_since = {}
            self.last_type0 = None

    def set_calls(self, biu, bitmap):
        with self.lock:
            self.calls[biu] = bitmap

    # -- the stations -------------------------------------------------------------------

    def _command(self, f, now):
        t = f.type
        self.frames_in[t] = self.frames_in.get(t, 0) + 1
        if t == ts2.LOAD_SWITCH_DRIVERS:
            self.commanded, self.controller_flash = ts2.parse_load_switch_drivers(f.data)
            self.last_type0 = now
            self._send(ts2.LOAD_SWITCH_ACK, b"")
        elif ts2.TF_OUTPUTS <= t < ts2.TF_OUTPUTS + 4:
            n = t - ts2.TF_OUTPUTS + 1
            if n > self.tf_bius or n in self.dead:
                return
            self.pending.update(ts2.parse_tf_outputs(f.data, n))
            self._send(ts2.TF_INPUTS + n - 1, bytes(5))
        elif t == ts2.OUTPUT_TRANSFER:
            self.applied.update(self.pending)
            self._field(now)
        elif t == ts2.MMU_STATUS_REQUEST:
            self._field(now)
            g = y = r = 0
            for ch, (rd, yl, gr) in enumerate(self.field, 1):
                b = 1 << (ch - 1)
                r |= b if rd else 0
                y |= b if yl else 0
                g |= b if gr else 0
            flags = self.mmu_flags | ts2.MMU_RED_ENABLE
            self._send(ts2.MMU_STATUS, ts2.mmu_status(g, y, r, flags))
        elif t == ts2.MMU_PROGRAM_REQUEST:
            self._send(ts2.MMU_PROGRAM, ts2.mmu_program(self.permits, min_flash_s=6))
        elif ts2.CALL_DATA_REQUEST <= t < ts2.CALL_DATA_REQUEST + 4:
            n = t - ts2.CALL_DATA_REQUEST + 1
            if n > self.det_bius:
                return
            calls = self.calls.get(n, 0)
            changed = calls ^ self.sent_calls.get(n, 0)
            self.sent_calls[n] = calls
            self._send(ts2.CALL_DATA + n - 1, ts2.call_data(calls, changed))

    def _field(self, now):
        """What the load switches drive now (the MMU's relay overrides all on a fault)."""
        if self.mmu_flags:
            lit = now % 1000 < 500
            field = tuple([(lit, False, False)] * ts2.CHANNELS)
        else:
            out = []
            for ch in range(1, ts2.CHANNELS + 1):
                biu = (ch - 1) // 8 + 1
                d = OFF if biu in self.dead else self.applied.get(ch, OFF)
                out.append(self.stuck_switches.get(ch, d))
            field = tuple(out)
        if field != self.field:
            self.field = field
            self.field_log.append((now, field))

    def _supervise(self, now):
        if self.mmu_flags:
            self._field(now)
            return
        if self.last_type0 is not None and now - self.last_type0 > self.port1_timeout_ms:
            self.mmu_flags |= ts2.MMU_PORT1_TIMEOUT | ts2.MMU_FAILED_RELAY_TRANSFERRED
            self._field(now)
            return
        if self.last_type0 is None or self.controller_flash:
            self.dark_since = {}
            return
        for ch in self.monitored:
            if self.field[ch - 1] == OFF:
                t0 = self.dark_since.setdefault(ch, now)
                if now - t0 >= self.red_fail_ms:
                    self.mmu_flags |= ts2.MMU_RED_FAILURE | ts2.MMU_FAILED_RELAY_TRANSFERRED
                    self._field(now)
                    return
            else:
                self.dark_since.pop(ch, None)

    def _send(self, ftype, data):
        w = bytearray(ts2.encode(ftype, data))
        if self.corrupt_rate and self.rng.random() < self.corrupt_rate:
            bit = self.rng.randrange(8, 8 * (len(w) - 1))      # never the flags themselves
            w[bit >> 3] ^= 1 << (bit & 7)
        if self.garbage_rate and self.rng.random() < self.garbage_rate:
            w = bytearray(self.rng.randbytes(self.rng.randint(1, 20))) + w
        try:
            os.write(self.master, bytes(w))
        except OSError:
            pass

    def snapshot(self):
        """(field, MMU flags) now, under the lock."""
        with self.lock:
            return self.field, self.mmu_flags
