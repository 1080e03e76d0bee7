"""The built-in intersection simulator: vehicles, queues, detectors, buttons, determinism.

Numbers to keep in mind: at 50 km/h one metre takes exactly 72 ms, so the
250 m approach takes 18 000 ms; a 1900 veh/h/lane saturation flow is a
1895 ms headway; start-up lost time 2000 ms.
"""

import random

import pytest

from edge_agent.indications import FLASH_RED, GREEN, RED, YELLOW
from hil.demand import DailyProfile, Platoon, PoissonArrivals, RateSchedule
from hil.scenario import ScenarioError, load_scenario
from hil.sim import IntersectionSim

MS_PER_M = 72          # at 50 km/h
FREE_MS = 250 * MS_PER_M
HEADWAY = 1895
LOST = 2000


def scenario(approaches=None, demand=None, detectors=None, peds=None, **extra):
    """A small scenario: by default one eastbound through lane on phase 2 without demand."""
    d = {
        "seed": 1, "start": "00:00",
        "approaches": approaches or {"EB": {"T": {"phase": 2, "lanes": 1}}},
        "demand": demand or {"base_vph": {}},
        "detectors": detectors if detectors is not None else [
            {"channel": 1, "phase": 2, "movements": ["EB_T"], "at_m": 0, "length_m": 12},
            {"channel": 2, "phase": 2, "movements": ["EB_T"], "at_m": 60, "length_m": 2}],
        "ped_buttons": peds or [],
        "measures": {"reference_phase": 2},
    }
    d.update(extra)
    return d


def shows(**phases):
    """Indication list with the given phases (p2=GREEN...) and every other phase red."""
    v = [RED] * 17
    for k, ind in phases.items():
        v[int(k[1:])] = ind
    return v


def drive(sim, until_ms, show, step_ms=100):
    """Run from 0 to until_ms; show(t) are the indications shown during [t, t + step)."""
    out = [sim.step(0, show(0))]
    for t in range(step_ms, until_ms + 1, step_ms):
        out.append(sim.step(t, show(t - step_ms)))
    return out


def log_of(sim, channel):
    return [(t, on) for t, ch, on in sim.detector_log if ch == channel]


# -- a single free vehicle ----------------------------------------------------

def test_single_vehicle_on_green_has_no_delay_and_exact_detector_times():
    sim = IntersectionSim(scenario())
    sim.add_vehicles("EB_T", [1000])
    drive(sim, 30_000, lambda t: shows(p2=GREEN))
    assert sim.crossings == [(1000 + FREE_MS, "EB_T", 1, 0, False)]
    # stop-bar zone 12 m: on when the front reaches 12 m, off when the rear passes the bar
    assert log_of(sim, 1) == [(1000 + 238 * MS_PER_M, True), (1000 + 238 * MS_PER_M + 1224, False)]
    assert 1224 == round((5 + 12) / (50 / 3.6) * 1000)
    # advance loop 60 m upstream, 2 m long: (2 m + 5 m) / v
    assert log_of(sim, 2) == [(1000 + 188 * MS_PER_M, True), (1000 + 188 * MS_PER_M + 504, False)]
    m = sim.measures()
    assert (m.total.arrivals, m.total.departures, m.total.delay_s, m.total.stops) == (1, 1, 0.0, 0)
    assert m.total.arrivals_on_green == 1


def test_presence_and_pulses_are_reported_per_step():
    sim = IntersectionSim(scenario())
    sim.add_vehicles("EB_T", [1000])
    outs = drive(sim, 30_000, lambda t: shows(p2=GREEN))
    on_steps = [o.now_ms for o in outs if o.detectors[1]]
    # occupied [18136, 19360): the steps at 18200 ... 19300
    assert on_steps == list(range(18_200, 19_400, 100))
    assert sum(o.pulses[1] for o in outs) == 1 and sum(o.pulses[2] for o in outs) == 1
    assert [o.now_ms for o in outs if o.pulses[2]] == [14_600]


# -- queues -------------------------------------------------------------------

ELEVEN = [1000 + 2000 * k for k in range(11)]


def red_then_green(green_at, yellow_at=None, red_at=None):
    def show(t):
        if t < green_at:
            return shows(p2=RED)
        if yellow_at is not None and t >= yellow_at:
            return shows(p2=RED if t >= red_at else YELLOW)
        return shows(p2=GREEN)
    return show


