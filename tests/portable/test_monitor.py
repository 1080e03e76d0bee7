"""The conflict monitor: each rule trips on a crafted output, with the exact step and figures.

The monitor reads only its own program (the standard site's card) and the
indications. These tests feed it indication sequences directly; the agent
tests check it is wired so a broken controller output goes to flash in the
very step it appears. The findings of issue 9 are reproduced first.
"""

from edge_agent.intersection import parse_site
from edge_agent.standard import standard_site, standard_plan
from edge_agent.monitor import (Monitor, Fault, FAULT_CONFLICT, FAULT_SHORT_YELLOW,
                                FAULT_SHORT_RED_CLEAR, FAULT_SHORT_GREEN,
                                FAULT_BAD_SEQUENCE, FAULT_WALK_WITHOUT_GREEN,
                                FAULT_SHORT_PED_CLEAR, FAULT_RED_FAIL, FAULT_RED_REVERT,
                                FAULT_FLASH_MIXED, FAULT_BAD_INDICATION)
from edge_agent.agent import (Agent, Inputs, MODE_FLASH, MODE_RUN, MODE_STARTUP_ALL_RED,
                              RESET_LOCAL_COMMAND, RESET_HARDWIRED)
from edge_agent.indications import (DARK, RED, YELLOW, GREEN, FLASH_RED, FLASH_YELLOW,
                                    DONT_WALK, WALK, PED_CLEAR, PED_DARK)
from edge_agent import events as ev
try:
    from tests.portable.sheets import green_intervals
except ImportError:         # MicroPython runs the portable files from their own folder
    from sheets import green_intervals

SITE = parse_site(standard_site())
CARD = SITE.monitor


def frame(greens=(), yellows=(), walks=(), clears=(), dark=(), flash=False):
    veh = [0] + [FLASH_RED if flash else RED] * 16
    ped = [PED_DARK] + [PED_DARK if flash else DONT_WALK] * 16
    for p in greens:
        veh[p] = GREEN
    for p in yellows:
        veh[p] = YELLOW
    for p in dark:
        veh[p] = DARK
    for p in walks:
        ped[p] = WALK
    for p in clears:
        ped[p] = PED_CLEAR
    return veh, ped


def feed(seq, card=CARD):
    """seq: [(ms, frame)]; returns the first fault or None (the monitor starts in flash at 0)."""
    m = Monitor(card, 0)
    for ms, (veh, ped) in seq:
        f = m.check(ms, veh, ped)
        if f is not None:
            return f
    return None


def start(t=0):
    """Power-up flash, then all-red at t (the monitor's red clearances start there)."""
    return [(t, frame())]


# -- issue 9, finding 1: the bypass through dark --------------------------------------

def test_finding1_green_to_dark_is_a_fault_in_that_step():
    seq = start(-5_000) + [(0, frame(greens=(2,))), (1_000, frame(dark=(2,))),
                           (1_100, frame()), (1_300, frame(greens=(4,)))]
    f = feed(seq)
    assert (f.ms, f.code, f.channel) == (1_000, FAULT_RED_FAIL, 2)


def test_finding1_green_to_flash_is_a_sequence_fault_not_an_exit():
    seq = start(-5_000) + [(0, frame(greens=(2, 6))), (10_000, frame(flash=True))]
    f = feed(seq)
    assert (f.ms, f.code) == (10_000, FAULT_BAD_SEQUENCE)
    assert f.detail == "channel 2 went green to flash-red"


def test_red_fail_on_a_red_channel():
    f = feed(start() + [(5_000, frame(dark=(7,)))])
    assert (f.ms, f.code, f.channel) == (5_000, FAULT_RED_FAIL, 7)


# -- the rules, each with its figures --------------------------------------------------

def test_clean_cycle_passes():
    seq = start() + [(1_000, frame(greens=(2, 6))), (11_000, frame(yellows=(2, 6))),
                     (15_000, frame()), (16_000, frame(greens=(4, 8)))]
    assert feed(seq) is None


def test_conflicting_greens_trip():
    f = feed(start() + [(1_000, frame(greens=(2, 4)))])
    assert (f.code, f.channel, f.other, f.ms) == (FAULT_CONFLICT, 2, 4, 1_000)


def test_green_and_conflicting_yellow_trip():
    f = feed(start() + [(1_100, frame(greens=(2,))), (10_100, frame(yellows=(2,), greens=(3,)))])
    assert (f.code, f.channel, f.other) == (FAULT_CONFLICT, 2, 3)


def test_conflicting_flashing_yellows_trip():
    veh, ped = frame(flash=True)
    veh[2] = veh[4] = FLASH_YELLOW
    f = feed([(0, (veh, ped))])
    assert (f.code, f.channel, f.other) == (FAULT_CONFLICT, 2, 4)


