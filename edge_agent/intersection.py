"""The site configuration of one intersection, parsed from plain dicts.

A site says which phases exist, how they sit in rings and barrier groups,
which phases may never time together, where the detectors are, and the safety
floors no timing plan may go below. It also carries the built-in local
fallback plan. Times are seconds on disk and integer milliseconds here.
"""

import json

from edge_agent.validate import Checker, ConfigError, is_int, is_number, kind, ms_s
from edge_agent.indications import MAX_PHASES
from edge_agent.monitor_card import parse_card, cross_check_site

MAX_RINGS = 4
MAX_DETECTORS = 64

SITE_KEYS = ("intersection", "name", "rings", "barriers", "phases", "conflicts",
             "detectors", "ped_detectors", "floors", "startup", "monitor",
             "rest", "fallback_plan", "time_zone", "device_id", "preempts")
FLOOR_KEYS = ("min_yellow", "min_red_clear", "min_green", "min_walk",
              "min_ped_clear", "min_red_revert", "max_cycle")
DETECTOR_KEYS = ("channel", "phase", "name", "delay", "extend", "locking",
                 "call_at_red_only", "extends_green", "no_activity", "max_presence",
                 "erratic", "watchdog", "restore", "fail_recall", "lanes", "max_flow",
                 "function")
PED_DETECTOR_KEYS = ("channel", "phase", "name", "no_activity", "max_presence",
                     "erratic", "watchdog", "restore", "fail_recall")
FAIL_RECALLS = ("none", "min", "max")            # index = detectors.FAIL_NONE/MIN/MAX
PED_FAIL_RECALLS = ("none", "ped")
# What a detector is for, in the words of ATSPM's detector table (its measures
# pick detectors by these names): stop-bar presence, advance (arrivals on
# green, coordination diagram), yellow/red actuations, stop-bar counts.
DETECTOR_FUNCTIONS = ("Presence", "Advance", "Yellow_Red", "stop bar count")
PED_FUNCTION = "Ped"


class Floors:
    """Site safety floors (ms); no plan may time below them."""
    __slots__ = ("min_yellow", "min_red_clear", "min_green", "min_walk",
                 "min_ped_clear", "min_red_revert", "max_cycle")


class Detector:
    """A vehicle or pedestrian detector channel assigned to one phase, with its
    options and its diagnostic limits (ms; 0 = that diagnostic is off)."""
    __slots__ = ("channel", "phase", "name", "delay", "extend", "locking",
                 "call_at_red_only", "extends_green", "no_activity", "max_presence",
                 "erratic", "watchdog", "restore", "fail_recall", "lanes", "max_flow",
                 "functions")

    def __iter__(self):
        """Unpacks as (channel, phase), like the pedestrian entries used to."""
        return iter((self.channel, self.phase))


class Site:
    """A validated intersection: phases, rings, barriers, conflicts, detectors."""
    __slots__ = ("intersection", "name", "phases", "phase_names", "rings",
                 "groups", "ring_of", "group_of", "has_ped", "conflicts",
                 "detectors", "ped_detectors", "floors", "startup_flash",
                 "startup_all_red", "startup_phases", "monitor",
                 "rest_in_red", "fallback_plan", "time_zone", "device_id", "preempts")

    def conflict(self, p, q):
        """True when phases p and q may never show green or yellow together."""
        return bool(self.conflicts[p] & (1 << q))


def parse_site_json(text, cross_check=True):
    """Parse a site from JSON text; raises ConfigError listing every problem."""
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise ConfigError(["site: not valid JSON (%s)" % (e,)])
    return parse_site(obj, cross_check)


