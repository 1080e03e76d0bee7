"""Corridor timing: a common cycle, splits by degree of saturation, two-way progression offsets.

    j = Junction("J1", site_dict, x=300.0)
    q = j.flows(window)                          # veh/h per phase from a Bins window
    C = corridor_cycle([(j, q), ...], 60, 140)  # Webster at the critical intersection
    s = splits(j, q, C)                          # {phase: s}, ring and barrier sums exact
    o = offsets(js, {id: s}, C, speed_ms, w)     # {id: offset s}
    p = bounded_step(j, old, (C, s, o), 8, 6)   # at most 8 s of cycle, 6 s per split per update

Flow ratio y = q / (s x lanes) with a saturation flow s per lane (1800 veh/h
through, 1700 turning). Webster's cycle (1.5 L + 5) / (1 - Y) comes from the
critical intersection (the largest Y), so every signal runs one cycle.
Within a barrier group the critical ring's greens are shared in proportion
to y, which equalises the degree of saturation x = y C / g; every green keeps
the plan's min green. Offsets put the arterial greens where the platoons
arrive at the measured travel times, both ways, weighted by direction flow.
"""

SAT_THROUGH = 1800.0
SAT_TURN = 1700.0
COORDINATED = (2, 6)


class Junction:
    """One corridor intersection as the planner sees it (from its site dict)."""

    def __init__(self, jid, site, x):
        self.id = jid
        self.site = site
        self.x = float(x)
        self.phases = sorted(int(p["phase"]) for p in site["phases"])
        self.rings = [list(r) for r in site["rings"]]
        self.groups = [set(g) for g in site["barriers"]]
        fp = {int(p["phase"]): p for p in site["fallback_plan"]["phases"]}
        self.min_green = {p: float(fp[p]["min_green"]) for p in self.phases}
        self.clear = {p: float(fp[p]["yellow"]) + float(fp[p]["red_clear"]) for p in self.phases}
        self.channels = {int(d["channel"]): int(d["phase"]) for d in site["detectors"]}
        self.max_cycle = float(site.get("floors", {}).get("max_cycle", 240.0))
        self.lanes = {p: 0 for p in self.phases}
        for p in self.channels.values():
            self.lanes[p] += 1

    def min_split(self, p):
        return self.min_green[p] + self.clear[p]

    def flows(self, window):
        """veh/h per phase from a Bins window (rates over the seconds covered)."""
        cov = window["covered"]
        q = {p: 0.0 for p in self.phases}
        if cov <= 0:
            return q
        for ch, n in window["counts"].items():
            p = self.channels.get(ch)
            if p is not None:
                q[p] += n * 3600.0 / cov
        return q

    def ratios(self, q):
        """Flow ratio y per phase."""
        y = {}
        for p in self.phases:
            sat = (SAT_THROUGH if p in (2, 4, 6, 8) else SAT_TURN) * max(1, self.lanes[p])
            y[p] = q.get(p, 0.0) / sat
        return y

    def ring_group(self, r, g):
        return [p for p in self.rings[r] if p in self.groups[g]]

    def critical(self, q):
        """(Y, L): sum over barrier groups of the critical ring's y, and its lost time."""
        y = self.ratios(q)
        Y = L = 0.0
        for g in range(len(self.groups)):
            best = max(((sum(y[p] for p in self.ring_group(r, g)),
                         sum(self.clear[p] for p in self.ring_group(r, g)))
                        for r in range(len(self.rings))), key=lambda t: (t[0], t[1]))
            Y += best[0]
            L += best[1]
        return Y, L

    def min_cycle(self):
        return sum(_group_min(self, g) for g in range(len(self.groups)))


def webster(Y, L, lo, hi):
    """Webster's optimum cycle, bounded to [lo, hi], whole seconds."""
    Y = min(Y, 0.9)
    return int(min(hi, max(lo, round((1.5 * L + 5.0) / (1.0 - Y)))))


