"""A NEMA TS2 Type 1 cabinet on Port 1 (pyserial): signal outputs out, MMU and detector BIUs in.

    cab = CabinetDriver({"port": "/dev/ttyUSB1"}, site)
    cab.start()                  # open the port; reader thread parses responses
    cab.read(now_ms, inputs)     # each step: inputs.cabinet (MMU view), detector calls
    cab.write(now_ms, outputs)   # each step: one command cycle of frames (drivers.ts2_frames)

Each control step (100 ms, the TS2 command rate of the load-switch frames)
is one command cycle: Type 0 (what the controller commands, to the MMU),
Type 10.. (outputs to each T&F BIU), Type 18 (output transfer: the BIUs
switch together), Type 1 (MMU status request), Type 20.. (detector BIU call
data requests), once a second Type 9 (date and time), and every 10 s Type 3
(read back the MMU's programming, compared with the site in the core). A response not in
by the next cycle is a timeout; `miss_limit` timeouts in a row mark the
station dead. The reader thread stamps and parses every byte; garbage, bad
FCS and wrong lengths are counted by the frame parser, never raised.

No control decision is made here: the MMU's view (`CabinetReport`, by phase,
through the cabinet's channel wiring) goes to the core, whose field check
decides about flash (edge_agent/fieldcheck.py). See docs/cabinet.md.
"""

import threading
import time

from drivers import ts2_frames as ts2
from drivers.localtime import local_datetime, site_zone
from edge_agent.agent import MODE_FLASH, MODE_STARTUP_FLASH
from edge_agent.fieldcheck import CabinetReport
from edge_agent.indications import (RED, YELLOW, GREEN, FLASH_RED, FLASH_YELLOW, DONT_WALK,
                                    WALK, PED_CLEAR)

try:
    import serial
except ImportError:        # the drivers extra is not installed: only tests may get here
    serial = None

PROGRAM_PERIOD_MS = 10_000       # how often the MMU's programming is read back


def monotonic_ms():
    return time.monotonic_ns() // 1_000_000


KNOWN_KEYS = ("port", "baudrate", "channels", "ped_channels", "det_channels", "tf_bius",
              "det_bius", "tolerance_ms", "link_timeout_ms", "miss_limit")


