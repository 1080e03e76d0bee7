"""The per-phase interval machine: every interval a phase can be in, and every
transition between them with the Indiana events it logs, in one table.

A signal engineer audits this file against NEMA TS2 / NTCIP 1202:

    RED_REST ──► MIN_GREEN ──► EXTENSION ◄──► GREEN_REST
                     │             │              │
                     └─────────────┴──────────────┴──► YELLOW_CHANGE ──► RED_CLEAR
                                                                            │
    RED_REST ◄── RED_REVERT ◄───────────────────────────────────────────────┘
        ▲                                                                   │
        └───────────────────────────────────────────────────────────────────┘

- MIN_GREEN: the initial interval (min green, or the volume-density initial
  earned by actuations on red, up to the max initial).
- EXTENSION: min green done, a conflicting call waits: the phase is extended
  by its passage (gap) time, the max timer runs (it started at the phase
  check, event 2, when the conflicting call first met this green).
- GREEN_REST: min green done, no conflicting call (or held: coordination,
  preemption dwell): the green rests.
- YELLOW_CHANGE and RED_CLEAR: the clearances, never shortened.
- RED_REVERT: red after the clearances until the phase's red revert time since
  its yellow ended; the phase may not show green again before it ends.
- RED_REST: the phase is inactive.

There is no MIN_GREEN → YELLOW_CHANGE transition: a green never ends before
its min green (a preemption entry may shorten the min green itself, never
below the site floor, and then the phase still passes through EXTENSION or
GREEN_REST). The pedestrian intervals are DONT_WALK → WALK → PED_CLEAR →
DONT_WALK (indications.py), with their own table below.
"""

from edge_agent import events as ev
from edge_agent.indications import DONT_WALK, WALK, PED_CLEAR

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

RED_REST = const(0)
MIN_GREEN = const(1)
EXTENSION = const(2)
GREEN_REST = const(3)
YELLOW_CHANGE = const(4)
RED_CLEAR = const(5)
RED_REVERT = const(6)

NAMES = ("red", "min_green", "extension", "green_rest", "yellow", "red_clear", "red_revert")
GREENS = (MIN_GREEN, EXTENSION, GREEN_REST)

# Backwards-compatible names of the coarse indications.
I_RED = RED_REST
I_GREEN = MIN_GREEN
I_YELLOW = YELLOW_CHANGE
I_RED_CLEAR = RED_CLEAR


def _key(a, b):
    return a * 8 + b


# (from, to) -> (events logged, in order; does the phase's interval clock restart)
# The clock (`since`) is when the indication began: it restarts when the
# lamp changes, and at the end of red clearance (the phase goes inactive).
TRANSITIONS = {
    _key(RED_REST, MIN_GREEN): ((ev.PHASE_ON, ev.PHASE_BEGIN_GREEN), True),
    _key(MIN_GREEN, EXTENSION): ((ev.PHASE_MIN_COMPLETE,), False),
    _key(MIN_GREEN, GREEN_REST): ((ev.PHASE_MIN_COMPLETE,), False),
    _key(EXTENSION, GREEN_REST): ((), False),
    _key(GREEN_REST, EXTENSION): ((), False),
    _key(EXTENSION, YELLOW_CHANGE): ((ev.PHASE_GREEN_TERMINATION, ev.PHASE_BEGIN_YELLOW), True),
    _key(GREEN_REST, YELLOW_CHANGE): ((ev.PHASE_GREEN_TERMINATION, ev.PHASE_BEGIN_YELLOW), True),
    _key(YELLOW_CHANGE, RED_CLEAR): ((ev.PHASE_END_YELLOW, ev.PHASE_BEGIN_RED_CLEAR), True),
    _key(RED_CLEAR, RED_REVERT): ((ev.PHASE_END_RED_CLEAR, ev.PHASE_INACTIVE), True),
    _key(RED_CLEAR, RED_REST): ((ev.PHASE_END_RED_CLEAR, ev.PHASE_INACTIVE), True),
    _key(RED_REVERT, RED_REST): ((), False),
}

PED_TRANSITIONS = {
    _key(DONT_WALK, WALK): ev.PED_BEGIN_WALK,
    _key(WALK, PED_CLEAR): ev.PED_BEGIN_CLEAR,
    _key(PED_CLEAR, DONT_WALK): ev.PED_BEGIN_DONT_WALK,
}


class IntervalError(Exception):
    """A transition the table does not allow: the controller is wrong (flash)."""


def transition(ctl, p, to, now, log, reason=0):
    """Move phase p to interval `to`, logging the table's events (after `reason`)."""
    frm = ctl.interval[p]
    t = TRANSITIONS.get(_key(frm, to))
    if t is None:
        raise IntervalError("phase %d: no transition from %s to %s at %d ms"
                            % (p, NAMES[frm], NAMES[to], now))
    if reason:
        log.append((now, reason, p))
    for code in t[0]:
        log.append((now, code, p))
    ctl.interval[p] = to
    if t[1]:
        ctl.since[p] = now


def ped_transition(ctl, p, to, now, log):
    """Move phase p's pedestrian signal to `to` (WALK, PED_CLEAR, DONT_WALK)."""
    code = PED_TRANSITIONS.get(_key(ctl.ped[p], to))
    if code is None:
        raise IntervalError("phase %d: no pedestrian transition from %d to %d at %d ms"
                            % (p, ctl.ped[p], to, now))
    log.append((now, code, p))
    ctl.ped[p] = to
    ctl.ped_since[p] = now
