"""A latched flash is honest: written before it is shown, kept through SIGKILL, cleared on site only.

The process test runs `edge-agent run` as a technician would, latches a fault
through the HIL fault injector on the local socket, kills the process, starts
it again (it boots into the same flash), and resets it with `edge-agent flash
reset`, refused before the card's minimum flash time and accepted after. The
event journal on disk shows fault, flash, restart, refused reset, reset and
start-up, in that order.
"""

import json
import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from drivers.local_control import LocalControl, call
from drivers.reset_input import ResetInput
from drivers.store import Store
from edge_agent import events as ev
from edge_agent.agent import Inputs, RESET_HARDWIRED, RESET_LOCAL_COMMAND
from edge_agent.monitor import FAULT_EXTERNAL
from edge_agent.standard import standard_site

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = [sys.executable, "-m", "tools.cli"]
SECRET = "00" * 32


def wait_for(fn, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            v = fn()
        except (OSError, ValueError):
            v = None
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for %s" % what)


def journal(store_dir):
    """Every event the unit journalled, in sequence order: [(seq, code, param)]."""
    d = os.path.join(store_dir, "events")
    rows = []
    for name in sorted(os.listdir(d)):
        if name.endswith(".log"):
            with open(os.path.join(d, name)) as f:
                for line in f:
                    if line.strip():
                        r = json.loads(line)
                        rows.append((r[0], r[3], r[4]))
    return sorted(rows)


@pytest.fixture
def unit(tmp_path):
    site = standard_site("latch-0001")
    site["monitor"]["flash"]["min_flash"] = 3.0
    site["startup"]["all_red"] = 2.0
    (tmp_path / "site.json").write_text(json.dumps(site))
    (tmp_path / "provision.json").write_text(json.dumps(
        {"store_dir": "store", "keys": [{"kid": "k1", "scheme": "hmac", "secret": SECRET}]}))
    return tmp_path


def start(d):
    return subprocess.Popen(CLI + ["run", "--config", str(d / "site.json"), "--provision",
                                   str(d / "provision.json"), "--no-mqtt",
                                   "--allow-fault-injection", "--log-json"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def status(sock):
    return call(sock, "status")["status"]


def test_latch_survives_sigkill_and_clears_only_on_site_after_min_flash(unit):
    d = unit
    store = str(d / "store")
    sock = os.path.join(store, "control.sock")
    first = start(d)
    second = None
    try:
        wait_for(lambda: status(sock)["mode"] == "run", 20, "the first green")
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        answer = call(sock, "trip", detail="HIL: MMU reports channel 4 green")
        assert answer["ok"] and answer["fault"]["code"] == FAULT_EXTERNAL
        latched = Store(store).load_latch()
        assert latched["detail"] == "fault injected on the local socket: HIL: MMU reports " \
                                    "channel 4 green"
        # the journal has the fault before we pull the plug
        wait_for(lambda: any(c == ev.MONITOR_FAULT for _, c, _ in journal(store)), 10,
                 "the fault in the journal")
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)

        second = start(d)
        st = wait_for(lambda: status(sock), 20, "the restarted unit")
        assert st["mode"] == "flash"
        assert st["fault"]["detail"] == latched["detail"]
        r = subprocess.run(CLI + ["flash", "reset", "--provision", str(d / "provision.json")],
                           cwd=REPO, capture_output=True, text=True, timeout=30)
        assert r.returncode == 1
        assert "refused: minimum flash time:" in r.stderr and "still to run" in r.stderr
        assert "latched: external fault: fault injected on the local socket" in r.stderr
        left = status(sock)["flash_remaining_ms"]
        assert 0 < left <= 3_000
        time.sleep(left / 1000 + 0.3)
        r = subprocess.run(CLI + ["flash", "reset", "--socket", sock], cwd=REPO,
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("cleared: external fault: fault injected on the local "
                                   "socket: HIL: MMU reports channel 4 green")
        wait_for(lambda: status(sock)["mode"] == "run", 10, "start-up after the reset")
        assert Store(store).load_latch() is None
        os.kill(second.pid, signal.SIGTERM)
        second.wait(10)
        assert second.returncode == 0
        logs = [json.loads(x) for x in second.stderr.read().splitlines() if x.strip()]
        assert any(x["msg"] == "booting into the latched flash" and x["level"] == "warning"
                   for x in logs)
        assert any(x["msg"] == "latched flash reset on site" and x["source"] == "local command"
                   for x in logs)
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(5)
    story = [(c, p) for _, c, p in journal(store)
             if c in (ev.UNIT_BOOT, ev.MONITOR_FAULT, ev.UNIT_FLASH_STATUS, ev.FLASH_RESET,
                      ev.FLASH_RESET_REFUSED, ev.STARTUP_ALL_RED)]
    assert story == [
        (ev.UNIT_BOOT, 1), (ev.STARTUP_ALL_RED, 0),                       # first power-up
        (ev.MONITOR_FAULT, FAULT_EXTERNAL), (ev.UNIT_FLASH_STATUS, ev.FLASH_FAULT),
        (ev.UNIT_BOOT, 2), (ev.MONITOR_FAULT, FAULT_EXTERNAL),            # restart, into flash
        (ev.UNIT_FLASH_STATUS, ev.FLASH_FAULT),
        (ev.FLASH_RESET_REFUSED, RESET_LOCAL_COMMAND),
        (ev.FLASH_RESET, RESET_LOCAL_COMMAND),                            # reset, start-up
        (ev.UNIT_FLASH_STATUS, ev.FLASH_OFF), (ev.STARTUP_ALL_RED, 0),
    ]


# -- the local socket and the hardwired input, as drivers ------------------------------------

def serve_one(ctl, answer):
    """Answer the next request from a thread-less loop (what the runtime step does)."""
    def loop():
        for _ in range(200):
            for r in ctl.take():
                r.reply(answer(r))
                return
            time.sleep(0.01)
    import threading
    t = threading.Thread(target=loop)
    t.start()
    return t


def test_local_socket_refuses_bad_requests_with_the_reason(tmp_path):
    path = str(tmp_path / "run" / "control.sock")
    ctl = LocalControl(path)
    ctl.start()
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert call(path, "reboot") == {
            "ok": False, "error": "unknown command 'reboot' (one of status, flash-reset, trip)"}
        assert call(path, "trip", detail="x")["error"].startswith("fault injection is off")
        import socket as so
        s = so.socket(so.AF_UNIX, so.SOCK_STREAM)
        s.connect(path)
        s.sendall(b"[1, 2]\n")
        got = json.loads(s.makefile().readline())
        s.close()
        assert got == {"ok": False,
                       "error": "expected {\"cmd\": ...}, one of status, flash-reset, trip"}
        t = serve_one(ctl, lambda r: {"ok": True, "cmd": r.cmd})
        assert call(path, "status") == {"ok": True, "cmd": "status"}
        t.join()
    finally:
        ctl.stop()
    assert not os.path.exists(path)


def test_hardwired_input_resets_on_a_rising_edge_only(tmp_path):
    gpio = tmp_path / "value"
    gpio.write_text("1\n")
    src = ResetInput(str(gpio))
    seen = []
    for level in ("1", "1", "0", "0", "1", "1", "x", "0", "1"):
        gpio.write_text(level + "\n")
        inputs = Inputs()
        src.read(0, inputs)
        seen.append(inputs.flash_reset)
    # held at power-up is no press; each 0 -> 1 is one; junk is counted, not a press
    assert seen == [0, 0, 0, 0, RESET_HARDWIRED, 0, 0, 0, RESET_HARDWIRED]
    assert src.stats() == {"presses": 2, "errors": 1}
    gpio.unlink()
    src.read(0, Inputs())
    assert src.stats()["errors"] == 2


def test_corrupt_latch_file_still_boots_into_flash(tmp_path):
    store = Store(str(tmp_path))
    store.save_latch({"ms": 5, "code": 1, "channel": 2, "other": 4, "detail": "conflict"})
    path = tmp_path / "flash-latch.json"
    data = path.read_bytes()
    path.write_bytes(data[:-3])
    latch = Store(str(tmp_path)).load_latch()
    assert latch["code"] == 9
    assert latch["detail"].startswith("stored flash latch unreadable (flash-latch.json: payload is")
    store.clear_latch()
    assert Store(str(tmp_path)).load_latch() is None
