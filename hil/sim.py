"""Built-in intersection simulator: vehicles, queues, detectors and push buttons.

The simulator knows nothing of the controller. Each call

    inputs = sim.step(now_ms, vehicle)

says: the vehicle indications `vehicle` (list indexed by phase, 0 unused)
were shown from the previous call until `now_ms`. The simulator advances its
world over that interval and returns the detector states at `now_ms`. The
first call only sets the clock and the initial indications. A rig therefore
does: inputs = sim.step(t, shown); out = agent.step(t, inputs); shown = out.vehicle.

The model, per lane (a movement has one or more lanes, chosen on entry by
fewest vehicles):

- vehicles enter `approach_m` upstream at the speed limit, no closer than one
  saturation headway behind the previous entry to the same lane, and drive at
  that speed to the back of the queue or to the stop bar;
- queued vehicles stand `jam_spacing_m` apart (front to front), the first at
  the stop bar; when the head leaves, the queue moves up at once;
- a lane may discharge while its phase is green or in the first
  `yellow_entry_s` of its yellow; a standing queue starts `startup_lost_s` after
  its green begins and then crosses one vehicle per saturation headway
  (vehicle n of the queue crosses at green + lost time + n·headway);
- a left with a `permissive_phase` may also go while that phase is green, but
  only when no opposing vehicle is queued and none reaches its stop bar
  within the critical gap (a permissive-only left has phase == permissive_phase);
- under flashing red or dark indications every vehicle stops, and a lane
  discharges one vehicle per `stop_headway_s` (half of it standing at the bar).

Everything random (arrivals, push buttons) comes from per-movement and
per-button `random.Random` streams seeded from the scenario seed and the
movement id, so a run is reproducible and adding a movement does not reshuffle
the others.
"""

import math
import random
from collections import deque

from edge_agent.indications import DARK, FLASH_RED, FLASH_YELLOW, GREEN, MAX_PHASES, YELLOW

from hil.demand import PoissonArrivals, RateSchedule
from hil.detector_model import LoopModel
from hil.measures import MeasureCollector
from hil.scenario import APPROACHES, load_scenario
from hil.traffic import FILTER, GO, INF, STOP, STOP_SIGN, Lane, Movement, Vehicle


class SimInputs:
    """Detector states at one instant: presence and on-edges per channel, ped buttons."""

    __slots__ = ("now_ms", "detectors", "pulses", "peds")

    def __init__(self, now_ms, detectors, pulses, peds):
        self.now_ms = now_ms
        self.detectors = detectors
        self.pulses = pulses
        self.peds = peds

    def __repr__(self):
        on = sorted(c for c, v in self.detectors.items() if v)
        return f"SimInputs({self.now_ms} ms, on={on}, peds={sorted(c for c, v in self.peds.items() if v)})"


