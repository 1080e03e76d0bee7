"""The link's parts without a broker: event outbox, reconnect back-off, command checks, topics."""

import json

import pytest

from drivers.commands import CommandVerifier, command_body, sign_command
from drivers.mqtt_link import LinkConfig, parse_link_config
from drivers.outbox import EVENTS_LOST, EventOutbox
from drivers.topics import TopicError, Topics, parse_heartbeat

SECRET = bytes.fromhex("5e" * 32)
WALL = 1_800_000_000


def put(box, n, start=0):
    for i in range(start, start + n):
        box.put([(i * 100, 1, i % 8 + 1)], WALL * 1000 + i)
    box.flush()


def drain(box, limit=7):
    """Send and acknowledge everything in batches; the records in order."""
    out = []
    while True:
        b = box.next_batch(limit)
        if b is None:
            return out
        box.sent(b)
        box.acked(b[1])
        out.extend(b[2])


def test_outbox_numbers_events_and_sends_each_once_in_order(tmp_path):
    box = EventOutbox(str(tmp_path), segment=10, fsync=False)
    put(box, 25)
    recs = drain(box)
    assert [r[0] for r in recs] == list(range(1, 26))
    assert [r[4] for r in recs] == [i % 8 + 1 for i in range(25)]
    assert box.next_batch() is None


def test_outbox_resends_unacknowledged_events_after_a_restart_and_keeps_numbering(tmp_path):
    box = EventOutbox(str(tmp_path), segment=10, fsync=False)
    put(box, 25)
    b = box.next_batch(7)
    box.sent(b)
    box.acked(b[1])                       # 1..7 acknowledged
    box.sent(box.next_batch(100))         # 8..25 sent, never acknowledged
    box.flush(sync=True)
    again = EventOutbox(str(tmp_path), segment=10, fsync=False)
    assert [r[0] for r in drain(again)] == list(range(8, 26))
    put(again, 3)
    assert [r[0] for r in drain(again)] == [26, 27, 28]


def test_outbox_cuts_a_torn_last_line_at_start_up(tmp_path):
    box = EventOutbox(str(tmp_path), segment=100, fsync=False)
    put(box, 5)
    box.flush(sync=True)
    seg = tmp_path / ("%012d.log" % 1)
    with open(seg, "ab") as f:
        f.write(b"[6,18000000")            # power lost mid-write
    again = EventOutbox(str(tmp_path), segment=100, fsync=False)
    put(again, 2)
    assert [r[0] for r in drain(again)] == [1, 2, 3, 4, 5, 6, 7]


def test_full_outbox_drops_the_oldest_segment_and_says_so_in_the_stream(tmp_path):
    box = EventOutbox(str(tmp_path), capacity=30, segment=10, fsync=False)
    put(box, 45)                          # nothing acknowledged: the link is down
    recs = drain(box, 100)
    lost = [r for r in recs if r[3] == EVENTS_LOST]
    assert lost and box.counters["lost"] == sum(r[4] for r in lost)
    seqs = [r[0] for r in recs]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    kept = {r[0] for r in recs}
    for r in lost:                        # every gap is named by a loss record
        assert not kept & set(range(r[5], r[6] + 1))
    assert box.backlog() == 0


def test_backoff_is_full_jitter_capped(tmp_path):
    pytest.importorskip("paho.mqtt.client")
    from drivers.mqtt_link import MqttLink
    link = MqttLink(LinkConfig([("127.0.0.1", 1)], "s", backoff_base_s=0.5, backoff_cap_s=30),
                    Topics("s", "i"), seed=3)
    delays = [link._backoff() for _ in range(40)]
    assert all(0 <= d <= min(30, 0.5 * 2 ** k) for k, d in enumerate(delays))
    assert max(delays[10:]) > 15 and min(delays[10:]) < 15      # spread over [0, cap]
    assert len({round(d, 6) for d in delays}) == len(delays)


