"""An independent checker of DESIGN.md safety rules 1-5, for the tests.

It shares no code with the controller or the monitor: it reads the raw site
and plan dicts and the indications the agent put out at each step (and its
`preempt` output, for the documented preemption exceptions: during a preempt
a green and a walk may be cut to the site floors, a pedestrian clearance to the
site floor, never further). Red revert: a phase shows green again only its
red revert after its yellow ended.
"""

from edge_agent.indications import GREEN, YELLOW, RED, WALK, PED_CLEAR, DONT_WALK

G, Y = GREEN, YELLOW


class SafetyViolation(AssertionError):
    pass


class SafetyChecker:
    def __init__(self, site, plans):
        self.phases = [e["phase"] for e in site["phases"]]
        ring_of = {q: i for i, ring in enumerate(site["rings"]) for q in ring}
        group_of = {q: i for i, grp in enumerate(site["barriers"]) for q in grp}
        self.conflicts = {q: set() for q in self.phases}
        for a in self.phases:
            for b in self.phases:
                if a != b and (ring_of[a] == ring_of[b] or group_of[a] != group_of[b]):
                    self.conflicts[a].add(b)
        for a, b in site.get("conflicts", []):
            self.conflicts[a].add(b)
            self.conflicts[b].add(a)
        self.has_ped = {e["phase"]: e["ped"] for e in site["phases"]}
        self.plans = {pl["id"]: {t["phase"]: t for t in pl["phases"]} for pl in plans}
        self.veh = {q: RED for q in self.phases}
        self.since = {q: 0 for q in self.phases}
        self.timing_plan = {q: None for q in self.phases}   # plan of the current interval
        self.yellow_end = {q: None for q in self.phases}
        self.red_needed = {q: 0 for q in self.phases}
        self.ped = {q: DONT_WALK for q in self.phases}
        self.ped_since = {q: 0 for q in self.phases}
        self.ped_plan = {q: None for q in self.phases}
        self.greens = {q: 0 for q in self.phases}
        self.floors = site["floors"]
        self.revert = {pid: {q: t.get("red_revert", self.floors.get("min_red_revert", 2.0)) * 1000
                             for q, t in pl.items()} for pid, pl in self.plans.items()}
        self.was_preempted = False

    def fail(self, now, msg):
        raise SafetyViolation("at %d ms: %s" % (now, msg))

    def check(self, now, out):
        veh, ped = out.vehicle, out.ped
        plan = self.plans[out.plan_id]
        preempted = getattr(out, "preempt", None) is not None or self.was_preempted
        self.was_preempted = getattr(out, "preempt", None) is not None
        on = [q for q in self.phases if veh[q] in (G, Y)]
        for a in on:
            for b in on:
                if b in self.conflicts[a]:
                    self.fail(now, "rule 1: conflicting phases %d and %d both green/yellow" % (a, b))
        for q in self.phases:
            v, before = veh[q], self.veh[q]
            if v == before:
                continue
            held = now - self.since[q]
            timing = self.timing_plan[q]
            if before == G:
                if v != Y:
                    self.fail(now, "rule 2: phase %d green ended without yellow" % q)
                least = self.floors["min_green"] if preempted else timing["min_green"]
                if held < least * 1000 - 0.5:
                    self.fail(now, "rule 3: phase %d green %d ms < min %s s%s"
                              % (q, held, least, " (preempted: site floor)" if preempted else ""))
            if before == Y:
                if v != RED:
                    self.fail(now, "rule 2: phase %d yellow went to %d, not red" % (q, v))
                if held < timing["yellow"] * 1000 - 0.5:
                    self.fail(now, "rule 2: phase %d yellow %d ms < %s s" % (q, held, timing["yellow"]))
                self.yellow_end[q] = now
                self.red_needed[q] = timing["red_clear"] * 1000
            if v == G:
                if before != RED:
                    self.fail(now, "phase %d went green from %d" % (q, before))
                t = self.yellow_end[q]
                revert = self.revert[out.plan_id][q]
                if t is not None and now - t < revert - 0.5:
                    self.fail(now, "red revert: phase %d green %d ms after its yellow ended, "
                              "revert %d ms" % (q, now - t, revert))
                for o in self.conflicts[q]:
                    t = self.yellow_end[o]
                    if t is not None and now - t < self.red_needed[o] - 0.5:
                        self.fail(now, "rule 2: phase %d green %d ms after phase %d yellow, "
                                  "red clearance %d ms" % (q, now - t, o, self.red_needed[o]))
                self.greens[q] += 1
            self.veh[q] = v
            self.since[q] = now
            self.timing_plan[q] = plan[q]
        for q in self.phases:
            if not self.has_ped[q]:
                continue
            s, before = ped[q], self.ped[q]
            if s in (WALK, PED_CLEAR) and veh[q] != G:
                self.fail(now, "walk/ped clearance on phase %d without green" % q)
            if s == before:
                continue
            held = now - self.ped_since[q]
            timing = self.ped_plan[q]
            if before == WALK:
                if s != PED_CLEAR:
                    self.fail(now, "rule 4: phase %d walk ended without clearance" % q)
                least = self.floors["min_walk"] if preempted else timing["walk"]
                if held < least * 1000 - 0.5:
                    self.fail(now, "phase %d walk %d ms < %s s" % (q, held, least))
            if before == PED_CLEAR:
                least = self.floors["min_ped_clear"] if preempted else timing["ped_clear"]
                if held < least * 1000 - 0.5:
                    self.fail(now, "rule 4: phase %d ped clearance %d ms < %s s" % (q, held, least))
            self.ped[q] = s
            self.ped_since[q] = now
            self.ped_plan[q] = plan[q]


def worst_cycle_ms(site, plan):
    """Independent bound: per barrier group the longest ring of max greens + clearances."""
    t = {x["phase"]: x for x in plan["phases"]}
    ring_of = {q: i for i, ring in enumerate(site["rings"]) for q in ring}
    total = 0
    for grp in site["barriers"]:
        per_ring = {}
        for q in grp:
            x = t[q]
            if x["omit"]:
                continue
            green = max(x["min_green"], x["max_green"], x["walk"] + x["ped_clear"])
            per_ring[ring_of[q]] = per_ring.get(ring_of[q], 0) + green + x["yellow"] + x["red_clear"]
        total += max(per_ring.values()) if per_ring else 0
    return int(total * 1000)
