"""Detector diagnostics with NTCIP 1202 semantics, and per-source clock mapping.

A `Diagnosis` watches one detector channel. Its conditions come from three
places: the arrival times of reports (watchdog: a channel that has been fed
by reports and falls silent longer than its limit is stale, not empty), the
conditioned presence (no activity, max presence, erratic counts: NTCIP
vehicleDetectorNoActivity / MaxPresence / ErraticCounts) and the content of
reports (counts above the physical maximum, occupancy outside 0-100 %,
presence contradicting counts, faults the device reports itself: open loop,
shorted loop, watchdog, excessive change).

Any condition latches a fault, logged once per kind with its Indiana code
(84-88; 91 for a pedestrian detector). The fault stays until every condition
has been clear for the detector's restore time; then 83 (92) is logged.

`SourceClock` maps a source's own millisecond timestamps to local monotonic
time: the offset is the smallest (arrival - source time) seen, allowed to
creep up 1 ms per second so a drifting or restarted source is followed.
"""

from edge_agent import events as ev

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

# Pedestrian detector fault / restore (Indiana enumerations 91 / 92).
PED_DETECTOR_FAILED = ev.PED_DETECTOR_FAILED
PED_DETECTOR_RESTORED = ev.PED_DETECTOR_RESTORED

# Conditions (bits of Diagnosis.cond).
C_STALE = const(0x001)          # fed by reports, none within the watchdog limit
C_NO_ACTIVITY = const(0x002)    # no on-edge within the no-activity time
C_MAX_PRESENCE = const(0x004)   # on continuously longer than max presence (stuck on)
C_ERRATIC = const(0x008)        # more on-edges in the last minute than erratic counts
C_COUNT_RATE = const(0x010)     # a counts report above erratic counts per minute
C_OVERCOUNT = const(0x020)      # counts above the physical maximum of the lanes
C_IMPLAUSIBLE = const(0x040)    # occupancy outside 0-100 %, presence contradicts counts
C_OPEN = const(0x080)           # device reports open loop
C_SHORTED = const(0x100)        # device reports shorted loop
C_DEV_WATCHDOG = const(0x200)   # device reports its own watchdog fault
C_DEV_CHANGE = const(0x400)     # device reports excessive inductance change
C_DEV_OTHER = const(0x800)      # device reports another fault or alarm

# Conditions set by the content of a report and kept until the next one says otherwise.
REPORTED = C_COUNT_RATE | C_OVERCOUNT | C_IMPLAUSIBLE | C_OPEN | C_SHORTED \
    | C_DEV_WATCHDOG | C_DEV_CHANGE | C_DEV_OTHER

# (condition, Indiana code, NTCIP alarm bit (col 13), reported-alarm bit (col 14)),
# in the order their events are logged when several start in one step.
TABLE = (
    (C_STALE, ev.DETECTOR_FAULT_WATCHDOG, 0x08, 0),
    (C_DEV_WATCHDOG, ev.DETECTOR_FAULT_WATCHDOG, 0, 0x02),
    (C_OPEN, ev.DETECTOR_FAULT_OPEN, 0, 0x04),
    (C_SHORTED, ev.DETECTOR_FAULT_SHORTED, 0, 0x08),
    (C_ERRATIC, ev.DETECTOR_FAULT_CHATTER, 0x04, 0),
    (C_COUNT_RATE, ev.DETECTOR_FAULT_CHATTER, 0x04, 0),
    (C_OVERCOUNT, ev.DETECTOR_FAULT_CHATTER, 0x04, 0),
    (C_DEV_CHANGE, ev.DETECTOR_FAULT_CHATTER, 0, 0x10),
    (C_MAX_PRESENCE, ev.DETECTOR_FAULT_OTHER, 0x02, 0),
    (C_NO_ACTIVITY, ev.DETECTOR_FAULT_OTHER, 0x01, 0),
    (C_IMPLAUSIBLE, ev.DETECTOR_FAULT_OTHER, 0x80, 0),
    (C_DEV_OTHER, ev.DETECTOR_FAULT_OTHER, 0, 0x01),
)

