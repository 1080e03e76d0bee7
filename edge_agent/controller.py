"""The actuated controller: green timing of each phase on a NEMA-style dual ring.

Each phase is in one named interval at a time (intervals.py: MIN_GREEN,
EXTENSION, GREEN_REST, YELLOW_CHANGE, RED_CLEAR, RED_REVERT, RED_REST) and
changes interval only through `intervals.transition`, which logs the Indiana
events of its one table. The ring/barrier sequencer (sequencer.py) chooses
which phase each ring times next; this file times the intervals: min green
(with the volume-density added initial), extension by the passage time (with
gap reduction), the max timer, gap-out, max-out, force-off, the pedestrian
walk and clearance, calls and recalls.

Everything from outside - coordination's force-offs and omits, preemption's
target phases, truncations and clearance overrides - arrives through one
seam, a `requests.Requests` each step. Phase sets are bitmasks (bit p =
phase p) so a step costs a few dozen integer operations.
"""

from edge_agent import events as ev
from edge_agent.indications import (MAX_PHASES, RED, YELLOW, GREEN, DONT_WALK,
                                    WALK, PED_CLEAR, PED_DARK)
from edge_agent.intervals import (RED_REST, MIN_GREEN, EXTENSION, GREEN_REST,
                                  YELLOW_CHANGE, RED_CLEAR, RED_REVERT, NAMES, GREENS,
                                  transition, ped_transition)
from edge_agent.intervals import I_RED, I_GREEN, I_YELLOW, I_RED_CLEAR  # noqa: F401 (re-export)
from edge_agent.plan import RECALL_MIN, RECALL_MAX, RECALL_PED
from edge_agent.requests import Requests
from edge_agent.sequencer import Sequencer

INTERVAL_NAMES = NAMES
NO_REQUESTS = Requests()