def parse_site(obj, cross_check=True):
    """Build a Site from a plain dict; raises ConfigError listing every problem.

    Every problem of the site, its monitor card and its fallback plan comes
    in one ConfigError. When the site's structure (phases, rings, barriers,
    floors) is sound the error carries it as `.site`, so plans can still be
    checked against it. `cross_check=False` skips the comparison of the
    monitor card with the rings and barriers: only tests use it, to show the
    monitor catching a controller whose programming disagrees with the card.
    """
    c = Checker()
    d = c.obj(obj, "site")
    if d is None:
        c.raise_if_any()
    c.unknown_keys(d, SITE_KEYS, "site")
    s = Site()
    s.intersection = c.text(d, "intersection", "site")
    s.name = c.text(d, "name", "site", default="")
    s.time_zone = _time_zone(c, d)
    s.device_id = c.text(d, "device_id", "site", default=s.intersection or "")
    s.phases, s.phase_names, s.has_ped = _phases(c, d)
    known = set(s.phases)
    s.rings, s.ring_of = _rings(c, d, known)
    s.groups, s.group_of = _barriers(c, d, known, s.rings)
    s.conflicts = _conflicts(c, d, s, known)
    s.floors = _floors(c, d)
    structure_sound = not c.errors
    s.detectors = _detectors(c, d, known)
    s.ped_detectors = _ped_detectors(c, d, known, s.has_ped)
    _startup(c, d, s, known)
    s.monitor = parse_card(c, d)
    if structure_sound and cross_check:
        cross_check_site(c, s, s.monitor)
    s.rest_in_red = c.text(d, "rest", "site", default="green",
                           choices=("green", "red")) == "red"
    from edge_agent.preempt import parse_preempts
    s.preempts = parse_preempts(c, d.get("preempts", []), s, known)
    s.fallback_plan = None
    if "fallback_plan" not in d:
        c.error("site.fallback_plan", "is required (the local free plan the unit falls back to)")
    elif structure_sound:
        # The plan needs the phases, rings, barriers and floors; with those
        # sound its own problems are reported alongside the site's.
        from edge_agent.plan import parse_plan
        try:
            s.fallback_plan = parse_plan(d["fallback_plan"], s, path="fallback_plan")
        except ConfigError as e:
            c.errors.extend(e.errors)
    if c.errors:
        err = ConfigError(c.errors)
        err.site = s if structure_sound else None
        raise err
    return s


def _phases(c, d):
    phases, names, has_ped = [], [""] * (MAX_PHASES + 1), [False] * (MAX_PHASES + 1)
    entries = c.array(d.get("phases"), "site.phases") if "phases" in d else None
    if "phases" not in d:
        c.error("site.phases", "is required")
    for i, e in enumerate(entries or ()):
        path = "phases[%d]" % i
        e = c.obj(e, path)
        if e is None:
            continue
        c.unknown_keys(e, ("phase", "name", "ped"), path)
        p = c.integer(e.get("phase"), path + ".phase", 1, MAX_PHASES)
        if p is None:
            continue
        if p in phases:
            c.error(path + ".phase", "phase %d is listed twice" % p)
            continue
        phases.append(p)
        names[p] = c.text(e, "name", path, default="")
        has_ped[p] = c.boolean(e, "ped", path, default=False)
    if entries is not None and not phases:
        c.error("site.phases", "must list at least one phase")
    phases.sort()
    return phases, names, has_ped


def _rings(c, d, known):
    ring_of = [None] * (MAX_PHASES + 1)
    rings = []
    if "rings" not in d:
        c.error("site.rings", "is required")
        return rings, ring_of
    lst = c.array(d["rings"], "site.rings")
    if lst is None:
        return rings, ring_of
    if not 1 <= len(lst) <= MAX_RINGS:
        c.error("site.rings", "%d rings given, a site has 1..%d" % (len(lst), MAX_RINGS))
    for r, ring in enumerate(lst[:MAX_RINGS]):
        path = "rings[%d]" % r
        ring = c.array(ring, path)
        phases = []
        for j, p in enumerate(ring or ()):
            if not is_int(p) or p not in known:
                c.error("%s[%d]" % (path, j), "%s is not a phase of this site" % (p,))
                continue
            if ring_of[p] is not None:
                c.error("%s[%d]" % (path, j), "phase %d is already in ring %d" % (p, ring_of[p] + 1))
                continue
            ring_of[p] = r
            phases.append(p)
        if ring is not None and not phases:
            c.error(path, "a ring needs at least one phase")
        rings.append(phases)
    for p in sorted(known):
        if ring_of[p] is None and len(lst) <= MAX_RINGS:
            c.error("site.rings", "phase %d is in no ring" % p)
    return rings, ring_of


