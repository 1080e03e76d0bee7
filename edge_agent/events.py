"""Controller event codes: the Indiana hi-resolution enumerations.

Each event is a tuple `(ms, code, param)`. Codes 0-218 follow the public
enumeration so ATSPM-style tools read the log as it is; edge-agent's own
codes sit at 4200-4251, outside everything ATSPM reads (the enumeration ends
at 218, the `atspm` package also reads 316/318, 901-936 and 1000), and are
listed in docs/events.md.
"""

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

PHASE_ON = const(0)
PHASE_BEGIN_GREEN = const(1)
PHASE_CHECK = const(2)
PHASE_MIN_COMPLETE = const(3)
PHASE_GAP_OUT = const(4)
PHASE_MAX_OUT = const(5)
PHASE_FORCE_OFF = const(6)
PHASE_GREEN_TERMINATION = const(7)
PHASE_BEGIN_YELLOW = const(8)
PHASE_END_YELLOW = const(9)
PHASE_BEGIN_RED_CLEAR = const(10)
PHASE_END_RED_CLEAR = const(11)
PHASE_INACTIVE = const(12)
PHASE_SKIPPED = const(14)
PED_BEGIN_WALK = const(21)
PED_BEGIN_CLEAR = const(22)
PED_BEGIN_DONT_WALK = const(23)
BARRIER_TERMINATION = const(31)
PHASE_HOLD_ON = const(41)
PHASE_HOLD_OFF = const(42)
PHASE_CALL_REGISTERED = const(43)
PHASE_CALL_DROPPED = const(44)
PED_CALL_REGISTERED = const(45)
PHASE_OMIT_ON = const(46)
PHASE_OMIT_OFF = const(47)
PED_OMIT_ON = const(48)
PED_OMIT_OFF = const(49)
PHASE_PREEMPT_FORCE_OFF = const(20)  # a green ended by preemption (param: phase)
DETECTOR_OFF = const(81)
DETECTOR_ON = const(82)
DETECTOR_RESTORED = const(83)
DETECTOR_FAULT_OTHER = const(84)
DETECTOR_FAULT_WATCHDOG = const(85)
DETECTOR_FAULT_OPEN = const(86)
DETECTOR_FAULT_SHORTED = const(87)
DETECTOR_FAULT_CHATTER = const(88)
PED_DETECTOR_OFF = const(89)
PED_DETECTOR_ON = const(90)
PED_DETECTOR_FAILED = const(91)
PED_DETECTOR_RESTORED = const(92)
PREEMPT_ADVANCE_WARNING = const(101)  # param: preempt number (101-111, 116)
PREEMPT_CALL_ON = const(102)
PREEMPT_GATE_DOWN = const(103)
PREEMPT_CALL_OFF = const(104)
PREEMPT_ENTRY = const(105)
PREEMPT_TRACK_CLEARANCE = const(106)
PREEMPT_DWELL = const(107)
PREEMPT_LINK_ON = const(108)
PREEMPT_LINK_OFF = const(109)
PREEMPT_MAX_PRESENCE = const(110)
PREEMPT_EXIT = const(111)
PREEMPT_FORCE_OFF = const(116)
COORD_PATTERN_CHANGE = const(131)
CYCLE_LENGTH_CHANGE = const(132)
OFFSET_LENGTH_CHANGE = const(133)
SPLIT_CHANGE_BASE = const(134)      # 134..149: split of phase 1..16 (param: seconds)
COORD_CYCLE_STATE = const(150)      # param: COORD_* below, as the enumeration numbers them
COORD_YIELD = const(151)
UNIT_FLASH_STATUS = const(173)