class Controller:
    """Phase and ring state of one intersection under one active plan."""

    def __init__(self, site, plan):
        self.site = site
        n = MAX_PHASES + 1
        self.interval = [RED_REST] * n
        self.since = [0] * n          # ms the current indication began
        self.min_end = [0] * n        # end of the initial interval
        self.gap_end = [0] * n        # last actuation + the allowed gap
        self.last_act = [0] * n       # ms of the last extending actuation
        self.check_at = [0] * n       # ms of the phase check (conflicting call)
        self.max_end = [-1] * n       # -1: max timer not started
        self.yellow_ms = [0] * n      # the yellow and red clearance under way
        self.red_ms = [0] * n
        self.revert_end = [0] * n     # no green again before this ms (red revert)
        self.ped = [DONT_WALK] * n
        self.ped_end = [0] * n
        self.ped_since = [0] * n
        self.green = 0                # masks of phases per interval
        self.yellow = 0
        self.red_clear = 0
        self.reverting = 0
        self.min_done = 0
        self.checked = 0              # greens whose phase check (2) is logged
        self.veh_call = 0             # latched vehicle calls
        self.open_calls = 0           # non-locking calls present now
        self.ped_call = 0             # latched pedestrian calls
        self.calls = 0                # calls the sequencer may serve (omits removed)
        self.raw_calls = 0            # every call, omitted or not
        self.hold = 0
        self.ped_omit = 0
        self.preempting = False
        self.seq = Sequencer(site)
        self.pending = None
        self.plan = None
        self.det = None
        self.wall_ms = None
        self.no_walk = 0              # greens where coordination forbids a walk recycle
        self.group_entered = -1       # ms of the last barrier crossing (coordination enters there)
        self._use(plan)
        self.omit_shown = plan.omit   # phase omits last logged (46/47)
        self.ped_omit_shown = 0       # ped omits last logged (48/49)

    # -- plans ---------------------------------------------------------------

    def _use(self, plan):
        """Make `plan` active and precompute its masks."""
        site = self.site
        self.plan = plan
        rec_call = rec_max = rec_ped = 0
        for p in site.phases:
            r = plan.recall[p]
            if r == RECALL_MIN or r == RECALL_MAX:
                rec_call |= 1 << p
            if r == RECALL_MAX:
                rec_max |= 1 << p
            if r == RECALL_PED:
                rec_ped |= 1 << p
        # A coordinated pattern: its coordinated phases are on max recall and
        # its max-green mode picks the max timer (or none: force-offs rule).
        k = plan.coord
        self.max_times = plan.max_green
        if k is not None:
            rec_call |= k.coord_mask
            rec_max |= k.coord_mask
            self.max_times = {"inhibit": None, "max1": plan.max1, "max2": plan.max2}[k.max_mode]
        self.recall_call, self.recall_max, self.recall_ped = rec_call, rec_max, rec_ped
        ped_mask = all_mask = 0
        for p in site.phases:
            all_mask |= 1 << p
            if site.has_ped[p]:
                ped_mask |= 1 << p
        self.ped_mask, self.all_mask = ped_mask, all_mask
        self.seq.use(plan)

    def set_plan(self, plan, now, log):
        """Queue `plan`; it takes effect at the next barrier crossing (a safe point)."""
        self.pending = plan
        log.append((now, ev.PLAN_PENDING, 0))

    def apply_pending(self, now, log):
        """At a barrier crossing: the queued plan takes effect, unless preempted."""
        if self.pending is not None and not self.preempting:
            self._use(self.pending)
            self.pending = None
            log.append((now, ev.PLAN_ACTIVATED, 0))

    def group_entered_at(self, now):
        """The sequencer entered a barrier group (a crossing, or start-up)."""
        self.group_entered = now

    # -- outputs -------------------------------------------------------------

    def vehicle_indications(self):
        out = [RED] * (MAX_PHASES + 1)
        green, yellow = self.green, self.yellow
        if green | yellow:
            for p in self.site.phases:
                b = 1 << p
                if green & b:
                    out[p] = GREEN
                elif yellow & b:
                    out[p] = YELLOW
        out[0] = 0
        return out

    def timers(self, p, now):
        """Phase p's interval and what is left of its timers (ms), for status views."""
        i = self.interval[p]
        out = {"interval": NAMES[i], "elapsed_ms": now - self.since[p]}
        if i in GREENS:
            out["min_left_ms"] = max(0, self.min_end[p] - now)
            out["gap_left_ms"] = max(0, self.gap_end[p] - now)
            if self.max_end[p] >= 0:
                out["max_left_ms"] = max(0, self.max_end[p] - now)
            if self.ped[p] == WALK or self.ped[p] == PED_CLEAR:
                out["ped_left_ms"] = max(0, self.ped_end[p] - now)
        return out

    def ped_indications(self):
        out = [PED_DARK] * (MAX_PHASES + 1)
        for p in self.site.phases:
            if self.site.has_ped[p]:
                out[p] = self.ped[p]
        return out

    # -- the step ------------------------------------------------------------

    def start(self, now, log, wall_ms=None):
        """Leave start-up all-red: enter the start-up phases' barrier group."""
        self.wall_ms = wall_ms
        self.apply_pending(now, log)
        omit = self.plan.omit
        starts = [p for p in self.site.startup_phases if not omit & (1 << p)]
        if starts:
            self.seq.start_group(self, starts, now, log)
            self.group_entered = now

    def step(self, now, det, req=None, log=None, wall_ms=None):
        """Advance every phase and ring to `now`.

        det: the conditioned detector masks (detectors.Detectors).
        req: this step's Requests (coordination, preemption, outside requests).
        wall_ms: the wall clock, if known (kept for start-up).
        """
        if req is None:
            req = NO_REQUESTS
        plan = self.plan
        self.wall_ms = wall_ms
        self.det = det
        self.preempting = req.preempting
        omit = req.omit | plan.omit
        force_off = req.force_off
        hold = req.hold
        target = req.target
        self.seq.target = target
        if target:
            # Serve the target phases now and hold them: every other phase is
            # omitted and every other green forced off (a target phase is
            # served even when the plan omits it).
            omit = self.all_mask & ~target
            force_off |= self.green & ~target
            hold |= target
        if omit != self.omit_shown or req.ped_omit != self.ped_omit_shown:
            self._omit_events(now, omit, req.ped_omit, log)
        self.ped_omit = req.ped_omit
        pforce = force_off if req.force_code else 0
        # Coordination's permissive windows: not started, not logged as omits.
        omit |= req.window_omit & ~target
        self.no_walk = req.no_walk
        self._register_calls(now, det, omit, req.calls | target, log)
        if self.yellow | self.red_clear | self.reverting:
            self._advance_clearances(now, log)
        self.seq.start_phases(self, now, self.calls, omit, log)
        if self.green:
            self._time_greens(now, det.extend, det.fail_max, force_off, hold, omit,
                              pforce, req, log)

    def _omit_events(self, now, omit, ped_omit, log):
        changed = omit ^ self.omit_shown
        ped_changed = ped_omit ^ self.ped_omit_shown
        for p in self.site.phases:
            b = 1 << p
            if changed & b:
                log.append((now, ev.PHASE_OMIT_ON if omit & b else ev.PHASE_OMIT_OFF, p))
            if ped_changed & b and self.ped_mask & b:
                log.append((now, ev.PED_OMIT_ON if ped_omit & b else ev.PED_OMIT_OFF, p))
        self.omit_shown, self.ped_omit_shown = omit, ped_omit

    def _register_calls(self, now, det, omit, placed, log):
        not_green = ~self.green
        held = self.veh_call | self.open_calls
        # A call appears: a locking one is remembered, a non-locking one lasts
        # while its zone is occupied and is dropped (44) if it clears unserved.
        new = (det.locking_calls | det.calls) & not_green & ~held
        dropped = self.open_calls & ~det.calls & not_green & ~det.locking_calls
        if new or dropped:
            for p in self.site.phases:
                b = 1 << p
                if new & b:
                    log.append((now, ev.PHASE_CALL_REGISTERED, p))
                elif dropped & b:
                    log.append((now, ev.PHASE_CALL_DROPPED, p))
        self.veh_call |= det.locking_calls & not_green
        self.open_calls = det.calls & not_green & ~self.veh_call
        peds = det.ped_calls & ~self.ped_call
        # A button pressed while the walk is already showing needs no new call.
        if peds:
            for p in self.site.phases:
                b = 1 << p
                if peds & b:
                    if self.ped[p] == WALK:
                        peds &= ~b
                    else:
                        log.append((now, ev.PED_CALL_REGISTERED, p))
        self.ped_call |= peds | (self.recall_ped & not_green)
        recalled = self.recall_call | det.fail_min | det.fail_max
        self.raw_calls = (self.veh_call | det.calls | (recalled & not_green)
                          | self.ped_call | (placed & not_green))
        self.calls = self.raw_calls & ~omit

    def _advance_clearances(self, now, log):
        plan = self.plan
        for p in self.site.phases:
            i = self.interval[p]
            if i == YELLOW_CHANGE:
                if now - self.since[p] >= self.yellow_ms[p]:
                    b = 1 << p
                    self.yellow &= ~b
                    self.red_clear |= b
                    # Red revert counts from the end of the yellow.
                    self.revert_end[p] = now + plan.red_revert[p]
                    transition(self, p, RED_CLEAR, now, log)
            elif i == RED_CLEAR:
                if now - self.since[p] >= self.red_ms[p]:
                    b = 1 << p
                    self.red_clear &= ~b
                    if now < self.revert_end[p]:
                        self.reverting |= b
                        transition(self, p, RED_REVERT, now, log)
                    else:
                        transition(self, p, RED_REST, now, log)
                    self.seq.phase_inactive(p)
            elif i == RED_REVERT:
                if now >= self.revert_end[p]:
                    self.reverting &= ~(1 << p)
                    transition(self, p, RED_REST, now, log)

    def begin_green(self, p, now, log):
        """Phase p enters its initial interval (the sequencer chose it)."""
        plan = self.plan
        b = 1 << p
        transition(self, p, MIN_GREEN, now, log)
        self.green |= b
        initial = plan.min_green[p]
        det = self.det
        if det is not None:
            if plan.added_initial[p]:
                # Volume density: each actuation on red adds initial green,
                # up to the max initial, never below min green.
                earned = det.actuations[p] * plan.added_initial[p]
                initial = max(initial, min(plan.max_initial[p], earned))
            det.actuations[p] = 0
        self.min_end[p] = now + initial
        self.last_act[p] = now
        self.gap_end[p] = now + plan.passage[p]
        self.max_end[p] = -1
        self.min_done &= ~b
        self.checked &= ~b
        # The call this green serves is dropped (44) at its start, after its 1:
        # ATSPM pairs each 43 with the next 44 to time the phase's wait.
        served = (self.veh_call | self.open_calls) & b
        self.veh_call &= ~b
        self.open_calls &= ~b
        if served:
            log.append((now, ev.PHASE_CALL_DROPPED, p))
        if self.ped_call & b and self.ped_mask & b and not self.ped_omit & b:
            self._begin_walk(p, now, log)

    def _begin_walk(self, p, now, log):
        self.ped_call &= ~(1 << p)
        ped_transition(self, p, WALK, now, log)
        self.ped_end[p] = now + self.plan.walk[p]

    def _time_greens(self, now, extend, det_fail_max, force_off, hold, omit, pforce, req, log):
        site, plan, seq = self.site, self.plan, self.seq
        green = self.green
        extend |= (self.recall_max | det_fail_max) & green
        calls = self.calls
        barrier_demand = seq.barrier_demand(calls, green | self.yellow | self.red_clear)
        if hold != self.hold:
            self._hold_events(now, hold, log)
        # Preemption entry: running intervals of the phases it ends are cut to
        # the lesser of their own value and the preempt's, never below the floor.
        trunc = self.all_mask & ~req.target if req.preempting else 0
        floors = site.floors
        max_times = self.max_times
        if max_times is None and req.free_max:
            # A pattern that inhibits max green, while its cycle timer is not
            # running (suspended by a preempt, or not yet entered): max 1
            # keeps every call served until the timer runs again.
            max_times = plan.max1
        cands = []
        any_ready = False
        for r in range(len(site.rings)):
            p = seq.ring_phase[r]
            if not p:
                continue
            b = 1 << p
            if not green & b:
                continue
            if extend & b:
                self.last_act[p] = now
            demand = calls & (site.conflicts[p] | barrier_demand) & ~b
            if demand and not self.checked & b:
                # Phase check: a conflicting call meets this green; the max timer starts.
                self.checked |= b
                self.check_at[p] = now
                log.append((now, ev.PHASE_CHECK, p))
            if demand and self.max_end[p] < 0 and max_times is not None:
                self.max_end[p] = now + max_times[p]
            if trunc & b and req.min_green >= 0:
                cap = self.since[p] + max(floors.min_green, req.min_green)
                if cap < self.min_end[p]:
                    self.min_end[p] = cap
            if plan.density & b and self.checked & b:
                self.gap_end[p] = self.last_act[p] + self._reduced_gap(p, now)
            else:
                self.gap_end[p] = self.last_act[p] + plan.passage[p]
            if self.min_done & b:
                want = EXTENSION if demand else GREEN_REST
                if self.interval[p] != want:
                    transition(self, p, want, now, log)
            elif now >= self.min_end[p]:
                self.min_done |= b
                transition(self, p, EXTENSION if demand else GREEN_REST, now, log)
            if site.has_ped[p]:
                self._time_ped(p, now, demand, trunc & b, req, log)
            reason = 0
            if pforce & b:
                reason = req.force_code
            elif now >= self.gap_end[p]:
                reason = ev.PHASE_GAP_OUT
            elif self.max_end[p] >= 0 and now >= self.max_end[p]:
                reason = ev.PHASE_MAX_OUT
            elif force_off & b:
                reason = ev.PHASE_FORCE_OFF
            elif omit & b:
                reason = ev.PHASE_FORCE_OFF
            free = bool(self.min_done & b and self.ped[p] == DONT_WALK and not hold & b)
            ready = bool(free and reason and (demand or site.rest_in_red))
            any_ready |= ready
            cands.append((r, p, ready, reason, free))
        # Most steps nothing can end: skip the sequencer's barrier bookkeeping.
        if any_ready or seq.ready_latch & green:
            for p, reason, nxt in seq.choose_ends(self, cands, calls, force_off):
                self._end_green(p, reason, nxt, now, req, log)

    def _reduced_gap(self, p, now):
        """Gap reduction: after the time before reduction (counted from the
        phase check), the allowed gap falls linearly from the passage time to
        the minimum gap over the time to reduce."""
        plan = self.plan
        passage, low = plan.passage[p], plan.min_gap[p]
        t = now - self.check_at[p] - plan.before_reduction[p]
        if t <= 0:
            return passage
        span = plan.to_reduce[p]
        if t >= span:
            return low
        return passage - (passage - low) * t // span

    def _time_ped(self, p, now, demand, trunc, req, log):
        s = self.ped[p]
        floors = self.site.floors
        if s == WALK:
            end = self.ped_end[p]
            if trunc and req.walk >= 0:
                end = min(end, self.ped_since[p] + max(floors.min_walk, req.walk))
            if now >= end:
                ped_transition(self, p, PED_CLEAR, now, log)
                clear = self.plan.ped_clear[p]
                if trunc and req.ped_clear >= 0:
                    clear = min(clear, max(floors.min_ped_clear, req.ped_clear))
                self.ped_end[p] = now + clear
        elif s == PED_CLEAR:
            end = self.ped_end[p]
            if trunc and req.ped_clear >= 0:
                end = min(end, self.ped_since[p] + max(floors.min_ped_clear, req.ped_clear))
            if now >= end:
                ped_transition(self, p, DONT_WALK, now, log)
        elif s == DONT_WALK and self.ped_call & (1 << p) and not demand \
                and not (self.no_walk | self.ped_omit) & (1 << p):
            # Rest in walk recycle: a resting green serves a late ped call.
            self._begin_walk(p, now, log)

    def _hold_events(self, now, hold, log):
        changed = hold ^ self.hold
        for p in self.site.phases:
            b = 1 << p
            if changed & b:
                log.append((now, ev.PHASE_HOLD_ON if hold & b else ev.PHASE_HOLD_OFF, p))
        self.hold = hold

    def _end_green(self, p, reason, nxt, now, req, log):
        b = 1 << p
        plan = self.plan
        self.green &= ~b
        self.yellow |= b
        # A clearance override only lengthens: yellow and red are never shortened.
        self.yellow_ms[p] = max(plan.yellow[p], req.yellow)
        self.red_ms[p] = max(plan.red_clear[p], req.red_clear)
        self.seq.green_ended(p, nxt)
        transition(self, p, YELLOW_CHANGE, now, log, reason)


__all__ = ["Controller", "INTERVAL_NAMES", "RED_REST", "MIN_GREEN", "EXTENSION",
           "GREEN_REST", "YELLOW_CHANGE", "RED_CLEAR", "RED_REVERT", "GREENS", "MIN_GREEN"]