def _barriers(c, d, known, rings):
    group_of = [None] * (MAX_PHASES + 1)
    groups = []
    if "barriers" not in d:
        c.error("site.barriers", "is required (the phase groups between barriers)")
        return groups, group_of
    lst = c.array(d["barriers"], "site.barriers")
    for g, grp in enumerate(lst or ()):
        path = "barriers[%d]" % g
        grp = c.array(grp, path)
        phases = []
        for j, p in enumerate(grp or ()):
            if not is_int(p) or p not in known:
                c.error("%s[%d]" % (path, j), "%s is not a phase of this site" % (p,))
                continue
            if group_of[p] is not None:
                c.error("%s[%d]" % (path, j), "phase %d is already in barrier group %d" % (p, group_of[p]))
                continue
            group_of[p] = g
            phases.append(p)
        if grp is not None and not phases:
            c.error(path, "a barrier group needs at least one phase")
        groups.append(phases)
    if lst is None:
        return groups, group_of
    for p in sorted(known):
        if group_of[p] is None:
            c.error("site.barriers", "phase %d is in no barrier group" % p)
    # Within each ring the barrier groups must follow each other in group order:
    # a ring cannot go back across a barrier it has already crossed.
    for r, ring in enumerate(rings):
        seen = [group_of[p] for p in ring if group_of[p] is not None]
        if seen != sorted(seen):
            c.error("rings[%d]" % r, "phases %s cross the barriers out of order (groups %s)"
                    % (ring, seen))
    return groups, group_of


def _conflicts(c, d, s, known):
    """Phases conflict when in the same ring or in different barrier groups."""
    masks = [0] * (MAX_PHASES + 1)
    for p in s.phases:
        for q in s.phases:
            if p == q:
                continue
            same_ring = s.ring_of[p] is not None and s.ring_of[p] == s.ring_of[q]
            other_side = s.group_of[p] != s.group_of[q]
            if same_ring or other_side:
                masks[p] |= 1 << q
    extra = c.array(d.get("conflicts", []), "site.conflicts")
    for i, pair in enumerate(extra or ()):
        path = "conflicts[%d]" % i
        if not isinstance(pair, list) or len(pair) != 2:
            c.error(path, "must be a pair of phases like [1, 6], got %s" % kind(pair))
            continue
        p, q = pair
        if not (is_int(p) and is_int(q) and p in known and q in known):
            c.error(path, "%s is not a pair of phases of this site" % (pair,))
            continue
        if p == q:
            c.error(path, "a phase cannot conflict with itself")
            continue
        masks[p] |= 1 << q
        masks[q] |= 1 << p
    return masks


