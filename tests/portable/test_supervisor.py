"""Link supervision and plan source: central only on a healthy, stable link.

Standard site; heartbeats every 1 s from 0 ms while `central` is on. Policy:
loss after 3 s of heartbeat silence, 10 s of stable link before central
control, no hold-over. A central plan differs from the fallback by its id.
"""

from edge_agent.agent import Agent, Inputs
from edge_agent.intersection import parse_site
from edge_agent.plan import parse_plan
from edge_agent.standard import standard_site, standard_plan
from edge_agent.supervisor import CentralPlan, LinkPolicy, SOURCE_CENTRAL, SOURCE_LOCAL
from edge_agent import events as ev

SITE = parse_site(standard_site())
CENTRAL = parse_plan(standard_plan("central-7"), SITE)


def drive(until, connected=lambda t: True, beats=lambda t: t % 1_000 == 0, offer_at=0,
          expires_ms=None, policy=None, side_calls=(), wall=None):
    agent = Agent(SITE, link_policy=policy)
    log = []
    outs = {}
    for t in range(0, until, 100):
        inp = Inputs(link_up=connected(t), heartbeat=connected(t) and beats(t),
                     central_plan=CentralPlan(CENTRAL, 7, expires_ms) if t == offer_at else None,
                     pulses={12: 1} if t in side_calls else None,
                     wall_ms=wall(t) if wall else None)
        out = agent.step(t, inp)
        log.extend(out.events)
        outs[t] = out
    return agent, log, outs


def at(log, code):
    return [e[0] for e in log if e[1] == code]


def test_central_plan_waits_for_a_stable_link_then_the_next_barrier():
    # Side-street calls make the unit cross barriers at 19.5 s, 50.0 s ...
    _, log, outs = drive(60_000, side_calls=(5_000, 25_000, 45_000))
    assert at(log, ev.LINK_UP) == [10_000]                  # healthy from 0, stable 10 s
    assert at(log, ev.SOURCE_CENTRAL) == [10_000]
    assert at(log, ev.PLAN_PENDING) == [10_000]
    assert at(log, ev.PLAN_ACTIVATED) == [19_500]           # next barrier crossing
    assert outs[19_400].plan_id == "free" and outs[19_500].plan_id == "central-7"
    assert outs[19_500].source == SOURCE_CENTRAL and outs[19_500].link_up


def test_heartbeat_silence_is_a_link_loss_even_with_the_broker_connected():
    # Central stops its heartbeat after 30.0 s (last beat at 30.0 s).
    _, log, outs = drive(60_000, beats=lambda t: t % 1_000 == 0 and t <= 30_000,
                         side_calls=(5_000, 25_000, 45_000))
    assert at(log, ev.LINK_DOWN) == [33_000]                # exactly 3 s of silence
    assert at(log, ev.SOURCE_LOCAL) == [33_000]
    assert outs[33_000].source == SOURCE_LOCAL and not outs[33_000].link_up


def test_broker_loss_falls_back_to_the_local_plan_at_a_safe_point():
    # Connected until 30.0 s; the barrier after that brings the local plan back.
    _, log, outs = drive(120_000, connected=lambda t: t < 30_000,
                         side_calls=(5_000, 25_000, 45_000, 65_000))
    assert at(log, ev.LINK_DOWN) == [30_000]
    # Central from the barrier at 19.5 s; local again from the next one, 35.0 s.
    assert at(log, ev.PLAN_ACTIVATED) == [19_500, 35_000]
    assert 35_000 in at(log, ev.BARRIER_TERMINATION)
    assert outs[119_900].plan_id == "free"


def test_hold_over_keeps_the_central_plan_for_its_time():
    pol = LinkPolicy(loss_ms=3_000, holdover_ms=20_000, stable_ms=10_000)
    _, log, _ = drive(80_000, connected=lambda t: t < 30_000, policy=pol,
                      side_calls=(5_000, 25_000))
    assert at(log, ev.LINK_DOWN) == [30_000]
    assert at(log, ev.SOURCE_LOCAL) == [50_000]              # 20 s of hold-over


def test_a_flapping_link_never_returns_to_central():
    # Up for 8 s, down for 2 s, forever: never 10 s stable.
    _, log, outs = drive(120_000, connected=lambda t: t % 10_000 < 8_000)
    assert at(log, ev.LINK_UP) == []
    assert at(log, ev.SOURCE_CENTRAL) == []
    assert outs[119_900].source == SOURCE_LOCAL


def test_link_return_resumes_central_after_the_stable_time():
    _, log, _ = drive(120_000, connected=lambda t: not 30_000 <= t < 40_000,
                      side_calls=(5_000, 25_000, 45_000, 65_000, 85_000))
    assert at(log, ev.LINK_DOWN) == [30_000]
    assert at(log, ev.LINK_UP) == [10_000, 50_000]           # 40 s back + 10 s stable
    assert at(log, ev.SOURCE_CENTRAL) == [10_000, 50_000]


def test_an_expired_central_plan_returns_the_unit_to_local():
    wall = lambda t: 1_700_000_000_000 + t
    _, log, outs = drive(80_000, expires_ms=1_700_000_040_000, wall=wall,
                         side_calls=(5_000, 25_000, 45_000, 65_000))
    assert at(log, ev.CENTRAL_PLAN_EXPIRED) == [40_000]
    assert at(log, ev.SOURCE_LOCAL) == [40_000]
    assert outs[79_900].plan_id == "free"


def test_a_plan_hold_keeps_central_through_a_loss_until_it_ends():
    agent = Agent(SITE)
    log = []
    for t in range(0, 90_000, 100):
        up = t < 30_000
        out = agent.step(t, Inputs(link_up=up, heartbeat=up and t % 1_000 == 0,
                                   central_plan=CentralPlan(CENTRAL, 7) if t == 0 else None,
                                   hold_central_ms=60_000 if t < 60_000 else None,
                                   pulses={12: 1} if t in (5_000, 25_000) else None))
        log.extend(out.events)
    assert at(log, ev.LINK_DOWN) == [30_000]
    assert at(log, ev.SOURCE_LOCAL) == [60_000]              # the hold ended, not the loss
