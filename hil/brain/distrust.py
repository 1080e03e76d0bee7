"""Checks on each intersection's telemetry before it may move the corridor's plan.

Each check returns reasons (sentences) for one source; an empty list means the
source passed. ``neighbours`` compares adjacent intersections and returns
{id: reason} for the ones whose data disagree with every neighbour that is
itself consistent with someone.
"""

MAX_SPEED = 25.0          # m/s: no vehicle crosses a stop-bar loop faster in a city
CAR_LENGTH = 3.5          # m: the shortest vehicle that still counts
MAX_LANE_FLOW = 2400.0    # veh/h per lane
MIN_COUNT = 5             # fewer vehicles than this say nothing about on-time
STUCK_BINS = 4            # identical non-zero counts in this many bins in a row
RATIO = (0.6, 1.6)        # arterial vehicles arriving downstream / arriving upstream
MIN_FLOW = 100.0          # veh/h: below this neighbours are not compared


def plausibility(j, window, loop_m=12.0):
    """Occupancy against volume: a vehicle occupies a loop at least (loop + car) / max speed."""
    reasons = []
    cov = window["covered"]
    if cov <= 0:
        return reasons
    min_on = (loop_m + CAR_LENGTH) / MAX_SPEED
    for ch in sorted(window["counts"]):
        n = window["counts"][ch]
        if ch not in j.channels or n < MIN_COUNT:
            continue
        on = window["occ"].get(ch, 0.0) / n
        if on < min_on:
            reasons.append("channel %d: %.0f vehicles but %.1f s occupied (%.2f s each, faster "
                           "than %.0f m/s over a %.0f m loop)"
                           % (ch, n, window["occ"].get(ch, 0.0), on, MAX_SPEED, loop_m))
        flow = n * 3600.0 / cov
        if flow > MAX_LANE_FLOW:
            reasons.append("channel %d: %.0f veh/h on one lane (at most %.0f)" % (ch, flow, MAX_LANE_FLOW))
    return reasons


def health(j, status):
    """Detector faults the agent itself reports (telemetry detectors.status)."""
    reasons = []
    for st in status or ():
        if isinstance(st, dict) and not st.get("ped") and st.get("channel") in j.channels \
                and st.get("state") not in (None, "ok"):
            reasons.append("channel %s: the agent reports it %s (%s)"
                           % (st.get("channel"), st.get("state"), ", ".join(st.get("conditions") or ())))
    return reasons


def stuck(j, bins):
    """Counts that repeat exactly bin after bin, or a loop occupied with no new vehicle for
    longer than the site's maximum cycle (no vehicle legitimately waits longer: a left-turner
    standing on its loop for a whole bin is not a fault)."""
    reasons = []
    seq = [tuple(sorted((ch, round(n, 3)) for ch, n in b.counts.items() if ch in j.channels))
           for b in bins]
    run = 1
    for a, b in zip(seq, seq[1:]):
        run = run + 1 if a == b and any(n > 0 for _, n in a) else 1
        if run >= STUCK_BINS:
            reasons.append("counts identical in %d bins in a row: %s" % (run, dict(a)))
            break
    for ch in sorted(j.channels):
        held = 0.0
        for b in reversed(bins):
            if b.covered <= 0 or b.occ.get(ch, 0.0) < 0.95 * b.covered or b.counts.get(ch, 0.0) >= 1:
                break
            held += b.covered
        if held > j.max_cycle:
            reasons.append("channel %d: occupied for %.0f s with no new vehicle (longer than the "
                           "maximum cycle %.0f s)" % (ch, held, j.max_cycle))
    return reasons


def coverage(window, window_s, least=0.5):
    """Too little telemetry in the window to judge or plan from (a silent or new source)."""
    if window["covered"] < least * window_s:
        return ["too little telemetry: %.0f of %.0f s covered" % (window["covered"], window_s)]
    return []


def replayed(new_replays):
    """Messages that repeat a stamp already received."""
    return ["%d telemetry messages repeat stamps already received" % new_replays] if new_replays else []


def neighbours(junctions, flows):
    """{id: reason} for intersections whose arterial flows disagree with their neighbours.

    flows: {id: {phase: veh/h}}. Eastbound vehicles reaching j+1 (phase 2) must be
    RATIO of those reaching j; westbound (phase 6) the other way. A pair is bad when
    either direction is outside RATIO. An intersection is flagged when all of its
    pairs are bad and, at the corridor's ends, when its one neighbour is consistent
    with its own other neighbour.
    """
    ids = [j.id for j in junctions]
    pairs = {}
    for a, b in zip(ids, ids[1:]):
        why = []
        for p, up, down in ((2, a, b), (6, b, a)):
            qu, qd = flows[up].get(p, 0.0), flows[down].get(p, 0.0)
            if max(qu, qd) < MIN_FLOW:
                continue
            r = qd / qu if qu > 0 else float("inf")
            if not RATIO[0] <= r <= RATIO[1]:
                why.append("phase %d: %.0f veh/h at %s, %.0f at %s downstream (ratio %.2f, "
                           "expected %.1f-%.1f)" % (p, qu, up, qd, down, r, RATIO[0], RATIO[1]))
        pairs[(a, b)] = why
    good = {i: False for i in ids}
    mine = {i: [] for i in ids}
    for (a, b), why in pairs.items():
        mine[a].append(((a, b), b, why))
        mine[b].append(((a, b), a, why))
        if not why:
            good[a] = good[b] = True
    out = {}
    for i in ids:
        entries = mine[i]
        if not entries or any(not why for _, _, why in entries):
            continue
        if len(entries) == 1 and not good[entries[0][1]]:
            continue            # an end whose only neighbour is itself in doubt: undecided
        out[i] = "inconsistent with %s: %s" % (
            " and ".join(other for _, other, _ in entries),
            "; ".join(w for _, _, why in entries for w in why))
    return out
