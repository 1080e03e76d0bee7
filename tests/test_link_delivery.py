"""Finding 2: a broker crash lost the events central had not stored yet.

The outbox used to drop a batch on the broker's PUBACK. With central's durable
subscriber offline and the broker then SIGKILLed before it saved its queue,
those events were gone with no loss record. Now central acknowledges stored
ranges on events/ack, the unit drops only those, and resends the rest after a
reconnect or an acknowledgement timeout.
"""

from drivers.outbox import EventOutbox
from hil.broker import Broker
from hil.central import Central
from tests.linkrig import INTERSECTION, SITE, AgentUnderTest


def put(box, n):
    box.put([(i, 1, i % 8 + 1) for i in range(n)], 1_790_000_000_000)
    box.flush()


def test_only_ranges_central_acknowledged_leave_the_outbox(tmp_path):
    box = EventOutbox(str(tmp_path), segment=10, fsync=False)
    put(box, 30)
    b = box.next_batch(30)
    box.sent(b)                                   # the broker has them: nothing is dropped
    assert box.stats()["acked_seq"] == 0 and box.unacked_sent() == 30
    assert box.acked_range(11, 20) is False       # beyond a gap: kept, the mark stays
    assert box.stats()["acked_seq"] == 0
    assert box.acked_range(1, 10) is True         # the gap closes: 1..20 acknowledged
    assert box.stats()["acked_seq"] == 20
    assert box.acked_range(40, 50) is False       # never sent: ignored
    assert box.acked_range(25, 21) is False       # bogus range: ignored
    box.rewind()                                  # a reconnect: resend from 21
    assert [r[0] for r in box.next_batch(100)[2]] == list(range(21, 31))


def test_broker_sigkill_with_central_offline_loses_no_event(tmp_path):
    # The shipped config saves every 30 s: the kill comes long before that.
    broker = Broker(tmp_path / "broker", extra=["autosave_interval 30"]).start()
    agent = AgentUnderTest(tmp_path / "agent", [(broker.host, broker.port)],
                           mqtt={"ack_timeout_s": 1.0}).start()
    central = Central(broker.host, broker.port, SITE, client_id="central-durable",
                      store=str(tmp_path / "central.jsonl")).start()
    try:
        box = agent.rt.outbox
        assert central.wait_for(lambda: len(central.events(INTERSECTION)) >= 5, 15)
        central.stop()                            # central's durable session stays on the broker
        offline_from = box.stats()["next_seq"]
        # At least 20 events are PUBACKed by the broker while central is away.
        assert central.wait_for(lambda: box.stats()["sent"] >= offline_from + 20, 30), box.stats()
        broker.kill()
        last_before_kill = box.stats()["next_seq"] - 1
        broker.start()
        central = Central(broker.host, broker.port, SITE, client_id="central-durable",
                      store=str(tmp_path / "central.jsonl")).start()
        got = central.wait_for(lambda: len(central.events(INTERSECTION)) >= last_before_kill, 30)
        events = central.events(INTERSECTION)
        assert got, (len(events), last_before_kill, box.stats())
        assert events[0][0] == 1 and central.missing(INTERSECTION) == []
        assert central.wait_for(lambda: box.stats()["acked_seq"] >= last_before_kill, 10)
        assert agent.rt.link.counters["resends"] + agent.rt.link.counters["connections"] >= 2
    finally:
        agent.stop()
        central.stop()
        broker.stop()
