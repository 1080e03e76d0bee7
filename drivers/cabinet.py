"""A NEMA TS2 Type 1 cabinet on Port 1 (pyserial): signal outputs out, MMU and detector BIUs in.

    cab = CabinetDriver({"port": "/dev/ttyUSB1"}, site)
    cab.start()                  # open the port; reader thread parses responses
    cab.read(now_ms, inputs)     # each step: inputs.cabinet (MMU view), detector calls
    cab.write(now_ms, outputs)   # each step: one command cycle of frames (drivers.ts2_frames)

Each control step (100 ms, the TS2 command rate of the load-switch frames)
is one command cycle: Type 0 (what the controller commands, to the MMU),
Type 10.. (outputs to each T&F BIU), Type 18 (output transfer: the BIUs
switch together), Type 1 (MMU status request), Type 20.. (detector BIU call
data requests), and once a second Type 9 (date and time). A response not in
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
from edge_agent.agent import MODE_FLASH, MODE_STARTUP_FLASH
from edge_agent.fieldcheck import CabinetReport
from edge_agent.indications import (RED, YELLOW, GREEN, FLASH_RED, FLASH_YELLOW, DONT_WALK,
                                    WALK, PED_CLEAR)

try:
    import serial
except ImportError:        # the drivers extra is not installed: only tests may get here
    serial = None

OFF = (False, False, False)


def monotonic_ms():
    return time.monotonic_ns() // 1_000_000


def _int_map(d, what):
    try:
        return {int(k): int(v) for k, v in d.items()}
    except (AttributeError, TypeError, ValueError):
        raise ValueError("cabinet.%s: must map numbers to numbers, e.g. {\"2\": 2}" % what)


class CabinetConfig:
    """The cabinet's wiring and timing, from the config's "cabinet" object.

    channels: phase -> load-switch channel (default phase p on channel p);
    ped_channels: phase -> channel of its pedestrian head (default 2, 4, 6, 8 on 9..12);
    det_channels: detector BIU channel (1..64 over BIUs 1..4) -> site detector channel;
    tf_bius, det_bius: how many of each the cabinet has; tolerance_ms: the MMU's
    field-check tolerance; link_timeout_ms: no MMU status this long = link lost;
    miss_limit: missed responses in a row that make a BIU dead.
    """

    def __init__(self, spec):
        self.port = spec.get("port")
        if not self.port:
            raise ValueError("cabinet.port: the serial device of the cabinet's Port 1 is required")
        self.baudrate = int(spec.get("baudrate", 115200))
        self.channels = _int_map(spec.get("channels", {p: p for p in range(1, 9)}), "channels")
        self.ped_channels = _int_map(spec.get("ped_channels", {2: 9, 4: 10, 6: 11, 8: 12}),
                                     "ped_channels")
        self.det_channels = _int_map(spec.get("det_channels") or {}, "det_channels")
        self.tf_bius = int(spec.get("tf_bius", 2))
        self.det_bius = int(spec.get("det_bius", 1 if self.det_channels else 0))
        self.tolerance_ms = int(spec.get("tolerance_ms", 500))
        self.link_timeout_ms = int(spec.get("link_timeout_ms", 500))
        self.miss_limit = int(spec.get("miss_limit", 3))
        used = list(self.channels.values()) + list(self.ped_channels.values())
        bad = [c for c in used if not 1 <= c <= 8 * self.tf_bius or c > ts2.CHANNELS]
        if bad:
            raise ValueError("cabinet: channel %d is outside the %d channels of %d T&F BIUs"
                             % (bad[0], min(8 * self.tf_bius, ts2.CHANNELS), self.tf_bius))
        if len(set(used)) != len(used):
            raise ValueError("cabinet: a load-switch channel is wired to two heads")
        if not 1 <= self.tf_bius <= 4 or not 0 <= self.det_bius <= 4:
            raise ValueError("cabinet: tf_bius must be 1..4 and det_bius 0..4")


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

    def __init__(self, cfg, clock=monotonic_ms):
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
        self.counters = {"cycles": 0, "timeouts": 0, "responses": 0}

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
        for k in range(cfg.det_bius):
            frames.append(ts2.encode(ts2.CALL_DATA_REQUEST + k))
            expected.add(ts2.CALL_DATA + k)
        if wall_s is not None and int(wall_s) != self.last_date_s:
            self.last_date_s = int(wall_s)
            t = time.gmtime(wall_s)
            frames.append(ts2.encode(ts2.DATE_TIME, ts2.date_time(
                t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec,
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
                          tolerance_ms=cfg.tolerance_ms)
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

    def __init__(self, spec, log=None, clock=monotonic_ms, wall_clock=time.time, opener=None):
        self.cfg = CabinetConfig(spec)
        self.clock = clock
        self.wall_clock = wall_clock
        self.log = log or (lambda level, msg, **f: None)
        self.opener = opener or self._open_serial
        self.poller = CabinetPoller(self.cfg, clock)
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
