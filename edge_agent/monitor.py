"""The conflict monitor: a software MMU that checks every output the unit shows.

Like a field MMU it reads only its own program (the site's monitor section,
edge_agent.monitor_card, written independently of rings and barriers) and the
indications of each step: never the controller's timers, never the conflicts
the controller derives from its rings. The rules, one fault code each:

  conflict        two channels that are not permissive show green, yellow or
                  flashing yellow together
  flash mixed     a channel flashes while another shows green or yellow
  red fail        a channel shows no indication at all (dark); a pedestrian
                  head dark while its channel is not in flash
  sequence        any vehicle change but green -> yellow -> red -> green and the
                  flash entries and exits from red (_NEXT_OK); pedestrian
                  don't walk -> walk -> clearance -> don't walk (_PED_NEXT_OK)
  short green / short yellow / short ped clearance
                  an interval that ended before the channel's minimum
  short red clearance
                  a green while a conflicting channel has shown red for less
                  than its minimum red clearance (after yellow, flash or dark)
  red revert      a channel green again sooner than its red revert time after
                  its own yellow ended
  walk without green
                  walk or pedestrian clearance while the channel is not green

The monitor starts as the cabinet does at power-up: every channel in flash.
The first violation is latched with the rule, the channels, the time measured
and the limit; the agent shows flash until a technician resets it.
"""

from edge_agent.indications import (DARK, RED, YELLOW, GREEN, FLASH_RED, FLASH_YELLOW,
                                    DONT_WALK, WALK, PED_CLEAR, PED_DARK, MAX_PHASES)

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

FAULT_CONFLICT = const(1)
FAULT_SHORT_YELLOW = const(2)
FAULT_SHORT_RED_CLEAR = const(3)
FAULT_SHORT_GREEN = const(4)
FAULT_BAD_SEQUENCE = const(5)
FAULT_WALK_WITHOUT_GREEN = const(6)
FAULT_SHORT_PED_CLEAR = const(7)
FAULT_BAD_INDICATION = const(8)     # a value no lamp can show
FAULT_CONTROLLER = const(9)         # the controller itself raised, or time ran backwards
FAULT_RED_FAIL = const(10)
FAULT_RED_REVERT = const(11)
FAULT_FLASH_MIXED = const(12)
FAULT_EXTERNAL = const(13)          # the cabinet's MMU or a rig's fault injector said so

FAULT_NAMES = {
    1: "conflict",
    2: "short yellow",
    3: "short red clearance",
    4: "short green",
    5: "illegal sequence",
    6: "walk without green",
    7: "short pedestrian clearance",
    8: "unknown indication",
    9: "controller error",
    10: "red fail",
    11: "red revert",
    12: "flash mixed with green or yellow",
    13: "external fault",
    # the cabinet's field check (edge_agent/fieldcheck.py) latches through the same path
    20: "field check",
    21: "MMU fault",
    22: "cabinet link lost",
    23: "MMU programming",
}

# The vehicle changes a channel may make. Green is left only for yellow and
# yellow only for red (run mode); flash is entered and left through red.
# Dark is never legal: it is a red fail.
_NEXT_OK = {
    RED: (RED, GREEN, FLASH_RED, FLASH_YELLOW),
    GREEN: (GREEN, YELLOW),
    YELLOW: (YELLOW, RED),
    FLASH_RED: (FLASH_RED, FLASH_YELLOW, RED),
    FLASH_YELLOW: (FLASH_YELLOW, FLASH_RED, RED),
}

_PED_NEXT_OK = {
    DONT_WALK: (DONT_WALK, WALK, PED_DARK),
    WALK: (WALK, PED_CLEAR),
    PED_CLEAR: (PED_CLEAR, DONT_WALK),
    PED_DARK: (PED_DARK, DONT_WALK),
}