class CabinetConfig:
    """The cabinet's wiring and timing, from the config's "cabinet" object.

    channels: phase -> load-switch channel (default phase p on channel p, 1..8);
    ped_channels: phase -> channel of its pedestrian head (default 2, 4, 6, 8 on 9..12);
    det_channels: detector BIU channel (1..64 over BIUs 1..4) -> site detector channel;
    tf_bius, det_bius: how many of each the cabinet has; tolerance_ms: the MMU's
    field-check tolerance; link_timeout_ms: no MMU status this long = link lost;
    miss_limit: missed responses in a row that make a BIU dead.
    With the site given, every site phase must have its head wired and no
    wiring may name a phase or detector the site does not have. Every problem
    is reported at once (ValueError, one per line).
    """

    def __init__(self, spec, site=None):
        errors = []
        if not isinstance(spec, dict):
            raise ValueError("cabinet: must be an object (docs/cabinet.md)")
        for k in sorted(set(spec) - set(KNOWN_KEYS)):
            errors.append("cabinet.%s: unknown key (known: %s)" % (k, ", ".join(KNOWN_KEYS)))
        # The Type 9 date/time broadcast is in the site's local time.
        self.zone = site_zone(getattr(site, "time_zone", None) or "UTC")
        self.port = spec.get("port")
        if not isinstance(self.port, str) or not self.port:
            errors.append("cabinet.port: the serial device of the cabinet's Port 1 is required "
                          "(--cabinet PORT or \"port\")")

        def number(key, default, lo, hi):
            v = spec.get(key, default)
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                errors.append("cabinet.%s: %r is not a whole number %d..%d" % (key, v, lo, hi))
                return default
            return v

        def mapping(key, default, lo, hi, what):
            d = spec.get(key, default)
            out = {}
            if not isinstance(d, dict):
                errors.append("cabinet.%s: must map %s, e.g. {\"2\": 2}" % (key, what))
                return out
            for k, v in d.items():
                try:
                    a, b = int(k), int(v)
                except (TypeError, ValueError):
                    errors.append("cabinet.%s[%r]: %r is not a number" % (key, k, v))
                    continue
                if not 1 <= a <= 64 or not lo <= b <= hi:
                    errors.append("cabinet.%s[%r]: %r is out of range %d..%d" % (key, k, v, lo, hi))
                    continue
                out[a] = b
            return out

        self.baudrate = number("baudrate", 115200, 50, 4_000_000)
        self.tf_bius = number("tf_bius", 2, 1, 4)
        nch = min(8 * self.tf_bius, ts2.CHANNELS)
        self.channels = mapping("channels", {p: p for p in range(1, 9)}, 1, nch,
                                "phase to load-switch channel 1..%d" % nch)
        self.ped_channels = mapping("ped_channels", {2: 9, 4: 10, 6: 11, 8: 12}, 1, nch,
                                    "phase to load-switch channel 1..%d" % nch)
        self.det_channels = mapping("det_channels", {}, 1, 64,
                                    "detector BIU channel to site detector channel")
        self.det_bius = number("det_bius", 1 if self.det_channels else 0, 0, 4)
        self.tolerance_ms = number("tolerance_ms", 500, 100, 10_000)
        self.link_timeout_ms = number("link_timeout_ms", 500, 200, 10_000)
        self.miss_limit = number("miss_limit", 3, 1, 100)
        seen = {}
        for key, m in (("channels", self.channels), ("ped_channels", self.ped_channels)):
            for p, ch in sorted(m.items()):
                if ch in seen:
                    errors.append("cabinet.%s[%d]: channel %d already drives %s"
                                  % (key, p, ch, seen[ch]))
                seen[ch] = "%s[%d]" % (key, p)
        for biu_ch in sorted(self.det_channels):
            if biu_ch > 16 * self.det_bius:
                errors.append("cabinet.det_channels[%d]: beyond the %d channels of %d detector "
                              "BIUs" % (biu_ch, 16 * self.det_bius, self.det_bius))
        if site is not None:
            phases = set(site.phases)
            for p in sorted(phases - set(self.channels)):
                errors.append("cabinet.channels: site phase %d has no load-switch channel" % p)
            for p in sorted(set(self.channels) - phases):
                errors.append("cabinet.channels[%d]: the site has no phase %d" % (p, p))
            peds = {p for p in phases if site.has_ped[p]}
            for p in sorted(peds - set(self.ped_channels)):
                errors.append("cabinet.ped_channels: site phase %d has a pedestrian head "
                              "but no channel" % p)
            for p in sorted(set(self.ped_channels) - peds):
                errors.append("cabinet.ped_channels[%d]: the site has no pedestrian phase %d"
                              % (p, p))
            dets = {d.channel for d in site.detectors}
            for biu_ch, ch in sorted(self.det_channels.items()):
                if ch not in dets:
                    errors.append("cabinet.det_channels[%d]: the site has no detector %d"
                                  % (biu_ch, ch))
        if errors:
            raise ValueError("\n  ".join(errors))
        self.watched = 0
        for p in self.channels:
            self.watched |= 1 << p
        self.watched_ped = 0
        for p in self.ped_channels:
            self.watched_ped |= 1 << p


def channel_drive(out, cfg, now):
    """{channel: (red, yellow, green)} of one step's outputs; flashing at 1 Hz, 50 % duty."""
    lit = now % 1000 < 500
    drive = {}
    for p, ch in cfg.channels.items():
        v = out.vehicle[p]
        drive[ch] = ((v == RED or (v == FLASH_RED and lit)), (v == YELLOW or (v == FLASH_YELLOW and lit)),
                     v == GREEN)
    for p, ch in cfg.ped_channels.items():
        v = out.ped[p]
        drive[ch] = (v == DONT_WALK or (v == PED_CLEAR and lit), False, v == WALK)
    return drive