def test_flash_beside_a_green_trips():
    veh, ped = frame(greens=(2,))
    veh[4] = FLASH_RED
    f = feed(start() + [(2_000, (veh, ped))])
    assert (f.code, f.channel, f.other) == (FAULT_FLASH_MIXED, 4, 2)


def test_short_yellow_trips_with_figures():
    seq = start() + [(1_000, frame(greens=(2,))), (11_000, frame(yellows=(2,))),
                     (13_900, frame())]
    f = feed(seq)
    assert (f.code, f.channel, f.measured, f.limit) == (FAULT_SHORT_YELLOW, 2, 2_900, 3_000)
    assert f.detail == "channel 2 yellow 2900 ms, minimum 3000 ms"


def test_short_red_clearance_trips():
    seq = start() + [(1_000, frame(greens=(2,))), (11_000, frame(yellows=(2,))),
                     (15_000, frame()), (15_900, frame(greens=(4,)))]
    f = feed(seq)
    assert (f.code, f.channel, f.other, f.measured, f.limit) == \
        (FAULT_SHORT_RED_CLEAR, 4, 2, 900, 1_000)


def test_green_after_flash_needs_the_red_clearance_of_every_conflicting_channel():
    seq = [(0, frame(flash=True)), (6_000, frame()), (6_500, frame(greens=(2, 6)))]
    f = feed(seq)
    assert (f.code, f.channel, f.other, f.measured, f.limit) == \
        (FAULT_SHORT_RED_CLEAR, 2, 1, 500, 1_000)
    assert feed([(0, frame(flash=True)), (6_000, frame()), (7_000, frame(greens=(2, 6)))]) is None


def test_green_straight_from_flash_trips():
    f = feed([(0, frame(flash=True)), (6_000, frame(greens=(2,)))])
    assert (f.code, f.detail) == (FAULT_BAD_SEQUENCE, "channel 2 went flash-red to green")
    veh, ped = frame(greens=(2,))
    veh[4] = FLASH_RED
    f = feed([(0, frame(flash=True)), (6_000, (veh, ped))])
    assert (f.code, f.channel, f.other) == (FAULT_FLASH_MIXED, 4, 2)


def test_compatible_green_needs_no_red_clearance_but_the_ring_does():
    seq = start() + [(1_000, frame(greens=(1, 5))), (6_000, frame(yellows=(1,), greens=(5,))),
                     (9_000, frame(greens=(5,))), (9_100, frame(greens=(5, 2)))]
    f = feed(seq)
    assert (f.code, f.channel, f.other, f.measured) == (FAULT_SHORT_RED_CLEAR, 2, 1, 100)


def test_short_green_trips():
    f = feed(start() + [(1_000, frame(greens=(2,))), (4_900, frame(yellows=(2,)))])
    assert (f.code, f.measured, f.limit) == (FAULT_SHORT_GREEN, 3_900, 4_000)


def test_green_straight_to_red_trips():
    f = feed(start() + [(1_000, frame(greens=(2,))), (20_000, frame())])
    assert (f.code, f.detail) == (FAULT_BAD_SEQUENCE, "channel 2 went green to red")


def test_yellow_back_to_green_trips():
    f = feed(start() + [(1_000, frame(greens=(2,))), (20_000, frame(yellows=(2,))),
                        (24_000, frame(greens=(2,)))])
    assert (f.code, f.detail) == (FAULT_BAD_SEQUENCE, "channel 2 went yellow to green")


def test_red_revert_is_checked_on_the_channels_own_yellow():
    base = start() + [(1_000, frame(greens=(2,))), (20_000, frame(yellows=(2,))),
                      (24_000, frame())]
    f = feed(base + [(25_900, frame(greens=(2,)))])
    assert (f.code, f.channel, f.measured, f.limit) == (FAULT_RED_REVERT, 2, 1_900, 2_000)
    assert feed(base + [(26_000, frame(greens=(2,)))]) is None


def test_unknown_values_trip():
    veh, ped = frame()
    veh[3] = 9
    assert feed(start() + [(1_000, (veh, ped))]).code == FAULT_BAD_INDICATION
    veh, ped = frame()
    ped[4] = 7
    assert feed(start() + [(1_000, (veh, ped))]).code == FAULT_BAD_INDICATION


def test_walk_without_green_trips():
    f = feed(start() + [(1_000, frame(walks=(2,)))])
    assert (f.code, f.channel) == (FAULT_WALK_WITHOUT_GREEN, 2)


