"""Timing plans: per-phase actuated timings and plan-wide options.

A plan is checked against its site before it is ever used: a plan below a
site floor, naming an unknown phase, or breaking the ring-barrier structure is
refused with every reason at once and never loaded.
"""

import json

from edge_agent.validate import Checker, ConfigError, is_int, ms_s
from edge_agent.indications import MAX_PHASES
from edge_agent.monitor_card import check_plan_timing

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

RECALL_NONE = const(0)
RECALL_MIN = const(1)
RECALL_MAX = const(2)
RECALL_PED = const(3)
RECALLS = ("none", "min", "max", "ped")

PLAN_KEYS = ("id", "phases", "sequence", "max_mode", "simultaneous_gap_out",
             "dual_entry", "coordination")
PHASE_KEYS = ("phase", "min_green", "passage", "max_green", "max2", "yellow",
              "red_clear", "red_revert", "walk", "ped_clear", "recall", "omit",
              "added_initial", "max_initial", "time_before_reduction",
              "time_to_reduce", "min_gap")


class Plan:
    """A validated timing plan; per-phase values are lists indexed by phase (ms)."""
    __slots__ = ("id", "min_green", "passage", "max_green", "max1", "max2",
                 "yellow", "red_clear", "red_revert", "walk", "ped_clear", "recall", "omit",
                 "added_initial", "max_initial", "before_reduction", "to_reduce",
                 "min_gap", "density", "sequence", "ring_groups", "simultaneous_gap_out",
                 "dual_entry", "worst_cycle", "max_mode", "coord")

    def phase_bound(self, p):
        """Longest green phase p can time once a conflicting call waits (ms)."""
        return max(self.min_green[p], self.max_green[p], self.walk[p] + self.ped_clear[p],
                   self.max_initial[p] if self.added_initial[p] else 0)


def parse_plan_json(text, site, path=""):
    """Parse a plan from JSON text against a site; raises ConfigError."""
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise ConfigError(["%splan: not valid JSON (%s)" % (_dot(path), e)])
    return parse_plan(obj, site, path)


def _dot(path):
    return path + "." if path else ""


def parse_plan(obj, site, path=""):
    """Build a Plan from a plain dict and check it against the site floors."""
    c = Checker()
    pre = _dot(path)
    d = c.obj(obj, path or "plan")
    if d is None:
        c.raise_if_any()
    c.unknown_keys(d, PLAN_KEYS, path or "plan")
    n = MAX_PHASES + 1
    pl = Plan()
    pl.id = c.text(d, "id", path or "plan", default="")
    for name in ("min_green", "passage", "max_green", "max1", "max2", "yellow",
                 "red_clear", "red_revert", "walk", "ped_clear", "recall", "added_initial",
                 "max_initial", "before_reduction", "to_reduce", "min_gap"):
        setattr(pl, name, [0] * n)
    pl.omit = 0
    pl.density = 0
    pl.max_mode = c.text(d, "max_mode", path or "plan", default="max1",
                         choices=("max1", "max2"))
    pl.simultaneous_gap_out = c.boolean(d, "simultaneous_gap_out", path or "plan", default=True)
    _phase_timings(c, d, site, pl, pre)
    _sequence(c, d, site, pl, pre)
    pl.dual_entry = 0
    for j, p in enumerate(c.array(d.get("dual_entry", []), pre + "dual_entry") or ()):
        if not is_int(p) or p not in site.phases:
            c.error("%sdual_entry[%d]" % (pre, j), "%s is not a phase of this site" % (p,))
        else:
            pl.dual_entry |= 1 << p
    c.raise_if_any()
    if all(pl.omit & (1 << p) for p in site.phases):
        c.error(pre + "phases", "every phase is omitted: the plan would serve nothing")
    pl.coord = None
    if "coordination" in d and d["coordination"] is not None:
        from edge_agent.coordination import parse_coordination
        pl.coord = parse_coordination(c, d["coordination"], site, pl, pre)
        c.raise_if_any()
    pl.worst_cycle = worst_cycle(site, pl)
    if pl.worst_cycle > site.floors.max_cycle:
        c.error(pre + "phases", "worst-case cycle %s s (max greens + clearances) exceeds the "
                "site maximum cycle %s s" % (ms_s(pl.worst_cycle), ms_s(site.floors.max_cycle)))
    c.raise_if_any()
    return pl


