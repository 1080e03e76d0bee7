"""Coordination: a cycle timer locked to the wall clock, force-offs from splits.

A coordinated pattern gives a cycle length, an offset and a split per phase.
The local cycle timer runs from 0 at the reference point - the start of the
coordinated phases' barrier group - which falls `offset` after each cycle
boundary counted from local midnight. Each ring lays its splits out in plan
sequence from there. Every step the Coordinator turns the cycle position into
request masks for the controller:

- omit: a non-coordinated phase outside its permissive window - the span
  from the coordinated phase's yield point to the last moment the phase can
  still time its minimum service (min green, or walk + pedestrian clearance
  when a pedestrian waits) before its force-off - is not started, and its
  call does not pull the coordinated phases off their green;
- force_off: a non-coordinated green ends at its force-off (fixed: a fixed
  point in the cycle; floating: its split after it began, never later than
  the fixed point). Coordinated phases are always on max recall and always
  forced: they end only when a permitted call waits, so they rest in green
  until their yield point and whenever nothing else is permitted.

Unused time returns to the coordinated phases (they come back early and are
held). When the offset or cycle changes the timer corrects toward the new
offset by short-way (each cycle at most a fraction longer or shorter, never
shortening a coordinated phase below its min green plus clearances and
pedestrian service) or dwell (lengthening only).
"""

from edge_agent import events as ev
from edge_agent.validate import is_int, ms_s

DAY_MS = 86_400_000
COORD_KEYS = ("pattern", "cycle", "offset", "splits", "coordinated", "force_mode",
              "max_mode", "correction", "max_correction")


class Pattern:
    """A validated coordination pattern; times in ms, lists indexed by phase."""
    __slots__ = ("number", "cycle", "offset", "splits", "coordinated", "coord_mask",
                 "floating", "max_mode", "dwell", "max_correction", "group",
                 "start", "force_off", "ring_yield", "rel_force_off", "need", "ped", "min_green",
                 "shrink")


def parse_coordination(c, d, site, pl, pre):
    """Parse and check `d` (the plan's "coordination" object) against the plan."""
    path = pre + "coordination"
    d = c.obj(d, path)
    if d is None:
        return None
    c.unknown_keys(d, COORD_KEYS, path)
    k = Pattern()
    k.number = c.integer(d.get("pattern", 1), path + ".pattern", 1, 253) or 1
    k.cycle = c.seconds(d, "cycle", path, 30.0, 999.0)
    k.offset = c.seconds(d, "offset", path, 0.0, 999.0)
    k.floating = c.text(d, "force_mode", path, default="fixed", choices=("fixed", "floating")) == "floating"
    k.max_mode = c.text(d, "max_mode", path, default="inhibit", choices=("inhibit", "max1", "max2"))
    k.dwell = c.text(d, "correction", path, default="shortway", choices=("shortway", "dwell")) == "dwell"
    frac = d.get("max_correction", 0.17)
    if not isinstance(frac, (int, float)) or frac is True or frac is False or not 0.0 < frac <= 0.5:
        c.error(path + ".max_correction", "%r is not a fraction of the cycle in (0, 0.5]" % (frac,))
        frac = 0.17
    k.max_correction = frac
    n = len(pl.min_green)
    k.splits = [0] * n
    splits = c.obj(d.get("splits"), path + ".splits") if "splits" in d else None
    if "splits" not in d:
        c.error(path + ".splits", "is required (seconds per phase)")
    for key in sorted((splits or {}).keys()):
        p = int(key) if isinstance(key, str) and key.isdigit() and len(key) < 3 else None
        if p is None or p not in site.phases:
            c.error(path + ".splits", "%r is not a phase of this site" % (key,))
            continue
        k.splits[p] = c.seconds(splits, key, path + ".splits", 0.0, 999.0) or 0
    k.coordinated = []
    k.coord_mask = 0
    for j, p in enumerate(c.array(d.get("coordinated", []), path + ".coordinated") or ()):
        if not is_int(p) or p not in site.phases:
            c.error("%s.coordinated[%d]" % (path, j), "%s is not a phase of this site" % (p,))
            continue
        k.coordinated.append(p)
        k.coord_mask |= 1 << p
    if c.errors or k.cycle is None or k.offset is None:
        return None
    _check(c, site, pl, k, path)
    if c.errors:
        return None
    _layout(site, pl, k)
    return k


