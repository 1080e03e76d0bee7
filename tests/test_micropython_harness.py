"""The MicroPython harness itself reports failures, import errors and output.

Runs tests/mpy/runner.mjs (and tests/test_micropython.py in a child pytest)
against throw-away portable tests and a throw-away core package. Needs the
same npm install as tests/test_micropython.py and fails, never skips, without it.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUNNER = REPO / "tests" / "mpy" / "runner.mjs"
MPY_PREFIX = Path(os.environ.get("MPY_PREFIX") or REPO / ".mpy").resolve()
NPM_PACKAGE = "@micropython/micropython-webassembly-pyscript"
INSTALL_CMD = "npm install --prefix %s %s@1.27.0" % (MPY_PREFIX, NPM_PACKAGE)

pytestmark = pytest.mark.micropython

SAMPLE = textwrap.dedent('''\
    import time
    from fakecore.util import double


    def test_passes():
        assert double(2) == 4


    def test_fails():
        x = double(3)
        assert x == 7, "double(3) is %d" % x  # THE-ASSERT


    def test_raises_with_output():
        print("hello from micropython")
        raise KeyError("nope")


    def test_takes_a_second():
        t0 = time.ticks_ms()
        n = 0
        while time.ticks_diff(time.ticks_ms(), t0) < 1000:
            n += 1
        assert n > 0


    def test_aa_sorted_first():
        pass


    test_not_callable = 5


    def helper_not_a_test():
        raise AssertionError("must not run")
''')

BROKEN = textwrap.dedent('''\
    import module_that_does_not_exist


    def test_never_runs():
        pass
''')


def _require_install():
    if shutil.which("node") is None:
        pytest.fail("node is not on PATH; install Node.js >= 20 and run: %s" % INSTALL_CMD,
                    pytrace=False)
    if not (MPY_PREFIX / "node_modules" / NPM_PACKAGE / "micropython.mjs").exists():
        pytest.fail("MicroPython WebAssembly package not installed; run: %s "
                    "(`make test` does this)" % INSTALL_CMD, pytrace=False)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("mpy_harness")
    core = root / "fakecore"
    core.mkdir()
    (core / "__init__.py").write_text("")
    (core / "util.py").write_text("def double(x):\n    return 2 * x\n")
    (core / "cpython_only.py").write_text("import typing\n")
    portable = root / "portable"
    portable.mkdir()
    (portable / "__init__.py").write_text("")
    (portable / "test_sample.py").write_text(SAMPLE)
    (portable / "test_broken.py").write_text(BROKEN)
    return core, portable


@pytest.fixture(scope="module")
def report(dirs):
    _require_install()
    core, portable = dirs
    proc = subprocess.run(
        ["node", str(RUNNER), "--portable-dir", str(portable), "--core-dir", str(core)],
        cwd=str(REPO), capture_output=True, text=True, timeout=300,
        env=dict(os.environ, MPY_PREFIX=str(MPY_PREFIX)))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _result(report, test):
    found = [r for r in report["results"] if r["module"] == "test_sample" and r["test"] == test]
    assert len(found) == 1, report["results"]
    return found[0]


def test_failing_assert_is_reported_with_its_line(report):
    line = SAMPLE.splitlines().index(
        '    assert x == 7, "double(3) is %d" % x  # THE-ASSERT') + 1
    r = _result(report, "test_fails")
    assert r["ok"] is False
    assert 'test_sample.py", line %d, in test_fails' % line in r["traceback"], r["traceback"]
    assert "AssertionError: double(3) is 6" in r["traceback"], r["traceback"]


def test_pass_exception_and_output(report):
    assert _result(report, "test_passes")["ok"] is True
    assert _result(report, "test_passes")["traceback"] == ""
    r = _result(report, "test_raises_with_output")
    assert r["ok"] is False
    assert "KeyError: nope" in r["traceback"]
    assert r["output"] == "hello from micropython\n"


def test_slow_test_runs_to_completion(report):
    r = _result(report, "test_takes_a_second")
    assert r["ok"] is True, r["traceback"]
    assert r["ms"] >= 1000


def test_only_callable_test_names_run_in_sorted_order(report):
    names = [r["test"] for r in report["results"]]
    assert names == ["test_aa_sorted_first", "test_fails", "test_passes",
                     "test_raises_with_output", "test_takes_a_second"]


def test_import_error_is_reported_not_fatal(report):
    errs = {e["module"]: e for e in report["import_errors"]}
    assert set(errs) == {"test_broken"}
    assert "module_that_does_not_exist" in errs["test_broken"]["traceback"]
    assert "ImportError" in errs["test_broken"]["traceback"]
    assert not [r for r in report["results"] if r["module"] == "test_broken"]


def test_core_dir_and_core_import_errors(report):
    core = {c["module"]: c for c in report["core_modules"]}
    assert core["fakecore"]["ok"] and core["fakecore.util"]["ok"]
    assert core["fakecore.cpython_only"]["ok"] is False
    assert "typing" in core["fakecore.cpython_only"]["traceback"]
    assert report["implementation"]["name"] == "micropython"
    assert report["implementation"]["version"][:2] == [1, 27]


def _child_pytest(env_extra):
    env = dict(os.environ, **env_extra)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(REPO / "tests" / "test_micropython.py")],
        cwd=str(REPO), capture_output=True, text=True, timeout=600, env=env)


def test_pytest_reports_micropython_failures_as_failures(dirs):
    _require_install()
    core, portable = dirs
    proc = _child_pytest({"MPY_PORTABLE_DIR": str(portable), "MPY_CORE_DIR": str(core),
                          "MPY_PREFIX": str(MPY_PREFIX)})
    out = proc.stdout
    assert proc.returncode == 1, out
    failed = sorted(l.split(" ")[1] for l in out.splitlines() if l.startswith("FAILED "))
    assert failed == sorted([
        "tests/test_micropython.py::test_portable_under_micropython[test_broken::test_never_runs]",
        "tests/test_micropython.py::test_portable_under_micropython[test_sample::test_fails]",
        "tests/test_micropython.py::test_portable_under_micropython"
        "[test_sample::test_raises_with_output]",
        "tests/test_micropython.py::test_core_module_imports_under_micropython"
        "[fakecore.cpython_only]",
    ]), out
    assert "AssertionError: double(3) is 6" in out
    assert "module_that_does_not_exist" in out
    assert "hello from micropython" in out
    assert out.splitlines()[-1].startswith("4 failed, 7 passed in "), out


def test_missing_package_fails_with_the_install_command(tmp_path):
    proc = _child_pytest({"MPY_PREFIX": str(tmp_path / "empty")})
    assert proc.returncode == 1, proc.stdout
    assert "skipped" not in proc.stdout
    assert "npm install --prefix %s %s@1.27.0" % (tmp_path / "empty", NPM_PACKAGE) in proc.stdout
    assert "0 passed" not in proc.stdout and " passed" not in proc.stdout.splitlines()[-1]
