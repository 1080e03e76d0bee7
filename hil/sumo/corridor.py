"""The project's corridor: six signals at uneven spacing, built with netconvert from plain XML.

    c = build_corridor()                 # cached in build/sumo/corridor-<hash>/
    c.net, c.routes, c.ev_routes, c.map, c.loops

The arterial runs west-east through J1..J6 (spacing 250, 400, 180, 350, 220 m;
300 m lead-in and lead-out): two through lanes per direction and a 60 m
left-turn bay before each signal. Each side street is one lane per
direction, so its left turn shares the lane with the through movement and
is permissive only. Demand is one hour with a peak between 15 and 45 min;
end-to-end arterial trips are ``EB.n`` / ``WB.n``, emergency vehicles
``EV_EB.n`` / ``EV_WB.n`` (they obey signals: SUMO has no preemption).
The map and sites come from ``netmap.starting_map`` (the same helper a user
runs on their own network), with stop-bar loops on every approach lane.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from hil.sumo import build as _build
from hil.sumo import netmap

NAME = "corridor"
SPACING = (300.0, 250.0, 400.0, 180.0, 350.0, 220.0, 300.0)   # W-J1, J1-J2, ..., J6-E
SIDE = 200.0            # side street length
BAY = 60.0              # left-turn bay length
ARTERIAL_SPEED = 13.89  # 50 km/h
SIDE_SPEED = 11.11      # 40 km/h

# veh/h at the peak; the hour runs at these times the PROFILE factor.
PROFILE = ((0.0, 900.0, 0.6), (900.0, 2700.0, 1.0), (2700.0, 3600.0, 0.7))
THROUGH_EB, THROUGH_WB = 650.0, 520.0     # end-to-end arterial trips
SIDE_THROUGH, SIDE_TURN = 90.0, 45.0      # per side approach: across, and onto the arterial
ARTERIAL_TURN = 40.0                      # arterial -> side street per direction, per signal
EV_PER_HOUR = 4                           # per direction

# One emergency preempt per arterial direction (EB 1, WB 2), as hil/sumo/preempt_bench
# does: the dwell holds both throughs of the vehicle's street, the running green is cut
# to the site floors. Called only by the brain's escort (signed priority requests), which
# holds the call while the vehicle approaches: non-locking, so a call the escort has
# cleared while the other direction's preempt was served is not served afterwards.
PREEMPTS = (("EB", 1, [2, 6]), ("WB", 2, [6, 2]))
PREEMPT_MIN_DWELL_S = 4.0


class Corridor:
    """The built corridor files."""

    def __init__(self, directory, n):
        d = Path(directory)
        self.dir = d
        self.n = n
        self.net = d / (NAME + ".net.xml")
        self.routes = d / (NAME + ".rou.xml")
        self.ev_routes = d / (NAME + ".ev.rou.xml")
        self.map = d / (NAME + ".map.json")
        self.loops = d / (NAME + ".loops.add.xml")
        self.signals = ["J%d" % (i + 1) for i in range(n)]

    def __repr__(self):
        return "Corridor(%r)" % str(self.dir)


def _x_positions(spacing):
    xs, x = [], 0.0
    for s in spacing:
        x += s
        xs.append(x)
    return xs          # J1..Jn, then E


def plain_xml(spacing=SPACING):
    """(nodes, edges, connections) XML text of the corridor."""
    xs = _x_positions(spacing)
    n = len(spacing) - 1
    sig = ["J%d" % (i + 1) for i in range(n)]
    art = ["W"] + sig + ["E"]
    xpos = [0.0] + xs
    nodes = ['<nodes>']
    for name, x in zip(art, xpos):
        if name in ("W", "E"):
            nodes.append('  <node id="%s" x="%.1f" y="0.0" type="priority"/>' % (name, x))
        else:
            nodes.append('  <node id="%s" x="%.1f" y="0.0" type="traffic_light" tl="%s"/>'
                         % (name, x, name))
            nodes.append('  <node id="%sN" x="%.1f" y="%.1f" type="priority"/>' % (name, x, SIDE))
            nodes.append('  <node id="%sS" x="%.1f" y="%.1f" type="priority"/>' % (name, x, -SIDE))
    edges, cons = ['<edges>'], ['<connections>']
    for k in range(len(art) - 1):
        for a, b, xa, xb in ((art[k], art[k + 1], xpos[k], xpos[k + 1]),
                             (art[k + 1], art[k], xpos[k + 1], xpos[k])):
            if b in ("W", "E"):
                edges.append('  <edge id="%s_%s" from="%s" to="%s" priority="3" numLanes="2" '
                             'speed="%.2f"/>' % (a, b, a, b, ARTERIAL_SPEED))
                continue
            bay = "%s_%s_bay" % (a, b)
            bx = xb - BAY if xb > xa else xb + BAY
            nodes.append('  <node id="%s" x="%.1f" y="0.0" type="priority"/>' % (bay, bx))
            up, last = "%s_%s_up" % (a, b), "%s_%s" % (a, b)
            edges.append('  <edge id="%s" from="%s" to="%s" priority="3" numLanes="2" speed="%.2f"/>'
                         % (up, a, bay, ARTERIAL_SPEED))
            edges.append('  <edge id="%s" from="%s" to="%s" priority="3" numLanes="3" speed="%.2f"/>'
                         % (last, bay, b, ARTERIAL_SPEED))
            cons += ['  <connection from="%s" to="%s" fromLane="0" toLane="0"/>' % (up, last),
                     '  <connection from="%s" to="%s" fromLane="1" toLane="1"/>' % (up, last),
                     '  <connection from="%s" to="%s" fromLane="1" toLane="2"/>' % (up, last)]
    for i, j in enumerate(sig):
        west, east = art[i], art[i + 2]
        for s in ("N", "S"):
            edges.append('  <edge id="%s%s_%s" from="%s%s" to="%s" priority="2" numLanes="1" '
                         'speed="%.2f"/>' % (j, s, j, j, s, j, SIDE_SPEED))
            edges.append('  <edge id="%s_%s%s" from="%s" to="%s%s" priority="2" numLanes="1" '
                         'speed="%.2f"/>' % (j, j, s, j, j, s, SIDE_SPEED))
        out_e, out_w = "%s_%s" % (j, east), "%s_%s" % (j, west)
        if east not in ("W", "E"):
            out_e += "_up"
        if west not in ("W", "E"):
            out_w += "_up"
        north, south = "%s_%sN" % (j, j), "%s_%sS" % (j, j)
        for src, right, through, left in (("%s_%s" % (west, j), south, out_e, north),
                                          ("%s_%s" % (east, j), north, out_w, south)):
            cons += ['  <connection from="%s" to="%s" fromLane="0" toLane="0"/>' % (src, right),
                     '  <connection from="%s" to="%s" fromLane="0" toLane="0"/>' % (src, through),
                     '  <connection from="%s" to="%s" fromLane="1" toLane="1"/>' % (src, through),
                     '  <connection from="%s" to="%s" fromLane="2" toLane="0"/>' % (src, left)]
        for src, right, through, left in (("%sS_%s" % (j, j), out_e, north, out_w),
                                          ("%sN_%s" % (j, j), out_w, south, out_e)):
            cons += ['  <connection from="%s" to="%s" fromLane="0" toLane="0"/>' % (src, right),
                     '  <connection from="%s" to="%s" fromLane="0" toLane="0"/>' % (src, through),
                     '  <connection from="%s" to="%s" fromLane="0" toLane="1"/>' % (src, left)]
    nodes.append('</nodes>')
    edges.append('</edges>')
    cons.append('</connections>')
    return "\n".join(nodes) + "\n", "\n".join(edges) + "\n", "\n".join(cons) + "\n"


def _flow(fid, frm, to, rate, vtype="car"):
    lines = []
    for k, (b, e, f) in enumerate(PROFILE):
        r = rate * f
        if r > 0:
            lines.append((b, '  <flow id="%s~%d" type="%s" from="%s" to="%s" begin="%.0f" end="%.0f" '
                         'period="exp(%.6f)" departLane="best" departSpeed="max"/>'
                         % (fid, k, vtype, frm, to, b, e, r / 3600.0)))
    return lines


def routes_xml(n, scale=1.0):
    """The hour of demand (Poisson flows, peak in the middle)."""
    sig = ["J%d" % (i + 1) for i in range(n)]
    first_in, last_in = "W_J1_up", "E_J%d_up" % n
    first_out, last_out = "J%d_E" % n, "J1_W"
    flows = _flow("EB", first_in, first_out, THROUGH_EB * scale)
    flows += _flow("WB", last_in, last_out, THROUGH_WB * scale)
    for j in sig:
        for s, o in (("N", "S"), ("S", "N")):
            flows += _flow("%s%sthru" % (j, s), "%s%s_%s" % (j, s, j), "%s_%s%s" % (j, j, o),
                           SIDE_THROUGH * scale)
            flows += _flow("%s%s_to_E" % (j, s), "%s%s_%s" % (j, s, j), first_out, SIDE_TURN * scale)
            flows += _flow("%s%s_to_W" % (j, s), "%s%s_%s" % (j, s, j), last_out, SIDE_TURN * scale)
        flows += _flow("EB_to_%sN" % j, first_in, "%s_%sN" % (j, j), ARTERIAL_TURN * scale)
        flows += _flow("WB_to_%sS" % j, last_in, "%s_%sS" % (j, j), ARTERIAL_TURN * scale)
    # SUMO reads route files incrementally: departures must come in time order.
    lines = ['<routes>',
             '  <vType id="car" vClass="passenger" length="5.0" minGap="2.5" accel="2.6" '
             'decel="4.5" sigma="0.5" speedFactor="normc(1,0.1,0.2,2)"/>']
    lines += [text for _, text in sorted(flows, key=lambda x: x[0])]
    lines.append('</routes>')
    return "\n".join(lines) + "\n"


def ev_routes_xml(n, per_hour=EV_PER_HOUR, departs=None):
    """Emergency vehicles end to end both ways, evenly spread (they obey the signals).
    departs: [(depart s, "EB"|"WB")] instead of the even spread (short test slices)."""
    lines = ['<routes>',
             '  <vType id="ev" vClass="emergency" length="6.5" minGap="2.5" accel="2.6" '
             'decel="4.5" sigma="0.0" speedFactor="1.0" guiShape="emergency"/>']
    step = 3600.0 / per_hour
    trips = []
    if departs is None:
        departs = []
        for k in range(per_hour):
            departs += [(step * (k + 0.5), "EB"), (step * (k + 0.5) + step / 4, "WB")]
    count = {"EB": 0, "WB": 0}
    for t, d in departs:
        frm, to = ("W_J1_up", "J%d_E" % n) if d == "EB" else ("E_J%d_up" % n, "J1_W")
        trips.append((t, "EV_%s.%d" % (d, count[d]), frm, to))
        count[d] += 1
    for t, vid, frm, to in sorted(trips):
        lines.append('  <trip id="%s" type="ev" depart="%.1f" from="%s" to="%s" departLane="best" '
                     'departSpeed="max"/>' % (vid, t, frm, to))
    lines.append('</routes>')
    return "\n".join(lines) + "\n"


def arterial_edges(n, direction):
    """The edges of an end-to-end arterial trip, in driving order ("EB" or "WB")."""
    art = ["W"] + ["J%d" % (i + 1) for i in range(n)] + ["E"]
    if direction == "WB":
        art = art[::-1]
    edges = []
    for a, b in zip(art, art[1:]):
        edges += ["%s_%s" % (a, b)] if b in ("W", "E") else ["%s_%s_up" % (a, b), "%s_%s" % (a, b)]
    return edges


def add_preempts(site):
    """The site dict with the corridor's emergency preempts (one per arterial direction)."""
    site = dict(site)
    site["preempts"] = [{"number": num, "type": "emergency", "non_locking": True, "dwell_phases": dwell,
                         "min_green": 0.0, "min_walk": 0.0, "ped_clear": 0.0,
                         "min_dwell": PREEMPT_MIN_DWELL_S} for _, num, dwell in PREEMPTS]
    return site