class Fault:
    """A latched monitor fault: when, which rule, which channels, measured vs limit (ms)."""
    __slots__ = ("ms", "code", "channel", "other", "measured", "limit", "detail")

    def __init__(self, ms, code, channel, other, detail, measured=-1, limit=-1):
        self.ms, self.code, self.channel, self.other = ms, code, channel, other
        self.detail, self.measured, self.limit = detail, measured, limit

    @property
    def rule(self):
        return FAULT_NAMES.get(self.code, "fault %d" % self.code)

    def to_dict(self):
        """A plain dict (JSON-ready) to persist the latch or report it."""
        return {"ms": self.ms, "code": self.code, "rule": self.rule, "channel": self.channel,
                "other": self.other, "measured_ms": self.measured, "limit_ms": self.limit,
                "detail": self.detail}

    @staticmethod
    def from_dict(d):
        return Fault(d["ms"], d["code"], d.get("channel", 0), d.get("other", 0),
                     d.get("detail", ""), d.get("measured_ms", -1), d.get("limit_ms", -1))

    def __repr__(self):
        return "Fault(%d ms, %s: %s)" % (self.ms, self.rule, self.detail)


class Monitor:
    """Checks each step's indications against the monitor card; latches the first fault."""

    def __init__(self, card, now=0):
        self.card = card
        self.reset(now)

    def reset(self, now):
        """Power-up state (every channel in flash) and no fault: a technician reset."""
        n = MAX_PHASES + 1
        self.veh = [FLASH_RED] * n
        self.veh_since = [now] * n
        self.red_since = [-1] * n      # ms the channel last entered solid red
        self.yellow_end = [-1] * n     # ms the channel's last yellow ended (-1: none yet)
        self.ped = [PED_DARK] * n
        self.ped_since = [now] * n
        self.fault = None

    def check(self, now, veh, ped):
        """Check one step's outputs (lists indexed by channel); returns the latched Fault or None."""
        if self.fault is not None:
            return self.fault
        k = self.card
        chans = k.channels
        run = flashing = active = 0
        for ch in chans:
            v = veh[ch]
            b = 1 << ch
            if v == DARK:
                return self._latch(now, FAULT_RED_FAIL, ch, 0,
                                   "channel %d shows no indication (red fail)" % ch)
            if v not in _NEXT_OK:
                return self._latch(now, FAULT_BAD_INDICATION, ch, 0,
                                   "channel %d shows indication %r" % (ch, v))
            if v == GREEN or v == YELLOW:
                run |= b
            elif v != RED:
                flashing |= b
            if v == GREEN or v == YELLOW or v == FLASH_YELLOW:
                active |= b
        if run and flashing:
            a, f = _lowest(run), _lowest(flashing)
            return self._latch(now, FAULT_FLASH_MIXED, f, a, "channel %d shows %s while channel %d "
                               "shows %s" % (f, _N[veh[f]], a, _N[veh[a]]))
        for ch in chans:
            b = 1 << ch
            if active & b:
                bad = active & ~k.permissive[ch] & ~b
                if bad:
                    q = _lowest(bad)
                    return self._latch(now, FAULT_CONFLICT, ch, q,
                                       "conflicting channels %d (%s) and %d (%s)"
                                       % (ch, _N[veh[ch]], q, _N[veh[q]]))
        greens = 0
        for ch in chans:
            v, before = veh[ch], self.veh[ch]
            if v == before:
                continue
            held = now - self.veh_since[ch]
            if v not in _NEXT_OK[before]:
                return self._latch(now, FAULT_BAD_SEQUENCE, ch, 0, "channel %d went %s to %s"
                                   % (ch, _N[before], _N[v]))
            if before == GREEN and held < k.min_green[ch]:
                return self._latch(now, FAULT_SHORT_GREEN, ch, 0, "channel %d green %d ms, "
                                   "minimum %d ms" % (ch, held, k.min_green[ch]),
                                   held, k.min_green[ch])
            if before == YELLOW and held < k.min_yellow[ch]:
                return self._latch(now, FAULT_SHORT_YELLOW, ch, 0, "channel %d yellow %d ms, "
                                   "minimum %d ms" % (ch, held, k.min_yellow[ch]),
                                   held, k.min_yellow[ch])
            if v == GREEN:
                greens |= 1 << ch
        for ch in chans:
            v, before = veh[ch], self.veh[ch]
            if v != before:
                if before == YELLOW:
                    self.yellow_end[ch] = now
                if v == RED:
                    self.red_since[ch] = now
                self.veh[ch] = v
                self.veh_since[ch] = now
        if greens:
            for ch in chans:
                if not greens & (1 << ch):
                    continue
                t = self.yellow_end[ch]
                if t >= 0 and now - t < k.red_revert[ch]:
                    return self._latch(now, FAULT_RED_REVERT, ch, 0, "channel %d green again %d ms "
                                       "after its yellow ended, red revert %d ms"
                                       % (ch, now - t, k.red_revert[ch]), now - t, k.red_revert[ch])
                for q in chans:
                    if q == ch or k.permissive[ch] & (1 << q):
                        continue
                    red = now - self.red_since[q]
                    if red < k.min_red_clear[q]:
                        return self._latch(now, FAULT_SHORT_RED_CLEAR, ch, q,
                                           "channel %d green when conflicting channel %d had "
                                           "shown red %d ms, red clearance %d ms"
                                           % (ch, q, red, k.min_red_clear[q]),
                                           red, k.min_red_clear[q])
        for ch in chans:
            if not k.ped[ch]:
                continue
            s = ped[ch]
            if s not in _PED_NEXT_OK:
                return self._latch(now, FAULT_BAD_INDICATION, ch, 0,
                                   "channel %d pedestrian indication %r" % (ch, s))
            v = veh[ch]
            if s == PED_DARK and (v == RED or v == GREEN or v == YELLOW):
                return self._latch(now, FAULT_RED_FAIL, ch, 0, "channel %d pedestrian head dark "
                                   "while the channel shows %s" % (ch, _N[v]))
            if (s == WALK or s == PED_CLEAR) and v != GREEN:
                return self._latch(now, FAULT_WALK_WITHOUT_GREEN, ch, 0, "channel %d shows %s "
                                   "while %s" % (ch, _P[s], _N[v]))
            before = self.ped[ch]
            if s == before:
                continue
            held = now - self.ped_since[ch]
            if s not in _PED_NEXT_OK[before]:
                code = FAULT_SHORT_PED_CLEAR if before == WALK else FAULT_BAD_SEQUENCE
                return self._latch(now, code, ch, 0, "channel %d pedestrian %s to %s"
                                   % (ch, _P[before], _P[s]))
            if before == PED_CLEAR and held < k.min_ped_clear[ch]:
                return self._latch(now, FAULT_SHORT_PED_CLEAR, ch, 0, "channel %d pedestrian "
                                   "clearance %d ms, minimum %d ms" % (ch, held, k.min_ped_clear[ch]),
                                   held, k.min_ped_clear[ch])
        for ch in chans:
            if k.ped[ch] and ped[ch] != self.ped[ch]:
                self.ped[ch] = ped[ch]
                self.ped_since[ch] = now
        return None

    def latch(self, now, code, detail):
        """Latch a fault found outside the output check (a controller error, a field check)."""
        if self.fault is None:
            self.fault = Fault(now, code, 0, 0, detail)
        return self.fault

    def restore(self, fault):
        """Latch a fault restored from the store at power-up: the unit stays in flash."""
        self.fault = fault

    def _latch(self, now, code, ch, other, detail, measured=-1, limit=-1):
        self.fault = Fault(now, code, ch, other, detail, measured, limit)
        return self.fault


def _lowest(mask):
    p = 0
    while not mask & 1:
        mask >>= 1
        p += 1
    return p


_N = {DARK: "dark", RED: "red", YELLOW: "yellow", GREEN: "green",
      FLASH_RED: "flash-red", FLASH_YELLOW: "flash-yellow"}
_P = {DONT_WALK: "don't walk", WALK: "walk", PED_CLEAR: "ped clearance", PED_DARK: "dark"}
