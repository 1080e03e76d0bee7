"""NTCIP 1202 detector units over SNMP v1/v2c (pysnmp): polled objects in, core Reports out.

    unit = NtcipDetectorPoller("10.0.0.5", port=161, community="public",
                               detectors={1: 1, 2: 2}, period_s=0.1)
    unit.start()                        # its own thread and asyncio loop
    inputs.reports = unit.reports()     # each control step: drain the queue
    telemetry["ntcip"] = unit.stats()

Every poll GETs the vehicle detector status groups (presence, 8 detectors
per group); every `slow_s` it also GETs each detector's alarms and reported
alarms and, when the device's volume/occupancy sequence has moved on, the
volume and occupancy of the period just closed. A poll is stamped with the
local monotonic ms at which its response arrived, and carries the midpoint
of request and response as its sample time.

A timeout, an SNMP error, a value of the wrong type or out of its range is
counted; the detectors it concerns are reported STALE (once per outage) and
get no data from that poll, so the core's watchdog turns a lasting silence
into a detector fault. Nothing here blocks the control loop: the poller
runs on its own thread and hands reports over through a queue.
"""

import asyncio
import collections
import threading
import time

from edge_agent import detectors as core
from edge_agent.diagnostics import (DEV_OTHER, DEV_WATCHDOG, DEV_OPEN, DEV_SHORTED, DEV_CHANGE,
                                    ALARM_SHIFT)

# NTCIP 1202 object identifiers (docs/protocols/ntcip.md).
ASC = (1, 3, 6, 1, 4, 1, 1206, 4, 2, 1)
DETECTOR = ASC + (2,)
MAX_VEHICLE_DETECTORS = DETECTOR + (1, 0)
VEHICLE_DETECTOR_TABLE = DETECTOR + (2, 1)          # .<column>.<detector>
COL_NO_ACTIVITY, COL_MAX_PRESENCE, COL_ERRATIC_COUNTS = 9, 10, 11
COL_FAIL_TIME, COL_ALARMS, COL_REPORTED_ALARMS, COL_RESET = 12, 13, 14, 15
MAX_STATUS_GROUPS = DETECTOR + (3, 0)
STATUS_GROUP_TABLE = DETECTOR + (4, 1)              # .<column>.<group>
COL_GROUP_NUMBER, COL_GROUP_ACTIVE, COL_GROUP_ALARMS = 1, 2, 3
VOLUME_OCCUPANCY_SEQUENCE = DETECTOR + (5, 1, 0)
VOLUME_OCCUPANCY_PERIOD = DETECTOR + (5, 2, 0)      # seconds
ACTIVE_VOLUME_OCCUPANCY_DETECTORS = DETECTOR + (5, 3, 0)
VOLUME_OCCUPANCY_TABLE = DETECTOR + (5, 4, 1)       # .<column>.<detector>
COL_VOLUME, COL_OCCUPANCY = 1, 2

# detectorOccupancy: 0-200 in 0.5 % steps, 210-217 fault codes.
OCCUPANCY_FAULTS = {210: DEV_OTHER | (0x02 << ALARM_SHIFT),     # max presence
                    211: DEV_OTHER | (0x01 << ALARM_SHIFT),     # no activity
                    212: DEV_OPEN, 213: DEV_SHORTED, 214: DEV_CHANGE,
                    216: DEV_WATCHDOG, 217: DEV_CHANGE | (0x04 << ALARM_SHIFT)}


def monotonic_ms():
    return time.monotonic_ns() // 1_000_000


def vehicle_detector(column, det):
    return VEHICLE_DETECTOR_TABLE + (column, det)


def status_group(column, group):
    return STATUS_GROUP_TABLE + (column, group)


def volume_occupancy(column, det):
    return VOLUME_OCCUPANCY_TABLE + (column, det)