class CabinetPoller:
    """The command cycle and the response bookkeeping, without I/O (the driver's mechanism)."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.parser = ts2.FrameParser()
        self.started = None
        self.status = None            # last MmuStatus
        self.status_ms = None
        self.calls = {}               # detector BIU number -> (calls, changed)
        self.expected = set()         # response types due from the last cycle
        self.received = set()
        self.misses = {}              # response type -> missed in a row
        self.last_date_s = None
        self.program = None           # channel pairs the MMU is programmed to permit
        self.next_program = None      # monotonic ms of the next programming read-back
        self.counters = {"cycles": 0, "timeouts": 0, "responses": 0, "program_reads": 0}

    def cycle(self, now, out, wall_s=None):
        """The bytes of one command cycle for `out` (agent Outputs) at `now`."""
        cfg = self.cfg
        if self.started is None:
            self.started = now
        for t in self.expected:
            if t in self.received:
                self.misses[t] = 0
            else:
                self.misses[t] = self.misses.get(t, 0) + 1
                self.counters["timeouts"] += 1
        self.received = set()
        self.counters["cycles"] += 1
        drive = channel_drive(out, cfg, now)
        flash = out.mode in (MODE_FLASH, MODE_STARTUP_FLASH)
        frames = [ts2.encode(ts2.LOAD_SWITCH_DRIVERS, ts2.load_switch_drivers(drive, flash))]
        expected = {ts2.LOAD_SWITCH_ACK, ts2.MMU_STATUS}
        for k in range(cfg.tf_bius):
            frames.append(ts2.encode(ts2.TF_OUTPUTS + k, ts2.tf_outputs(drive, k + 1)))
            expected.add(ts2.TF_INPUTS + k)
        frames.append(ts2.encode(ts2.OUTPUT_TRANSFER))
        frames.append(ts2.encode(ts2.MMU_STATUS_REQUEST))
        if self.program is None or now >= self.next_program:
            # Asked every cycle until it answers, then every 10 s: the compatibility
            # card can be swapped in the field. (Its answer is not a liveness check:
            # the MMU's status frames are.)
            self.next_program = now + PROGRAM_PERIOD_MS
            frames.append(ts2.encode(ts2.MMU_PROGRAM_REQUEST))
        for k in range(cfg.det_bius):
            frames.append(ts2.encode(ts2.CALL_DATA_REQUEST + k))
            expected.add(ts2.CALL_DATA + k)
        if wall_s is not None and int(wall_s) != self.last_date_s:
            self.last_date_s = int(wall_s)
            t = local_datetime(cfg.zone, int(wall_s * 1000))
            frames.append(ts2.encode(ts2.DATE_TIME, ts2.date_time(
                t.year, t.month, t.day, t.hour, t.minute, t.second,
                int(wall_s * 10) % 10, (1 << cfg.tf_bius) - 1, (1 << cfg.det_bius) - 1)))
        self.expected = expected
        return b"".join(frames)

    def feed(self, data, rx_ms):
        """Bytes from the port that arrived at rx_ms."""
        for f in self.parser.feed(data):
            self.counters["responses"] += 1
            self.received.add(f.type)
            if f.type == ts2.MMU_STATUS:
                self.status = ts2.parse_mmu_status(f.data)
                self.status_ms = rx_ms
            elif f.type == ts2.MMU_PROGRAM:
                self.program = ts2.parse_mmu_program(f.data)[0]
                self.counters["program_reads"] += 1
            elif ts2.CALL_DATA <= f.type < ts2.CALL_DATA + 4:
                self.calls[f.type - ts2.CALL_DATA + 1] = ts2.parse_call_data(f.data)

    def dead_stations(self):
        """Names of the stations that missed `miss_limit` responses in a row."""
        worst = {}                    # the MMU answers two frame types: name it once
        for t, n in sorted(self.misses.items()):
            if n >= self.cfg.miss_limit:
                worst[_station(t)] = max(n, worst.get(_station(t), 0))
        return ["%s (%d responses missed)" % (name, n) for name, n in sorted(worst.items())]

    def report(self, now):
        """The CabinetReport for the core at `now`."""
        cfg = self.cfg
        r = CabinetReport(self.status_ms if self.status_ms is not None else now,
                          tolerance_ms=cfg.tolerance_ms, watched=cfg.watched,
                          watched_ped=cfg.watched_ped)
        since = self.status_ms if self.status_ms is not None else self.started
        if since is not None and now - since > cfg.link_timeout_ms:
            r.link_ok = False
            r.link_detail = ("no MMU status for %d ms" % (now - since) if self.status_ms is not None
                             else "no MMU status since start-up (%d ms)" % (now - since))
        else:
            dead = self.dead_stations()
            if dead:
                r.link_ok = False
                r.link_detail = ", ".join(dead)
        st = self.status
        if st is None:
            # Nothing heard yet: within the start-up grace there is nothing to compare.
            return None if r.link_ok else r
        faults = st.faults()
        if faults:
            r.mmu_fault = ", ".join(faults)
        for p, ch in cfg.channels.items():
            b = 1 << (ch - 1)
            if st.red & b:
                r.red |= 1 << p
            if st.yellow & b:
                r.yellow |= 1 << p
            if st.green & b:
                r.green |= 1 << p
        if self.program is not None:
            phase_of = {ch: p for p, ch in cfg.channels.items()}
            permits = [0] * 17
            for a, b in self.program:
                p, q = phase_of.get(a), phase_of.get(b)
                if p is not None and q is not None:
                    permits[p] |= 1 << q
                    permits[q] |= 1 << p
            r.mmu_permits = permits
        for p, ch in cfg.ped_channels.items():
            b = 1 << (ch - 1)
            if st.green & b:
                r.walk |= 1 << p
            if st.red & b:
                r.dont_walk |= 1 << p
        return r

    def detector_calls(self):
        """({site channel: call}, {site channel: new calls}) from the detector BIUs' last frames."""
        presence, pulses = {}, {}
        for biu, (calls, changed) in self.calls.items():
            for i in range(16):
                site = self.cfg.det_channels.get(16 * (biu - 1) + i + 1)
                if site is None:
                    continue
                on = bool(calls >> i & 1)
                presence[site] = on
                if on and changed >> i & 1:
                    pulses[site] = 1
        return presence, pulses


