"""TS2 Type 1 Port 1 frames: hand-built byte sequences, resync, and a fuzz of a million bytes.

Every byte sequence below is written out by hand from the frame layouts of
NEMA TS2-2003 §3.3.1.4 as given in docs/cabinet.md ("Frames"), each test
citing its layout; the vtc virtual-cabinet library (Wuping Xin) was the
cross-check. The FCS bytes were computed with `reference_fcs`, a bit-by-bit
CRC-16/X-25 written here independently of the driver's table-driven one.
"""

import os
import random

from drivers import ts2_frames as ts2

SOAK = os.environ.get("EDGE_AGENT_SOAK") == "1"


def reference_fcs(data):
    """CRC-16/X-25 one bit at a time (ISO/IEC 13239 FCS)."""
    crc = 0xFFFF
    for byte in data:
        for i in range(8):
            bit = (byte >> i) & 1
            top = crc & 1
            crc >>= 1
            if top ^ bit:
                crc ^= 0x8408
    return crc ^ 0xFFFF


def test_fcs_is_crc16_x25_catalogue_check_value():
    assert ts2.fcs16(b"123456789") == 0x906E
    assert reference_fcs(b"123456789") == 0x906E
    assert reference_fcs(bytes((0x10, 0x83, 0x01))) == 0xF474


def test_mmu_status_request_type_1():
    # Layout "Type 1": MMU address 16, control 0x83, type 1, no data; FCS 0xF474 low byte first.
    wire = bytes((0x7E, 0x10, 0x83, 0x01, 0x74, 0xF4, 0x7E))
    assert ts2.encode(ts2.MMU_STATUS_REQUEST) == wire
    frames = ts2.FrameParser().feed(wire)
    assert frames == [ts2.Frame(16, 1, b"")]


def test_output_transfer_type_18_is_a_broadcast():
    # Layout "Type 18": address 255, type 0x12, no data.
    wire = bytes((0x7E, 0xFF, 0x83, 0x12, 0x08, 0x95, 0x7E))
    assert ts2.encode(ts2.OUTPUT_TRANSFER) == wire
    assert reference_fcs(wire[1:4]) == 0x9508


def test_load_switch_drivers_type_0_two_bits_per_driver():
    # Layout "Type 0": data[0..3] green ch 1..16, [4..7] yellow, [8..11] red, 2 bits each;
    # data[12] bit 7 load switch flash. Green 2 and 6, yellow 4, red 1.
    data = bytes((0x0C, 0x0C, 0x00, 0x00, 0xC0, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00))
    wire = bytes((0x7E, 0x10, 0x83, 0x00)) + data + bytes((0x14, 0xE2, 0x7E))
    assert reference_fcs(wire[1:-3]) == 0xE214
    drive = {2: (False, False, True), 6: (False, False, True), 1: (True, False, False),
             4: (False, True, False)}
    assert ts2.encode(ts2.LOAD_SWITCH_DRIVERS, ts2.load_switch_drivers(drive)) == wire
    [f] = ts2.FrameParser().feed(wire)
    got, flash = ts2.parse_load_switch_drivers(f.data)
    assert flash is False
    assert {ch for ch, (r, y, g) in got.items() if g} == {2, 6}
    assert {ch for ch, (r, y, g) in got.items() if y} == {4}
    assert {ch for ch, (r, y, g) in got.items() if r} == {1}
    assert ts2.load_switch_drivers({}, flash=True)[12] == 0x80