class NtcipDetectorPoller:
    """Polls one NTCIP 1202 unit's detector objects on a thread of its own."""

    def __init__(self, host, port=161, community="public", version="v2c", detectors=None,
                 ped_detectors=None, period_s=0.1, slow_s=1.0, timeout_s=None, source=None,
                 clock=monotonic_ms):
        if not 0.1 <= period_s <= 1.0:
            raise ValueError("period_s: %s s is outside 0.1..1.0 s" % (period_s,))
        if version not in ("v1", "v2c"):
            raise ValueError("version: %r is not v1 or v2c" % (version,))
        self.host, self.port, self.community, self.version = host, port, community, version
        # device detector number -> site vehicle / ped channel
        self.detectors = dict(detectors if detectors is not None else {d: d for d in range(1, 17)})
        self.ped_detectors = dict(ped_detectors or {})
        self.period_s, self.slow_s = period_s, slow_s
        self.timeout_s = timeout_s if timeout_s is not None else max(0.05, 0.8 * period_s)
        self.source = source or "ntcip:%s:%d" % (host, port)
        self.clock = clock
        all_dets = set(self.detectors) | set(self.ped_detectors)
        self.groups = sorted({(d - 1) // 8 + 1 for d in all_dets})
        self.queue = collections.deque()
        self.counters = {"polls": 0, "responses": 0, "timeouts": 0, "errors": 0,
                         "error_status": 0, "wrong_type": 0, "bad_value": 0,
                         "volume_reports": 0, "reports": 0, "stale_reports": 0,
                         "driver_errors": 0}
        self.last_error = None
        self.stale = set()          # (ped, channel) reported stale and not fed since
        self.vo_sequence = None
        self.next_slow = 0.0
        self.thread = None
        self.loop = None
        self.stopping = threading.Event()
        self._engine = None
        self._target = None

    # -- public ------------------------------------------------------------------

    def start(self):
        self.stopping.clear()
        self.thread = threading.Thread(target=self._thread, name="ntcip-" + self.source,
                                       daemon=True)
        self.thread.start()

    def stop(self):
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=3.0)
            self.thread = None

    def reports(self):
        """Drain the reports received since the last call (oldest first)."""
        out = []
        q = self.queue
        while q:
            out.append(q.popleft())
        return out

    def stats(self):
        out = dict(self.counters)
        out["stale_detectors"] = len(self.stale)
        out["last_error"] = self.last_error
        return out

    # -- the poller thread --------------------------------------------------------

    def _thread(self):
        loop = asyncio.new_event_loop()
        self.loop = loop
        try:
            loop.run_until_complete(self._run())
        finally:
            try:
                if self._engine is not None:
                    self._engine.close_dispatcher()
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            except Exception:
                pass
            loop.close()

    async def _run(self):
        from pysnmp.hlapi.v3arch.asyncio import SnmpEngine, CommunityData, UdpTransportTarget
        self._engine = SnmpEngine()
        self._auth = CommunityData(self.community, mpModel=0 if self.version == "v1" else 1)
        self._target = await UdpTransportTarget.create((self.host, self.port),
                                                       timeout=self.timeout_s, retries=0)
        nxt = time.monotonic()
        while not self.stopping.is_set():
            try:
                await self.poll_once()
            except Exception as e:       # never let the poller die
                self.counters["driver_errors"] += 1
                self.last_error = "poll: %r" % (e,)
            nxt += self.period_s
            delay = nxt - time.monotonic()
            if delay < 0:
                nxt = time.monotonic()   # overran: keep the period, skip the missed polls
                delay = 0
            await asyncio.sleep(delay)

    async def _get(self, oids):
        """GET a list of OIDs; returns (sample ms, rx ms, {oid: value}) or None on failure."""
        from pysnmp.hlapi.v3arch.asyncio import get_cmd, ContextData, ObjectType, ObjectIdentity
        sent = self.clock()
        self.counters["polls"] += 1
        err_ind, err_status, err_index, binds = await get_cmd(
            self._engine, self._auth, self._target, ContextData(),
            *[ObjectType(ObjectIdentity(oid)) for oid in oids], lookupMib=False)
        rx = self.clock()
        if err_ind:
            if "timeout" in str(err_ind).lower():
                self.counters["timeouts"] += 1
            else:
                self.counters["errors"] += 1
            self.last_error = str(err_ind)
            return None
        if int(err_status):
            self.counters["error_status"] += 1
            self.last_error = "%s at %s" % (err_status.prettyPrint(), err_index)
            return None
        self.counters["responses"] += 1
        values = {}
        for oid, val in binds:
            values[tuple(oid)] = val
        return (sent + rx) // 2, rx, values

    def _integer(self, values, oid, lo, hi):
        """The integer value of oid within lo..hi, or None (counted) if missing, mistyped or out of range."""
        from pyasn1.type.univ import Integer
        val = values.get(oid)
        if val is None or not isinstance(val, Integer):
            self.counters["wrong_type"] += 1
            self.last_error = "%s: not an integer (%s)" % (".".join(map(str, oid)),
                                                           type(val).__name__)
            return None
        v = int(val)
        if not lo <= v <= hi:
            self.counters["bad_value"] += 1
            self.last_error = "%s: %d is outside %d..%d" % (".".join(map(str, oid)), v, lo, hi)
            return None
        return v

    async def poll_once(self):
        """One poll: presence every time, alarms and volume/occupancy every slow_s."""
        oids = [status_group(COL_GROUP_ACTIVE, g) for g in self.groups]
        slow = time.monotonic() >= self.next_slow
        dets = sorted(set(self.detectors) | set(self.ped_detectors))
        if slow:
            self.next_slow = time.monotonic() + self.slow_s
            oids.append(VOLUME_OCCUPANCY_SEQUENCE)
            oids.append(VOLUME_OCCUPANCY_PERIOD)
            for d in dets:
                oids.append(vehicle_detector(COL_ALARMS, d))
                oids.append(vehicle_detector(COL_REPORTED_ALARMS, d))
        got = await self._get(oids)
        if got is None:
            self._stale_all()
            return
        sample, rx, values = got
        presence = {}
        bad = set()
        for g in self.groups:
            v = self._integer(values, status_group(COL_GROUP_ACTIVE, g), 0, 255)
            for d in range(8 * g - 7, 8 * g + 1):
                if v is None:
                    bad.add(d)
                else:
                    presence[d] = bool(v >> (d - 8 * g + 7) & 1)
        self._emit(core.PRESENCE, rx, sample, presence, bad)
        if not slow:
            return
        faults = {}
        for d in dets:
            a = self._integer(values, vehicle_detector(COL_ALARMS, d), 0, 255)
            r = self._integer(values, vehicle_detector(COL_REPORTED_ALARMS, d), 0, 255)
            if a is None or r is None:
                bad.add(d)
            else:
                faults[d] = (r & 0x1F) | (a << ALARM_SHIFT)
        self._emit(core.STATUS, rx, sample, faults, bad)
        seq = self._integer(values, VOLUME_OCCUPANCY_SEQUENCE, 0, 255)
        period = self._integer(values, VOLUME_OCCUPANCY_PERIOD, 1, 255)
        if seq is None or period is None or seq == self.vo_sequence:
            return
        first = self.vo_sequence is None
        self.vo_sequence = seq
        if first:
            return                  # the period that just closed began before we listened
        oids = []
        for d in dets:
            oids.append(volume_occupancy(COL_VOLUME, d))
            oids.append(volume_occupancy(COL_OCCUPANCY, d))
        got = await self._get(oids)
        if got is None:
            self._stale_all()
            return
        sample, rx, values = got
        counts = {}
        dev_faults = {}
        for d in dets:
            vol = self._integer(values, volume_occupancy(COL_VOLUME, d), 0, 254)
            occ = self._integer(values, volume_occupancy(COL_OCCUPANCY, d), 0, 255)
            if vol is None or occ is None:
                bad.add(d)
                continue
            if occ in OCCUPANCY_FAULTS:
                dev_faults[d] = OCCUPANCY_FAULTS[occ]
                continue
            # 0-200 in 0.5 % steps; a reserved code reaches the core as > 100 %,
            # where the plausibility check rejects it.
            counts[d] = (vol, occ * 5)
        self.counters["volume_reports"] += 1
        self._emit(core.COUNTS, rx, sample, counts, bad, interval_ms=period * 1000)
        if dev_faults:
            self._emit(core.STATUS, rx, sample, dev_faults, set())

    # -- reports ------------------------------------------------------------------

    def _emit(self, kind, rx, sample, per_det, bad, interval_ms=0):
        for ped, dmap in ((False, self.detectors), (True, self.ped_detectors)):
            if not dmap:
                continue
            data = {}
            for d, v in per_det.items():
                ch = dmap.get(d)
                if ch is not None:
                    data[ch] = v
                    self.stale.discard((ped, ch))
            if data:
                if kind == core.PRESENCE:
                    r = core.Report(self.source, kind, rx, sample, ped=ped, presence=data)
                elif kind == core.COUNTS:
                    r = core.Report(self.source, kind, rx, sample, ped=ped, counts=data,
                                    interval_ms=interval_ms)
                else:
                    r = core.Report(self.source, kind, rx, sample, ped=ped, faults=data)
                self._put(r)
            stale = sorted(dmap[d] for d in bad if d in dmap and (ped, dmap[d]) not in self.stale)
            if stale:
                self._stale(ped, stale, rx)

    def _stale_all(self):
        rx = self.clock()
        for ped, dmap in ((False, self.detectors), (True, self.ped_detectors)):
            chans = sorted(ch for ch in dmap.values() if (ped, ch) not in self.stale)
            if chans:
                self._stale(ped, chans, rx)

    def _stale(self, ped, chans, rx):
        for ch in chans:
            self.stale.add((ped, ch))
        self.counters["stale_reports"] += 1
        self._put(core.Report(self.source, core.STALE, rx, None, ped=ped, channels=chans))

    def _put(self, r):
        self.counters["reports"] += 1
        self.queue.append(r)