def test_refused_subscriptions_are_asked_again_with_growing_full_jitter(monkeypatch):
    # A cluster short of a node or at a consumer cap refuses subscriptions (SUBACK 0x80):
    # every unit must not ask again at once, nor every 0.1-1 s for ever.
    pytest.importorskip("paho.mqtt.client")
    import random
    import drivers.mqtt_link as ml
    link = ml.MqttLink(LinkConfig([("127.0.0.1", 1)], "s"), Topics("s", "i"), seed=5)
    asked = []

    class Client:
        def subscribe(self, subs):
            asked.append((clock[0], list(subs)))
            return ml.mqtt.MQTT_ERR_SUCCESS, len(asked)
    clock = [100.0]
    monkeypatch.setattr(ml.time, "monotonic", lambda: clock[0])
    link.client = Client()
    plan = ("tsc/v1/s/i/plan/desired", 0)
    for _ in range(8):                        # the broker refuses it every time
        link.sub_failed.append(plan)
        start = clock[0]
        link._retry_subscriptions()           # draws the wait
        while len(asked) < _ + 1:
            clock[0] = round(clock[0] + 0.001, 3)
            link._retry_subscriptions()
        asked[-1] = (round(asked[-1][0] - start, 3), asked[-1][1])
    rng = random.Random(5)
    want = [ml.full_jitter(k, 0.2, 5.0, rng) for k in range(8)]
    # each wait is the k-th full-jitter draw, to the 1 ms steps of the test's clock
    assert all(0 <= w - x <= 0.0011 for (w, _), x in zip(asked, want)), (asked, want)
    assert max(want[4:]) > 1.0                 # the wait grew past the old 1 s ceiling
    assert all(subs == [plan] for _, subs in asked)
    assert all(w <= min(5.0, 0.2 * 2 ** k) + 0.001 for k, (w, _) in enumerate(asked))
    assert link.counters["subscribe_retries"] == 8


def test_a_gap_is_sent_again_within_ack_timeout_once_central_answers(tmp_path, monkeypatch):
    # Batches sent while central was away are lost at QoS 0; when central comes back
    # and acknowledges the later ones, the gap must go again within ack_timeout_s, not
    # after the doubled wait central's silence built up (here 8 s).
    pytest.importorskip("paho.mqtt.client")
    import drivers.mqtt_link as ml
    clock = [50.0]
    monkeypatch.setattr(ml.time, "monotonic", lambda: clock[0])
    box = EventOutbox(str(tmp_path), segment=100, fsync=False)
    link = ml.MqttLink(LinkConfig([("127.0.0.1", 1)], "s", ack_timeout_s=2.0),
                       Topics("s", "i"), outbox=box)
    put(box, 4)
    box.sent(box.next_batch(100))             # 1..4 sent while central is away: lost
    link.ack_wait_since = clock[0]
    for wait, resends, timeout in ((2.1, 1, 4.0), (4.1, 2, 8.0)):
        clock[0] += wait
        link._take_acks()
        box.sent(box.next_batch(100))         # the resend, lost again
        link.ack_wait_since = link.ack_wait_since or clock[0]
        assert (link.counters["resends"], link.ack_timeout) == (resends, timeout)
    put(box, 4)
    box.sent(box.next_batch(100))             # central is back: 5..8 reach it
    link.central_acks.append(b'{"first":5,"last":8}')
    clock[0] += 0.5
    link._take_acks()
    assert (box.acked_seq, link.ack_timeout, link.counters["resends"]) == (0, 2.0, 2)
    clock[0] += 2.0                           # 2.5 s after the last resend: central
    link._take_acks()                         # answered, so the wait is 2 s again, not 8
    assert link.counters["resends"] == 3 and box.next_batch(100)[0] == 1
    link.central_acks.append(b'{"first":1,"last":4}')
    link._take_acks()
    assert (box.acked_seq, link.counters["central_acks"]) == (8, 1)


def test_link_config_lists_every_problem():
    with pytest.raises(ValueError) as e:
        parse_link_config({"brokers": ["nohost", {"host": "", "port": 0}], "keepalive_s": 0})
    text = str(e.value)
    assert "brokers[0]" in text and "brokers[1]" in text and "site" in text and "keepalive_s" in text
    cfg = parse_link_config({"brokers": ["a:1883", {"host": "b", "port": 8883}], "site": "s",
                             "tls": {"ca_file": "ca.crt"}}, "/etc/edge")
    assert cfg.brokers == [("a", 1883), ("b", 8883)] and cfg.ca_file == "/etc/edge/ca.crt"
    assert (cfg.events_qos, cfg.subscribe_qos) == (1, 1)


def test_link_config_takes_qos_zero_or_one_and_says_why_not_two():
    cfg = parse_link_config({"brokers": ["a:1"], "site": "s", "events_qos": 0,
                             "subscribe_qos": 0})
    assert (cfg.events_qos, cfg.subscribe_qos) == (0, 0)
    with pytest.raises(ValueError) as e:
        parse_link_config({"brokers": ["a:1"], "site": "s", "events_qos": 2,
                           "subscribe_qos": True})
    assert str(e.value).split("\n  ") == [
        "mqtt.events_qos: must be 0 or 1 (QoS 2 is not used: NATS refuses it), got 2",
        "mqtt.subscribe_qos: must be 0 or 1 (QoS 2 is not used: NATS refuses it), got True"]