def test_mmu_status_type_129_channels_and_flags():
    # Layout "Type 129": data[0..1] green, [2..3] yellow, [4..5] red (bit 0 = channel 1);
    # data[6] bit 5 red enable, data[7] bit 0 conflict, data[8] bit 2 port 1 timeout.
    data = bytes((0x22, 0x00, 0x00, 0x00, 0xDD, 0x00, 0x20, 0x01, 0x04, 0x00))
    body = bytes((0x10, 0x83, 0x81)) + data
    f = reference_fcs(body)
    wire = b"\x7e" + ts2.stuff(body + bytes((f & 0xFF, f >> 8))) + b"\x7e"
    [frame] = ts2.FrameParser().feed(wire)
    st = ts2.parse_mmu_status(frame.data)
    assert (st.green, st.yellow, st.red) == (0b100010, 0, 0b11011101)
    assert st.flags & ts2.MMU_RED_ENABLE and st.flags & ts2.MMU_CONFLICT
    assert st.faults() == ["conflict", "port 1 timeout"]
    assert ts2.mmu_status(0b100010, 0, 0b11011101,
                          ts2.MMU_RED_ENABLE | ts2.MMU_CONFLICT | ts2.MMU_PORT1_TIMEOUT) == data


def test_date_time_type_9_with_a_stuffed_byte():
    # Layout "Type 9": month, day, year, hour, minute, second, tenths, T&F BIU and
    # detector BIU presence. 2026-11-26 09:30:15.4: the FCS high byte is 0x7E, so it
    # travels stuffed as 0x7D 0x5E.
    wire = bytes((0x7E, 0xFF, 0x83, 0x09, 11, 26, 26, 9, 30, 15, 4, 0x01, 0x01,
                  0x7D, 0x5E, 0xA7, 0x7E))
    assert reference_fcs(wire[1:13]) == 0xA77E
    assert ts2.encode(ts2.DATE_TIME, ts2.date_time(2026, 11, 26, 9, 30, 15, 4, 1, 1)) == wire
    [f] = ts2.FrameParser().feed(wire)
    assert f.data == bytes((11, 26, 26, 9, 30, 15, 4, 1, 1))


def test_tf_biu_outputs_type_10_red_yellow_green_per_channel():
    # Layout "Type 10..13": channel 1 red at data bits 0-1, yellow 2-3, green 4-5,
    # channel 2 red at bits 6-7 ... Channel 1 red, channel 2 green.
    data = bytes((0x03, 0x0C, 0, 0, 0, 0, 0, 0))
    wire = bytes((0x7E, 0x00, 0x83, 0x0A)) + data + bytes((0x31, 0x06, 0x7E))
    assert reference_fcs(wire[1:-3]) == 0x0631
    out = ts2.tf_outputs({1: (True, False, False), 2: (False, False, True)}, 1)
    assert ts2.encode(ts2.TF_OUTPUTS, out) == wire
    assert ts2.parse_tf_outputs(data, 1)[2] == (False, False, True)
    assert ts2.parse_tf_outputs(ts2.tf_outputs({9: (False, True, False)}, 2), 2)[9] == \
        (False, True, False)


def test_call_data_type_148_status_bits():
    # Layout "Type 148..151": 16 time stamps (2 bytes each), then status bit 0 (the call)
    # for channels 1..16, then status bit 1 (changed). Channel 1 new call, 3 constant call,
    # 5 call gone.
    data = bytes(32) + bytes((0b00000101, 0, 0b00010001, 0))
    body = bytes((0x08, 0x83, 0x94)) + data
    f = reference_fcs(body)
    wire = b"\x7e" + ts2.stuff(body + bytes((f & 0xFF, f >> 8))) + b"\x7e"
    [frame] = ts2.FrameParser().feed(wire)
    assert frame.address == 8 and frame.type == ts2.CALL_DATA
    assert ts2.parse_call_data(frame.data) == (0b101, 0b10001)
    assert ts2.call_data(0b101, 0b10001) == data


