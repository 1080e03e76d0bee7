"""The brain's escort in virtual time: a scripted emergency vehicle, the exact priority
requests it gets sent, and the agents' own priority checks and preempt calls."""

import json

import pytest

from edge_agent import events as ev
from edge_agent.agent import Agent, Inputs
from edge_agent.envelope import HMAC, Policy
from edge_agent.intersection import parse_site
from edge_agent.priority import PriorityVerifier
from hil.brain.escort import Escort
from hil.sumo.corridor import add_preempts
from tests.test_brain import KEY, WALL0, corridor_site

IDS = ["J1", "J2", "J3"]
STOPS = [300.0, 550.0, 950.0]          # stop lines, m along the EB route


def config():
    return {"site": "test", "key": dict(KEY), "speed_ms": 10.0,
            "corridor": [{"id": j, "site": add_preempts(corridor_site(j)), "x": x}
                         for j, x in zip(IDS, STOPS)]}


def trajectory(t_s):
    """m along the route: 10 m/s, held 10 s in a queue at 400 m (40-50 s), 10 m/s again."""
    if t_s <= 40:
        return 10.0 * t_s
    if t_s <= 50:
        return 400.0
    return 400.0 + 10.0 * (t_s - 50)


def run(end_s=112):
    """The escort ticked every 100 ms, positions every second, the vehicle gone at 110 s;
    each request goes through the agent's priority verifier into its Agent."""
    cfg = config()
    esc = Escort(cfg)
    esc.route("EV_EB.0", [(j, s, 1) for j, s in zip(IDS, STOPS)])
    sites = {e["id"]: parse_site(e["site"]) for e in cfg["corridor"]}
    agents = {j: Agent(sites[j]) for j in IDS}
    verifiers = {j: PriorityVerifier(sites[j], {KEY["kid"]: (HMAC, bytes.fromhex(KEY["secret"]))},
                                     Policy()) for j in IDS}
    last = {j: None for j in IDS}
    bodies, calls = [], {j: [] for j in IDS}
    for now in range(0, end_s * 1000, 100):
        if now % 1000 == 0:
            if now == 110_000:
                esc.finish("EV_EB.0")
            elif now < 110_000:
                esc.update(now, "EV_EB.0", trajectory(now / 1000))
        wall = WALL0 + now / 1000.0
        pending = {j: [] for j in IDS}
        for topic, payload, retain, qos in esc.tick(now, wall):
            assert (retain, qos) == (False, 1)
            j = topic.split("/")[3]
            assert topic == "tsc/v1/test/%s/priority" % j
            bodies.append((now, json.loads(json.loads(payload)["body"])))
            r = verifiers[j].check(payload, last[j], wall, now, sites[j].fallback_plan)
            assert getattr(r, "ok", True), r.message
            last[j] = r.version
            pending[j].append(r)
        for j in IDS:
            out = agents[j].step(now, Inputs(wall_ms=now, priority=pending[j] or None))
            calls[j] += [(t, code) for t, code, p in out.events
                         if code in (ev.PREEMPT_CALL_ON, ev.PREEMPT_CALL_OFF) and p == 1]
    return esc, bodies, calls


