"""Starvation bound, garbage input, and proof that the safety harness can fail."""

import json
import random

import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from edge_agent.agent import Agent, Inputs
from edge_agent.intersection import parse_site, parse_site_json
from edge_agent.plan import parse_plan, parse_plan_json
from edge_agent.validate import ConfigError
from edge_agent.standard import standard_site, standard_plan
from edge_agent.indications import GREEN
from edge_agent import events as ev
from tests.safety_checker import SafetyChecker, SafetyViolation, worst_cycle_ms
from tests.test_safety import drive


def test_every_phase_called_continuously_is_served_within_the_max_cycle_bound():
    site_d = standard_site()
    site = parse_site(site_d)
    agent = Agent(site)
    bound = site.floors.max_cycle
    assert site.fallback_plan.worst_cycle <= bound
    on = {ch: True for ch in range(1, 17)}            # every zone occupied
    last_green = {p: 0 for p in range(1, 9)}
    gaps = {p: 0 for p in range(1, 9)}
    for t in range(0, 3_600_000, 100):
        out = agent.step(t, Inputs(detectors=on, peds={1: True, 2: True, 3: True, 4: True}))
        for p in range(1, 9):
            if out.vehicle[p] == GREEN:
                last_green[p] = t
            gaps[p] = max(gaps[p], t - last_green[p])
    # Every phase maxes out (lefts 20 + 3.5 + 1.5 s, throughs 40 + 4 + 1.5 s,
    # the 21 s walk + clearance fits inside): a cycle is 2 x 70.5 = 141.0 s, so
    # a left waits 141 - 20 = 121 s and a through 141 - 40 = 101 s.
    assert max(gaps.values()) <= bound
    assert gaps == {1: 121_000, 2: 101_000, 3: 121_000, 4: 101_000,
                    5: 121_000, 6: 101_000, 7: 121_000, 8: 101_000}


def test_garbage_detector_channels_are_ignored_not_raised():
    agent = Agent(parse_site(standard_site()))
    for t in range(0, 20_000, 100):
        out = agent.step(t, Inputs(detectors={99: True, -1: True}, pulses={77: 3}, peds={42: True}))
    assert out.fault is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)


def mutate(base, path_choice, value):
    """Replace one node of a valid config with an arbitrary JSON value."""
    nodes = []

    def walk(x, parent, key):
        nodes.append((parent, key))
        if isinstance(x, dict):
            for k in x:
                walk(x[k], x, k)
        elif isinstance(x, list):
            for i, v in enumerate(x):
                walk(v, x, i)
    walk(base, None, None)
    parent, key = nodes[path_choice % len(nodes)]
    if parent is None:
        return value
    parent[key] = value
    return base


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10_000), json_values)
def test_garbage_site_json_only_ever_raises_config_error(where, value):
    d = mutate(standard_site(), where, value)
    try:
        site = parse_site_json(json.dumps(d, allow_nan=True))
    except ConfigError as e:
        assert e.errors and all(": " in m for m in e.errors)
        return
    Agent(site).step(0)        # whatever parsed must be runnable


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10_000), json_values)
def test_garbage_plan_json_only_ever_raises_config_error(where, value):
    site = parse_site(standard_site())
    d = mutate(standard_plan(), where, value)
    try:
        parse_plan_json(json.dumps(d, allow_nan=True), site)
    except ConfigError as e:
        assert e.errors and all(": " in m for m in e.errors)


@given(st.text(max_size=200))
def test_random_text_is_refused_with_config_error(text):
    with pytest.raises(ConfigError):
        parse_site_json(text)


def test_safety_harness_catches_a_controller_with_a_short_yellow():
    """Mutation check: make the controller time yellow 0.5 s short; the run must fail."""
    site_d = standard_site()
    site = parse_site(site_d)
    agent = Agent(site)
    for p in site.phases:
        agent.controller.plan.yellow[p] -= 500
    checker = SafetyChecker(site_d, [site_d["fallback_plan"]])
    rng = random.Random(7)
    levels = {}
    with pytest.raises(SafetyViolation, match="rule 2: phase . yellow"):
        for t in range(0, 600_000, 100):
            for ch in range(1, 17):
                if rng.random() < 0.02:
                    levels[ch] = not levels.get(ch, False)
            out = agent.step(t, Inputs(detectors=dict(levels)))
            checker.check(t, out)
