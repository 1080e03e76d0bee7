"""Provisioning that works as written: `provision new` bundles, the README's run line from a
fresh copy, and the command without any extras installed (a throwaway venv)."""

import json
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import time

from hil.central import Central
from tools.cmd_provision import check_password, hash_password

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = [sys.executable, "-m", "tools.cli"]
PASSWORD = "correct horse battery"


def cli(*args, env=None, cwd=REPO, timeout=60):
    return subprocess.run(CLI + list(args), cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, **(env or {})))


def provision(out, broker="127.0.0.1:1883", *extra):
    pwfile = out.parent / "pw.txt"
    pwfile.write_text(PASSWORD + "\n")
    return cli("provision", "new", "--intersection", "ctl-0042", "--name", "Main St & 1st Ave",
               "--site-id", "city", "--broker", broker, "--template", "suburban",
               "--store-dir", str(out.parent / "store"), "--panel-password-file", str(pwfile),
               "--out", str(out), *extra)


def test_password_hash_is_pbkdf2_and_checks():
    import base64
    import hashlib
    h = hash_password("secret-pass", salt=bytes(16), iterations=1000)
    digest = hashlib.pbkdf2_hmac("sha256", b"secret-pass", bytes(16), 1000)
    assert h == "pbkdf2_sha256$1000$%s$%s" % (base64.b64encode(bytes(16)).decode(),
                                              base64.b64encode(digest).decode())
    assert check_password("secret-pass", h) and not check_password("secret-pasS", h)
    assert not check_password("secret-pass", "md5$1$x$y") and not check_password("x", None)