# edge-agent's own codes, 4200 + the number they had before (200-251 collided
# with enumeration codes ATSPM reads: 202 is "Aux Switch"); docs/events.md.
MONITOR_FAULT = const(4200)         # param: monitor fault code (monitor.FAULT_*)
FLASH_RESET = const(4201)           # technician cleared a latched flash (param: where from)
PLAN_PENDING = const(4202)          # a new plan waits for its safe point
PLAN_ACTIVATED = const(4203)        # the pending plan took effect
STARTUP_ALL_RED = const(4204)       # start-up flash over, all-red begins
FLASH_RESET_REFUSED = const(4205)   # a reset before the minimum flash time (param: where from)
MANUAL_VEHICLE_CALL = const(4206)   # a technician's call from the front panel (param: phase)
MANUAL_PED_CALL = const(4207)       # a technician's ped call from the front panel (param: phase)
LOCAL_CONTROL_HELD = const(4208)    # a technician put the unit in local control (param: minutes)
LINK_DOWN = const(4210)             # central link lost (heartbeat silent or broker gone)
LINK_UP = const(4211)               # central link healthy and stable again
CENTRAL_PLAN_EXPIRED = const(4212)  # param: the expired plan's version
SOURCE_CENTRAL = const(4213)        # central plan requested (param: version)
SOURCE_LOCAL = const(4214)          # local fallback plan requested
EVENTS_LOST = const(4250)           # the runtime's outbox dropped events (param: count)
BOOT_PLAN = const(4251)             # start-up plan: 1 stored active, 2 last-known-good, 3 site local
UNIT_BOOT = const(4252)             # the core started: 1 clean, 2 into a restored latched flash

# Parameters of COORD_CYCLE_STATE (150): the enumeration's coord cycle states
# (ATSPM reads 2-4 as a transition).
COORD_IN_STEP = const(1)
COORD_ADD = const(2)            # transition, lengthening the cycle
COORD_SUBTRACT = const(3)       # transition, shortening the cycle
COORD_DWELL = const(4)          # transition, dwelling in the coordinated phases

# Parameters of UNIT_FLASH_STATUS (173): NTCIP 1202 unitFlashStatus, as the
# enumeration says (ATSPM reads 2 as "not flash").
FLASH_OFF = const(2)            # notFlash
FLASH_FAULT_MONITOR = const(5)  # faultMonitor: the controller's own fault (an error in the core)
FLASH_FAULT = const(6)          # mmu: the conflict monitor latched flash
FLASH_STARTUP = const(7)        # startup

NAMES = {
    0: "phase on", 1: "begin green", 2: "phase check", 3: "min complete",
    4: "gap-out", 5: "max-out", 6: "force-off", 7: "green termination",
    8: "begin yellow", 9: "end yellow", 10: "begin red clearance",
    11: "end red clearance", 12: "phase inactive", 14: "phase skipped",
    21: "ped walk", 22: "ped clearance", 23: "ped don't walk",
    31: "barrier termination", 41: "hold on", 42: "hold off",
    43: "call registered", 44: "call dropped", 45: "ped call registered",
    46: "omit on", 47: "omit off", 48: "ped omit on", 49: "ped omit off",
    20: "preemption force-off", 101: "preempt advance warning", 102: "preempt call on",
    103: "preempt gate down", 104: "preempt call off", 105: "preempt entry started",
    106: "preempt track clearance", 107: "preempt dwell", 108: "preempt link on",
    109: "preempt link off", 110: "preempt max presence exceeded", 111: "preempt exit",
    116: "preemption force-off", 81: "detector off", 82: "detector on",
    83: "detector restored", 84: "detector fault: other",
    85: "detector fault: watchdog", 86: "detector fault: open loop",
    87: "detector fault: shorted loop", 88: "detector fault: chatter",
    89: "ped detector off", 90: "ped detector on", 91: "ped detector failed",
    92: "ped detector restored", 131: "coord pattern change",
    132: "cycle length change", 133: "offset length change",
    150: "coord cycle state change", 151: "coordinated phase yield point",
    173: "unit flash status",
    4200: "monitor fault", 4201: "flash reset", 4202: "plan pending",
    4203: "plan activated", 4204: "start-up all-red", 4205: "flash reset refused",
    4206: "manual vehicle call (panel)", 4207: "manual ped call (panel)",
    4208: "local control held (panel)", 4210: "central link down",
    4211: "central link up", 4212: "central plan expired", 4213: "central plan requested",
    4214: "local plan requested", 4250: "events lost (outbox full)", 4251: "boot plan source",
    4252: "unit start",
}


def name(code):
    """The readable name of an event code."""
    n = NAMES.get(code)
    if n is None and SPLIT_CHANGE_BASE <= code < SPLIT_CHANGE_BASE + 16:
        n = "split change, phase %d" % (code - SPLIT_CHANGE_BASE + 1)
    return n or "event %d" % code
