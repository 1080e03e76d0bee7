"""The corridor loop in virtual time, on a bounded slice (three signals, six minutes):
agents report, the brain plans, every agent verifies and runs the plans; a source
reporting three times its volumes is flagged and no clean one is."""

import pytest

from edge_agent import events as ev
from hil.sumo import build as sb
from hil.sumo.netmap import link_counts, load_map

pytestmark = pytest.mark.sumo

SLICE = (300.0, 250.0, 400.0, 300.0)     # W-J1, J1-J2, J2-J3, J3-E
DURATION = 330.0                          # the first plan comes at 300 s


@pytest.fixture(scope="module")
def corridor(tmp_path_factory):
    if not sb.sumo_available():
        pytest.skip("Eclipse SUMO is not installed (the 'sumo' extra)")
    from hil.sumo.corridor import build_corridor
    c = build_corridor(SLICE, cache_dir=tmp_path_factory.mktemp("corridor"))
    return c, load_map(c.map, link_counts(c.net))


def test_agents_take_the_brains_plans_at_a_barrier(corridor):
    from hil.sumo.corridor_run import run_case, WALL0
    c, m = corridor
    r = run_case("agents-brain", c, m, DURATION, seed=2)
    loop = r["loop"]
    assert r["faults"] == {"J1": [], "J2": [], "J3": []}
    assert loop.rejected == []
    assert [w - WALL0 for w, _, _ in loop.plans] == [300.0]
    assert {t: [(ms, v, pid) for ms, v, pid in a] for t, a in loop.accepted.items()} == \
        {t: [(300_000, 1, "brain-1")] for t in ("J1", "J2", "J3")}
    assert loop.flag_log == []
    for tls, log in r["events"].items():
        central = [t for t, code, _ in log if code == ev.SOURCE_CENTRAL]
        active = [t for t, code, _ in log if code == ev.PLAN_ACTIVATED]
        barriers = set(t for t, code, _ in log if code == ev.BARRIER_TERMINATION)
        assert central == [300_000], tls
        assert len(active) == 1 and active[0] in barriers, tls


def test_a_source_reporting_three_times_its_volumes_is_flagged_alone(corridor):
    from hil.sumo.corridor_run import run_case
    c, m = corridor
    r = run_case("scaled-3x", c, m, DURATION, seed=2)       # the third signal of the slice: J3
    flagged = sorted(set(f[1] for f in r["loop"].flag_log))
    assert flagged == ["J3"]
    assert r["loop"].flag_log[0][2].startswith("inconsistent with J2: phase 2: ")


def test_the_escort_brings_emergency_vehicles_through_faster_than_without_preemption(tmp_path_factory):
    """The same slice, demand and seed with an emergency vehicle each way early on: agents with
    the brain (no preemption) against agents with the brain and its escort."""
    if not sb.sumo_available():
        pytest.skip("Eclipse SUMO is not installed (the 'sumo' extra)")
    from hil.sumo.corridor import build_corridor
    from hil.sumo.corridor_run import ev_routes, run_case
    c = build_corridor(SLICE, cache_dir=tmp_path_factory.mktemp("escort"),
                       ev_departs=[(20.0, "EB"), (60.0, "WB")])
    m = load_map(c.map, link_counts(c.net))
    assert {v: sig for v, (_, _, sig) in ev_routes(c).items()} == {
        "EV_EB.0": [("J1", 293.34, 1), ("J2", 544.34, 1), ("J3", 945.34, 1)],
        "EV_WB.0": [("J3", 293.34, 2), ("J2", 694.34, 2), ("J1", 945.34, 2)]}
    without = run_case("agents-brain", c, m, 200.0, seed=2)
    with_ = run_case("agents-escort", c, m, 200.0, seed=2)
    for r in (without, with_):
        assert r["faults"] == {"J1": [], "J2": [], "J3": []}
        assert r["measures"]["ev_trips"] == 2 and r["measures"]["collisions"] == 0
    assert without["measures"]["ev_travel_time_s"] == 106.3
    assert with_["measures"]["ev_travel_time_s"] == 90.05
    # SUMO's time loss of the two: 16.5 s each on average without, 0.25 s with the escort
    assert (without["measures"]["ev_time_loss_s"], with_["measures"]["ev_time_loss_s"]) == (16.5, 0.25)
    loop = with_["loop"]
    assert loop.rejected == []
    # each signal: its preempt called (102) by the escort's request, cleared (104) once passed
    calls = {t: [(ms, code, n) for ms, code, n in log if code in (ev.PREEMPT_CALL_ON, ev.PREEMPT_CALL_OFF)]
             for t, log in with_["events"].items()}
    assert calls == {"J1": [(31_700, 102, 1), (44_100, 104, 1), (118_900, 102, 2), (130_100, 104, 2)],
                     "J2": [(50_100, 102, 1), (62_100, 104, 1), (100_800, 102, 2), (112_100, 104, 2)],
                     "J3": [(71_700, 102, 2), (79_000, 102, 1), (84_100, 104, 2), (92_100, 104, 1)]}
    assert [e for e in without["events"]["J1"] if e[1] in (ev.PREEMPT_CALL_ON, 105)] == []


def test_hil_corridor_command_writes_one_atspm_export_per_intersection_and_agent_run(tmp_path):
    """`edge-agent hil corridor --export`, a minute of the whole corridor: every agent run
    (free, with the brain, with the escort) exports each of the six signals' logs, stamped
    with the rig's wall clock (2026-01-01 00:00 UTC) in the site's zone."""
    import csv
    import json
    import subprocess
    import sys
    if not sb.sumo_available():
        pytest.skip("Eclipse SUMO is not installed (the 'sumo' extra)")
    out = tmp_path / "export"
    r = subprocess.run([sys.executable, "-m", "tools.cli", "hil", "corridor", "--duration", "60",
                        "--seeds", "1", "--no-faults", "--export", str(out),
                        "--json", str(tmp_path / "c.json")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    cases = ("agents-free", "agents-brain", "agents-escort")
    assert sorted(p.name for p in out.iterdir()) == sorted("seed1-" + c for c in cases)
    for case in cases:
        assert sorted(p.name for p in (out / ("seed1-" + case)).iterdir()) == \
            ["J1", "J2", "J3", "J4", "J5", "J6"]
    with open(out / "seed1-agents-free" / "J1" / "events.csv") as f:
        rows = list(csv.reader(f))
    assert rows[:3] == [["TimeStamp", "DeviceId", "EventId", "Parameter"],
                        ["2026-01-01 00:00:00.000+00:00", "J1", "4252", "1"],
                        ["2026-01-01 00:00:00.000+00:00", "J1", "4204", "0"]]
    assert all(row[1] == "J1" for row in rows[1:])
    assert rows[-1][0] < "2026-01-01 00:01:00.1"        # nothing past the minute run
    with open(out / "seed1-agents-free" / "J1" / "detectors.csv") as f:
        dets = list(csv.reader(f))
    assert dets[0] == ["DeviceId", "Phase", "Parameter", "Function"] and len(dets) == 9
    runs = json.loads((tmp_path / "c.json").read_text())["runs"]
    assert [len(d["export"]) for c in cases for d in runs[c]] == [6, 6, 6]
