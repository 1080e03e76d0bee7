"""Run the portable tests inside real MicroPython 1.27 and report them here.

Every module-level ``def test_*`` in ``tests/portable/test_*.py`` (found with
``ast`` at collection time) becomes one pytest test ``module::name``. One
session-scoped run of ``node tests/mpy/runner.mjs`` executes them all inside
the MicroPython WebAssembly build; each pytest test then asserts its own
result and fails with the MicroPython traceback.

Needs Node.js and the npm package (``make test`` installs it)::

    npm install --prefix <repo>/.mpy @micropython/micropython-webassembly-pyscript@1.27.0

Without them these tests FAIL, saying which command to run; they never skip.
Environment overrides (used by tests/test_micropython_harness.py):
MPY_PREFIX (npm prefix, default <repo>/.mpy), MPY_PORTABLE_DIR (default
tests/portable), MPY_CORE_DIR (default edge_agent).
"""

import ast
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUNNER = REPO / "tests" / "mpy" / "runner.mjs"
PORTABLE_DIR = Path(os.environ.get("MPY_PORTABLE_DIR") or REPO / "tests" / "portable").resolve()
CORE_DIR = Path(os.environ.get("MPY_CORE_DIR") or REPO / "edge_agent").resolve()
MPY_PREFIX = Path(os.environ.get("MPY_PREFIX") or REPO / ".mpy").resolve()
NPM_PACKAGE = "@micropython/micropython-webassembly-pyscript"
NPM_VERSION = "1.27.0"
PACKAGE_MJS = MPY_PREFIX / "node_modules" / NPM_PACKAGE / "micropython.mjs"
INSTALL_CMD = "npm install --prefix %s %s@%s" % (MPY_PREFIX, NPM_PACKAGE, NPM_VERSION)
TIMEOUT_S = 300
COLLECT = "<collect>"

pytestmark = pytest.mark.micropython


