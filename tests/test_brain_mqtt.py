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
    cfg = config(first_plan_s=3600, window_s=60, bin_s=10, plan_every_s=3600)
    store = str(tmp_path / "brain.store.json")
    watcher = Watcher(broker.port)
    node = BrainNode(cfg, "127.0.0.1", broker.port, store_path=store).start()
    try:
        assert node.subscribed.wait(10)
        publish_history(broker.port, 70)
        # the brain plans once it has taken in the whole history: the sentinel (a malformed
        # message, published last by the same client) has been counted (a plan at a fixed
        # 3 s after start raced the 420 messages on a loaded machine)
        end = time.monotonic() + 10
        while node.brain.bins.counters.get("J1", {}).get("malformed") != 1 and time.monotonic() < end:
            time.sleep(0.01)
        assert node.brain.bins.counters["J1"]["malformed"] == 1
        node.brain.next_plan_ms = 0
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


class PriorityWatcher:
    """Collects the priority requests the brain publishes; subscribed before it returns."""

    def __init__(self, port):
        self.got = []
        self.cond = threading.Condition()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="priority-watcher")
        c.on_message = self._on_message
        c.connect("127.0.0.1", port)
        c.subscribe("tsc/v1/test/+/priority", 1)
        c.loop_start()
        c.publish("tsc/v1/test/sentinel/priority", b"sentinel", qos=1)
        self.client = c
        assert self.wait(lambda g: any(t.split("/")[3] == "sentinel" for t, _ in g), 10)

    def _on_message(self, client, userdata, msg):
        with self.cond:
            self.got.append((msg.topic, bytes(msg.payload)))
            self.cond.notify_all()

    def wait(self, pred, timeout_s):
        end = time.monotonic() + timeout_s
        with self.cond:
            while not pred(self.got):
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
        return True

    def stop(self):
        self.client.loop_stop()
        self.client.disconnect()


def test_the_escort_on_a_real_broker_requests_each_signal_ahead_and_clears_them(broker):
    from edge_agent.priority import PriorityVerifier
    from hil.sumo.corridor import add_preempts
    cfg = config(first_plan_s=3600)
    for e in cfg["corridor"]:
        e["site"] = add_preempts(e["site"])
    watcher = PriorityWatcher(broker.port)
    node = BrainNode(cfg, "127.0.0.1", broker.port).start()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="dispatch")
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    topic = "tsc/v1/test/central/escort/EV_EB.0"
    route = [[j, x, 1] for j, x in zip(IDS, [300.0, 550.0, 950.0, 1130.0, 1480.0, 1700.0])]

    def bodies(action):
        return [(t.split("/")[3], json.loads(json.loads(p)["body"])) for t, p in watcher.got
                if t.split("/")[3] in IDS and json.loads(json.loads(p)["body"])["action"] == action]
    try:
        assert node.subscribed.wait(10)
        c.publish(topic, json.dumps({"route": [["J1", 300.0, 9]]}), qos=1)      # no preempt 9
        c.publish(topic, json.dumps({"route": route}), qos=1)
        c.publish(topic, json.dumps({"dist_m": 0.0, "speed_ms": 13.89}), qos=1)
        assert watcher.wait(lambda g: len(set(j for j, _ in bodies("request"))) == 6, 10)
        wall = time.time()
        for t, p in watcher.got:
            j = t.split("/")[3]
            if j not in IDS:
                continue
            site = parse_site(next(e["site"] for e in cfg["corridor"] if e["id"] == j))
            v = PriorityVerifier(site, {KEY["kid"]: (HMAC, bytes.fromhex(KEY["secret"]))}, Policy())
            r = v.check(p, None, wall, 0, site.fallback_plan)
            assert getattr(r, "ok", True) and r.number == 1 and not r.clear, j
        first = {j: b for j, b in reversed(bodies("request"))}
        for j, x in zip(IDS, [300.0, 550.0, 950.0, 1130.0, 1480.0, 1700.0]):
            # arrival = issued + distance / 13.89 m/s (rounded to 0.1 s)
            assert first[j]["arrival_at"] == round(first[j]["issued_at"] + x / 13.89, 1), j
        assert node.escort_errors == ["escort EV_EB.0: J1 has no preempt 9"]
        c.publish(topic, json.dumps({"done": True}), qos=1)
        assert watcher.wait(lambda g: sorted(j for j, _ in bodies("clear")) == sorted(IDS), 10)
    finally:
        c.loop_stop()
        c.disconnect()
        node.stop()
        watcher.stop()
