"""Core step cost: median and p99 of one Agent.step on CPython and MicroPython."""

import json
import os
import platform
import random
import time

from edge_agent.agent import Agent, Inputs
from edge_agent.intersection import parse_site
from edge_agent.standard import standard_site


def demand_stream(seed, steps, channels=16, ped_channels=4):
    """Pre-drawn random demand so the timed loop measures only the agent."""
    rng = random.Random(seed)
    levels = {}
    stream = []
    for _ in range(steps):
        for ch in range(1, channels + 1):
            if rng.random() < 0.01:
                levels[ch] = not levels.get(ch, False)
        peds = {ch: True for ch in range(1, ped_channels + 1) if rng.random() < 0.001}
        stream.append(Inputs(detectors=dict(levels), peds=peds))
    return stream


def bench_core(steps=200_000, seed=1):
    """Median and p99 ns per step, and simulated hours per wall second at 10 Hz."""
    site = parse_site(standard_site())
    agent = Agent(site)
    stream = demand_stream(seed, steps)
    clock = time.perf_counter_ns
    costs = [0] * steps
    t0 = clock()
    now = 0
    for i in range(steps):
        a = clock()
        agent.step(now, stream[i])
        costs[i] = clock() - a
        now += 100
    wall = (clock() - t0) / 1e9
    costs.sort()
    sim_hours = steps * 0.1 / 3600
    return {
        "steps": steps,
        "median_us": costs[steps // 2] / 1000,
        "p99_us": costs[int(steps * 0.99)] / 1000,
        "mean_us": sum(costs) / steps / 1000,
        "realtime_factor": steps * 0.1 / wall,
        "sim_hours_per_wall_s": sim_hours / wall,
        "python": "%s %s" % (platform.python_implementation(), platform.python_version()),
        "machine": "%s, %s" % (platform.machine(), platform.processor() or platform.platform()),
    }


def print_core(res, label="CPython"):
    print("%s: %d steps of the standard 8-phase, 16-detector site (100 ms steps, random demand)"
          % (label, res["steps"]))
    print("  step cost   median %7.1f us   p99 %7.1f us   mean %7.1f us"
          % (res["median_us"], res["p99_us"], res["mean_us"]))
    print("  throughput  %.0fx real time = %.2f simulated hours per wall second"
          % (res["realtime_factor"], res["sim_hours_per_wall_s"]))


# The same loop, run inside MicroPython by the WebAssembly runner of the tests.
MPY_BENCH = '''
import time, random
from edge_agent.agent import Agent, Inputs
from edge_agent.intersection import parse_site
from edge_agent.standard import standard_site

def test_bench_core():
    steps = STEPS
    rng = random.Random(1) if hasattr(random, "Random") else None
    random.seed(1)
    levels = {}
    stream = []
    for i in range(steps):
        for ch in range(1, 17):
            if random.random() < 0.01:
                levels[ch] = not levels.get(ch, False)
        peds = {}
        for ch in range(1, 5):
            if random.random() < 0.001:
                peds[ch] = True
        stream.append(Inputs(detectors=dict(levels), peds=peds))
    agent = Agent(parse_site(standard_site()))
    # The WebAssembly clock ticks in whole milliseconds, so single steps are
    # timed in batches of BATCH steps and each batch gives its mean per step.
    costs = []
    t0 = time.ticks_us()
    now = 0
    for b in range(steps // BATCH):
        a = time.ticks_us()
        for i in range(b * BATCH, (b + 1) * BATCH):
            agent.step(now, stream[i])
            now += 100
        costs.append(time.ticks_diff(time.ticks_us(), a) / BATCH)
    wall = time.ticks_diff(time.ticks_us(), t0) / 1e6
    costs.sort()
    n = len(costs)
    print("RESULT", n * BATCH, costs[n // 2], costs[int(n * 0.99)], sum(costs) / n, wall)
'''


MPY_BATCH = 200


def bench_micropython(steps=20_000):
    """Run the step loop inside MicroPython 1.27 (WebAssembly under Node)."""
    import json
    import subprocess
    import tempfile
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    runner = os.path.join(repo, "tests", "mpy", "runner.mjs")
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "test_bench_core.py"), "w") as f:
            f.write(MPY_BENCH.replace("STEPS", str(steps)).replace("BATCH", str(MPY_BATCH)))
        proc = subprocess.run(["node", runner, "--portable-dir", tmp], capture_output=True,
                              text=True, timeout=1800)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip() or "runner exit %d" % proc.returncode}
    doc = json.loads(proc.stdout)
    res = doc["results"][0] if doc["results"] else None
    if res is None or not res["ok"]:
        return {"error": (res or doc)["traceback"] if res else json.dumps(doc["import_errors"])}
    n, med, p99, mean, wall = res["output"].split("RESULT", 1)[1].split()
    n = int(n)
    return {"steps": n, "median_us": float(med), "p99_us": float(p99), "mean_us": float(mean),
            "realtime_factor": n * 0.1 / float(wall), "sim_hours_per_wall_s": n * 0.1 / 3600 / float(wall),
            "python": doc["micropython"]}


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _with_commit(ref, fn):
    """fn(old_root) with the core and tools of git commit `ref` unpacked in a temporary tree."""
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory() as old:
        archive = subprocess.run(["git", "-C", REPO, "archive", ref, "edge_agent", "tools"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", old], input=archive, check=True)
        return fn(old)


def bench_against(ref, steps, rounds=3):
    """This tree's core and the core of git commit `ref`, measured side by side:
    each in its own fresh CPython process, alternating, `rounds` times each."""
    import subprocess
    import sys
    code = ("import json,sys; from tools.bench_core import bench_core; "
            "print(json.dumps(bench_core(%d)))" % steps)
    results = {"this tree": [], ref: []}

    def measure(old):
        for _ in range(rounds):
            for label, root in (("this tree", REPO), (ref, old)):
                env = dict(os.environ, PYTHONPATH=root)
                out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env,
                                     capture_output=True, text=True, check=True).stdout
                results[label].append(json.loads(out))
        return results
    return _with_commit(ref, measure)


def instructions_per_step(root, steps):
    """CPU instructions per core step of the tree at `root`, counted by valgrind's
    callgrind: the same run at `steps` and at 2 x `steps`, the difference divided by
    `steps` (start-up and imports cancel out). Repeatable whatever else the machine
    does, unlike times on a shared VM."""
    import re
    import subprocess
    import sys
    counts = []
    for n in (steps, 2 * steps):
        r = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                            sys.executable, "-c",
                            "from tools.bench_core import bench_core; bench_core(%d)" % n],
                           cwd=root, env=dict(os.environ, PYTHONPATH=root),
                           capture_output=True, text=True)
        m = re.search(r"Collected : (\d+)", r.stderr)
        if r.returncode != 0 or m is None:
            raise RuntimeError("callgrind run failed in %s: %s" % (root, r.stderr[-400:]))
        counts.append(int(m.group(1)))
    return (counts[1] - counts[0]) / steps


