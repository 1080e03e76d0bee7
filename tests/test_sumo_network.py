"""Any SUMO network in the rig: the map helper, the map format, many agents in one simulation.

The network is a two-signal slice of the project's corridor (hil/sumo/corridor.py):
arterial approaches with a left-turn bay, single-lane side streets whose left
turn shares the lane with the through movement.
"""

import json

import pytest

from edge_agent.indications import GREEN, RED, YELLOW, FLASH_RED
from edge_agent.intersection import parse_site
from hil.sumo import build as sb
from hil.sumo import netmap
from hil.sumo.netmap import MapError, load_map, parse_map, read_net, starting_map

pytestmark = pytest.mark.sumo

SLICE = (300.0, 250.0, 300.0)       # W-J1, J1-J2, J2-E


@pytest.fixture(scope="module")
def corridor(tmp_path_factory):
    if not sb.sumo_available():
        pytest.skip("Eclipse SUMO is not installed (the 'sumo' extra)")
    from hil.sumo.corridor import build_corridor
    return build_corridor(SLICE, cache_dir=tmp_path_factory.mktemp("corridor"))


def _vec(**ind):
    v = [RED] * 17
    for p, x in ind.items():
        v[int(p[1:])] = x
    v[0] = 0
    return v


def test_map_helper_makes_shared_lane_lefts_permissive_only(corridor, tmp_path):
    out = starting_map(corridor.net, tmp_path, "slice")
    m = json.loads(out["map"].read_text())
    j1 = m["tls"]["J1"]
    assert sorted(j1["phases"]) == ["1", "2", "4", "5", "6", "8"]    # no side-street left phase
    # side streets (one lane): left, through and right on lane 0; the left is g in the through phase
    assert j1["phases"]["8"]["G"] == [0, 1] and j1["phases"]["8"]["g"] == [2]
    assert j1["phases"]["4"]["G"] == [7, 8] and j1["phases"]["4"]["g"] == [9]
    # arterial bay: protected in its left phase, permissive in the through phase
    assert j1["phases"]["5"] == {"name": "EB left", "G": [13], "g": [], "yellow": "y", "red": "r"}
    assert j1["phases"]["2"]["G"] == [10, 11, 12] and j1["phases"]["2"]["g"] == [13]
    assert j1["loops"] == {"J1_J1N_J1_0": 1, "J1_J1S_J1_0": 2, "J1_J2_J1_0": 3, "J1_J2_J1_1": 4,
                           "J1_J2_J1_2": 5, "J1_W_J1_0": 6, "J1_W_J1_1": 7, "J1_W_J1_2": 8}
    # the permissive links are exactly the left turns SUMO's own program shows as 'g'
    links, _, _ = read_net(corridor.net)
    sumo_g = sorted(ln["index"] for ln in links["J1"] if ln["permissive_in_sumo"] and ln["dir"] == "l")
    helper_g = sorted(i for p in j1["phases"].values() for i in p["g"])
    assert helper_g == [2, 6, 9, 13]
    assert set([2, 9]) <= set(sumo_g)
    site = json.loads((tmp_path / "J1.site.json").read_text())
    s = parse_site(site)
    assert s.phases == [1, 2, 4, 5, 6, 8]
    assert [(d.channel, d.phase) for d in s.detectors] == [(1, 8), (2, 4), (3, 6), (4, 6), (5, 1),
                                                         (6, 2), (7, 2), (8, 5)]


def test_link_states_follow_the_phases(corridor):
    m = load_map(corridor.map, netmap.link_counts(corridor.net))
    t = m.tls["J1"]
    assert t.state(_vec(p2=GREEN, p6=GREEN)) == "rrrGGGgrrrGGGg"
    assert t.state(_vec(p2=GREEN, p5=GREEN)) == "rrrrrrrrrrGGGG"
    assert t.state(_vec(p2=GREEN, p5=YELLOW)) == "rrrrrrrrrrGGGg"
    assert t.state(_vec(p2=YELLOW, p6=YELLOW)) == "rrryyyyrrryyyy"
    assert t.state(_vec(p4=GREEN, p8=GREEN)) == "GGgrrrrGGgrrrr"
    assert t.state(_vec()) == "r" * 14
    flash = [FLASH_RED] * 17
    assert t.state(flash) == "s" * 14


def test_a_map_that_leaves_a_link_undriven_is_refused_with_every_reason(corridor):
    d = json.loads(corridor.map.read_text())
    d["tls"]["J1"]["phases"]["8"]["G"] = [0]          # link 1 now driven by nothing
    d["tls"]["J2"]["phases"]["2"]["G"].append(99)
    with pytest.raises(MapError) as e:
        parse_map(d, corridor.dir, netmap.link_counts(corridor.net))
    assert e.value.errors == ["map: tls.J1: link 1 is driven by no phase",
                              "map: tls.J2.phases.2.G: link 99 outside 0..13"]


def test_agents_drive_both_signals_of_one_simulation(corridor):
    from hil.sumo.network_rig import run_agents
    m = load_map(corridor.map, netmap.link_counts(corridor.net))
    r = run_agents(m, corridor.net, [corridor.routes, corridor.ev_routes], [corridor.loops],
                   duration_s=300.0, seed=3)
    assert r["faults"] == {"J1": [], "J2": []}
    assert r["steps"] == 3000
    ms = r["measures"]
    assert ms["collisions"] == 0 and ms["teleports"] == 0
    # pinned for seed 3 (SUMO is deterministic for a seed): 5-minute slice
    assert (ms["completed"], ms["e2e_trips"], ms["pushes"]) == PINNED


PINNED = (72, 44, 81)


def test_cli_writes_a_starting_map_and_refuses_a_map_that_does_not_fit(corridor, tmp_path, capsys):
    from tools.cli import main
    assert main(["hil", "sumo", "map", str(corridor.net), "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["J1.site.json", "J2.site.json",
                                                          "corridor.loops.add.xml", "corridor.map.json"]
    d = json.loads((tmp_path / "corridor.map.json").read_text())
    d["tls"]["J2"]["link_count"] = 12
    (tmp_path / "corridor.map.json").write_text(json.dumps(d))
    capsys.readouterr()
    assert main(["hil", "sumo", "--net", str(corridor.net), "--routes", str(corridor.routes),
                 "--map", str(tmp_path / "corridor.map.json")]) == 2
    err = capsys.readouterr().err
    assert "tls.J2.link_count: 12, but the network's light has 14 links" in err
