"""The city loop in real time: the project's six-signal corridor in SUMO stepped at wall-clock
speed, one `edge-agent run` process per signal on an emulated TS2 cabinet (pty), a real
Mosquitto and `edge-agent brain run` (hil/sumo/realtime.py), set beside the same corridor,
demand, seed and brain config in virtual time.

Bounded here (150 s, the brain planning every 60 s); EDGE_AGENT_SOAK=1 runs the
10 minutes with a plan every 130 s. The same plans must reach the same agents:
the same versions to the same signals at the same planning instants, each
accepted, in force at a barrier, with no monitor trip and no conflicting or
short interval in what the cabinets' load switches drove.
"""

import os

import pytest

from edge_agent.indications import DARK, GREEN, RED, YELLOW, MAX_PHASES
from hil.sumo import build as sb
from tests.mmu_checker import MmuChecker

pytestmark = [pytest.mark.sumo, pytest.mark.soak]

SOAK = os.environ.get("EDGE_AGENT_SOAK") == "1"
# The run ends between two plans (the virtual rig's brain also ticks at the run's last instant).
DURATION_S, EVERY_S, BIN_S = (600.0, 130.0, 10.0) if SOAK else (150.0, 60.0, 10.0)
BRAIN = {"first_plan_s": EVERY_S, "plan_every_s": EVERY_S, "window_s": EVERY_S, "bin_s": BIN_S}
COLOUR = {(True, False, False): RED, (False, True, False): YELLOW, (False, False, True): GREEN}
COLOUR_INDEX = {(True, False, False): 0, (False, True, False): 1, (False, False, True): 2}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    if not sb.sumo_available():
        pytest.skip("Eclipse SUMO is not installed (the 'sumo' extra)")
    from hil.sumo.corridor import build_corridor
    from hil.sumo.netmap import link_counts, load_map
    from hil.sumo.realtime import RealtimeCorridor, virtual_twin
    c = build_corridor(cache_dir=tmp_path_factory.mktemp("corridor"))
    m = load_map(c.map, link_counts(c.net))
    rt = RealtimeCorridor(c, m, tmp_path_factory.mktemp("realtime"), duration_s=DURATION_S,
                          brain_over=BRAIN)
    real = rt.run()
    real["agent_rc"] = rt.agent_rc
    twin = virtual_twin(c, m, rt.brain_config, DURATION_S)
    return m, real, twin


