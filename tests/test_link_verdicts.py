"""Finding 4: plan/reported keeps only the latest verdict, at most every 0.5 s; another plan
message in that window hid a verdict, and `plan publish --wait` said "no verdict" although
the unit had accepted the plan. Each version now has its own retained plan/verdict/<version>."""

import json
import threading
import time

import paho.mqtt.client as mqtt

from tests.linkrig import INTERSECTION, KID, SECRET, SITE, AgentUnderTest, envelope, quick_plan
from tools.cli import main


def topic(what):
    return "tsc/v1/%s/%s/%s" % (SITE, INTERSECTION, what)


def wait_for(predicate, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        v = predicate()
        if v:
            return v
        time.sleep(0.02)
    return None


def test_plan_publish_wait_finds_its_verdict_when_another_plan_follows_at_once(
        tmp_path, broker, capsys):
    (tmp_path / "key.json").write_text(json.dumps({"kid": KID, "scheme": "hmac", "secret": SECRET}))
    (tmp_path / "plan.json").write_text(json.dumps(quick_plan("central-v2")))
    agent = AgentUnderTest(tmp_path / "agent", [(broker.host, broker.port)],
                           plans=["central-v1", "central-v2"])
    agent.rt.cfg.reported_min_s = 2.0            # a wide window makes the race certain
    agent.start()
    seen = []
    probe = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="probe")
    probe.on_message = lambda c, u, m: seen.append((m.topic, m.payload))
    probe.connect(broker.host, broker.port, keepalive=5)
    probe.loop_start()
    v1 = envelope(1)
    replay = envelope(1, issued_at=int(time.time()) - 5)     # other bytes, same version
    try:
        probe.subscribe([(topic("plan/desired"), 1), (topic("plan/reported"), 1)])
        probe.publish(topic("plan/desired"), v1, qos=1, retain=True)

        def reported(reason):
            for t, p in reversed(seen):
                if t == topic("plan/reported"):
                    last = json.loads(p).get("last") or {}
                    return last.get("version") == 1 and last.get("reason") == reason
            return False

        assert wait_for(lambda: reported(None), 10)      # v1 accepted
        time.sleep(2.1)                                   # let the rate window lapse
        probe.publish(topic("plan/desired"), replay, qos=1, retain=True)     # rejected
        assert wait_for(lambda: reported("replay"), 10)  # published at once: the window starts
        n = len(seen)
        result = {}
        cli = threading.Thread(target=lambda: result.setdefault("code", main(
            ["plan", "publish", "--intersection", INTERSECTION, "--site-id", SITE,
             "--broker", "127.0.0.1:%d" % broker.port, "--plan", str(tmp_path / "plan.json"),
             "--key", str(tmp_path / "key.json"), "--version", "2", "--wait", "6"])))
        cli.start()
        # The moment v2 is on the broker, a replay of v1 follows (another operator, a retry).
        assert wait_for(lambda: any(t == topic("plan/desired") and b"central-v2" in p
                                    for t, p in seen[n:]), 10)
        probe.publish(topic("plan/desired"), replay, qos=1, retain=True)
        cli.join(15)
        out = capsys.readouterr()
        assert result.get("code") == 0, out
        assert "accepted: version 2" in out.out
    finally:
        probe.loop_stop()
        probe.disconnect()
        agent.stop()
