"""Detector conditioning: raw presence and reports in, calls and extensions per phase out.

Two ways in, both per step:

- `Inputs.detectors` {channel: bool} and `Inputs.pulses` {channel: on-edges}:
  direct wiring, read every step (the rig and the tests use it). A channel
  fed this way counts as reported every step.
- `Inputs.reports`: `Report` objects from the drivers (serial cards, NTCIP
  devices), each stamped with its arrival time (monotonic ms) and, where the
  source has one, its own timestamp. Presence reports carry the on/off edges
  since the previous report with source timestamps; they are mapped to local
  time through a per-source clock offset, so a 1 Hz source loses no short
  actuation and a delay or max-presence timer counts from the real edge.

Each vehicle detector then applies its NTCIP options: delay (a call on a red
phase only once the zone has been occupied for the delay time), extend
(carry-over: the output is held for the extend time after the zone clears
while the phase is green), locking (a call placed on red stays until the
phase is served) and call-at-red-only (ignored while its phase shows yellow).

Diagnostics (edge_agent.diagnostics) run on every channel; a detector in
fault is ignored and puts its phase on its fail recall (`fail_min` /
`fail_max` masks; a pedestrian detector in fault places a ped recall).
"""

from edge_agent import events as ev
from edge_agent.diagnostics import Diagnosis, SourceClock
from edge_agent.indications import MAX_PHASES

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

# Report kinds.
PRESENCE = const(1)    # presence at src_ms and the edges since the previous report
COUNTS = const(2)      # per-channel count and occupancy over interval_ms
STATUS = const(3)      # per-channel device fault bits (diagnostics.DEV_*; 0 = clear)
HEARTBEAT = const(4)   # the source is alive; refreshes the channels it covers
STALE = const(5)       # the driver has no data for these channels (link lost)

FAIL_NONE = const(0)
FAIL_MIN = const(1)
FAIL_MAX = const(2)
FAIL_PED = const(3)

MAX_LOGGED_PULSES = const(20)   # on/off pairs logged per step (more is chatter)


class Report:
    """One detector report from a driver, stamped on arrival.

    source: name of the device (one clock per source)
    kind: PRESENCE, COUNTS, STATUS, HEARTBEAT or STALE
    rx_ms: local monotonic ms of arrival; src_ms: the source's own ms or None
    ped: True when the channels are pedestrian detector channels
    channels: [channel] covered (HEARTBEAT, STALE)
    presence: {channel: bool} at src_ms; edges: [(src ms, channel, on)] in time order
    counts: {channel: (count, occupancy permille)} over interval_ms, ending at src_ms
      (the end known to within slack_ms: a polled source learns of it late)
    faults: {channel: device fault bits}
    """

    __slots__ = ("source", "kind", "rx_ms", "src_ms", "ped", "channels", "presence",
                 "edges", "counts", "interval_ms", "faults", "slack_ms")

    def __init__(self, source, kind, rx_ms, src_ms=None, ped=False, channels=(),
                 presence=None, edges=(), counts=None, interval_ms=0, faults=None, slack_ms=0):
        self.source, self.kind, self.rx_ms, self.src_ms = source, kind, rx_ms, src_ms
        self.ped, self.channels = ped, channels
        self.presence, self.edges = presence, edges
        self.counts, self.interval_ms, self.faults = counts, interval_ms, faults
        self.slack_ms = slack_ms

    def __repr__(self):
        return "Report(%s kind %d rx %d src %s)" % (self.source, self.kind, self.rx_ms, self.src_ms)


class _DetState:
    __slots__ = ("det", "bit", "raw", "on_since", "hold_until", "pulse", "mark", "source", "diag",
                 "logged")


