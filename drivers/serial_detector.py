"""A detector card or radar unit on RS-232/RS-485 (pyserial): frames in, core Reports out.

    card = SerialDetectorCard("/dev/serial/by-id/usb-card0", source="card0",
                              channels={1: 1, 2: 2}, ped_channels={9: 1})
    card.start()                       # reader thread: read, stamp, parse, queue
    inputs.reports = card.reports()    # each control step: drain the queue
    telemetry["card0"] = card.stats()  # every error counter

Each chunk of bytes is stamped on arrival with the monotonic clock the
control loop uses; the frames completed in it become `Report`s carrying the
card's own timestamps. Garbage, bad CRCs, impossible lengths, duplicates and
sequence gaps are counted, never raised. When the port fails (a USB adapter
unplugged) the driver reports its channels STALE at once, closes the port
and reopens it with exponential back-off and jitter; the core's watchdog
decides when "stale" becomes a detector fault.
"""

import collections
import random
import threading
import time

from drivers import detector_protocol as proto
from edge_agent import detectors as core
from edge_agent.diagnostics import DEV_OTHER, DEV_WATCHDOG, DEV_OPEN, DEV_SHORTED, DEV_CHANGE

try:
    import serial
except ImportError:        # the drivers extra is not installed: only tests may get here
    serial = None

FAULT_TO_CORE = ((proto.FAULT_OTHER, DEV_OTHER), (proto.FAULT_WATCHDOG, DEV_WATCHDOG),
                 (proto.FAULT_OPEN_LOOP, DEV_OPEN), (proto.FAULT_SHORTED_LOOP, DEV_SHORTED),
                 (proto.FAULT_EXCESSIVE_CHANGE, DEV_CHANGE))


def monotonic_ms():
    return time.monotonic_ns() // 1_000_000


