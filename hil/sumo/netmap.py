"""Any SUMO network in the rig: the map from SUMO traffic lights to sites and detector channels.

    m = load_map("corridor.map.json")        # validated; raises MapError listing every problem
    m.tls["J1"].site                          # the site dict that runs SUMO light J1
    m.tls["J1"].state(vehicle)                # the link-state string for phase indications
    starting_map("city.net.xml", "out/")      # a first map, sites and loops to edit

The map file (docs/corridor.md has the whole story):

    {"tls": {"J1": {
        "site": "J1.site.json",               # relative to the map file
        "link_count": 16,
        "phases": {"2": {"G": [4, 5], "g": [6], "yellow": "y", "red": "r"}, ...},
        "loops": {"J1_W_0": 1, ...}}}}        # SUMO induction loop id -> detector channel

Each phase drives the links it lists: ``G`` protected (SUMO's major link),
``g`` permissive (a minor link that yields, as netconvert's own programs show
a left turn that shares its lane with the through movement). A link shows
the strongest green any of its phases gives it (G over g), else yellow while a
phase that drives it is in yellow, else that phase's red look (``r``, or
``s`` for a stop-then-go).
"""

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

from edge_agent.indications import DARK, YELLOW, GREEN, FLASH_RED, FLASH_YELLOW, MAX_PHASES

FLASH_STATE = {FLASH_RED: "s", FLASH_YELLOW: "o", DARK: "s"}
LETTERS = "GgyrsoOu"


class MapError(ValueError):
    """A map that cannot drive its network; `errors` lists every problem."""

    def __init__(self, errors):
        ValueError.__init__(self, "; ".join(errors))
        self.errors = list(errors)


class TlsMap:
    """One SUMO traffic light: its site, link table and loops."""
    __slots__ = ("tls", "site", "site_path", "link_count", "phases", "loops", "_links")

    def state(self, vehicle):
        """SUMO link states for phase indications ``vehicle`` (indexed by phase)."""
        out = []
        for drivers in self._links:
            best = None
            for p, letter, yellow, red in drivers:
                ind = vehicle[p]
                if ind == GREEN:
                    if letter == "G":
                        best = "G"
                        break
                    best = "g"
                elif ind == YELLOW:
                    if best is None or best in "rs":
                        best = yellow
                elif ind in FLASH_STATE:
                    if best is None:
                        best = FLASH_STATE[ind]
                elif best is None:
                    best = red
            out.append(best)
        return "".join(out)


class NetworkMap:
    """The whole map: {tls id: TlsMap}."""
    __slots__ = ("tls", "path")


def load_map(path, link_counts=None):
    """Read and check a map file (sites are read relative to it); raises MapError."""
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise MapError(["%s: %s" % (path, e)])
    return parse_map(d, path.parent, link_counts, str(path))


