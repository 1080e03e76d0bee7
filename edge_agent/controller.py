"""The ring-barrier sequencer: a fully actuated NEMA-style dual-ring controller.

Each phase is in one interval at a time: RED (inactive), GREEN, YELLOW or
RED_CLEAR. Each ring runs its phases in plan sequence within the current
barrier group; all rings cross a barrier together. Greens time min green, then
extend by actuations for the passage time, and end by gap-out, max-out or
force-off once a waiting call needs them to end. Pedestrian walk and
clearance hold the vehicle green. Every transition logs its Indiana event.

Phase sets are bitmasks (bit p = phase p) so a step costs a few dozen integer
operations. External requests (force-off, hold, omit) arrive as masks each
step: coordination and preemption drive the controller through them.
"""

from edge_agent import events as ev
from edge_agent.indications import (MAX_PHASES, RED, YELLOW, GREEN, DONT_WALK,
                                    WALK, PED_CLEAR, PED_DARK)
from edge_agent.plan import RECALL_MIN, RECALL_MAX, RECALL_PED
from edge_agent.coordination import Coordinator

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

I_RED = const(0)
I_GREEN = const(1)
I_YELLOW = const(2)
I_RED_CLEAR = const(3)

NO_RING = const(-1)

INTERVAL_NAMES = ("red", "green", "yellow", "red_clear")


