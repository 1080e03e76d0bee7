"""Restart after a crash: time from the kill to READY and to the first green, under a systemd stand-in."""

import json
import os
import platform
import signal
import statistics
import sys
import time

from hil.service_supervisor import ServiceSupervisor



def bench_restart(config, provision, crashes=5, watchdog_s=2.0):
    """Kill the agent `crashes` times (SIGKILL, as a crash); time each restart."""
    argv = [sys.executable, "-m", "tools.cli", "run", "--config", config, "--provision",
            provision, "--no-mqtt"]
    sup = ServiceSupervisor(argv, watchdog_s=watchdog_s).start()
    ready, green = [], []
    try:
        if not sup.run_until(lambda: sup.count("first-green") == 1, 60):
            raise RuntimeError("the agent never showed a green")
        for k in range(crashes):
            os.kill(sup.proc.pid, signal.SIGKILL)
            t = time.monotonic()
            if not sup.run_until(lambda: sup.count("first-green") == k + 2, 60):
                raise RuntimeError("no green after crash %d" % (k + 1))
            ready.append(sup.first("ready", t) - t)
            green.append(sup.first("first-green", t) - t)
    finally:
        sup.stop()
    return {"crashes": crashes, "ready_s": ready, "first_green_s": green,
            "ready_median_s": statistics.median(ready),
            "first_green_median_s": statistics.median(green),
            "first_green_max_s": max(green),
            "python": "%s %s" % (platform.python_implementation(), platform.python_version()),
            "machine": "%s, %s" % (platform.machine(), platform.processor() or platform.platform())}


def add_arguments(p):
    p.add_argument("--config", default="examples/site.json", help="site or config file")
    p.add_argument("--provision", default="examples/provision.json")
    p.add_argument("--crashes", type=int, default=5)


def run(args):
    with open(args.config) as f:
        doc = json.load(f)
    site = doc.get("site", doc)
    startup = site.get("startup", {})
    r = bench_restart(args.config, args.provision, args.crashes)
    flash, all_red = float(startup.get("flash", 0)), float(startup.get("all_red", 4))
    print("restart after SIGKILL, %d crashes (%s; %s)" % (r["crashes"], r["python"], r["machine"]))
    print("  to READY=1       median %.3f s" % r["ready_median_s"])
    print("  to first green   median %.3f s, max %.3f s" % (r["first_green_median_s"],
                                                           r["first_green_max_s"]))
    print("  configured start-up flash %.1f s + all-red %.1f s = %.1f s; overhead median %.3f s"
          % (flash, all_red, flash + all_red, r["first_green_median_s"] - flash - all_red))
    return 0
