"""Hypothesis strategies: random valid sites and plans from one family.

A site has 1-3 rings and 1-3 barrier groups with 1-2 phases per ring and
group, optional explicit extra conflicts, pedestrian phases, detectors with
random options, start-up phases and rest mode. Plans time every phase within
the site floors, with random recalls, omits, lead/lag sequences, dual entry.
"""

from hypothesis import strategies as st

from tests.portable.cards import card

FLOORS = {"min_yellow": 3.0, "min_red_clear": 1.0, "min_green": 4.0,
          "min_walk": 4.0, "min_ped_clear": 7.0, "max_cycle": 999.0}


def tenths(lo, hi):
    return st.integers(int(lo * 10), int(hi * 10)).map(lambda t: t / 10)


@st.composite
def sites(draw, max_rings=3, max_groups=3):
    n_rings = draw(st.integers(1, max_rings))
    n_groups = draw(st.integers(1, max_groups))
    rings = [[] for _ in range(n_rings)]
    groups = [[] for _ in range(n_groups)]
    p = 1
    for r in range(n_rings):
        for g in range(n_groups):
            for _ in range(draw(st.integers(1, 2))):
                if p > 16:
                    break
                rings[r].append(p)
                groups[g].append(p)
                p += 1
    rings = [x for x in rings if x]
    groups = [x for x in groups if x]
    phases = sorted(q for ring in rings for q in ring)
    ring_of = {q: i for i, ring in enumerate(rings) for q in ring}
    group_of = {q: i for i, grp in enumerate(groups) for q in grp}
    compatible = [(a, b) for a in phases for b in phases
                  if a < b and ring_of[a] != ring_of[b] and group_of[a] == group_of[b]]
    extra = draw(st.lists(st.sampled_from(compatible), max_size=2, unique=True)) if compatible else []
    peds = {q: draw(st.booleans()) for q in phases}
    dets = []
    ch = 1
    for q in phases:
        for _ in range(draw(st.integers(1, 2))):
            dets.append({"channel": ch, "phase": q,
                         "delay": draw(st.sampled_from([0.0, 0.0, 0.5, 2.0])),
                         "extend": draw(st.sampled_from([0.0, 0.0, 1.0])),
                         "locking": draw(st.booleans()),
                         "call_at_red_only": draw(st.booleans()),
                         "extends_green": draw(st.booleans())})
            ch += 1
    ped_dets = [{"channel": i + 1, "phase": q}
                for i, q in enumerate(q for q in phases if peds[q])]
    conflicts = {q: set() for q in phases}
    for a in phases:
        for b in phases:
            if a != b and (ring_of[a] == ring_of[b] or group_of[a] != group_of[b]):
                conflicts[a].add(b)
    for a, b in extra:
        conflicts[a].add(b)
        conflicts[b].add(a)
    startup = []
    if draw(st.booleans()):
        g = draw(st.integers(0, len(groups) - 1))
        for q in groups[g]:
            if all(q not in conflicts[s] for s in startup) and draw(st.booleans()):
                startup.append(q)
    site = {
        "intersection": "fuzz-0001",
        "rings": rings, "barriers": groups,
        "phases": [{"phase": q, "ped": peds[q]} for q in phases],
        "conflicts": [list(x) for x in extra],
        "detectors": dets, "ped_detectors": ped_dets,
        "floors": dict(FLOORS),
        "startup": {"flash": draw(st.sampled_from([0.0, 3.0])),
                    "all_red": draw(st.sampled_from([1.0, 4.0])), "phases": startup},
        "rest": draw(st.sampled_from(["green", "green", "red"])),
    }
    site["monitor"] = card(site)
    site["fallback_plan"] = draw(plans(site, "fallback"))
    return site