def _check(c, site, pl, k, path):
    if not k.coordinated:
        c.error(path + ".coordinated", "names no coordinated phase")
        return
    rings = []
    for p in k.coordinated:
        r = site.ring_of[p]
        if r in rings:
            c.error(path + ".coordinated", "two coordinated phases in ring %d" % (r + 1))
        rings.append(r)
        if site.group_of[p] != site.group_of[k.coordinated[0]]:
            c.error(path + ".coordinated", "phases %s are not in one barrier group" % (k.coordinated,))
        if pl.omit & (1 << p):
            c.error(path + ".coordinated", "phase %d is omitted in this plan" % p)
    if len(rings) != len(site.rings):
        c.error(path + ".coordinated", "needs one coordinated phase in each of the %d rings"
                % len(site.rings))
    if k.offset >= k.cycle:
        c.error(path + ".offset", "%s s is not below the cycle %s s" % (ms_s(k.offset), ms_s(k.cycle)))
    k.need = [0] * len(k.splits)
    k.ped = [0] * len(k.splits)
    k.min_green = pl.min_green
    for p in site.phases:
        if site.has_ped[p]:
            k.ped[p] = pl.walk[p] + pl.ped_clear[p]
        s = k.splits[p]
        if pl.omit & (1 << p):
            if s:
                c.error("%s.splits.%d" % (path, p), "phase %d is omitted but has a %s s split" % (p, ms_s(s)))
            continue
        need = pl.min_green[p]
        if site.has_ped[p]:
            need = max(need, pl.walk[p] + pl.ped_clear[p])
        k.need[p] = need
        if s < need + pl.yellow[p] + pl.red_clear[p]:
            c.error("%s.splits.%d" % (path, p),
                    "%s s does not cover min green/ped service %s s + yellow %s s + red clearance %s s"
                    % (ms_s(s), ms_s(need), ms_s(pl.yellow[p]), ms_s(pl.red_clear[p])))
    for r, ring in enumerate(site.rings):
        total = sum(k.splits[p] for p in ring)
        if total != k.cycle:
            c.error(path + ".splits", "ring %d splits add up to %s s, not the cycle %s s"
                    % (r + 1, ms_s(total), ms_s(k.cycle)))
    for g in range(len(site.groups)):
        sums = [sum(k.splits[p] for p in ring if site.group_of[p] == g) for ring in site.rings]
        if len(set(sums)) > 1:
            c.error(path + ".splits", "barrier group %d does not line up between rings: %s s"
                    % (g + 1, ", ".join(ms_s(x) for x in sums)))


def _layout(site, pl, k):
    """Nominal start and force-off of every phase, and each ring's yield point (ms).

    Cycle position 0 is the start of the coordinated phases' barrier group;
    each ring lays out its splits in plan sequence from there.
    """
    n = len(k.splits)
    k.start = [0] * n
    k.force_off = [0] * n
    k.rel_force_off = [0] * n
    k.ring_yield = [0] * len(site.rings)
    k.group = site.group_of[k.coordinated[0]]
    ngroups = len(site.groups)
    for r in range(len(site.rings)):
        t = 0
        for i in range(ngroups):
            g = (k.group + i) % ngroups
            for p in pl.ring_groups[r][g]:
                k.start[p] = t
                k.force_off[p] = t + k.splits[p] - pl.yellow[p] - pl.red_clear[p]
                if k.coord_mask & (1 << p):
                    k.ring_yield[r] = k.force_off[p]
                t += k.splits[p]
        for p in site.rings[r]:
            k.rel_force_off[p] = (k.force_off[p] - k.ring_yield[r]) % k.cycle
    # How much a correction may shorten a cycle: coordinated greens keep their
    # min green / ped service; the rest of their split is what may go.
    k.shrink = min(k.splits[p] - pl.yellow[p] - pl.red_clear[p] - k.need[p] for p in k.coordinated)


def group_start(k, site, g):
    """Nominal cycle position where barrier group g begins (same in every ring)."""
    return min(k.start[p] for p in site.groups[g])


def _state(adj, dwell):
    """Coord cycle state for event 150 (the enumeration's): in step, add, subtract, dwell."""
    if adj == 0:
        return ev.COORD_IN_STEP
    if adj < 0:
        return ev.COORD_SUBTRACT
    return ev.COORD_DWELL if dwell else ev.COORD_ADD


def _cycles(amount, per_cycle):
    return (amount + per_cycle - 1) // per_cycle


