"""Link figures: failover and recovery times, plan latency, loop lateness under a junk flood, memory.

    edge-agent bench link                 # about 1.5 minutes
    edge-agent bench link --minutes 10    # the lateness run for 10 minutes

Everything is real and on this machine: a Mosquitto on 127.0.0.1 (a free
port), the agent as its own process (`edge-agent run` with the suburban
simulator as its detectors, 1 Hz telemetry, default link times: loss 3 s,
stable 10 s), a central stand-in with a 1 s heartbeat, and a flood process
sending junk to every topic the agent reads at 1,000 messages a second.
Mode changes are timed by the agent itself (the `since` of its retained
state) against the wall clock of the fault, so no broker delay enters.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from drivers.keys import make_body, sign_hmac
from drivers.telemetry import summary
from hil.broker import Broker
from hil.central import Central
from hil.scenario import load_scenario

SITE = "benchville"
KID = "ctl-bench"
SECRET = "b3" * 32
TARGETS = {"failover_s": 3.5, "p99_ms": 5.0, "max_ms": 25.0, "rss_mb": 40.0}


def add_arguments(p):
    p.add_argument("--minutes", type=float, default=1.0,
                   help="length of the lateness run under the flood (default 1)")
    p.add_argument("--loss-s", type=float, default=3.0, help="heartbeat silence that is a loss")
    p.add_argument("--stable-s", type=float, default=10.0, help="stable time before central")
    p.add_argument("--flood-rate", type=float, default=1000.0, help="junk messages per second")
    p.add_argument("--keep", action="store_true", help="keep the working directory")


class Bench:
    def __init__(self, args, d):
        self.args, self.d = args, d
        sc = load_scenario("suburban")
        self.site = sc.site
        self.inter = sc.site["intersection"]
        self.broker = Broker(os.path.join(d, "broker")).start()
        with open(os.path.join(d, "site.json"), "w") as f:
            json.dump({"site": self.site,
                       "link": {"loss_s": args.loss_s, "stable_s": args.stable_s},
                       "runtime": {"lateness_file": os.path.join(d, "lateness.json")}}, f)
        with open(os.path.join(d, "provision.json"), "w") as f:
            json.dump({"store_dir": "store",
                       "keys": [{"kid": KID, "scheme": "hmac", "secret": SECRET}],
                       "mqtt": {"brokers": ["127.0.0.1:%d" % self.broker.port], "site": SITE,
                                "backoff_base_s": 0.25, "backoff_cap_s": 30}}, f)
        self.central = Central("127.0.0.1", self.broker.port, SITE, client_id="bench-central")
        self.agent = None
        self.rss = []

    def start_agent(self):
        self.central.start()
        self.central.heartbeat(1.0)
        self.err = open(os.path.join(self.d, "agent.log"), "w")
        self.agent = subprocess.Popen(
            [sys.executable, "-m", "tools.cli", "run", "--config",
             os.path.join(self.d, "site.json"), "--provision", os.path.join(self.d, "provision.json"),
             "--detectors", "sim:suburban", "--log-json"],
            stdout=subprocess.DEVNULL, stderr=self.err)

    def state(self):
        return self.central.state(self.inter) or {}

    def wait_state(self, pred, timeout_s):
        v = self.central.wait_for(lambda: pred(self.state()) and self.state(), timeout_s, 0.02)
        self.sample_rss()
        return v

    def sample_rss(self):
        try:
            with open("/proc/%d/status" % self.agent.pid) as f:
                for line in f:
                    if line.startswith(("VmRSS:", "VmHWM:")):
                        self.rss.append((line.split(":")[0], int(line.split()[1]) / 1024))
        except OSError:
            pass

    def envelope(self, version):
        plan = dict(self.site["fallback_plan"], id="central-v%d" % version)
        return sign_hmac(make_body(plan, self.inter, version, int(time.time())), KID,
                         bytes.fromhex(SECRET))

    def stop(self):
        if self.agent is not None and self.agent.poll() is None:
            os.kill(self.agent.pid, signal.SIGTERM)
            try:
                self.agent.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.agent.pid, signal.SIGKILL)
                self.agent.wait(5)
        self.central.stop()
        self.broker.stop()


def run(args):
    d = tempfile.mkdtemp(prefix="bench-link-")
    b = Bench(args, d)
    fig = {}
    try:
        b.start_agent()
        print("agent pid %d, broker 127.0.0.1:%d (pid %d), loss %.1f s, stable %.1f s"
              % (b.agent.pid, b.broker.port, b.broker.pid, args.loss_s, args.stable_s))
        if not b.wait_state(lambda s: s.get("mode") == "local", 30):
            args.keep = True
            print("the agent did not come up: see %s/agent.log" % d)
            return 1
        # Plan publish -> accepted (plan/reported) and -> requested from the controller.
        t_pub = time.time()
        b.central.publish_plan(b.inter, b.envelope(1))
        rep = b.central.wait_for(lambda: ((b.central.reported(b.inter) or {}).get("last") or {})
                                 .get("version") == 1 and b.central.reported(b.inter), 10, 0.005)
        fig["plan_publish_to_accepted_s"] = rep["last"]["at"] - t_pub if rep else None
        st = b.wait_state(lambda s: s.get("mode") == "central", args.stable_s + 15)
        fig["plan_publish_to_central_s"] = st["since"] - t_pub if st else None

        # Broker killed: local within the loss time; restart: back to central.
        time.sleep(2)
        t_kill = time.time()
        b.broker.kill()
        time.sleep(args.loss_s + 2)
        t_restart = time.time()
        b.broker.start()
        st = b.wait_state(lambda s: s.get("mode") == "local" and s.get("since", 0) > t_kill, 30)
        fig["failover_broker_kill_s"] = st["since"] - t_kill if st else None
        st = b.wait_state(lambda s: s.get("mode") == "central" and s.get("since", 0) > t_restart,
                          args.stable_s + 45)
        fig["recovery_broker_restart_s"] = st["since"] - t_restart if st else None

        # Heartbeat silence with the broker up.
        time.sleep(2)
        t_hb = time.time()
        b.central.stop_heartbeat()
        st = b.wait_state(lambda s: s.get("mode") == "local" and s.get("since", 0) > t_hb,
                          args.loss_s + 10)
        fig["failover_heartbeat_stop_s"] = st["since"] - t_hb if st else None
        t_resume = time.time()
        b.central.heartbeat(1.0)
        st = b.wait_state(lambda s: s.get("mode") == "central" and s.get("since", 0) > t_resume,
                          args.stable_s + 15)
        fig["recovery_heartbeat_resume_s"] = st["since"] - t_resume if st else None

        # Lateness under 1 Hz telemetry and the junk flood.
        seconds = args.minutes * 60
        base = "tsc/v1/%s/%s/" % (SITE, b.inter)
        topics = [base + "plan/desired", base + "cmd", "tsc/v1/%s/central/heartbeat" % SITE]
        print("lateness run: %.0f s with a %.0f msg/s junk flood on %d topics"
              % (seconds, args.flood_rate, len(topics)))
        t_flood = time.time()
        flood = subprocess.Popen([sys.executable, "-m", "hil.flood", "--port", str(b.broker.port),
                                  "--rate", str(args.flood_rate), "--seconds", str(seconds)]
                                 + [a for t in topics for a in ("--topic", t)],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        while flood.poll() is None:
            b.sample_rss()
            time.sleep(1.0)
        t_end = time.time()
        fig["flood_sent"] = json.loads(flood.stdout.read() or b"{}").get("total")
        fig["mode_after_flood"] = b.state().get("mode")
        tel = b.central.last_telemetry(b.inter) or {}
        fig["junk_counted"] = sum((tel.get("counters") or {}).get("junk", {}).values())
    finally:
        b.stop()
    try:
        with open(os.path.join(d, "lateness.json")) as f:
            samples = json.load(f)
    except (OSError, ValueError):
        samples = []
    flood_late = [x for t, x in samples if t_flood <= t <= t_end] if samples else []
    whole = [x for t, x in samples]
    lat = summary(flood_late)
    rss = max((v for k, v in b.rss if k == "VmRSS"), default=None)
    hwm = max((v for k, v in b.rss if k == "VmHWM"), default=None)

    def s(v, unit="s", nd=2):
        return "n/a" if v is None else ("%.*f %s" % (nd, v, unit))

    print()
    print("failover, broker SIGKILL -> local         %-10s (target <= %.1f s with loss %.0f s)"
          % (s(fig.get("failover_broker_kill_s")), TARGETS["failover_s"], args.loss_s))
    print("failover, heartbeat stop -> local         %-10s" % s(fig.get("failover_heartbeat_stop_s")))
    print("recovery, broker restart -> central       %-10s (stable time %.0f s + reconnect back-off)"
          % (s(fig.get("recovery_broker_restart_s")), args.stable_s))
    print("recovery, heartbeat resume -> central     %-10s" % s(fig.get("recovery_heartbeat_resume_s")))
    print("plan publish -> accepted (plan/reported)  %-10s (verified and stored; safe point not included)"
          % s(fig.get("plan_publish_to_accepted_s"), "s", 3))
    print("plan publish -> central mode              %-10s (includes the stable time)"
          % s(fig.get("plan_publish_to_central_s")))
    print("loop lateness under flood  p50 %s  p99 %s  max %s   over %d steps (targets p99 <= %.0f ms, max <= %.0f ms)"
          % (s(lat["p50"], "ms", 3), s(lat["p99"], "ms", 3), s(lat["max"], "ms", 3), lat["n"],
             TARGETS["p99_ms"], TARGETS["max_ms"]))
    whole_s = summary(whole)
    print("loop lateness, whole run   p50 %s  p99 %s  max %s   over %d steps"
          % (s(whole_s["p50"], "ms", 3), s(whole_s["p99"], "ms", 3), s(whole_s["max"], "ms", 3),
             whole_s["n"]))
    print("flood: %s junk messages sent, %s counted by the agent, mode after: %s"
          % (fig.get("flood_sent"), fig.get("junk_counted"), fig.get("mode_after_flood")))
    print("agent resident memory      %s now, %s peak (target <= %.0f MB)"
          % (s(rss, "MB", 1), s(hwm, "MB", 1), TARGETS["rss_mb"]))
    if args.keep:
        print("working directory %s (agent.log, lateness.json, broker/)" % d)
    else:
        shutil.rmtree(d, ignore_errors=True)
    return 0
