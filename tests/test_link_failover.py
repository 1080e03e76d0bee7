"""Link loss and return with a real broker: SIGKILL the broker, or silence central's heartbeat.

The agent must fall back to local control within the configured detection
time (1 s here), stay safe (the independent checker sees every step), raise
nothing, and on return reconnect, re-sync and go back to central after the
stable time (2 s here). Central must then hold every event the agent logged,
including those of the outage, in order, exactly once after de-duplication
by sequence number.
"""

import time

from drivers.runtime import BOOT_PLAN
from hil.central import Central
from tests.linkrig import INTERSECTION, SITE, AgentUnderTest, envelope

LOSS_S = 1.0
STABLE_S = 2.0
SLACK_S = 0.6            # a heartbeat period (0.3 s), a step, and scheduling


def central_with_plan(tmp_path, broker):
    central = Central(broker.host, broker.port, SITE).start()
    central.heartbeat(0.3)
    agent = AgentUnderTest(tmp_path / "agent", [(broker.host, broker.port)],
                           link={"loss_s": LOSS_S, "stable_s": STABLE_S},
                           plans=["central-v1"]).start()
    central.publish_plan(INTERSECTION, envelope(1))
    assert agent.wait_mode("central", 15), agent.recorder.modes
    time.sleep(1.5)              # the broker's autosave holds central's durable session
    return central, agent


def expected_events(agent, upto):
    """What central must hold: the boot event, then every core event in logged order."""
    return [(BOOT_PLAN, None)] + [(code, p) for _, code, p in agent.recorder.events[:upto]]


def test_broker_killed_agent_goes_local_and_returns_with_every_event_exactly_once(tmp_path, broker):
    central, agent = central_with_plan(tmp_path, broker)
    try:
        t_kill = time.monotonic()
        broker.kill()
        t_local = agent.wait_mode_after("local", t_kill, LOSS_S + 3)
        assert t_local is not None, agent.recorder.modes
        assert t_local - t_kill <= LOSS_S + SLACK_S, "local after %.2f s" % (t_local - t_kill)
        time.sleep(2.0)                   # the outage goes on: events pile up on disk
        outage = [e for e, t in zip(agent.recorder.events, agent.recorder.event_times)
                  if t_kill < t < time.monotonic()]
        assert outage, "the agent logged nothing during the outage"
        broker.start()
        t_back = agent.wait_mode_after("central", t_local, 15)
        assert t_back is not None, agent.recorder.modes
        state = central.wait_for(lambda: (central.state(INTERSECTION) or {}).get("mode")
                                 == "central" and central.state(INTERSECTION), 5)
        assert state and state["online"] and state["session"] >= 2
        n = len(agent.recorder.events)
        got = central.wait_for(lambda: len(central.events(INTERSECTION)) >= n + 1
                               and central.events(INTERSECTION), 15)
        assert got, "central has %d of %d events" % (len(central.events(INTERSECTION)), n + 1)
        assert [r[0] for r in got[:n + 1]] == list(range(got[0][0], got[0][0] + n + 1))
        want = expected_events(agent, n)
        have = [(r[3], r[4] if r[3] != BOOT_PLAN else None) for r in got[:n + 1]]
        assert have == want
        assert central.missing(INTERSECTION) == []
        assert agent.recorder.violations == []
        assert agent.rt.link.thread.is_alive()
    finally:
        agent.stop()
        central.stop()
    assert agent.errors_logged() == []


def test_heartbeat_silence_with_the_broker_up_is_a_link_loss(tmp_path, broker):
    central, agent = central_with_plan(tmp_path, broker)
    try:
        t_stop = time.monotonic()
        central.stop_heartbeat()
        t_local = agent.wait_mode_after("local", t_stop, LOSS_S + 3)
        assert t_local is not None, agent.recorder.modes
        assert t_local - t_stop <= LOSS_S + SLACK_S, "local after %.2f s" % (t_local - t_stop)
        assert agent.rt.link.connected       # the broker session never dropped
        state = central.wait_for(lambda: (central.state(INTERSECTION) or {}).get("mode")
                                 == "local", 3)
        assert state, "central was not told of the local mode"
        central.heartbeat(0.3)
        t_back = agent.wait_mode_after("central", t_local, STABLE_S + 3)
        assert t_back is not None, agent.recorder.modes
        assert agent.recorder.violations == []
    finally:
        agent.stop()
        central.stop()
    assert agent.errors_logged() == []


def test_servers_get_distinct_ports_that_outgoing_connections_cannot_take():
    # A broker restarted after a kill binds its old port again: the kernel's choice of
    # port (the ephemeral range) could meanwhile be an outgoing connection's, and two
    # calls could return the same port (a NATS cluster takes 12).
    from hil.broker import _ephemeral_low, free_port
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low = int(f.read().split()[0])
    assert _ephemeral_low() == low
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == 200
    assert all(max(1024, low - 20000) <= p < low for p in ports), (low, ports)
