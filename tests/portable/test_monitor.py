"""The conflict monitor: each rule trips on a crafted output, and is wired.

The monitor sees only the site and the indications; these tests feed it
indication sequences directly, then check the agent goes to flash in the very
step a broken controller output appears.
"""

from edge_agent.intersection import parse_site
from edge_agent.standard import standard_site
from edge_agent.monitor import (Monitor, FAULT_CONFLICT, FAULT_SHORT_YELLOW,
                                FAULT_SHORT_RED_CLEAR, FAULT_SHORT_GREEN,
                                FAULT_BAD_SEQUENCE, FAULT_WALK_WITHOUT_GREEN,
                                FAULT_SHORT_PED_CLEAR)
from edge_agent.agent import Agent, Inputs, MODE_FLASH, MODE_RUN
from edge_agent.indications import (RED, YELLOW, GREEN, FLASH_RED, DONT_WALK,
                                    WALK, PED_CLEAR, PED_DARK)
from edge_agent import events as ev

SITE = parse_site(standard_site())


def frame(greens=(), yellows=(), walks=(), clears=()):
    veh = [0] + [RED] * 16
    ped = [PED_DARK] + [DONT_WALK] * 16
    for p in greens:
        veh[p] = GREEN
    for p in yellows:
        veh[p] = YELLOW
    for p in walks:
        ped[p] = WALK
    for p in clears:
        ped[p] = PED_CLEAR
    return veh, ped


def feed(seq):
    """seq: [(ms, frame)]; returns the first fault or None."""
    m = Monitor(SITE)
    for ms, (veh, ped) in seq:
        f = m.check(ms, veh, ped)
        if f is not None:
            return f
    return None


def test_clean_cycle_passes():
    seq = [(0, frame()), (1_000, frame(greens=(2, 6))), (11_000, frame(yellows=(2, 6))),
           (15_000, frame()), (16_000, frame(greens=(4, 8)))]
    assert feed(seq) is None


def test_conflicting_greens_trip():
    f = feed([(0, frame()), (1_000, frame(greens=(2, 4)))])
    assert f.code == FAULT_CONFLICT and (f.phase, f.other) == (2, 4) and f.ms == 1_000


def test_green_and_conflicting_yellow_trip():
    f = feed([(0, frame()), (100, frame(greens=(2,))), (10_100, frame(yellows=(2,), greens=(3,)))])
    assert f.code == FAULT_CONFLICT


def test_short_yellow_trips():
    seq = [(0, frame()), (1_000, frame(greens=(2,))), (11_000, frame(yellows=(2,))),
           (13_900, frame())]
    f = feed(seq)
    assert f.code == FAULT_SHORT_YELLOW and f.phase == 2 and "2900 ms < 3000 ms" in f.detail


def test_short_red_clearance_trips():
    seq = [(0, frame()), (1_000, frame(greens=(2,))), (11_000, frame(yellows=(2,))),
           (15_000, frame()), (15_900, frame(greens=(4,)))]
    f = feed(seq)
    assert f.code == FAULT_SHORT_RED_CLEAR and (f.phase, f.other) == (4, 2)


def test_compatible_green_needs_no_red_clearance():
    seq = [(0, frame()), (1_000, frame(greens=(1, 5))), (6_000, frame(yellows=(1,), greens=(5,))),
           (9_000, frame(greens=(5,))), (9_000 + 100, frame(greens=(5, 2)))]
    # 2 follows 1 in the same ring: red clearance applies; 100 ms is too short.
    f = feed(seq)
    assert f.code == FAULT_SHORT_RED_CLEAR and (f.phase, f.other) == (2, 1)


def test_short_green_trips():
    f = feed([(0, frame()), (1_000, frame(greens=(2,))), (4_900, frame(yellows=(2,)))])
    assert f.code == FAULT_SHORT_GREEN


def test_green_straight_to_red_trips():
    f = feed([(0, frame()), (1_000, frame(greens=(2,))), (20_000, frame())])
    assert f.code == FAULT_BAD_SEQUENCE and "green to red" in f.detail


def test_walk_without_green_trips():
    f = feed([(0, frame()), (1_000, frame(walks=(2,)))])
    assert f.code == FAULT_WALK_WITHOUT_GREEN


def test_cut_ped_clearance_trips():
    seq = [(0, frame()), (1_000, frame(greens=(2,), walks=(2,))),
           (8_000, frame(greens=(2,), clears=(2,))), (14_000, frame(greens=(2,)))]
    f = feed(seq)
    assert f.code == FAULT_SHORT_PED_CLEAR and "6000 ms < 7000 ms" in f.detail


def test_walk_straight_to_dont_walk_trips():
    seq = [(0, frame()), (1_000, frame(greens=(2,), walks=(2,))), (8_000, frame(greens=(2,)))]
    assert feed(seq).code == FAULT_SHORT_PED_CLEAR


def test_fault_latches_until_reset():
    m = Monitor(SITE)
    m.check(0, *frame())
    f = m.check(100, *frame(greens=(2, 4)))
    assert m.check(200, *frame()) is f
    m.reset(300)
    assert m.check(300, *frame()) is None


class BrokenAtStep:
    """Wraps a real controller and corrupts its outputs from a given time on."""

    def __init__(self, real, at_ms):
        self.real, self.at_ms, self.now = real, at_ms, 0

    def __getattr__(self, name):
        return getattr(self.real, name)

    def step(self, now, *args):
        self.now = now
        return self.real.step(now, *args)

    def vehicle_indications(self):
        v = self.real.vehicle_indications()
        if self.now >= self.at_ms:
            v[4] = GREEN          # side street green while the main street is green
        return v


def test_broken_controller_output_goes_to_flash_in_the_same_step():
    agent = Agent(SITE)
    for t in range(0, 10_000, 100):
        out = agent.step(t)
    assert out.mode == MODE_RUN and out.vehicle[2] == GREEN
    agent.controller = BrokenAtStep(agent.controller, 10_000)
    out = agent.step(10_000)
    assert out.mode == MODE_FLASH
    assert out.vehicle[2] == FLASH_RED and out.vehicle[4] == FLASH_RED
    assert out.fault.code == FAULT_CONFLICT and (out.fault.phase, out.fault.other) == (2, 4)
    assert (10_000, ev.MONITOR_FAULT, FAULT_CONFLICT) in out.events
    assert (10_000, ev.UNIT_FLASH_STATUS, ev.FLASH_FAULT) in out.events


def test_flash_latches_until_technician_reset_then_starts_up_again():
    agent = Agent(SITE)
    for t in range(0, 10_000, 100):
        agent.step(t)
    agent.controller = BrokenAtStep(agent.controller, 10_000)
    agent.step(10_000)
    for t in range(10_100, 60_000, 100):
        out = agent.step(t)
        assert out.mode == MODE_FLASH and out.vehicle[2] == FLASH_RED
    out = agent.step(60_000, Inputs(technician_reset=True))
    assert (60_000, ev.FLASH_RESET, 0) in out.events
    assert out.vehicle[2] == RED and out.fault is None          # start-up all-red
    for t in range(60_100, 64_100, 100):
        out = agent.step(t)
    assert out.vehicle[2] == GREEN and out.vehicle[6] == GREEN   # 4.0 s all-red, then 2+6


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
    out = agent.step(5_000)
    assert out.mode == MODE_FLASH and out.vehicle[2] == FLASH_RED
    assert "controller error" in out.fault.detail


def test_time_going_backwards_ends_in_flash():
    agent = Agent(SITE)
    agent.step(5_000)
    out = agent.step(4_000)
    assert out.mode == MODE_FLASH and "time went backwards" in out.fault.detail
