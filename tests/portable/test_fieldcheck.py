"""Field check: the MMU's view of the field against what the agent commanded.

Timing sheets: a disagreement latches flash exactly one tolerance after it
began, a shorter one never does, the MMU's own fault and a lost cabinet link
latch at once, and a cabinet that shows what it is told runs for a long time
without a fault.
"""

from edge_agent.intersection import parse_site
from edge_agent.standard import standard_site
from edge_agent.agent import Agent, Inputs, MODE_FLASH, MODE_RUN
from edge_agent.fieldcheck import (FieldCheck, CabinetReport, FAULT_FIELD_CHECK, FAULT_MMU,
                                   FAULT_CABINET_LINK, FAULT_MMU_PROGRAM)
from edge_agent.indications import (RED, YELLOW, GREEN, DONT_WALK, WALK, PED_DARK,
                                    FLASH_RED)
from edge_agent import events as ev

SITE = parse_site(standard_site())


def commanded(greens=()):
    veh = [0] + [RED] * 16
    ped = [PED_DARK] + [DONT_WALK] * 16
    for p in greens:
        veh[p] = GREEN
    return veh, ped


def mirror(ms, veh, ped, tolerance_ms=500):
    """The report of a cabinet that shows exactly what it was told."""
    r = CabinetReport(ms, tolerance_ms=tolerance_ms)
    for p in range(1, 17):
        bit = 1 << p
        if veh[p] == RED:
            r.red |= bit
        elif veh[p] == YELLOW:
            r.yellow |= bit
        elif veh[p] == GREEN:
            r.green |= bit
        if ped[p] == WALK:
            r.walk |= bit
        elif ped[p] == DONT_WALK:
            r.dont_walk |= bit
    return r


def test_stuck_green_latches_one_tolerance_after_it_appears():
    fc = FieldCheck(SITE)
    veh, ped = commanded(greens=(2, 6))
    fault = None
    for ms in range(0, 3000, 100):
        r = mirror(ms, veh, ped)
        if ms >= 1000:
            r.green |= 1 << 4            # phase 4's green load switch welded on
            r.red &= ~(1 << 4)
        fault = fc.check(ms, veh, ped, r)
        if fault is not None:
            break
    assert ms == 1500
    assert fault == (FAULT_FIELD_CHECK,
                     "phase 4 commanded red, the field shows green for 500 ms (tolerance 500 ms)")


def test_a_disagreement_shorter_than_the_tolerance_is_forgiven_and_restarts():
    fc = FieldCheck(SITE)
    veh, ped = commanded(greens=(2, 6))
    first = None
    for ms in range(0, 5000, 100):
        r = mirror(ms, veh, ped, tolerance_ms=300)
        if 1000 <= ms < 1300 or ms >= 2000:
            r.red &= ~(1 << 8)            # phase 8's red lamp dark
        f = fc.check(ms, veh, ped, r)
        if f is not None and first is None:
            first = (ms, f)
    assert first == (2300, (FAULT_FIELD_CHECK, "phase 8 commanded red, the field shows dark "
                                               "for 300 ms (tolerance 300 ms)"))


def test_walk_not_shown_is_a_field_fault():
    fc = FieldCheck(SITE)
    veh, ped = commanded(greens=(2, 6))
    ped[2] = WALK
    f = None
    for ms in range(0, 1000, 100):
        r = mirror(ms, veh, ped)
        r.walk &= ~(1 << 2)
        r.dont_walk |= 1 << 2
        f = fc.check(ms, veh, ped, r)
        if f is not None:
            break
    assert ms == 500
    assert f == (FAULT_FIELD_CHECK, "phase 2 pedestrian commanded walk, the field shows "
                                    "don't walk for 500 ms (tolerance 500 ms)")


def test_flashing_indications_are_not_compared():
    fc = FieldCheck(SITE)
    veh = [0] + [FLASH_RED] * 16
    ped = [PED_DARK] * 17
    for ms in range(0, 5000, 100):
        assert fc.check(ms, veh, ped, CabinetReport(ms, red=0xFFFE if ms % 1000 < 500 else 0)) \
            is None


def test_mmu_fault_and_lost_link_latch_at_once():
    fc = FieldCheck(SITE)
    veh, ped = commanded(greens=(2, 6))
    r = mirror(0, veh, ped)
    r.mmu_fault = "conflict"
    assert fc.check(0, veh, ped, r) == (FAULT_MMU, "MMU reports conflict")
    lost = CabinetReport(0, link_ok=False, link_detail="no MMU status for 1000 ms")
    assert fc.check(0, veh, ped, lost) == (FAULT_CABINET_LINK,
                                           "cabinet link lost: no MMU status for 1000 ms")


