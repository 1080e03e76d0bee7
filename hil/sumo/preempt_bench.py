"""Emergency-vehicle preemption on the SUMO arterial: with and without.

    from hil.sumo.preempt_bench import run_pair
    without, with_ = run_pair(seed=1, duration_s=1800)

Emergency vehicles (SUMO vClass ``emergency``, no blue-light device: they
obey the signals like everyone else) go straight through the junction from a
seeded random approach every ``ev_every_s`` on average. Each approach has a
preempt (EB 1, WB 2, NB 3, SB 4) whose dwell serves both through phases of
its street (2+6 or 4+8), so the opposing through keeps moving; the first
programming, a queue jump (the approach's through and its own protected
left), cost the other cars too much (docs/benchmarks.md). The call is the
vehicle's presence on the approach edge: it is detected 300 m upstream (the
approach's length) and clears when it crosses the stop line. The run without
preemption uses the same site, demand, seed and EV schedule and gives the
agent no preempt input. SUMO's tripinfo then gives each vehicle's time loss.
"""

import random
import xml.etree.ElementTree as ET

from edge_agent.agent import Agent, Inputs
from edge_agent.intersection import parse_site

from hil.sumo import build as _build
from hil.sumo.bridge import SumoBridge
from hil.sumo.run import step_pulses

# approach -> (preempt number, dwell phases: both throughs of its street)
PREEMPTS = {"EB": (1, [2, 6]), "WB": (2, [6, 2]), "NB": (3, [4, 8]), "SB": (4, [8, 4])}
EV_PREFIX = "EV"


def preempt_site(site_dict=None, min_dwell_s=4.0):
    """The arterial site with one emergency preempt per approach (a plain dict)."""
    site = dict(site_dict if site_dict is not None else _build.load_site())
    site["preempts"] = [{"number": n, "type": "emergency", "dwell_phases": dwell,
                         "min_green": 0.0, "min_walk": 0.0, "ped_clear": 0.0,
                         "min_dwell": min_dwell_s}
                        for _, (n, dwell) in sorted(PREEMPTS.items(), key=lambda kv: kv[1][0])]
    return site


def ev_schedule(seed, duration_s, every_s):
    """[(depart s, approach)]: exponential headways, seeded, ending 120 s before the end."""
    rng = random.Random(seed * 7919 + 17)
    out = []
    t = 60.0 + rng.expovariate(1.0 / every_s)
    while t < duration_s - 120.0:
        out.append((round(t, 1), rng.choice(sorted(PREEMPTS))))
        t += rng.expovariate(1.0 / every_s)
    return out


def run_once(seed, duration_s, preempt, every_s=90.0, network_dir=None):
    """One run; returns {"ev": [time loss s], "cars": [time loss s], "preempts": n entries}."""
    site = preempt_site(_build.load_site(network_dir))
    agent = Agent(parse_site(site))
    mapping = _build.load_mapping(network_dir)
    approaches = mapping["approaches"]
    schedule = ev_schedule(seed, duration_s, every_s)
    bridge = SumoBridge(network_dir=network_dir, seed=seed, keep_files=True)
    bridge.start()
    conn = bridge.traci
    conn.vehicletype.copy("car", "ev")
    conn.vehicletype.setVehicleClass("ev", "emergency")
    conn.vehicletype.setSpeedFactor("ev", 1.0)
    for i, (t, a) in enumerate(schedule):
        conn.vehicle.add("%s.%d" % (EV_PREFIX, i), "r_%s_through" % a, typeID="ev",
                         depart="%.1f" % t, departLane="best", departSpeed="max")
    entries = 0
    duration_ms = int(duration_s * 1000)
    levels, pulses = {}, {}
    last_level = {ch: False for ch in bridge.channels}
    now = 0
    try:
        while now < duration_ms:
            calls = None
            if preempt:
                calls = {n: False for n, _ in PREEMPTS.values()}
                for v in conn.vehicle.getIDList():
                    if v.startswith(EV_PREFIX):
                        road = conn.vehicle.getRoadID(v)
                        for a, (n, _) in PREEMPTS.items():
                            if road == approaches[a]["from"]:
                                calls[n] = True
            out = agent.step(now, Inputs(detectors=levels, pulses=pulses, preempts=calls))
            entries += sum(1 for e in out.events if e[1] == 105)
            r = bridge.step(out.vehicle)
            now = r.time_ms
            levels = r.detectors
            pulses = step_pulses(r, last_level)
            last_level = levels
    finally:
        m = bridge.close()
    ev, cars = [], []
    for _, el in ET.iterparse(m["files"] + "/tripinfo.xml"):
        if el.tag != "tripinfo" or float(el.get("arrival")) < 0:
            continue
        (ev if el.get("id").startswith(EV_PREFIX + ".") else cars).append(float(el.get("timeLoss")))
    _cleanup(m["files"])
    return {"ev": ev, "cars": cars, "preempts": entries, "scheduled": len(schedule)}


def _cleanup(path):
    import shutil
    shutil.rmtree(path, ignore_errors=True)


def mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")


def run_pair(seed, duration_s, every_s=90.0, network_dir=None):
    """(without, with) preemption on the same demand, seed and EV schedule."""
    return (run_once(seed, duration_s, False, every_s, network_dir),
            run_once(seed, duration_s, True, every_s, network_dir))


def line(without, with_):
    """The issue's one-line summary of a pair."""
    ev0, ev1 = mean(without["ev"]), mean(with_["ev"])
    c0, c1 = mean(without["cars"]), mean(with_["cars"])
    return ("EV time loss: %.1f s without, %.1f s with (%+.0f %%); cars: %.1f s \u2192 %.1f s (%+.1f %%)"
            % (ev0, ev1, 100.0 * (ev1 - ev0) / ev0, c0, c1, 100.0 * (c1 - c0) / c0))
