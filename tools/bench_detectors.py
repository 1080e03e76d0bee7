"""Detector cards and NTCIP units: parse throughput, pty latency, SNMP poll round trip, timeouts, edge latency."""

import os
import random
import statistics
import tempfile
import threading
import time

from drivers import detector_protocol as proto
from drivers.serial_detector import SerialDetectorCard
from edge_agent import detectors as core
from hil.card_emulator import CardEmulator


def add_arguments(p):
    p.add_argument("--frames", type=int, default=200_000, help="frames to parse (default 200000)")
    p.add_argument("--seconds", type=float, default=5.0,
                   help="length of the latency run over the pty (default 5 s)")
    p.add_argument("--rate", type=int, default=50, help="presence frames per second (default 50)")
    p.add_argument("--baud", type=int, default=115_200, help="emulated line speed (default 115200)")
    p.add_argument("--channels", type=int, default=16, help="card channels (default 16)")
    p.add_argument("--ntcip-seconds", type=float, default=8.0,
                   help="length of each NTCIP run (default 8 s per delay)")
    p.add_argument("--ntcip-delays", default="0,20,40,80",
                   help="NTCIP unit response delays in ms (default 0,20,40,80)")
    p.add_argument("--only", choices=("serial", "ntcip"), help="run one half only")


def sample_stream(n, channels=16, seed=1):
    """n presence frames of a busy card: random bitmaps, 0-4 edges each."""
    rng = random.Random(seed)
    out = []
    t = 1_000_000
    for i in range(n):
        t += 100
        edges = sorted((t - rng.randint(0, 199), rng.randint(1, channels), rng.random() < 0.5)
                       for _ in range(rng.randint(0, 4)))
        out.append(proto.frame(i, proto.PRESENCE,
                               proto.presence_payload(t, channels, rng.getrandbits(channels), edges)))
    return b"".join(out)


def bench_parse(frames=200_000, channels=16, chunk=4096):
    """Frames per second through the parser alone and through the driver (to core Reports)."""
    data = sample_stream(frames, channels)
    p = proto.FrameParser()
    t0 = time.perf_counter()
    n = 0
    for i in range(0, len(data), chunk):
        n += len(p.feed(data[i:i + chunk]))
    parse_s = time.perf_counter() - t0
    card = SerialDetectorCard("/bench", source="bench", channels={c: c for c in range(1, channels + 1)},
                              clock=lambda: 0)
    t0 = time.perf_counter()
    for i in range(0, len(data), chunk):
        card.feed(data[i:i + chunk], 0)
        card.queue.clear()
    driver_s = time.perf_counter() - t0
    assert n == frames and card.stats()["frames"] == frames
    return {"frames": frames, "bytes": len(data), "parse_fps": frames / parse_s,
            "parse_mbps": len(data) / parse_s / 1e6, "driver_fps": frames / driver_s}


def bench_latency(seconds=5.0, rate=50, baud=115_200, channels=16):
    """Emulator write -> report stamped by the driver's reader thread, over a real pty."""
    tmp = tempfile.mkdtemp(prefix="edge-agent-bench-")
    link = os.path.join(tmp, "card0")
    period = 1000 // rate
    emu = CardEmulator(range(1, channels + 1), link=link, period_ms=period, counts_ms=0)
    emu.baudrate = baud
    emu.write_log = []
    emu.open()
    card = SerialDetectorCard(link, source="bench",
                              channels={c: c for c in range(1, channels + 1)},
                              clock=lambda: time.perf_counter() * 1000.0)
    card.start()
    deadline = time.monotonic() + 2.0
    while card.ser is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    rng = random.Random(2)
    stop = threading.Event()

    def writer():
        t0 = time.monotonic()
        while not stop.is_set():
            now = int((time.monotonic() - t0) * 1000)
            if rng.random() < 0.5:
                emu.observe([(now, rng.randint(1, channels), rng.random() < 0.5)])
            emu.tick(now)
            time.sleep(period / 4000)

    th = threading.Thread(target=writer, daemon=True)
    th.start()
    time.sleep(seconds)
    stop.set()
    th.join()
    time.sleep(0.1)
    card.stop()
    emu.unplug()
    os.rmdir(tmp)
    written = {(card_ms & 0xFFFFFFFF): w for mtype, card_ms, w in emu.write_log
               if mtype == proto.PRESENCE}
    lat = []
    for r in card.reports():
        if r.kind == core.PRESENCE:
            w = written.get(r.src_ms & 0xFFFFFFFF)
            if w is not None:
                lat.append(r.rx_ms - w * 1000.0)
    lat.sort()
    if not lat:
        raise RuntimeError("no presence frame came through the pty: %r" % (card.stats(),))
    return {"samples": len(lat), "p50_ms": statistics.median(lat),
            "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))], "max_ms": lat[-1],
            "baud": baud, "rate": rate, "errors": {k: v for k, v in card.stats().items()
                                                   if k in proto.ERROR_COUNTERS and v}}


def run(args):
    if args.only != "ntcip":
        run_serial(args)
    if args.only != "serial":
        from tools import ntcip_figures
        ntcip_figures.run([int(x) for x in args.ntcip_delays.split(",")], args.ntcip_seconds)
    return 0


def run_serial(args):
    res = bench_parse(args.frames, args.channels)
    print("parse: %d presence frames (%d channels, 0-4 edges), %.1f MB"
          % (res["frames"], args.channels, res["bytes"] / 1e6))
    print("  parser   %9.0f frames/s  (%.1f MB/s)" % (res["parse_fps"], res["parse_mbps"]))
    print("  driver   %9.0f frames/s  (parse + sequence check + core Reports)" % res["driver_fps"])
    lat = bench_latency(args.seconds, args.rate, args.baud, args.channels)
    print("latency: emulator write -> report stamped on arrival, over a pty at %d baud, "
          "%d frames/s, %d samples" % (lat["baud"], lat["rate"], lat["samples"]))
    print("  p50 %.2f ms   p99 %.2f ms   max %.2f ms   (target p99 <= 20 ms)%s"
          % (lat["p50_ms"], lat["p99_ms"], lat["max_ms"],
             "" if lat["p99_ms"] <= 20 else "  ** over target **"))
    if lat["errors"]:
        print("  line errors: %r" % (lat["errors"],))
    print("  (a report then waits for the next 100 ms control step: add 0-100 ms to reach the controller)")