# Device fault bits in reports: the NTCIP reported alarms (col 14) in the low
# byte, the device's own alarms (col 13) in the next byte.
DEV_OTHER = const(0x01)
DEV_WATCHDOG = const(0x02)
DEV_OPEN = const(0x04)
DEV_SHORTED = const(0x08)
DEV_CHANGE = const(0x10)
ALARM_SHIFT = const(8)

CONDITION_NAMES = {
    C_STALE: "stale", C_NO_ACTIVITY: "no activity", C_MAX_PRESENCE: "max presence",
    C_ERRATIC: "erratic counts", C_COUNT_RATE: "counts per minute", C_OVERCOUNT: "counts above maximum",
    C_IMPLAUSIBLE: "implausible", C_OPEN: "open loop", C_SHORTED: "shorted loop",
    C_DEV_WATCHDOG: "device watchdog", C_DEV_CHANGE: "excessive change", C_DEV_OTHER: "device fault",
}

MINUTE_MS = const(60000)
CONTRADICTION_STRIKES = const(3)   # consecutive counts intervals before "implausible"
EDGE_MEMORY = const(16)            # recent on-edge times kept to check a counts window against


def device_conditions(bits):
    """Conditions for device fault bits (reported alarms | alarms << 8)."""
    cond = 0
    if bits & DEV_OTHER:
        cond |= C_DEV_OTHER
    if bits & DEV_WATCHDOG:
        cond |= C_DEV_WATCHDOG
    if bits & DEV_OPEN:
        cond |= C_OPEN
    if bits & DEV_SHORTED:
        cond |= C_SHORTED
    if bits & DEV_CHANGE:
        cond |= C_DEV_CHANGE
    alarms = bits >> ALARM_SHIFT
    if alarms & 0x04:
        cond |= C_DEV_CHANGE       # the device's own erratic-output alarm
    if alarms & 0x08:
        cond |= C_DEV_WATCHDOG     # the device lost its own sensor link
    if alarms & 0xB3:              # no activity, max presence, configuration, other
        cond |= C_DEV_OTHER
    return cond


