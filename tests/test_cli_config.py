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
    assert "demo-0001, 8 phases in 2 rings, 16 detectors, fallback plan 'free' (worst-case cycle 141.0 s)" in r.stdout
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