class Detectors:
    """Per-detector state; `update` turns one step of inputs into phase masks."""

    def __init__(self, site):
        self.states = []
        self.by_channel = {}
        for det in site.detectors:
            s = self._state(det, False)
            self.states.append(s)
            self.by_channel[det.channel] = s
        self.peds = []
        self.ped_by_channel = {}
        for det in site.ped_detectors:
            s = self._state(det, True)
            self.peds.append(s)
            self.ped_by_channel[det.channel] = s
        self.clocks = {}           # source name -> SourceClock
        self.started = False
        self.unknown_channels = 0  # report entries for channels the site does not have
        # Masks produced by the last update.
        self.locking_calls = 0     # phases that get a latched call
        self.calls = 0             # phases with a non-locking call this step
        self.extend = 0            # green phases extended this step
        self.ped_calls = 0         # phases whose ped button was pressed
        # Fail recall: phases whose detector is in fault are recalled (min
        # recall places a call, max also extends the green to max).
        self.fail_min = 0
        self.fail_max = 0
        # Actuations on each phase while it is not green, for the volume-density
        # added initial; the controller reads and clears a phase's count at green.
        self.actuations = [0] * (MAX_PHASES + 1)

    @staticmethod
    def _state(det, ped):
        s = _DetState()
        s.det = det
        s.bit = 1 << det.phase
        s.raw = False
        s.on_since = 0
        s.hold_until = -1
        s.pulse = 0
        s.mark = None          # source time up to which edges have been applied
        s.source = None
        s.diag = Diagnosis(det, ped, 0)
        s.logged = -1          # ms of the last edge event logged for this channel
        return s

    def _start(self, now):
        for s in self.states + self.peds:
            s.diag.last_rx = s.diag.presence_rx = s.diag.last_activity = now
        self.started = True

    # -- inputs --------------------------------------------------------------

    def update(self, now, inputs, green, yellow, log):
        """Condition one step of detector inputs against the phase states."""
        if not self.started:
            self._start(now)
        states, peds = self.states, self.peds
        for s in states:
            s.pulse = 0
        for s in peds:
            s.pulse = 0
        self._direct(now, inputs, log)
        if inputs.reports:
            for r in inputs.reports:
                self._report(now, r, log)
        fail_min = fail_max = 0
        for s in states:
            d = s.diag
            d.check(now, s.raw, s.on_since, log)
            if d.latched:
                r = s.det.fail_recall
                if r == FAIL_MAX:
                    fail_max |= s.bit
                elif r == FAIL_MIN:
                    fail_min |= s.bit
        self.fail_min, self.fail_max = fail_min, fail_max
        self._condition(now, green, yellow)
        ped = 0
        for s in peds:
            d = s.diag
            d.check(now, s.raw, s.on_since, log)
            if d.latched:
                if s.det.fail_recall == FAIL_PED:
                    ped |= s.bit
            elif s.raw or s.pulse:
                ped |= s.bit
        self.ped_calls = ped

    def _direct(self, now, inputs, log):
        levels = inputs.detectors
        pulses = inputs.pulses
        if levels or pulses:
            for s in self.states:
                ch = s.det.channel
                fed = False
                raw = s.raw
                if levels and ch in levels:
                    raw = levels[ch]
                    fed = True
                n = 0
                if pulses and ch in pulses:
                    n = pulses[ch]
                    fed = True
                if fed:
                    s.diag.direct(now)
                    self._level(s, now, raw, n, log)
        # A push button is pressed in the steps it is listed; a channel left
        # out is not pressed (unless a driver reports it).
        buttons = inputs.peds
        for s in self.peds:
            if s.diag.fed:
                continue
            ch = s.det.channel
            pressed = False
            if buttons and ch in buttons:
                s.diag.direct(now)
                pressed = bool(buttons[ch])
            if pressed or s.raw:
                self._level(s, now, pressed, 0, log)

    def _level(self, s, now, raw, n, log):
        """A direct input: level now and n on-edges since the last step."""
        if not n and raw == s.raw:
            return                      # most steps: no edge to log, count or time
        d = s.diag
        rising = raw and not s.raw
        # The edges between the last step and this one, in order: a pulse on an
        # occupied zone is the vehicle leaving and the next arriving (off, on).
        seq = []
        state = s.raw
        for _ in range(min(n, MAX_LOGGED_PULSES)):
            if state:
                seq.append(False)
            seq.append(True)
            state = True
        if state != raw:
            seq.append(raw)
        if raw != s.raw:
            s.raw = raw
            if raw:
                s.on_since = now
        last = len(seq) - 1
        for i in range(len(seq)):
            self._log_edge(s, now - (last - i), seq[i], log)
        s.pulse += n
        edges = n if n else (1 if rising else 0)
        if edges:
            d.activity(now, edges)

    @staticmethod
    def _log_edge(s, t, on, log):
        """Log one detector edge. Edges are logged in fault too (ATSPM counts
        actuations from them), each channel's at its own millisecond so that no
        on and off share a timestamp (tools break such ties inconsistently).
        Pedestrian detector events carry the phase (ATSPM pairs 90 with 21)."""
        if t <= s.logged:
            t = s.logged + 1
        s.logged = t
        if s.diag.ped:
            log.append((t, ev.PED_DETECTOR_ON if on else ev.PED_DETECTOR_OFF, s.det.phase))
        else:
            log.append((t, ev.DETECTOR_ON if on else ev.DETECTOR_OFF, s.det.channel))

    def _edge(self, s, t, on, now, log):
        """One reported edge at local time t (<= now), logged on arrival (now)."""
        d = s.diag
        if on:
            if s.raw:
                self._log_edge(s, now, False, log)
            s.raw = True
            s.on_since = t
            s.pulse += 1
            d.activity(t)
            self._log_edge(s, now, True, log)
        elif s.raw:
            s.raw = False
            self._log_edge(s, now, False, log)

    def _report(self, now, r, log):
        table = self.ped_by_channel if r.ped else self.by_channel
        src = r.src_ms
        offset = 0
        if src is not None:
            clock = self.clocks.get(r.source)
            if clock is None:
                clock = self.clocks[r.source] = SourceClock()
            offset, restarted = clock.update(r.rx_ms, src)
            if restarted:
                for s in self.states + self.peds:
                    if s.source == r.source:
                        s.mark = None
        kind = r.kind
        if kind == PRESENCE:
            for e in r.edges:
                t_src, ch, on = e
                s = table.get(ch)
                if s is None:
                    self.unknown_channels += 1
                    continue
                if s.mark is not None and t_src <= s.mark:
                    continue           # already applied (sources repeat recent edges)
                s.mark = t_src
                self._edge(s, self._local(t_src, offset, r.rx_ms, now), on, now, log)
            presence = r.presence or {}
            for ch in presence:
                s = self._heard(table, ch, r.source, now, True)
                if s is None:
                    continue
                s.diag.presence_fed = True
                on = bool(presence[ch])
                if src is not None:
                    if s.mark is not None and src < s.mark:
                        continue       # older than what is already known
                    s.mark = src
                if on != s.raw:        # an edge the source did not list (lost frames)
                    t = self._local(src, offset, r.rx_ms, now) if src is not None else now
                    self._edge(s, t, on, now, log)
            return
        if kind == COUNTS:
            counts = r.counts or {}
            end = self._local(src, offset, r.rx_ms, now) if src is not None else None
            for ch in counts:
                s = self._heard(table, ch, r.source, now)
                if s is not None:
                    c = counts[ch]
                    s.diag.counts(c[0], c[1], r.interval_ms, end, r.slack_ms)
            return
        if kind == STATUS:
            faults = r.faults or {}
            for ch in faults:
                s = self._heard(table, ch, r.source, now)
                if s is not None:
                    s.diag.device(faults[ch])
            return
        for ch in r.channels:
            if kind == STALE:
                s = table.get(ch)
                if s is None:
                    self.unknown_channels += 1
                    continue
                s.source = r.source
                s.diag.stale(now)
            else:
                self._heard(table, ch, r.source, now)

    def _heard(self, table, ch, source, now, presence=False):
        """The state of a channel a report speaks for, marked heard now; None if unknown."""
        s = table.get(ch)
        if s is None:
            self.unknown_channels += 1
            return None
        s.source = source
        s.diag.reported(now, presence)
        return s

    @staticmethod
    def _local(t_src, offset, rx, now):
        t = t_src + offset
        if t > rx:
            t = rx
        if t > now:
            t = now
        return t

    # -- conditioning ----------------------------------------------------------

    def _condition(self, now, green, yellow):
        locking = calls = extend = 0
        for s in self.states:
            det = s.det
            bit = s.bit
            if s.diag.latched:
                s.hold_until = -1
                continue               # in fault: the fail recall stands in for it
            raw = s.raw
            pulse = s.pulse
            if green & bit:
                active = raw or pulse > 0
                if active:
                    s.hold_until = now + det.extend
                elif now < s.hold_until:
                    active = True          # carry-over (extend) after the zone clears
                if active and det.extends_green:
                    extend |= bit
                continue
            s.hold_until = -1
            if pulse > 0:
                self.actuations[det.phase] += pulse
            if yellow & bit and det.call_at_red_only:
                continue
            if pulse > 0 and det.delay == 0:
                active = True
            else:
                active = raw and now - s.on_since >= det.delay
            if active:
                if det.locking:
                    locking |= bit
                else:
                    calls |= bit
        self.locking_calls, self.calls, self.extend = locking, calls, extend

    # -- telemetry -------------------------------------------------------------

    def status(self, now):
        """Per-detector status for telemetry: a list of plain dicts, vehicle then ped."""
        out = []
        for s in self.states + self.peds:
            st = s.diag.status(now)
            st["phase"] = s.det.phase
            st["presence"] = s.raw
            st["pulses"] = s.pulse       # on-edges counted in the last step
            out.append(st)
        return out

    def faulted(self):
        """(vehicle channels in fault, ped channels in fault), sorted."""
        return ([s.det.channel for s in self.states if s.diag.latched],
                [s.det.channel for s in self.peds if s.diag.latched])
