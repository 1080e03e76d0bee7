"""The shipped ACL and passwords on a real broker, and TLS end to end.

Intersection A must not be able to write B's plan/desired nor read B's cmd:
the broker itself must refuse (a central subscriber never sees A's write,
A never receives B's command), while the same clients' allowed traffic goes
through. Then a TLS listener with a CA, broker and client certificates made
here runs the agent end to end: connect, state, a plan accepted.
"""

import os
import shutil
import subprocess
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from drivers.commands import command_body, sign_command
from hil.broker import Broker, mosquitto_binary
from hil.central import Central
from tests.linkrig import INTERSECTION, KID, SECRET, SITE, AgentUnderTest, envelope
from tests.pki import make_pki

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ACL = os.path.join(REPO, "docs", "mosquitto", "edge-agent.acl")
A, B = INTERSECTION, "quick-0002"
PASSWORDS = {"central": "central-pw", A: "pw-a-0001", B: "pw-b-0002"}

pytestmark = pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto is not installed")


def password_file(path):
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    for i, (user, pw) in enumerate(PASSWORDS.items()):
        subprocess.run([tool, "-b"] + (["-c"] if i == 0 else []) + [str(path), user, pw],
                       check=True, capture_output=True)
    os.chmod(path, 0o600)
    return str(path)


def secured_broker(tmp_path, listener_extra=()):
    pw = password_file(tmp_path / "passwd")
    return Broker(tmp_path / "broker", anonymous=False,
                  extra=["password_file %s" % pw, "acl_file %s" % ACL] + list(listener_extra))


class Client:
    """A bare MQTT client recording what it receives and its SUBACK codes."""

    def __init__(self, broker, user, tls=None):
        self.got = []
        self.suback = []
        self.ready = threading.Event()
        self.subscribed = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="probe-" + user)
        c.username_pw_set(user, PASSWORDS[user])
        if tls:
            c.tls_set(**tls)
        c.on_connect = lambda cl, u, f, rc, p: (self.ready.set() if not rc.is_failure else None)
        c.on_message = lambda cl, u, m: self.got.append((m.topic, m.payload))
        c.on_subscribe = lambda cl, u, mid, codes, p: (self.suback.extend(codes),
                                                       self.subscribed.set())
        c.connect(broker.host, broker.port, keepalive=5)
        c.loop_start()
        assert self.ready.wait(5), "%s could not connect" % user
        self.c = c

    def subscribe(self, topic):
        self.subscribed.clear()
        self.c.subscribe(topic, qos=1)
        assert self.subscribed.wait(5)

    def publish(self, topic, payload, retain=False):
        self.c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def t(intersection, what):
    return "tsc/v1/%s/%s/%s" % (SITE, intersection, what)


def test_shipped_acl_keeps_each_intersection_to_its_own_topics(tmp_path):
    with secured_broker(tmp_path) as broker:
        central = Client(broker, "central")
        a = Client(broker, A)
        try:
            central.subscribe("tsc/v1/#")
            # A writes B's plan/desired (retained): the broker must drop it.
            a.publish(t(B, "plan/desired"), b"forged by A", retain=True)
            # A's own state is allowed: proof that A's traffic does reach central.
            a.publish(t(A, "state"), b'{"online": true}')
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not any(x[0] == t(A, "state") for x in central.got):
                time.sleep(0.02)
            assert any(x[0] == t(A, "state") for x in central.got)
            assert not any(x[0] == t(B, "plan/desired") for x in central.got)
            # Nothing forged was retained either: a fresh subscriber gets nothing.
            late = Client(broker, B)
            late.subscribe(t(B, "plan/desired"))
            time.sleep(0.3)
            assert late.got == []
            late.close()

            # A subscribes to B's cmd and its own; central sends both.
            a.subscribe(t(B, "cmd"))
            a.subscribe(t(A, "cmd"))
            central.publish(t(B, "cmd"), b"for B only")
            central.publish(t(A, "cmd"), b"for A")
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not any(x[0] == t(A, "cmd") for x in a.got):
                time.sleep(0.02)
            assert (t(A, "cmd"), b"for A") in a.got
            time.sleep(0.2)
            assert not any(x[0] == t(B, "cmd") for x in a.got)
            # A may not write central's heartbeat nor another site's plan either.
            a.publish("tsc/v1/%s/central/heartbeat" % SITE, b'{"ts": 1}')
            a.publish(t(A, "plan/desired"), b"self-made plan")
            time.sleep(0.3)
            assert not any("heartbeat" in x[0] or x[0] == t(A, "plan/desired") for x in central.got)
        finally:
            a.close()
            central.close()


