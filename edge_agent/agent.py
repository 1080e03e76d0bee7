"""The agent facade: `Agent(site, plan).step(now_ms, inputs) -> Outputs`.

The only door into the core. A step conditions the detectors, advances the
controller, and passes the indications through the independent conflict
monitor before they leave: a violation replaces them with flash in the same
step and latches until a technician reset. Start-up runs the site's start-up
flash, then all-red, before the first green.
"""

from edge_agent import events as ev
from edge_agent.controller import Controller
from edge_agent.coordination import Coordinator
from edge_agent.detectors import Detectors
from edge_agent.indications import (MAX_PHASES, FLASH_RED, FLASH_YELLOW, RED,
                                    PED_DARK, DONT_WALK)
from edge_agent.monitor import Monitor, FAULT_CONTROLLER
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


class Inputs:
    """One step's inputs: detector levels and pulses by channel, ped buttons, requests.

    detectors: {channel: bool} presence now (a channel left out keeps its last value)
    pulses: {channel: int} on-edges since the last step (vehicles shorter than a step)
    peds: {channel: bool} pedestrian push buttons
    force_off, hold, omit: phase bitmasks requested by coordination or preemption
    reports: detector reports from drivers (see edge_agent.detectors), each
        stamped on arrival; they carry source timestamps, counts and faults
    preempts: {preempt number: bool} preempt inputs (a number left out keeps its last value)
    priority: [PriorityRequest] signed priority requests that passed their checks
    plan: a validated Plan to take effect at the next safe point
    technician_reset: clear a latched flash (a local action only)
    """
    __slots__ = ("detectors", "pulses", "peds", "reports", "force_off", "hold",
                 "omit", "plan", "technician_reset", "wall_ms", "link_up",
                 "heartbeat", "central_plan", "hold_central_ms", "preempts", "priority")

    def __init__(self, detectors=None, pulses=None, peds=None, reports=None,
                 force_off=0, hold=0, omit=0, plan=None, technician_reset=False,
                 wall_ms=None, link_up=None, heartbeat=False, central_plan=None,
                 hold_central_ms=None, preempts=None, priority=None):
        self.detectors = detectors
        self.pulses = pulses
        self.peds = peds
        self.reports = reports
        self.wall_ms = wall_ms        # wall clock (unix ms, integer) or None
        self.link_up = link_up        # broker session connected (driver), or None: unchanged
        self.heartbeat = heartbeat    # a central heartbeat arrived since the last step
        self.central_plan = central_plan  # supervisor.CentralPlan that passed the envelope checks
        self.hold_central_ms = hold_central_ms  # keep the central plan through a loss until (mono ms)
        self.force_off = force_off
        self.hold = hold
        self.omit = omit
        self.plan = plan
        self.technician_reset = technician_reset
        self.preempts = preempts
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
    """One intersection's controller, detectors and monitor, stepped in time."""

    def __init__(self, site, plan=None, now=0, link_policy=None):
        self.site = site
        self.plan = plan or site.fallback_plan
        self.monitor = Monitor(site)
        self.supervisor = Supervisor(site, link_policy)
        self.last_ms = None
        self.requests = Requests()
        self._boot(now, [])

    def _boot(self, now, log):
        site = self.site
        if self.supervisor.wanted is not None:
            self.plan = self.supervisor.wanted
        self.controller = Controller(site, self.plan)
        self.detectors = Detectors(site)
        self.preemption = Preemption(site)
        self.coordinator = None       # the cycle timer of the running plan's pattern
        self.coord_plan = None        # the plan it belongs to
        self.mode_since = now
        if site.startup_flash > 0:
            self.mode = MODE_STARTUP_FLASH
            log.append((now, ev.UNIT_FLASH_STATUS, ev.FLASH_STARTUP))
        else:
            self.mode = MODE_STARTUP_ALL_RED
            log.append((now, ev.STARTUP_ALL_RED, 0))

    @property
    def mode_name(self):
        return MODE_NAMES[self.mode]

    def step(self, now, inputs=None):
        """Advance the unit to `now` (integer ms, monotonic) and return its outputs."""
        if inputs is None:
            inputs = NO_INPUTS
        log = []
        if self.last_ms is not None and now < self.last_ms:
            self._fail(now, FAULT_CONTROLLER, "time went backwards: %d ms after %d ms"
                       % (now, self.last_ms), log)
        self.last_ms = now
        if inputs.plan is not None:
            self.plan = inputs.plan
            self.controller.set_plan(inputs.plan, now, log)
        self.supervisor.step(now, inputs, self.controller, log)
        mode = self.mode
        if mode == MODE_FLASH:
            if inputs.technician_reset:
                log.append((now, ev.FLASH_RESET, 0))
                self.monitor.reset(now)
                self._boot(now, log)
                mode = self.mode
        if mode == MODE_STARTUP_FLASH and now - self.mode_since >= self.site.startup_flash:
            mode = self.mode = MODE_STARTUP_ALL_RED
            self.mode_since = now
            log.append((now, ev.UNIT_FLASH_STATUS, ev.FLASH_OFF))
            log.append((now, ev.STARTUP_ALL_RED, 0))
        if mode == MODE_STARTUP_ALL_RED and now - self.mode_since >= self.site.startup_all_red:
            mode = self.mode = MODE_RUN
            self.mode_since = now
            self.controller.start(now, log, inputs.wall_ms)
            self._enter_coordination(now, inputs.wall_ms, False, log)
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
        if self.mode != MODE_FLASH:
            fault = self.monitor.check(now, vehicle, ped)
            if fault is not None:
                self._fail(now, fault.code, fault.detail, log)
                vehicle, ped = self._flash()
        sup = self.supervisor
        mode = self.mode
        preempt = self.preemption.status() if mode == MODE_RUN and self.preemption.active else None
        if preempt is not None:
            mode = MODE_PREEMPT
        return Outputs(now, vehicle, ped, log, mode, self.controller.plan.id,
                       self.monitor.fault, sup.source, sup.link_up, preempt)

    def _run(self, now, inputs, log):
        c = self.controller
        try:
            self.detectors.update(now, inputs, c.green, c.yellow, log)
            pre = self.preemption
            k = self.coordinator
            req = NO_REQUESTS
            if inputs.force_off or inputs.hold or inputs.omit or pre.table or k is not None:
                req = self.requests
                req.clear(inputs.force_off, inputs.hold, inputs.omit)
            if pre.table:
                if inputs.priority:
                    pre.take(now, inputs.priority, log)
                pre.request(now, inputs.preempts, c.green, req, log)
            if k is not None:
                req.free_max = req.preempting or not k.entered
            if k is not None and k.entered:
                if req.preempting:
                    # Suspended: at the first barrier crossing after the
                    # preempt the timer starts again and corrects to its offset.
                    k.entered = False
                else:
                    f, o, req.no_walk = k.step(now, inputs.wall_ms, c.green, c.since,
                                               c.ped_call | self.detectors.ped_calls, log)
                    req.force_off |= f
                    req.window_omit = o
            c.step(now, self.detectors, req, log, inputs.wall_ms)
            if pre.table:
                pre.observe(now, c.green, log)
            if k is not None or c.plan is not self.coord_plan:
                self._enter_coordination(now, inputs.wall_ms, req.preempting, log)
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
        log.append((now, ev.MONITOR_FAULT, code))
        log.append((now, ev.UNIT_FLASH_STATUS, ev.FLASH_FAULT))

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
        for p in self.site.phases:
            if self.site.flash_yellow & (1 << p):
                vehicle[p] = FLASH_YELLOW
        vehicle[0] = 0
        return vehicle, [PED_DARK] * (MAX_PHASES + 1)
