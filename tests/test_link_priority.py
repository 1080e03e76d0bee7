"""Priority requests over a real broker: a signed request calls the preempt and the
unit reports mode "preempt" with its number and stage; a forged or misaddressed one
is rejected with its reason and changes nothing; clear cancels the request."""

import json
import time

from edge_agent import events as ev
from edge_agent.envelope import seal_hmac
from hil.central import Central
from tests.linkrig import INTERSECTION, KID, SECRET, SITE, AgentUnderTest, quick_site

PREEMPT = {"number": 1, "dwell_phases": [4, 8], "min_dwell": 2.0, "exit_phases": [2, 6]}


def request(version, action="request", intersection=INTERSECTION, secret=SECRET, last_s=30):
    now = int(time.time())
    body = {"intersection": intersection, "version": version, "issued_at": now,
            "expires_at": now + last_s, "preempt": 1, "action": action}
    return seal_hmac(json.dumps(body), KID, bytes.fromhex(secret))


def codes(agent, code):
    return [e for e in list(agent.recorder.events) if e[1] == code and e[2] == 1]


def test_signed_priority_request_calls_the_preempt_and_clear_cancels_it(tmp_path, broker):
    site = quick_site()
    site["preempts"] = [PREEMPT]
    central = Central(broker.host, broker.port, SITE).start()
    central.heartbeat(0.3)
    agent = AgentUnderTest(tmp_path / "agent", [(broker.host, broker.port)], site=site).start()
    topic = central.topic(INTERSECTION, "priority")
    try:
        assert agent.wait_mode("local", 10), agent.recorder.modes
        # Rejected, each with its reason, and nothing changes.
        central.publish_raw(topic, request(1, secret="00" * 32), qos=1)
        central.publish_raw(topic, request(2, intersection="quick-0002"), qos=1)
        tele = central.wait_for(lambda: (central.last_telemetry(INTERSECTION) or {})
                                .get("priority", {}).get("rejected") == {"bad_mac": 1,
                                                                        "wrong_intersection": 1}
                                and central.last_telemetry(INTERSECTION), 10)
        assert tele, central.last_telemetry(INTERSECTION)
        assert codes(agent, ev.PREEMPT_CALL_ON) == []
        # Accepted: the preempt is called at once (no arrival time given).
        central.publish_raw(topic, request(3), qos=1)
        t_preempt = agent.wait_mode("preempt", 10)
        assert t_preempt, agent.recorder.modes
        assert central.wait_for(lambda: codes(agent, ev.PREEMPT_DWELL), 15)
        tele = central.wait_for(lambda: (central.last_telemetry(INTERSECTION) or {})
                                .get("preempt") == {"number": 1, "stage": "dwell"}, 10)
        assert tele, central.last_telemetry(INTERSECTION)
        # A replay of version 3 is refused; clear (version 4) cancels the call.
        central.publish_raw(topic, request(3), qos=1)
        central.publish_raw(topic, request(4, action="clear"), qos=1)
        assert central.wait_for(lambda: codes(agent, ev.PREEMPT_CALL_OFF), 10)
        assert central.wait_for(lambda: codes(agent, ev.PREEMPT_EXIT), 10)
        assert agent.wait_mode_after("local", t_preempt, 15), agent.recorder.modes
        assert central.wait_for(lambda: (central.last_telemetry(INTERSECTION) or {})
                                .get("priority", {}).get("rejected", {}).get("replay") == 1, 10)
        assert len(codes(agent, ev.PREEMPT_CALL_ON)) == 1
        assert agent.recorder.violations == []
    finally:
        agent.stop()
        central.stop()
    assert agent.errors_logged() == []
