"""Site and plan validation: every problem named with its path and rule."""

from edge_agent.intersection import parse_site, parse_site_json
from edge_agent.plan import parse_plan
from edge_agent.validate import ConfigError
from edge_agent.standard import standard_site, standard_plan


def errors_of(fn, *args):
    try:
        fn(*args)
    except ConfigError as e:
        return e.errors
    raise AssertionError("no ConfigError raised")


def test_standard_site_parses_with_dual_ring_conflicts():
    site = parse_site(standard_site())
    assert site.phases == [1, 2, 3, 4, 5, 6, 7, 8]
    assert site.conflict(1, 2) and site.conflict(2, 3) and site.conflict(2, 8)
    assert not site.conflict(2, 6) and not site.conflict(1, 5) and not site.conflict(4, 7)
    assert site.fallback_plan.min_green[2] == 10_000
    assert site.fallback_plan.passage[1] == 2_000
    assert site.fallback_plan.worst_cycle == 2 * (max(40_000, 21_000) + 5_500 + 20_000 + 5_000)


def test_explicit_conflict_tightens_the_relation():
    d = standard_site()
    d["conflicts"] = [[1, 6]]
    d["monitor"]["permissive"].remove([1, 6])      # the card says the same, independently
    site = parse_site(d)
    assert site.conflict(1, 6) and site.conflict(6, 1)
    assert not site.conflict(1, 5)


def test_yellow_below_the_site_floor_names_path_and_rule():
    site = parse_site(standard_site())
    plan = standard_plan()
    plan["phases"][4]["yellow"] = 2.5
    assert errors_of(parse_plan, plan, site) == [
        "phases[4].yellow: 2.5 s is below the site minimum 3.0 s"]


def test_all_plan_errors_are_reported_at_once():
    site = parse_site(standard_site())
    plan = standard_plan()
    plan["phases"][0]["min_green"] = 2.0
    plan["phases"][1]["ped_clear"] = 3.0
    plan["phases"][2]["passage"] = 2.55
    plan["phases"][3]["recall"] = "sometimes"
    plan["phases"][5]["phase"] = 17
    assert errors_of(parse_plan, plan, site) == [
        "phases[0].min_green: 2.0 s is below the site minimum green 4.0 s",
        "phases[1].ped_clear: 3.0 s is below the site minimum pedestrian clearance 7.0 s",
        "phases[2].passage: 2.55 s is not a multiple of 0.1 s",
        "phases[3].recall: 'sometimes' is not one of none, min, max, ped",
        "phases[5].phase: 17 is not a phase of this site",
        "phases: phase 6 has no timing (list it, with \"omit\": true if unused)",
    ]


def test_sequence_that_breaks_the_barrier_is_refused():
    site = parse_site(standard_site())
    plan = standard_plan()
    plan["sequence"] = [[1, 3, 2, 4], [5, 6, 7, 8]]
    assert errors_of(parse_plan, plan, site) == [
        "sequence[0]: [1, 3, 2, 4] breaks the barrier structure: phases of one barrier "
        "group must run together and groups in barrier order [0, 1, 0, 1]"]


def test_lead_lag_sequence_inside_a_barrier_group_is_accepted():
    site = parse_site(standard_site())
    plan = standard_plan()
    plan["sequence"] = [[2, 1, 3, 4], [5, 6, 8, 7]]
    pl = parse_plan(plan, site)
    assert pl.ring_groups[0][0] == [2, 1] and pl.ring_groups[1][1] == [8, 7]


def test_worst_case_cycle_above_site_maximum_is_refused():
    site = parse_site(standard_site())
    plan = standard_plan()
    for t in plan["phases"]:
        t["max_green"] = 120.0
    assert errors_of(parse_plan, plan, site) == [
        "phases: worst-case cycle 501.0 s (max greens + clearances) exceeds the site "
        "maximum cycle 240.0 s"]


def test_site_errors_name_every_problem():
    d = standard_site()
    d["phases"][3]["phase"] = 2
    d["detectors"][0]["phase"] = 9
    d["floors"]["min_yellow"] = 2.0
    d["startup"]["phases"] = [2, 4]
    d["colour"] = "blue"
    errs = errors_of(parse_site, d)
    assert "site: unknown key 'colour'" in errs
    assert "phases[3].phase: phase 2 is listed twice" in errs
    assert "detectors[0].phase: 9 is not a phase of this site" in errs
    assert "floors.min_yellow: 2.0 s is outside 3.0..10.0 s" in errs
    assert "rings[0][3]: 4 is not a phase of this site" in errs


def test_startup_phases_must_be_compatible():
    d = standard_site()
    d["startup"]["phases"] = [2, 4]
    assert errors_of(parse_site, d) == [
        "startup.phases[1]: phase 4 conflicts with start-up phase 2"]


def test_fallback_plan_errors_carry_their_path():
    d = standard_site()
    d["fallback_plan"]["phases"][7]["red_clear"] = 0.5
    assert errors_of(parse_site, d) == [
        "fallback_plan.phases[7].red_clear: 0.5 s is below the site minimum red clearance 1.0 s"]


def test_ring_crossing_a_barrier_backwards_is_refused():
    d = standard_site()
    d["rings"] = [[1, 3, 2, 4], [5, 6, 7, 8]]
    errs = errors_of(parse_site, d)
    assert errs == ["rings[0]: phases [1, 3, 2, 4] cross the barriers out of order (groups [0, 1, 0, 1])"]


def test_not_json_is_a_config_error():
    errs = errors_of(parse_site_json, "{not json")
    assert len(errs) == 1 and errs[0].startswith("site: not valid JSON")


def test_wrong_types_are_named():
    d = standard_site()
    d["floors"]["min_green"] = "ten"
    d["detectors"][2]["locking"] = 1
    d["phases"][0] = 5
    errs = errors_of(parse_site, d)
    assert "floors.min_green: must be a number of seconds, got a string" in errs
    assert "detectors[2].locking: must be true or false, got a number" in errs
    assert "phases[0]: must be an object, got a number" in errs


def test_two_detectors_without_a_channel_are_named_not_a_crash():
    d = standard_site()
    d["detectors"] = [{}, {}]
    d["ped_detectors"] = [{}, {}]
    errs = errors_of(parse_site, d)
    assert "detectors[1].channel: must be an integer, got null" in errs
    assert "ped_detectors[1].channel: must be an integer, got null" in errs
