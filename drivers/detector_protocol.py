"""The detector-card serial protocol: framing, CRC, messages (see docs/protocols/detector-serial.md).

Pure bytes in, frames out (no I/O), so the card emulator, the driver, the
fuzz test and the bench share it. On the wire a frame is

    0x7E | stuffed( LEN | SEQ | TYPE | PAYLOAD[LEN] | CRC16 hi | CRC16 lo )

CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) over LEN..PAYLOAD. Inside a
frame 0x7E and 0x7D are sent as 0x7D 0x5E and 0x7D 0x5D, so 0x7E only ever
starts a frame: whatever garbage came before, the next 0x7E re-synchronises
the parser, and LEN ends the frame without waiting for the next one.
"""

import binascii
import struct

FLAG = 0x7E
ESC = 0x7D
MAX_PAYLOAD = 250
MAX_CHANNELS = 64

PRESENCE = 0x01     # card ms, channel count, presence bitmap, recent on/off edges
COUNTS = 0x02       # card ms, interval, per channel: count and occupancy (0.1 %)
STATUS = 0x03       # card ms, card flags, per channel: fault bits
HEARTBEAT = 0x04    # card ms, card flags, channel count
PREEMPT = 0x05      # card ms, preempt input bitmap (bit 0 = preempt input 1 .. bit 5 = 6)
TYPES = (PRESENCE, COUNTS, STATUS, HEARTBEAT, PREEMPT)
PREEMPT_INPUTS = 6

# Per-channel fault bits (= NTCIP 1202 vehicleDetectorReportedAlarms).
FAULT_OTHER = 0x01
FAULT_WATCHDOG = 0x02
FAULT_OPEN_LOOP = 0x04
FAULT_SHORTED_LOOP = 0x08
FAULT_EXCESSIVE_CHANGE = 0x10
FAULT_BITS = 0x1F

# Card flags (STATUS, HEARTBEAT).
CARD_WATCHDOG_RESET = 0x01   # the card's own watchdog restarted it since the last status
CARD_POWER_UP = 0x02         # first frames after power-up
CARD_CONFIG_ERROR = 0x04
CARD_FLAGS = 0x07


def crc16(data):
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection ("123456789" -> 0x29B1)."""
    return binascii.crc_hqx(data, 0xFFFF)


def stuff(body):
    return body.replace(b"\x7d", b"\x7d\x5d").replace(b"\x7e", b"\x7d\x5e")


def frame(seq, mtype, payload):
    """The wire bytes of one frame."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError("payload of %d bytes exceeds %d" % (len(payload), MAX_PAYLOAD))
    body = bytes((len(payload), seq & 0xFF, mtype)) + payload
    return b"\x7e" + stuff(body + struct.pack(">H", crc16(body)))


# -- messages -------------------------------------------------------------------

class Message:
    """A decoded frame. Fields by type:

    PRESENCE: card_ms, nch, presence (int bitmap, bit 0 = channel 1),
              edges [(card ms, channel, on)]
    COUNTS: card_ms, interval_ms, counts [(channel, count, occupancy permille)]
    STATUS: card_ms, flags, faults [(channel, bits)]
    HEARTBEAT: card_ms, flags, nch
    PREEMPT: card_ms, preempts (int bitmap, bit 0 = preempt input 1)
    """
    __slots__ = ("seq", "type", "card_ms", "nch", "presence", "edges", "interval_ms",
                 "counts", "flags", "faults", "preempts")

    def __init__(self, seq, mtype, card_ms):
        self.seq, self.type, self.card_ms = seq, mtype, card_ms
        self.nch = 0
        self.presence = 0
        self.edges = ()
        self.interval_ms = 0
        self.counts = ()
        self.flags = 0
        self.faults = ()
        self.preempts = 0

    def __repr__(self):
        return "Message(seq %d type %d card %d ms)" % (self.seq, self.type, self.card_ms)


def presence_payload(card_ms, nch, presence, edges=()):
    """edges: [(card ms, channel, on)] no older than 65,535 ms before card_ms."""
    nb = (nch + 7) // 8
    out = struct.pack(">IB", card_ms & 0xFFFFFFFF, nch) + presence.to_bytes(nb, "little")
    out += bytes((len(edges),))
    for t, ch, on in edges:
        out += struct.pack(">BH", (ch - 1) | (0x80 if on else 0), card_ms - t)
    return out


def counts_payload(card_ms, interval_ms, counts):
    out = struct.pack(">IHB", card_ms & 0xFFFFFFFF, interval_ms, len(counts))
    for ch, count, occ in counts:
        out += struct.pack(">BHH", ch, count, occ)
    return out


def status_payload(card_ms, flags, faults):
    out = struct.pack(">IBB", card_ms & 0xFFFFFFFF, flags, len(faults))
    for ch, bits in faults:
        out += struct.pack(">BB", ch, bits)
    return out


def heartbeat_payload(card_ms, flags, nch):
    return struct.pack(">IBB", card_ms & 0xFFFFFFFF, flags, nch)


def preempt_payload(card_ms, inputs):
    """inputs: bitmap of the preempt inputs that are on (bit 0 = input 1)."""
    return struct.pack(">IB", card_ms & 0xFFFFFFFF, inputs)


