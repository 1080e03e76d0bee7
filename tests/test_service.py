"""The unit as a systemd service: the sd_notify protocol on a real datagram socket, a hung
loop killed and restarted by the watchdog, log lines with date and zone, a rotating file."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

from drivers.logfile import RotatingFile
from hil.service_supervisor import ServiceSupervisor
from tests.linkrig import KID, SECRET, quick_site

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = [sys.executable, "-m", "tools.cli"]


def write_files(d):
    with open(d / "site.json", "w") as f:
        json.dump(quick_site(), f)
    with open(d / "provision.json", "w") as f:
        json.dump({"store_dir": str(d / "store"),
                   "keys": [{"kid": KID, "scheme": "hmac", "secret": SECRET}]}, f)
    return ["run", "--config", str(d / "site.json"), "--provision", str(d / "provision.json"),
            "--no-mqtt"]


def test_notify_protocol_ready_status_watchdog_stopping_on_a_real_socket(tmp_path):
    args = write_files(tmp_path)
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="400000")
    agent = subprocess.Popen(CLI + args + ["--seconds", "2.5"], cwd=REPO, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    messages = []
    try:
        while not messages or "STOPPING=1" not in messages[-1]:
            messages.append(sock.recv(4096).decode())      # the sentinel: STOPPING=1
    finally:
        agent.wait(10)
        sock.close()
    assert agent.returncode == 0, agent.stderr.read()
    first = messages[0].splitlines()
    assert first[:3] == ["READY=1", "MAINPID=%d" % agent.pid, "STATUS=mode startup-all-red"]
    assert "WATCHDOG=1" in first
    lines = [ln for m in messages for ln in m.splitlines()]
    assert lines.index("STATUS=mode run") < lines.index("STATUS=first green")
    assert lines.count("STATUS=first green") == 1 and lines.count("READY=1") == 1
    # 100 ms steps, a 400 ms watchdog: a ping every completed step (at most every 100 ms).
    assert lines.count("WATCHDOG=1") >= 10
    assert lines[-1] == "STOPPING=1"


def test_a_hung_loop_is_killed_by_the_watchdog_and_restarted_to_green(tmp_path):
    args = write_files(tmp_path)
    sup = ServiceSupervisor(CLI + args, watchdog_s=1.0, cwd=REPO).start()
    try:
        assert sup.run_until(lambda: sup.count("first-green") == 1, 20)
        hung = sup.proc.pid
        os.kill(hung, signal.SIGSTOP)                  # the loop stops: no more pings
        t_hang = time.monotonic()
        assert sup.run_until(lambda: sup.count("first-green") == 2, 30)
    finally:
        sup.stop()
    after = [w for t, w, _ in sup.events if t > t_hang and w not in ("ping", "status")]
    assert after[:5] == ["watchdog-timeout", "killed", "start", "ready", "first-green"], after
    killed = [d for t, w, d in sup.events if w == "killed"]
    assert killed == [-signal.SIGKILL]                 # stopped: SIGABRT pends, SIGKILL ends it
    timeout_at = sup.first("watchdog-timeout")
    assert timeout_at - t_hang >= 0.9                  # not before the watchdog interval


def test_log_lines_carry_date_time_and_zone_and_first_boot_is_info(tmp_path):
    args = write_files(tmp_path)
    log = tmp_path / "logs" / "agent.log"
    r = subprocess.run(CLI + args + ["--seconds", "1.5", "--log-file", str(log)], cwd=REPO,
                       env=dict(os.environ, TZ="Europe/Berlin"), capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    lines = log.read_text().splitlines()
    assert lines and all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0[12]:00 ", ln)
                         for ln in lines), lines
    boot = [ln for ln in lines if "plan store at start-up" in ln]
    assert boot and all(" info " in ln for ln in boot)
    assert not [ln for ln in lines if " warning " in ln or " error " in ln], lines


def test_rotating_file_keeps_the_newest_lines_and_n_backups(tmp_path):
    path = str(tmp_path / "a.log")
    f = RotatingFile(path, max_bytes=100, backups=2)
    for i in range(30):
        f.write("line %02d %s\n" % (i, "x" * 20))       # 29 bytes each: 3 per file
    f.close()
    assert open(path).read().splitlines()[-1].startswith("line 29")
    assert sorted(os.listdir(tmp_path)) == ["a.log", "a.log.1", "a.log.2"]
    assert open(path + ".1").read().startswith("line 24")
    assert open(path + ".2").read().startswith("line 21")     # older ones are gone


def test_runtime_logs_flash_and_central_link_loss_at_warning(tmp_path):
    from edge_agent import events as ev
    from edge_agent.fieldcheck import CabinetReport
    from tools.cmd_run import build_runtime
    write_files(tmp_path)
    records = []

    class Log:
        context = None

        def __call__(self, level, msg, **fields):
            records.append((level, msg, fields))

        def limited(self, key, level, msg, **fields):
            records.append((level, msg, fields))

    rt = build_runtime(str(tmp_path / "site.json"), str(tmp_path / "provision.json"),
                       mqtt=False, log=Log())
    out = rt.step(1000)
    out.events.append((1000, ev.LINK_DOWN, 0))          # as the supervisor writes it
    rt._log_transitions(out)
    lost = CabinetReport(1100, link_ok=False, link_detail="no MMU status for 600 ms")

    class Cabinet:
        def read(self, now, inputs):
            inputs.cabinet = lost

    rt.sources.append(Cabinet())
    rt.step(1100)
    rt.step(1200)
    warn = [(m, f) for lv, m, f in records if lv == "warning"]
    assert warn == [("central link lost: local control", {}),
                    ("flash latched", {"code": 22, "rule": "cabinet link lost",
                                       "reason": "cabinet link lost: no MMU status for 600 ms"})]