def test_ped_head_dark_in_run_mode_is_a_red_fail():
    veh, ped = frame()
    ped[4] = PED_DARK
    f = feed(start() + [(1_000, (veh, ped))])
    assert (f.code, f.channel) == (FAULT_RED_FAIL, 4)


def test_cut_ped_clearance_trips():
    seq = start() + [(1_000, frame(greens=(2,), walks=(2,))),
                     (8_000, frame(greens=(2,), clears=(2,))), (14_000, frame(greens=(2,)))]
    f = feed(seq)
    assert (f.code, f.measured, f.limit) == (FAULT_SHORT_PED_CLEAR, 6_000, 7_000)


def test_green_ending_during_ped_clearance_trips():
    seq = start() + [(1_000, frame(greens=(2,), walks=(2,))),
                     (8_000, frame(greens=(2,), clears=(2,))),
                     (12_000, frame(yellows=(2,), clears=(2,)))]
    f = feed(seq)
    assert (f.code, f.ms, f.detail) == (FAULT_WALK_WITHOUT_GREEN, 12_000,
                                        "channel 2 shows ped clearance while yellow")


def test_walk_straight_to_dont_walk_trips():
    seq = start() + [(1_000, frame(greens=(2,), walks=(2,))), (8_000, frame(greens=(2,)))]
    assert feed(seq).code == FAULT_SHORT_PED_CLEAR


def test_fault_latches_until_reset():
    m = Monitor(CARD, 0)
    m.check(0, *frame())
    f = m.check(100, *frame(greens=(2, 4)))
    assert m.check(200, *frame()) is f
    m.reset(300)
    assert m.check(300, *frame()) is None


def test_fault_round_trips_through_a_plain_dict():
    f = feed(start() + [(1_000, frame(greens=(2,))), (11_000, frame(yellows=(2,))),
                        (13_900, frame())])
    d = f.to_dict()
    assert d["rule"] == "short yellow" and d["measured_ms"] == 2_900 and d["limit_ms"] == 3_000
    g = Fault.from_dict(d)
    assert (g.ms, g.code, g.channel, g.measured, g.limit, g.detail) == \
        (f.ms, f.code, f.channel, f.measured, f.limit, f.detail)


# -- wired into the agent ---------------------------------------------------------------

class BrokenAtStep:
    """Wraps a real controller and corrupts its outputs from a given time on."""

    def __init__(self, real, at_ms, phase=4):
        self.real, self.at_ms, self.now, self.phase = real, at_ms, 0, phase

    def __getattr__(self, name):
        return getattr(self.real, name)

    def step(self, now, *args):
        self.now = now
        return self.real.step(now, *args)

    def vehicle_indications(self):
        v = self.real.vehicle_indications()
        if self.now >= self.at_ms:
            v[self.phase] = GREEN     # side street green while the main street is green
        return v


def broken_agent(at_ms=10_000):
    agent = Agent(SITE)
    for t in range(0, at_ms, 100):
        out = agent.step(t)
    assert out.mode == MODE_RUN and out.vehicle[2] == GREEN
    agent.controller = BrokenAtStep(agent.controller, at_ms)
    return agent, agent.step(at_ms)


def test_broken_controller_output_goes_to_flash_in_the_same_step():
    agent, out = broken_agent()
    assert out.mode == MODE_FLASH
    assert out.vehicle[2] == FLASH_RED and out.vehicle[4] == FLASH_RED
    assert (out.fault.code, out.fault.channel, out.fault.other) == (FAULT_CONFLICT, 2, 4)
    assert (10_000, ev.MONITOR_FAULT, FAULT_CONFLICT) in out.events
    assert (10_000, ev.UNIT_FLASH_STATUS, ev.FLASH_FAULT) in out.events


def test_reset_is_refused_before_the_minimum_flash_then_starts_up_again():
    agent, _ = broken_agent()
    out = agent.step(15_900, Inputs(flash_reset=RESET_LOCAL_COMMAND))
    assert out.events == [(15_900, ev.FLASH_RESET_REFUSED, RESET_LOCAL_COMMAND)]
    assert out.mode == MODE_FLASH and agent.flash_remaining(15_900) == 100
    out = agent.step(16_000, Inputs(flash_reset=RESET_HARDWIRED))
    assert out.events[:3] == [(16_000, ev.FLASH_RESET, RESET_HARDWIRED),
                              (16_000, ev.UNIT_FLASH_STATUS, ev.FLASH_OFF),
                              (16_000, ev.STARTUP_ALL_RED, 0)]
    assert out.mode == MODE_STARTUP_ALL_RED and out.vehicle[2] == RED and out.fault is None
    for t in range(16_100, 20_100, 100):
        out = agent.step(t)
    assert out.vehicle[2] == GREEN and out.vehicle[6] == GREEN   # 4.0 s all-red, then 2+6


