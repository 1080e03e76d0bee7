"""The brain against a real Mosquitto: telemetry in, signed retained plans out, and a killed
brain that restarts from its store and the retained plans and plans again within 10 s."""

import json
import threading
import time

import paho.mqtt.client as mqtt

from edge_agent.envelope import HMAC, Policy, Verifier
from edge_agent.intersection import parse_site
from hil.brain.mqtt import BrainNode, load_store
from tests.test_brain import IDS, KEY, config, corridor_site, message


class Watcher:
    """Collects the retained plan/desired versions per intersection."""

    def __init__(self, port):
        self.versions = {}
        self.payloads = {}
        self.cond = threading.Condition()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="watcher")
        c.on_message = self._on_message
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe("tsc/v1/test/+/plan/desired", 1)
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.client = c

    def _on_message(self, client, userdata, msg):
        body = json.loads(json.loads(msg.payload)["body"])
        with self.cond:
            self.versions[msg.topic.split("/")[3]] = body["version"]
            self.payloads[msg.topic.split("/")[3]] = msg.payload
            self.cond.notify_all()

    def wait_all(self, version, timeout_s):
        end = time.monotonic() + timeout_s
        with self.cond:
            while sorted(v for v in self.versions.values() if v >= version) != [version] * len(IDS) \
                    or len(self.versions) < len(IDS):
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
        return True

    def stop(self):
        self.client.loop_stop()
        self.client.disconnect()


def publish_history(port, seconds):
    """Each intersection's last `seconds` of 1 s telemetry, stamped in the past, then a sentinel."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="agents")
    c.connect("127.0.0.1", port)
    c.loop_start()
    now = time.time()
    for k in range(seconds, 0, -1):
        for j in IDS:
            c.publish("tsc/v1/test/%s/telemetry" % j, json.dumps(message(now - k, 1.0)), qos=1)
    c.publish("tsc/v1/test/J1/telemetry", b"sentinel", qos=1).wait_for_publish(10)
    c.loop_stop()
    c.disconnect()


def test_brain_plans_on_a_real_broker_and_a_restart_resumes_from_store_and_retained(broker, tmp_path):
    cfg = config(first_plan_s=3, window_s=60, bin_s=10, plan_every_s=3600)
    store = str(tmp_path / "brain.store.json")
    watcher = Watcher(broker.port)
    node = BrainNode(cfg, "127.0.0.1", broker.port, store_path=store).start()
    try:
        publish_history(broker.port, 70)
        assert node.wait_planned(10)
        assert watcher.wait_all(1, 10)
    finally:
        node.stop()
    assert node.brain.flags == {}
    assert load_store(store)["versions"] == {j: 1 for j in IDS}
    env = watcher.payloads["J4"]
    res = Verifier(parse_site(corridor_site("J4")), {KEY["kid"]: (HMAC, bytes.fromhex(KEY["secret"]))},
                   Policy()).check(env, None, time.time())
    assert res.ok and res.plan.id == "brain-1"
    # killed; a new brain with the same store and broker plans again within 10 s
    t0 = time.monotonic()
    again = BrainNode(cfg, "127.0.0.1", broker.port, store_path=store).start()
    try:
        assert again.wait_planned(10)
        took = time.monotonic() - t0
        assert watcher.wait_all(2, 5)
    finally:
        again.stop()
        watcher.stop()
    assert took < 10.0
    assert again.brain.versions == {j: 2 for j in IDS}
    first = json.loads(json.loads(env)["body"])["plan"]["coordination"]
    now = json.loads(json.loads(watcher.payloads["J4"])["body"])["plan"]["coordination"]
    assert now["cycle"] == first["cycle"]       # bounded from the plan it rebuilt, not from scratch
