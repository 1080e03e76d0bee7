"""NEMA TS2 Type 1 cabinet frames (Port 1): controller ↔ BIUs and MMU, sans-I/O.

Bytes in, frames out, no I/O, so the cabinet driver, the emulator, the fuzz
test and docs/cabinet.md share one definition. The layouts are those of NEMA
TS2-2003 §3.3.1.4 (Port 1 command and response frames), cross-checked with the
open virtual-cabinet library by Wuping Xin (vtc, "C++ Virtualization Library
of Traffic Cabinet": frame types 0, 1, 9, 10-13, 128, 129, 138-141, 148-151)
— see docs/cabinet.md for each layout with its source.

A TS2 frame is HDLC/SDLC: ADDRESS | CONTROL (0x83, unnumbered information) |
FRAME TYPE | DATA | FCS. On the cabinet's synchronous 153.6 kbit/s Port 1 the
HDLC controller does zero-bit insertion; here the link is an asynchronous
serial device (a USB-SDLC adapter in async-HDLC mode, or a pseudo-terminal in
the rig), so the same frame is carried with the async-HDLC byte stuffing of
RFC 1662 §4.2:

    0x7E | stuffed( ADDRESS | 0x83 | TYPE | DATA | FCS lo | FCS hi ) | 0x7E

FCS is the HDLC frame check sequence (ISO/IEC 13239, CRC-16/X-25: reflected
poly 0x1021, init 0xFFFF, final xor 0xFFFF, low byte first). Inside a frame
0x7E and 0x7D travel as 0x7D, byte ^ 0x20. The closing flag may be the next
frame's opening flag. A frame is accepted only when its FCS matches, its
control byte is 0x83, its type is known, it came from (or to) the address that
type belongs to and its length is exactly the type's length; everything else
is counted and dropped, and the next flag re-synchronises.

Bits inside the data are numbered from the first data byte, least significant
bit first (TS2 bit 0x18 = byte 3 bit 0 of the whole frame = data[0] bit 0).
"""

FLAG = 0x7E
ESC = 0x7D
CONTROL = 0x83          # unnumbered information (UI), poll/final set: every TS2 frame
MAX_FRAME = 64          # the longest TS2 Port 1 frame is 39 bytes (call data)

# Station addresses (TS2 §3.3.1.4.1).
ADDR_TF_BIU = (0, 1, 2, 3)          # terminals & facilities BIUs 1-4
ADDR_DET_BIU = (8, 9, 10, 11)       # detector BIUs 1-4
ADDR_MMU = 16
ADDR_BROADCAST = 255

# Command frames (controller → station).
LOAD_SWITCH_DRIVERS = 0             # to the MMU: what the controller commands, 16 channels
MMU_STATUS_REQUEST = 1
MMU_PROGRAM_REQUEST = 3             # read back the MMU's programming (compatibility card)
DATE_TIME = 9                       # broadcast
TF_OUTPUTS = 10                     # 10..13: outputs to T&F BIU 1..4 (and request its inputs)
OUTPUT_TRANSFER = 18                # broadcast: BIUs apply the outputs they were sent
CALL_DATA_REQUEST = 20              # 20..23: detector BIU 1..4
# Response frames (station → controller) are the command type + 128.
LOAD_SWITCH_ACK = 128
MMU_STATUS = 129
MMU_PROGRAM = 131
TF_INPUTS = 138                     # 138..141
CALL_DATA = 148                     # 148..151

# Frame type -> (address, data bytes). Data = frame length minus address, control, type.
LAYOUT = {LOAD_SWITCH_DRIVERS: (ADDR_MMU, 13), MMU_STATUS_REQUEST: (ADDR_MMU, 0),
          DATE_TIME: (ADDR_BROADCAST, 9), OUTPUT_TRANSFER: (ADDR_BROADCAST, 0),
          LOAD_SWITCH_ACK: (ADDR_MMU, 0), MMU_STATUS: (ADDR_MMU, 10),
          MMU_PROGRAM_REQUEST: (ADDR_MMU, 0), MMU_PROGRAM: (ADDR_MMU, 20)}
for _k in range(4):
    LAYOUT[TF_OUTPUTS + _k] = (ADDR_TF_BIU[_k], 8)
    LAYOUT[TF_INPUTS + _k] = (ADDR_TF_BIU[_k], 5)
    LAYOUT[CALL_DATA_REQUEST + _k] = (ADDR_DET_BIU[_k], 0)
    LAYOUT[CALL_DATA + _k] = (ADDR_DET_BIU[_k], 36)

CHANNELS = 16           # MMU load-switch channels (TS2 Type 1: 16-channel MMU)