def parse_map(d, base_dir, link_counts=None, where="map"):
    """A NetworkMap from a plain dict; ``link_counts`` {tls: n} from the net, when known."""
    errors = []
    if not isinstance(d, dict) or not isinstance(d.get("tls"), dict) or not d["tls"]:
        raise MapError(["%s: needs a non-empty object 'tls'" % where])
    m = NetworkMap()
    m.path = where
    m.tls = {}
    channels_of = {}
    for tls in sorted(d["tls"]):
        e = d["tls"][tls]
        at = "%s: tls.%s" % (where, tls)
        if not isinstance(e, dict):
            errors.append("%s: not an object" % at)
            continue
        t = TlsMap()
        t.tls = tls
        t.site_path = Path(base_dir) / str(e.get("site", ""))
        try:
            t.site = json.loads(t.site_path.read_text())
        except (OSError, ValueError) as ex:
            errors.append("%s.site: %s (%s)" % (at, t.site_path, ex))
            t.site = None
        n = e.get("link_count")
        if not isinstance(n, int) or n <= 0:
            errors.append("%s.link_count: %r is not a positive integer" % (at, n))
            continue
        if link_counts is not None:
            if tls not in link_counts:
                errors.append("%s: the network has no traffic light %r" % (at, tls))
            elif link_counts[tls] != n:
                errors.append("%s.link_count: %d, but the network's light has %d links"
                              % (at, n, link_counts[tls]))
        t.link_count = n
        t.phases = {}
        links = [[] for _ in range(n)]
        for key in sorted(e.get("phases") or {}):
            pe = e["phases"][key]
            pat = "%s.phases.%s" % (at, key)
            p = int(key) if str(key).isdigit() else 0
            if not 1 <= p <= MAX_PHASES:
                errors.append("%s: %r is not a phase number 1..%d" % (pat, key, MAX_PHASES))
                continue
            yellow, red = pe.get("yellow", "y"), pe.get("red", "r")
            if yellow not in ("y", "Y") or red not in ("r", "s"):
                errors.append("%s: yellow must look 'y', red 'r' or 's' (got %r, %r)"
                              % (pat, yellow, red))
            for letter in ("G", "g"):
                for i in pe.get(letter, ()):
                    if not isinstance(i, int) or not 0 <= i < n:
                        errors.append("%s.%s: link %r outside 0..%d" % (pat, letter, i, n - 1))
                        continue
                    if any(q == p for q, _, _, _ in links[i]):
                        errors.append("%s: link %d listed twice for phase %d" % (pat, i, p))
                        continue
                    links[i].append((p, letter, yellow, red))
            t.phases[p] = pe
        for i, drv in enumerate(links):
            if not drv:
                errors.append("%s: link %d is driven by no phase" % (at, i))
            # The protected driver first: its red look is the link's.
            drv.sort(key=lambda x: (x[1] != "G", x[0]))
        t._links = [tuple(x) for x in links]
        t.loops = {}
        for loop, ch in sorted((e.get("loops") or {}).items()):
            if not isinstance(ch, int) or ch <= 0:
                errors.append("%s.loops.%s: channel %r is not a positive integer" % (at, loop, ch))
                continue
            t.loops[loop] = ch
            channels_of.setdefault(loop, []).append(tls)
        if t.site is not None:
            site_phases = set(ph.get("phase") for ph in t.site.get("phases", ()))
            missing = sorted(p for p in t.phases if p not in site_phases)
            if missing:
                errors.append("%s: phases %s are not in %s" % (at, missing, t.site_path.name))
            known = set(det.get("channel") for det in t.site.get("detectors", ()))
            for loop, ch in sorted(t.loops.items()):
                if ch not in known:
                    errors.append("%s.loops.%s: channel %d is not a detector of %s"
                                  % (at, loop, ch, t.site_path.name))
        m.tls[tls] = t
    for loop, owners in sorted(channels_of.items()):
        if len(owners) > 1:
            errors.append("%s: loop %s feeds %s" % (where, loop, " and ".join(owners)))
    if errors:
        raise MapError(errors)
    return m


# ---------------------------------------------------------------- reading a net

def read_net(net_path):
    """What the map helper needs from a .net.xml: {tls: [links]}, {lane: (length, shape)},
    {edge: speed}. A link is {index, from, to, from_lane, dir, state} (state: the letter
    SUMO's own first green program gives it)."""
    tls_links, lanes, speeds, programs = {}, {}, {}, {}
    for _, el in ET.iterparse(str(net_path)):
        if el.tag == "lane":
            shape = [tuple(float(v) for v in pt.split(",")[:2]) for pt in el.get("shape").split()]
            lanes[el.get("id")] = (float(el.get("length")), shape)
            speeds.setdefault(el.get("id").rsplit("_", 1)[0], float(el.get("speed")))
        elif el.tag == "tlLogic":
            programs[el.get("id")] = [ph.get("state") for ph in el.findall("phase")]
        elif el.tag == "connection" and el.get("tl") is not None:
            tls_links.setdefault(el.get("tl"), {})[int(el.get("linkIndex"))] = {
                "index": int(el.get("linkIndex")), "from": el.get("from"), "to": el.get("to"),
                "from_lane": int(el.get("fromLane")), "dir": el.get("dir")}
    out = {}
    for tls, links in tls_links.items():
        n = len(links)
        if sorted(links) != list(range(n)):
            raise MapError(["traffic light %s: link indices are not 0..%d" % (tls, n - 1)])
        lst = [links[i] for i in range(n)]
        greens = [s for s in programs.get(tls, ()) if "G" in s or "g" in s]
        for ln in lst:
            ln["permissive_in_sumo"] = any(s[ln["index"]] == "g" for s in greens)
        out[tls] = lst
    return out, lanes, speeds


def _heading(shape):
    (x0, y0), (x1, y1) = shape[-2], shape[-1]
    return math.degrees(math.atan2(y1 - y0, x1 - x0)) % 360.0


def _angle_gap(a, b):
    d = abs(a - b) % 360.0
    return min(d, 360.0 - d)


