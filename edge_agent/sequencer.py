"""The ring/barrier sequencer: which phase each ring times next, and when the
rings cross a barrier together.

Each ring runs its phases in plan sequence within the current barrier group;
a ring's next phase is committed when its green ends (at yellow onset); all
rings cross a barrier together once every ring is done in its group (the
barrier commitment), and a ring with no call in the new group times its
dual-entry phase alongside the others. The sequencer decides order; the
controller (controller.py) times each phase's intervals.
"""

from edge_agent import events as ev


class Sequencer:
    """Ring positions, the current barrier group and the barrier commitment."""

    def __init__(self, site):
        self.site = site
        nr = len(site.rings)
        self.ring_phase = [0] * nr    # 0: ring idle (no phase timing)
        self.ring_pos = [-1] * nr     # index of the last phase started in the group
        self.ring_next = [0] * nr     # phase chosen when the active one ended, 0: barrier
        self.group = 0
        self.crossing = False         # barrier termination committed
        self.ready_latch = 0          # barrier-bound greens remembered ready
        self.target = 0               # preempt target phases (requests.Requests.target)
        self.after = []

    def use(self, plan):
        """Precompute, for the plan's sequence, after[r][g][i]: the phases of
        ring r in group g at sequence index >= i."""
        self.plan = plan
        site = self.site
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

    # -- choosing phases -------------------------------------------------------

    def next_in_group(self, r, calls):
        """The next called phase of ring r after its position in this group, or 0.

        A preempt's target phase is served wherever the ring stands in the
        group: its call is the only one left (every other phase is omitted).
        """
        seq = self.plan.ring_groups[r][self.group]
        for i in range(0 if self.target else self.ring_pos[r] + 1, len(seq)):
            p = seq[i]
            if calls & (1 << p):
                return p
        return 0

    def next_group(self, calls):
        """The next barrier group (cyclic, current one last) holding a call, or -1."""
        site = self.site
        n = len(site.groups)
        for k in range(1, n + 1):
            g = (self.group + k) % n
            for p in site.groups[g]:
                if calls & (1 << p):
                    return g
        return -1

    def barrier_demand(self, calls, timing):
        """Calls only a barrier crossing can serve: in another group, already
        passed in its ring's sequence, or timing now."""
        reach = 0
        for r in range(len(self.site.rings)):
            reach |= self.after[r][self.group][self.ring_pos[r] + 1]
        return calls & ~(reach & ~timing)

    # -- starting phases -------------------------------------------------------

    def start_phases(self, ctl, now, calls, omit, log):
        """Idle rings start their next phase; all idle rings cross a barrier."""
        site = self.site
        timing = ctl.green | ctl.yellow | ctl.red_clear
        reverting = ctl.reverting
        if not self.crossing:
            for r in range(len(site.rings)):
                if self.ring_phase[r]:
                    continue
                p = self.next_in_group(r, calls)
                if p and not site.conflicts[p] & timing and not reverting & (1 << p):
                    self._enter(ctl, r, p, now, log)
                    timing |= 1 << p
        if timing:
            return
        # Every ring is idle and every phase is red: the barrier may be crossed.
        ctl.apply_pending(now, log)
        calls = ctl.calls          # a new plan may change the calls it keeps
        g = self.next_group(calls)
        if g < 0:
            self.crossing = False          # no demand: rest in red
            return
        plan = ctl.plan
        firsts = []
        ready = False
        for r in range(len(site.rings)):
            first = 0
            for q in plan.ring_groups[r][g]:
                if calls & (1 << q):
                    first = q
                    break
            firsts.append(first)
            if first and not reverting & (1 << first):
                ready = True
        if not ready:
            return                         # every first phase is in red revert: wait
        if self.crossing or g != self.group:
            log.append((now, ev.BARRIER_TERMINATION, self.group + 1))
        self.crossing = False
        self.group = g
        ctl.group_entered_at(now)
        started = 0
        for r in range(len(site.rings)):
            self.ring_pos[r] = -1
        for r in range(len(site.rings)):
            p = firsts[r]
            # A phase in red revert is not started yet: its ring joins the
            # group as soon as the revert ends.
            if p and not site.conflicts[p] & started and not reverting & (1 << p):
                self._enter(ctl, r, p, now, log)
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
                if plan.dual_entry & b and not omit & b and not reverting & b \
                        and not site.conflicts[q] & started:
                    self._enter(ctl, r, q, now, log)
                    started |= b
                    break

    def start_group(self, ctl, phases, now, log):
        """Start-up: enter the start-up phases' barrier group."""
        site = self.site
        self.group = site.group_of[phases[0]]
        for p in phases:
            r = site.ring_of[p]
            self.ring_pos[r] = self.plan.ring_groups[r][self.group].index(p)
            self.ring_phase[r] = p
            self.ready_latch &= ~(1 << p)
            ctl.begin_green(p, now, log)

    def _enter(self, ctl, r, p, now, log):
        seq = self.plan.ring_groups[r][self.group]
        i = seq.index(p)
        # A phase passed over with a call waiting (omitted now) is skipped (14).
        skipped = ctl.raw_calls & ~ctl.calls
        if skipped and not self.target:
            for j in range(self.ring_pos[r] + 1, i):
                if skipped & (1 << seq[j]):
                    log.append((now, ev.PHASE_SKIPPED, seq[j]))
        self.ring_pos[r] = i
        self.ring_phase[r] = p
        self.ready_latch &= ~(1 << p)
        ctl.begin_green(p, now, log)

    # -- ending greens ---------------------------------------------------------

    def choose_ends(self, ctl, candidates, calls, force_off):
        """Which ready greens end now, and toward what.

        candidates: [(ring, phase, ready, reason, free)] for each ring timing a
        green. Returns [(phase, reason, next)]: next is the phase the ring
        times next in this group, 0 for the barrier, -1 to wait at the barrier
        in red without committing the crossing. Greens ending within the group
        come first.
        """
        site = self.site
        barrier_ready = True
        blocked = 0       # phases an idle ring waits to start, held off by a conflict
        for r in range(len(site.rings)):
            p = self.ring_phase[r]
            if not p:
                if not self.crossing:
                    q = self.next_in_group(r, calls)
                    if q:
                        blocked |= 1 << q
                        barrier_ready = False
            elif not ctl.green & (1 << p) and self.ring_next[r]:
                barrier_ready = False       # clearing toward a phase in this group
        in_group = []
        at_barrier = []
        barrier_greens = 0
        for r, p, ready, reason, free in candidates:
            b = 1 << p
            nxt = 0 if self.crossing else self.next_in_group(r, calls)
            if nxt:
                barrier_ready = False       # this ring still has phases in the group
                if ready:
                    in_group.append((p, reason, nxt))
                continue
            if ready and (site.conflicts[p] & blocked or force_off & b):
                # A force-off is absolute: the green ends now and the ring waits
                # for the others at the barrier in red. So does a green whose
                # explicit conflict holds another ring's next phase off. Neither
                # commits the barrier crossing.
                in_group.append((p, reason, -1))
                continue
            # Barrier-bound: this ring has nothing left in the group.
            if ready and not self.plan.simultaneous_gap_out:
                self.ready_latch |= b
            if not ready and self.ready_latch & b and free:
                ready = True
                reason = reason or ev.PHASE_GAP_OUT
            if ready:
                barrier_greens |= b
                at_barrier.append((p, reason, 0))
            else:
                barrier_ready = False
        # Once a crossing is committed, a ring that reaches the barrier later
        # ends its green as soon as it is ready, without waiting for the others.
        if barrier_greens and (barrier_ready or self.crossing):
            self.crossing = True
            return in_group + at_barrier
        return in_group

    def green_ended(self, p, nxt):
        """A green ended toward `nxt` (see choose_ends)."""
        self.ready_latch &= ~(1 << p)
        self.ring_next[self.site.ring_of[p]] = max(nxt, 0)

    def phase_inactive(self, p):
        """Phase p finished its red clearance: its ring is idle."""
        self.ring_phase[self.site.ring_of[p]] = 0