class SerialDetectorCard:
    """One serial detector card: open, read, parse, reconnect; reports to the core."""

    def __init__(self, port, source=None, channels=None, ped_channels=None, baudrate=115200,
                 clock=monotonic_ms, backoff_s=(0.05, 2.0), read_timeout_s=0.02,
                 opener=None, seed=None, preempts=None, preempt_watchdog_ms=1000,
                 advance_warnings=None, gate_downs=None):
        self.port = port
        self.source = source or port
        # card channel -> site vehicle channel / site ped channel; default: card ch = site ch
        self.channels = dict(channels) if channels is not None else {c: c for c in range(1, 65)}
        self.ped_channels = dict(ped_channels or {})
        # card preempt input -> (the core Inputs field it feeds, site preempt number):
        # "preempts" (the preempt's call), "advance_warning" and "gate_down" (a railroad's;
        # events 101, 103). None mapped: the card's preempt frames are ignored.
        self.preempt_map = {}
        option_of = {}
        for field, option, m in (("preempts", "preempts", preempts),
                                 ("advance_warning", "advance_warnings", advance_warnings),
                                 ("gate_down", "gate_downs", gate_downs)):
            for card_in, n in (m or {}).items():
                if card_in in self.preempt_map:
                    raise ValueError("card preempt input %d is in both %s and %s"
                                     % (card_in, option_of[card_in], option))
                self.preempt_map[card_in] = (field, n)
                option_of[card_in] = option
        self.preempt_levels = {}      # (field, site preempt number) -> level, changed since the last take
        self.preempt_watchdog_ms = preempt_watchdog_ms
        self.preempt_heard = None     # rx ms of the last PREEMPT frame
        self.baudrate = baudrate
        self.clock = clock
        self.backoff_min, self.backoff_max = backoff_s
        self.read_timeout_s = read_timeout_s
        self.opener = opener or self._open_serial
        self.rng = random.Random(seed)
        self.parser = proto.FrameParser()
        self.seq = proto.SequenceCheck()
        self.queue = collections.deque()
        self.ser = None
        self.stale_sent = False
        self.backoff = self.backoff_min
        self.next_open = 0.0
        self.last_card_ms = None
        self.card_epoch = 0
        self.counters = {"port_lost": 0, "reopened": 0, "open_failures": 0,
                         "card_restarts": 0, "card_watchdog_resets": 0, "reports": 0,
                         "driver_errors": 0}
        self.last_error = None
        self.thread = None
        self.stopping = threading.Event()

    # -- the port --------------------------------------------------------------

    def _open_serial(self):
        if serial is None:
            raise OSError("pyserial is not installed (pip install 'edge-agent[drivers]')")
        return serial.Serial(self.port, self.baudrate, timeout=self.read_timeout_s)

    def _try_open(self):
        now = time.monotonic()
        if now < self.next_open:
            return False
        try:
            self.ser = self.opener()
        except Exception as e:          # absent device, permission, busy: back off
            self.counters["open_failures"] += 1
            self.last_error = "open %s: %s" % (self.port, e)
            self._report_stale()
            self.next_open = now + self.backoff * (0.5 + self.rng.random())
            self.backoff = min(self.backoff * 2, self.backoff_max)
            return False
        if self.counters["port_lost"] or self.counters["open_failures"]:
            self.counters["reopened"] += 1
        self.backoff = self.backoff_min
        self.parser.reset()
        self.seq.reset()
        return True

    def _lost(self, err):
        self.counters["port_lost"] += 1
        self.last_error = "read %s: %s" % (self.port, err)
        try:
            self.ser.close()
        except Exception:
            pass
        self.ser = None
        self._report_stale()
        self.next_open = time.monotonic() + self.backoff_min

    def _report_stale(self):
        if self.stale_sent:
            return
        self.stale_sent = True
        now = self.clock()
        if self.channels:
            self._put(core.Report(self.source, core.STALE, now, None,
                                  channels=sorted(self.channels.values())))
        if self.ped_channels:
            self._put(core.Report(self.source, core.STALE, now, None, ped=True,
                                  channels=sorted(self.ped_channels.values())))
        # A card that is gone cannot hold a preempt: its inputs read off.
        for key in self.preempt_map.values():
            self.preempt_levels[key] = False

    # -- reading -----------------------------------------------------------------

    def poll(self, wait_s=0.0):
        """Read what the port has (waiting up to wait_s for the first byte); returns
        the number of bytes read. The reader thread calls this in a loop; tests
        with a virtual clock may call it themselves instead of start()."""
        if self.ser is None and not self._try_open():
            return 0
        ser = self.ser
        try:
            n = ser.in_waiting
            if n == 0 and wait_s > 0:
                ser.timeout = wait_s
                data = ser.read(1)
                n = ser.in_waiting
                if n:
                    data += ser.read(n)
            else:
                data = ser.read(n) if n else b""
        except Exception as e:           # SerialException / OSError: device gone
            self._lost(e)
            return 0
        if data:
            self.feed(data, self.clock())
        return len(data)

    def feed(self, data, rx_ms):
        """Parse bytes that arrived at rx_ms and queue their reports."""
        try:
            for m in self.parser.feed(data):
                if self.seq.accept(m.seq):
                    self._message(m, rx_ms)
        except Exception as e:           # a driver bug must not stop the reader
            self.counters["driver_errors"] += 1
            self.last_error = "parse: %r" % (e,)

    def _card_time(self, card_ms):
        """Unwrap the card's 32-bit millisecond clock; notice a restart."""
        last = self.last_card_ms
        if last is not None:
            low = last & 0xFFFFFFFF
            if card_ms < low:
                if low - card_ms > 0x80000000:
                    self.card_epoch += 1 << 32          # wrapped after 49.7 days
                elif low - card_ms > 1000:
                    self.counters["card_restarts"] += 1
                    self.card_epoch = 0
                    self.seq.reset()
        t = self.card_epoch + card_ms
        self.last_card_ms = t
        return t

    def _message(self, m, rx):
        t = self._card_time(m.card_ms)
        base = t - m.card_ms
        self.stale_sent = False
        if m.type == proto.PREEMPT:
            self.preempt_heard = rx
            for card_in, key in self.preempt_map.items():
                self.preempt_levels[key] = bool(m.preempts >> (card_in - 1) & 1)
            return
        for ped, cmap in ((False, self.channels), (True, self.ped_channels)):
            if not cmap:
                continue
            if m.type == proto.PRESENCE:
                presence = {}
                for ch in range(1, m.nch + 1):
                    site = cmap.get(ch)
                    if site is not None:
                        presence[site] = bool(m.presence >> (ch - 1) & 1)
                edges = [(et + base, cmap[ch], on) for et, ch, on in m.edges if ch in cmap]
                if presence or edges:
                    self._put(core.Report(self.source, core.PRESENCE, rx, t, ped=ped,
                                          presence=presence, edges=edges))
            elif m.type == proto.COUNTS:
                counts = {cmap[ch]: (count, occ) for ch, count, occ in m.counts if ch in cmap}
                if counts:
                    self._put(core.Report(self.source, core.COUNTS, rx, t, ped=ped, counts=counts,
                                          interval_ms=m.interval_ms))
            elif m.type == proto.STATUS:
                faults = {}
                for ch, bits in m.faults:
                    if ch in cmap:
                        dev = 0
                        for pb, cb in FAULT_TO_CORE:
                            if bits & pb:
                                dev |= cb
                        faults[cmap[ch]] = dev
                if faults:
                    self._put(core.Report(self.source, core.STATUS, rx, t, ped=ped, faults=faults))
            elif m.type == proto.HEARTBEAT:
                chans = sorted(cmap[ch] for ch in cmap if ch <= m.nch)
                if chans:
                    self._put(core.Report(self.source, core.HEARTBEAT, rx, t, ped=ped,
                                          channels=chans))
        if m.type in (proto.STATUS, proto.HEARTBEAT) and m.flags & proto.CARD_WATCHDOG_RESET:
            self.counters["card_watchdog_resets"] += 1

    def _put(self, report):
        self.counters["reports"] += 1
        self.queue.append(report)

    def reports(self):
        """Drain the reports received since the last call (oldest first)."""
        out = []
        q = self.queue
        while q:
            out.append(q.popleft())
        return out

    def preempt_inputs(self):
        """{Inputs field: {site preempt number: level}} changed since the last call (empty:
        nothing new); the fields are "preempts", "advance_warning" and "gate_down"
        (drivers.sources merges them into the step's Inputs).

        A card whose preempt frames stop for the watchdog time (it sends one
        every report period) cannot hold a preempt: its inputs read off.
        """
        heard = self.preempt_heard
        if heard is not None and self.clock() - heard > self.preempt_watchdog_ms:
            self.preempt_heard = None
            for key in self.preempt_map.values():
                self.preempt_levels[key] = False
        levels, self.preempt_levels = self.preempt_levels, {}
        out = {}
        for (field, n), lv in levels.items():
            out.setdefault(field, {})[n] = lv
        return out

    def stats(self):
        """Every counter as one flat dict (for telemetry)."""
        out = dict(self.parser.stats)
        out.update(self.counters)
        out["duplicates"] = self.seq.duplicates
        out["sequence_gaps"] = self.seq.gaps
        out["lost_frames"] = self.seq.lost
        out["connected"] = self.ser is not None
        out["last_error"] = self.last_error
        return out

    # -- the reader thread ---------------------------------------------------------

    def start(self):
        """Read in a background thread until stop()."""
        self.stopping.clear()
        self.thread = threading.Thread(target=self._run, name="detector-" + self.source,
                                       daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopping.is_set():
            try:
                if self.ser is None and not self._try_open():
                    self.stopping.wait(min(max(self.next_open - time.monotonic(), 0.005), 0.1))
                    continue
                self.poll(self.read_timeout_s)
            except Exception as e:       # never let the reader die
                self.counters["driver_errors"] += 1
                self.last_error = "reader: %r" % (e,)
                self.stopping.wait(0.05)

    def stop(self):
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=2.0)
            self.thread = None
        if self.ser is not None:
            try:
                self.ser.close()
            except Exception:
                pass
            self.ser = None