def corridor_cycle(pairs, lo, hi):
    """The common cycle: Webster's at the critical intersection (largest Y)."""
    best = 0
    for j, q in pairs:
        Y, L = j.critical(q)
        best = max(best, webster(Y, L, max(lo, j.min_cycle()), hi))
    return best


def share(total, weights, minimums):
    """Split ``total`` in proportion to weights, each at least its minimum (tenths of a second)."""
    n = len(weights)
    fixed = [False] * n
    out = list(minimums)
    for _ in range(n + 1):
        free = [i for i in range(n) if not fixed[i]]
        rest = total - sum(out[i] for i in range(n) if fixed[i])
        w = sum(weights[i] for i in free)
        changed = False
        for i in free:
            out[i] = rest * (weights[i] / w if w > 0 else 1.0 / len(free))
        for i in free:
            if out[i] < minimums[i]:
                out[i] = minimums[i]
                fixed[i] = True
                changed = True
        if not changed:
            break
    tenths = [int(round(v * 10)) for v in out]
    diff = int(round(total * 10)) - sum(tenths)
    tenths[max(range(n), key=lambda i: tenths[i])] += diff
    return [t / 10.0 for t in tenths]


def splits(j, q, C):
    """{phase: split s} for cycle C: barrier groups by critical y, rings by y, minimums kept."""
    y = j.ratios(q)
    G = len(j.groups)
    R = len(j.rings)
    crit_y = [max(sum(y[p] for p in j.ring_group(r, g)) for r in range(R)) for g in range(G)]
    group_min = [_group_min(j, g) for g in range(G)]
    lost = [max(sum(j.clear[p] for p in j.ring_group(r, g)) for r in range(R)) for g in range(G)]
    if C < sum(group_min):
        raise ValueError("%s: cycle %s s is below the minimum %s s" % (j.id, C, sum(group_min)))
    # group durations: lost time plus green in proportion to the critical y
    weights = [max(cy, 1e-6) for cy in crit_y]
    greens = share(C - sum(lost), weights, [group_min[g] - lost[g] for g in range(G)])
    dur = [greens[g] + lost[g] for g in range(G)]
    out = {}
    for g in range(G):
        for r in range(R):
            ps = j.ring_group(r, g)
            if not ps:
                continue
            lost_r = sum(j.clear[p] for p in ps)
            gs = share(dur[g] - lost_r, [max(y[p], 1e-6) for p in ps], [j.min_green[p] for p in ps])
            for p, gr in zip(ps, gs):
                out[p] = round(gr + j.clear[p], 1)
    return out


def coordinated_start(j, sp, ring_phase):
    """Cycle position (s) where ``ring_phase`` turns green: after the phases before it in its
    ring within the coordinated group (the cycle reference is that group's start)."""
    for r in range(len(j.rings)):
        if ring_phase in j.rings[r]:
            g = next(k for k in range(len(j.groups)) if ring_phase in j.groups[k])
            t = 0.0
            for p in j.ring_group(r, g):
                if p == ring_phase:
                    return t
                t += sp[p]
    return 0.0


def _circ(d, C):
    d = d % C
    return min(d, C - d)