def _run_agent(until_ms, fault_at=None, fault=None):
    """Step an agent at 100 ms with a mirroring cabinet (one step late, as on the wire)."""
    agent = Agent(SITE)
    last = None
    out = None
    for ms in range(0, until_ms, 100):
        report = None
        if last is not None:
            report = mirror(ms, last.vehicle, last.ped)
            if fault_at is not None and ms >= fault_at:
                fault(report)
        out = agent.step(ms, Inputs(cabinet=report, detectors={1: ms % 7000 < 300}))
        last = out
        if out.mode == MODE_FLASH:
            return agent, out, ms
    return agent, out, None


def test_agent_with_a_cabinet_that_obeys_runs_an_hour_without_flash():
    agent, out, flashed = _run_agent(3_600_000)
    assert flashed is None and out.mode == MODE_RUN


def test_agent_latches_flash_with_the_mmus_reason_in_the_same_step():
    def trip(r):
        r.mmu_fault = "red failure"
    agent, out, flashed = _run_agent(120_000, fault_at=60_000, fault=trip)
    assert flashed == 60_000
    assert out.fault.code == FAULT_MMU and out.fault.detail == "MMU reports red failure"
    assert (60_000, ev.MONITOR_FAULT, FAULT_MMU) in out.events
    assert out.vehicle[2] == FLASH_RED


def test_phases_not_wired_to_a_channel_are_not_compared():
    fc = FieldCheck(SITE)
    veh, ped = commanded(greens=(2, 6))
    ped[2] = WALK
    for ms in range(0, 2000, 100):
        r = mirror(ms, veh, ped)
        r.red &= ~(1 << 8)                # phase 8's head is not wired to the MMU
        r.walk = 0
        r.watched = 0x1FFFE & ~(1 << 8)
        r.watched_ped = 0
        assert fc.check(ms, veh, ped, r) is None


def _permits(pairs):
    out = [0] * 17
    for p, q in pairs:
        out[p] |= 1 << q
        out[q] |= 1 << p
    return out


# The standard site's compatible pairs: each ring-1 phase with the ring-2 phases of its barrier.
STANDARD_OK = [(1, 5), (1, 6), (2, 5), (2, 6), (3, 7), (3, 8), (4, 7), (4, 8)]


def test_mmu_program_must_match_the_sites_conflicts_both_ways():
    fc = FieldCheck(SITE)
    veh, ped = commanded(greens=(2, 6))
    r = mirror(0, veh, ped)
    r.mmu_permits = _permits(STANDARD_OK)
    assert fc.check(0, veh, ped, r) is None
    r.mmu_permits = _permits(STANDARD_OK + [(2, 4)])
    assert fc.check(0, veh, ped, r) == (FAULT_MMU_PROGRAM, "MMU program permits channels 2 and 4 "
                                        "together; the site's monitor card says they conflict")
    r.mmu_permits = _permits([pq for pq in STANDARD_OK if pq != (3, 8)])
    assert fc.check(0, veh, ped, r) == (FAULT_MMU_PROGRAM, "MMU program forbids channels 3 and 8 "
                                        "together; the site's monitor card permits them (the "
                                        "MMU would trip)")


def test_a_reading_that_stops_coming_is_not_a_field_fault():
    """The last MMU status arrived at 1,000 ms, phase 2 green; from 1,200 ms phase 2 is
    commanded yellow. With no newer reading the field check has nothing to judge, however
    long it waits (the link supervision answers for the silence); the first fresh
    reading that still shows green counts from the step that first saw the difference."""
    fc = FieldCheck(SITE)
    green, ped = commanded(greens=(2,))
    yellow = list(green)
    yellow[2] = YELLOW
    last = mirror(1_000, green, ped)
    for ms in range(1_000, 4_000, 100):
        assert fc.check(ms, green if ms < 1_200 else yellow, ped, last) is None, ms
    fresh = mirror(4_000, green, ped)            # the head is really still green
    assert fc.check(4_000, yellow, ped, fresh) == (
        FAULT_FIELD_CHECK, "phase 2 commanded yellow, the field shows green for 2800 ms "
                           "(tolerance 500 ms)")