def approaches(links, lanes):
    """The approaches of one light, each given its NEMA (through, left) phases.

    The axis with more approach lanes is the arterial: the approach heading
    east-most gets 2 (left 5), its opposite 6 (left 1); on the cross axis the
    approach heading north-most gets 4 (left 7), its opposite 8 (left 3).
    Returns {from edge: (through phase, left phase, heading)}.
    """
    edges = {}
    for ln in links:
        lane = "%s_%d" % (ln["from"], ln["from_lane"])
        edges.setdefault(ln["from"], set()).add(lane)
    heading = {e: _heading(lanes[sorted(ls)[0]][1]) for e, ls in edges.items()}
    if len(edges) > 4:
        raise MapError(["%d approaches (%s): the helper maps up to four; write this light's "
                        "map by hand" % (len(edges), ", ".join(sorted(edges)))])
    left = sorted(edges)
    axes = []
    while left:
        e = left.pop(0)
        mate = None
        for f in left:
            if _angle_gap(heading[e], heading[f]) > 135.0:
                mate = f
                break
        if mate is not None:
            left.remove(mate)
            axes.append([e, mate])
        else:
            axes.append([e])
    if len(axes) > 2:
        raise MapError(["approaches %s do not form two axes; write this light's map by hand"
                        % ", ".join(sorted(edges))])
    axes.sort(key=lambda ax: (-sum(len(edges[e]) for e in ax), ax))
    out = {}
    slots = (((2, 5), (6, 1)), ((4, 7), (8, 3)))
    for k, ax in enumerate(axes):
        # east-ness for the arterial, north-ness for the cross street
        key = (lambda e: -math.cos(math.radians(heading[e]))) if k == 0 else \
              (lambda e: -math.sin(math.radians(heading[e])))
        for j, e in enumerate(sorted(ax, key=key)):
            out[e] = slots[k][j] + (heading[e],)
    return out


def tls_phases(links, lanes):
    """{phase: {"G": [...], "g": [...], "name": ...}} and {lane: phase} for one light.

    A left turn from a lane of its own is protected (G on the left phase) and
    permissive in the through phase (g); a left that shares its lane with the
    through movement is permissive only (g on the through phase), as in
    SUMO's own programs. Right turns and U-turns go with their approach.
    """
    ap = approaches(links, lanes)
    lane_dirs = {}
    for ln in links:
        lane_dirs.setdefault((ln["from"], ln["from_lane"]), set()).add(ln["dir"])
    phases, lane_phase = {}, {}
    names = {2: "EB", 6: "WB", 4: "NB", 8: "SB"}

    def add(p, letter, i, name):
        e = phases.setdefault(p, {"name": name, "G": [], "g": [], "yellow": "y", "red": "r"})
        e[letter].append(i)

    for ln in links:
        through, left, _ = ap[ln["from"]]
        lane = (ln["from"], ln["from_lane"])
        is_left = ln["dir"] in ("l", "L", "t")
        own_lane = lane_dirs[lane] <= {"l", "L", "t"}
        lane_id = "%s_%d" % lane
        if is_left and own_lane:
            add(left, "G", ln["index"], names[through] + " left")
            add(through, "g", ln["index"], names[through] + " through")
            lane_phase[lane_id] = left
        elif is_left:
            add(through, "g", ln["index"], names[through] + " through")
            lane_phase.setdefault(lane_id, through)
        else:
            add(through, "G", ln["index"], names[through] + " through")
            lane_phase[lane_id] = through
    return phases, lane_phase


# ---------------------------------------------------------------- writing a starting map

LOOP_LENGTH = 12.0


def starting_site(tls, phases, lane_phase, lane_channel, speed):
    """A site for one light: the phases the map found, NEMA rings and barriers,
    a stop-bar detector per approach lane, and a free fallback plan."""
    present = sorted(phases)
    yellow = max(3.0, math.ceil((1.0 + speed / (2 * 3.05)) * 2) / 2.0)   # ITE, rounded up to 0.5 s
    rings = [[p for p in (1, 2, 3, 4) if p in phases], [p for p in (5, 6, 7, 8) if p in phases]]
    barriers = [[p for p in (1, 2, 5, 6) if p in phases], [p for p in (3, 4, 7, 8) if p in phases]]
    timing = {}
    for p in present:
        if p in (2, 6):
            t = (10.0, 2.0, 40.0, "min")
        elif p in (4, 8):
            t = (7.0, 2.0, 30.0, "none")
        else:
            t = (5.0, 1.5, 20.0, "none")
        timing[p] = {"phase": p, "min_green": t[0], "passage": t[1], "max_green": t[2],
                     "max2": t[2] + 10.0, "yellow": yellow, "red_clear": 1.5, "walk": 0.0,
                     "ped_clear": 0.0, "recall": t[3], "omit": False}
    dets = [{"channel": ch, "phase": lane_phase[lane], "name": "stop bar %s" % lane,
             "delay": 0.0, "extend": 0.0, "locking": False, "call_at_red_only": False,
             "extends_green": True}
            for lane, ch in sorted(lane_channel.items(), key=lambda x: x[1])]
    return {
        "intersection": tls,
        "name": "SUMO traffic light %s (written by edge-agent hil sumo map: check and edit)" % tls,
        "rings": [r for r in rings if r],
        "barriers": [b for b in barriers if b],
        "phases": [{"phase": p, "name": phases[p]["name"], "ped": False} for p in present],
        "conflicts": [],
        "detectors": dets,
        "ped_detectors": [],
        "floors": {"min_yellow": 3.0, "min_red_clear": 1.0, "min_green": 4.0, "min_walk": 4.0,
                   "min_ped_clear": 7.0, "max_cycle": 240.0},
        "startup": {"flash": 0.0, "all_red": 4.0, "phases": [p for p in (2, 6) if p in phases]},
        "rest": "green",
        "monitor": starting_card(present, yellow),
        "fallback_plan": {"id": "free", "sequence": [r for r in rings if r], "max_mode": "max1",
                          "simultaneous_gap_out": True,
                          "dual_entry": [p for p in (2, 6, 4, 8) if p in phases],
                          "phases": [timing[p] for p in present]},
    }


