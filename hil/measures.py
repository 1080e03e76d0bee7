"""Performance measures of a simulated run: what the simulator records and how it is summed up.

Definitions (all from the simulator's ground truth, not from detector data):

- control delay: time the vehicle's front crosses the stop bar minus the time
  it entered the approach, minus the free-flow time (approach length / speed).
  Deceleration before the queue counts (vehicles stop instantly in this
  model); acceleration beyond the stop bar is not modelled. Summed over
  vehicles that have crossed the stop bar.
- stop: a vehicle that joined a standing queue, or that reached the stop bar
  and waited there longer than one saturation headway (one that only had to
  keep the saturation headway behind the vehicle ahead counts as slowed, not
  stopped).
- queue: stopped vehicles (per movement = all its lanes, total = the whole
  intersection), sampled at every whole second; max and 95th percentile
  (nearest rank).
- arrival on green: the vehicle's free-flow stop-bar time (entry + free-flow
  time) falls while its movement's phase shows green (protected phase for a
  protected/permissive left).
- split failure: a green of the phase ends (the phase turns red after its
  yellow) while a vehicle that was already queued on one of its movements when
  that green began is still queued.
- utilisation: time the phase showed green / simulated time.
- cycle length: time between consecutive green onsets of the reference phase.
- Purdue Coordination Diagram (PCD) of one phase: cycles start when the phase
  turns red (end of its yellow), so each cycle reads red, green, yellow; every
  arrival of the phase's movements is plotted at its free-flow stop-bar time
  against the time since its cycle began.
"""

from edge_agent.indications import GREEN, RED, YELLOW


