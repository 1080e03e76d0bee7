"""The detector-card frame parser: round trips, resync, and a fuzz of a million bytes.

The fuzz interleaves valid frames with random bytes and with bit-flipped
copies of frames. The parser must never raise, never hand out a frame that
was not sent intact, and accept the first intact frame after any garbage
(re-synchronisation within one frame). EDGE_AGENT_SOAK=1 runs ten times more.
"""

import os
import random
import struct
import time

from drivers import detector_protocol as proto
from drivers.serial_detector import SerialDetectorCard
from edge_agent import detectors as core

SOAK = os.environ.get("EDGE_AGENT_SOAK") == "1"


def presence_frame(seq, card_ms, bitmap=0b1010, edges=()):
    return proto.frame(seq, proto.PRESENCE, proto.presence_payload(card_ms, 16, bitmap, edges))


def test_crc_is_ccitt_false():
    assert proto.crc16(b"123456789") == 0x29B1


def test_every_message_type_round_trips_including_stuffed_bytes():
    p = proto.FrameParser()
    card = 0x7E7D7E7D                              # a clock full of bytes that need stuffing
    data = (presence_frame(0x7E, card, 0x7D7E, [(card - 5, 2, True), (card - 1, 2, False)])
            + proto.frame(1, proto.COUNTS, proto.counts_payload(card, 5000, [(1, 7, 125), (2, 0, 1000)]))
            + proto.frame(2, proto.STATUS, proto.status_payload(card, proto.CARD_POWER_UP,
                                                                [(3, proto.FAULT_OPEN_LOOP)]))
            + proto.frame(3, proto.HEARTBEAT, proto.heartbeat_payload(card, 0, 16)))
    assert b"\x7e" not in data[1:data.index(b"\x7e", 1)]
    ms = p.feed(data)
    assert [m.type for m in ms] == [proto.PRESENCE, proto.COUNTS, proto.STATUS, proto.HEARTBEAT]
    assert ms[0].seq == 0x7E and ms[0].presence == 0x7D7E
    assert ms[0].edges == [(card - 5, 2, True), (card - 1, 2, False)]
    assert ms[1].interval_ms == 5000 and ms[1].counts == [(1, 7, 125), (2, 0, 1000)]
    assert ms[2].faults == [(3, proto.FAULT_OPEN_LOOP)] and ms[2].flags == proto.CARD_POWER_UP
    assert ms[3].nch == 16
    assert p.stats["frames"] == 4 and sum(p.stats[k] for k in proto.ERROR_COUNTERS) == 0


def test_frames_split_byte_by_byte_parse_the_same():
    data = b"".join(presence_frame(i, 1000 + i) for i in range(20))
    p = proto.FrameParser()
    out = []
    for b in data:
        out += p.feed(bytes((b,)))
    assert [m.seq for m in out] == list(range(20))


def test_bad_crc_impossible_length_bad_escape_and_truncation_are_counted():
    p = proto.FrameParser()
    good = presence_frame(5, 1234)
    bad_crc = bytearray(good)
    bad_crc[-1] ^= 0x01
    bad_len = b"\x7e\xfb\x00\x01"                     # LEN 251 > 250
    bad_esc = b"\x7e\x05\x7d\x11"
    truncated = good[:6]
    out = p.feed(bytes(bad_crc) + bad_len + bad_esc + truncated + good)
    assert [m.seq for m in out] == [5]
    st = p.stats
    assert (st["crc_errors"], st["bad_length"], st["bad_escape"], st["truncated"]) == (1, 1, 1, 1)


def test_valid_crc_with_a_malformed_payload_is_rejected():
    body = bytes((6, 0, proto.HEARTBEAT)) + struct.pack(">IBB", 1, 0, 0)   # zero channels
    raw = b"\x7e" + proto.stuff(body + struct.pack(">H", proto.crc16(body)))
    p = proto.FrameParser()
    assert p.feed(raw) == [] and p.stats["malformed"] == 1


def test_sequence_check_counts_gaps_and_drops_duplicates():
    s = proto.SequenceCheck()
    assert [s.accept(x) for x in (250, 251, 251, 255, 0, 3)] == [True, True, False, True, True, True]
    assert (s.duplicates, s.gaps, s.lost) == (1, 2, 5)


def test_driver_unwraps_the_32_bit_card_clock():
    card = SerialDetectorCard("/nonexistent", source="c", channels={2: 2}, clock=lambda: 0)
    card.feed(presence_frame(1, 0xFFFFFF00) + presence_frame(2, 0x00000010), 500)
    reps = card.reports()
    assert [r.src_ms for r in reps] == [0xFFFFFF00, (1 << 32) + 0x10]
    assert card.stats()["card_restarts"] == 0


def test_driver_notices_a_card_restart():
    card = SerialDetectorCard("/nonexistent", source="c", channels={2: 2}, clock=lambda: 0)
    card.feed(presence_frame(1, 5_000_000), 500)
    card.feed(presence_frame(0, 40), 600)             # clock back near zero: it restarted
    assert [r.src_ms for r in card.reports()] == [5_000_000, 40]
    assert card.stats()["card_restarts"] == 1


