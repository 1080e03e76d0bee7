"""Envelope verify cost: median and p99 per envelope, HMAC and Ed25519, CPython and MicroPython.

Each timed call is the whole `Verifier.check` a controller runs on a plan from
the link: parse the envelope, authenticate the body bytes, parse the body,
replay and freshness checks, and validate the standard 8-phase plan against
its site. The authentication alone (HMAC, Ed25519 verify) is timed apart.
"""

import json
import os
import platform
import time

from edge_agent import envelope as env
from edge_agent.envelope import Verifier
from edge_agent.intersection import parse_site
from edge_agent.standard import standard_plan, standard_site

WALL = 1_800_000_000
SECRET = b"controller-0001-shared-secret-32"


def _body(version):
    return json.dumps({"intersection": "demo-0001", "version": version, "issued_at": WALL,
                       "plan": standard_plan("bench")}, sort_keys=True, separators=(",", ":"))


def _stats(costs_ns):
    costs_ns = sorted(costs_ns)
    n = len(costs_ns)
    return {"n": n, "median_us": costs_ns[n // 2] / 1000, "p99_us": costs_ns[int(n * 0.99)] / 1000}


def _time(fn, items):
    """Wall-clock and thread CPU-time stats per call.

    On a shared machine the wall p99 includes time other processes held the
    CPU; the CPU-time p99 is the verifier's own worst case.
    """
    wall, cpu = time.perf_counter_ns, time.thread_time_ns
    walls, cpus = [], []
    for x in items:
        a, b = wall(), cpu()
        fn(x)
        cpus.append(cpu() - b)
        walls.append(wall() - a)
    res = _stats(walls)
    res["cpu_median_us"] = _stats(cpus)["median_us"]
    res["cpu_p99_us"] = _stats(cpus)["p99_us"]
    return res


def bench_cpython(n=5000):
    """{label: {"n", "median_us", "p99_us"}} for HMAC and Ed25519 on CPython."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from drivers.keys import ed25519_verify, sign_ed25519, sign_hmac
    private = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    public = private.public_key().public_bytes_raw()
    site = parse_site(standard_site("demo-0001"))
    keys = {"ctl": ("hmac", SECRET), "central": ("ed25519", public)}
    v = Verifier(site, keys, None, ed25519_verify)
    bodies = [_body(i + 1) for i in range(n)]
    hmacs = [sign_hmac(b, "ctl", SECRET).encode() for b in bodies]
    sigs = [sign_ed25519(b, "central", private).encode() for b in bodies]
    for e in (hmacs[0], sigs[0]):
        assert v.check(e, 0, WALL).ok
    raw = [b.encode() for b in bodies]
    tag = env.mac(SECRET, raw[0])
    sig = bytes.fromhex(json.loads(sigs[0])["sig"])
    out = {
        "hmac check": _time(lambda e: v.check(e, 0, WALL), hmacs),
        "ed25519 check": _time(lambda e: v.check(e, 0, WALL), sigs),
        "hmac-sha256 + compare only": _time(lambda b: env.equal_ct(env.mac(SECRET, b), tag), raw),
        "ed25519 verify only": _time(lambda b: ed25519_verify(public, sig, b), raw),
        "reject: bad mac": _time(lambda e: v.check(e, 0, WALL), [_flip_mac(e) for e in hmacs]),
    }
    out["_bytes"] = len(hmacs[0])
    return out


def _flip_mac(e):
    d = json.loads(e)
    d["mac"] = ("0" if d["mac"][0] != "0" else "1") + d["mac"][1:]
    return json.dumps(d).encode()


# The HMAC check, run inside MicroPython by the WebAssembly runner of the tests.
MPY_BENCH = '''
import time, json
from edge_agent import envelope as env
from edge_agent.envelope import Verifier, seal_hmac
from edge_agent.intersection import parse_site
from edge_agent.standard import standard_plan, standard_site

def test_bench_envelope():
    secret = __SECRET__
    wall = __WALL__
    v = Verifier(parse_site(standard_site("demo-0001")), {"ctl": ("hmac", secret)})
    envelopes, bodies = [], []
    for i in range(__N__):
        body = json.dumps({"intersection": "demo-0001", "version": i + 1, "issued_at": wall,
                           "plan": standard_plan("bench")})
        bodies.append(body.encode())
        envelopes.append(seal_hmac(body, "ctl", secret).encode())
    assert v.check(envelopes[0], 0, wall).ok
    tag = env.mac(secret, bodies[0])
    # The WebAssembly clock ticks in whole milliseconds: time batches.
    batch = __BATCH__
    for label, fn, items in (("check", lambda e: v.check(e, 0, wall), envelopes),
                             ("mac", lambda b: env.equal_ct(env.mac(secret, b), tag), bodies)):
        costs = []
        for b in range(len(items) // batch):
            a = time.ticks_us()
            for i in range(b * batch, (b + 1) * batch):
                fn(items[i])
            costs.append(time.ticks_diff(time.ticks_us(), a) / batch)
        costs.sort()
        n = len(costs)
        print("RESULT", label, n * batch, costs[n // 2], costs[int(n * 0.99)])
'''
MPY_BATCH = 20


def bench_micropython(n=2000):
    """HMAC check and HMAC alone inside MicroPython 1.27 (WebAssembly under Node)."""
    import subprocess
    import tempfile
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    runner = os.path.join(repo, "tests", "mpy", "runner.mjs")
    code = (MPY_BENCH.replace("__SECRET__", repr(SECRET)).replace("__WALL__", str(WALL))
            .replace("__BATCH__", str(MPY_BATCH)).replace("__N__", str(n)))
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "test_bench_envelope.py"), "w") as f:
            f.write(code)
        try:
            proc = subprocess.run(["node", runner, "--portable-dir", tmp], capture_output=True,
                                  text=True, timeout=1800)
        except OSError as e:
            return {"error": "cannot run node (%s)" % e}
    if proc.returncode != 0:
        return {"error": proc.stderr.strip() or "runner exit %d" % proc.returncode}
    doc = json.loads(proc.stdout)
    res = doc["results"][0] if doc["results"] else None
    if res is None or not res["ok"]:
        return {"error": res["traceback"] if res else json.dumps(doc["import_errors"])}
    out = {"_python": doc["micropython"]}
    for line in res["output"].splitlines():
        if line.startswith("RESULT"):
            _, label, count, med, p99 = line.split()
            out[label] = {"n": int(count), "median_us": float(med), "p99_us": float(p99)}
    return out


def add_arguments(p):
    p.add_argument("--n", type=int, default=5000, help="CPython envelopes per case (default 5000)")
    p.add_argument("--mpy-n", type=int, default=2000, help="MicroPython envelopes (default 2000)")
    p.add_argument("--no-micropython", action="store_true", help="skip the MicroPython run")


def run(args):
    res = bench_cpython(args.n)
    print("machine: %s, %s; %s %s" % (platform.machine(), platform.processor() or platform.platform(),
                                       platform.python_implementation(), platform.python_version()))
    print("CPython: %d envelopes per case, %d-byte HMAC envelope of the standard 8-phase plan"
          % (args.n, res.pop("_bytes")))
    print("  %-28s %22s   %s" % ("", "wall clock", "thread CPU time"))
    for label, r in res.items():
        print("  %-28s median %7.1f us  p99 %7.1f us   median %7.1f us  p99 %7.1f us"
              % (label, r["median_us"], r["p99_us"], r["cpu_median_us"], r["cpu_p99_us"]))
    if args.no_micropython:
        return 0
    m = bench_micropython(args.mpy_n)
    if "error" in m:
        print("MicroPython: could not run: %s" % m["error"])
        return 1
    print("MicroPython 1.27 (WebAssembly under Node; median/p99 of %d-envelope batch means, "
          "its clock ticks in ms): %s" % (MPY_BATCH, m.pop("_python")))
    names = {"check": "hmac check", "mac": "hmac-sha256 + compare only"}
    for label, r in m.items():
        print("  %-28s median %7.1f us  p99 %7.1f us" % (names.get(label, label), r["median_us"],
                                                       r["p99_us"]))
    return 0
