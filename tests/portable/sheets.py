"""Timing-sheet helpers for the portable tests (CPython and MicroPython).

Build small sites as plain dicts, drive an Agent through scripted detector
actuations in virtual time, and read back when things happened.
"""

from edge_agent.agent import Agent, Inputs
from edge_agent.intersection import parse_site
from edge_agent.supervisor import LinkPolicy, CentralPlan
from edge_agent import events as ev
try:
    from tests.portable.cards import card
except ImportError:         # MicroPython runs the portable files from their own folder
    from cards import card


def phase_timing(p, min_green=10.0, passage=3.0, max_green=40.0, yellow=4.0,
                 red_clear=1.5, walk=0.0, ped_clear=0.0, recall="none"):
    return {"phase": p, "min_green": min_green, "passage": passage,
            "max_green": max_green, "yellow": yellow, "red_clear": red_clear,
            "walk": walk, "ped_clear": ped_clear, "recall": recall, "omit": False}


def two_phase_site(t2=None, t4=None, ped2=False, startup=(2,), all_red=2.0):
    """One ring, phases 2 and 4 (conflicting); detector channel = phase number."""
    t2 = t2 or phase_timing(2)
    t4 = t4 or phase_timing(4)
    site = {
        "intersection": "sheet-0001",
        "rings": [[2, 4]], "barriers": [[2], [4]],
        "phases": [{"phase": 2, "ped": ped2}, {"phase": 4, "ped": False}],
        "detectors": [{"channel": 2, "phase": 2, "locking": True},
                      {"channel": 4, "phase": 4, "locking": True}],
        "ped_detectors": [{"channel": 1, "phase": 2}] if ped2 else [],
        "floors": {"min_yellow": 3.0, "min_red_clear": 1.0, "min_green": 4.0,
                   "min_walk": 4.0, "min_ped_clear": 7.0, "max_cycle": 240.0},
        "startup": {"flash": 0.0, "all_red": all_red, "phases": list(startup)},
        "fallback_plan": {"id": "sheet", "sequence": [[2, 4]], "phases": [t2, t4]},
    }
    site["monitor"] = card(site)
    return site


# A central link that is up from the first step and never judged lost: plans
# offered as `Inputs.central_plan` take the real path, through the supervisor.
ALWAYS_UP = LinkPolicy(loss_ms=10 ** 9, holdover_ms=0, stable_ms=0)


def central_agent(site):
    """An Agent whose central link is up from the start (see ALWAYS_UP)."""
    return Agent(site, link_policy=ALWAYS_UP)


def offer(plan, version):
    """Inputs fields that offer `plan` from central (already past its envelope checks)."""
    return {"link_up": True, "heartbeat": True,
            "central_plan": CentralPlan(plan, version) if plan is not None else None}


def run(site_dict, until_ms, pulses=None, presence=None, peds=None, step_ms=100,
        agent=None):
    """Step an agent to `until_ms`; returns (agent, events, outputs by step).

    pulses: {channel: [ms, ...]} momentary actuations
    presence: {channel: [(on_ms, off_ms), ...]} occupancy intervals
    peds: {ped channel: [ms, ...]} button presses
    """
    if agent is None:
        agent = Agent(parse_site(site_dict))
    log = []
    frames = []
    pulses = pulses or {}
    presence = presence or {}
    peds = peds or {}
    t = 0
    while t <= until_ms:
        lv, pl, pd = scripted(t, step_ms, presence, pulses, peds)
        out = agent.step(t, Inputs(detectors=lv, pulses=pl, peds=pd))
        log.extend(out.events)
        frames.append(out)
        t += step_ms
    return agent, log, frames


def scripted(t, step_ms, presence, pulses, peds):
    """The direct inputs of the step at t: (levels, pulses, ped buttons) dicts.

    presence: {channel: [(on_ms, off_ms)]}; pulses and peds: {channel: [ms]},
    each counted in the step that ends at or after it.
    """
    lv = {}
    for ch in presence:
        on = False
        for a, b in presence[ch]:
            if a <= t < b:
                on = True
        lv[ch] = on
    pl = {}
    for ch in pulses:
        n = 0
        for x in pulses[ch]:
            if t - step_ms < x <= t:
                n += 1
        if n:
            pl[ch] = n
    pd = {}
    for ch in peds:
        for x in peds[ch]:
            if t - step_ms < x <= t:
                pd[ch] = True
    return lv, pl, pd


def times(log, code, param):
    """Every ms at which event `code` with `param` was logged."""
    return [e[0] for e in log if e[1] == code and e[2] == param]


def first(log, code, param):
    ts = times(log, code, param)
    return ts[0] if ts else None


def green_intervals(log, phase):
    """[(begin green ms, begin yellow ms)] for one phase."""
    starts = times(log, ev.PHASE_BEGIN_GREEN, phase)
    ends = times(log, ev.PHASE_BEGIN_YELLOW, phase)
    return list(zip(starts, ends))