class Coordinator:
    """The running cycle timer of one pattern and the masks it requests."""

    def __init__(self, site, pattern):
        self.site = site
        self.k = pattern
        self.cycle_start = 0         # mono ms where the current cycle began
        self.length = pattern.cycle  # this cycle's length, with its correction
        self.adjust = 0              # this cycle's correction (ms, + longer)
        self.entered = False
        self.last_rel = [0] * len(site.rings)
        self.wall_base = None        # wall ms minus mono ms, from the last wall reading
        self.cycles = 0

    def desired(self, now):
        """Where the cycle should be now by the wall clock (ms into the cycle).

        Without a wall clock reading the monotonic clock stands in for it.
        """
        k = self.k
        wall = now + self.wall_base if self.wall_base is not None else now
        return (wall % DAY_MS - k.offset) % k.cycle

    def position(self, now):
        """The local cycle timer (ms into the current, possibly corrected, cycle)."""
        return now - self.cycle_start

    def offset_error(self, now):
        """How far the local timer lags the wall-clock cycle (ms, 0..cycle)."""
        return (self.desired(now) - self.position(now)) % self.k.cycle

    def enter(self, now, wall_ms, group, log):
        """Start the timer at the nominal position of the group being entered."""
        k = self.k
        if wall_ms is not None:
            self.wall_base = wall_ms - now
        self.cycle_start = now - group_start(k, self.site, group)
        self.entered = True
        log.append((now, ev.COORD_PATTERN_CHANGE, k.number))
        log.append((now, ev.CYCLE_LENGTH_CHANGE, k.cycle // 1000))
        log.append((now, ev.OFFSET_LENGTH_CHANGE, k.offset // 1000))
        for p in self.site.phases:
            log.append((now, ev.SPLIT_CHANGE_BASE + p - 1, k.splits[p] // 1000))
        # The cycle under way runs as laid out; corrections start at its end.
        self.adjust = 0
        self.length = k.cycle

    def _plan_cycle(self, now, log):
        """Choose this cycle's correction toward the desired offset.

        The error is how far the wall-clock cycle is ahead of ours; shortening
        by it or lengthening by (cycle - error) both land on the boundary.
        """
        k = self.k
        err = (self.desired(now) - self.position(now)) % k.cycle
        limit = int(k.cycle * k.max_correction)
        if err == 0:
            adj = 0
        elif k.dwell:
            adj = k.cycle - err
        else:
            # Short way: the direction that reaches the offset in fewer cycles.
            shorten = min(err, limit, k.shrink)
            lengthen = min(k.cycle - err, limit)
            if shorten > 0 and _cycles(err, shorten) <= _cycles(k.cycle - err, lengthen):
                adj = -shorten
            else:
                adj = lengthen
        before = self.adjust
        self.adjust = adj
        self.length = k.cycle + adj
        state = _state(adj, k.dwell)
        if state != _state(before, k.dwell) or not self.cycles:
            log.append((now, ev.COORD_CYCLE_STATE, state))
        self.cycles += 1

    def next_ms(self, now, green, since, best):
        """The earliest ms before `best` at which step() with the same green and since
        changes what the controller does (edge_agent.nextstep): the cycle's end (its
        correction is chosen there) and, per ring, the yield point and the force-off of
        each non-coordinated green still ahead in this cycle.

        The window and walk masks step() also returns are not named: they only turn on
        as the ring's position grows, and the controller reads them only where it
        starts a phase or a walk, which happens at a step next_ms names anyway (a
        termination, the yield point, or the tick-by-tick steps of a waiting walk
        recycle) or at an input change. tests/test_next_ms.py holds the two rigs equal.
        """
        k, site = self.k, self.site
        end = self.cycle_start + self.length
        if now < end < best:
            best = end
        tc = now - self.cycle_start
        for r in range(len(site.rings)):
            rel = (tc - k.ring_yield[r] - self.adjust) % self.length
            edges = [self.length]                       # the wrap: the yield point
            for p in site.rings[r]:
                b = 1 << p
                if green & b and not b & k.coord_mask:
                    fo = k.rel_force_off[p]
                    if k.floating:
                        began = rel - (now - since[p])
                        fo = min(fo, began + k.force_off[p] - k.start[p])
                    edges.append(fo)
            for e in edges:
                if rel < e <= self.length:
                    t = now + e - rel
                    if t < best:
                        best = t
        return best

    def step(self, now, wall_ms, green, since, ped_calls, log):
        """Advance the cycle timer; returns (force_off, omit, no_walk) request masks.

        no_walk: green phases where a walk started now could not finish its
        pedestrian clearance by the force-off (or the yield point): the
        controller must not recycle the walk there.

        green: mask of phases showing green; since: ms each phase's interval began;
        ped_calls: mask of phases with a pedestrian call waiting.
        """
        k, site = self.k, self.site
        if wall_ms is not None:
            self.wall_base = wall_ms - now
        while now - self.cycle_start >= self.length:
            self.cycle_start += self.length
            self._plan_cycle(now, log)
        tc = now - self.cycle_start
        force = k.coord_mask
        omit = no_walk = 0
        for r in range(len(site.rings)):
            # Ring-relative position: 0 at this ring's (corrected) yield point.
            rel = (tc - k.ring_yield[r] - self.adjust) % self.length
            if rel < self.last_rel[r]:
                for p in k.coordinated:
                    if site.ring_of[p] == r:
                        log.append((now, ev.COORD_YIELD, p))
            self.last_rel[r] = rel
            for p in site.rings[r]:
                b = 1 << p
                if b & k.coord_mask:
                    # A coordinated walk must end by the next yield point.
                    if green & b and rel + k.ped[p] > self.length:
                        no_walk |= b
                    continue
                fo = k.rel_force_off[p]
                if green & b:
                    if k.floating:
                        began = rel - (now - since[p])
                        fo = min(fo, began + k.force_off[p] - k.start[p])
                    if rel >= fo:
                        force |= b
                    if rel + k.ped[p] > fo:
                        no_walk |= b
                else:
                    # The window closes when the phase's minimum service no
                    # longer fits: its min green, or walk + clearance if a
                    # pedestrian is waiting.
                    need = k.need[p] if ped_calls & b else k.min_green[p]
                    if rel + need > fo:
                        omit |= b
        return force, omit, no_walk
