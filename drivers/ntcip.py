"""NTCIP 1202 detector units over SNMP v1/v2c/v3: polled objects in, core Reports out.

    unit = NtcipDetectorPoller(config=parse_ntcip(spec), log=runlog)
    unit.start()                        # its own thread and asyncio loop
    inputs.reports = unit.reports()     # each control step: drain the queue
    telemetry["ntcip"] = unit.stats()   # counters, per-object errors, discovery, SETs

At connect the poller reads what the unit says it has (maxVehicleDetectors,
the status-group count, the volume/occupancy period, the pedestrian objects,
sysDescr) and logs one line per problem with the configured mapping; then it
applies the SETs the operator asked for (diagnostic thresholds, volume
period), reads them back and reports them. Every `period_s` it GETs the
status groups (presence) and the volume/occupancy sequence; every `slow_s`
the detectors' alarms; when the sequence moves on, volume and occupancy of
the period just closed. A poll is stamped with the local monotonic ms at
which its response arrived and carries the midpoint of request and response
as its sample time.

A timeout or transport error makes every mapped detector STALE (once per
outage); the core's watchdog turns a lasting silence into a fault. An object
the unit does not have (noSuchObject / noSuchInstance / endOfMibView, or
noSuchName in SNMPv1, where the request is split around it and sent again),
a value of the wrong type or out of its range is counted per object: for
presence it makes the detectors it covers STALE; alarms, reported alarms,
volume, occupancy and the pedestrian alarms are optional, so their absence
costs only their own data. Discovery and SETs: drivers/ntcip_discovery.py.
"""

import asyncio
import collections
import threading
import time

from edge_agent import detectors as core
from edge_agent.diagnostics import (DEV_OTHER, DEV_WATCHDOG, DEV_OPEN, DEV_SHORTED, DEV_CHANGE,
                                    ALARM_SHIFT)
from drivers.ntcip_config import parse_ntcip
from drivers.ntcip_discovery import Discovery
from drivers.ntcip_objects import *          # noqa: F401,F403 (OIDs, re-exported for callers)
from drivers.ntcip_objects import (
    VOLUME_OCCUPANCY_SEQUENCE, VOLUME_OCCUPANCY_PERIOD, COL_ALARMS, COL_REPORTED_ALARMS, COL_GROUP_ACTIVE, COL_VOLUME,
    COL_OCCUPANCY, COL_PED_ALARMS, vehicle_detector, status_group, volume_occupancy, ped_detector,
    ped_status_group, name_of, dotted)
from drivers.ntcip_session import SnmpSession, Response, classify, ABSENT, WRONG_TYPE

# detectorOccupancy: 0-200 in 0.5 % steps, 210-217 fault codes.
OCCUPANCY_FAULTS = {210: DEV_OTHER | (0x02 << ALARM_SHIFT),     # max presence
                    211: DEV_OTHER | (0x01 << ALARM_SHIFT),     # no activity
                    212: DEV_OPEN, 213: DEV_SHORTED, 214: DEV_CHANGE,
                    216: DEV_WATCHDOG, 217: DEV_CHANGE | (0x04 << ALARM_SHIFT)}

OUTAGE_POLLS = 3        # failed polls in a row after which the unit is discovered again
SUMMARY_S = 60.0        # the run log gets the per-object error counts of each such window
RTT_SAMPLES = 4096      # round trips kept for stats and the bench


def monotonic_ms():
    return time.monotonic_ns() // 1_000_000