def test_topics_give_the_plan_and_commands_the_configured_qos():
    t = Topics("s", "i-1")
    assert t.subscriptions(0) == [("tsc/v1/s/i-1/plan/desired", 0), ("tsc/v1/s/i-1/cmd", 0),
                                  ("tsc/v1/s/central/heartbeat", 0), ("tsc/v1/s/i-1/events/ack", 0),
                                  ("tsc/v1/s/i-1/priority", 0)]
    assert [q for _, q in t.subscriptions()] == [1, 1, 0, 0, 0]


def cmd(cid, name, args=None, issued=WALL, inter="demo-0001", secret=SECRET, kid="ctl"):
    return sign_command(command_body(inter, cid, name, issued, args), kid, secret).encode()


@pytest.mark.parametrize("payload,reason", [
    (b"{", "malformed"),
    (b"x" * 5000, "malformed"),
    (cmd(1, "resend_state", kid="other"), "unknown_kid"),
    (cmd(1, "resend_state", secret=b"\x01" * 32), "bad_mac"),
    (cmd(1, "resend_state", inter="demo-0002"), "wrong_intersection"),
    (cmd(5, "resend_state"), "replay"),
    (cmd(6, "resend_state", issued=WALL - 301), "stale"),
    (cmd(6, "resend_state", issued=WALL + 301), "future"),
    (cmd(6, "technician_reset"), "local_only"),
    (cmd(6, "reset_flash"), "local_only"),
    (cmd(6, "open_all_greens"), "unknown_command"),
    (cmd(6, "hold_plan", {"seconds": 99999}), "malformed"),
])
def test_commands_are_refused_with_their_reason(payload, reason):
    v = CommandVerifier("demo-0001", {"ctl": ("hmac", SECRET)})
    res = v.check(payload, 5, WALL)
    assert not res.ok and res.reason == reason, res


def test_a_fresh_signed_command_is_accepted():
    v = CommandVerifier("demo-0001", {"ctl": ("hmac", SECRET)})
    res = v.check(cmd(6, "hold_plan", {"seconds": 60}), 5, WALL)
    assert res.ok and res.name == "hold_plan" and res.args == {"seconds": 60} and res.id == 6


def test_topics_are_whole_levels():
    t = Topics("springfield", "demo-0001")
    assert t.plan_desired == "tsc/v1/springfield/demo-0001/plan/desired"
    assert t.heartbeat == "tsc/v1/springfield/central/heartbeat"
    for bad in ("a/b", "a+", "#", "", "central"):
        with pytest.raises(TopicError):
            Topics("springfield", bad)


@pytest.mark.parametrize("payload,why", [
    (b'{"ts": 1800000000.5, "seq": 3}', None), (b"{", "malformed"), (b"[]", "wrong_type"),
    (b'{"ts": "now"}', "wrong_type"), (b'{"ts": true}', "wrong_type"), (b"x" * 600, "oversize"),
    (b"[" * 500, "malformed"), (bytes(range(256)), "malformed"),
])
def test_heartbeat_payloads(payload, why):
    assert parse_heartbeat(payload) == why


def test_flood_payloads_never_pass_as_heartbeats():
    from hil.flood import JUNK, flood_payloads
    assert all(parse_heartbeat(p) is not None for p in flood_payloads(1) + list(JUNK.values()))


class FlakySource:
    name = "flaky"

    def __init__(self):
        self.reads = 0

    def start(self):
        pass

    def stop(self):
        pass

    def read(self, now, inputs):
        self.reads += 1
        if self.reads % 5 == 0:
            raise OSError("device went away")

    def stats(self):
        return {"reads": self.reads}


def test_a_raising_driver_is_counted_and_the_loop_goes_on(tmp_path):
    from drivers.keys import load_provisioning
    from drivers.runtime import Runtime
    from edge_agent.intersection import parse_site
    from tests.linkrig import KID, SECRET as HEX, quick_site
    with open(tmp_path / "provision.json", "w") as f:
        json.dump({"store_dir": "store", "keys": [{"kid": KID, "scheme": "hmac", "secret": HEX}]}, f)
    src = FlakySource()
    rt = Runtime(parse_site(quick_site()), load_provisioning(str(tmp_path / "provision.json")),
                 sources=[src])
    rt.run(max_steps=12)
    assert rt.step_no == 12 and src.reads == 12
    assert rt.counters["source_errors"] == 2
    assert rt.outbox.stats()["next_seq"] > 1          # the step's events still went out