def starting_card(present, yellow):
    """A starting monitor card for the standard NEMA layout: a left and the opposing
    through of each side of a barrier may show green together (1+5, 1+6, 2+5, 2+6 and
    3+7, 3+8, 4+7, 4+8). The engineer checks it against the intersection drawing:
    `config check` refuses a site whose rings and barriers disagree with it."""
    pairs = [[a, b] for a, b in ((1, 5), (1, 6), (2, 5), (2, 6), (3, 7), (3, 8), (4, 7), (4, 8))
             if a in present and b in present]
    channels = [{"channel": p, "ped": False, "min_green": 4.0, "min_yellow": min(3.0, yellow),
                 "min_red_clear": 1.0, "red_revert": 2.0} for p in present]
    return {"channels": channels, "permissive": pairs, "flash": {"min_flash": 6.0, "yellow": []}}


def starting_map(net_path, out_dir, name=None):
    """Write ``<name>.map.json``, ``<tls>.site.json`` per light and ``<name>.loops.add.xml``
    (a 12 m stop-bar loop on every approach lane) into out_dir; return their paths."""
    net_path, out_dir = Path(net_path), Path(out_dir)
    name = name or net_path.name.split(".")[0]
    out_dir.mkdir(parents=True, exist_ok=True)
    tls_links, lanes, speeds = read_net(net_path)
    if not tls_links:
        raise MapError(["%s has no traffic light with controlled links" % net_path])
    tls_out, loop_lines, sites, errors = {}, [], [], []
    for tls in sorted(tls_links):
        links = tls_links[tls]
        try:
            phases, lane_phase = tls_phases(links, lanes)
        except MapError as e:
            errors.extend("traffic light %s: %s" % (tls, x) for x in e.errors)
            continue
        lane_channel, loops = {}, {}
        for k, lane in enumerate(sorted(lane_phase)):
            ch = k + 1
            lane_channel[lane] = ch
            loop = "%s_%s" % (tls, lane)
            loops[loop] = ch
            length, _ = lanes[lane]
            size = min(LOOP_LENGTH, length - 0.2)
            loop_lines.append('    <inductionLoop id="%s" lane="%s" pos="%.2f" length="%.2f" '
                              'period="86400" file="NUL"/>' % (loop, lane, length - size - 0.1, size))
        speed = max(speeds[ln["from"]] for ln in links)
        site = starting_site(tls, phases, lane_phase, lane_channel, speed)
        site_file = out_dir / ("%s.site.json" % _file_safe(tls))
        site_file.write_text(json.dumps(site, indent=1) + "\n")
        sites.append(site_file)
        tls_out[tls] = {"site": site_file.name, "link_count": len(links),
                        "phases": {str(p): phases[p] for p in sorted(phases)}, "loops": loops}
    if errors:
        raise MapError(errors)
    map_file = out_dir / ("%s.map.json" % name)
    map_file.write_text(json.dumps({"net": net_path.name, "tls": tls_out}, indent=1, sort_keys=True)
                        + "\n")
    loops_file = out_dir / ("%s.loops.add.xml" % name)
    loops_file.write_text('<?xml version="1.0" encoding="UTF-8"?>\n'
                          "<!-- stop-bar loops written by edge-agent hil sumo map -->\n"
                          "<additional>\n" + "\n".join(loop_lines) + "\n</additional>\n")
    return {"map": map_file, "loops": loops_file, "sites": sites}


def _file_safe(s):
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in s)


def link_counts(net_path):
    """{tls: number of controlled links} of a net."""
    return {t: len(v) for t, v in read_net(net_path)[0].items()}

