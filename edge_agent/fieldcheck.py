"""Field check: what the cabinet's MMU sees on the field terminals vs what the agent commanded.

A TS2 cabinet's MMU watches the load-switch outputs themselves. The cabinet
driver reads its channel status (which signal lamps are really driven) and
its own fault flags, translates channels to phases with the cabinet's wiring,
and hands them to the core as a `CabinetReport` in `Inputs.cabinet`. Here the
agent decides, like a cabinet would:

- the MMU reports a fault of its own (conflict, red failure, clearance...):
  the cabinet is in flash already; the agent latches flash with that reason;
- the driver lost the MMU/BIU link: the MMU's port 1 watchdog puts the
  cabinet in flash; the agent latches flash too, so that it never believes
  it drives a green it cannot see;
- the MMU's programming (its compatibility card, read back) lets two phases
  be green together that the site says conflict — it would not catch the
  mistake it is there for — or forbids two the site times together — it
  would trip in normal service: flash, naming the pair;
- a phase shows something else than commanded (a stuck load switch, a dead
  BIU) for longer than the tolerance: flash, with the phase and both colours.

Flashing indications (flash, pedestrian clearance) are not compared: the lamp
is on and off by design. Only steady red, yellow, green, dark and walk are.
"""

from edge_agent.indications import DARK, RED, YELLOW, GREEN, WALK, DONT_WALK

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

# Fault codes latched by the monitor (monitor.FAULT_* are 1..9; these stay clear of them).
FAULT_FIELD_CHECK = const(20)
FAULT_MMU = const(21)
FAULT_CABINET_LINK = const(22)
FAULT_MMU_PROGRAM = const(23)

FAULT_NAMES = {20: "field check: the field shows what was not commanded",
               21: "the cabinet's MMU reports a fault",
               22: "cabinet link lost: the MMU's watchdog flashes the intersection",
               23: "the MMU's programming disagrees with the site's monitor card"}

_STEADY = {DARK: (0, 0, 0), RED: (1, 0, 0), YELLOW: (0, 1, 0), GREEN: (0, 0, 1)}
_COLOUR = {(0, 0, 0): "dark", (1, 0, 0): "red", (0, 1, 0): "yellow", (0, 0, 1): "green"}


class CabinetReport:
    """One reading of the cabinet, by phase (bit p = phase p), from the cabinet driver.

    ms: when the MMU status arrived (monotonic ms); link_ok: the MMU and BIUs
    answer; red/yellow/green: vehicle lamps the MMU sees on; walk: walk lamps
    on; mmu_fault: None or the MMU's own fault in words; link_detail: why the
    link is down; tolerance_ms: how long a disagreement may last (the MMU's);
    watched, watched_ped: the phases whose heads are wired to a channel the MMU sees.
    """
    __slots__ = ("ms", "link_ok", "red", "yellow", "green", "walk", "dont_walk", "mmu_fault",
                 "link_detail", "tolerance_ms", "watched", "watched_ped", "mmu_permits")

    def __init__(self, ms, link_ok=True, red=0, yellow=0, green=0, walk=0, dont_walk=0,
                 mmu_fault=None, link_detail=None, tolerance_ms=500, watched=0x1FFFE,
                 watched_ped=0x1FFFE, mmu_permits=None):
        self.ms, self.link_ok = ms, link_ok
        self.red, self.yellow, self.green = red, yellow, green
        self.walk, self.dont_walk = walk, dont_walk
        self.mmu_fault, self.link_detail = mmu_fault, link_detail
        self.tolerance_ms = tolerance_ms
        self.watched, self.watched_ped = watched, watched_ped   # phases wired to a channel
        self.mmu_permits = mmu_permits    # None, or per phase the bitmask of phases it may
                                          # be green with, as the MMU is programmed


class FieldCheck:
    """Compares each step's commanded indications with the latest CabinetReport."""

    def __init__(self, site):
        self.site = site
        self.since = {}          # (phase, "veh"/"ped") -> ms the disagreement was first seen

    def reset(self):
        self.since = {}

    def check(self, now, vehicle, ped, report):
        """(code, detail) of a fault to latch, or None."""
        if report.mmu_fault is not None:
            return FAULT_MMU, "MMU reports %s" % report.mmu_fault
        if not report.link_ok:
            return FAULT_CABINET_LINK, "cabinet link lost: %s" % (report.link_detail
                                                                  or "no answer")
        if report.mmu_permits is not None:
            f = self._program(report)
            if f is not None:
                return FAULT_MMU_PROGRAM, f
        tol = report.tolerance_ms
        for p in self.site.phases:
            want = _STEADY.get(vehicle[p])
            if want is not None and report.watched >> p & 1:
                seen = (report.red >> p & 1, report.yellow >> p & 1, report.green >> p & 1)
                f = self._compare(now, report.ms, (p, 0), want, seen, tol)
                if f is not None:
                    return FAULT_FIELD_CHECK, ("phase %d commanded %s, the field shows %s for "
                                               "%d ms (tolerance %d ms)"
                                               % (p, _COLOUR[want], _COLOUR.get(seen, _lamps(seen)),
                                                  f, tol))
            if (self.site.has_ped[p] and ped[p] in (WALK, DONT_WALK)
                    and report.watched_ped >> p & 1):
                want = (1, 0) if ped[p] == WALK else (0, 1)
                seen = (report.walk >> p & 1, report.dont_walk >> p & 1)
                f = self._compare(now, report.ms, (p, 1), want, seen, tol)
                if f is not None:
                    return FAULT_FIELD_CHECK, ("phase %d pedestrian commanded %s, the field "
                                               "shows %s for %d ms (tolerance %d ms)"
                                               % (p, _PED[want], _PED.get(seen, "walk and don't walk"),
                                                  f, tol))
        return None

    def _program(self, report):
        """The cabinet MMU's compatibility card, read back, must be the site's monitor card."""
        site = self.site
        card = site.monitor
        for p in site.phases:
            for q in site.phases:
                if q <= p or not (report.watched >> p & 1 and report.watched >> q & 1):
                    continue
                mmu_allows = report.mmu_permits[p] >> q & 1
                conflict = not card.permits(p, q)
                if mmu_allows and conflict:
                    return ("MMU program permits channels %d and %d together; the site's "
                            "monitor card says they conflict" % (p, q))
                if not mmu_allows and not conflict:
                    return ("MMU program forbids channels %d and %d together; the site's "
                            "monitor card permits them (the MMU would trip)" % (p, q))
        return None

    def _compare(self, now, seen_ms, key, want, seen, tol):
        """How long the field has been seen to disagree, once that reaches `tol`.

        The disagreement starts at the step that first sees it and lasts as far as the
        MMU's readings go (seen_ms, when the last one arrived): a reading that stops
        coming proves nothing about the field, and the link supervision, not the field
        check, answers for that."""
        if seen == want:
            self.since.pop(key, None)
            return None
        t0 = self.since.setdefault(key, now)
        if seen_ms - t0 >= tol:
            return seen_ms - t0
        return None


_PED = {(1, 0): "walk", (0, 1): "don't walk", (0, 0): "dark"}


def _lamps(seen):
    return "+".join(n for n, on in zip(("red", "yellow", "green"), seen) if on)
