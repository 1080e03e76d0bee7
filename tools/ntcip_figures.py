"""NTCIP figures for `edge-agent bench detectors`: poll round trip, timeout rate, edge latency.

At each response delay two pollers run side by side, each against its own
emulated unit with that delay: the driver as shipped (10 ms timer ticks,
timeout 200 ms) and the peer it replaces (pysnmp's default 100 ms tick,
timeout 0.8 x period = 80 ms, as before issue 15). Detector 1 flips every
150-450 ms at the unit; the edge latency of a flip is the time from the flip
to the arrival of the first poll response that shows it (the report's rx
stamp: what the control step takes from the queue at its next 100 ms tick).
"""

import random
import statistics
import time

from drivers.ntcip import NtcipDetectorPoller, monotonic_ms
from drivers.ntcip_session import SnmpSession
from edge_agent import detectors as core
from hil.ntcip_emulator import NtcipEmulator


class PysnmpDefaultTick(SnmpSession):
    """The session as it was: pysnmp's own dispatcher (100 ms ticks), timeout as given."""

    tick_s = 0.1

    async def open(self):
        from pysnmp.hlapi.v3arch.asyncio import SnmpEngine, UdpTransportTarget
        from drivers.ntcip_session import auth_data
        self.engine = SnmpEngine()
        self.auth = auth_data(self.cfg)
        self.target = await UdpTransportTarget.create((self.cfg.host, self.cfg.port),
                                                      timeout=self.cfg.timeout_s, retries=0)


def _pct(xs, q):
    return xs[min(len(xs) - 1, int(len(xs) * q))] if xs else float("nan")


def measure(delay_ms, seconds, seed=7):
    """{variant: figures} for one delay, both variants in the same run."""
    variants = {"driver (10 ms tick, timeout 200 ms)": (None, 0.2),
                "peer (pysnmp 100 ms tick, timeout 80 ms)": (PysnmpDefaultTick, 0.08)}
    units = {}
    for name, (session, timeout) in variants.items():
        emu = NtcipEmulator(8, delay_ms=delay_ms)
        port = emu.start()
        p = NtcipDetectorPoller("127.0.0.1", port, detectors={d: d for d in range(1, 9)},
                                timeout_s=timeout)
        if session is not None:
            p.session_class = session
        p.start()
        units[name] = (emu, p, [], [])
    rng = random.Random(seed)
    state = False
    t_end = time.monotonic() + seconds
    next_flip = time.monotonic() + 1.0
    while time.monotonic() < t_end:
        now = time.monotonic()
        if now >= next_flip:
            state = not state
            for emu, p, flips, seen in units.values():
                with emu.lock:
                    emu.presence[1] = state
                flips.append((monotonic_ms(), state))
            next_flip = now + rng.uniform(0.15, 0.45)
        for emu, p, flips, seen in units.values():
            for r in p.reports():
                if r.kind == core.PRESENCE and 1 in r.presence:
                    seen.append((r.rx_ms, r.presence[1]))
        time.sleep(0.002)
    out = {}
    for name, (emu, p, flips, seen) in units.items():
        p.stop()
        emu.stop()
        st = p.stats()
        lat = []
        missed = 0
        for t, on in flips[:-1]:
            arr = next((rx for rx, v in seen if rx >= t and v == on), None)
            if arr is None:
                missed += 1
            else:
                lat.append(arr - t)
        lat.sort()
        rtt = sorted(p.rtt)
        out[name] = {"polls": st["polls"], "timeouts": st["timeouts"],
                     "timeout_pct": 100.0 * st["timeouts"] / max(1, st["polls"]),
                     "rtt_p50": _pct(rtt, 0.5), "rtt_p99": _pct(rtt, 0.99),
                     "edges": len(lat), "missed": missed,
                     "lat_p50": statistics.median(lat) if lat else float("nan"),
                     "lat_p99": _pct(lat, 0.99), "lat_max": lat[-1] if lat else float("nan")}
    return out


def run(delays, seconds):
    print("ntcip: presence polled every 100 ms from an emulated unit answering after the "
          "given delay, %.0f s per delay" % seconds)
    print("  %-49s %5s %6s %8s %9s %9s %9s %9s %9s" % (
        "delay / variant", "polls", "t/o", "t/o %", "rtt p50", "rtt p99", "edge p50",
        "edge p99", "edge max"))
    for d in delays:
        res = measure(d, seconds)
        for name, f in res.items():
            print("  %3d ms %-42s %5d %6d %7.1f%% %7.0f ms %6.0f ms %6.0f ms %6.0f ms %6.0f ms%s"
                  % (d, name, f["polls"], f["timeouts"], f["timeout_pct"], f["rtt_p50"],
                     f["rtt_p99"], f["lat_p50"], f["lat_p99"], f["lat_max"],
                     "  (%d edges never seen)" % f["missed"] if f["missed"] else ""))
    print("  (edge: flip at the unit -> first response showing it; bound: one poll period "
          "plus the delay)")