def test_wrong_address_length_control_and_type_are_refused_with_a_counter():
    p = ts2.FrameParser()

    def raw(body):
        f = reference_fcs(body)
        return b"\x7e" + ts2.stuff(body + bytes((f & 0xFF, f >> 8))) + b"\x7e"

    out = p.feed(raw(bytes((0x11, 0x83, 0x81)) + bytes(10))      # status from address 17
                 + raw(bytes((0x10, 0x83, 0x81)) + bytes(9))      # one byte short
                 + raw(bytes((0x10, 0x03, 0x01)))                 # control not 0x83
                 + raw(bytes((0x10, 0x83, 0x3F)))                 # type 63: not known
                 + bytes((0x7E, 0x10, 0x83, 0x01, 0x74, 0xF5, 0x7E))   # FCS off by one bit
                 + bytes((0x7E, 0x10, 0x7D, 0x11, 0x7E))          # escape of a plain byte
                 + bytes((0x7E, 0x10, 0x83, 0x7E))                # too short for an FCS
                 + ts2.encode(ts2.LOAD_SWITCH_ACK))
    assert out == [ts2.Frame(16, 128, b"")]
    st = p.stats
    assert (st["bad_address"], st["bad_length"], st["bad_control"], st["unknown_type"],
            st["fcs_errors"], st["bad_escape"], st["too_short"]) == (1, 1, 1, 1, 1, 1, 1)


def test_resync_after_an_over_long_frame_and_byte_by_byte_feeding():
    p = ts2.FrameParser()
    junk = b"\x7e" + bytes(range(1, 100))          # no flag for 99 bytes: too long
    good = ts2.encode(ts2.MMU_STATUS, ts2.mmu_status(1, 2, 4, 0))
    out = []
    for b in junk + good + good:
        out += p.feed(bytes((b,)))
    assert len(out) == 2 and p.stats["too_long"] == 1


def _random_frame(rng):
    ftype = rng.choice(sorted(ts2.LAYOUT))
    return ts2.encode(ftype, bytes(rng.getrandbits(8) for _ in range(ts2.LAYOUT[ftype][1])))


def test_fuzz_a_million_random_and_bit_flipped_bytes():
    """No crash, every intact frame accepted in order, nothing else accepted."""
    rng = random.Random(20261126)
    target = 10_000_000 if SOAK else 1_000_000
    stream = bytearray()
    intact = []
    flipped = 0
    while len(stream) < target:
        kind = rng.random()
        if kind < 0.4:
            w = _random_frame(rng)
            intact.append(w)
            stream += w
        elif kind < 0.7:
            w = bytearray(_random_frame(rng))
            for bit in rng.sample(range(8 * len(w)), rng.randint(1, 3)):   # distinct bits
                w[bit >> 3] ^= 1 << (bit & 7)
            flipped += 1
            stream += w
        else:
            stream += rng.randbytes(rng.randint(1, 200))
    p = ts2.FrameParser()
    got = []
    i = 0
    while i < len(stream):
        n = rng.randint(1, 300)
        got += p.feed(stream[i:i + n])
        i += n
    parsed = ts2.FrameParser()
    expected = [parsed.feed(w)[0] for w in intact]
    assert len(stream) >= target and flipped > 5000
    assert got == expected
    assert p.stats["frames"] == len(intact)


def test_mmu_program_type_131_compatibility_bits_in_pair_order():
    # Layout "Type 131": one bit per channel pair (1,2),(1,3)..(1,16),(2,3)..(15,16) from
    # data bit 0; (2,6) is pair index 18 (15 pairs of channel 1, then (2,3),(2,4),(2,5),(2,6)),
    # (4,8) index 15+14+13+3 = 45. data[15..16] min yellow disable, data[17] min flash 6 s.
    data = bytearray(20)
    data[18 >> 3] |= 1 << (18 & 7)
    data[45 >> 3] |= 1 << (45 & 7)
    data[17] = 6
    assert ts2.mmu_program({(2, 6), (4, 8)}, min_flash_s=6) == bytes(data)
    body = bytes((0x10, 0x83, 0x83)) + bytes(data)
    f = reference_fcs(body)
    wire = b"\x7e" + ts2.stuff(body + bytes((f & 0xFF, f >> 8))) + b"\x7e"
    [frame] = ts2.FrameParser().feed(wire)
    assert ts2.parse_mmu_program(frame.data) == ({(2, 6), (4, 8)}, 0, 6, 0)
    assert ts2.encode(ts2.MMU_PROGRAM_REQUEST) == bytes((0x7E, 0x10, 0x83, 0x03)) + \
        bytes((reference_fcs(b"\x10\x83\x03") & 0xFF, reference_fcs(b"\x10\x83\x03") >> 8, 0x7E))
