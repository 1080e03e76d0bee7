"""The agent facade: `Agent(site).step(now_ms, inputs) -> Outputs`.

The only door into the core: plans arrive as `Inputs.central_plan` and enter
through the supervisor, which lets them take effect only at a safe point. A
step conditions the detectors, advances the controller, and passes the
indications through the independent conflict monitor before they leave: a
violation replaces them with flash in the same step and latches. The latched
fault is in `Outputs.fault`; the runtime persists it before it shows the
flash, and hands it back as `Agent(site, latched=...)` after a restart or a
power cycle, so the unit boots into flash and stays there. Only a technician
on site clears it (`Inputs.flash_reset`, from the local command socket or the
cabinet's hardwired reset input), and only after the monitor card's minimum
flash time. Start-up runs the site's start-up flash, then all-red, before the
first green. `Agent.status(now)` is the one door out for anything that wants
more than the outputs.
"""

from edge_agent import events as ev
from edge_agent.controller import Controller
from edge_agent.coordination import Coordinator
from edge_agent.detectors import Detectors
from edge_agent.fieldcheck import FieldCheck
from edge_agent.indications import (MAX_PHASES, FLASH_RED, FLASH_YELLOW, RED,
                                    PED_DARK, DONT_WALK, VEHICLE_LETTERS, PED_LETTERS)
from edge_agent.nextstep import next_ms as _next_ms
from edge_agent.monitor import Monitor, FAULT_CONTROLLER, FAULT_EXTERNAL
from edge_agent.preempt import Preemption
from edge_agent.requests import Requests
from edge_agent.supervisor import Supervisor

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

MODE_STARTUP_FLASH = const(0)
MODE_STARTUP_ALL_RED = const(1)
MODE_RUN = const(2)
MODE_FLASH = const(3)
MODE_PREEMPT = const(4)     # in Outputs.mode only: running a preempt sequence
MODE_NAMES = ("startup-flash", "startup-all-red", "run", "flash", "preempt")

NO_REQUESTS = Requests()    # shared and never written: a step without any request

# Where a flash reset came from (the parameter of its event).
RESET_NONE = const(0)
RESET_LOCAL_COMMAND = const(1)     # `edge-agent flash reset` on the unit's local socket
RESET_HARDWIRED = const(2)         # the cabinet's reset input
RESET_PANEL = const(3)             # the local front panel, behind its password
RESET_SOURCES = ("none", "local command", "hardwired input", "front panel")

class Inputs:
    """One step's inputs: detector levels and pulses by channel, ped buttons, requests.

    detectors: {channel: bool} presence now (a channel left out keeps its last value)
    pulses: {channel: int} on-edges since the last step (vehicles shorter than a step)
    peds: {channel: bool} pedestrian push buttons
    force_off, hold, omit: phase bitmasks requested by coordination or preemption
    reports: detector reports from drivers (see edge_agent.detectors), each
        stamped on arrival; they carry source timestamps, counts and faults
    flash_reset: a technician's reset of a latched flash, by where it came
        from (RESET_LOCAL_COMMAND, RESET_HARDWIRED, RESET_PANEL); never central
    external_fault: a sentence when something outside the core saw a fault the
        cabinet answers with flash (the MMU's own fault, a rig's fault injector)
    local_until_ms: a technician on site holds the unit on its local plan
        until this monotonic ms (the front panel's "local control for ...")
    cabinet: the cabinet's MMU reading (edge_agent.fieldcheck.CabinetReport) or None
    preempts: {preempt number: bool} preempt inputs (a number left out keeps its last value)
    advance_warning, gate_down: {preempt number: bool} a railroad's advance warning and
        gate down inputs for that preempt (logged as 101 and 103; same keeping rule)
    priority: [PriorityRequest] signed priority requests that passed their checks
    """
    __slots__ = ("detectors", "pulses", "peds", "reports", "force_off", "hold",
                 "omit", "flash_reset", "external_fault", "local_until_ms", "wall_ms",
                 "link_up", "heartbeat", "central_plan", "hold_central_ms", "utc_offset_ms",
                 "cabinet", "preempts", "priority", "advance_warning", "gate_down")

    def __init__(self, detectors=None, pulses=None, peds=None, reports=None,
                 force_off=0, hold=0, omit=0, flash_reset=RESET_NONE,
                 external_fault=None, local_until_ms=None, wall_ms=None, link_up=None,
                 heartbeat=False, central_plan=None, hold_central_ms=None, utc_offset_ms=None,
                 cabinet=None, preempts=None, priority=None, advance_warning=None,
                 gate_down=None):
        self.detectors = detectors
        self.pulses = pulses
        self.peds = peds
        self.reports = reports
        self.wall_ms = wall_ms        # wall clock (unix ms, integer) or None
        self.utc_offset_ms = utc_offset_ms  # the site zone's UTC offset at wall_ms (driver-computed)
        self.link_up = link_up        # broker session connected (driver), or None: unchanged
        self.heartbeat = heartbeat    # a central heartbeat arrived since the last step
        self.central_plan = central_plan  # supervisor.CentralPlan that passed the envelope checks
        self.hold_central_ms = hold_central_ms  # keep the central plan through a loss until (mono ms)
        self.force_off = force_off
        self.hold = hold
        self.omit = omit
        self.flash_reset = flash_reset
        self.external_fault = external_fault
        self.local_until_ms = local_until_ms
        self.cabinet = cabinet        # fieldcheck.CabinetReport from the cabinet driver, or None
        self.preempts = preempts
        self.advance_warning = advance_warning
        self.gate_down = gate_down
        self.priority = priority


