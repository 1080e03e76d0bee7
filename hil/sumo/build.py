"""Build the SUMO files of the test intersection from our plain-XML sources.

Everything SUMO reads is made here, deterministically, from the files in
``hil/sumo/network/``:

- ``arterial.net.xml``  netconvert of ``arterial.nod/edg/con.xml`` (cached:
  the cache key is the hash of the sources, the mapping, the options and the
  netconvert version; the output is byte-identical from one build to the next)
- ``arterial.det.xml``  the induction loops of ``arterial.map.json`` (stop-bar
  and advance loops per approach lane, exit loops downstream)
- routes: ``write_routes`` (flows per movement in veh/h, Poisson arrivals drawn
  from SUMO's ``--seed``)
- signal programs for SUMO's own controllers: ``write_tls_program``

SUMO itself comes from PyPI (``eclipse-sumo``, ``libsumo``, ``traci``); this
module finds its binaries through the ``sumo`` package, then ``$SUMO_HOME``,
then ``$PATH``.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

NETWORK_DIR = Path(__file__).resolve().parent / "network"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CACHE_DIR = REPO_ROOT / "build" / "sumo"   # 'build/' is git-ignored
NAME = "arterial"

NETCONVERT_OPTIONS = (
    "--offset.disable-normalization", "true",   # keep C at (0, 0)
    "--no-turnarounds", "true",
    "--tls.default-type", "static",
    "--output.original-names", "false",
)

# veh/h per movement. EB/WB = the arterial, NB/SB = the minor street.
DEFAULT_DEMAND = {
    "EB": {"through": 700, "left": 120, "right": 100},
    "WB": {"through": 700, "left": 120, "right": 100},
    "NB": {"through": 250, "left": 60, "right": 80},
    "SB": {"through": 250, "left": 60, "right": 80},
}

# Groups of concurrent phases used for SUMO's own (single-sequence) programs:
# lead-lead lefts, one barrier after the other.
PROGRAM_GROUPS = ((1, 5), (2, 6), (3, 7), (4, 8))


class SumoNotFound(RuntimeError):
    pass


# ---------------------------------------------------------------- binaries

def sumo_home():
    """SUMO_HOME of the installed SUMO, or None."""
    try:
        import sumo  # the eclipse-sumo wheel
        return str(sumo.SUMO_HOME)
    except ImportError:
        pass
    home = os.environ.get("SUMO_HOME")
    if home and os.path.isdir(home):
        return home
    return None


def sumo_binary(name="sumo"):
    """Path of a SUMO tool ('sumo', 'sumo-gui', 'netconvert', ...)."""
    home = sumo_home()
    if home:
        path = os.path.join(home, "bin", name)
        if os.path.exists(path):
            return path
    path = shutil.which(name)
    if path:
        return path
    raise SumoNotFound(
        "SUMO tool %r not found: pip install eclipse-sumo==1.28.0 libsumo==1.28.0 traci==1.28.0" % name)


def sumo_available():
    try:
        sumo_binary("sumo")
        sumo_binary("netconvert")
        return True
    except SumoNotFound:
        return False


def netconvert_version():
    out = subprocess.run([sumo_binary("netconvert"), "--version"], capture_output=True,
                         text=True, check=True).stdout
    return out.splitlines()[0].strip() if out else "unknown"


# ---------------------------------------------------------------- sources

def _sources(network_dir):
    network_dir = Path(network_dir)
    names = [NAME + ext for ext in (".nod.xml", ".edg.xml", ".con.xml", ".tll.xml", ".map.json")]
    return [network_dir / n for n in names if (network_dir / n).exists()]


def load_mapping(network_dir=None):
    network_dir = Path(network_dir or NETWORK_DIR)
    with open(network_dir / (NAME + ".map.json")) as f:
        return json.load(f)


def load_site(network_dir=None):
    network_dir = Path(network_dir or NETWORK_DIR)
    with open(network_dir / (NAME + ".site.json")) as f:
        return json.load(f)


class Build:
    """The built files of one network: net, detectors, mapping, link table."""

    def __init__(self, directory, mapping):
        self.dir = Path(directory)
        self.net = self.dir / (NAME + ".net.xml")
        self.detectors = self.dir / (NAME + ".det.xml")
        self.mapping = mapping
        self.links = read_tls_links(self.net, mapping["tls"])

    def __repr__(self):
        return "Build(%r)" % str(self.dir)


def build_network(network_dir=None, cache_dir=None, force=False):
    """Build (or reuse) the network; return a ``Build``.

    netconvert runs on our plain-XML files into
    ``<cache_dir>/arterial-<hash>/``; a finished build is reused.
    """
    network_dir = Path(network_dir or NETWORK_DIR)
    cache_dir = Path(cache_dir or os.environ.get("EDGE_AGENT_SUMO_CACHE") or DEFAULT_CACHE_DIR)
    mapping = load_mapping(network_dir)
    h = hashlib.sha256()
    h.update(netconvert_version().encode())
    h.update(repr(NETCONVERT_OPTIONS).encode())
    h.update(_DETECTOR_FORMAT_VERSION.encode())
    for src in _sources(network_dir):
        h.update(src.name.encode())
        h.update(src.read_bytes())
    digest = h.hexdigest()[:16]
    out_dir = cache_dir / ("%s-%s" % (NAME, digest))
    if out_dir.is_dir() and not force:
        return Build(out_dir, mapping)

    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".%s-" % NAME, dir=str(cache_dir)))
    try:
        net = tmp / (NAME + ".net.xml")
        cmd = [sumo_binary("netconvert"),
               "--node-files", str(network_dir / (NAME + ".nod.xml")),
               "--edge-files", str(network_dir / (NAME + ".edg.xml"))]
        if (network_dir / (NAME + ".con.xml")).exists():
            cmd += ["--connection-files", str(network_dir / (NAME + ".con.xml"))]
        if (network_dir / (NAME + ".tll.xml")).exists():
            cmd += ["--tllogic-files", str(network_dir / (NAME + ".tll.xml"))]
        cmd += list(NETCONVERT_OPTIONS) + ["--output-file", str(net)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError("netconvert failed (%d): %s%s" % (res.returncode, res.stdout, res.stderr))
        # Replace the header comment (time stamp, absolute paths) by a fixed one.
        text = net.read_text()
        text = re.sub(r"<!-- generated on .*?-->",
                      "<!-- built by hil/sumo/build.py from %s.*.xml (sources %s) -->" % (NAME, digest),
                      text, count=1, flags=re.S)
        net.write_text(text)
        write_detectors(tmp / (NAME + ".det.xml"), mapping, read_lane_lengths(net))
        if out_dir.is_dir():        # force, or a concurrent build won
            shutil.rmtree(out_dir, ignore_errors=True)
        try:
            os.replace(str(tmp), str(out_dir))
        except OSError:
            if not out_dir.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Build(out_dir, mapping)


# ---------------------------------------------------------------- reading the net

def read_tls_links(net_path, tls_id):
    """The controlled links of ``tls_id``: a list indexed by linkIndex of dicts
    {from, to, fromLane, toLane, dir, linkIndex}."""
    links = {}
    for _, el in ET.iterparse(str(net_path)):
        if el.tag == "connection" and el.get("tl") == tls_id:
            i = int(el.get("linkIndex"))
            if i in links:
                raise ValueError("link index %d used twice" % i)
            links[i] = {"linkIndex": i, "from": el.get("from"), "to": el.get("to"),
                        "fromLane": int(el.get("fromLane")), "toLane": int(el.get("toLane")),
                        "dir": el.get("dir")}
    n = len(links)
    if sorted(links) != list(range(n)):
        raise ValueError("link indices of %s are not 0..%d" % (tls_id, n - 1))
    return [links[i] for i in range(n)]


def read_lane_lengths(net_path):
    lengths = {}
    for _, el in ET.iterparse(str(net_path)):
        if el.tag == "lane":
            lengths[el.get("id")] = float(el.get("length"))
    return lengths


# ---------------------------------------------------------------- additional files

_DETECTOR_FORMAT_VERSION = "det-1"


def write_detectors(path, mapping, lane_lengths):
    """Induction loops (E1 with a length) for the mapping's detectors.

    A loop of ``length`` m whose downstream edge is ``setback`` m before the
    stop line (the lane end); SUMO's ``pos`` is the loop's upstream edge.
    """
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             "<!-- induction loops of %s.map.json, made by hil/sumo/build.py -->" % NAME,
             "<additional>"]
    for d in mapping["detectors"]:
        length = float(d["length"])
        pos = lane_lengths[d["lane"]] - float(d["setback"]) - length
        if pos < 0:
            raise ValueError("detector %s does not fit on lane %s" % (d["id"], d["lane"]))
        lines.append('    <inductionLoop id="%s" lane="%s" pos="%.2f" length="%.2f" period="86400" file="NUL"/>'
                     % (d["id"], d["lane"], pos, length))
    for d in mapping.get("exit_detectors", ()):
        lines.append('    <inductionLoop id="%s" lane="%s" pos="%.2f" period="86400" file="NUL"/>'
                     % (d["id"], d["lane"], float(d["pos"])))
    lines.append("</additional>")
    Path(path).write_text("\n".join(lines) + "\n")


def normalize_demand(demand=None):
    """Demand as {approach: {movement: veh/h}}, defaults filled in."""
    out = {a: dict(m) for a, m in DEFAULT_DEMAND.items()}
    for a, moves in (demand or {}).items():
        if a not in out:
            raise ValueError("unknown approach %r" % a)
        for m, v in moves.items():
            if m not in out[a]:
                raise ValueError("unknown movement %r" % m)
            if v < 0:
                raise ValueError("negative demand for %s %s" % (a, m))
            out[a][m] = float(v)
    return out


def write_routes(path, mapping, demand=None, begin=0.0, end=86400.0):
    """One Poisson flow per movement (``period="exp(rate)"``; the draws come
    from SUMO's ``--seed``). Vehicle ids are ``<approach>_<movement>.<n>``."""
    demand = normalize_demand(demand)
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             "<!-- demand (veh/h): %s -->" % json.dumps(demand, sort_keys=True),
             "<routes>",
             '    <vType id="car" vClass="passenger" length="5.0" minGap="2.5" accel="2.6" decel="4.5"'
             ' sigma="0.5" speedFactor="normc(1,0.1,0.2,2)"/>']
    for a in sorted(demand):
        ap = mapping["approaches"][a]
        for m in ("through", "left", "right"):
            rate = demand[a].get(m, 0)
            if rate <= 0:
                continue
            fid = "%s_%s" % (a, m)
            lines.append('    <route id="r_%s" edges="%s %s"/>' % (fid, ap["from"], ap[m]))
            lines.append('    <flow id="%s" type="car" route="r_%s" begin="%.1f" end="%.1f" period="exp(%.6f)"'
                         ' departLane="best" departSpeed="max" departPos="base"/>'
                         % (fid, fid, begin, end, rate / 3600.0))
    lines.append("</routes>")
    Path(path).write_text("\n".join(lines) + "\n")


