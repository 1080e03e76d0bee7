"""`edge-agent config`: clear messages for bad files, never a traceback."""

import json
import subprocess
import sys

from edge_agent.standard import standard_site, standard_plan


def run(*args):
    return subprocess.run([sys.executable, "-m", "tools.cli", "config", *args],
                          capture_output=True, text=True)


def test_good_site_and_plan_check_ok(tmp_path):
    site = tmp_path / "site.json"
    site.write_text(json.dumps(standard_site()))
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(standard_plan("am-peak")))
    r = run("check", str(site), str(plan))
    assert r.returncode == 0
    assert ("demo-0001, 8 phases in 2 rings, 16 detectors, monitor card 8 channels 8 permissive "
            "pairs, fallback plan 'free' (worst-case cycle 141.0 s)") in r.stdout
    assert "plan 'am-peak', free, worst-case cycle 141.0 s" in r.stdout


def test_bad_plan_lists_every_problem_and_exits_1(tmp_path):
    site = tmp_path / "site.json"
    site.write_text(json.dumps(standard_site()))
    bad = standard_plan()
    bad["phases"][4]["yellow"] = 2.5
    bad["phases"][0]["min_green"] = 1.0
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(bad))
    r = run("check", str(site), str(plan))
    assert r.returncode == 1
    assert "phases[0].min_green: 1.0 s is below the site minimum green 4.0 s" in r.stderr
    assert "phases[4].yellow: 2.5 s is below the site minimum 3.0 s" in r.stderr
    assert "Traceback" not in r.stderr


def test_missing_and_garbage_files_are_reported_plainly(tmp_path):
    r = run("check", str(tmp_path / "nope.json"))
    assert r.returncode == 2 and "cannot read" in r.stderr and "Traceback" not in r.stderr
    junk = tmp_path / "junk.json"
    junk.write_bytes(b"\x00\xff{{{")
    r = run("check", str(junk))
    assert r.returncode in (1, 2) and "Traceback" not in r.stderr


def test_example_prints_a_site_that_checks(tmp_path):
    r = run("example")
    site = tmp_path / "site.json"
    site.write_text(r.stdout)
    assert run("check", str(site)).returncode == 0


def test_finding2_barrier_typo_is_refused_naming_phases_3_and_6(tmp_path):
    d = standard_site()
    d["barriers"] = [[1, 2, 5, 6, 3], [4, 7, 8]]
    site = tmp_path / "typo.json"
    site.write_text(json.dumps(d))
    r = run("check", str(site))
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        "%s: 4 problem(s)" % site,
        "  monitor.permissive: phases 3 and 5 can time together (rings 1/2, barriers 1/1) but "
        "the monitor does not permit channels 3 and 5: fix the rings/barriers or the card",
        "  monitor.permissive: phases 3 and 6 can time together (rings 1/2, barriers 1/1) but "
        "the monitor does not permit channels 3 and 6: fix the rings/barriers or the card",
        "  monitor.permissive: channels 3 and 7 are permissive on the card but the controller "
        "never times phases 3 and 7 together: a card wider than the design weakens the monitor",
        "  monitor.permissive: channels 3 and 8 are permissive on the card but the controller "
        "never times phases 3 and 8 together: a card wider than the design weakens the monitor"]
    # the same site with its card edited to match is accepted: the check is exact, not blanket
    d["monitor"]["permissive"] = [[1, 5], [1, 6], [2, 5], [2, 6], [3, 5], [3, 6],
                                  [4, 7], [4, 8]]
    site.write_text(json.dumps(d))
    r = run("check", str(site))
    assert r.returncode == 0, r.stderr
    assert "monitor card 8 channels 8 permissive pairs" in r.stdout


def test_finding6_every_problem_of_site_and_plans_in_one_run(tmp_path):
    d = standard_site()
    d["detectors"][0]["phase"] = 12
    d["fallback_plan"]["phases"][3]["yellow"] = 2.5
    site = tmp_path / "site.json"
    site.write_text(json.dumps(d))
    bad = standard_plan("pm")
    bad["phases"][1]["red_clear"] = 0.8
    bad["phases"][2]["red_revert"] = 1.5
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(bad))
    r = run("check", str(site), str(plan))
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        "%s: 2 problem(s)" % site,
        "  detectors[0].phase: 12 is not a phase of this site",
        "  fallback_plan.phases[3].yellow: 2.5 s is below the site minimum 3.0 s",
        "%s: 2 problem(s)" % plan,
        "  phases[1].red_clear: 0.8 s is below the site minimum red clearance 1.0 s",
        "  phases[2].red_revert: 1.5 s is below the site minimum red revert 2.0 s"]


def test_plan_below_the_monitor_card_is_refused_before_it_can_trip_it(tmp_path):
    d = standard_site()
    d["monitor"]["channels"][3]["min_yellow"] = 4.5      # the card asks more than the floors
    site = tmp_path / "site.json"
    site.write_text(json.dumps(d))
    r = run("check", str(site))
    assert r.returncode == 1
    assert r.stderr.splitlines()[1:] == [
        "  fallback_plan.phases[3].yellow: 4.0 s is below the monitor's minimum yellow 4.5 s "
        "for channel 4 (monitor.channels: min_yellow)"]