# MMU status flags (Type 129 data bytes 6..9, as one 32-bit field: byte 6 = bits 0..7).
MMU_CONTROLLER_VOLT = 1 << 0        # controller voltage monitor (CVM) input
MMU_24V_I = 1 << 1
MMU_24V_II = 1 << 2
MMU_24V_INHIBIT = 1 << 3
MMU_RESET = 1 << 4
MMU_RED_ENABLE = 1 << 5
MMU_CONFLICT = 1 << 8
MMU_RED_FAILURE = 1 << 9
MMU_DIAGNOSTIC_FAILURE = 1 << 16
MMU_MIN_CLEARANCE_FAILURE = 1 << 17
MMU_PORT1_TIMEOUT = 1 << 18
MMU_FAILED_RELAY_TRANSFERRED = 1 << 19   # the MMU's output relay put the cabinet in flash
MMU_FAILED_IMMEDIATE = 1 << 20
MMU_LOCAL_FLASH = 1 << 22
MMU_STARTUP_FLASH = 1 << 23
MMU_FYA_FLASH_RATE = 1 << 24
MMU_KNOWN_FLAGS = (MMU_CONTROLLER_VOLT | MMU_24V_I | MMU_24V_II | MMU_24V_INHIBIT | MMU_RESET
                   | MMU_RED_ENABLE | MMU_CONFLICT | MMU_RED_FAILURE | MMU_DIAGNOSTIC_FAILURE
                   | MMU_MIN_CLEARANCE_FAILURE | MMU_PORT1_TIMEOUT | MMU_FAILED_RELAY_TRANSFERRED
                   | MMU_FAILED_IMMEDIATE | MMU_LOCAL_FLASH | MMU_STARTUP_FLASH
                   | MMU_FYA_FLASH_RATE)
MMU_FAULT_NAMES = ((MMU_CONFLICT, "conflict"), (MMU_RED_FAILURE, "red failure"),
                   (MMU_DIAGNOSTIC_FAILURE, "diagnostic failure"),
                   (MMU_MIN_CLEARANCE_FAILURE, "minimum clearance failure"),
                   (MMU_PORT1_TIMEOUT, "port 1 timeout"),
                   (MMU_FAILED_RELAY_TRANSFERRED, "failed, output relay transferred"),
                   (MMU_FAILED_IMMEDIATE, "failed, immediate response"),
                   (MMU_FYA_FLASH_RATE, "flashing yellow arrow rate failure"))
MMU_FAULTS = 0
for _bit, _name in MMU_FAULT_NAMES:
    MMU_FAULTS |= _bit


# -- FCS and stuffing ------------------------------------------------------------

def _fcs_table():
    table = []
    for b in range(256):
        c = b
        for _ in range(8):
            c = (c >> 1) ^ 0x8408 if c & 1 else c >> 1
        table.append(c)
    return table


_FCS = _fcs_table()


def fcs16(data):
    """HDLC FCS (CRC-16/X-25): "123456789" -> 0x906E."""
    c = 0xFFFF
    t = _FCS
    for b in data:
        c = (c >> 8) ^ t[(c ^ b) & 0xFF]
    return c ^ 0xFFFF


def stuff(body):
    return body.replace(b"\x7d", b"\x7d\x5d").replace(b"\x7e", b"\x7d\x5e")


def encode(ftype, data=b""):
    """The wire bytes of one frame (address from the type's layout)."""
    layout = LAYOUT.get(ftype)
    if layout is None:
        raise ValueError("frame type %d is not a TS2 Port 1 frame this driver knows" % ftype)
    if len(data) != layout[1]:
        raise ValueError("frame type %d carries %d data bytes, not %d"
                         % (ftype, layout[1], len(data)))
    body = bytes((layout[0], CONTROL, ftype)) + bytes(data)
    f = fcs16(body)
    return b"\x7e" + stuff(body + bytes((f & 0xFF, f >> 8))) + b"\x7e"


class Frame:
    """One accepted frame: address, type, data bytes."""
    __slots__ = ("address", "type", "data")

    def __init__(self, address, ftype, data):
        self.address, self.type, self.data = address, ftype, data

    def __eq__(self, other):
        return (isinstance(other, Frame) and self.address == other.address
                and self.type == other.type and self.data == other.data)

    def __repr__(self):
        return "Frame(addr %d type %d, %d bytes)" % (self.address, self.type, len(self.data))


ERROR_COUNTERS = ("garbage_bytes", "fcs_errors", "too_long", "too_short", "bad_escape",
                  "bad_control", "unknown_type", "bad_address", "bad_length")