def _detectors(c, d, known):
    dets, channels = [], set()
    for i, e in enumerate(c.array(d.get("detectors", []), "site.detectors") or ()):
        path = "detectors[%d]" % i
        e = c.obj(e, path)
        if e is None:
            continue
        c.unknown_keys(e, DETECTOR_KEYS, path)
        det = Detector()
        det.channel = c.integer(e.get("channel"), path + ".channel", 1, MAX_DETECTORS)
        if det.channel is not None and det.channel in channels:
            c.error(path + ".channel", "channel %d is used twice" % det.channel)
        channels.add(det.channel)
        det.phase = e.get("phase")
        if not is_int(det.phase) or det.phase not in known:
            c.error(path + ".phase", "%s is not a phase of this site" % (det.phase,))
        det.name = c.text(e, "name", path, default="")
        det.delay = c.seconds(e, "delay", path, 0, 25.5, default=0)
        det.extend = c.seconds(e, "extend", path, 0, 25.5, default=0)
        det.locking = c.boolean(e, "locking", path, default=True)
        det.call_at_red_only = c.boolean(e, "call_at_red_only", path, default=False)
        det.extends_green = c.boolean(e, "extends_green", path, default=True)
        _diagnostic_limits(c, e, path, det)
        det.fail_recall = FAIL_RECALLS.index(
            c.text(e, "fail_recall", path, default="max", choices=FAIL_RECALLS))
        det.lanes = _int(c, e, "lanes", path, 1, 8, 1)
        det.max_flow = _int(c, e, "max_flow", path, 100, 7200, 3600)
        det.functions = _functions(c, e, path)
        dets.append(det)
    dets.sort(key=lambda x: x.channel or 0)
    return dets


def _ped_detectors(c, d, known, has_ped):
    dets, channels = [], set()
    for i, e in enumerate(c.array(d.get("ped_detectors", []), "site.ped_detectors") or ()):
        path = "ped_detectors[%d]" % i
        e = c.obj(e, path)
        if e is None:
            continue
        c.unknown_keys(e, PED_DETECTOR_KEYS, path)
        det = Detector()
        ch = det.channel = c.integer(e.get("channel"), path + ".channel", 1, MAX_DETECTORS)
        if ch is not None and ch in channels:
            c.error(path + ".channel", "channel %d is used twice" % ch)
        channels.add(ch)
        p = det.phase = e.get("phase")
        if not is_int(p) or p not in known:
            c.error(path + ".phase", "%s is not a phase of this site" % (p,))
        elif not has_ped[p]:
            c.error(path + ".phase", "phase %d has no pedestrian phase (set \"ped\": true)" % p)
        det.name = c.text(e, "name", path, default="")
        det.delay = det.extend = 0
        det.locking, det.call_at_red_only, det.extends_green = True, False, False
        _diagnostic_limits(c, e, path, det)
        # A failed push button places a pedestrian recall: walk every cycle.
        det.fail_recall = 3 if c.text(e, "fail_recall", path, default="ped",
                                      choices=PED_FAIL_RECALLS) == "ped" else 0
        det.lanes, det.max_flow = 1, 3600
        det.functions = (PED_FUNCTION,)
        dets.append(det)
    dets.sort(key=lambda x: x.channel or 0)
    return dets


def _time_zone(c, d):
    """The cabinet's IANA zone name ("America/Indiana/Indianapolis"): coordination
    counts from its local midnight, exports stamp its local time. The drivers
    check the name against the zone database; here only its shape."""
    z = c.text(d, "time_zone", "site", default="UTC")
    if not z or z.startswith("/") or z.endswith("/") or ".." in z or " " in z:
        c.error("site.time_zone", "%r is not an IANA time zone name like \"America/Chicago\"" % (z,))
        return "UTC"
    return z


def _functions(c, e, path):
    """A detector's functions for ATSPM: one name or a list (default Presence)."""
    v = e.get("function", DETECTOR_FUNCTIONS[0])
    names = [v] if isinstance(v, str) else v
    if not isinstance(names, list):
        c.error(path + ".function", "must be one of %s or a list of them, got %s"
                % (", ".join(DETECTOR_FUNCTIONS), kind(v)))
        return (DETECTOR_FUNCTIONS[0],)
    if not names:
        c.error(path + ".function", "is an empty list: name at least one of %s"
                % ", ".join(DETECTOR_FUNCTIONS))
        return (DETECTOR_FUNCTIONS[0],)
    out = []
    for n in names:
        if n not in DETECTOR_FUNCTIONS:
            c.error(path + ".function", "%r is not one of %s" % (n, ", ".join(DETECTOR_FUNCTIONS)))
        elif n not in out:
            out.append(n)
    return tuple(out) or (DETECTOR_FUNCTIONS[0],)