def percentile_nearest_rank(values, pct):
    """The pct-th percentile by the nearest-rank method (0 for no values)."""
    if not values:
        return 0
    s = sorted(values)
    k = -(-pct * len(s) // 100)  # ceil
    return s[max(0, int(k) - 1)]


class MovementMeasures:
    """Measures of one movement (or of the whole intersection as `total`)."""

    __slots__ = ("arrivals", "departures", "delay_s", "mean_delay_s", "stops", "stop_rate",
                 "max_queue", "p95_queue", "arrivals_on_green", "aog_share")

    def as_dict(self):
        return {k: getattr(self, k) for k in self.__slots__}

    def __repr__(self):
        return (f"MovementMeasures(arrivals={self.arrivals}, departures={self.departures}, "
                f"mean_delay_s={self.mean_delay_s}, stops={self.stops}, max_queue={self.max_queue})")


class PhaseMeasures:
    """Measures of one phase: greens served, split failures, utilisation, arrivals on green."""

    __slots__ = ("greens", "green_s", "utilisation", "split_failures", "split_failure_share",
                 "arrivals", "arrivals_on_green", "aog_share")

    def as_dict(self):
        return {k: getattr(self, k) for k in self.__slots__}

    def __repr__(self):
        return (f"PhaseMeasures(greens={self.greens}, utilisation={self.utilisation}, "
                f"split_failures={self.split_failures}, aog_share={self.aog_share})")


class Measures:
    """The result of a run: per movement, total, per phase, cycles, time series and PCD data."""

    __slots__ = ("duration_s", "movements", "total", "phases", "cycle_lengths_s",
                 "queue_series", "pcd")

    def as_dict(self):
        """Plain JSON-able dict (same run -> equal dicts)."""
        return {
            "duration_s": self.duration_s,
            "movements": {k: v.as_dict() for k, v in self.movements.items()},
            "total": self.total.as_dict(),
            "phases": {str(k): v.as_dict() for k, v in self.phases.items()},
            "cycle_lengths_s": list(self.cycle_lengths_s),
            "cycle": self.cycle_summary(),
            "queue_series": {k: list(v) for k, v in self.queue_series.items()},
            "pcd": {k: (list(map(list, v)) if isinstance(v, list) else v) for k, v in self.pcd.items()},
        }

    def cycle_summary(self, bin_s=10):
        """Count, mean, min, max and a histogram (bins of `bin_s` s) of the cycle lengths."""
        c = self.cycle_lengths_s
        hist = {}
        for x in c:
            b = int(x // bin_s * bin_s)
            hist[b] = hist.get(b, 0) + 1
        return {"count": len(c), "mean_s": round(sum(c) / len(c), 1) if c else None,
                "min_s": min(c) if c else None, "max_s": max(c) if c else None,
                "histogram": {str(k): hist[k] for k in sorted(hist)}}

    def summary_lines(self):
        """A short human-readable table."""
        out = [f"{'movement':8} {'arr':>5} {'dep':>5} {'delay s':>8} {'stops':>6} "
               f"{'maxQ':>5} {'95Q':>4} {'AoG':>5}"]
        rows = list(self.movements.items()) + [("total", self.total)]
        for k, m in rows:
            out.append(f"{k:8} {m.arrivals:5d} {m.departures:5d} {m.mean_delay_s:8.1f} "
                       f"{m.stop_rate:6.2f} {m.max_queue:5d} {m.p95_queue:4d} {m.aog_share:5.2f}")
        cs = self.cycle_summary()
        out.append(f"cycles: {cs['count']}, mean {cs['mean_s']} s, min {cs['min_s']} s, max {cs['max_s']} s")
        for p, ph in self.phases.items():
            out.append(f"phase {p}: {ph.greens} greens, utilisation {ph.utilisation:.2f}, "
                       f"split failures {ph.split_failures}, AoG {ph.aog_share:.2f}")
        return out


class MeasureCollector:
    """Receives what the simulator observes and builds `Measures` on demand."""

    def __init__(self, movements, approaches, phases, reference_phase, pcd_phase):
        self.mids = [m.id for m in movements]
        self.phase_of = {m.id: m.phase for m in movements}
        self.approaches = list(approaches)
        self.phase_list = list(phases)
        self.reference_phase = reference_phase
        self.pcd_phase = pcd_phase
        self.start_ms = None
        self.now_ms = None
        z = dict.fromkeys
        self.arrivals = z(self.mids, 0)
        self.departures = z(self.mids, 0)
        self.delay_ms = z(self.mids, 0)
        self.stops = z(self.mids, 0)
        self.ff_arrivals = z(self.mids, 0)
        self.aog = z(self.mids, 0)
        self.queue_samples = {k: [] for k in self.mids}
        self.total_queue = []
        self.series_t = []
        self.series = {a: [] for a in self.approaches}
        self.timeline = {p: [] for p in self.phase_list}   # [(t_ms, indication)]
        self.greens = z(self.phase_list, 0)
        self.greens_ended = z(self.phase_list, 0)
        self.split_failures = z(self.phase_list, 0)
        self.pcd_arrivals = []

    def start(self, now_ms, vehicle):
        self.start_ms = self.now_ms = now_ms
        for p in self.phase_list:
            self.timeline[p].append((now_ms, vehicle[p]))

    def signal_change(self, t_ms, phase, new):
        if phase in self.timeline:
            self.timeline[phase].append((t_ms, new))
            if new == GREEN:
                self.greens[phase] += 1

    def green_ended(self, phase, failed):
        self.greens_ended[phase] += 1
        if failed:
            self.split_failures[phase] += 1

    def arrival(self, mid):
        self.arrivals[mid] += 1

    def departure(self, mid, delay_ms, stopped):
        self.departures[mid] += 1
        self.delay_ms[mid] += delay_ms
        if stopped:
            self.stops[mid] += 1

    def free_flow_arrival(self, mid, t_ms):
        """A vehicle's free-flow stop-bar time has passed: arrival on green and PCD."""
        self.ff_arrivals[mid] += 1
        if self.indication_at(self.phase_of[mid], t_ms) == GREEN:
            self.aog[mid] += 1
        if self.phase_of[mid] == self.pcd_phase:
            self.pcd_arrivals.append((t_ms, t_ms - self.last_red_onset(self.pcd_phase, t_ms)))

    def indication_at(self, phase, t_ms):
        """What the phase showed at t (a change at t applies after t)."""
        tl = self.timeline[phase]
        for tc, ind in reversed(tl):
            if tc < t_ms:
                return ind
        return tl[0][1]

    def last_red_onset(self, phase, t_ms):
        """When the phase last turned from green/yellow to red before t (else the start)."""
        tl = self.timeline.get(phase, ())
        for i in range(len(tl) - 1, 0, -1):
            tc, ind = tl[i]
            if tc < t_ms and ind not in (GREEN, YELLOW) and tl[i - 1][1] in (GREEN, YELLOW):
                return tc
        return self.start_ms

    def sample_queues(self, t_ms, per_movement):
        """Queue (stopped vehicles) per movement at a whole second."""
        total = 0
        per_app = dict.fromkeys(self.approaches, 0)
        for mid, q in per_movement.items():
            self.queue_samples[mid].append(q)
            per_app[mid[:2]] += q
            total += q
        self.total_queue.append(total)
        self.series_t.append(t_ms // 1000)
        for a in self.approaches:
            self.series[a].append(per_app[a])

    def result(self):
        """Freeze the current state into a `Measures`."""
        m = Measures()
        dur_ms = self.now_ms - self.start_ms
        m.duration_s = dur_ms / 1000
        m.movements = {}
        for mid in self.mids:
            m.movements[mid] = self._movement(
                self.arrivals[mid], self.departures[mid], self.delay_ms[mid], self.stops[mid],
                self.queue_samples[mid], self.ff_arrivals[mid], self.aog[mid])
        s = lambda d: sum(d.values())  # noqa: E731
        m.total = self._movement(s(self.arrivals), s(self.departures), s(self.delay_ms),
                                 s(self.stops), self.total_queue, s(self.ff_arrivals), s(self.aog))
        m.phases = {p: self._phase(p, dur_ms) for p in self.phase_list}
        gs = [t for t, ind in self.timeline.get(self.reference_phase, ()) if ind == GREEN]
        gs = [t for i, t in enumerate(gs) if i == 0 or t != gs[i - 1]]
        m.cycle_lengths_s = [(b - a) / 1000 for a, b in zip(gs, gs[1:])]
        m.queue_series = {"t_s": list(self.series_t)}
        for a in self.approaches:
            m.queue_series[a] = list(self.series[a])
        m.pcd = {"phase": self.pcd_phase, "cycle_start": "red onset (end of yellow)",
                 "cycles": self._pcd_cycles(), "arrivals": list(self.pcd_arrivals)}
        return m

    @staticmethod
    def _movement(arr, dep, delay_ms, stops, queue, ff, aog):
        mm = MovementMeasures()
        mm.arrivals, mm.departures = arr, dep
        mm.delay_s = round(delay_ms / 1000, 3)
        mm.mean_delay_s = round(delay_ms / 1000 / dep, 3) if dep else 0.0
        mm.stops = stops
        mm.stop_rate = round(stops / dep, 4) if dep else 0.0
        mm.max_queue = max(queue) if queue else 0
        mm.p95_queue = percentile_nearest_rank(queue, 95)
        mm.arrivals_on_green = aog
        mm.aog_share = round(aog / ff, 4) if ff else 0.0
        return mm

    def _phase(self, p, dur_ms):
        pm = PhaseMeasures()
        pm.greens = self.greens[p]
        green_ms = 0
        tl = self.timeline[p]
        for i, (t, ind) in enumerate(tl):
            end = tl[i + 1][0] if i + 1 < len(tl) else self.now_ms
            if ind == GREEN:
                green_ms += end - t
        pm.green_s = green_ms / 1000
        pm.utilisation = round(green_ms / dur_ms, 4) if dur_ms else 0.0
        pm.split_failures = self.split_failures[p]
        ended = self.greens_ended[p]
        pm.split_failure_share = round(pm.split_failures / ended, 4) if ended else 0.0
        mids = [k for k in self.mids if self.phase_of[k] == p]
        pm.arrivals = sum(self.ff_arrivals[k] for k in mids)
        pm.arrivals_on_green = sum(self.aog[k] for k in mids)
        pm.aog_share = round(pm.arrivals_on_green / pm.arrivals, 4) if pm.arrivals else 0.0
        return pm

    def _pcd_cycles(self):
        """[(cycle start = red onset, green onset, yellow onset, next red onset)] of the PCD phase."""
        tl = self.timeline.get(self.pcd_phase, ())
        out, cur = [], None
        for t, ind in tl:
            if ind == RED:
                if cur is not None and cur[0] != t:
                    cur[3] = t
                    out.append(tuple(cur))
                cur = [t, None, None, None]
            elif cur is not None and ind == GREEN and cur[1] is None:
                cur[1] = t
            elif cur is not None and ind == YELLOW and cur[2] is None:
                cur[2] = t
        return out