def test_provision_new_writes_a_bundle_that_runs_against_a_broker(tmp_path, broker):
    out = tmp_path / "bundle"
    r = provision(out, "127.0.0.1:%d" % broker.port)
    assert r.returncode == 0, r.stderr
    assert PASSWORD not in r.stdout + r.stderr
    files = sorted(os.listdir(out))
    assert files == ["central-key.json", "mosquitto-passwd.txt", "provision.json", "site.json"]
    for name in ("central-key.json", "mosquitto-passwd.txt", "provision.json"):
        assert stat.S_IMODE(os.stat(out / name).st_mode) == 0o600
        assert PASSWORD not in (out / name).read_text()
    prov = json.loads((out / "provision.json").read_text())
    site = json.loads((out / "site.json").read_text())
    key = json.loads((out / "central-key.json").read_text())
    assert site["intersection"] == "ctl-0042" and site["name"] == "Main St & 1st Ave"
    assert prov["keys"][0]["secret"] == key["secret"] and len(key["secret"]) == 64
    assert prov["mqtt"]["brokers"] == ["127.0.0.1:%d" % broker.port]
    assert prov["mqtt"]["site"] == "city" and prov["mqtt"]["username"] == "ctl-0042"
    # The client id is a per-unit secret (a NATS cluster lets any user take any id), not
    # the guessable edge-agent-<id>: 32 random hex digits, fresh for every bundle.
    cid = prov["mqtt"]["client_id"]
    assert cid.startswith("unit-") and len(cid) == 37 and "ctl-0042" not in cid
    assert "spread" not in prov["mqtt"]
    assert (out / "mosquitto-passwd.txt").read_text() == "ctl-0042:%s\n" % prov["mqtt"]["password"]
    assert check_password(PASSWORD, prov["panel"]["password_hash"])
    assert cli("config", "check", str(out / "site.json")).returncode == 0
    central = Central(broker.host, broker.port, "city", client_id="observer").start()
    agent = subprocess.Popen(CLI + ["run", "--config", str(out / "site.json"), "--provision",
                                    str(out / "provision.json"), "--log-json"], cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        state = central.wait_for(lambda: central.state("ctl-0042"), 15)
        assert state["online"] is True
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(15)
        central.stop()
    assert agent.returncode == 0


def test_provision_new_refuses_to_overwrite_and_short_passwords(tmp_path):
    out = tmp_path / "bundle"
    assert provision(out).returncode == 0
    r = provision(out)
    assert r.returncode == 2 and "already holds" in r.stderr and "--force" in r.stderr
    assert provision(out, "127.0.0.1:1883", "--force").returncode == 0
    (tmp_path / "pw.txt").write_text("short\n")
    r = cli("provision", "new", "--intersection", "x-1", "--site-id", "c", "--broker", "h:1",
            "--panel-password-file", str(tmp_path / "pw.txt"), "--out", str(tmp_path / "b2"))
    assert r.returncode == 2 and "at least 8 characters" in r.stderr
    assert not (tmp_path / "b2").exists() or not os.listdir(tmp_path / "b2")


def test_each_bundle_has_its_own_secret_client_id_and_a_cluster_bundle_spreads(tmp_path):
    ids = []
    for name, extra in (("a", ()), ("b", ("--broker", "127.0.0.1:1884", "--spread"))):
        out = tmp_path / name
        assert provision(out, "127.0.0.1:1883", *extra).returncode == 0
        mqtt = json.loads((out / "provision.json").read_text())["mqtt"]
        ids.append(mqtt["client_id"])
    assert ids[0] != ids[1]
    assert mqtt["brokers"] == ["127.0.0.1:1883", "127.0.0.1:1884"] and mqtt["spread"] is True
    assert "events_qos" not in mqtt and "subscribe_qos" not in mqtt


def test_a_nats_bundle_runs_events_and_subscriptions_at_qos_0(tmp_path):
    from drivers.mqtt_link import parse_link_config
    out = tmp_path / "n"
    assert provision(out, "10.0.0.1:1883", "--broker", "10.0.0.2:1883", "--spread",
                     "--nats").returncode == 0
    mqtt = json.loads((out / "provision.json").read_text())["mqtt"]
    cfg = parse_link_config(mqtt)
    assert (cfg.events_qos, cfg.subscribe_qos, cfg.spread) == (0, 0, True)


def readme_run_line():
    with open(os.path.join(REPO, "README.md")) as f:
        for line in f:
            if line.startswith(".venv/bin/edge-agent run --config"):
                return shlex.split(line)
    raise AssertionError("README has no run example")


def test_readme_run_example_works_as_written_from_a_fresh_copy(tmp_path):
    argv = readme_run_line()
    assert argv[0] == ".venv/bin/edge-agent"
    shutil.copytree(os.path.join(REPO, "examples"), tmp_path / "examples",
                    ignore=shutil.ignore_patterns("store"))
    env = dict(os.environ, PYTHONPATH=REPO)
    agent = subprocess.Popen(CLI + argv[1:] + ["--log-json"], cwd=tmp_path, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        end = time.monotonic() + 20
        while time.monotonic() < end:
            line = agent.stderr.readline()
            if not line:
                break
            lines.append(json.loads(line))
            if lines[-1].get("msg") == "runtime started":
                break
        time.sleep(1.0)
    finally:
        agent.send_signal(signal.SIGTERM)
        _, err = agent.communicate(timeout=15)
    lines += [json.loads(x) for x in err.splitlines() if x.startswith("{")]
    assert agent.returncode == 0, lines
    assert any(r["msg"] == "runtime started" for r in lines), lines
    assert any(r["msg"] == "runtime stopped" for r in lines)
    assert not [r for r in lines if r["level"] == "error"], lines
    assert (tmp_path / "examples" / "store").is_dir()


def test_installed_without_extras_help_version_and_config_check_work(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".venv", ".mpy", ".git", "__pycache__", "*.egg-info", "build", "reports", "out",
        "store", "node_modules"))
    r = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(src)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    exe = str(venv / "bin" / "edge-agent")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def run(*args):
        return subprocess.run([exe] + list(args), capture_output=True, text=True, timeout=60,
                              cwd=tmp_path, env=env)

    nopaho = subprocess.run([str(venv / "bin" / "python"), "-c", "import paho"],
                            capture_output=True, text=True, cwd=tmp_path, env=env)
    assert nopaho.returncode != 0                       # truly without the extras
    h = run("--help")
    assert h.returncode == 0 and "provision" in h.stdout and "run" in h.stdout, h.stderr
    v = run("--version")
    assert v.returncode == 0 and v.stdout.strip() == "edge-agent 0.1.0"
    c = run("config", "check", str(src / "examples" / "site.json"))
    assert c.returncode == 0 and "suburban-0001" in c.stdout, c.stdout + c.stderr
    b = run("bench", "link")
    assert b.returncode == 2 and "No module named 'paho'" in b.stdout
    assert run("run", "--help").returncode == 0