NO_INPUTS = Inputs()


class Outputs:
    """One step's outputs: indications by phase (index 0 unused), events, mode."""
    __slots__ = ("ms", "vehicle", "ped", "events", "mode", "plan_id", "fault",
                 "source", "link_up", "preempt")

    def __init__(self, ms, vehicle, ped, events, mode, plan_id, fault, source, link_up,
                 preempt=None):
        self.ms, self.vehicle, self.ped, self.events = ms, vehicle, ped, events
        self.mode, self.plan_id, self.fault = mode, plan_id, fault
        self.source, self.link_up = source, link_up   # plan source wanted; central link health
        self.preempt = preempt        # (preempt number, stage name) while preempting, else None


class Agent:
    """One intersection's controller, detectors and monitor, stepped in time.

    latched: a monitor Fault restored from the store at power-up; the unit
    then boots straight into flash with it.
    """

    def __init__(self, site, now=0, link_policy=None, latched=None):
        self.site = site
        self.plan = site.fallback_plan
        self.monitor = Monitor(site.monitor, now)
        self.supervisor = Supervisor(site, link_policy)
        self.last_ms = None
        self.last_inputs = None       # the last step's inputs (for next_ms)
        self.seen_green = self.seen_yellow = 0   # the phase masks the detectors last saw
        self.requests = Requests()
        self.flash_since = now
        # The first step's outputs carry the boot events: nothing is lost
        # between power-up and the first step.
        self._pending = [(now, ev.UNIT_BOOT, 2 if latched is not None else 1)]
        if latched is not None:
            self.monitor.restore(latched)
            self._parts()
            self.mode = MODE_FLASH
            self.mode_since = now
            self._pending.append((now, ev.MONITOR_FAULT, latched.code))
            self._pending.append((now, ev.UNIT_FLASH_STATUS, _flash_status(latched.code)))
        else:
            self._boot(now, self._pending)

    def _boot(self, now, log):
        site = self.site
        if self.supervisor.wanted is not None:
            self.plan = self.supervisor.wanted
        self._parts()
        self.mode_since = now
        if site.startup_flash > 0:
            self.mode = MODE_STARTUP_FLASH
            log.append((now, ev.UNIT_FLASH_STATUS, ev.FLASH_STARTUP))
        else:
            self.mode = MODE_STARTUP_ALL_RED
            log.append((now, ev.STARTUP_ALL_RED, 0))

    def _parts(self):
        """A fresh controller and its companions, as at power-up."""
        site = self.site
        self.controller = Controller(site, self.plan)
        self.detectors = Detectors(site)
        self.fieldcheck = FieldCheck(site)
        self.preemption = Preemption(site)
        self.coordinator = None       # the cycle timer of the running plan's pattern
        self.coord_plan = None        # the plan it belongs to

    @property
    def mode_name(self):
        return MODE_NAMES[self.mode]

    def step(self, now, inputs=None):
        """Advance the unit to `now` (integer ms, monotonic) and return its outputs."""
        if inputs is None:
            inputs = NO_INPUTS
        log = self._pending
        self._pending = []
        if self.last_ms is None:
            # Nothing is shown before the first step: the boot events are
            # stamped here, and the start-up flash and all-red (and a restored
            # flash's minimum) count from here.
            log = [(now, code, param) for _, code, param in log]
            self.mode_since = self.flash_since = now
        elif now < self.last_ms:
            self._fail(now, FAULT_CONTROLLER, "time went backwards: %d ms after %d ms"
                       % (now, self.last_ms), log)
        self.last_ms = now
        self.last_inputs = inputs
        self.supervisor.step(now, inputs, self.controller, log)
        self.plan = self.controller.plan
        if inputs.flash_reset:
            self._reset(now, inputs.flash_reset, log)
        mode = self.mode
        if mode == MODE_STARTUP_FLASH and now - self.mode_since >= self.site.startup_flash:
            mode = self.mode = MODE_STARTUP_ALL_RED
            self.mode_since = now
            log.append((now, ev.UNIT_FLASH_STATUS, ev.FLASH_OFF))
            log.append((now, ev.STARTUP_ALL_RED, 0))
        if mode == MODE_STARTUP_ALL_RED and now - self.mode_since >= self.site.startup_all_red:
            mode = self.mode = MODE_RUN
            self.mode_since = now
            self.controller.start(now, log, _local_ms(inputs))
            self._enter_coordination(now, _local_ms(inputs), False, log)
        if mode == MODE_RUN:
            vehicle, ped = self._run(now, inputs, log)
        else:
            # Detectors are watched from power-up: their watchdogs and reports
            # must not wait for the first green.
            self.detectors.update(now, inputs, 0, 0, log)
            if mode == MODE_STARTUP_ALL_RED:
                vehicle, ped = self._all_red()
            else:
                vehicle, ped = self._flash()
        if inputs.external_fault and self.mode != MODE_FLASH:
            self._fail(now, FAULT_EXTERNAL, inputs.external_fault, log)
            vehicle, ped = self._flash()
        if self.mode != MODE_FLASH:
            fault = self.monitor.check(now, vehicle, ped)
            if fault is not None:
                self._fail(now, fault.code, fault.detail, log)
                vehicle, ped = self._flash()
        if inputs.cabinet is not None and self.mode != MODE_FLASH:
            fault = self.fieldcheck.check(now, vehicle, ped, inputs.cabinet)
            if fault is not None:
                self._fail(now, fault[0], fault[1], log)
                vehicle, ped = self._flash()
        sup = self.supervisor
        mode = self.mode
        preempt = self.preemption.status() if mode == MODE_RUN and self.preemption.active else None
        if preempt is not None:
            mode = MODE_PREEMPT
        return Outputs(now, vehicle, ped, log, mode, self.controller.plan.id,
                       self.monitor.fault, sup.source, sup.link_up, preempt)

    def _reset(self, now, source, log):
        """A technician's reset: honoured only for a latched fault, after the minimum flash."""
        if self.mode != MODE_FLASH or self.monitor.fault is None:
            return
        if now - self.flash_since < self.site.monitor.min_flash:
            log.append((now, ev.FLASH_RESET_REFUSED, source))
            return
        log.append((now, ev.FLASH_RESET, source))
        if self.site.startup_flash == 0:
            log.append((now, ev.UNIT_FLASH_STATUS, ev.FLASH_OFF))   # fault flash ends here
        self.monitor.reset(now)
        self._boot(now, log)

    def next_ms(self, now):
        """The earliest ms at which a step with unchanged inputs could change the outputs
        or the log (edge_agent.nextstep): a rig may skip idle time until then."""
        return _next_ms(self, now, MODE_RUN, MODE_STARTUP_FLASH, MODE_STARTUP_ALL_RED)

    def flash_remaining(self, now):
        """ms of minimum flash still to run before a reset is honoured (0 when it may be)."""
        if self.mode != MODE_FLASH or self.monitor.fault is None:
            return 0
        return max(0, self.site.monitor.min_flash - (now - self.flash_since))

    def _run(self, now, inputs, log):
        c = self.controller
        try:
            self.seen_green, self.seen_yellow = c.green, c.yellow    # for next_ms
            self.detectors.update(now, inputs, c.green, c.yellow, log)
            local = _local_ms(inputs)
            pre = self.preemption
            k = self.coordinator
            req = NO_REQUESTS
            if inputs.force_off or inputs.hold or inputs.omit or pre.table or k is not None:
                req = self.requests
                req.clear(inputs.force_off, inputs.hold, inputs.omit)
            if pre.table:
                if inputs.priority:
                    pre.take(now, inputs.priority, log)
                if inputs.advance_warning or inputs.gate_down:
                    pre.signals(now, inputs.advance_warning, inputs.gate_down, log)
                pre.request(now, inputs.preempts, c.green, req, log)
            if k is not None:
                req.free_max = req.preempting or not k.entered
            if k is not None and k.entered:
                if req.preempting:
                    # Suspended: at the first barrier crossing after the
                    # preempt the timer starts again and corrects to its offset.
                    k.entered = False
                else:
                    f, o, req.no_walk = k.step(now, local, c.green, c.since,
                                               c.ped_call | self.detectors.ped_calls, log)
                    req.force_off |= f
                    req.window_omit = o
            c.step(now, self.detectors, req, log, local)
            if pre.table:
                pre.observe(now, c.green, log)
            if k is not None or c.plan is not self.coord_plan:
                self._enter_coordination(now, local, req.preempting, log)
            return c.vehicle_indications(), c.ped_indications()
        except Exception as e:      # rule 7: what the core cannot reason about ends in flash
            self._fail(now, FAULT_CONTROLLER, "controller error: %r" % (e,), log)
            return self._flash()

    def _enter_coordination(self, now, wall_ms, preempting, log):
        """A plan with a pattern gets its cycle timer; the timer starts at the
        barrier crossing where the controller entered a group."""
        c = self.controller
        if c.plan is not self.coord_plan:
            self.coord_plan = c.plan
            k = c.plan.coord
            self.coordinator = Coordinator(self.site, k) if k is not None else None
        k = self.coordinator
        if k is not None and not k.entered and not preempting and c.group_entered == now:
            k.enter(now, wall_ms, c.seq.group, log)

    def _fail(self, now, code, detail, log):
        if self.mode == MODE_FLASH:
            return
        self.monitor.latch(now, code, detail)
        self.mode = MODE_FLASH
        self.mode_since = now
        self.flash_since = now
        log.append((now, ev.MONITOR_FAULT, code))
        log.append((now, ev.UNIT_FLASH_STATUS, _flash_status(code)))

    def _all_red(self):
        vehicle = [RED] * (MAX_PHASES + 1)
        ped = [PED_DARK] * (MAX_PHASES + 1)
        for p in self.site.phases:
            if self.site.has_ped[p]:
                ped[p] = DONT_WALK
        vehicle[0] = 0
        return vehicle, ped

    def _flash(self):
        vehicle = [FLASH_RED] * (MAX_PHASES + 1)
        flash_yellow = self.site.monitor.flash_yellow
        for p in self.site.phases:
            if flash_yellow & (1 << p):
                vehicle[p] = FLASH_YELLOW
        vehicle[0] = 0
        return vehicle, [PED_DARK] * (MAX_PHASES + 1)

    def status(self, now):
        """The one door out: a snapshot for the runtime, telemetry, panel and rig.

        Plain, JSON-ready values only, so no reader depends on the shape of
        the controller, detectors, supervisor or monitor inside.
        """
        c, sup, fault = self.controller, self.supervisor, self.monitor.fault
        if self.mode == MODE_RUN:
            veh, ped = c.vehicle_indications(), c.ped_indications()
        elif self.mode == MODE_STARTUP_ALL_RED:
            veh, ped = self._all_red()
        else:
            veh, ped = self._flash()
        plan = c.plan
        phases = {}
        for p in self.site.phases:
            b = 1 << p
            e = {"vehicle": VEHICLE_LETTERS[veh[p]], "call": bool(c.calls & b)}
            if self.site.has_ped[p]:
                e["ped"] = PED_LETTERS[ped[p]]
                e["ped_call"] = bool(c.ped_call & b)
            if self.mode == MODE_RUN:
                e.update(c.timers(p, now))
            phases[p] = e
        coord = None
        k = self.coordinator
        if k is not None and self.mode == MODE_RUN and k.entered:
            coord = {"cycle_s": plan.coord.cycle / 1000, "offset_s": plan.coord.offset / 1000,
                     "cycle_timer_s": (now - k.cycle_start) / 1000,
                     "cycle_length_s": k.length / 1000, "correction_s": k.adjust / 1000}
        return {
            "ms": now, "mode": MODE_NAMES[self.mode], "mode_since_ms": self.mode_since,
            "plan": {"id": plan.id, "version": sup.version_of(plan),
                     "source": "central" if sup.version_of(plan) is not None else "local",
                     "wanted": sup.source,
                     "pending": c.pending.id if c.pending is not None else None,
                     "pending_version": (sup.version_of(c.pending)
                                         if c.pending is not None else None)},
            "link": {"healthy": sup.link_up, "connected": sup.connected,
                     "heartbeat_age_ms": (now - sup.last_heartbeat
                                          if sup.last_heartbeat is not None else None)},
            "fault": fault.to_dict() if fault is not None else None,
            "flash_remaining_ms": self.flash_remaining(now),
            "rings": [list(r) for r in self.site.rings],
            "barriers": [list(g) for g in self.site.groups],
            "barrier_group": c.seq.group + 1,
            "preempt": (self.preemption.status() if self.mode == MODE_RUN
                        and self.preemption.active else None),
            "phases": phases,
            "coordination": coord,
            "detectors": self.detectors.status(now),
        }

def _flash_status(code):
    """Event 173's parameter for a latched fault: the controller's own fault monitor for
    an error inside the core, the MMU for a monitor rule or an external (cabinet) fault."""
    return ev.FLASH_FAULT_MONITOR if code == FAULT_CONTROLLER else ev.FLASH_FAULT


def _local_ms(inputs):
    """Local wall time (ms) for coordination, which counts from local midnight."""
    if inputs.wall_ms is None:
        return None
    return inputs.wall_ms + (inputs.utc_offset_ms or 0)