def build_corridor(spacing=SPACING, cache_dir=None, scale=1.0, force=False, ev_departs=None):
    """Build (or reuse) the corridor: net, routes, EV routes, map, sites and loops.
    ev_departs: [(depart s, "EB"|"WB")] for the emergency vehicles (default: 4/h each way)."""
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) < 2 or min(spacing[1:-1] or (999,)) <= BAY + 40:
        raise ValueError("spacing %r: at least two gaps, inner ones over %.0f m" % (spacing, BAY + 40))
    cache_dir = Path(cache_dir or os.environ.get("EDGE_AGENT_SUMO_CACHE") or _build.DEFAULT_CACHE_DIR)
    nod, edg, con = plain_xml(spacing)
    n = len(spacing) - 1
    rou, ev = routes_xml(n, scale), ev_routes_xml(n, departs=ev_departs)
    h = hashlib.sha256()
    for part in (_build.netconvert_version(), repr(_build.NETCONVERT_OPTIONS), nod, edg, con, rou, ev,
                 Path(netmap.__file__).read_text(), repr((PREEMPTS, PREEMPT_MIN_DWELL_S))):
        h.update(part.encode())
    out = cache_dir / ("%s-%s" % (NAME, h.hexdigest()[:16]))
    if out.is_dir() and not force:
        return Corridor(out, n)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".%s-" % NAME, dir=str(cache_dir)))
    try:
        for ext, text in ((".nod.xml", nod), (".edg.xml", edg), (".con.xml", con)):
            (tmp / (NAME + ext)).write_text('<?xml version="1.0" encoding="UTF-8"?>\n' + text)
        net = tmp / (NAME + ".net.xml")
        cmd = [_build.sumo_binary("netconvert"), "--node-files", str(tmp / (NAME + ".nod.xml")),
               "--edge-files", str(tmp / (NAME + ".edg.xml")),
               "--connection-files", str(tmp / (NAME + ".con.xml"))]
        cmd += list(_build.NETCONVERT_OPTIONS) + ["--output-file", str(net)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError("netconvert failed (%d): %s%s" % (res.returncode, res.stdout, res.stderr))
        net.write_text(re.sub(r"<!-- generated on .*?-->", "<!-- built by hil/sumo/corridor.py -->",
                              net.read_text(), count=1, flags=re.S))
        (tmp / (NAME + ".rou.xml")).write_text('<?xml version="1.0" encoding="UTF-8"?>\n' + rou)
        (tmp / (NAME + ".ev.rou.xml")).write_text('<?xml version="1.0" encoding="UTF-8"?>\n' + ev)
        netmap.starting_map(net, tmp, NAME)
        for entry in json.loads((tmp / (NAME + ".map.json")).read_text())["tls"].values():
            sf = tmp / entry["site"]
            sf.write_text(json.dumps(add_preempts(json.loads(sf.read_text())), indent=1) + "\n")
        (tmp / "spacing.json").write_text(json.dumps(list(spacing)) + "\n")
        if out.is_dir():
            shutil.rmtree(out, ignore_errors=True)
        try:
            os.replace(str(tmp), str(out))
        except OSError:
            if not out.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Corridor(out, n)


def describe(c):
    """One line per signal: its phases and loops (for the CLI and docs)."""
    m = json.loads(c.map.read_text())
    out = []
    for tls in sorted(m["tls"]):
        e = m["tls"][tls]
        out.append("%s: phases %s, %d loops" % (tls, ",".join(sorted(e["phases"])), len(e["loops"])))
    return out
