"""The SUMO bridge of the HIL rig: network, mapping, bridge, SUMO's programs,
and the edge agent driving the SUMO intersection.

Tests that need SUMO skip, with the reason, only when Eclipse SUMO is not
installed (pip install eclipse-sumo==1.28.0 libsumo==1.28.0 traci==1.28.0,
the project's 'sumo' extra).
"""

import json

import pytest

from edge_agent.indications import DARK, RED, YELLOW, GREEN, FLASH_RED, FLASH_YELLOW
from hil.sumo import build as sb
from hil.sumo.bridge import SumoBridge, run_sumo_program

SKIP_REASON = ("Eclipse SUMO is not installed: pip install eclipse-sumo==1.28.0 "
               "libsumo==1.28.0 traci==1.28.0 (the 'sumo' extra)")

pytestmark = pytest.mark.sumo

STOP_BAR_CHANNELS = list(range(1, 11))
LEFTS = (1, 3, 5, 7)


def _require_sumo():
    if not sb.sumo_available():
        pytest.skip(SKIP_REASON)
    try:
        import libsumo  # noqa: F401
    except ImportError:
        pytest.importorskip("traci", reason=SKIP_REASON)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    _require_sumo()
    return tmp_path_factory.mktemp("sumo-cache")


@pytest.fixture(scope="module")
def built(cache):
    return sb.build_network(cache_dir=cache)


def _all(ind):
    v = [DARK] * 17
    for p in range(1, 9):
        v[p] = ind
    return v


# ---------------------------------------------------------------- without SUMO

def test_state_string_follows_the_phase_indications():
    br = SumoBridge()            # not started: needs only the mapping
    phases = br.mapping["phases"]
    assert br.state_string(_all(RED)) == "r" * 14
    v = _all(RED)
    v[2] = GREEN
    v[6] = YELLOW
    s = br.state_string(v)
    for i, ch in enumerate(s):
        if i in phases["2"]["links"]:
            assert ch == "G"
        elif i in phases["6"]["links"]:
            assert ch == "y"
        else:
            assert ch == "r"
    assert br.state_string(_all(FLASH_RED)) == "s" * 14     # stop, then go
    assert br.state_string(_all(FLASH_YELLOW)) == "o" * 14  # yield
    with pytest.raises(ValueError):
        br.state_string([DARK] + [9] * 16)


def test_site_matches_the_mapping():
    from edge_agent.intersection import parse_site
    site_dict = sb.load_site()
    site = parse_site(site_dict)
    mapping = sb.load_mapping()
    by_channel = {d["channel"]: d["phase"] for d in mapping["detectors"]}
    assert {d.channel: d.phase for d in site.detectors} == by_channel
    assert sorted(site.phases) == sorted(int(p) for p in mapping["phases"])


# ---------------------------------------------------------------- network

def test_network_links_each_driven_by_exactly_one_phase(built):
    links = built.links
    assert len(links) == 14 == built.mapping["link_count"]
    seen = []
    approaches = built.mapping["approaches"]
    for p, v in built.mapping["phases"].items():
        p = int(p)
        for i in v["links"]:
            seen.append(i)
            link = links[i]
            dirs = {"l"} if p in LEFTS else {"s", "r"}
            assert link["dir"] in dirs, (p, link)
            movement_edges = {approaches[m.split()[0]]["from"] for m in v["movements"]}
            assert link["from"] in movement_edges, (p, link)
    assert sorted(seen) == list(range(14))
    # every right turn goes with a through phase
    rights = [i for i, link in enumerate(links) if link["dir"] == "r"]
    assert len(rights) == 4
    lanes = sb.read_lane_lengths(built.net)
    for d in built.mapping["detectors"]:
        assert d["lane"] in lanes


def test_build_is_deterministic(tmp_path, built):
    other = sb.build_network(cache_dir=tmp_path, force=True)
    assert other.net.read_bytes() == built.net.read_bytes()
    assert other.detectors.read_bytes() == built.detectors.read_bytes()


# ---------------------------------------------------------------- SUMO's programs

