"""The front panel in a real browser: Debian's Chromium driven by selenium against `edge-agent run`.

The page loads, the phase indications it shows follow the running agent
within 0.5 s (the page's snapshot time against the agent's own clock, read on
the local socket), a reset with a wrong password is refused and with the
right one accepted. Screenshots go to the test's output directory
(`reports/panel/` when EDGE_AGENT_SCREENSHOTS is set, as `make test` does not).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from drivers.local_control import call
from drivers.panel import check_password, hash_password
from edge_agent.standard import standard_site
from hil.broker import free_port

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = [sys.executable, "-m", "tools.cli"]
PASSWORD = "cabinet-7734"


def wait_for(fn, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            v = fn()
        except Exception:            # the page or socket not there yet
            v = None
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for %s" % what)


def test_password_hash_round_trip_and_refusals():
    h = hash_password(PASSWORD, iterations=1000)
    assert h.startswith("pbkdf2_sha256$1000$") and PASSWORD not in h
    assert check_password(PASSWORD, h)
    assert not check_password(PASSWORD + "x", h)
    assert not check_password(PASSWORD, "md5$whatever")
    assert not check_password(PASSWORD, "")


@pytest.fixture
def browser(tmp_path):
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.fail("chromium and chromium-driver are not installed (make .system-deps)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for a in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--window-size=1400,1000", "--user-data-dir=%s" % (tmp_path / "chrome")):
        opts.add_argument(a)
    drv = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    yield drv
    drv.quit()


def shots_dir(tmp_path):
    d = os.environ.get("EDGE_AGENT_SCREENSHOTS")
    d = d or str(tmp_path / "screenshots")
    os.makedirs(d, exist_ok=True)
    return d


def test_panel_follows_the_agent_and_guards_the_reset(tmp_path, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
    site = standard_site("panel-0001")
    site["monitor"]["flash"]["min_flash"] = 1.0
    site["startup"]["all_red"] = 2.0
    (tmp_path / "site.json").write_text(json.dumps(site))
    (tmp_path / "provision.json").write_text(json.dumps(
        {"store_dir": "store", "keys": [{"kid": "k1", "scheme": "hmac", "secret": "00" * 32}],
         "panel": {"password_hash": hash_password(PASSWORD, iterations=1000)}}))
    port = free_port()
    sock = str(tmp_path / "store" / "control.sock")
    agent = subprocess.Popen(CLI + ["run", "--config", str(tmp_path / "site.json"),
                                    "--provision", str(tmp_path / "provision.json"), "--no-mqtt",
                                    "--panel", "127.0.0.1:%d" % port, "--allow-fault-injection"],
                             cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    shots = shots_dir(tmp_path)
    try:
        wait_for(lambda: call(sock, "status")["status"]["mode"] == "run", 20, "the first green")
        browser.get("http://127.0.0.1:%d/" % port)
        js = browser.execute_script          # one atomic read: the page re-renders every step
        wait_for(lambda: js("return document.getElementById('phase-2') !== null"), 10,
                 "the ring diagram")
        # The page follows the agent: its snapshot is never more than 0.5 s behind.
        lags = []
        for _ in range(10):
            page_ms = int(js("return document.body.dataset.ms"))
            agent_ms = call(sock, "status")["status"]["ms"]
            lags.append(agent_ms - page_ms)
            time.sleep(0.2)
        assert max(lags) <= 500, lags
        st = call(sock, "status")["status"]
        shown = js("return document.getElementById('phase-2').dataset.vehicle")
        assert shown == st["phases"]["2"]["vehicle"] == "G"
        assert browser.find_element(By.ID, "mode").text == "run"
        browser.save_screenshot(os.path.join(shots, "panel-idle.png"))

        # A fault latches flash: the page shows it within 0.5 s.
        assert call(sock, "trip", detail="HIL: panel test")["ok"]
        t0 = time.monotonic()
        wait_for(lambda: browser.find_element(By.ID, "mode").text == "flash", 2, "flash on the page")
        assert time.monotonic() - t0 <= 0.5 + 0.3      # the poll above ticks at 50 ms
        assert js("return document.getElementById('phase-2').dataset.vehicle") == "r"
        time.sleep(1.1)                                  # the card's minimum flash (1.0 s)
        browser.save_screenshot(os.path.join(shots, "panel-flash.png"))

        def act(password, action="flash-reset", arg=None):
            Select(browser.find_element(By.ID, "action")).select_by_value(action)
            if arg is not None:
                browser.find_element(By.ID, "arg").clear()
                browser.find_element(By.ID, "arg").send_keys(str(arg))
            js("document.getElementById('answer').textContent = ''")
            browser.find_element(By.ID, "password").send_keys(password)
            browser.find_element(By.ID, "send").click()
            return wait_for(lambda: (lambda t: t if t and t != "sending…" else None)(
                browser.find_element(By.ID, "answer").text), 10, "the answer")
        assert act("guess") == "refused: wrong password"
        assert call(sock, "status")["status"]["mode"] == "flash"
        answer = act(PASSWORD)
        assert answer == "done: flash reset; cleared: fault injected on the local socket: " \
                         "HIL: panel test"
        wait_for(lambda: browser.find_element(By.ID, "mode").text in ("startup-all-red", "run"),
                 2, "start-up after the reset")
        wait_for(lambda: call(sock, "status")["status"]["mode"] == "run", 10, "run again")
        log = js("return document.getElementById('logbody').innerText")
        assert "flash reset" in log and "monitor fault" in log
        browser.find_element(By.ID, "filter").send_keys("flash reset")
        rows = js("return Array.from(document.querySelectorAll('#logbody tr'))"
                  ".map(r => Array.from(r.cells).map(c => c.innerText))")
        assert [r[1:] for r in rows] == [["4201", "3", "flash reset"]]     # 3: from the panel
        browser.save_screenshot(os.path.join(shots, "panel-after-reset.png"))
        # The header: the plan with its source, no preempt.
        st = call(sock, "status")["status"]
        assert browser.find_element(By.ID, "plan").text == "%s (local)" % st["plan"]["id"]
        assert browser.find_element(By.ID, "preempt").text == "none"

        # The other actions, each an event with its phase or minutes. Phase 3 (NB left)
        # has no recall: the panel's call is a locking call that stands until served.
        assert act(PASSWORD, "vehicle-call", 3) == "done: vehicle call on phase 3"
        wait_for(lambda: (lambda p: p["call"] or p["vehicle"] == "G")(
            call(sock, "status")["status"]["phases"]["3"]), 5, "phase 3 called")
        assert act(PASSWORD, "ped-call", 3) == "refused: phase 3 has no push button"
        assert act("guess", "vehicle-call", 7) == "refused: wrong password"
        assert act(PASSWORD, "local-control", 5) == "done: local control for 5 min"
        browser.find_element(By.ID, "filter").clear()
        browser.find_element(By.ID, "filter").send_keys("(panel)")
        rows = wait_for(lambda: (lambda r: r if len(r) == 2 else None)(js(
            "return Array.from(document.querySelectorAll('#logbody tr'))"
            ".map(r => Array.from(r.cells).map(c => c.innerText))")), 5, "the panel's events")
        assert sorted(r[1:] for r in rows) == [["4206", "3", "manual vehicle call (panel)"],
                                               ["4208", "5", "local control held (panel)"]]
        from urllib.request import urlopen
        csv = urlopen("http://127.0.0.1:%d/events.csv" % port, timeout=10).read().decode()
        lines = csv.splitlines()
        assert lines[0] == "time,ms,code,parameter,event"
        assert any(",4201,3,flash reset" in x for x in lines[1:])
    finally:
        os.kill(agent.pid, signal.SIGTERM)
        try:
            agent.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(agent.pid, signal.SIGKILL)
            agent.wait(5)
    logs = [json.loads(x) for x in agent.stderr.read().splitlines() if x.strip().startswith("{")]
    text = json.dumps(logs)
    assert PASSWORD not in text and "guess" not in text     # passwords are never logged