@st.composite
def plans(draw, site, plan_id):
    phases = [e["phase"] for e in site["phases"]]
    peds = {e["phase"]: e["ped"] for e in site["phases"]}
    group_of = {q: i for i, grp in enumerate(site["barriers"]) for q in grp}
    omit = set(draw(st.lists(st.sampled_from(phases), max_size=len(phases) - 1, unique=True)))
    timings = []
    for q in phases:
        mn = draw(tenths(4.0, 12.0))
        recall = draw(st.sampled_from(["none", "none", "min", "max"] + (["ped"] if peds[q] else [])))
        timings.append({
            "phase": q, "min_green": mn, "passage": draw(tenths(0.0, 4.0)),
            "max_green": mn + draw(tenths(0.0, 30.0)), "yellow": draw(tenths(3.0, 5.0)),
            "red_clear": draw(tenths(1.0, 3.0)),
            "walk": draw(tenths(4.0, 8.0)) if peds[q] else 0.0,
            "ped_clear": draw(tenths(7.0, 15.0)) if peds[q] else 0.0,
            "recall": recall, "omit": q in omit})
    sequence = []
    for ring in site["rings"]:
        seq = []
        for g in range(len(site["barriers"])):
            part = [q for q in ring if group_of[q] == g]
            seq.extend(draw(st.permutations(part)))
        sequence.append(seq)
    return {"id": plan_id, "phases": timings, "sequence": sequence,
            "max_mode": draw(st.sampled_from(["max1", "max2"])),
            "simultaneous_gap_out": draw(st.booleans()),
            "dual_entry": draw(st.lists(st.sampled_from(phases), max_size=4, unique=True))}


def _compatible_set(draw, site, allow_empty=False):
    """Phases of one barrier group, at most one per ring, none in explicit conflict."""
    ring_of = {q: i for i, ring in enumerate(site["rings"]) for q in ring}
    g = draw(st.integers(0, len(site["barriers"]) - 1))
    extra = {tuple(sorted(x)) for x in site["conflicts"]}
    chosen = []
    for q in site["barriers"][g]:
        if any(ring_of[q] == ring_of[c] or tuple(sorted((q, c))) in extra for c in chosen):
            continue
        if draw(st.booleans()) or (not chosen and not allow_empty):
            chosen.append(q)
    return chosen


@st.composite
def preempts(draw, site):
    """0-3 preempts: emergency or railroad, random entry truncation, clearance
    overrides, track clearance, dwell, exit, delay, max presence and links."""
    peds = {e["phase"]: e["ped"] for e in site["phases"]}
    out = []
    numbers = draw(st.lists(st.integers(1, 6), max_size=3, unique=True))
    for n in numbers:
        dwell = _compatible_set(draw, site)
        pr = {"number": n, "type": draw(st.sampled_from(["emergency", "railroad"])),
              "dwell_phases": dwell,
              "dwell_ped": [q for q in dwell if peds[q] and draw(st.booleans())],
              "min_dwell": draw(tenths(1.0, 15.0)),
              "delay": draw(st.sampled_from([0.0, 0.0, 1.5])),
              "non_locking": draw(st.booleans()),
              "min_duration": draw(st.sampled_from([0.0, 5.0])),
              "max_presence": draw(st.sampled_from([0.0, 0.0, 20.0])),
              "exit_phases": _compatible_set(draw, site, allow_empty=True)}
        for key, lo, hi in (("min_green", 0.0, 10.0), ("min_walk", 0.0, 8.0),
                            ("ped_clear", 0.0, 12.0)):
            if draw(st.booleans()):
                pr[key] = draw(tenths(lo, hi))
        for key, lo in (("enter_yellow", 3.0), ("enter_red_clear", 1.0),
                        ("track_yellow", 3.0), ("track_red_clear", 1.0)):
            if draw(st.booleans()):
                pr[key] = draw(tenths(lo, lo + 3.0))
        if pr["type"] == "railroad" and draw(st.booleans()):
            pr["track_phases"] = _compatible_set(draw, site)
            pr["track_green"] = draw(tenths(1.0, 15.0))
        out.append(pr)
    if len(numbers) >= 2 and draw(st.booleans()):
        out[0]["link"] = numbers[1]
    return out
