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
hold-over, plan expiry and local-control end; a running cycle timer's
cycle end, yield points and force-offs. Where a part's timing is not
modelled here the answer is `now + 1` (step every tick): while a carry-over
(detector extend) runs, while a green's extension could end at a detector
fault or restore (a fail-max recall; presence on a detector with
diagnostics), while a preempt is called, pending or running (or a priority
request is held), and the step after it placed a hold, while a cabinet
reading is fed, while the wall clock moves against the monotonic one under a
cycle timer; and for the step after one whose inputs
held pulses, reports or requests (they last one step), whose greens or
yellows changed (the detectors see them a step later), or where a plan just
took effect, a walk recycle waits or a held push button waits to register.

One contract holds for the rig: while a detector holds a green's extension,
the controller notes the last step that saw it (the gap counts from there).
A rig that skipped steps and sees an input change at T while a detector was
occupied first steps at its last tick before T with the old inputs, as a
tick-by-tick rig would have; that step changes nothing else (next_ms said so).
"""

from edge_agent.intervals import RED_REST, YELLOW_CHANGE, RED_CLEAR, RED_REVERT
from edge_agent.indications import WALK, PED_CLEAR
from edge_agent.diagnostics import MINUTE_MS

HORIZON_MS = 60000      # with nothing scheduled, look again after a minute


def next_ms(agent, now, mode_run, mode_startup_flash, mode_startup_all_red):
    """See the module docstring; `agent` is an edge_agent.agent.Agent."""
    if agent.last_ms is None:
        return now
    site = agent.site
    inputs = agent.last_inputs
    if inputs is not None and (inputs.cabinet is not None or inputs.pulses or inputs.reports
                               or inputs.priority or inputs.flash_reset):
        # A pulse or a report lasts one step: the next step sees it gone.
        return now + 1
    best = now + HORIZON_MS
    mode = agent.mode
    if mode == mode_startup_flash:
        best = _at(best, now, agent.mode_since + site.startup_flash)
    elif mode == mode_startup_all_red:
        best = _at(best, now, agent.mode_since + site.startup_all_red)
    best = _supervisor(agent.supervisor, inputs, now, best)
    c = agent.controller
    green = c.green if mode == mode_run else 0
    best = _detectors(agent.detectors, green, now, best)
    if mode != mode_run or best == now + 1:
        return best
    if _preempt_busy(agent.preemption):
        return now + 1
    k = agent.coordinator
    if k is not None and k.entered:
        if inputs is not None and inputs.wall_ms is not None and k.wall_base is not None \
                and inputs.wall_ms + (inputs.utc_offset_ms or 0) - now != k.wall_base:
            return now + 1      # the wall clock moved against the monotonic one
        best = k.next_ms(now, c.green, c.since, best)
    # A hold a request placed (preemption's dwell) is logged off at the next step.
    if c.hold != (inputs.hold if inputs is not None else 0):
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
    return _controller(c, agent.detectors.extend, now, best)


def _at(best, now, t):
    """The earlier of best and t, when t is still to come."""
    return t if now < t < best else best


def _supervisor(sup, inputs, now, best):
    pol = sup.policy
    if sup.connected and sup.last_heartbeat is not None:
        best = _at(best, now, sup.last_heartbeat + pol.loss_ms)
    if sup.healthy_since is not None and not sup.link_up:
        best = _at(best, now, sup.healthy_since + pol.stable_ms)
    if sup.lost_at is not None:
        best = _at(best, now, sup.lost_at + pol.holdover_ms)
    if inputs is None:
        return best
    if inputs.hold_central_ms is not None:
        best = _at(best, now, inputs.hold_central_ms)
    if inputs.local_until_ms is not None:
        best = _at(best, now, inputs.local_until_ms)
    c = sup.central
    if c is not None and c.expires_ms is not None and inputs.wall_ms is not None:
        # The rig's wall clock advances with the monotonic one.
        best = _at(best, now, now + c.expires_ms - inputs.wall_ms)
    return best


def _detectors(dets, green, now, best):
    """Detector deadlines; now + 1 while a carry-over runs (it must be stepped every tick)."""
    for s in dets.states:
        d = s.diag
        best = _diagnosis(d, s, now, best)
        if d.latched:
            continue
        if green & s.bit:
            if not s.raw and s.hold_until > now:
                return now + 1
            if s.raw and s.det.extends_green and (d.max_presence or d.no_activity or d.fed):
                # The gap counts from the last step the extension was seen; a
                # diagnostic fault ends it at a tick next_ms cannot name.
                return now + 1
        elif s.raw and s.det.delay:
            best = _at(best, now, s.on_since + s.det.delay)
    for s in dets.peds:
        best = _diagnosis(s.diag, s, now, best)
    return best


def _diagnosis(d, s, now, best):
    if d.fed and d.watchdog:
        best = _at(best, now, d.last_report() + d.watchdog)
    if d.no_activity:
        best = _at(best, now, d.last_activity + d.no_activity)
    if d.max_presence and s.raw:
        best = _at(best, now, s.on_since + d.max_presence)
    ring = d.ring
    if ring is not None:
        oldest = ring[d.ring_i]
        if oldest is not None:
            best = _at(best, now, oldest + MINUTE_MS)
    if d.latched and d.clear_since >= 0:
        best = _at(best, now, d.clear_since + d.restore)
    return best


def _controller(c, extend, now, best):
    plan = c.plan
    if c.det is not None:
        if c.det.fail_max & c.green & ~c.recall_max:
            return now + 1      # a restore ends this extension: the same as a max presence
        extend |= (c.recall_max | c.det.fail_max) & c.green
    interval, since = c.interval, c.since
    for p in c.site.phases:
        i = interval[p]
        if i == RED_REST:
            continue
        if i == YELLOW_CHANGE:
            best = _at(best, now, since[p] + c.yellow_ms[p])
        elif i == RED_CLEAR:
            best = _at(best, now, since[p] + c.red_ms[p])
        elif i == RED_REVERT:
            best = _at(best, now, c.revert_end[p])
        else:
            b = 1 << p
            if not c.min_done & b:
                best = _at(best, now, c.min_end[p])
            if not extend & b:
                if plan.density & b and c.checked & b:
                    best = _at(best, now, _gap_out(c, p, now))
                else:
                    best = _at(best, now, c.last_act[p] + plan.passage[p])
            if c.max_end[p] >= 0:
                best = _at(best, now, c.max_end[p])
            if c.ped[p] == WALK or c.ped[p] == PED_CLEAR:
                best = _at(best, now, c.ped_end[p])
            elif c.ped_call & b and c.ped_mask & b:
                return now + 1      # a walk recycle waits for its next step
    return best


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


def _preempt_busy(pre):
    """True while preemption has anything of its own to time: a sequence, a call
    (delay, max presence), or a priority request (its start and expiry). An idle
    table waits for an input, and an input change wakes the rig anyway."""
    if not pre.table:
        return False
    if pre.active or pre.requests or pre.link_from:
        return True
    for n in pre.table:
        if pre.level[n] or pre.pending[n] or pre.wired[n]:
            return True
    return False