class Controller:
    """Phase and ring state of one intersection under one active plan."""

    def __init__(self, site, plan):
        self.site = site
        n = MAX_PHASES + 1
        self.interval = [I_RED] * n
        self.since = [0] * n          # ms the current interval began
        self.min_end = [0] * n
        self.gap_end = [0] * n
        self.max_end = [-1] * n       # -1: max timer not started
        self.revert_end = [0] * n     # no green before this (red revert after yellow)
        self.ped = [DONT_WALK] * n
        self.ped_end = [0] * n
        self.green = 0                # masks of phases per interval
        self.yellow = 0
        self.red_clear = 0
        self.min_done = 0
        self.ready_latch = 0          # barrier-bound greens remembered ready
        self.veh_call = 0             # latched vehicle calls
        self.open_calls = 0           # non-locking calls present now
        self.ped_call = 0             # latched pedestrian calls
        self.calls = 0                # all calls seen by the last step
        self.hold = 0
        nr = len(site.rings)
        self.ring_phase = [0] * nr    # 0: ring idle (no phase timing)
        self.ring_pos = [-1] * nr     # index of the last phase started in the group
        self.ring_next = [0] * nr     # phase chosen when the active one ended, 0: barrier
        self.group = 0
        self.crossing = False         # barrier termination committed
        self.pending = None
        self.plan = None
        self.wall_ms = None
        self.no_walk = 0              # greens where coordination forbids a walk recycle
        self._use(plan)

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
        self.coord = Coordinator(site, k) if k is not None else None
        self.max_times = plan.max_green
        if k is not None:
            rec_call |= k.coord_mask
            rec_max |= k.coord_mask
            self.max_times = {"inhibit": None, "max1": plan.max1, "max2": plan.max2}[k.max_mode]
        self.recall_call, self.recall_max, self.recall_ped = rec_call, rec_max, rec_ped
        ped_mask = 0
        for p in site.phases:
            if site.has_ped[p]:
                ped_mask |= 1 << p
        self.ped_mask = ped_mask
        # after[r][g][i]: phases of ring r in group g at sequence index >= i.
        self.after = []
        for r in range(len(site.rings)):
            per_group = []
            for g in range(len(site.groups)):
                seq = plan.ring_groups[r][g]
                masks = [0] * (len(seq) + 1)
                for i in range(len(seq) - 1, -1, -1):
                    masks[i] = masks[i + 1] | (1 << seq[i])
                per_group.append(masks)
            self.after.append(per_group)

    def set_plan(self, plan, now, log):
        """Queue `plan`; it takes effect at the next barrier crossing (a safe point)."""
        self.pending = plan
        log.append((now, ev.PLAN_PENDING, 0))

    # -- outputs -------------------------------------------------------------

    def vehicle_indications(self):
        out = [RED] * (MAX_PHASES + 1)
        for p in self.site.phases:
            i = self.interval[p]
            if i == I_GREEN:
                out[p] = GREEN
            elif i == I_YELLOW:
                out[p] = YELLOW
        out[0] = 0
        return out

    def timers(self, p, now):
        """Phase p's interval and what is left of its timers (ms), for status views."""
        i = self.interval[p]
        out = {"interval": INTERVAL_NAMES[i], "elapsed_ms": now - self.since[p]}
        if i == I_GREEN:
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
        site = self.site
        self.wall_ms = wall_ms
        self._apply_pending(now, log)
        omit = self.plan.omit
        starts = [p for p in site.startup_phases if not omit & (1 << p)]
        if starts:
            self.group = site.group_of[starts[0]]
            for p in starts:
                r = site.ring_of[p]
                self.ring_pos[r] = self.plan.ring_groups[r][self.group].index(p)
                self._begin_green(p, now, log)
            self._enter_coordination(now, log)

    def step(self, now, det, force_off, hold, omit, log, wall_ms=None):
        """Advance every phase and ring to `now`.

        det: the conditioned detector masks (detectors.Detectors).
        force_off, hold, omit: request masks from outside (e.g. preemption).
        wall_ms: the wall clock, if known, for the coordination cycle timer.
        """
        site, plan = self.site, self.plan
        self.wall_ms = wall_ms
        omit |= plan.omit
        if self.coord is not None and self.coord.entered:
            f, o, self.no_walk = self.coord.step(now, wall_ms, self.green, self.since,
                                                  self.ped_call | det.ped_calls, log)
            force_off |= f
            omit |= o
        else:
            self.no_walk = 0
        self._register_calls(now, det, omit, log)
        self._advance_clearances(now, log)
        self._start_phases(now, omit, log)
        self._time_greens(now, det.extend, det.fail_max, force_off, hold, omit, log)

    def _register_calls(self, now, det, omit, log):
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
        for p in self.site.phases:
            b = 1 << p
            if peds & b:
                if self.ped[p] == WALK:
                    peds &= ~b
                else:
                    log.append((now, ev.PED_CALL_REGISTERED, p))
        self.ped_call |= peds | (self.recall_ped & not_green)
        recalled = self.recall_call | det.fail_min | det.fail_max
        self.calls = (self.veh_call | det.calls | (recalled & not_green)
                      | self.ped_call) & ~omit

    def _advance_clearances(self, now, log):
        plan = self.plan
        for p in self.site.phases:
            i = self.interval[p]
            if i == I_YELLOW:
                if now - self.since[p] >= plan.yellow[p]:
                    b = 1 << p
                    self.yellow &= ~b
                    self.red_clear |= b
                    self.interval[p] = I_RED_CLEAR
                    self.since[p] = now
                    self.revert_end[p] = now + plan.red_revert[p]
                    log.append((now, ev.PHASE_END_YELLOW, p))
                    log.append((now, ev.PHASE_BEGIN_RED_CLEAR, p))
            elif i == I_RED_CLEAR:
                if now - self.since[p] >= plan.red_clear[p]:
                    self.red_clear &= ~(1 << p)
                    self.interval[p] = I_RED
                    self.since[p] = now
                    log.append((now, ev.PHASE_END_RED_CLEAR, p))
                    log.append((now, ev.PHASE_INACTIVE, p))
                    self.ring_phase[self.site.ring_of[p]] = 0

    def _next_in_group(self, r, omit):
        """The next called phase of ring r after its position in this group, or 0."""
        seq = self.plan.ring_groups[r][self.group]
        calls = self.calls & ~omit
        for i in range(self.ring_pos[r] + 1, len(seq)):
            p = seq[i]
            if calls & (1 << p):
                return p
        return 0

    def _start_phases(self, now, omit, log):
        """Idle rings start their next phase; all idle rings cross a barrier."""
        site = self.site
        timing = self.green | self.yellow | self.red_clear
        if not self.crossing:
            for r in range(len(site.rings)):
                if self.ring_phase[r]:
                    continue
                p = self._next_in_group(r, omit)
                # A phase in red revert waits: its ring holds until it may show green.
                if p and not site.conflicts[p] & timing and now >= self.revert_end[p]:
                    self._enter(r, p, now, log)
                    timing |= 1 << p
        if timing:
            return
        # Every ring is idle and every phase is red: the barrier may be crossed.
        self._apply_pending(now, log)
        g = self._next_group(omit)
        if g < 0:
            self.crossing = False          # no demand: rest in red
            return
        if self.crossing or g != self.group:
            log.append((now, ev.BARRIER_TERMINATION, self.group + 1))
        self.crossing = False
        self.group = g
        self._enter_coordination(now, log)
        plan = self.plan
        started = 0
        firsts = []
        for r in range(len(site.rings)):
            self.ring_pos[r] = -1
            firsts.append(self._next_in_group(r, omit))
        for r in range(len(site.rings)):
            p = firsts[r]
            if p and not site.conflicts[p] & started and now >= self.revert_end[p]:
                self._enter(r, p, now, log)
                started |= 1 << p
        if not started:
            return
        # Dual entry: a ring with no call times its dual-entry phase alongside
        # the called phases of the other rings.
        for r in range(len(site.rings)):
            if firsts[r]:
                continue
            for q in plan.ring_groups[r][g]:
                b = 1 << q
                if plan.dual_entry & b and not omit & b and not site.conflicts[q] & started \
                        and now >= self.revert_end[q]:
                    self._enter(r, q, now, log)
                    started |= b
                    break

    def _enter(self, r, p, now, log):
        self.ring_pos[r] = self.plan.ring_groups[r][self.group].index(p)
        self._begin_green(p, now, log)

    def _next_group(self, omit):
        """The next barrier group (cyclic, current one last) holding a call, or -1."""
        site = self.site
        n = len(site.groups)
        calls = self.calls & ~omit
        for k in range(1, n + 1):
            g = (self.group + k) % n
            for p in site.groups[g]:
                if calls & (1 << p):
                    return g
        return -1

    def _enter_coordination(self, now, log):
        if self.coord is not None and not self.coord.entered:
            self.coord.enter(now, self.wall_ms, self.group, log)

    def _apply_pending(self, now, log):
        if self.pending is not None:
            self._use(self.pending)
            self.pending = None
            log.append((now, ev.PLAN_ACTIVATED, 0))

    def _begin_green(self, p, now, log):
        plan = self.plan
        b = 1 << p
        self.interval[p] = I_GREEN
        self.since[p] = now
        self.green |= b
        self.ring_phase[self.site.ring_of[p]] = p
        self.min_end[p] = now + plan.min_green[p]
        self.gap_end[p] = now + plan.passage[p]
        self.max_end[p] = -1
        self.min_done &= ~b
        self.ready_latch &= ~b
        served = (self.veh_call | self.open_calls) & b
        self.veh_call &= ~b
        self.open_calls &= ~b
        log.append((now, ev.PHASE_ON, p))
        log.append((now, ev.PHASE_BEGIN_GREEN, p))
        if served:
            # The green serves the call: it is dropped (44) here, as a field
            # controller logs it, so every 43 pairs with a 44 and ATSPM counts
            # the wait from 43 to this green as valid.
            log.append((now, ev.PHASE_CALL_DROPPED, p))
        if self.ped_call & b and self.ped_mask & b:
            self._begin_walk(p, now, log)

    def _begin_walk(self, p, now, log):
        self.ped_call &= ~(1 << p)
        self.ped[p] = WALK
        self.ped_end[p] = now + self.plan.walk[p]
        log.append((now, ev.PED_BEGIN_WALK, p))

    def _time_greens(self, now, extend, det_fail_max, force_off, hold, omit, log):
        site, plan = self.site, self.plan
        green = self.green
        if not green:
            return
        extend |= (self.recall_max | det_fail_max) & green
        calls = self.calls
        # Calls only a barrier crossing can serve: in another group, or already
        # passed in this ring's sequence, or currently timing.
        reach = 0
        for r in range(len(site.rings)):
            reach |= self.after[r][self.group][self.ring_pos[r] + 1]
        reach &= ~(green | self.yellow | self.red_clear)
        barrier_demand = calls & ~reach
        self._hold_events(now, hold, log)
        barrier_ready = True
        barrier_greens = 0
        blocked = 0       # phases an idle ring waits to start, held off by a conflict
        if not self.crossing:
            for r in range(len(site.rings)):
                if not self.ring_phase[r]:
                    q = self._next_in_group(r, omit)
                    if q:
                        blocked |= 1 << q
                        barrier_ready = False
        ends = []
        for r in range(len(site.rings)):
            p = self.ring_phase[r]
            if not p:
                continue
            b = 1 << p
            if not green & b:
                if self.ring_next[r]:
                    barrier_ready = False   # clearing toward a phase in this group
                continue
            if extend & b:
                self.gap_end[p] = now + plan.passage[p]
            if not self.min_done & b and now >= self.min_end[p]:
                self.min_done |= b
                log.append((now, ev.PHASE_MIN_COMPLETE, p))
            demand = calls & (site.conflicts[p] | barrier_demand) & ~b
            if demand and self.max_end[p] < 0 and self.max_times is not None:
                self.max_end[p] = now + self.max_times[p]
            self._time_ped(p, now, demand, log)
            reason = 0
            if now >= self.gap_end[p]:
                reason = ev.PHASE_GAP_OUT
            elif self.max_end[p] >= 0 and now >= self.max_end[p]:
                reason = ev.PHASE_MAX_OUT
            elif force_off & b:
                reason = ev.PHASE_FORCE_OFF
            elif omit & b:
                reason = ev.PHASE_FORCE_OFF
            free = (self.min_done & b and self.ped[p] == DONT_WALK and not hold & b)
            wants_out = demand or site.rest_in_red
            ready = bool(free and reason and wants_out)
            nxt = 0 if self.crossing else self._next_in_group(r, omit)
            if nxt:
                barrier_ready = False       # this ring still has phases in the group
                if ready:
                    ends.append((p, reason, nxt))
                continue
            if ready and (site.conflicts[p] & blocked or force_off & b):
                # A force-off is absolute: the green ends now and the ring waits
                # for the others at the barrier in red. So does a green whose
                # explicit conflict holds another ring's next phase off. Neither
                # commits the barrier crossing.
                ends.append((p, reason, -1))
                continue
            # Barrier-bound: this ring has nothing left in the group.
            if ready and not plan.simultaneous_gap_out:
                self.ready_latch |= b
            if not ready and self.ready_latch & b and free:
                ready = True
                reason = reason or ev.PHASE_GAP_OUT
            if ready:
                barrier_greens |= b
                ends.append((p, reason, 0))
            else:
                barrier_ready = False
        for p, reason, nxt in ends:
            if nxt:
                self._end_green(p, reason, max(nxt, 0), now, log)
        # Once a crossing is committed, a ring that reaches the barrier later
        # ends its green as soon as it is ready, without waiting for the others.
        if barrier_greens and (barrier_ready or self.crossing):
            self.crossing = True
            for p, reason, nxt in ends:
                if not nxt:
                    self._end_green(p, reason, 0, now, log)

    def _time_ped(self, p, now, demand, log):
        s = self.ped[p]
        if s == WALK and now >= self.ped_end[p]:
            self.ped[p] = PED_CLEAR
            self.ped_end[p] = now + self.plan.ped_clear[p]
            log.append((now, ev.PED_BEGIN_CLEAR, p))
        elif s == PED_CLEAR and now >= self.ped_end[p]:
            self.ped[p] = DONT_WALK
            log.append((now, ev.PED_BEGIN_DONT_WALK, p))
        elif s == DONT_WALK and self.ped_call & (1 << p) and not demand \
                and not self.no_walk & (1 << p):
            # Rest in walk recycle: a resting green serves a late ped call.
            self._begin_walk(p, now, log)

    def _hold_events(self, now, hold, log):
        changed = hold ^ self.hold
        if changed:
            for p in self.site.phases:
                b = 1 << p
                if changed & b:
                    log.append((now, ev.PHASE_HOLD_ON if hold & b else ev.PHASE_HOLD_OFF, p))
            self.hold = hold

    def _end_green(self, p, reason, nxt, now, log):
        b = 1 << p
        self.green &= ~b
        self.yellow |= b
        self.ready_latch &= ~b
        self.interval[p] = I_YELLOW
        self.since[p] = now
        self.ring_next[self.site.ring_of[p]] = nxt
        log.append((now, reason, p))
        log.append((now, ev.PHASE_GREEN_TERMINATION, p))
        log.append((now, ev.PHASE_BEGIN_YELLOW, p))