def test_restored_latch_boots_into_flash_and_logs_it():
    agent, out = broken_agent()
    fault = Fault.from_dict(out.fault.to_dict())       # what the store keeps
    again = Agent(SITE, now=50_000, latched=fault)
    out = again.step(50_000)
    assert out.mode == MODE_FLASH and out.vehicle[2] == FLASH_RED
    assert out.events == [(50_000, ev.UNIT_BOOT, 2), (50_000, ev.MONITOR_FAULT, FAULT_CONFLICT),
                          (50_000, ev.UNIT_FLASH_STATUS, ev.FLASH_FAULT)]
    assert out.fault.detail == fault.detail
    # the minimum flash counts from the boot: a power cycle does not shorten it
    assert again.flash_remaining(55_000) == 1_000


def test_finding5_boot_events_are_in_the_first_outputs():
    d = standard_site()
    d["startup"]["flash"] = 3.0
    agent = Agent(parse_site(d), now=0)
    out = agent.step(0)
    assert out.events == [(0, ev.UNIT_BOOT, 1), (0, ev.UNIT_FLASH_STATUS, ev.FLASH_STARTUP)]
    log = []
    for t in range(100, 3_100, 100):
        log.extend(agent.step(t).events)
    assert log == [(3_000, ev.UNIT_FLASH_STATUS, ev.FLASH_OFF), (3_000, ev.STARTUP_ALL_RED, 0)]
    out = Agent(SITE).step(0)
    assert out.events == [(0, ev.UNIT_BOOT, 1), (0, ev.STARTUP_ALL_RED, 0)]


def test_controller_exception_ends_in_flash():
    agent = Agent(SITE)
    for t in range(0, 5_000, 100):
        agent.step(t)

    class Exploding:
        green = yellow = 0

        def step(self, *a):
            raise ZeroDivisionError("boom")
    agent.controller = Exploding()
    agent.controller.plan = SITE.fallback_plan
    agent.controller.pending = None
    out = agent.step(5_000)
    assert out.mode == MODE_FLASH and out.vehicle[2] == FLASH_RED
    assert (5_000, ev.UNIT_FLASH_STATUS, ev.FLASH_FAULT_MONITOR) in out.events
    # repr differs by a comma between CPython and MicroPython
    assert out.fault.detail.startswith("controller error: ZeroDivisionError('boom'")


def test_time_going_backwards_ends_in_flash():
    agent = Agent(SITE)
    agent.step(0)
    agent.step(5_000)
    out = agent.step(4_000)
    assert out.mode == MODE_FLASH
    assert out.fault.detail == "time went backwards: 4000 ms after 5000 ms"


def test_finding2_typo_in_barriers_is_caught_by_the_monitor_not_the_controller():
    """Run the barrier-typo site against the correct card (the cross-check skipped, as
    if the controller's programming had changed under a card nobody re-checked)."""
    d = standard_site()
    d["barriers"] = [[1, 2, 5, 6, 3], [4, 7, 8]]
    site = parse_site(d, cross_check=False)
    agent = Agent(site)
    calls = {3: True, 6: True}          # stop-bar presence on phases 3 and 6
    for t in range(0, 60_000, 100):
        out = agent.step(t, Inputs(detectors=calls))
        if out.mode == MODE_FLASH:
            break
    assert out.fault.code == FAULT_CONFLICT and {out.fault.channel, out.fault.other} == {3, 6}
    assert out.vehicle[3] == FLASH_RED and out.vehicle[6] == FLASH_RED
    # the very step the controller first showed 3 and 6 together
    assert out.fault.ms == t


def test_finding3_red_revert_with_rest_in_red():
    """Rest in red: phase 2 gaps out at 14.0 s, yellow 4.0 s, red clearance 1.5 s; a call
    arrives during its yellow. It may not show green again before its 2.0 s red revert."""
    d = standard_site()
    d["rest"] = "red"
    agent = Agent(parse_site(d))
    log = []
    for t in range(0, 22_000, 100):
        on = 0 < t < 8_000 or 16_000 <= t < 16_200
        out = agent.step(t, Inputs(detectors={2: on}))
        log.extend(out.events)
        assert out.fault is None
    assert (14_000, ev.PHASE_GAP_OUT, 2) in log
    assert (18_000, ev.PHASE_END_YELLOW, 2) in log
    assert (19_500, ev.PHASE_END_RED_CLEAR, 2) in log       # red clearance alone: 1.5 s
    assert green_intervals(log, 2)[0] == (4_000, 14_000)
    assert [e[0] for e in log if e[1] == ev.PHASE_BEGIN_GREEN and e[2] == 2] == [4_000, 20_000]
