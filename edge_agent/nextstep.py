"""Event-driven stepping: when does an agent next need a step if no input changes?

`Agent.next_ms(now)`, called right after `Agent.step(now, inputs)`, returns
the earliest ms at which a step with the same inputs could change the
outputs, the event log, or state a later step reads. A rig may skip every
step before it and step then (or earlier: an early answer only costs a
step) - or as soon as an input changes.

The answer is the earliest of the deadlines the core keeps: start-up flash
and all-red; each phase's min green, gap (passage or reduced gap), max,
yellow, red clearance, red revert, walk and pedestrian clearance; detector
delay, carry-over and diagnostics (watchdog, no activity, max presence,
erratic window, restoration); the supervisor's heartbeat loss, stable time,
hold-over, plan expiry and local-control end. Where a part's timing is not
modelled here the answer is `now + 1` (step every tick): while a carry-over
(detector extend) runs, while preemption is configured, while a cycle timer
runs, while a cabinet reading is fed, and for the step after one whose
inputs held pulses, reports or requests (they last one step), whose greens
or yellows changed (the detectors see them a step later), or with a walk
recycle a held push button waiting, or a plan just taken effect.

One contract holds for the rig: while a detector holds a green's extension,
the controller notes the last step that saw it (the gap counts from there).
A rig that skipped steps and sees an input change at T while a detector was
occupied first steps at its last tick before T with the old inputs, as a
tick-by-tick rig would have; that step changes nothing else (next_ms said so).
"""

from edge_agent.intervals import YELLOW_CHANGE, RED_CLEAR, RED_REVERT, GREENS
from edge_agent.indications import WALK, PED_CLEAR
from edge_agent.diagnostics import MINUTE_MS

HORIZON_MS = 60000      # with nothing scheduled, look again after a minute


def next_ms(agent, now, mode_run, mode_startup_flash, mode_startup_all_red):
    """See the module docstring; `agent` is an edge_agent.agent.Agent."""
    if agent.last_ms is None:
        return now
    best = [now + HORIZON_MS]

    def at(t):
        if now < t < best[0]:
            best[0] = t

    site = agent.site
    inputs = agent.last_inputs
    if inputs is not None and (inputs.cabinet is not None or inputs.pulses or inputs.reports
                               or inputs.priority or inputs.flash_reset):
        # A pulse or a report lasts one step: the next step sees it gone.
        return now + 1
    mode = agent.mode
    if mode == mode_startup_flash:
        at(agent.mode_since + site.startup_flash)
    elif mode == mode_startup_all_red:
        at(agent.mode_since + site.startup_all_red)
    _supervisor(agent.supervisor, inputs, now, at)
    c = agent.controller
    green = c.green if mode == mode_run else 0
    if _detectors(agent.detectors, green, now, at):
        return now + 1
    if mode == mode_run:
        if agent.preemption.table or agent.coordinator is not None:
            return now + 1
        # A plan that took effect in this step: its recalls place calls at the next.
        if c.plan is not agent.plan:
            return now + 1
        # The detectors condition against the greens and yellows of the step
        # before: a change shows in their calls one step later.
        if c.green != agent.seen_green or c.yellow != agent.seen_yellow:
            return now + 1
        # A held push button registers its call once the walk is over.
        if agent.detectors.ped_calls & ~c.ped_call & ~_walking(c):
            return now + 1
        # A plan that took effect logs its omits at the next step.
        if (c.plan.omit | (inputs.omit if inputs is not None else 0)) != c.omit_shown \
                or c.ped_omit_shown:
            return now + 1
        _controller(c, agent.detectors.extend, now, at)
    return best[0]


def _supervisor(sup, inputs, now, at):
    pol = sup.policy
    if sup.connected and sup.last_heartbeat is not None:
        at(sup.last_heartbeat + pol.loss_ms)
    if sup.healthy_since is not None and not sup.link_up:
        at(sup.healthy_since + pol.stable_ms)
    if sup.lost_at is not None:
        at(sup.lost_at + pol.holdover_ms)
    if inputs is None:
        return
    if inputs.hold_central_ms is not None:
        at(inputs.hold_central_ms)
    if inputs.local_until_ms is not None:
        at(inputs.local_until_ms)
    c = sup.central
    if c is not None and c.expires_ms is not None and inputs.wall_ms is not None:
        # The rig's wall clock advances with the monotonic one.
        at(now + c.expires_ms - inputs.wall_ms)


def _detectors(dets, green, now, at):
    """Detector deadlines; True when a carry-over runs (it must be stepped every tick)."""
    for s in dets.states:
        d = s.diag
        _diagnosis(d, s, now, at)
        if d.latched:
            continue
        if green & s.bit:
            if not s.raw and s.hold_until > now:
                return True
        elif s.raw and s.det.delay:
            at(s.on_since + s.det.delay)
    for s in dets.peds:
        _diagnosis(s.diag, s, now, at)
    return False


def _diagnosis(d, s, now, at):
    if d.fed and d.watchdog:
        at(d.last_report() + d.watchdog)
    if d.no_activity:
        at(d.last_activity + d.no_activity)
    if d.max_presence and s.raw:
        at(s.on_since + d.max_presence)
    ring = d.ring
    if ring is not None:
        oldest = ring[d.ring_i]
        if oldest is not None:
            at(oldest + MINUTE_MS)
    if d.latched and d.clear_since >= 0:
        at(d.clear_since + d.restore)


def _controller(c, extend, now, at):
    plan = c.plan
    extend |= (c.recall_max | c.det.fail_max) & c.green if c.det is not None else 0
    for p in c.site.phases:
        i = c.interval[p]
        if i == YELLOW_CHANGE:
            at(c.since[p] + c.yellow_ms[p])
        elif i == RED_CLEAR:
            at(c.since[p] + c.red_ms[p])
        elif i == RED_REVERT:
            at(c.revert_end[p])
        elif i in GREENS:
            b = 1 << p
            if not c.min_done & b:
                at(c.min_end[p])
            if not extend & b:
                if plan.density & b and c.checked & b:
                    at(_gap_out(c, p, now))
                else:
                    at(c.last_act[p] + plan.passage[p])
            if c.max_end[p] >= 0:
                at(c.max_end[p])
            if c.ped[p] == WALK or c.ped[p] == PED_CLEAR:
                at(c.ped_end[p])
            elif c.ped_call & b and c.ped_mask & b:
                at(now + 1)         # a walk recycle waits for its next step


def _walking(c):
    m = 0
    for p in c.site.phases:
        if c.ped[p] == WALK:
            m |= 1 << p
    return m


def _gap_out(c, p, now):
    """The first ms the reduced gap runs out: t >= last_act + gap(t); gap(t) only falls."""
    last = c.last_act[p]
    lo, hi = now + 1, last + c.plan.passage[p]
    if hi < lo:
        return lo
    while lo < hi:
        mid = (lo + hi) // 2
        if mid >= last + c._reduced_gap(p, mid):
            hi = mid
        else:
            lo = mid + 1
    return lo