class IntersectionSim:
    """The built-in queue-and-detector model of one intersection (see module doc)."""

    def __init__(self, scenario, seed=None):
        sc = load_scenario(scenario)
        self.scenario = sc
        self.seed = sc.seed if seed is None else seed
        md = sc.model
        self.veh_len = md["vehicle_length_m"]
        self.jam = md["jam_spacing_m"]
        self.lost_ms = round(md["startup_lost_s"] * 1000)
        self.entry_ms = round(md["yellow_entry_s"] * 1000)
        self.gap_ms = round(md["critical_gap_s"] * 1000)
        self.stop_headway_ms = round(md["stop_headway_s"] * 1000)
        self.approach_m = md["approach_m"]

        self.movements = []
        by_id = {}
        for spec in sc.movements:
            mv = Movement()
            mv.spec = spec
            mv.headway_ms = round(3_600_000 / spec.sat_flow_vphpl)
            mv.speed_mpms = spec.speed_mps / 1000
            mv.x_entry = self.approach_m
            mv.free_ms = self.travel_ms(mv, self.approach_m)
            mv.lanes = [Lane(mv, k) for k in range(spec.lanes)]
            rng = random.Random(f"{self.seed}:{spec.id}")
            mv.arrivals = PoissonArrivals(rng, RateSchedule(spec.profile, sc.start_tod_ms, spec.platoon))
            mv.next_gen = mv.arrivals.next()
            mv.scripted = deque()
            self.movements.append(mv)
            by_id[spec.id] = mv
        for mv in self.movements:
            mv.opposing = [by_id[o] for o in mv.spec.opposing if o in by_id]
        self.lanes = [ln for mv in self.movements for ln in mv.lanes]

        self.loops = []
        for spec in sc.detectors:
            loop = LoopModel(spec, self.veh_len, self.jam)
            for mid in spec.movements:
                for ln in by_id[mid].lanes:
                    if spec.lanes is None or ln.index in spec.lanes:
                        loop.lanes.append(ln)
                        ln.loops.append(loop)
            self.loops.append(loop)
        self.buttons = []
        for b in sc.ped_buttons:
            rng = random.Random(f"{self.seed}:ped:{b.id}")
            arr = PoissonArrivals(rng, RateSchedule(b.profile, sc.start_tod_ms))
            self.buttons.append([b, arr, arr.next()])

        self.phases_used = sorted({p for m in sc.movements for p in (m.phase, m.permissive_phase)
                                   if p is not None})
        self.collector = MeasureCollector(sc.movements, [a for a in APPROACHES
                                                         if any(m.approach == a for m in sc.movements)],
                                          self.phases_used, sc.reference_phase, sc.pcd_phase)
        self.detector_log = []    # [(ms, channel, on)] exact on/off edges of every loop
        self.crossings = []       # [(ms, movement id, vehicle id, delay ms, stopped)] stop-bar crossings
        self.shown = None         # indications in force
        self.yellow_since = [0] * (MAX_PHASES + 1)
        self.prev_ms = None
        self.pending_ff = []      # vehicles whose free-flow stop-bar time is still ahead
        self.next_vid = 1

    # -- public -------------------------------------------------------------

    def step(self, now_ms, vehicle):
        """Advance to now_ms under `vehicle` (shown since the previous call); return SimInputs."""
        vehicle = list(vehicle)
        if self.prev_ms is None:
            self.prev_ms = now_ms
            self.shown = vehicle
            self.collector.start(now_ms, vehicle)
            return self._read_out(now_ms, now_ms, empty=True)
        if now_ms <= self.prev_ms:
            raise ValueError(f"step: time {now_ms} ms is not after the previous step {self.prev_ms} ms")
        prev = self.prev_ms
        self._apply_indications(prev, vehicle)
        self._advance(prev, now_ms)
        self._resolve_free_flow(now_ms)
        out = self._read_out(prev, now_ms)
        for ln in self.lanes:
            ln.q_at_prev = len(ln.queue)
            ln.q_hist = []
        self.prev_ms = now_ms
        self.collector.now_ms = now_ms
        return out

    def add_vehicles(self, mid, entry_times_ms):
        """Script extra vehicles entering movement `mid` at the given times (on top of the demand)."""
        mv = self._mv(mid)
        mv.scripted = deque(sorted(list(mv.scripted) + [int(t) for t in entry_times_ms]))

    def measures(self):
        """Measures of everything simulated so far."""
        return self.collector.result()

    def vehicles_in_system(self):
        """Vehicles that entered and have not crossed the stop bar yet."""
        return sum(len(ln.moving) + len(ln.queue) for ln in self.lanes)

    def waiting_vehicles(self):
        """[(vehicle id, movement id, entry ms)] of vehicles that have not crossed the stop bar."""
        return sorted((v.id, ln.mv.spec.id, v.t_entry)
                      for ln in self.lanes for v in list(ln.queue) + list(ln.moving))

    def queue_length(self, mid):
        """Vehicles standing in the queue of a movement now."""
        return sum(len(ln.queue) for ln in self._mv(mid).lanes)

    def travel_ms(self, mv, dist_m):
        """Milliseconds to drive `dist_m` at the movement's speed."""
        return round(dist_m / mv.speed_mpms) if dist_m > 0 else 0

    # -- signal -------------------------------------------------------------

    def _apply_indications(self, t, vehicle):
        """Indications that changed take effect at t (the start of this interval)."""
        old = self.shown
        if vehicle == old:
            return
        for ln in self.lanes:
            ln.state_before = self._state(ln.mv, t)
        for p in range(1, min(len(vehicle), MAX_PHASES + 1)):
            if vehicle[p] == old[p]:
                continue
            if vehicle[p] == YELLOW:
                self.yellow_since[p] = t
            self.collector.signal_change(t, p, vehicle[p])
        self.shown = vehicle
        for p in range(1, min(len(vehicle), MAX_PHASES + 1)):
            if old[p] == vehicle[p] or p not in self.phases_used:
                continue
            if vehicle[p] == GREEN:
                for mv in self.movements:
                    if mv.spec.phase == p:
                        for ln in mv.lanes:
                            ln.tail_at_green = ln.queue[-1].seq if ln.queue else ln.last_departed_seq
            elif old[p] in (GREEN, YELLOW) and vehicle[p] != YELLOW:
                failed = any(ln.last_departed_seq < ln.tail_at_green
                             for mv in self.movements if mv.spec.phase == p for ln in mv.lanes)
                self.collector.green_ended(p, failed)
        for ln in self.lanes:
            st = self._state(ln.mv, t + 1)
            if st in (GO, FILTER) and ln.state_before in (STOP, STOP_SIGN) and ln.queue:
                ln.t_next = max(ln.t_next, t + self.lost_ms + ln.mv.headway_ms)

    def _state(self, mv, t):
        """What the signal lets movement `mv` do at time t (within the current interval)."""
        shown = self.shown
        ind = shown[mv.spec.phase]
        pp = mv.spec.permissive_phase
        if pp != mv.spec.phase:   # a permissive-only left has phase == permissive_phase
            if ind == GREEN or ind == FLASH_YELLOW:
                return GO
            if ind == YELLOW and t < self.yellow_since[mv.spec.phase] + self.entry_ms:
                return GO
        if pp is not None:
            ind2 = shown[pp]
            if ind2 == GREEN or (ind2 == YELLOW and t < self.yellow_since[pp] + self.entry_ms):
                return FILTER
        if ind == FLASH_RED or ind == DARK:
            return STOP_SIGN
        return STOP

    def _gap_open(self, mv, t):
        """Permissive left: no opposing vehicle queued or arriving within the critical gap."""
        for om in mv.opposing:
            if self._state(om, t) != GO:
                continue
            cutoff = INF
            ind = self.shown[om.spec.phase]
            if ind == YELLOW:
                cutoff = self.yellow_since[om.spec.phase] + self.entry_ms
            horizon = min(t + self.gap_ms, cutoff)
            for ln in om.lanes:
                if ln.queue:
                    return False
                for v in ln.moving:
                    if v.t_ff >= horizon:
                        break
                    if v.t_ff >= t:
                        return False
        return True

    def _may_go(self, mv, t):
        st = self._state(mv, t)
        return st == GO or (st == FILTER and self._gap_open(mv, t))

    # -- the event loop ------------------------------------------------------

    def _advance(self, prev, now):
        """Process every arrival, queue join and departure in (prev, now], earliest first."""
        clock = prev + 1
        cutoffs = sorted({self.yellow_since[p] + self.entry_ms for p in self.phases_used
                          if self.shown[p] == YELLOW})
        cutoffs = [c for c in cutoffs if prev < c <= now]
        next_sample = (prev // 1000 + 1) * 1000
        while True:
            best_t, best_kind, best_obj = INF, 0, None
            # kinds in tie order: 0 departure, 1 reach (queue back / stop bar), 2 entry, 3 re-check
            for ln in self.lanes:
                if ln.queue:
                    t = self._departure_time(ln, clock)
                    if t is not None and t < best_t:
                        best_t, best_kind, best_obj = t, 0, ln
                if ln.moving:
                    v = ln.moving[0]
                    t = v.t_entry + self.travel_ms(ln.mv, v.x_entry - len(ln.queue) * self.jam)
                    if t < clock:
                        t = clock
                    if t < best_t or (t == best_t and best_kind > 1):
                        best_t, best_kind, best_obj = t, 1, ln
            for mv in self.movements:
                t = mv.next_entry_ms()
                if t is not None:
                    t = max(t, clock)
                    if t < best_t:
                        best_t, best_kind, best_obj = t, 2, mv
            while cutoffs and cutoffs[0] < clock:
                cutoffs.pop(0)
            if cutoffs and cutoffs[0] < best_t:
                best_t, best_kind, best_obj = cutoffs.pop(0), 3, None
            if best_t > now:
                break
            while next_sample < best_t:
                self._sample(next_sample)
                next_sample += 1000
            clock = best_t
            if best_kind == 0:
                self._depart(best_obj, best_t)
            elif best_kind == 1:
                self._reach(best_obj, best_t)
            elif best_kind == 2:
                self._enter(best_obj, best_t)
        while next_sample <= now:
            self._sample(next_sample)
            next_sample += 1000

    def _departure_time(self, ln, clock):
        """When the head of the queue may cross, if within reach of the current indications."""
        mv = ln.mv
        t = max(ln.t_next, clock)
        st = self._state(mv, t)
        if st == STOP_SIGN:
            return max(t, ln.head_since + self.stop_headway_ms // 2)
        if st == GO or (st == FILTER and self._gap_open(mv, t)):
            return t
        return None

    def _enter(self, mv, t):
        """A vehicle generated by the demand enters the approach on the emptiest lane."""
        if mv.scripted and (mv.next_gen is None or mv.scripted[0] < math.ceil(mv.next_gen)):
            mv.scripted.popleft()
        else:
            mv.next_gen = mv.arrivals.next()
        ln = min(mv.lanes, key=lambda x: (len(x.moving) + len(x.queue),
                                          max(t, x.last_entry + mv.headway_ms), x.index))
        v = Vehicle()
        v.id = self.next_vid
        self.next_vid += 1
        v.mv, v.lane = mv, ln
        ln.seq += 1
        v.seq = ln.seq
        v.stopped = False
        v.t_at_bar = None
        v.t_cross = None
        self.collector.arrival(mv.spec.id)
        spilled = len(ln.queue) * self.jam >= mv.x_entry
        t_e = t if spilled else max(t, ln.last_entry + mv.headway_ms)
        ln.last_entry = t_e
        v.t_entry, v.x_entry = t_e, mv.x_entry
        v.t_ff = t_e + mv.free_ms
        self.pending_ff.append(v)
        v.det_iv = []
        for loop in ln.loops:
            on = t_e + self.travel_ms(mv, mv.x_entry - loop.at_m - loop.length_m)
            v.det_iv.append([loop, on, on + loop.pass_ms(mv)])
        if spilled:
            v.stopped = True
            self._join(ln, v, t_e)
        else:
            ln.moving.append(v)

    def _reach(self, ln, t):
        """The first driving vehicle of a lane reaches the back of the queue or the stop bar."""
        v = ln.moving.popleft()
        if ln.queue:
            v.stopped = True
            self._join(ln, v, t)
            return
        mv = ln.mv
        if t >= ln.t_next and self._may_go(mv, t):
            self._cross(ln, v, t)
            ln.recent_iv.extend(v.det_iv)
            return
        v.t_at_bar = t
        if self._state(mv, t) == STOP_SIGN:
            v.stopped = True
        ln.head_since = t
        self._join(ln, v, t)

    def _join(self, ln, v, t):
        for iv in v.det_iv:
            if iv[2] > t:
                iv[2] = t
            if iv[1] < iv[2]:
                ln.recent_iv.append(iv)
        ln.queue.append(v)
        ln.q_hist.append((t, len(ln.queue)))

    def _depart(self, ln, t):
        v = ln.queue.popleft()
        ln.q_hist.append((t, len(ln.queue)))
        if not v.stopped and t - v.t_at_bar > ln.mv.headway_ms:
            v.stopped = True
        self._cross(ln, v, t)
        ln.head_since = t
        for loop in ln.loops:
            if loop.at_m < self.veh_len:   # the leaving vehicle's rear still over the zone
                ln.recent_iv.append([loop, t, t + self.travel_ms(ln.mv, self.veh_len - loop.at_m)])

    def _cross(self, ln, v, t):
        mv = ln.mv
        v.t_cross = t
        stop_sign = self._state(mv, t) == STOP_SIGN
        ln.t_next = t + (self.stop_headway_ms if stop_sign else mv.headway_ms)
        ln.last_departed_seq = v.seq
        delay = t - v.t_entry - mv.free_ms
        self.crossings.append((t, mv.spec.id, v.id, delay, v.stopped))
        self.collector.departure(mv.spec.id, delay, v.stopped)

    # -- measurement ---------------------------------------------------------

    def _sample(self, t):
        self.collector.sample_queues(t, {mv.spec.id: self._queue_at(mv, t) for mv in self.movements})

    def _queue_at(self, mv, t):
        n = 0
        for ln in mv.lanes:
            q = ln.q_at_prev
            for tq, qq in ln.q_hist:
                if tq > t:
                    break
                q = qq
            n += q
        return n

    def _resolve_free_flow(self, now):
        """Arrivals on green and PCD points for vehicles whose free-flow time has passed."""
        keep = []
        for v in self.pending_ff:
            if v.t_ff > now:
                keep.append(v)
            else:
                self.collector.free_flow_arrival(v.mv.spec.id, v.t_ff)
        self.pending_ff = keep

    def _read_out(self, prev, now, empty=False):
        detectors, pulses = {}, {}
        first = len(self.detector_log)
        for loop in self.loops:
            on, n = (False, 0) if empty else loop.update(prev, now, self.detector_log)
            detectors[loop.channel] = on
            pulses[loop.channel] = n
        if len(self.detector_log) - first > 1:
            self.detector_log[first:] = sorted(self.detector_log[first:])
        peds = {}
        for b in self.buttons:
            spec, arr, t_next = b
            pressed = False
            while not empty and t_next is not None and t_next <= now:
                pressed = True
                t_next = arr.next()
            b[2] = t_next
            peds[spec.channel] = pressed
        if not empty:
            for ln in self.lanes:
                ln.recent_iv = [iv for iv in ln.recent_iv if iv[2] > now]
        return SimInputs(now, detectors, pulses, peds)

    def _mv(self, mid):
        for mv in self.movements:
            if mv.spec.id == mid:
                return mv
        raise KeyError(mid)
