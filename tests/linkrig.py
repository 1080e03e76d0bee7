"""The running agent against a real Mosquitto, for the link tests.

A small quick site (phases 2 and 6 | 4 and 8, every phase on min recall, 2 s
min greens) crosses a barrier every 5.5 s, so a plan change reaches its safe
point within seconds. The agent runs in-process: `Runtime.run` on a thread,
with the independent safety checker and a mode recorder as extra outputs.
"""

import io
import json
import os
import threading
import time

from drivers.keys import make_body, sign_hmac
from drivers.runlog import RunLog
from tests.portable.cards import card
from tests.safety_checker import SafetyChecker, SafetyViolation
from tools.cmd_run import build_runtime

SECRET = "5e" * 32
KID = "ctl-test"
SITE = "testville"
INTERSECTION = "quick-0001"


def quick_plan(plan_id, min_green=2.0):
    return {"id": plan_id, "sequence": [[2, 4], [6, 8]], "max_mode": "max1",
            "simultaneous_gap_out": True, "dual_entry": [],
            "phases": [{"phase": p, "min_green": min_green, "passage": 1.0, "max_green": 6.0,
                        "max2": 8.0, "yellow": 3.0, "red_clear": 0.5, "walk": 0.0,
                        "ped_clear": 0.0, "recall": "min", "omit": False} for p in (2, 4, 6, 8)]}


def quick_site(intersection=INTERSECTION):
    site = {"intersection": intersection, "name": "Test Rd & Quick St",
            "rings": [[2, 4], [6, 8]], "barriers": [[2, 6], [4, 8]],
            "phases": [{"phase": p, "ped": False} for p in (2, 4, 6, 8)],
            "conflicts": [],
            "detectors": [{"channel": p, "phase": p} for p in (2, 4, 6, 8)],
            "ped_detectors": [],
            "floors": {"min_yellow": 3.0, "min_red_clear": 0.5, "min_green": 2.0,
                       "min_walk": 4.0, "min_ped_clear": 7.0, "max_cycle": 120.0},
            "startup": {"flash": 0.0, "all_red": 1.0, "phases": [2, 6]},
            "rest": "green", "fallback_plan": quick_plan("local-free")}
    site["monitor"] = card(site)
    return site


def envelope(version, plan_id=None, intersection=INTERSECTION, secret=SECRET, kid=KID,
             issued_at=None, min_green=2.0):
    plan = quick_plan(plan_id or "central-v%d" % version, min_green)
    issued = int(time.time()) if issued_at is None else issued_at
    return sign_hmac(make_body(plan, intersection, version, issued), kid, bytes.fromhex(secret))


class Recorder:
    """An output that keeps mode changes with their monotonic time, and checks safety."""

    name = "recorder"

    def __init__(self, site, plans):
        self.checker = SafetyChecker(site, plans)
        self.plans = plans
        self.violations = []
        self.modes = []                  # (monotonic s, mode name)
        self.plan_ids = []               # (monotonic s, plan id)
        self.events = []                 # every core event, in the order the agent logged them
        self.event_times = []            # monotonic s of the step that logged each event
        self.steps = 0

    def start(self):
        pass

    def stop(self):
        pass

    def write(self, now, out):
        from drivers.runtime import mode_name
        self.steps += 1
        try:
            self.checker.check(now, out)
        except SafetyViolation as e:
            self.violations.append(str(e))
        except KeyError as e:            # a plan the checker was not told about
            self.violations.append("unknown plan %s" % e)
        mode = mode_name(out.mode, out.source)
        t = time.monotonic()
        for e in out.events:
            self.events.append(e)
            self.event_times.append(t)
        if not self.modes or self.modes[-1][1] != mode:
            self.modes.append((t, mode))
        if not self.plan_ids or self.plan_ids[-1][1] != out.plan_id:
            self.plan_ids.append((t, out.plan_id))

    @property
    def mode(self):
        return self.modes[-1][1] if self.modes else None


class AgentUnderTest:
    """One agent process-in-a-thread with its files in a directory of its own."""

    def __init__(self, directory, brokers, link=None, mqtt=None, plans=(), runtime=None,
                 intersection=INTERSECTION, site=None, detectors=()):
        self.dir = str(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.site = site or quick_site(intersection)
        self.intersection = intersection
        cfg = {"site": self.site, "link": link or {"loss_s": 1, "stable_s": 2},
               "runtime": runtime or {}}
        self.config = os.path.join(self.dir, "site.json")
        with open(self.config, "w") as f:
            json.dump(cfg, f)
        section = {"brokers": ["%s:%d" % b for b in brokers], "site": SITE,
                   "backoff_base_s": 0.2, "backoff_cap_s": 1.0, "keepalive_s": 2}
        section.update(mqtt or {})
        self.provision = os.path.join(self.dir, "provision.json")
        with open(self.provision, "w") as f:
            json.dump({"store_dir": "store", "keys": [{"kid": KID, "scheme": "hmac",
                                                       "secret": SECRET}],
                       "mqtt": section}, f)
        self.logs = io.StringIO()
        self.log = RunLog(self.logs, json_lines=True)
        self.rt = build_runtime(self.config, self.provision, detectors, log=self.log)
        all_plans = [self.site["fallback_plan"]] + [quick_plan(p) for p in plans]
        self.recorder = Recorder(self.site, all_plans)
        self.rt.outputs.append(self.recorder)
        self.error = None
        self.thread = None

    def start(self):
        def run():
            try:
                self.rt.run()
            except BaseException as e:       # the test fails on it: nothing may escape
                self.error = e
        self.thread = threading.Thread(target=run, name="agent-under-test", daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.rt.stop()
        if self.thread is not None:
            self.thread.join(15)
        self.log.close()
        assert self.error is None, "the runtime raised: %r" % (self.error,)

    def wait_mode(self, mode, timeout_s):
        """Monotonic time the agent reached `mode`, or None after timeout_s."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for t, m in reversed(self.recorder.modes):
                if m == mode:
                    return t
            time.sleep(0.02)
        return None

    def wait_mode_after(self, mode, since, timeout_s):
        """Monotonic time the agent entered `mode` after `since`, or None."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for t, m in self.recorder.modes:
                if m == mode and t >= since:
                    return t
            time.sleep(0.02)
        return None

    def log_records(self):
        return [json.loads(line) for line in self.logs.getvalue().splitlines() if line.strip()]

    def errors_logged(self):
        return [r for r in self.log_records() if r.get("level") == "error"]