def _station(ftype):
    if ftype in (ts2.MMU_STATUS, ts2.LOAD_SWITCH_ACK):
        return "MMU"
    if ts2.TF_INPUTS <= ftype < ts2.TF_INPUTS + 4:
        return "T&F BIU %d" % (ftype - ts2.TF_INPUTS + 1)
    return "detector BIU %d" % (ftype - ts2.CALL_DATA + 1)


class CabinetDriver:
    """The cabinet on a serial port: a runtime source (`read`) and output (`write`)."""

    name = "cabinet"

    def __init__(self, spec, site=None, log=None, clock=monotonic_ms, wall_clock=time.time,
                 opener=None):
        self.cfg = CabinetConfig(spec, site)
        self.clock = clock
        self.wall_clock = wall_clock
        self.log = log or (lambda level, msg, **f: None)
        self.opener = opener or self._open_serial
        self.poller = CabinetPoller(self.cfg)
        self.lock = threading.Lock()
        self.ser = None
        self.thread = None
        self.stopping = threading.Event()
        self.counters = {"port_lost": 0, "open_failures": 0, "write_errors": 0,
                         "driver_errors": 0}
        self.last_error = None
        self.link_was_ok = True

    def _open_serial(self):
        if serial is None:
            raise OSError("pyserial is not installed (pip install 'edge-agent[drivers]')")
        return serial.Serial(self.cfg.port, self.cfg.baudrate, timeout=0.02)

    def start(self):
        self._try_open()
        self.stopping.clear()
        self.thread = threading.Thread(target=self._run, name="cabinet", daemon=True)
        self.thread.start()

    def _try_open(self):
        try:
            self.ser = self.opener()
            self.poller.parser.reset()
            return True
        except Exception as e:
            self.counters["open_failures"] += 1
            self.last_error = "open %s: %s" % (self.cfg.port, e)
            return False

    def _run(self):
        while not self.stopping.is_set():
            ser = self.ser
            if ser is None:
                if not self._try_open():
                    self.stopping.wait(0.2)
                continue
            try:
                data = ser.read(max(1, ser.in_waiting))
            except Exception as e:           # the adapter is gone: reopen
                self.counters["port_lost"] += 1
                self.last_error = "read %s: %s" % (self.cfg.port, e)
                self._close()
                continue
            if data:
                try:
                    with self.lock:
                        self.poller.feed(data, self.clock())
                except Exception as e:       # a driver bug must not stop the reader
                    self.counters["driver_errors"] += 1
                    self.last_error = "parse: %r" % (e,)

    def _close(self):
        ser, self.ser = self.ser, None
        if ser is not None:
            try:
                ser.close()
            except Exception:
                pass

    def stop(self):
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=2.0)
            self.thread = None
        self._close()

    def read(self, now, inputs):
        with self.lock:
            report = self.poller.report(now)
            presence, pulses = self.poller.detector_calls()
        inputs.cabinet = report
        if report is not None:
            if report.link_ok != self.link_was_ok:
                self.link_was_ok = report.link_ok
                if report.link_ok:
                    self.log("info", "cabinet link restored")
                else:
                    self.log("warning", "cabinet link lost: the MMU flashes the intersection",
                             detail=report.link_detail)
        if presence:
            inputs.detectors = dict(inputs.detectors or {})
            inputs.detectors.update(presence)
        if pulses:
            inputs.pulses = dict(inputs.pulses or {})
            inputs.pulses.update(pulses)

    def write(self, now, out):
        with self.lock:
            data = self.poller.cycle(now, out, self.wall_clock())
        ser = self.ser
        if ser is None:
            return
        try:
            ser.write(data)
        except Exception as e:
            self.counters["write_errors"] += 1
            self.last_error = "write %s: %s" % (self.cfg.port, e)
            self._close()

    def stats(self):
        with self.lock:
            out = dict(self.poller.parser.stats)
            out.update(self.poller.counters)
            out["dead"] = self.poller.dead_stations()
        out.update(self.counters)
        out["connected"] = self.ser is not None
        out["last_error"] = self.last_error
        return out
