"""Event-driven stepping in the SUMO multi-intersection rig: each agent stepped only at
a loop change or its next_ms gives the same event log (and so the same lights and the
same traffic) as every agent stepped every 100 ms, with far fewer steps."""

import pytest

from hil.sumo import build as sb
from hil.sumo.netmap import link_counts, load_map

pytestmark = pytest.mark.sumo

SLICE = (300.0, 250.0, 400.0, 300.0)     # three signals
DURATION = 600.0


@pytest.fixture(scope="module")
def corridor(tmp_path_factory):
    if not sb.sumo_available():
        pytest.skip("Eclipse SUMO is not installed (the 'sumo' extra)")
    from hil.sumo.corridor import build_corridor
    c = build_corridor(SLICE, cache_dir=tmp_path_factory.mktemp("corridor"))
    return c, load_map(c.map, link_counts(c.net))


def test_event_driven_rig_matches_stepping_every_tick(corridor):
    from hil.sumo.network_rig import run_agents
    c, m = corridor
    routes, add = [c.routes, c.ev_routes], [c.loops]
    tick = run_agents(m, c.net, routes, add, DURATION, seed=3)
    event = run_agents(m, c.net, routes, add, DURATION, seed=3, event_driven=True)
    assert tick["faults"] == event["faults"] == {"J1": [], "J2": [], "J3": []}
    assert sorted(event["events"]) == ["J1", "J2", "J3"]
    for tls in tick["events"]:
        assert event["events"][tls] == tick["events"][tls], tls
    assert event["measures"] == tick["measures"]
    assert tick["agent_steps"] == 3 * 6000
    assert event["agent_steps"] < tick["agent_steps"] // 2


def test_event_driven_rig_refuses_hooks_that_do_not_declare_it(corridor):
    from hil.sumo.network_rig import run_agents
    c, m = corridor
    with pytest.raises(ValueError, match="event-driven stepping takes only hooks that give"):
        run_agents(m, c.net, [c.routes], [c.loops], 10.0, hooks=object(), event_driven=True)


def test_event_driven_with_the_brain_and_its_escort_matches_stepping_every_tick(corridor):
    """The brain's loop (telemetry, heartbeats, signed plans, the escort's priority
    requests) gives inputs only on a change: the agents' logs, the brain's plans and
    the traffic are those of stepping every tick."""
    from hil.sumo.corridor_run import BrainLoop, brain_config, ev_routes, probe_routes
    from hil.sumo.network_rig import run_agents
    c, m = corridor
    routes, add = [c.routes, c.ev_routes], [c.loops]
    cfg = brain_config(m, c, first_plan_s=120, plan_every_s=120, window_s=120, bin_s=10)
    runs = []
    for event_driven in (False, True):
        loop = BrainLoop(m, cfg, seed=3, escort=ev_routes(c), probes=(0.1, probe_routes(c, cfg)))
        r = run_agents(m, c.net, routes, add, DURATION, seed=3, hooks=loop, event_driven=event_driven)
        runs.append((r, loop))
    (tick, a), (event, b) = runs
    assert tick["faults"] == event["faults"] == {"J1": [], "J2": [], "J3": []}
    assert [t for t, _, _ in a.plans] == [t for t, _, _ in b.plans] and len(a.plans) == 5
    assert a.plans == b.plans and a.accepted == b.accepted and a.priority == b.priority
    assert sum(len(p) for p in a.priority.values()) > 0          # the escort did call
    for tls in tick["events"]:
        assert event["events"][tls] == tick["events"][tls], tls
    assert event["measures"] == tick["measures"]
    print("agent steps: every tick %d, event-driven %d" % (tick["agent_steps"],
                                                            event["agent_steps"]))
    # preempts and priority requests step every tick; a cycle timer steps at its cycle
    # end, yield points and force-offs (15,045 of 18,000 before next_ms modelled it)
    assert 3 * 6000 == tick["agent_steps"] and event["agent_steps"] < 3 * 6000 // 2
