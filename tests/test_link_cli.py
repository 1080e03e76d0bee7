"""The commands people run, as processes: `edge-agent run`, `central heartbeat`, `plan publish`,
`status`, `events tail`; a clean SIGTERM; and signed commands (plan hold, flash stays local)."""

import json
import os
import signal
import subprocess
import sys
import time

from drivers.commands import command_body, sign_command
from hil.central import Central
from tests.linkrig import (INTERSECTION, KID, SECRET, SITE, AgentUnderTest, envelope,
                          quick_plan, quick_site)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = [sys.executable, "-m", "tools.cli"]


def cli(*args, timeout=30):
    return subprocess.run(CLI + list(args), cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def test_run_as_a_process_with_the_command_line_tools(tmp_path, broker):
    d = tmp_path
    with open(d / "site.json", "w") as f:
        json.dump({"site": quick_site(), "link": {"loss_s": 1, "stable_s": 2}}, f)
    with open(d / "provision.json", "w") as f:
        json.dump({"store_dir": "store", "keys": [{"kid": KID, "scheme": "hmac", "secret": SECRET}],
                   "mqtt": {"brokers": ["127.0.0.1:%d" % broker.port], "site": SITE,
                            "backoff_base_s": 0.2, "backoff_cap_s": 1.0}}, f)
    with open(d / "key.json", "w") as f:
        json.dump({"kid": KID, "scheme": "hmac", "secret": SECRET}, f)
    with open(d / "plan.json", "w") as f:
        json.dump(quick_plan("central-cli"), f)
    where = ["--site-id", SITE, "--broker", "127.0.0.1:%d" % broker.port]
    central = Central(broker.host, broker.port, SITE, client_id="observer").start()
    hb = subprocess.Popen(CLI + ["central", "heartbeat", "--period", "0.3"] + where, cwd=REPO,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    agent = subprocess.Popen(CLI + ["run", "--config", str(d / "site.json"), "--provision",
                                    str(d / "provision.json"), "--log-json"], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert central.wait_for(lambda: (central.state(INTERSECTION) or {}).get("online"), 10)
        r = cli("plan", "publish", "--intersection", INTERSECTION, "--plan", str(d / "plan.json"),
                "--key", str(d / "key.json"), "--version", "1", "--wait", "20", *where)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "accepted: version 1" in r.stdout
        assert central.wait_for(lambda: (central.state(INTERSECTION) or {}).get("mode") == "central", 10)
        assert central.wait_for(lambda: central.last_telemetry(INTERSECTION), 5)
        r = cli("status", INTERSECTION, "--once", *where)
        assert r.returncode == 0, r.stderr
        assert "online  mode central" in r.stdout and "phase  veh" in r.stdout, r.stdout
        r = cli("events", "tail", "--intersection", INTERSECTION, "--count", "3",
                "--seconds", "15", *where)
        assert r.returncode == 0, r.stderr
        assert len(r.stdout.strip().splitlines()) >= 3, r.stdout
        os.kill(agent.pid, signal.SIGTERM)
        agent.wait(10)
        assert agent.returncode == 0
        state = central.wait_for(lambda: central.state(INTERSECTION)
                                 if central.state(INTERSECTION).get("online") is False else None, 5)
        assert state["reason"] == "shutdown"       # the clean shutdown, not the last will
        logs = [json.loads(line) for line in agent.stderr.read().splitlines() if line.strip()]
        assert logs and all({"ts", "level", "msg", "step", "mode", "plan"} <= set(r) for r in logs
                            if r["msg"] not in ("plan store at start-up",))
        assert any(r["msg"] == "runtime stopped" for r in logs)
        assert not any(r["level"] == "error" for r in logs)
    finally:
        for p in (agent, hb):
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(5)
        central.stop()


def command(cid, name, args=None):
    return sign_command(command_body(INTERSECTION, cid, name, int(time.time()), args), KID,
                        bytes.fromhex(SECRET))


def test_plan_hold_keeps_central_through_a_loss_and_flash_is_never_cleared_remotely(tmp_path, broker):
    central = Central(broker.host, broker.port, SITE).start()
    central.heartbeat(0.3)
    agent = AgentUnderTest(tmp_path / "agent", [(broker.host, broker.port)],
                           plans=["central-v1"]).start()
    rt = agent.rt
    try:
        central.publish_plan(INTERSECTION, envelope(1))
        assert agent.wait_mode("central", 15)
        central.publish_cmd(INTERSECTION, command(1, "technician_reset"))
        last = central.wait_for(lambda: rt.last_command, 5)
        assert last["ok"] is False and last["reason"] == "local_only"
        central.publish_cmd(INTERSECTION, command(2, "hold_plan", {"seconds": 30}))
        assert central.wait_for(lambda: rt.hold_until is not None, 5)
        central.publish_cmd(INTERSECTION, command(2, "release_hold"))      # replayed id
        assert central.wait_for(lambda: (rt.last_command or {}).get("reason") == "replay", 5)
        t_stop = time.monotonic()
        central.stop_heartbeat()
        time.sleep(2.5)                     # well past the 1 s loss time
        assert agent.recorder.mode == "central"
        assert not rt.agent.supervisor.link_up
        central.publish_cmd(INTERSECTION, command(3, "release_hold"))
        assert agent.wait_mode_after("local", t_stop, 3)
        assert agent.recorder.violations == []
    finally:
        agent.stop()
        central.stop()


def test_central_units_names_a_unit_whose_state_says_online_but_that_is_silent(tmp_path, broker):
    # A unit that dies with its broker node leaves no will: its retained state still
    # says online. `central units` lists it SILENT (and exits 1); the running agent is
    # ok, a unit that shut down is offline.
    where = ["--site-id", SITE, "--broker", "127.0.0.1:%d" % broker.port]
    central = Central(broker.host, broker.port, SITE, client_id="units-setup").start()
    agent = AgentUnderTest(tmp_path / "agent", [(broker.host, broker.port)]).start()
    try:
        ghost = "tsc/v1/%s/%s/state" % (SITE, "ghost-0009")
        central.publish_raw(ghost, b'{"online":true,"session":4}', qos=1, retain=True)
        gone = "tsc/v1/%s/%s/state" % (SITE, "gone-0003")
        central.publish_raw(gone, b'{"online":false,"reason":"shutdown","session":2}', qos=1,
                            retain=True).wait_for_publish(5)
        assert central.wait_for(lambda: central.last_telemetry(INTERSECTION), 10)
        r = cli("central", "units", "--listen", "3", "--silent-after", "2.5", *where)
        lines = r.stdout.splitlines()
        assert r.returncode == 1, r.stdout + r.stderr
        assert lines[0].split() == ["unit", "state", "telemetry", "verdict"]
        rows = {line.split()[0]: line for line in lines[1:]}
        assert sorted(rows) == ["ghost-0009", "gone-0003", INTERSECTION]
        assert rows["ghost-0009"] == ("ghost-0009               online   never in 3 s       "
                                      "SILENT: state says online, no telemetry for the 3 s "
                                      "listened")
        assert rows["gone-0003"] == ("gone-0003                offline  never in 3 s       "
                                     "offline (shutdown)")
        assert rows[INTERSECTION].split()[1] == "online" and rows[INTERSECTION].endswith(" ok")
        assert r.stderr.strip() == "1 unit(s) silent: state online (or none) but no telemetry " \
                                   "for 2.5 s"
    finally:
        agent.stop()
        for t in (ghost, gone):
            central.publish_raw(t, b"", qos=1, retain=True).wait_for_publish(5)
        central.stop()


def test_the_units_table_reads_state_and_silence_exactly():
    from tools.cmd_central import units_table
    states = {"a": {"online": True}, "b": {"online": True}, "c": {"online": False}}
    heard = {"a": 99.5, "b": 95.0, "d": 99.0}
    lines, silent = units_table(states, heard, 5.0, 3.0, now=100.0)
    assert lines == [
        "unit                     state    telemetry          verdict",
        "a                        online   0.5 s ago          ok",
        "b                        online   5.0 s ago          SILENT: state says online, no "
        "telemetry for 5.0 s",
        "c                        offline  never in 5 s       offline (last will)",
        "d                        -        1.0 s ago          ok"]
    assert silent == 1