def test_the_same_plans_reach_the_same_agents_as_in_virtual_time(runs):
    from hil.sumo.realtime import compare
    m, real, twin = runs
    n_plans = int(DURATION_S // EVERY_S)
    signals = sorted(m.tls)
    want = sorted((t, v, "brain-%d" % v) for t in signals for v in range(1, n_plans + 1))
    assert sorted((p["tls"], p["version"], p["plan_id"]) for p in twin["plans"]) == want
    assert sorted((p["tls"], p["version"], p["plan_id"]) for p in real["plans"]) == want
    # each agent accepted each version, in the order published, as in virtual time
    for t in signals:
        assert [(v, pid) for _, v, pid in twin["accepted"][t]] == \
            [(v, "brain-%d" % v) for v in range(1, n_plans + 1)]
        got = [(d["version"], d["result"]) for d in real["verdicts"] if d["tls"] == t]
        assert got == [(v, "accepted") for v in range(1, n_plans + 1)], t
    rows = compare(twin, real)
    for r in rows:
        assert r["real"] and r["plan_id"][0] == r["plan_id"][1]
        # planned at the same instants of the run (the brain ticks every 100 ms; the real
        # one counts from its own start, a moment before SUMO's first step)
        assert abs(r["real_at_s"] - r["virtual_at_s"]) <= 1.0, r
        # the corridor's cycle: within one of the brain's own bounded steps (8 s)
        assert abs(r["cycle_diff"]) <= 8, r
    for d in real["verdicts"]:                # accepted within a second of publication
        pub = next(p["at_s"] for p in real["plans"] if (p["tls"], p["version"]) == (d["tls"], d["version"]))
        assert 0 <= d["at_s"] - pub <= 1.0, d


def test_plans_are_in_force_at_a_barrier_and_nothing_faults(runs):
    m, real, twin = runs
    assert real["agent_rc"] == {t: 0 for t in m.tls}
    assert real["mmu"] == {t: 0 for t in m.tls}
    assert real["faults"] == {} and twin["faults"] == {t: [] for t in m.tls}
    assert real["measures"]["collisions"] == 0 and real["measures"]["teleports"] == 0
    for t in m.tls:
        # telemetry (once a second) shows each agent running central plans from the first
        modes = [mode for _, mode in real["modes"][t]]
        assert modes[-1] == "central" and "flash" not in modes, (t, modes)
        versions = [v for _, v, pid, source in real["active"][t] if source == "central"]
        assert versions and versions[0] == 1 and versions == sorted(versions), (t, real["active"][t])
        # v1 in force within two cycles of its acceptance (coordination takes the new
        # offset at a barrier, by short-way transition), as in virtual time
        accepted = next(d["at_s"] for d in real["verdicts"] if d["tls"] == t and d["version"] == 1)
        active = next(at for at, v, _, _ in real["active"][t] if v == 1)
        assert accepted < active <= accepted + 2 * 60 + 1, (t, accepted, active)
        assert twin["activated"][t] and EVERY_S < twin["activated"][t][0] <= EVERY_S + 121


# The field log's clock: the emulator stamps a change when its thread handles the frame,
# so two changes the agent made exactly 2,000 ms apart can be stamped 1,999 ms apart
# (seen with two CPU hogs running). The minimums are read one control step (100 ms)
# short; conflicts are read exactly. The controller's own intervals are checked to the
# ms elsewhere (tests/test_safety.py, tests/test_cabinet.py).
STEP_S = 0.1


def field_card(card):
    """The card with every minimum one control step shorter (the field log's resolution)."""
    out = dict(card)
    out["channels"] = [dict(e, **{k: round(e[k] - STEP_S, 3) for k in
                                  ("min_green", "min_yellow", "min_red_clear", "red_revert",
                                   "min_ped_clear") if k in e})
                       for e in card["channels"]]
    return out


def test_field_card_reads_the_minimums_one_step_short():
    card = {"channels": [{"channel": 2, "min_green": 4.0, "min_yellow": 3.0, "min_red_clear": 1.0,
                          "red_revert": 2.0}], "permissive": [[2, 6]]}
    assert field_card(card) == {"channels": [{"channel": 2, "min_green": 3.9, "min_yellow": 2.9,
                                              "min_red_clear": 0.9, "red_revert": 1.9}],
                                "permissive": [[2, 6]]}


def test_the_cabinets_load_switches_never_showed_a_conflict_or_a_short_interval(runs):
    """The load switches' log of every cabinet through an independent MMU reading
    (tests/mmu_checker.py), from the all-red before the first green on; the start-up
    flash itself is checked in tests/test_cabinet.py."""
    m, real, _ = runs
    for t, log in real["field_logs"].items():
        card = field_card(m.tls[t].site["monitor"])
        chans = [e["channel"] for e in card["channels"]]
        first_green = [i for i, (_, f) in enumerate(log)
                       if any(f[ch - 1] == (False, False, True) for ch in chans)][0]
        start = max(i for i in range(first_green)
                    if all(log[i][1][ch - 1] == (True, False, False) for ch in chans))
        checker = MmuChecker(card, now=log[start][0])
        changes = 0
        for i, (ms, field) in enumerate(log[start:], start):
            veh = [DARK] * (MAX_PHASES + 1)
            for ch in chans:
                veh[ch] = COLOUR.get(field[ch - 1], DARK)
            why = checker.verdict(ms, veh, [0] * (MAX_PHASES + 1))
            assert why is None, (t, why, [(m - ms, "".join("RYG-"[COLOUR_INDEX.get(f[ch - 1], 3)]
                                                            for ch in chans))
                                          for m, f in log[max(start, i - 6):i + 1]])
            changes += 1
        # it ran: the load switches changed at least once a minute after start-up
        assert changes >= DURATION_S / 60, (t, changes)