def plan_timings(site=None):
    """{phase: {min_green, max_green, yellow, red_clear, passage}} from the
    site's fallback plan (the same numbers the edge agent runs with)."""
    site = site or load_site()
    out = {}
    for p in site["fallback_plan"]["phases"]:
        out[int(p["phase"])] = {k: float(p[k]) for k in ("min_green", "max_green", "yellow", "red_clear", "passage")}
    return out


def write_tls_program(path, kind, build, timings=None, static_greens=None, program_id=None,
                      max_gap=3.0, detector_gap=2.0, passing_time=2.0):
    """A tlLogic for SUMO's own controller on the same phase structure:
    lead-lead lefts, groups (1+5) (2+6) | (3+7) (4+8), each green followed by
    its yellow and an all-red clearance.

    kind='static': fixed greens (``static_greens`` or the mapping's);
    kind='actuated': SUMO's gap-based actuation, minDur/maxDur = the plan's
    min and max greens, ``max_gap`` s (SUMO places its own detectors
    ``detector_gap`` s upstream of the stop line).
    """
    if kind not in ("static", "actuated"):
        raise ValueError("kind must be 'static' or 'actuated'")
    mapping = build.mapping
    timings = timings or plan_timings()
    static_greens = {int(k): float(v) for k, v in (static_greens or mapping["static_greens"]).items()}
    n = len(build.links)
    phase_links = {int(p): v["links"] for p, v in mapping["phases"].items()}

    def state(phases, letter):
        s = ["r"] * n
        for p in phases:
            for i in phase_links[p]:
                s[i] = letter
        return "".join(s)

    pid = program_id or kind
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', "<additional>",
             '    <tlLogic id="%s" type="%s" programID="%s" offset="0">' % (mapping["tls"], kind, pid)]
    if kind == "actuated":
        lines += ['        <param key="max-gap" value="%.2f"/>' % max_gap,
                  '        <param key="detector-gap" value="%.2f"/>' % detector_gap,
                  '        <param key="passing-time" value="%.2f"/>' % passing_time]
    for group in PROGRAM_GROUPS:
        t = [timings[p] for p in group]
        yellow = max(x["yellow"] for x in t)
        red = max(x["red_clear"] for x in t)
        if kind == "static":
            g = max(static_greens[p] for p in group)
            lines.append('        <phase duration="%.1f" state="%s"/>' % (g, state(group, "G")))
        else:
            mn = max(x["min_green"] for x in t)
            mx = max(x["max_green"] for x in t)
            lines.append('        <phase duration="%.1f" minDur="%.1f" maxDur="%.1f" state="%s"/>'
                         % (mn, mn, mx, state(group, "G")))
        lines.append('        <phase duration="%.1f" state="%s"/>' % (yellow, state(group, "y")))
        lines.append('        <phase duration="%.1f" state="%s"/>' % (red, state((), "r")))
    lines += ["    </tlLogic>", "</additional>"]
    Path(path).write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------- results

