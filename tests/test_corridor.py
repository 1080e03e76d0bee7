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