def test_standing_queue_discharges_at_lost_time_plus_k_headways():
    sim = IntersectionSim(scenario())
    sim.add_vehicles("EB_T", ELEVEN)
    drive(sim, 80_000, red_then_green(40_000))
    times = [c[0] for c in sim.crossings]
    assert times == [40_000 + LOST + k * HEADWAY for k in range(1, 12)]
    assert all(c[4] for c in sim.crossings)                   # every one stopped
    delays = [c[3] for c in sim.crossings]
    assert delays == [t - e - FREE_MS for t, e in zip(times, ELEVEN)]
    m = sim.measures()
    assert m.movements["EB_T"].max_queue == 11
    assert m.movements["EB_T"].stops == 11


def test_stop_bar_zone_stays_occupied_while_the_queue_stands_and_discharges():
    sim = IntersectionSim(scenario())
    sim.add_vehicles("EB_T", ELEVEN)
    drive(sim, 80_000, red_then_green(40_000))
    last = 40_000 + LOST + 11 * HEADWAY
    assert log_of(sim, 1) == [(1000 + 238 * MS_PER_M, True), (last + 5 * MS_PER_M, False)]


def test_advance_loop_is_held_on_by_a_queue_that_spills_back_over_it():
    sim = IntersectionSim(scenario())
    sim.add_vehicles("EB_T", ELEVEN)
    drive(sim, 80_000, red_then_green(40_000))
    log = log_of(sim, 2)
    # vehicles 1-8 drive over it; vehicle 9 stops on it (queue position 8: 56-61 m)
    passes = [(e + 188 * MS_PER_M, e + 188 * MS_PER_M + 504) for e in ELEVEN[:8]]
    expected = [x for a, b in passes for x in ((a, True), (b, False))]
    expected += [(ELEVEN[8] + 188 * MS_PER_M, True), (40_000 + LOST + 3 * HEADWAY, False)]
    assert log == expected


def test_vehicles_enter_in_the_first_two_seconds_of_yellow_only():
    sim = IntersectionSim(scenario(detectors=[]))
    sim.add_vehicles("EB_T", [500, 2600])       # at the bar 1.0 s and 3.1 s into the yellow

    def show(t):
        if t < 17_500:
            return shows(p2=GREEN)
        if t < 20_800:
            return shows(p2=YELLOW)
        return shows(p2=GREEN if t >= 60_000 else RED)
    drive(sim, 70_000, show)
    assert sim.crossings[0] == (500 + FREE_MS, "EB_T", 1, 0, False)
    assert sim.crossings[1][0] == 60_000 + LOST + HEADWAY
    assert sim.crossings[1][4] is True


def test_follower_closer_than_the_saturation_headway_is_slowed_not_stopped():
    sim = IntersectionSim(scenario(detectors=[]))
    sim.add_vehicles("EB_T", ELEVEN[:2] + [9190])    # at the bar 1.4 s after the second departure
    drive(sim, 60_000, red_then_green(20_000))
    first, second, third = sim.crossings
    assert second[0] == 20_000 + LOST + 2 * HEADWAY == 25_790
    assert third[0] == second[0] + HEADWAY
    assert third[4] is False and third[3] == 27_685 - 9190 - FREE_MS == 495


def test_a_new_vehicle_takes_the_emptier_lane():
    sim = IntersectionSim(scenario(approaches={"EB": {"T": {"phase": 2, "lanes": 2}}}, detectors=[]))
    sim.add_vehicles("EB_T", [1000, 1000, 1000])
    drive(sim, 40_000, lambda t: shows(p2=GREEN))
    # two side by side at once, the third one saturation headway behind in lane 0
    assert [c[0] for c in sim.crossings] == [19_000, 19_000, 19_000 + HEADWAY]


def test_flashing_red_makes_every_vehicle_stop_and_go_one_by_one():
    sim = IntersectionSim(scenario(detectors=[]))
    sim.add_vehicles("EB_T", [1000, 3000])
    drive(sim, 40_000, lambda t: shows(p2=FLASH_RED))
    assert [(c[0], c[4]) for c in sim.crossings] == [(21_000, True), (25_000, True)]


# -- permissive lefts -----------------------------------------------------------

PERMISSIVE = {"EB": {"L": {"phase": 5, "lanes": 1, "permissive_phase": 2}, "T": {"phase": 2, "lanes": 1}},
              "WB": {"T": {"phase": 6, "lanes": 1}}}