def _mean(xs):
    return sum(xs) / len(xs) if xs else 0.0


def parse_measures(tripinfo_path, statistics_path=None, end_s=None):
    """Measures from SUMO's --tripinfo-output (written with
    --tripinfo-output.write-unfinished) and --statistic-output."""
    done, unfinished = [], []
    for _, el in ET.iterparse(str(tripinfo_path)):
        if el.tag != "tripinfo":
            continue
        rec = {"id": el.get("id"), "depart": float(el.get("depart")),
               "arrival": float(el.get("arrival")), "timeLoss": float(el.get("timeLoss")),
               "waitingTime": float(el.get("waitingTime")), "duration": float(el.get("duration")),
               "departDelay": float(el.get("departDelay"))}
        if rec["arrival"] < 0 or el.get("vaporized") == "end":
            unfinished.append(rec)
        else:
            done.append(rec)
    m = {
        "completed": len(done),
        "unfinished": len(unfinished),
        "mean_time_loss_s": round(_mean([r["timeLoss"] for r in done]), 3),
        "mean_waiting_time_s": round(_mean([r["waitingTime"] for r in done]), 3),
        "mean_travel_time_s": round(_mean([r["duration"] for r in done]), 3),
        "mean_depart_delay_s": round(_mean([r["departDelay"] for r in done]), 3),
        "oldest_unfinished_depart_s": min([r["depart"] for r in unfinished]) if unfinished else None,
        "by_movement": {},
    }
    groups = {}
    for r in done:
        groups.setdefault(r["id"].split(".")[0], []).append(r)
    for k in sorted(groups):
        rs = groups[k]
        m["by_movement"][k] = {"completed": len(rs),
                               "mean_time_loss_s": round(_mean([r["timeLoss"] for r in rs]), 3)}
    if statistics_path and os.path.exists(str(statistics_path)):
        root = ET.parse(str(statistics_path)).getroot()
        v = root.find("vehicles")
        if v is not None:
            m["loaded"] = int(v.get("loaded"))
            m["inserted"] = int(v.get("inserted"))
            m["waiting_to_insert"] = int(v.get("waiting"))
        t = root.find("teleports")
        if t is not None:
            m["teleports"] = int(t.get("total"))
        s = root.find("safety")
        if s is not None:
            m["collisions"] = int(s.get("collisions"))
            m["emergency_stops"] = int(s.get("emergencyStops"))
    if end_s is not None:
        m["sim_time_s"] = float(end_s)
    return m
