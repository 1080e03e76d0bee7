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


def test_link_config_lists_every_problem():
    with pytest.raises(ValueError) as e:
        parse_link_config({"brokers": ["nohost", {"host": "", "port": 0}], "keepalive_s": 0})
    text = str(e.value)
    assert "brokers[0]" in text and "brokers[1]" in text and "site" in text and "keepalive_s" in text
    cfg = parse_link_config({"brokers": ["a:1883", {"host": "b", "port": 8883}], "site": "s",
                             "tls": {"ca_file": "ca.crt"}}, "/etc/edge")
    assert cfg.brokers == [("a", 1883), ("b", 8883)] and cfg.ca_file == "/etc/edge/ca.crt"


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