def test_driver_maps_card_channels_to_site_vehicle_and_ped_channels():
    card = SerialDetectorCard("/nonexistent", source="c", channels={1: 11}, ped_channels={2: 3},
                              clock=lambda: 0)
    card.feed(presence_frame(1, 100, 0b11, [(90, 1, True), (95, 2, True)]), 7)
    veh, ped = card.reports()
    assert veh.kind == core.PRESENCE and not veh.ped and veh.presence == {11: True}
    assert veh.edges == [(90, 11, True)] and veh.rx_ms == 7
    assert ped.ped and ped.presence == {3: True} and ped.edges == [(95, 3, True)]


def _fuzz(total_bytes, seed):
    rng = random.Random(seed)
    p = proto.FrameParser()
    sent = {}          # seq tag -> exact frame content key
    stream = []
    size = 0
    expect_after_garbage = []   # tags of the first intact frame after each garbage burst
    tag = 0
    garbage_before = False
    noise = 0          # random and bit-flipped bytes
    while noise < total_bytes:
        r = rng.random()
        if r < 0.45:
            tag += 1
            card_ms = rng.getrandbits(32)
            bitmap = rng.getrandbits(16)
            k = rng.randint(0, 4)
            edges = sorted((card_ms - rng.randint(0, 2000), rng.randint(1, 16), rng.random() < 0.5)
                           for _ in range(k))
            edges = [(t, ch, on) for t, ch, on in edges]
            f = presence_frame(tag & 0xFF, card_ms, bitmap, edges)
            sent[(tag & 0xFF, card_ms, bitmap)] = tag
            if garbage_before:
                expect_after_garbage.append(tag)
                garbage_before = False
            stream.append(f)
            size += len(f)
        elif r < 0.75:
            n = rng.randint(1, 600)
            g = rng.randbytes(n)
            stream.append(g)
            size += n
            noise += n
            garbage_before = True
        else:
            # A frame with 1-3 distinct bits flipped (after its flag): never to be accepted.
            f = bytearray(presence_frame(rng.getrandbits(8), rng.getrandbits(32), rng.getrandbits(16)))
            for bit in rng.sample(range(8, 8 * len(f)), rng.randint(1, 3)):
                f[bit // 8] ^= 1 << (bit % 8)
            stream.append(bytes(f))
            size += len(f)
            noise += len(f)
            garbage_before = True
    data = b"".join(stream)
    accepted = []
    i = 0
    while i < len(data):
        n = rng.randint(1, 4096)
        accepted += p.feed(data[i:i + n])
        i += n
    return p, sent, expect_after_garbage, accepted, len(data)


def test_fuzz_a_million_random_and_bit_flipped_bytes_between_valid_frames():
    total = 10_000_000 if SOAK else 1_000_000
    t0 = time.perf_counter()
    p, sent, after_garbage, accepted, n = _fuzz(total, seed=20240611)
    elapsed = time.perf_counter() - t0
    got = set()
    for m in accepted:
        key = (m.seq, m.card_ms, m.presence)
        assert key in sent, "accepted a frame that was never sent intact: %r" % (key,)
        got.add(sent[key])
    # Re-synchronisation within one frame: the first intact frame after garbage is accepted.
    missed = [t for t in after_garbage if t not in got]
    assert missed == [], missed[:10]
    assert p.stats["bytes"] == n > total
    assert len(got) == len(sent)         # and every intact frame got through
    assert elapsed < 60, elapsed


def test_bench_detectors_runs_and_counts_every_frame_at_115200_baud():
    # Figures are the benchmark's to print (docs/benchmarks.md), not a test's
    # to assert: a loaded CI machine must not turn timing into a failure.
    from tools.bench_detectors import bench_latency, bench_parse
    parsed = bench_parse(frames=2_000)
    assert parsed["frames"] == 2_000 and parsed["parse_fps"] > 0
    lat = bench_latency(seconds=1.0, rate=50, baud=115_200)
    assert lat["samples"] >= 40 and lat["errors"] == {}
    assert 0 < lat["p50_ms"] <= lat["p99_ms"]


def test_preempt_frame_round_trips_and_reserved_bits_are_refused():
    p = proto.FrameParser()
    good = proto.frame(7, proto.PREEMPT, proto.preempt_payload(123_456, 0b000101))
    bad = proto.frame(8, proto.PREEMPT, proto.preempt_payload(123_457, 0b1000000))
    msgs = p.feed(good + bad)
    assert [(m.type, m.card_ms, m.preempts) for m in msgs] == [(proto.PREEMPT, 123_456, 5)]
    assert p.stats["malformed"] == 1


def test_driver_maps_card_preempt_inputs_to_site_preempts():
    card = SerialDetectorCard("/dev/null", preempts={1: 3, 2: 1}, clock=lambda: 5_000)
    card.feed(proto.frame(0, proto.PREEMPT, proto.preempt_payload(1_000, 0b01)), 5_000)
    assert card.preempt_inputs() == {"preempts": {3: True, 1: False}}
    assert card.preempt_inputs() == {}             # nothing new since