class Diagnosis:
    """Conditions, latched faults and restoration of one detector channel."""

    __slots__ = ("channel", "ped", "no_activity", "max_presence", "erratic", "watchdog",
                 "restore", "max_per_hour", "fed", "stale_reported", "last_rx", "presence_rx",
                 "presence_reports",
                 "last_activity", "ring", "ring_i", "cond", "latched", "fault_since",
                 "clear_since", "strikes", "on_seen", "presence_fed", "last_count",
                 "edge_times", "edge_i")

    def __init__(self, det, ped, now):
        self.channel = det.channel
        self.ped = ped
        self.no_activity = det.no_activity
        self.max_presence = det.max_presence
        self.erratic = det.erratic
        self.watchdog = det.watchdog
        self.restore = det.restore
        self.max_per_hour = det.lanes * det.max_flow
        self.fed = False               # True once a report has covered the channel
        self.stale_reported = False    # the driver says it has no data for it
        self.last_rx = now             # arrival of the last report covering it
        self.presence_rx = now         # arrival of the last presence report covering it
        self.presence_reports = False  # presence comes in reports: the watchdog watches those
        self.last_activity = now
        self.ring = [None] * (det.erratic + 1) if det.erratic else None
        self.ring_i = 0
        self.cond = 0
        self.latched = 0
        self.fault_since = -1
        self.clear_since = -1
        self.strikes = 0
        self.on_seen = False           # an on-edge seen since the last counts report
        self.presence_fed = False
        self.last_count = None         # (count, occupancy permille) of the last counts report
        self.edge_times = [None] * EDGE_MEMORY   # the last on-edges (local ms), a ring
        self.edge_i = 0

    @property
    def failed(self):
        return self.latched != 0

    def last_report(self):
        """Arrival of the last report the watchdog counts from."""
        return self.presence_rx if self.presence_reports else self.last_rx

    # -- evidence ------------------------------------------------------------

    def direct(self, now):
        """Fed this step through Inputs.detectors / pulses: counts as reported."""
        self.last_rx = self.presence_rx = now
        self.presence_fed = True
        if self.fed:
            self.fed = self.presence_reports = False
            self.stale_reported = False

    def reported(self, now, presence=False):
        """A report covering this channel arrived. Once presence comes in reports,
        only presence reports keep the watchdog quiet: alarms or counts that still
        flow while the presence does not leave the controller blind all the same."""
        if presence:
            self.presence_rx = now
            self.presence_reports = True
        if self.cond & C_STALE:
            # A silence long enough to trip the watchdog was the link's fault, not the
            # road's: no-activity restarts. A STALE report alone (one lost poll) does not
            # restart it, or occasional timeouts would keep no-activity from ever firing.
            if self.last_activity < now:
                self.last_activity = now
        self.fed = True
        self.stale_reported = False
        self.last_rx = now

    def stale(self, now):
        """The driver lost the source: data stops; the watchdog runs from the last report."""
        if not self.fed:
            self.fed = True
            self.last_rx = self.presence_rx = now
        self.stale_reported = True

    def activity(self, t, n=1):
        """n on-edges at local time t."""
        if t > self.last_activity:
            self.last_activity = t
        self.on_seen = True
        self.edge_times[self.edge_i] = t
        self.edge_i = (self.edge_i + 1) % EDGE_MEMORY
        ring = self.ring
        if ring is not None:
            size = len(ring)
            for _ in range(n):
                ring[self.ring_i] = t
                self.ring_i = (self.ring_i + 1) % size

    def device(self, bits):
        """Device fault bits from a status report (0: all clear)."""
        self.cond = (self.cond & ~(C_OPEN | C_SHORTED | C_DEV_WATCHDOG | C_DEV_CHANGE | C_DEV_OTHER)) \
            | device_conditions(bits)

    def _edges_between(self, lo, hi):
        """True if an on-edge is remembered in (lo, hi]; None if the memory does not reach lo."""
        oldest = None
        for t in self.edge_times:
            if t is None:
                continue
            if lo < t <= hi:
                return True
            if oldest is None or t < oldest:
                oldest = t
        if self.edge_times[self.edge_i] is not None and oldest > lo:
            return None            # the ring is full and newer than the window: unknown
        return False

    def counts(self, count, occupancy, interval_ms, end=None, slack=0):
        """A volume/occupancy report: count of vehicles, occupancy in permille, interval,
        and (when the source says when its interval ended) that end in local ms, known to
        within `slack` ms."""
        cond = self.cond & ~(C_COUNT_RATE | C_OVERCOUNT | C_IMPLAUSIBLE)
        self.last_count = (count, occupancy)
        if interval_ms <= 0 or count < 0 or occupancy < 0 or occupancy > 1000:
            cond |= C_IMPLAUSIBLE
            self.strikes = 0
        else:
            limit = (self.max_per_hour * interval_ms + 3599999) // 3600000 + 1
            if count > limit:
                cond |= C_OVERCOUNT
            if self.erratic and count * MINUTE_MS > self.erratic * interval_ms:
                cond |= C_COUNT_RATE
            contradiction = ((count > 0 and occupancy == 0)
                             or (occupancy == 1000 and count > 1))
            if self.presence_fed and end is not None:
                # Our own on-edges of the same window against the counts: vehicles counted
                # but no on-edge that could lie in the window, or none counted though an
                # on-edge surely lies in it.
                start = end - interval_ms
                if count > 0:
                    contradiction = contradiction or self._edges_between(start - slack,
                                                                         end + slack) is False
                else:
                    contradiction = contradiction or bool(
                        self._edges_between(start + slack, end - slack))
            elif self.presence_fed:
                # No end given: the interval is the time since the last counts report.
                contradiction = contradiction or (count > 0) != self.on_seen
            self.strikes = self.strikes + 1 if contradiction else 0
            if self.strikes >= CONTRADICTION_STRIKES:
                cond |= C_IMPLAUSIBLE
        self.on_seen = False
        self.cond = cond

    # -- the step ------------------------------------------------------------

    def check(self, now, level, on_since, log):
        """Evaluate the timed conditions at `now`, latch new faults, restore cleared ones."""
        cond = self.cond & REPORTED
        if self.fed and self.watchdog and now - self.last_report() >= self.watchdog:
            cond |= C_STALE
        else:
            if self.no_activity and now - self.last_activity >= self.no_activity:
                cond |= C_NO_ACTIVITY
            if self.max_presence and level and now - on_since >= self.max_presence:
                cond |= C_MAX_PRESENCE
            ring = self.ring
            if ring is not None:
                oldest = ring[self.ring_i]
                if oldest is not None and now - oldest < MINUTE_MS:
                    cond |= C_ERRATIC
        self.cond = cond
        new = cond & ~self.latched
        if new:
            if not self.latched:
                self.fault_since = now
            # One event per fault code: a second condition with a code already
            # logged for this fault (chatter seen in presence, then in counts) adds none.
            logged = []
            for c, code, _, _ in TABLE:
                if self.latched & c:
                    logged.append(PED_DETECTOR_FAILED if self.ped else code)
            for c, code, _, _ in TABLE:
                if new & c:
                    code = PED_DETECTOR_FAILED if self.ped else code
                    if code not in logged:
                        logged.append(code)
                        log.append((now, code, self.channel))
            self.latched |= new
        if not self.latched:
            return
        if cond:
            self.clear_since = -1
            return
        if self.clear_since < 0:
            self.clear_since = now
        if now - self.clear_since >= self.restore:
            log.append((now, PED_DETECTOR_RESTORED if self.ped else ev.DETECTOR_RESTORED,
                        self.channel))
            self.latched = 0
            self.clear_since = -1
            self.fault_since = -1
            if self.last_activity < now:
                self.last_activity = now

    # -- telemetry -----------------------------------------------------------

    def alarms(self):
        """(NTCIP vehicleDetectorAlarms, vehicleDetectorReportedAlarms) of the active conditions."""
        a = r = 0
        cond = self.cond | self.latched
        for c, _, abit, rbit in TABLE:
            if cond & c:
                a |= abit
                r |= rbit
        return a, r

    def status(self, now):
        """A plain dict for telemetry."""
        if self.latched:
            state = "fault"
        elif self.stale_reported:
            state = "stale"
        else:
            state = "ok"
        codes = []
        names = []
        for c, code, _, _ in TABLE:
            if self.latched & c:
                code = PED_DETECTOR_FAILED if self.ped else code
                if code not in codes:
                    codes.append(code)
                names.append(CONDITION_NAMES[c])
        a, r = self.alarms()
        return {"channel": self.channel, "ped": self.ped, "state": state,
                "faults": codes, "conditions": names, "alarms": a, "reported_alarms": r,
                "fault_since_ms": self.fault_since if self.latched else None,
                "age_ms": now - self.last_report() if self.fed else None,
                "source": "reports" if self.fed else "direct"}


RESTART_MS = const(1000)     # source time going back more than this: the source restarted
RESYNC_MS = const(5000)      # arrival this much later than the estimate: re-estimate


class SourceClock:
    """Maps one source's millisecond timestamps to local monotonic ms."""

    __slots__ = ("offset", "at", "last_src", "restarts")

    def __init__(self):
        self.offset = None
        self.at = 0
        self.last_src = 0
        self.restarts = 0

    def update(self, rx, src):
        """Take one (arrival, source time) pair; returns (offset, restarted)."""
        sample = rx - src
        restarted = False
        if self.offset is None:
            self.offset, self.at = sample, rx
        else:
            if src < self.last_src - RESTART_MS:
                restarted = True
                self.restarts += 1
                self.offset, self.at = sample, rx
            else:
                # The offset may creep up 1 ms per second (clock drift, 1000 ppm).
                eff = self.offset + (rx - self.at) // 1000
                if sample <= eff:
                    self.offset, self.at = sample, rx
                elif sample > eff + RESYNC_MS:
                    self.offset, self.at = sample, rx
        self.last_src = src
        return self.offset + (rx - self.at) // 1000, restarted