def _portable_tests(portable_dir):
    """[(module, test)] for every module-level `def test_*` in test_*.py files.

    A file CPython cannot parse yields (module, COLLECT), which fails with the
    import error MicroPython reported (or the SyntaxError).
    """
    out = []
    for path in sorted(portable_dir.glob("test_*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except SyntaxError:
            out.append((path.stem, COLLECT))
            continue
        names = sorted(node.name for node in tree.body
                       if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"))
        out.extend((path.stem, name) for name in names)
    return out


def _core_modules(core_dir):
    """Dotted names of every module of the core package, as runner.mjs lists them."""
    out = []

    def walk(d, dotted):
        for p in sorted(d.iterdir(), key=lambda p: p.name):
            if p.name.startswith(".") or p.name == "__pycache__":
                continue
            if p.is_dir():
                if (p / "__init__.py").exists():
                    walk(p, dotted + "." + p.name)
            elif p.suffix == ".py":
                out.append(dotted if p.stem == "__init__" else dotted + "." + p.stem)

    if core_dir.is_dir():
        walk(core_dir, core_dir.name)
    return out


PORTABLE_TESTS = _portable_tests(PORTABLE_DIR) if PORTABLE_DIR.is_dir() else []
CORE_MODULES = _core_modules(CORE_DIR)


class MpyRun:
    """The outcome of one runner invocation: `error` (harness problem) or `report`."""

    def __init__(self, error=None, report=None):
        self.error = error
        self.report = report or {}
        self.results = {(r["module"], r["test"]): r for r in self.report.get("results", [])}
        self.import_errors = {e["module"]: e for e in self.report.get("import_errors", [])}
        self.core = {c["module"]: c for c in self.report.get("core_modules", [])}

    def check(self):
        if self.error:
            pytest.fail(self.error, pytrace=False)


def _tail(text, n=40):
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return "\n".join((text or "").splitlines()[-n:])


def run_micropython():
    node = shutil.which("node")
    if node is None:
        return MpyRun(error=(
            "node (Node.js >= 20) is not on PATH, so the portable tests cannot run under "
            "MicroPython. Install it (apt-get install -y nodejs npm), then run: %s "
            "(`make test` installs the npm package)." % INSTALL_CMD))
    if not PACKAGE_MJS.exists():
        return MpyRun(error=(
            "MicroPython WebAssembly package not installed (%s missing). Install it with:\n"
            "    %s\n(`make test` does this)." % (PACKAGE_MJS, INSTALL_CMD)))
    cmd = [node, str(RUNNER), "--portable-dir", str(PORTABLE_DIR), "--core-dir", str(CORE_DIR)]
    env = dict(os.environ, MPY_PREFIX=str(MPY_PREFIX))
    try:
        proc = subprocess.run(cmd, cwd=str(REPO), env=env, capture_output=True, text=True,
                              timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        return MpyRun(error="MicroPython runner timed out after %d s; last progress:\n%s"
                      % (TIMEOUT_S, _tail(e.stderr)))
    if proc.returncode == 3:
        return MpyRun(error="%s\nInstall with: %s" % (_tail(proc.stderr), INSTALL_CMD))
    if proc.returncode != 0:
        return MpyRun(error="MicroPython runner exited %d:\n%s"
                      % (proc.returncode, _tail(proc.stderr)))
    try:
        report = json.loads(proc.stdout)
    except ValueError as e:
        return MpyRun(error="MicroPython runner printed no valid JSON (%s):\n%s\n%s"
                      % (e, _tail(proc.stdout), _tail(proc.stderr)))
    return MpyRun(report=report)


@pytest.fixture(scope="session")
def mpy():
    return run_micropython()


def _with_output(text, output):
    if output:
        text += "\n--- MicroPython output ---\n" + output.rstrip("\n")
    return text


@pytest.mark.parametrize("module,test", PORTABLE_TESTS,
                         ids=["%s::%s" % t for t in PORTABLE_TESTS])
def test_portable_under_micropython(mpy, module, test):
    mpy.check()
    where = "%s/%s.py::%s" % (PORTABLE_DIR.name, module, test)
    if module in mpy.import_errors:
        err = mpy.import_errors[module]
        pytest.fail(_with_output("MicroPython could not import %s/%s.py:\n%s"
                                 % (PORTABLE_DIR.name, module, err["traceback"]),
                                 err.get("output")), pytrace=False)
    if test == COLLECT:
        pytest.fail("CPython cannot parse %s/%s.py (SyntaxError)" % (PORTABLE_DIR.name, module),
                    pytrace=False)
    result = mpy.results.get((module, test))
    if result is None:
        pytest.fail("%s was not run under MicroPython (the runner did not find a callable "
                    "`%s` in module %s)" % (where, test, module), pytrace=False)
    if not result["ok"]:
        pytest.fail(_with_output("%s failed under MicroPython:\n%s"
                                 % (where, result["traceback"]), result.get("output")),
                    pytrace=False)


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_module_imports_under_micropython(mpy, module):
    mpy.check()
    core = mpy.core.get(module)
    if core is None:
        pytest.fail("runner did not try to import %s" % module, pytrace=False)
    if not core["ok"]:
        pytest.fail(_with_output("MicroPython cannot import %s:\n%s"
                                 % (module, core["traceback"]), core.get("output")),
                    pytrace=False)


def test_interpreter_is_micropython_1_27(mpy):
    mpy.check()
    impl = mpy.report.get("implementation", {})
    assert impl.get("name") == "micropython", mpy.report.get("micropython")
    assert list(impl.get("version", []))[:2] == [1, 27], (
        "expected MicroPython 1.27.x, runner reported %r" % (mpy.report.get("micropython"),))


def test_no_failures_outside_the_collected_tests(mpy):
    """Failures the ast scan could not see (tests defined conditionally or
    imported, import errors of modules without tests) must not go unseen."""
    mpy.check()
    listed = set(PORTABLE_TESTS)
    listed_modules = {m for m, _ in PORTABLE_TESTS}
    problems = ["%s::%s\n%s" % (m, t, r["traceback"])
                for (m, t), r in sorted(mpy.results.items())
                if (m, t) not in listed and not r["ok"]]
    problems += ["import of %s\n%s" % (m, e["traceback"])
                 for m, e in sorted(mpy.import_errors.items()) if m not in listed_modules]
    assert not problems, "\n\n".join(problems)