def offsets(junctions, split_of, C, travel_s, weights=(1.0, 1.0), travel_wb=None):
    """{id: offset s}: EB phase 2 greens start when the EB platoon from the first signal
    arrives, WB phase 6 greens when the WB platoon from the last one does, the two
    weighted by direction flow. travel_s: {id: seconds from the first signal, EB};
    travel_wb: {id: seconds a WB vehicle takes from it to the first signal} (default:
    the EB times, the same both ways)."""
    w_eb, w_wb = weights
    if travel_wb is None:
        travel_wb = travel_s
    best = None
    for b in range(0, int(C), 2):
        total, offs = 0.0, {}
        for j in junctions:
            t, u = travel_s[j.id], travel_wb[j.id]
            s2 = coordinated_start(j, split_of[j.id], 2)
            s6 = coordinated_start(j, split_of[j.id], 6)
            pick = None
            for o in range(int(C)):
                cost = w_eb * _circ(o + s2 - t, C) ** 2 + w_wb * _circ(o + s6 + u - b, C) ** 2
                if pick is None or cost < pick[0]:
                    pick = (cost, o)
            total += pick[0]
            offs[j.id] = pick[1]
        if best is None or total < best[0]:
            best = (total, offs)
    # the first signal's offset is the reference: every offset relative to it
    first = best[1][junctions[0].id]
    return {k: (v - first) % int(C) for k, v in best[1].items()}


def _clamp(v, lo, hi):
    return max(lo, min(hi, v))


def bounded_step(j, old, target, max_cycle_step, max_split_step):
    """The next (cycle, splits, offset) from ``old`` toward ``target``: the cycle moves at
    most max_cycle_step s and each split at most max_split_step s (after scaling to the
    new cycle); ring and barrier sums stay exact. Offsets go straight to the target:
    the controllers' own correction bounds how fast they move."""
    if old is None:
        return target
    (c0, s0, _), (ct, st, ot) = old, target
    C = int(c0 + _clamp(ct - c0, -max_cycle_step, max_cycle_step))
    if C != ct:
        # the target's splits at the bounded cycle, proportional to the target
        st = _rescale(j, st, C)
    scaled = _rescale(j, s0, C)
    out = {}
    for g in range(len(j.groups)):
        # the group's duration is the same in every ring: bound it once
        dur_t = _group(j, st, g)
        dur_s = _group(j, scaled, g)
        out_dur = _clamp(dur_t, dur_s - max_split_step, dur_s + max_split_step)
        for r in range(len(j.rings)):
            ps = j.ring_group(r, g)
            if not ps:
                continue
            vals = [_clamp(st[p], scaled[p] - max_split_step, scaled[p] + max_split_step) for p in ps]
            vals = share(out_dur, vals, [j.min_split(p) for p in ps])
            for p, v in zip(ps, vals):
                out[p] = v
    # bounded groups may not add up to the cycle: share it out again in their proportions
    if abs(sum(_group(j, out, g) for g in range(len(j.groups))) - C) > 1e-6:
        out = _rescale(j, out, C)
    return C, out, ot


def _group(j, sp, g):
    return max(sum(sp[p] for p in j.ring_group(r, g)) for r in range(len(j.rings)))


def _group_min(j, g):
    """The shortest a barrier group can be: its slowest ring's minimum splits."""
    return max(sum(j.min_split(p) for p in j.ring_group(r, g)) for r in range(len(j.rings)))


def _rescale(j, sp, c_to):
    """Splits for cycle c_to: each barrier group keeps its share, each phase its share of
    the group, minimums kept."""
    G = len(j.groups)
    new = share(c_to, [_group(j, sp, g) for g in range(G)], [_group_min(j, g) for g in range(G)])
    out = {}
    for g in range(G):
        for r in range(len(j.rings)):
            ps = j.ring_group(r, g)
            if ps:
                for p, v in zip(ps, share(new[g], [sp[p] for p in ps], [j.min_split(p) for p in ps])):
                    out[p] = v
    return out


def plan_dict(j, plan_id, C, sp, offset):
    """The site's own phase timings with a floating coordination pattern."""
    base = j.site["fallback_plan"]
    plan = {k: v for k, v in base.items() if k != "coordination"}
    plan["id"] = plan_id
    plan["coordination"] = {"pattern": 1, "cycle": C, "offset": offset % C,
                            "splits": {str(p): sp[p] for p in sorted(sp)},
                            "coordinated": [p for p in COORDINATED if p in j.phases],
                            "force_mode": "floating", "max_mode": "inhibit"}
    return plan