class NtcipDetectorPoller(Discovery):
    """Polls one NTCIP 1202 unit's detector objects on a thread of its own."""

    session_class = SnmpSession
    summary_s = SUMMARY_S

    def __init__(self, host=None, port=161, clock=monotonic_ms, log=None, config=None, **options):
        if config is None:
            config = parse_ntcip(dict(options, host=host, port=port))
        self.cfg = c = config
        self.host, self.port, self.source = c.host, c.port, c.source
        self.detectors = dict(c.detectors)          # device detector -> site vehicle channel
        self.ped_detectors = dict(c.ped_detectors)  # device (ped) detector -> site ped channel
        self.period_s, self.slow_s, self.timeout_s = c.period_s, c.slow_s, c.timeout_s
        self.clock = clock
        self.log = log or (lambda level, msg, **fields: None)
        self.queue = collections.deque()
        self.counters = {"polls": 0, "responses": 0, "timeouts": 0, "errors": 0,
                         "error_status": 0, "absent": 0, "wrong_type": 0, "bad_value": 0,
                         "v1_splits": 0, "volume_reports": 0, "reports": 0, "stale_reports": 0,
                         "driver_errors": 0, "discoveries": 0}
        self.objects = {}          # object name -> {"oid", "absent", "wrong_type", "bad_value", ...}
        self.last_error = None
        self.rtt = collections.deque(maxlen=RTT_SAMPLES)
        self.waited = collections.deque(maxlen=RTT_SAMPLES)   # ms from send to each timeout
        self.device = {}           # what discovery found
        self.problems = []         # one sentence per problem found at discovery
        self.applied = {}          # SET key -> {"asked", "read_back", "result"}
        self.skip = set()          # OIDs the unit does not have: not asked again until rediscovery
        self.ped_mode = "vehicle"  # where pedestrian detectors are read: "pedestrian" objects or "vehicle"
        self.volume = True         # the unit reports volume/occupancy
        self.stale = set()         # (ped, channel) reported stale and not fed since
        self.vo_sequence = None
        self.vo_seen_ms = None     # sample time of the last poll that read the sequence
        self.next_slow = 0.0
        self.connected = False
        self.failed_polls = 0
        self.logged_objects = {}   # per-object counts at the last summary
        self.session = None
        self.thread = None
        self.loop = None
        self.stopping = threading.Event()

    # -- public ------------------------------------------------------------------

    def start(self):
        self.stopping.clear()
        self.thread = threading.Thread(target=self._thread, name="ntcip-" + self.source,
                                       daemon=True)
        self.thread.start()

    def stop(self):
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=3.0 + self.timeout_s * (1 + self.cfg.retries))
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
        out["objects"] = {k: dict(v) for k, v in list(self.objects.items())}
        out["device"] = dict(self.device)
        out["problems"] = list(self.problems)
        out["set"] = {k: dict(v) for k, v in list(self.applied.items())}
        rtt = sorted(self.rtt)
        out["rtt_ms"] = ({"n": len(rtt), "p50": rtt[len(rtt) // 2],
                          "p99": rtt[min(len(rtt) - 1, len(rtt) * 99 // 100)], "max": rtt[-1]}
                         if rtt else None)
        waited = sorted(self.waited)
        out["timeout_after_ms"] = ({"min": waited[0], "p50": waited[len(waited) // 2],
                                    "max": waited[-1]} if waited else None)
        return out

    # -- the poller thread --------------------------------------------------------

    def _thread(self):
        loop = asyncio.new_event_loop()
        self.loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._run())
        finally:
            try:
                if self.session is not None:
                    self.session.close()
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            except Exception:
                pass
            loop.close()

    async def _run(self):
        while not self.stopping.is_set():
            self.session = self.session_class(self.cfg, self.clock)
            try:
                await self.session.open()       # resolves the host name: may fail
                break
            except Exception as e:
                self.counters["driver_errors"] += 1
                self.last_error = "open: %r" % (e,)
                self.log("error", "ntcip unit cannot be opened", source=self.source, error=repr(e))
                self._stale_all()
                await asyncio.sleep(max(1.0, self.period_s))
        if self.cfg.version != "v3":
            self.log("warning", "ntcip unit uses SNMP %s: its community string travels in clear "
                     "text (prefer v3 with SHA-2 and AES)" % self.cfg.version, source=self.source)
        nxt = time.monotonic()
        next_summary = nxt + self.summary_s
        while not self.stopping.is_set():
            if time.monotonic() >= next_summary:
                next_summary += self.summary_s
                self._summary()
            try:
                if not self.connected:
                    await self.connect()
                if self.connected:
                    await self.poll_once()
            except Exception as e:       # never let the poller die
                self.counters["driver_errors"] += 1
                self.last_error = "poll: %r" % (e,)
                self.log("error", "ntcip poller error", source=self.source, error=repr(e))
            nxt += self.period_s
            delay = nxt - time.monotonic()
            if delay < 0:
                nxt = time.monotonic()   # overran: keep the period, skip the missed polls
                delay = 0
            await asyncio.sleep(delay)

    # -- requests --------------------------------------------------------------------

    async def _get(self, oids):
        """GET oids (those known absent left out); a Response whose values hold what came
        back, or None when the unit did not answer (counted, all detectors STALE)."""
        oids = [o for o in oids if o not in self.skip]
        if not oids:                     # nothing the unit has is left to ask
            now = self.clock()
            return Response(now, now)
        while True:
            self.counters["polls"] += 1
            r = await self.session.get(oids)
            if r.error is None:
                self._answered(r)
                return r
            if r.error == "timeout" or r.error.startswith("transport"):
                self.counters["timeouts" if r.error == "timeout" else "errors"] += 1
                if r.error == "timeout":
                    self.waited.append(r.rx - r.sent)
                self.last_error = r.error
                self._silent()
                return None
            self._answered(r)
            bad = oids[r.index - 1] if 1 <= r.index <= len(oids) else None
            if r.error == "noSuchName" and bad is not None:
                # SNMPv1 (RFC 1157 4.1.2): one missing object fails the whole request.
                # Count it, never ask for it again, and send the rest.
                self.counters["v1_splits"] += 1
                self._object(bad, ABSENT, "noSuchName")
                self.skip.add(bad)
                oids = [o for o in oids if o != bad]
                if oids:
                    continue
                return r
            self.counters["error_status"] += 1
            self.last_error = "%s at %s" % (r.error, name_of(bad) if bad else r.index)
            if bad is not None:
                self._object(bad, "error_status", r.error)
            return None

    def _summary(self):
        """One run-log line with each object's new problems since the last one (if any)."""
        new = {}
        for name, rec in list(self.objects.items()):
            old = self.logged_objects.get(name, {})
            d = {k: rec[k] - old.get(k, 0) for k in ("absent", "wrong_type", "bad_value",
                                                     "error_status") if rec[k] > old.get(k, 0)}
            if d:
                new[name] = dict(d, oid=rec["oid"])
            self.logged_objects[name] = dict(rec)
        if new:
            self.log("warning", "ntcip object errors", source=self.source,
                     window_s=self.summary_s, objects=new)

    def _answered(self, r):
        self.counters["responses"] += 1
        self.rtt.append(r.rx - r.sent)
        self.failed_polls = 0

    def _silent(self):
        self.failed_polls += 1
        if self.failed_polls >= OUTAGE_POLLS and self.connected:
            self.connected = False       # discover the unit again when it answers (it may have restarted)
            self.log("warning", "ntcip unit not answering", source=self.source,
                     timeouts=self.counters["timeouts"], error=self.last_error)

    def _object(self, oid, kind, detail):
        """Count one problem with one object; the first of each kind is logged."""
        name = name_of(oid)
        rec = self.objects.get(name)
        if rec is None:
            rec = self.objects[name] = {"oid": dotted(oid), "absent": 0, "wrong_type": 0,
                                        "bad_value": 0, "error_status": 0}
        if kind in (ABSENT, WRONG_TYPE, "bad_value"):
            self.counters[kind] += 1
        rec[kind] += 1
        rec["last"] = detail
        self.last_error = "%s: %s" % (name, detail)
        if rec[kind] == 1:
            self.log("warning", "ntcip object %s" % kind.replace("_", " "), source=self.source,
                     object=name, oid=dotted(oid), detail=detail)

    def _integer(self, values, oid, lo, hi, optional=False):
        """The integer value of oid within lo..hi, or None (counted per object) if absent,
        mistyped or out of range. An optional object left out of the request is None, uncounted."""
        if oid in self.skip:
            return None
        kind, v = classify(values.get(oid))
        if kind == ABSENT:
            self._object(oid, ABSENT, type(values.get(oid)).__name__ if oid in values
                         else "not in the response")
            if optional:
                self.skip.add(oid)
            return None
        if kind == WRONG_TYPE:
            self._object(oid, WRONG_TYPE, "%s, not an INTEGER" % v)
            return None
        if not lo <= v <= hi:
            self._object(oid, "bad_value", "%d is outside %d..%d" % (v, lo, hi))
            return None
        return v

    # -- one poll ------------------------------------------------------------------------

    def _groups(self, dets):
        return sorted({(d - 1) // 8 + 1 for d in dets})

    async def poll_once(self):
        """One poll: presence and the volume sequence every time, alarms every slow_s."""
        ped_objects = self.ped_mode == "pedestrian"
        vdets = sorted(set(self.detectors) | (set() if ped_objects else set(self.ped_detectors)))
        pdets = sorted(self.ped_detectors) if ped_objects else []
        vgroups, pgroups = self._groups(vdets), self._groups(pdets)
        oids = [status_group(COL_GROUP_ACTIVE, g) for g in vgroups]
        oids += [ped_status_group(COL_GROUP_ACTIVE, g) for g in pgroups]
        if self.volume:
            oids.append(VOLUME_OCCUPANCY_SEQUENCE)
        slow = time.monotonic() >= self.next_slow
        if slow:
            self.next_slow = time.monotonic() + self.slow_s
            for d in vdets:
                oids.append(vehicle_detector(COL_ALARMS, d))
                oids.append(vehicle_detector(COL_REPORTED_ALARMS, d))
            for d in pdets:
                oids.append(ped_detector(COL_PED_ALARMS, d))
            if self.volume:
                oids.append(VOLUME_OCCUPANCY_PERIOD)     # someone may change it at the unit
        r = await self._get(oids)
        if r is None:
            self._stale_all()
            return
        sample, rx, values = r.sample, r.rx, r.values
        for ped, groups, oid_of, dets in ((False, vgroups, status_group, vdets),
                                          (True, pgroups, ped_status_group, pdets)):
            presence = {}
            bad = set()
            for g in groups:
                v = self._integer(values, oid_of(COL_GROUP_ACTIVE, g), 0, 255)
                for d in range(8 * g - 7, 8 * g + 1):
                    if v is None:
                        bad.add(d)
                    else:
                        presence[d] = bool(v >> (d - 8 * g + 7) & 1)
            if ped:
                self._emit_ped(core.PRESENCE, rx, sample, presence, bad)
            else:
                self._emit(core.PRESENCE, rx, sample, presence, bad)
        if slow:
            self._alarms(values, vdets, pdets, rx, sample)
            if VOLUME_OCCUPANCY_PERIOD in values:
                period = self._integer(values, VOLUME_OCCUPANCY_PERIOD, 0, 255)
                if period is not None:
                    self.device["volume_period_s"] = period
        if self.volume:
            await self._volume(values, vdets, sample)

    def _alarms(self, values, vdets, pdets, rx, sample):
        """STATUS reports: reported alarms in the low byte, alarms in the next. Both objects are
        optional: a detector whose unit has neither simply gets no STATUS report."""
        faults = {}
        for d in vdets:
            a = self._integer(values, vehicle_detector(COL_ALARMS, d), 0, 255, optional=True)
            r = self._integer(values, vehicle_detector(COL_REPORTED_ALARMS, d), 0, 255,
                              optional=True)
            if a is not None or r is not None:
                faults[d] = ((r or 0) & 0x1F) | ((a or 0) << ALARM_SHIFT)
        self._emit(core.STATUS, rx, sample, faults, set())
        pfaults = {}
        for d in pdets:
            a = self._integer(values, ped_detector(COL_PED_ALARMS, d), 0, 255, optional=True)
            if a is not None:
                pfaults[d] = a << ALARM_SHIFT
        self._emit_ped(core.STATUS, rx, sample, pfaults, set())

    async def _volume(self, values, vdets, sample):
        """When the sequence moved on: volume and occupancy of the period that just closed.
        The period closed between the previous poll and this one; the COUNTS report carries
        this poll's sample time as the end and that uncertainty (plus one poll period, the
        granularity of polled presence) as its slack, so the core compares the counts with
        the on-edges of the same window, not of the time between two reports."""
        seq = self._integer(values, VOLUME_OCCUPANCY_SEQUENCE, 0, 255)
        prev_seen, self.vo_seen_ms = self.vo_seen_ms, sample
        if seq is None or seq == self.vo_sequence:
            return
        first = self.vo_sequence is None
        self.vo_sequence = seq
        if first or prev_seen is None:
            return                  # the period that just closed began before we listened
        oids = []
        for d in vdets:
            oids.append(volume_occupancy(COL_VOLUME, d))
            oids.append(volume_occupancy(COL_OCCUPANCY, d))
        r = await self._get(oids)
        if r is None:
            self._stale_all()
            return
        period_s = self.device.get("volume_period_s") or 0
        counts = {}
        dev_faults = {}
        for d in vdets:
            # Volume and occupancy are optional: a detector without them gets no counts
            # (counted per object) but stays fed by its presence.
            vol = self._integer(r.values, volume_occupancy(COL_VOLUME, d), 0, 254, optional=True)
            occ = self._integer(r.values, volume_occupancy(COL_OCCUPANCY, d), 0, 255,
                                optional=True)
            if vol is None or occ is None:
                continue
            if occ in OCCUPANCY_FAULTS:
                dev_faults[d] = OCCUPANCY_FAULTS[occ]
                continue
            # 0-200 in 0.5 % steps; a reserved code reaches the core as > 100 %,
            # where the plausibility check rejects it.
            counts[d] = (vol, occ * 5)
        if not period_s:
            return
        self.counters["volume_reports"] += 1
        slack = sample - prev_seen + int(self.period_s * 1000)
        self._emit(core.COUNTS, r.rx, sample, counts, set(), interval_ms=period_s * 1000,
                   slack_ms=slack)
        if dev_faults:
            self._emit(core.STATUS, r.rx, sample, dev_faults, set())

    # -- reports ------------------------------------------------------------------

    def _emit(self, kind, rx, sample, per_det, bad, interval_ms=0, slack_ms=0):
        """Reports for vehicle detectors (and, read from the vehicle objects, pedestrian ones)."""
        self._report(False, self.detectors, kind, rx, sample, per_det, bad, interval_ms, slack_ms)
        if self.ped_mode == "vehicle":
            self._report(True, self.ped_detectors, kind, rx, sample, per_det, bad, interval_ms,
                         slack_ms)

    def _emit_ped(self, kind, rx, sample, per_det, bad):
        """Reports for pedestrian detectors read from the pedestrian detector objects."""
        if self.ped_mode == "pedestrian":
            self._report(True, self.ped_detectors, kind, rx, sample, per_det, bad)

    def _report(self, ped, dmap, kind, rx, sample, per_det, bad, interval_ms=0, slack_ms=0):
        if not dmap:
            return
        data = {}
        for d, v in per_det.items():
            ch = dmap.get(d)
            if ch is not None:
                data[ch] = v
                if kind == core.PRESENCE:        # only presence ends a detector's STALE
                    self.stale.discard((ped, ch))
        if data:
            if kind == core.PRESENCE:
                r = core.Report(self.source, kind, rx, sample, ped=ped, presence=data)
            elif kind == core.COUNTS:
                r = core.Report(self.source, kind, rx, sample, ped=ped, counts=data,
                                interval_ms=interval_ms, slack_ms=slack_ms)
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