def add_arguments(p):
    p.add_argument("--against", metavar="COMMIT",
                   help="also measure the core of this git commit, alternating with this tree")
    p.add_argument("--rounds", type=int, default=3, help="alternations with --against (default 3)")
    p.add_argument("--steps", type=int, default=200_000, help="CPython steps (default 200000)")
    p.add_argument("--mpy-steps", type=int, default=40_000, help="MicroPython steps (default 40000)")
    p.add_argument("--no-micropython", action="store_true", help="skip the MicroPython run")
    p.add_argument("--instructions", type=int, metavar="STEPS", nargs="?", const=20_000,
                   help="with --against: count CPU instructions per step under valgrind "
                        "(callgrind) instead of timing, over STEPS steps (default 20000)")


def run(args):
    if args.instructions:
        import shutil
        if not args.against:
            print("bench core: --instructions compares two trees: give --against COMMIT")
            return 2
        if shutil.which("valgrind") is None:
            print("bench core: --instructions needs valgrind (apt-get install valgrind)")
            return 2
        here = instructions_per_step(REPO, args.instructions)
        old = _with_commit(args.against, lambda root: instructions_per_step(root, args.instructions))
        print("instructions per step (callgrind, %d and %d steps): this tree %.0f, %s %.0f "
              "(%+.1f %%)" % (args.instructions, 2 * args.instructions, here, args.against, old,
                            100.0 * (here - old) / old))
        return 0
    if args.against:
        res = bench_against(args.against, args.steps, args.rounds)
        for label, runs in res.items():
            med = sorted(r["median_us"] for r in runs)
            print("%-12s median per round %s us; best %.1f us; p99 %s us; %s"
                  % (label, " ".join("%.1f" % r["median_us"] for r in runs), med[0],
                     " ".join("%.1f" % r["p99_us"] for r in runs),
                     " ".join("%.0fx" % r["realtime_factor"] for r in runs)))
        return 0
    res = bench_core(args.steps)
    print("machine: %s; %s" % (res["machine"], res["python"]))
    print_core(res, "CPython")
    if not args.no_micropython:
        m = bench_micropython(args.mpy_steps)
        if "error" in m:
            print("MicroPython: could not run: %s" % m["error"])
            return 1
        print_core(m, "MicroPython 1.27 (WebAssembly, Node %s; median/p99 of %d-step batch means, "
                   "its clock ticks in ms)" % (node_version(), MPY_BATCH))
    return 0


def node_version():
    import subprocess
    try:
        return subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"