def _diagnostic_limits(c, e, path, det):
    """NTCIP 1202 diagnostics: no activity and max presence in minutes, erratic
    counts per minute (0 = off); the report watchdog and the restore time in s."""
    det.no_activity = _minutes(c, e, "no_activity", path)
    det.max_presence = _minutes(c, e, "max_presence", path)
    det.erratic = _int(c, e, "erratic", path, 0, 255, 0)
    det.watchdog = c.seconds(e, "watchdog", path, 0, 600, default=2000)
    det.restore = c.seconds(e, "restore", path, 0, 3600, default=10000)


def _minutes(c, e, key, path):
    """Minutes (0..255, fractions allowed down to 1 ms) as integer ms; 0 = off."""
    if key not in e:
        return 0
    v = e[key]
    if not is_number(v):
        c.error(path + "." + key, "must be a number of minutes, got %s" % kind(v))
        return 0
    if v < 0 or v > 255:
        c.error(path + "." + key, "%s min is outside 0..255 min" % (v,))
        return 0
    return int(round(v * 60000))


def _int(c, e, key, path, lo, hi, default):
    if key not in e:
        return default
    v = c.integer(e[key], path + "." + key, lo, hi)
    return default if v is None else v


def _floors(c, d):
    f = Floors()
    e = c.obj(d.get("floors"), "site.floors") if "floors" in d else None
    if "floors" not in d:
        c.error("site.floors", "is required")
    e = e or {}
    c.unknown_keys(e, FLOOR_KEYS, "floors")
    # A yellow below 3 s is outside MUTCD practice: no site may allow it.
    f.min_yellow = c.seconds(e, "min_yellow", "floors", 3.0, 10.0, default=3000)
    f.min_red_clear = c.seconds(e, "min_red_clear", "floors", 0.0, 10.0, default=1000)
    f.min_green = c.seconds(e, "min_green", "floors", 1.0, 60.0, default=4000)
    f.min_walk = c.seconds(e, "min_walk", "floors", 1.0, 60.0, default=4000)
    f.min_ped_clear = c.seconds(e, "min_ped_clear", "floors", 1.0, 120.0, default=7000)
    # NTCIP 1202 phase red revert: the least red before a phase shows green again.
    f.min_red_revert = c.seconds(e, "min_red_revert", "floors", 0.0, 25.5, default=2000)
    f.max_cycle = c.seconds(e, "max_cycle", "floors", 30.0, 999.0, default=240000)
    # NTCIP 1202 red revert: a phase shows red at least this long after its
    # yellow before it may show green again.
    f.min_red_revert = c.seconds(e, "min_red_revert", "floors", 0.0, 25.5, default=2000)
    return f


def _startup(c, d, s, known):
    e = c.obj(d.get("startup", {}), "site.startup") or {}
    c.unknown_keys(e, ("flash", "all_red", "phases"), "startup")
    s.startup_flash = c.seconds(e, "flash", "startup", 0.0, 255.0, default=0)
    s.startup_all_red = c.seconds(e, "all_red", "startup", 0.0, 60.0, default=4000)
    if s.startup_all_red is not None and s.floors.min_red_clear is not None \
            and s.startup_all_red < s.floors.min_red_clear:
        c.error("startup.all_red", "%s s is below the site minimum red clearance %s s"
                % (ms_s(s.startup_all_red), ms_s(s.floors.min_red_clear)))
    s.startup_phases = []
    for j, p in enumerate(c.array(e.get("phases", []), "startup.phases") or ()):
        if not is_int(p) or p not in known:
            c.error("startup.phases[%d]" % j, "%s is not a phase of this site" % (p,))
            continue
        for q in s.startup_phases:
            if s.conflicts[p] & (1 << q):
                c.error("startup.phases[%d]" % j, "phase %d conflicts with start-up phase %d" % (p, q))
        s.startup_phases.append(p)