def test_permissive_left_waits_for_a_gap_of_the_critical_gap_in_the_opposing_flow():
    sim = IntersectionSim(scenario(approaches=PERMISSIVE, detectors=[]))
    sim.add_vehicles("EB_L", [1000])                    # at the bar at 19 000
    sim.add_vehicles("WB_T", [3000, 6000, 12_000])      # opposing at 21 000, 24 000, 30 000
    drive(sim, 50_000, lambda t: shows(p2=GREEN, p6=GREEN))
    left = [c for c in sim.crossings if c[1] == "EB_L"]
    # 21 000 and 24 000 come within 4.5 s; after 24 000 the next is 6 s away
    assert left == [(24_000, "EB_L", 1, 5000, True)]


def test_protected_left_goes_without_yielding():
    sim = IntersectionSim(scenario(approaches=PERMISSIVE, detectors=[]))
    sim.add_vehicles("EB_L", [1000])
    sim.add_vehicles("WB_T", [3000])
    drive(sim, 50_000, lambda t: shows(p5=GREEN, p6=GREEN))
    assert [c for c in sim.crossings if c[1] == "EB_L"] == [(19_000, "EB_L", 1, 0, False)]


def test_permissive_only_left_yields_on_its_own_green():
    app = {"EB": {"L": {"phase": 2, "lanes": 1, "permissive_phase": 2}, "T": {"phase": 2, "lanes": 1}},
           "WB": {"T": {"phase": 6, "lanes": 1}}}
    sim = IntersectionSim(scenario(approaches=app, detectors=[]))
    sim.add_vehicles("EB_L", [1000])
    sim.add_vehicles("WB_T", [3000])
    drive(sim, 50_000, lambda t: shows(p2=GREEN, p6=GREEN))
    assert [c[0] for c in sim.crossings if c[1] == "EB_L"] == [21_000]


# -- demand -------------------------------------------------------------------------

def count_arrivals(profile, start_tod_ms, until_ms, platoon=None, seed=5):
    arr = PoissonArrivals(random.Random(seed), RateSchedule(profile, start_tod_ms, platoon))
    times = []
    while True:
        t = arr.next()
        if t is None or t >= until_ms:
            return times
        times.append(t)


def test_poisson_count_over_ten_hours_is_within_four_sigma_of_the_rate():
    times = count_arrivals(DailyProfile([(0, 900)]), 0, 36_000_000)
    assert abs(len(times) - 9000) < 4 * 9000 ** 0.5          # sigma = sqrt(9000) = 95


def test_rate_follows_the_time_of_day_profile():
    prof = DailyProfile([(0, 300), (7 * 3_600_000, 1800), (9 * 3_600_000, 600)])
    assert prof.at(6 * 3_600_000) == (300.0, 3_600_000)
    assert prof.at(8 * 3_600_000) == (1800.0, 3_600_000)
    assert prof.mean(6 * 3_600_000, 2 * 3_600_000) == (300 + 1800) / 2
    times = count_arrivals(prof, 6 * 3_600_000, 4 * 3_600_000)     # 06:00-10:00
    per_hour = [sum(1 for t in times if h * 3_600_000 <= t < (h + 1) * 3_600_000) for h in range(4)]
    for n, rate in zip(per_hour, (300, 1800, 1800, 600)):
        assert abs(n - rate) < 4 * rate ** 0.5


def test_platoon_arrivals_concentrate_in_the_upstream_green_window():
    # 80 % of the vehicles in a 40 s window of a 100 s cycle: 0.8 + 0.2 * 0.4 = 88 % inside
    platoon = Platoon(100_000, 40_000, 0, 0.8)
    times = count_arrivals(DailyProfile([(0, 1000)]), 0, 36_000_000, platoon)
    inside = sum(1 for t in times if t % 100_000 < 40_000) / len(times)
    assert abs(len(times) - 10_000) < 4 * 10_000 ** 0.5
    assert abs(inside - 0.88) < 0.02


def test_push_buttons_press_for_one_step_at_their_rate():
    sc = scenario(detectors=[], peds=[{"id": "P2", "channel": 1, "phase": 2}],
                  demand={"base_vph": {}, "base_peds_ph": {"P2": 360}})
    sim = IntersectionSim(sc)
    outs = drive(sim, 3_600_000, lambda t: shows(p2=GREEN), step_ms=1000)
    presses = sum(o.peds[1] for o in outs)
    assert abs(presses - 360) < 4 * 360 ** 0.5
    assert presses == sum(o.peds[1] for o in drive(IntersectionSim(sc), 3_600_000,
                                                   lambda t: shows(p2=GREEN), step_ms=1000))


# -- determinism on a real scenario ---------------------------------------------------

