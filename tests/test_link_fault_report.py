"""A unit in a latched fault keeps its link and tells central why it flashes.

Found by the real-time corridor rig (hil/sumo/realtime.py): a cabinet whose MMU
flashed put a `Fault` object into the telemetry, the link thread failed to
encode it, called that a link error and reconnected every second, so a unit in
flash was never heard from again. Telemetry now carries the fault as the
latch's own dict, and a message the link cannot encode is dropped and counted
without touching the connection.
"""

from drivers.store import Store
from hil.central import Central
from tests.linkrig import SITE, AgentUnderTest

LATCH = {"ms": 5000, "code": 21, "channel": 0, "other": 0, "measured_ms": -1, "limit_ms": -1,
         "detail": "MMU reports port 1 timeout, failed, output relay transferred"}

def test_a_unit_booted_into_a_latched_fault_reports_it_in_telemetry_on_one_connection(tmp_path, broker):
    Store(str(tmp_path / "unit" / "store")).save_latch(LATCH)
    central = Central(broker.host, broker.port, SITE).start()
    central.heartbeat(0.3)
    agent = AgentUnderTest(tmp_path / "unit", [(broker.host, broker.port)]).start()
    try:
        first = central.wait_for(lambda: central.last_telemetry(agent.intersection), 10)
        assert first is not None, agent.log_records()[-5:]
        assert first["mode"] == "flash"
        assert first["fault"] == dict(LATCH, rule="MMU fault")
        n = central.telemetry_count[agent.intersection]
        # the sentinel: two more reports on the same connection
        assert central.wait_for(lambda: central.telemetry_count[agent.intersection] >= n + 2, 10)
        link = agent.rt.link.counters
        assert (link["connections"], link["link_errors"], link["unencodable"]) == (1, 0, 0)
    finally:
        agent.stop()
        central.stop()

def test_a_message_the_link_cannot_encode_is_dropped_and_counted_and_the_rest_go_out(tmp_path, broker):
    central = Central(broker.host, broker.port, SITE).start()
    central.heartbeat(0.3)
    agent = AgentUnderTest(tmp_path / "unit", [(broker.host, broker.port)]).start()
    try:
        link = agent.rt.link
        assert central.wait_for(lambda: central.last_telemetry(agent.intersection), 10)
        topic = link.topics.telemetry
        link.publish(topic, {"bad": object()})
        link.publish(topic, {"sentinel": 1})
        got = central.wait_for(lambda: (central.last_telemetry(agent.intersection) or {})
                               .get("sentinel"), 10)
        assert got == 1
        assert (link.counters["unencodable"], link.counters["link_errors"],
                link.counters["connections"]) == (1, 0, 1)
        said = [r for r in agent.log_records() if r["msg"] == "message not encodable, dropped"]
        assert len(said) == 1 and said[0]["topic"] == topic and "object" in said[0]["error"]
    finally:
        agent.stop()
        central.stop()