def test_requests_are_timed_by_the_arrival_renewed_as_it_moves_and_cleared_once_passed():
    esc, bodies, calls = run()
    # lead = the floor min green 4 s + yellow 3.5 s + red clearance 1.5 s: the call starts
    # 9 s before the expected arrival
    assert esc.lead_ms == {j: {1: 9000, 2: 9000} for j in IDS}

    def sent(j):
        return [(ms, a, arr) for ms, j2, n, a, arr in esc.sent if j2 == j]

    def arrivals(j):
        """(ms, arrival s after WALL0) of each request that carries one, when it changes."""
        out = []
        for ms, a, arr in sent(j):
            if arr is not None and (not out or out[-1][1] != round(arr - WALL0, 1)):
                out.append((ms, round(arr - WALL0, 1)))
        return out

    # J1 at 300 m: 30 s away at 10 m/s from the first position; the call starts at 21 s, so
    # from the renewal at 22 s on the requests say "at once"; passed (330 m) at 33 s: clear
    # at the next renewal, 34 s
    assert arrivals("J1") == [(0, 30.0)]
    assert [ms for ms, a, arr in sent("J1") if a == "request"] == list(range(0, 34_000, 2000))
    assert [ms for ms, a, arr in sent("J1") if a == "request" and arr is None] == list(range(22_000, 34_000, 2000))
    assert [ms for ms, a, arr in sent("J1") if a == "clear"] == [34_000]
    # J2 at 550 m: 55 s; held in the queue 40-50 s, the arrival moves 2 s per renewal until
    # the vehicle moves again (65 s); the call starts at 56 s; passed at 68 s
    assert arrivals("J2") == [(0, 55.0), (42_000, 57.0), (44_000, 59.0), (46_000, 61.0),
                              (48_000, 63.0), (50_000, 65.0)]
    assert [ms for ms, a, arr in sent("J2") if arr is None and a == "request"][0] == 56_000
    assert [ms for ms, a, arr in sent("J2") if a == "clear"] == [68_000]
    # J3 at 950 m: 95 s, then 105 s after the queue; call from 96 s; passed at 108 s
    assert arrivals("J3") == [(0, 95.0), (42_000, 97.0), (44_000, 99.0), (46_000, 101.0),
                              (48_000, 103.0), (50_000, 105.0)]
    assert [ms for ms, a, arr in sent("J3") if arr is None and a == "request"][0] == 96_000
    assert [ms for ms, a, arr in sent("J3") if a == "clear"] == [108_000]
    assert not esc.routes and not esc.start_sent and esc.next_ms is None
    # every body: a 10 s request for preempt 1, versions rising from the wall clock in ms
    for ms, b in bodies:
        assert b["preempt"] == 1 and b["issued_at"] == round(WALL0 + ms / 1000.0, 3)
        assert b["expires_at"] == round(WALL0 + ms / 1000.0 + 10.0, 3)
        assert b["version"] == int((WALL0 * 1000) + ms)
    # the agents call preempt 1 exactly at arrival - lead and drop it at the clear
    assert calls == {"J1": [(21_000, ev.PREEMPT_CALL_ON), (34_000, ev.PREEMPT_CALL_OFF)],
                     "J2": [(56_000, ev.PREEMPT_CALL_ON), (68_000, ev.PREEMPT_CALL_OFF)],
                     "J3": [(96_000, ev.PREEMPT_CALL_ON), (108_000, ev.PREEMPT_CALL_OFF)]}


def test_a_vehicle_that_leaves_early_clears_every_signal_it_had_requested():
    esc = Escort(config())
    esc.route("EV", [(j, s, 1) for j, s in zip(IDS, STOPS)])
    esc.update(0, "EV", 0.0)
    assert len(esc.tick(0, WALL0)) == 3
    esc.finish("EV")
    out = esc.tick(2000, WALL0 + 2)
    assert [(j, a) for _, j, _, a, _ in esc.sent[3:]] == [("J1", "clear"), ("J2", "clear"), ("J3", "clear")]
    assert len(out) == 3 and esc.tick(4000, WALL0 + 4) == []


def test_two_vehicles_on_one_preempt_clear_it_only_after_both_passed():
    esc = Escort(config())
    esc.route("A", [("J1", 300.0, 1)])
    esc.route("B", [("J1", 300.0, 1)])
    esc.update(0, "A", 290.0)
    esc.update(0, "B", 200.0)
    esc.tick(0, WALL0)
    esc.update(1000, "A", 335.0)      # A passed; B still 100 m away
    esc.tick(2000, WALL0 + 2)
    esc.update(3000, "B", 340.0)
    esc.tick(4000, WALL0 + 4)
    assert [(ms, a, arr) for ms, _, _, a, arr in esc.sent] == \
        [(0, "request", WALL0 + 1.0), (2000, "request", None), (4000, "clear", None)]


def test_a_route_through_a_signal_without_that_preempt_is_refused():
    esc = Escort(config())
    with pytest.raises(ValueError, match="escort EV: J2 has no preempt 3"):
        esc.route("EV", [("J1", 300.0, 1), ("J2", 550.0, 3)])
    assert esc.routes == {}