class FrameParser:
    """Bytes in, Frames out; never raises on any input, counts what it drops."""

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
        self.skip = False           # a bad escape or an over-long frame: wait for the next flag

    def feed(self, data):
        """Parse a chunk of bytes; returns the Frames completed in it."""
        data = bytes(data)
        st = self.stats
        st["bytes"] += len(data)
        out = []
        buf, esc, skip, in_frame = self.buf, self.esc, self.skip, self.in_frame
        i, n = 0, len(data)
        while i < n:
            if not in_frame:
                j = data.find(b"\x7e", i)
                if j < 0:
                    st["garbage_bytes"] += n - i
                    break
                st["garbage_bytes"] += j - i
                i = j + 1
                in_frame, buf, esc, skip = True, bytearray(), False, False
                continue
            if skip:
                j = data.find(b"\x7e", i)
                if j < 0:
                    break
                i = j
                skip = False
                buf, esc = bytearray(), False
                continue
            b = data[i]
            i += 1
            if b == FLAG:
                if esc:
                    st["bad_escape"] += 1
                elif buf:
                    f = self._complete(bytes(buf))
                    if f is not None:
                        out.append(f)
                buf, esc = bytearray(), False     # this flag also opens the next frame
                continue
            if esc:
                esc = False
                b ^= 0x20
                if b not in (FLAG, ESC):
                    st["bad_escape"] += 1         # only 0x7E and 0x7D are ever escaped
                    skip = True
                    continue
            elif b == ESC:
                esc = True
                continue
            if len(buf) >= MAX_FRAME:
                st["too_long"] += 1
                skip = True
                continue
            buf.append(b)
        self.buf, self.esc, self.skip, self.in_frame = buf, esc, skip, in_frame
        return out

    def _complete(self, body):
        st = self.stats
        if len(body) < 5:
            st["too_short"] += 1
            return None
        f = body[-2] | body[-1] << 8
        if fcs16(body[:-2]) != f:
            st["fcs_errors"] += 1
            return None
        address, control, ftype = body[0], body[1], body[2]
        if control != CONTROL:
            st["bad_control"] += 1
            return None
        layout = LAYOUT.get(ftype)
        if layout is None:
            st["unknown_type"] += 1
            return None
        if address != layout[0]:
            st["bad_address"] += 1
            return None
        data = body[3:-2]
        if len(data) != layout[1]:
            st["bad_length"] += 1
            return None
        st["frames"] += 1
        return Frame(address, ftype, data)


# -- frame contents ------------------------------------------------------------------
# A channel's drive is (red, yellow, green), each True/False. The controller's
# load-switch drivers are 2 bits each: 00 off, 11 on (01 and 10 are the two
# half-wave dimming states, counted as on when decoded).

def _put2(out, bit, on):
    if on:
        out[bit >> 3] |= 3 << (bit & 7)


def _get2(data, bit):
    return (data[bit >> 3] >> (bit & 7)) & 3 != 0


def load_switch_drivers(drive, flash=False):
    """Type 0 data: {channel 1..16: (red, yellow, green)}; flash = load switch flash bit.

    Layout (TS2 §3.3.1.4.2; vtc LoadSwitchDriversFrame): 2 bits per channel,
    data[0..3] green 1..16, data[4..7] yellow, data[8..11] red, data[12] bit 7 flash.
    """
    out = bytearray(13)
    for ch, (r, y, g) in drive.items():
        k = 2 * (ch - 1)
        _put2(out, k, g)
        _put2(out, 32 + k, y)
        _put2(out, 64 + k, r)
    if flash:
        out[12] |= 0x80
    return bytes(out)


def parse_load_switch_drivers(data):
    """(drive {channel: (red, yellow, green)}, flash) of Type 0 data."""
    drive = {}
    for ch in range(1, CHANNELS + 1):
        k = 2 * (ch - 1)
        drive[ch] = (_get2(data, 64 + k), _get2(data, 32 + k), _get2(data, k))
    return drive, bool(data[12] & 0x80)


def tf_outputs(drive, biu):
    """Type 10+biu-1 data: the 8 channels of T&F BIU `biu` (1..4), channel 8*(biu-1)+1.. .

    Layout (TS2 §3.3.1.4.3; vtc TfBiu01_OutputsInputsRequestFrame): per channel
    red, yellow, green, 2 bits each, from data bit 0; data[6..7] other outputs (0).
    """
    out = bytearray(8)
    base = 8 * (biu - 1)
    for i in range(8):
        r, y, g = drive.get(base + i + 1, (False, False, False))
        k = 6 * i
        _put2(out, k, r)
        _put2(out, k + 2, y)
        _put2(out, k + 4, g)
    return bytes(out)


def parse_tf_outputs(data, biu):
    """{channel: (red, yellow, green)} of a Type 10..13 frame's data."""
    base = 8 * (biu - 1)
    return {base + i + 1: (_get2(data, 6 * i), _get2(data, 6 * i + 2), _get2(data, 6 * i + 4))
            for i in range(8)}