def run_suburban(seed, seconds=300):
    sim = IntersectionSim(load_scenario("suburban"), seed=seed)
    cyc = 60_000

    def show(t):   # crude two-phase alternation: main street then side street
        c = t % cyc
        if c < 25_000:
            return shows(p2=GREEN, p6=GREEN)
        if c < 28_000:
            return shows(p2=YELLOW, p6=YELLOW)
        if 30_000 <= c < 55_000:
            return shows(p4=GREEN, p8=GREEN)
        if 55_000 <= c < 58_000:
            return shows(p4=YELLOW, p8=YELLOW)
        return shows()
    outs = drive(sim, seconds * 1000, show)
    return sim, outs


def test_same_seed_gives_identical_measures_and_detector_streams():
    a, outs_a = run_suburban(11)
    b, outs_b = run_suburban(11)
    assert a.measures().as_dict() == b.measures().as_dict()
    assert a.detector_log == b.detector_log
    def stream(outs):
        return [(o.detectors, o.pulses, o.peds) for o in outs]
    assert stream(outs_a) == stream(outs_b)


def test_different_seed_gives_different_measures():
    a, _ = run_suburban(11)
    b, _ = run_suburban(12)
    assert a.measures().as_dict() != b.measures().as_dict()


def test_real_scenario_reports_every_channel_every_step():
    sim, outs = run_suburban(None, seconds=60)
    sc = sim.scenario
    assert sim.seed == sc.seed
    chans = sorted(d["channel"] for d in sc.site["detectors"])
    assert all(sorted(o.detectors) == chans and sorted(o.pulses) == chans for o in outs)
    assert all(sorted(o.peds) == [1, 2, 3, 4] for o in outs)
    assert sum(sum(o.pulses.values()) for o in outs) > 0


def test_step_time_must_advance():
    sim = IntersectionSim(scenario())
    sim.step(0, shows())
    sim.step(100, shows())
    with pytest.raises(ValueError, match="not after"):
        sim.step(100, shows())


# -- scenario files ---------------------------------------------------------------------

@pytest.mark.parametrize("name", ["suburban", "arterial", "night"])
def test_scenario_files_load_and_match_their_site(name):
    sc = load_scenario(name)
    assert sc.name == name and isinstance(sc.seed, int)
    site = sc.site
    assert [p["phase"] for p in site["phases"]] == list(range(1, 9))
    assert {d.channel for d in sc.detectors} == {d["channel"] for d in site["detectors"]}
    assert {b.channel for b in sc.ped_buttons} == {d["channel"] for d in site["ped_detectors"]}
    for ph in site["fallback_plan"]["phases"]:
        assert ph["yellow"] >= site["floors"]["min_yellow"]
        assert ph["red_clear"] >= site["floors"]["min_red_clear"]
        assert ph["min_green"] >= site["floors"]["min_green"]
        assert ph["recall"] == ("min" if ph["phase"] in (2, 6) else "none")
    for d in site["detectors"]:
        assert d["locking"] == (d["channel"] > 8) and d["extends_green"]


def test_arterial_demand_peaks_in_the_morning_and_evening():
    sc = load_scenario("arterial")
    eb = sc.movement("EB_T").profile
    wb = sc.movement("WB_T").profile
    h = 3_600_000
    assert eb.at(7 * h + 50 * 60_000)[0] >= 2 * eb.at(12 * h)[0]
    assert wb.at(17 * h)[0] > 1.5 * wb.at(12 * h)[0]
    assert eb.at(3 * h)[0] < 0.1 * eb.at(7 * h + 50 * 60_000)[0]
    assert sc.start_tod_ms == 7 * h and sc.duration_s == 3600


def test_scenario_errors_name_the_place_and_list_every_problem():
    bad = scenario(detectors=[{"channel": 1, "phase": 2, "movements": ["XB_T"], "at_m": 0, "length_m": 12}],
                   start="25:00", platoon={})
    bad["approaches"]["EB"]["T"]["lanes"] = 0
    with pytest.raises(ScenarioError) as e:
        load_scenario(bad)
    msgs = e.value.problems
    assert any(m.startswith("start:") for m in msgs)
    assert any(m.startswith("platoon: unknown key") for m in msgs)
    assert any(m.startswith("approaches.EB.T.lanes:") for m in msgs)
    assert any(m.startswith("detectors[0].movements:") and "XB_T" in m for m in msgs)


def test_scenario_detector_channels_must_exist_in_the_site():
    raw = load_scenario("suburban").raw
    bad = dict(raw, detectors=raw["detectors"] + [
        {"channel": 40, "phase": 2, "movements": ["EB_T"], "at_m": 100, "length_m": 2}])
    with pytest.raises(ScenarioError, match=r"detectors\[12\].channel: 40 is not a detector channel"):
        load_scenario(bad)
