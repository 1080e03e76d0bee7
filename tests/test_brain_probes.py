"""Measured travel times from probe vehicles (hil/brain/probes.py) and the offsets they give."""

import json

import pytest

from hil.brain import planner
from hil.brain.brain import Brain
from hil.brain.probes import Probes
from tests.test_brain import IDS, WALL0, XS, config, feed

SIGNALS = list(zip(IDS, XS))          # J1 300 m, J2 550 m, J3 950 m, ...


def drive(probes, vid, direction, x0, speeds, t0=WALL0):
    """Report a probe once a second from x0, moving speeds[k] m/s in second k."""
    x, sign = x0, 1 if direction == "EB" else -1
    probes.update(t0, vid, direction, x)
    for k, v in enumerate(speeds, 1):
        x += sign * v
        probes.update(t0 + k, vid, direction, x)
    return x


def test_a_probe_crossing_two_signals_without_stopping_is_one_sample_of_that_link():
    p = Probes(SIGNALS, least=1)
    # 295 m at t0, 10 m/s: J1 (300 m) is crossed at t0 + 0.5, J2 (550 m) at t0 + 25.5
    drive(p, "v1", "EB", 295.0, [10.0] * 27)
    assert p.samples[("EB", "J1", "J2")][0] == (WALL0 + 25.5, 25.0)
    assert p.counters == {"reports": 28, "crossings": 2, "samples": 1, "stopped": 0, "malformed": 0}
    t = p.travel(WALL0 + 30)
    assert t["EB"][("J1", "J2")] == 25.0 and t["EB"][("J2", "J3")] is None
    assert set(t["WB"]) == {("J2", "J1"), ("J3", "J2"), ("J4", "J3"), ("J5", "J4"), ("J6", "J5")}


def test_westbound_crossings_count_on_the_westbound_link():
    p = Probes(SIGNALS, least=1)
    drive(p, "w1", "WB", 960.0, [16.0] * 27)      # J3 at 950 (t0+0.625), J2 at 550 (t0+25.625)
    assert p.travel(WALL0 + 30)["WB"][("J3", "J2")] == 25.0


def test_a_probe_that_stopped_on_the_link_is_not_a_sample():
    p = Probes(SIGNALS, least=1)
    # crosses J1, stops 20 s in the queue at J2 (1 m/s is below 2 m/s), then crosses J2
    drive(p, "v1", "EB", 295.0, [10.0] * 20 + [1.0] * 20 + [10.0] * 6)
    assert p.counters["crossings"] == 2 and p.counters["stopped"] == 1
    assert p.counters["samples"] == 0
    assert p.travel(WALL0 + 60)["EB"][("J1", "J2")] is None


def test_a_link_time_is_the_median_of_the_window_once_there_are_enough():
    p = Probes(SIGNALS, window_s=900, least=5)
    for i, v in enumerate((10.0, 12.5, 10.0, 8.0)):        # 25.0, 20.0, 25.0, 31.25 s
        drive(p, "v%d" % i, "EB", 295.0, [v] * 35, t0=WALL0 + 100 * i)
    assert p.travel(WALL0 + 500)["EB"][("J1", "J2")] is None     # 4 samples < 5
    drive(p, "v4", "EB", 295.0, [10.0] * 30, t0=WALL0 + 400)
    assert p.travel(WALL0 + 500)["EB"][("J1", "J2")] == 25.0       # median of 5
    # the window is 900 s: at t0 + 1,130 the first two (arrived t0 + 25.5, + 120.4) are out
    assert p.travel(WALL0 + 1130)["EB"][("J1", "J2")] is None


@pytest.mark.parametrize("args", [
    (WALL0, "v", "NB", 300.0), (WALL0, "v", "EB", "300"), (WALL0, 7, "EB", 300.0),
    (WALL0, "v", "EB", float("nan")), (True, "v", "EB", 1.0)])
def test_malformed_probe_reports_are_counted_and_change_nothing(args):
    p = Probes(SIGNALS)
    assert p.update(*args) == "malformed probe"
    assert p.counters["malformed"] == 1 and p.last == {}


def test_the_brain_plans_offsets_at_the_measured_travel_times():
    b = Brain(config(first_plan_s=300, probe_least=1), now_ms=0)
    feed(b, 0, 300)
    topic = "tsc/v1/test/central/probe"
    assert b.receive(0, topic, b"{") == "malformed probe"
    # one EB probe J1 -> J2 at 10 m/s (25.0 s; the design speed gives 18.0 s)
    x, t = 295.0, WALL0 + 10
    while x <= 560.0:
        b.receive(0, topic, json.dumps({"id": "p1", "dir": "EB", "x": x, "ts": t}).encode())
        x, t = x + 10.0, t + 1
    eb, wb, used = b.travel_times(WALL0 + 300)
    assert used == {"EB": {"J1-J2": 25.0}, "WB": {}}
    assert eb["J2"] == 25.0 and wb["J2"] == 250.0 / 13.89      # WB: 250 m at the design speed
    assert round(eb["J6"] - eb["J2"], 3) == round(b.static_travel["J6"] - b.static_travel["J2"], 3)
    b.next_plan_ms = 0
    b.tick(0, WALL0 + 300)
    assert b.travel_log == [(WALL0 + 300.0, {"EB": {"J1-J2": 25.0}, "WB": {}})]
    # the offsets are the planner's at those times
    C, rec = b.plans[-1][1], b.plans[-1][2]
    target = {j: rec[j][0] for j in IDS}
    flows = b.assess(WALL0 + 300)[0]
    q_eb = sum(flows[j].get(2, 0.0) for j in IDS)
    q_wb = sum(flows[j].get(6, 0.0) for j in IDS)
    want = planner.offsets(b.junctions, target, C, eb, (q_eb, q_wb), travel_wb=wb)
    assert {j: rec[j][1] for j in IDS} == want
    assert want != planner.offsets(b.junctions, target, C, b.static_travel, (q_eb, q_wb))


def test_the_rig_map_matches_a_route_position_through_the_stop_lines():
    from hil.sumo.corridor_run import corridor_x
    eb = [(280.0, 300.0), (530.0, 550.0)]           # (m along the route, the signal's x)
    assert [corridor_x(eb, m) for m in (200.0, 280.0, 405.0, 600.0)] == [220.0, 300.0, 425.0, 620.0]
    wb = [(100.0, 550.0), (350.0, 300.0)]
    assert [corridor_x(wb, m) for m in (50.0, 225.0, 400.0)] == [600.0, 425.0, 250.0]
