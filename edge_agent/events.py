"""Controller event codes: the Indiana hi-resolution enumerations.

Each event is a tuple `(ms, code, param)`. Codes 0-199 follow the public
enumeration so ATSPM-style tools read the log as it is; codes 200 and above
are edge-agent's own and are listed in docs/events.md.
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
COORD_CYCLE_STATE = const(150)      # param 0 in step, 1 lengthening, 2 shortening
COORD_YIELD = const(151)
UNIT_FLASH_STATUS = const(173)

# edge-agent's own codes (vendor range, documented in docs/events.md).
MONITOR_FAULT = const(200)          # param: monitor fault code (monitor.FAULT_*)
FLASH_RESET = const(201)            # technician cleared a latched flash
PLAN_PENDING = const(202)           # a new plan waits for its safe point
PLAN_ACTIVATED = const(203)         # the pending plan took effect
STARTUP_ALL_RED = const(204)        # start-up flash over, all-red begins
LINK_DOWN = const(210)              # central link lost (heartbeat silent or broker gone)
LINK_UP = const(211)                # central link healthy and stable again
CENTRAL_PLAN_EXPIRED = const(212)   # param: the expired plan's version
SOURCE_CENTRAL = const(213)         # central plan requested (param: version)
SOURCE_LOCAL = const(214)           # local fallback plan requested
EVENTS_LOST = const(250)            # the runtime's outbox dropped events (param: count)
BOOT_PLAN = const(251)              # start-up plan: 1 stored active, 2 last-known-good, 3 site local

# Parameters of UNIT_FLASH_STATUS (173).
FLASH_STARTUP = const(1)
FLASH_FAULT = const(2)
FLASH_OFF = const(0)

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
    200: "monitor fault", 201: "flash reset", 202: "plan pending",
    203: "plan activated", 204: "start-up all-red", 210: "central link down",
    211: "central link up", 212: "central plan expired", 213: "central plan requested",
    214: "local plan requested", 250: "events lost (outbox full)", 251: "boot plan source",
}


def name(code):
    """The readable name of an event code."""
    return NAMES.get(code, "event %d" % code)
