"""Plans over a real broker: a valid plan takes effect at the next safe point and is reported
accepted; a tampered or replayed one is reported rejected with its reason and changes nothing."""

import json

from edge_agent import events as ev
from hil.central import Central
from tests.linkrig import INTERSECTION, SITE, AgentUnderTest, envelope


def reported(central, pred):
    def check():
        r = central.reported(INTERSECTION)
        return r if r and pred(r) else None
    return check


def start(tmp_path, broker, plans):
    central = Central(broker.host, broker.port, SITE).start()
    central.heartbeat(0.3)
    agent = AgentUnderTest(tmp_path / "agent", [(broker.host, broker.port)], plans=plans).start()
    assert agent.wait_mode("local", 10), agent.recorder.modes
    return central, agent


def test_valid_plan_becomes_active_at_the_next_safe_point_and_is_reported_accepted(tmp_path, broker):
    central, agent = start(tmp_path, broker, ["central-v1"])
    try:
        central.publish_plan(INTERSECTION, envelope(1))
        r = central.wait_for(reported(central, lambda r: r["active"]["version"] == 1), 25)
        assert r is not None, central.reported(INTERSECTION)
        assert r["last"]["result"] == "accepted" and r["last"]["version"] == 1
        assert r["active"] == {"version": 1, "id": "central-v1", "source": "central"}
        # Wait for the state that carries the switch itself: a state published while the
        # plan was still pending (mode central, plan local) may be the one seen first.
        state = central.wait_for(lambda: (central.state(INTERSECTION) or {}).get("mode") == "central"
                                 and (central.state(INTERSECTION).get("plan") or {}).get("version")
                                 == 1 and central.state(INTERSECTION), 5)
        assert state, central.state(INTERSECTION)
        assert state["plan"] == {"version": 1, "id": "central-v1", "source": "central"}
        assert state["online"] is True
        # The switch happened at a barrier crossing, in the same step.
        evs = central.wait_for(lambda: [e for e in central.events(INTERSECTION)
                                        if e[3] == ev.PLAN_ACTIVATED], 5)
        assert evs, "no plan-activated event reached central"
        at = evs[-1][2]
        assert any(e[2] == at and e[3] == ev.BARRIER_TERMINATION
                   for e in central.events(INTERSECTION))
        assert agent.recorder.violations == []
    finally:
        agent.stop()
        central.stop()
    assert agent.errors_logged() == []


def test_tampered_and_replayed_plans_are_rejected_with_their_reason_and_change_nothing(tmp_path, broker):
    central, agent = start(tmp_path, broker, ["central-v1", "central-v2"])
    try:
        central.publish_plan(INTERSECTION, envelope(1))
        assert central.wait_for(reported(central, lambda r: r["active"]["version"] == 1), 25)

        env = json.loads(envelope(2, "tampered"))
        env["body"] = env["body"].replace('"max_green":6.0', '"max_green":60.0')
        central.publish_plan(INTERSECTION, json.dumps(env))
        r = central.wait_for(reported(central, lambda r: r["last"]["result"] == "rejected"), 5)
        assert r["last"]["reason"] == "bad_mac"
        assert r["active"]["version"] == 1
        assert agent.rt.agent.controller.plan.id == "central-v1"
        assert agent.rt.store.high_water(INTERSECTION) == 1

        v1 = envelope(1)                  # version 1 again, validly signed: a replay
        central.publish_plan(INTERSECTION, envelope(2))
        assert central.wait_for(reported(central, lambda r: r["last"]["version"] == 2
                                         and r["last"]["result"] == "accepted"), 5)
        central.publish_plan(INTERSECTION, v1)
        r = central.wait_for(reported(central, lambda r: r["last"]["result"] == "rejected"), 5)
        assert r["last"]["reason"] == "replay" and r["last"]["version"] == 1
        assert "not above the active version 2" in r["last"]["message"]
        assert agent.rt.store.high_water(INTERSECTION) == 2
        assert central.wait_for(reported(central, lambda r: r["active"]["version"] == 2), 25)
        assert agent.rt.agent.controller.plan.id == "central-v2"
        assert agent.recorder.violations == []
    finally:
        agent.stop()
        central.stop()