def mmu_status(green, yellow, red, flags):
    """Type 129 data: channel bitmaps (bit 0 = channel 1) of what the field shows, and flags.

    Layout (TS2 §3.3.1.4.2; vtc MMUInputStatusRequestAckFrame): data[0..1]
    green/walk 1..16, data[2..3] yellow/ped clear, data[4..5] red/don't walk,
    data[6..9] the MMU_* flags.
    """
    return bytes((green & 0xFF, green >> 8 & 0xFF, yellow & 0xFF, yellow >> 8 & 0xFF,
                  red & 0xFF, red >> 8 & 0xFF, flags & 0xFF, flags >> 8 & 0xFF,
                  flags >> 16 & 0xFF, flags >> 24 & 0xFF))


class MmuStatus:
    """A decoded Type 129: what the MMU sees on each channel's field terminals, and its flags."""
    __slots__ = ("green", "yellow", "red", "flags")

    def __init__(self, green, yellow, red, flags):
        self.green, self.yellow, self.red, self.flags = green, yellow, red, flags

    def faults(self):
        """The names of the MMU faults set in its flags."""
        return [name for bit, name in MMU_FAULT_NAMES if self.flags & bit]


def parse_mmu_status(data):
    d = data
    return MmuStatus(d[0] | d[1] << 8, d[2] | d[3] << 8, d[4] | d[5] << 8,
                     d[6] | d[7] << 8 | d[8] << 16 | d[9] << 24)


def _pairs():
    return [(a, b) for a in range(1, CHANNELS + 1) for b in range(a + 1, CHANNELS + 1)]


PAIRS = _pairs()        # (1, 2), (1, 3) ... (1, 16), (2, 3) ... (15, 16): 120 pairs


def mmu_program(permits, min_yellow_disable=0, min_flash_s=0, flags=0):
    """Type 131 data: the MMU's programming as it reads it back.

    Layout (TS2 §3.3.1.4.2; vtc MMUProgrammingRequestAckFrame): data[0..14]
    one bit per channel pair in PAIRS order (1 = compatible, may be green
    together), data[15..16] minimum yellow change disable ch 1..16, data[17]
    bits 0-3 minimum flash time (s), bit 4 24 V latch, bit 5 CVM latch (flags
    bits 0-1), data[18..19] reserved.
    """
    out = bytearray(20)
    for k, pair in enumerate(PAIRS):
        if pair in permits:
            out[k >> 3] |= 1 << (k & 7)
    out[15], out[16] = min_yellow_disable & 0xFF, min_yellow_disable >> 8 & 0xFF
    out[17] = (min_flash_s & 0x0F) | (flags & 3) << 4
    return bytes(out)


def parse_mmu_program(data):
    """(set of compatible channel pairs (a < b), minimum yellow disable bitmap,
    minimum flash s, latch flags) of Type 131 data."""
    permits = {pair for k, pair in enumerate(PAIRS) if data[k >> 3] >> (k & 7) & 1}
    return permits, data[15] | data[16] << 8, data[17] & 0x0F, data[17] >> 4 & 3


def date_time(year, month, day, hour, minute, second, tenths, tf_present=0, det_present=0):
    """Type 9 data (TS2 §3.3.1.4.4; vtc DateTimeBroadcastFrame): month, day, year (two
    digits), hour, minutes, seconds, tenths, T&F BIU presence bits, detector BIU presence bits."""
    return bytes((month, day, year % 100, hour, minute, second, tenths, tf_present & 0xFF,
                  det_present & 0xFF))


def call_data(calls, changed=0, stamps=None):
    """Type 148..151 data for 16 detector channels (bit 0 = the BIU's first channel).

    Layout (TS2 §3.3.1.4.5; vtc DrBiu01_CallDataFrame): data[0..31] a 16-bit
    time stamp per channel (ms, low byte first), data[32..33] status bit 0,
    data[34..35] status bit 1. (bit 1, bit 0): 00 no call, 01 constant call,
    10 call gone, 11 new call — bit 0 is the call now, bit 1 a change since the last frame.
    """
    out = bytearray(36)
    for i in range(16):
        s = (stamps or {}).get(i + 1, 0) & 0xFFFF
        out[2 * i], out[2 * i + 1] = s & 0xFF, s >> 8
    out[32], out[33] = calls & 0xFF, calls >> 8 & 0xFF
    out[34], out[35] = changed & 0xFF, changed >> 8 & 0xFF
    return bytes(out)


def parse_call_data(data):
    """(calls bitmap, changed bitmap) of a Type 148..151 frame's data."""
    return data[32] | data[33] << 8, data[34] | data[35] << 8