def decode(seq, mtype, p):
    """The Message of a frame whose CRC matched, or None when its payload is malformed."""
    n = len(p)
    if n < 5:
        return None
    card_ms = struct.unpack_from(">I", p)[0]
    m = Message(seq, mtype, card_ms)
    if mtype == PRESENCE:
        nch = p[4]
        if not 1 <= nch <= MAX_CHANNELS:
            return None
        nb = (nch + 7) // 8
        if n < 6 + nb:
            return None
        bitmap = int.from_bytes(p[5:5 + nb], "little")
        if bitmap >> nch:
            return None                      # bits beyond the card's channels
        k = p[5 + nb]
        if n != 6 + nb + 3 * k:
            return None
        edges = []
        last = -1
        for i in range(k):
            b, age = struct.unpack_from(">BH", p, 6 + nb + 3 * i)
            ch = (b & 0x3F) + 1
            if b & 0x40 or ch > nch:
                return None
            t = card_ms - age
            if t < last:
                return None                  # edges are listed oldest first
            last = t
            edges.append((t, ch, bool(b & 0x80)))
        m.nch, m.presence, m.edges = nch, bitmap, edges
        return m
    if mtype == COUNTS:
        if n < 7:
            return None
        interval, k = struct.unpack_from(">HB", p, 4)
        if interval == 0 or n != 7 + 5 * k:
            return None
        counts = []
        for i in range(k):
            ch, count, occ = struct.unpack_from(">BHH", p, 7 + 5 * i)
            if not 1 <= ch <= MAX_CHANNELS:
                return None
            counts.append((ch, count, occ))
        m.interval_ms, m.counts = interval, counts
        return m
    if mtype == STATUS:
        if n < 6:
            return None
        flags, k = p[4], p[5]
        if flags & ~CARD_FLAGS or n != 6 + 2 * k:
            return None
        faults = []
        for i in range(k):
            ch, bits = p[6 + 2 * i], p[7 + 2 * i]
            if not 1 <= ch <= MAX_CHANNELS or bits & ~FAULT_BITS:
                return None
            faults.append((ch, bits))
        m.flags, m.faults = flags, faults
        return m
    if mtype == HEARTBEAT:
        if n != 6 or p[4] & ~CARD_FLAGS or not 1 <= p[5] <= MAX_CHANNELS:
            return None
        m.flags, m.nch = p[4], p[5]
        return m
    if mtype == PREEMPT:
        if n != 5 or p[4] >> PREEMPT_INPUTS:
            return None                      # reserved bits set
        m.preempts = p[4]
        return m
    return None


# -- the parser -------------------------------------------------------------------

ERROR_COUNTERS = ("garbage_bytes", "crc_errors", "bad_length", "bad_escape", "truncated",
                  "malformed")


class FrameParser:
    """Bytes in, Messages out; never raises on any input, counts what it drops."""

    def __init__(self):
        self.stats = {"bytes": 0, "frames": 0}
        for k in ERROR_COUNTERS:
            self.stats[k] = 0
        self.reset()

    def reset(self):
        """Forget a partial frame (after the port was reopened)."""
        self.in_frame = False
        self.buf = bytearray()
        self.esc = False
        self.need = 0

    def feed(self, data):
        """Parse a chunk of bytes; returns the Messages completed in it."""
        data = bytes(data)
        st = self.stats
        st["bytes"] += len(data)
        out = []
        buf, esc, need, in_frame = self.buf, self.esc, self.need, self.in_frame
        i, n = 0, len(data)
        while i < n:
            if not in_frame:
                j = data.find(b"\x7e", i)
                if j < 0:
                    st["garbage_bytes"] += n - i
                    break
                st["garbage_bytes"] += j - i
                i = j + 1
                in_frame, buf, esc, need = True, bytearray(), False, 0
                continue
            b = data[i]
            i += 1
            if b == FLAG:
                if buf or esc:
                    st["truncated"] += 1       # a new frame began before this one ended
                buf, esc, need = bytearray(), False, 0
                continue
            if esc:
                esc = False
                if b == 0x5E:
                    b = FLAG
                elif b == 0x5D:
                    b = ESC
                else:
                    st["bad_escape"] += 1
                    in_frame = False
                    continue
            elif b == ESC:
                esc = True
                continue
            buf.append(b)
            if len(buf) == 1:
                if b > MAX_PAYLOAD:
                    st["bad_length"] += 1
                    in_frame = False
                    continue
                need = b + 5
            elif len(buf) == need:
                in_frame = False
                m = self._complete(bytes(buf))
                if m is not None:
                    out.append(m)
        self.buf, self.esc, self.need, self.in_frame = buf, esc, need, in_frame
        return out

    def _complete(self, body):
        st = self.stats
        if crc16(body[:-2]) != (body[-2] << 8 | body[-1]):
            st["crc_errors"] += 1
            return None
        m = decode(body[1], body[2], body[3:-2]) if body[2] in TYPES else None
        if m is None:
            st["malformed"] += 1
            return None
        st["frames"] += 1
        return m


class SequenceCheck:
    """Sequence numbers of one card: duplicates dropped, gaps counted."""

    def __init__(self):
        self.last = None
        self.duplicates = 0
        self.gaps = 0
        self.lost = 0

    def reset(self):
        self.last = None

    def accept(self, seq):
        """True to use the frame; False for a duplicate of the previous one."""
        if self.last is not None:
            d = (seq - self.last) & 0xFF
            if d == 0:
                self.duplicates += 1
                return False
            if d > 1:
                self.gaps += 1
                self.lost += d - 1
        self.last = seq
        return True
