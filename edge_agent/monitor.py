"""The conflict monitor: an independent check of every output the unit shows.

Like a field MMU it sees only the site configuration and the indications of
each step, never the controller's timers. It checks: no two conflicting phases
green or yellow together; green → yellow → red only; yellow and red clearance
and green not shorter than the site floors; a conflicting green only after the
other phase's full red clearance; walk and pedestrian clearance only with the
phase's green, pedestrian clearance never cut. The first violation is latched:
the agent goes to flash until a technician resets it.
"""

from edge_agent.indications import (MAX_PHASES, DARK, RED, YELLOW, GREEN,
                                    FLASH_RED, FLASH_YELLOW, DONT_WALK, WALK,
                                    PED_CLEAR, PED_DARK)

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

FAULT_CONFLICT = const(1)
FAULT_SHORT_YELLOW = const(2)
FAULT_SHORT_RED_CLEAR = const(3)
FAULT_SHORT_GREEN = const(4)
FAULT_BAD_SEQUENCE = const(5)       # e.g. green straight to red, yellow to green
FAULT_WALK_WITHOUT_GREEN = const(6)
FAULT_SHORT_PED_CLEAR = const(7)
FAULT_BAD_INDICATION = const(8)     # a value no lamp can show
FAULT_CONTROLLER = const(9)         # the controller itself raised

FAULT_NAMES = {
    1: "conflicting phases green or yellow together",
    2: "yellow shorter than the site minimum",
    3: "red clearance shorter than the site minimum",
    4: "green shorter than the site minimum",
    5: "illegal indication sequence",
    6: "walk or pedestrian clearance without the phase green",
    7: "pedestrian clearance cut short",
    8: "indication outside the known set",
    9: "controller error",
}

_NEXT_OK = {  # vehicle indication sequences a load switch may show
    RED: (RED, GREEN, FLASH_RED, FLASH_YELLOW, DARK),
    GREEN: (GREEN, YELLOW, FLASH_RED, FLASH_YELLOW, DARK),
    YELLOW: (YELLOW, RED, FLASH_RED, FLASH_YELLOW, DARK),
    FLASH_RED: (FLASH_RED, FLASH_YELLOW, RED, DARK),
    FLASH_YELLOW: (FLASH_YELLOW, FLASH_RED, RED, DARK),
    DARK: (DARK, RED, FLASH_RED, FLASH_YELLOW),
}


class Fault:
    """A latched monitor fault: when, what and which phases."""
    __slots__ = ("ms", "code", "phase", "other", "detail")

    def __init__(self, ms, code, phase, other, detail):
        self.ms, self.code, self.phase, self.other, self.detail = ms, code, phase, other, detail

    def __repr__(self):
        return "Fault(%d ms, %s: %s)" % (self.ms, FAULT_NAMES.get(self.code, self.code), self.detail)


class Monitor:
    """Checks each step's indications against the site; latches the first fault."""

    def __init__(self, site):
        self.site = site
        self.reset(0)

    def reset(self, now):
        """Technician reset: forget history and the latched fault."""
        n = MAX_PHASES + 1
        self.veh = [RED] * n
        self.veh_since = [now] * n
        self.red_clear_from = [-1] * n   # ms a phase's yellow ended (-1: never)
        self.ped = [DONT_WALK] * n
        self.ped_since = [now] * n
        self.fault = None

    def check(self, now, veh, ped):
        """Check one step's outputs; returns the latched Fault or None."""
        if self.fault is not None:
            return self.fault
        site, f = self.site, self.site.floors
        active = 0
        for p in site.phases:
            if veh[p] == GREEN or veh[p] == YELLOW:
                active |= 1 << p
        for p in site.phases:
            v = veh[p]
            if v not in _NEXT_OK:
                return self._latch(now, FAULT_BAD_INDICATION, p, 0, "indication %r" % (v,))
            if active & (1 << p) and site.conflicts[p] & active:
                q = _lowest(site.conflicts[p] & active)
                return self._latch(now, FAULT_CONFLICT, p, q,
                                   "phases %d and %d both green or yellow" % (p, q))
            before = self.veh[p]
            if v == before:
                continue
            held = now - self.veh_since[p]
            if v not in _NEXT_OK[before]:
                return self._latch(now, FAULT_BAD_SEQUENCE, p, 0,
                                   "phase %d went %s to %s" % (p, _N[before], _N[v]))
            if before == GREEN and v == YELLOW and held < f.min_green:
                return self._latch(now, FAULT_SHORT_GREEN, p, 0,
                                   "phase %d green %d ms < %d ms" % (p, held, f.min_green))
            if before == YELLOW and v == RED:
                if held < f.min_yellow:
                    return self._latch(now, FAULT_SHORT_YELLOW, p, 0,
                                       "phase %d yellow %d ms < %d ms" % (p, held, f.min_yellow))
                self.red_clear_from[p] = now
            if v == GREEN:
                for q in site.phases:
                    t = self.red_clear_from[q]
                    if site.conflicts[p] & (1 << q) and t >= 0 and now - t < f.min_red_clear:
                        return self._latch(now, FAULT_SHORT_RED_CLEAR, p, q,
                                           "phase %d green %d ms after phase %d yellow ended, < %d ms"
                                           % (p, now - t, q, f.min_red_clear))
            self.veh[p] = v
            self.veh_since[p] = now
        for p in site.phases:
            s = ped[p]
            if s == PED_DARK and not site.has_ped[p]:
                continue
            if s not in (DONT_WALK, WALK, PED_CLEAR, PED_DARK):
                return self._latch(now, FAULT_BAD_INDICATION, p, 0, "ped indication %r" % (s,))
            if (s == WALK or s == PED_CLEAR) and veh[p] != GREEN:
                return self._latch(now, FAULT_WALK_WITHOUT_GREEN, p, 0,
                                   "phase %d shows %s while not green" % (p, _P[s]))
            before = self.ped[p]
            if s == before:
                continue
            if before == WALK and s != PED_CLEAR:
                return self._latch(now, FAULT_SHORT_PED_CLEAR, p, 0,
                                   "phase %d walk ended without pedestrian clearance" % p)
            if before == PED_CLEAR and now - self.ped_since[p] < f.min_ped_clear:
                return self._latch(now, FAULT_SHORT_PED_CLEAR, p, 0,
                                   "phase %d ped clearance %d ms < %d ms"
                                   % (p, now - self.ped_since[p], f.min_ped_clear))
            self.ped[p] = s
            self.ped_since[p] = now
        return None

    def latch(self, now, code, detail):
        """Latch a fault found outside the output check (e.g. a controller error)."""
        if self.fault is None:
            self.fault = Fault(now, code, 0, 0, detail)
        return self.fault

    def _latch(self, now, code, p, q, detail):
        self.fault = Fault(now, code, p, q, detail)
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