def test_static_program_is_seeded_and_exact(cache):
    a = run_sumo_program("static", duration_s=600, seed=42, cache_dir=cache)
    b = run_sumo_program("static", duration_s=600, seed=42, cache_dir=cache)
    assert a == b
    assert a["teleports"] == 0 and a["collisions"] == 0
    assert a["completed"] > 300 and a["mean_time_loss_s"] > 0
    if sb.netconvert_version().endswith("1.28.0"):
        assert (a["loaded"], a["completed"], a["unfinished"]) == (420, 359, 61)
    c = run_sumo_program("static", duration_s=600, seed=7, cache_dir=cache)
    assert c["loaded"] != a["loaded"] or c["completed"] != a["completed"]
    act = run_sumo_program("actuated", duration_s=600, seed=42, cache_dir=cache)
    assert act["completed"] > 300 and act["teleports"] == 0


# ---------------------------------------------------------------- bridge

HEAVY = {a: {"through": 900, "left": 600, "right": 100} for a in ("EB", "WB", "NB", "SB")}


def test_all_red_holds_every_vehicle_at_the_stop_bar(cache):
    with SumoBridge(seed=3, demand=HEAVY, cache_dir=cache) as br:
        for _ in range(600):                 # 60 s
            r = br.step(_all(RED))
        assert r.time_ms == 60000
        assert br.exit_count == 0
        for edge in ("C2E", "C2W", "C2N", "C2S"):
            assert br.vehicles_on(edge) == []
        assert all(r.detectors[ch] for ch in STOP_BAR_CHANNELS), r
        conn = br.traci
        lengths = sb.read_lane_lengths(br.build.net)
        for d in br.mapping["detectors"][:10]:
            ids = conn.lane.getLastStepVehicleIDs(d["lane"])
            lead = max(ids, key=conn.vehicle.getLanePosition)
            assert conn.vehicle.getSpeed(lead) < 0.1
            assert conn.vehicle.getLanePosition(lead) > lengths[d["lane"]] - 3.0
        m = br.close()
    assert m["completed"] == 0 and m["exit_count"] == 0


def test_green_on_phase_2_releases_only_eb_through_and_right(cache):
    with SumoBridge(seed=5, demand=HEAVY, cache_dir=cache) as br:
        for _ in range(300):
            br.step(_all(RED))
        v = _all(RED)
        v[2] = GREEN
        for _ in range(600):
            r = br.step(v)
        assert br.exit_count >= 8
        movements = {vid.split(".")[0] for vid in br.exited}
        assert movements == {"EB_through", "EB_right"}
        assert r.detectors  # the loops still report
        m = br.close()
    assert set(m["by_movement"]) <= {"EB_through", "EB_right"}


def test_traci_and_libsumo_see_the_same_detectors(cache):
    pytest.importorskip("libsumo", reason="libsumo not installed")
    pytest.importorskip("traci", reason="traci not installed")
    streams = []
    for use_libsumo in (True, False):
        with SumoBridge(seed=11, cache_dir=cache, use_libsumo=use_libsumo) as br:
            v = _all(RED)
            out = []
            for i in range(300):
                v[2] = v[6] = GREEN if i >= 100 else RED
                r = br.step(v)
                out.append((r.time_ms, sorted(r.detectors.items()), sorted(r.pulses.items())))
            streams.append((out, br.exited))
    assert streams[0] == streams[1]


# ---------------------------------------------------------------- the agent on SUMO

def test_agent_runs_ten_minutes_on_sumo_without_stuck_vehicles(cache):
    run = pytest.importorskip("hil.sumo.run", reason="edge_agent.agent not available yet")
    res = run.run_agent_on_sumo(sb.load_site(), duration_s=600, seed=42, cache_dir=cache)
    m = res["measures"]
    assert m["agent_faults"] == [] and m["agent_mode"] == "run"
    assert m["teleports"] == 0 and m["collisions"] == 0
    # every vehicle that entered in the first 8 minutes has left the network
    assert m["oldest_unfinished_depart_s"] is None or m["oldest_unfinished_depart_s"] >= 480
    assert m["waiting_to_insert"] == 0
    assert m["completed"] > 300
    assert 0 < m["mean_time_loss_s"] < 60
    # every phase was served and ended by gap-out or max-out
    assert set(res["terminations"]) == set(range(1, 9))
    json.dumps(m)   # the measures are plain data