def test_agent_runs_through_the_acl_with_its_password(tmp_path):
    with secured_broker(tmp_path) as broker:
        central = Central(broker.host, broker.port, SITE, username="central",
                          password=PASSWORDS["central"]).start()
        central.heartbeat(0.3)
        agent = AgentUnderTest(tmp_path / "agent", [(broker.host, broker.port)],
                               mqtt={"username": A, "password": PASSWORDS[A]},
                               plans=["central-v1"]).start()
        try:
            central.publish_plan(A, envelope(1))
            assert agent.wait_mode("central", 15), agent.recorder.modes
            r = central.wait_for(lambda: (central.reported(A) or {}).get("last"), 5)
            assert r["result"] == "accepted"
            assert central.wait_for(lambda: central.events(A), 5)
            assert central.wait_for(lambda: central.last_telemetry(A), 5)
        finally:
            agent.stop()
            central.stop()


# -- TLS -----------------------------------------------------------------------------------

def test_tls_listener_with_a_test_ca_works_end_to_end(tmp_path):
    pki = make_pki(str(tmp_path), A)
    tls_lines = ["cafile %s" % pki["ca"], "certfile %s" % pki["broker_crt"],
                 "keyfile %s" % pki["broker_key"], "require_certificate true",
                 "tls_version tlsv1.2"]
    with secured_broker(tmp_path, tls_lines) as broker:
        # Without the CA the broker's certificate is refused; with it, all is well.
        plain = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="no-tls")
        plain.username_pw_set("central", PASSWORDS["central"])
        with pytest.raises(Exception):
            plain.connect(broker.host, broker.port, keepalive=5)
            plain.loop(1.0)
            plain.loop(1.0)
            assert plain.is_connected()
        central = Central(broker.host, broker.port, SITE, username="central",
                          password=PASSWORDS["central"], ca_file=pki["ca"],
                          cert_file=pki["client_crt"], key_file=pki["client_key"]).start()
        central.heartbeat(0.3)
        agent = AgentUnderTest(tmp_path / "agent", [(broker.host, broker.port)],
                               mqtt={"username": A, "password": PASSWORDS[A],
                                     "tls": {"ca_file": pki["ca"], "cert_file": pki["client_crt"],
                                             "key_file": pki["client_key"]}},
                               plans=["central-v1"]).start()
        try:
            assert central.wait_for(lambda: (central.state(A) or {}).get("online"), 10)
            central.publish_plan(A, envelope(1))
            assert agent.wait_mode("central", 15), agent.recorder.modes
            r = central.wait_for(lambda: (central.reported(A) or {}).get("last"), 5)
            assert r["result"] == "accepted" and r["version"] == 1
        finally:
            agent.stop()
            central.stop()
        assert agent.rt.link.counters["connections"] >= 1


# -- client ids bound to user names (finding 1) --------------------------------------------

CONF = os.path.join(REPO, "docs", "mosquitto", "mosquitto.conf")


def shipped_identity_lines():
    """The shipped config's client-id binding, exactly as written there."""
    with open(CONF) as f:
        return [line.strip() for line in f if line.startswith("use_username_as_clientid")]


def wait_for(predicate, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_another_units_credentials_cannot_take_over_a_units_client_id(tmp_path):
    with secured_broker(tmp_path, shipped_identity_lines()) as broker:
        agent = AgentUnderTest(tmp_path / "b", [(broker.host, broker.port)], intersection=B,
                               mqtt={"username": B, "password": PASSWORDS[B]}).start()
        try:
            link = agent.rt.link
            assert wait_for(lambda: link.subscribed, 10)
            # A's credentials, B's client id (the old predictable one and B's user name), twice each.
            for cid in ("edge-agent-" + B, B) * 2:
                thief = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid)
                thief.username_pw_set(A, PASSWORDS[A])
                thief.connect(broker.host, broker.port, keepalive=5)
                thief.loop_start()
                assert wait_for(thief.is_connected, 5)
                thief.loop_stop()
                thief.disconnect()
            # Sentinel: a command to B answered on cmd/result proves B's session is up now.
            central = Client(broker, "central")
            central.subscribe(t(B, "cmd/result"))
            body = command_body(B, 1, "resend_state", int(time.time()))
            central.publish(t(B, "cmd"), sign_command(body, KID, bytes.fromhex(SECRET)))
            assert wait_for(lambda: central.got, 10)
            central.close()
            assert b'"ok":true' in central.got[0][1]
            assert link.counters["connections"] == 1, link.stats()
            assert link.counters.get("connections_lost", 0) == 0, link.stats()
        finally:
            agent.stop()