def _phase_timings(c, d, site, pl, pre):
    f = site.floors
    seen = []
    if "phases" not in d:
        c.error(pre + "phases", "is required")
    for i, e in enumerate(c.array(d.get("phases", []), pre + "phases") or ()):
        path = "%sphases[%d]" % (pre, i)
        e = c.obj(e, path)
        if e is None:
            continue
        c.unknown_keys(e, PHASE_KEYS, path)
        p = e.get("phase")
        if not is_int(p) or p not in site.phases:
            c.error(path + ".phase", "%s is not a phase of this site" % (p,))
            continue
        if p in seen:
            c.error(path + ".phase", "phase %d is timed twice" % p)
            continue
        seen.append(p)
        omit = c.boolean(e, "omit", path, default=False)
        if omit:
            pl.omit |= 1 << p
        pl.min_green[p] = _floor(c, e, "min_green", path, f.min_green, "minimum green", 255.0)
        pl.passage[p] = c.seconds(e, "passage", path, 0.0, 25.5) or 0
        pl.max1[p] = c.seconds(e, "max_green", path, 1.0, 255.0) or 0
        pl.max2[p] = c.seconds(e, "max2", path, 1.0, 255.0, default=pl.max1[p]) or 0
        pl.max_green[p] = pl.max2[p] if pl.max_mode == "max2" else pl.max1[p]
        for key, val in (("max_green", pl.max1[p]), ("max2", pl.max2[p])):
            if val and pl.min_green[p] and val < pl.min_green[p]:
                c.error(path + "." + key, "%s s is below this phase's min green %s s"
                        % (ms_s(val), ms_s(pl.min_green[p])))
        pl.yellow[p] = _floor(c, e, "yellow", path, f.min_yellow, "minimum", 10.0)
        pl.red_clear[p] = _floor(c, e, "red_clear", path, f.min_red_clear,
                                 "minimum red clearance", 10.0)
        # Red revert (NTCIP 1202 phaseRedRevert): defaults to the site floor.
        pl.red_revert[p] = c.seconds(e, "red_revert", path, 0.0, 25.5,
                                     default=f.min_red_revert) or 0
        if pl.red_revert[p] < f.min_red_revert:
            c.error(path + ".red_revert", "%s s is below the site minimum red revert %s s"
                    % (ms_s(pl.red_revert[p]), ms_s(f.min_red_revert)))
        _density(c, e, path, pl, p)
        recall = c.text(e, "recall", path, default="none", choices=RECALLS)
        pl.recall[p] = RECALLS.index(recall)
        if site.has_ped[p]:
            pl.walk[p] = _floor(c, e, "walk", path, f.min_walk, "minimum walk", 255.0)
            pl.ped_clear[p] = _floor(c, e, "ped_clear", path, f.min_ped_clear,
                                     "minimum pedestrian clearance", 255.0)
        elif recall == "ped":
            c.error(path + ".recall", "ped recall on phase %d, which has no pedestrian phase" % p)
        # Never time below what the monitor enforces: the plan would trip it.
        check_plan_timing(c, path, p, site.monitor, pl)
    for p in site.phases:
        if p not in seen and "phases" in d:
            c.error(pre + "phases", "phase %d has no timing (list it, with \"omit\": true if unused)" % p)


def _density(c, e, path, pl, p):
    """Volume-density options: added initial per actuation up to a max initial;
    gap reduction from the passage time down to a minimum gap."""
    pl.added_initial[p] = c.seconds(e, "added_initial", path, 0.0, 25.5, default=0) or 0
    pl.max_initial[p] = c.seconds(e, "max_initial", path, 0.0, 255.0, default=0) or 0
    pl.before_reduction[p] = c.seconds(e, "time_before_reduction", path, 0.0, 255.0, default=0) or 0
    pl.to_reduce[p] = c.seconds(e, "time_to_reduce", path, 0.0, 255.0, default=0) or 0
    pl.min_gap[p] = c.seconds(e, "min_gap", path, 0.0, 25.5, default=pl.passage[p]) or 0
    if pl.added_initial[p] and pl.max_initial[p] < pl.min_green[p]:
        c.error(path + ".max_initial", "%s s is below this phase's min green %s s: added "
                "initial needs a max initial above min green"
                % (ms_s(pl.max_initial[p]), ms_s(pl.min_green[p])))
    if pl.min_gap[p] > pl.passage[p]:
        c.error(path + ".min_gap", "%s s is above this phase's passage %s s"
                % (ms_s(pl.min_gap[p]), ms_s(pl.passage[p])))
    if pl.added_initial[p] or pl.min_gap[p] < pl.passage[p]:
        pl.density |= 1 << p


def _floor(c, e, key, path, floor, what, hi):
    """A required time that must not be below a site floor."""
    if key not in e:
        c.error(path + "." + key, "is required")
        return 0
    ms = c.seconds(e, key, path, 0.0, hi)
    if ms is None:
        return 0
    if floor is not None and ms < floor:
        c.error(path + "." + key, "%s s is below the site %s %s s" % (ms_s(ms), what, ms_s(floor)))
    return ms


def _sequence(c, d, site, pl, pre):
    """Each ring's order must keep its own phases and cross barriers in order."""
    seqs = d.get("sequence", site.rings)
    pl.sequence = []
    pl.ring_groups = []
    lst = c.array(seqs, pre + "sequence")
    if lst is None:
        return
    if len(lst) != len(site.rings):
        c.error(pre + "sequence", "%d rings given, the site has %d" % (len(lst), len(site.rings)))
        return
    for r, seq in enumerate(lst):
        path = "%ssequence[%d]" % (pre, r)
        seq = c.array(seq, path)
        if seq is None:
            continue
        bad = [p for p in seq if not is_int(p) or p not in site.phases]
        if bad:
            c.error(path, "%s are not phases of this site" % (bad,))
            continue
        if sorted(seq) != sorted(site.rings[r]):
            c.error(path, "must order exactly the phases of ring %d %s, got %s"
                    % (r + 1, sorted(site.rings[r]), seq))
            continue
        groups = [site.group_of[p] for p in seq]
        if groups != sorted(groups):
            c.error(path, "%s breaks the barrier structure: phases of one barrier group must run "
                    "together and groups in barrier order %s" % (seq, groups))
            continue
        pl.sequence.append(list(seq))
        pl.ring_groups.append([[p for p in seq if site.group_of[p] == g]
                               for g in range(len(site.groups))])


def worst_cycle(site, pl):
    """Longest cycle with every phase called and timing to its bound (ms).

    A coordinated pattern's cycle is its cycle length, stretched at most by
    one offset correction (a full cycle when correcting by dwell).
    """
    k = pl.coord
    if k is not None:
        return k.cycle + (k.cycle if k.dwell else int(k.cycle * k.max_correction))
    total = 0
    for g in range(len(site.groups)):
        longest = 0
        for r in range(len(site.rings)):
            t = 0
            for p in pl.ring_groups[r][g]:
                if not pl.omit & (1 << p):
                    t += pl.phase_bound(p) + pl.yellow[p] + pl.red_clear[p]
            longest = max(longest, t)
        total += longest
    return total
