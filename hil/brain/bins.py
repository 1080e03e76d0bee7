"""Telemetry from sources that report at uneven rates, aligned into common bins by source time.

    bins = Bins(bin_s=60)
    bins.add("J1", msg)        # "ok", "replay", "malformed" or "old"
    bins.window("J1", t0, t1)  # counts, occupied seconds and green seconds over [t0, t1)

A message covers [ts - interval_s, ts) on the source's own clock (``ts`` the
source stamp, ``interval_s`` how long its counts ran; ``period_s`` stands in
when the interval is missing). Its counts, occupied seconds and green seconds
are spread over the bins it overlaps in proportion to the overlap, so a 1 s,
a 5 s and a 60 s reporter land in the same 60 s bin with the same meaning,
whatever their jitter, delay or arrival order. Each bin remembers how many
seconds each source covered, so a partly reported bin gives rates, not a
short count. Sans-I/O: no clock is read here.
"""


class BinData:
    """One source's share of one bin."""
    __slots__ = ("covered", "counts", "occ", "green", "terms")

    def __init__(self):
        self.covered = 0.0
        self.counts = {}
        self.occ = {}
        self.green = {}
        self.terms = {}


def _num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and v >= 0


class Bins:
    """Common bins of every source's telemetry, keyed by bin start (source seconds)."""

    def __init__(self, bin_s=60, keep_s=7200):
        self.bin_s = bin_s
        self.keep_s = keep_s
        self.data = {}            # source -> {bin start: BinData}
        self.seen = {}            # source -> set of message stamps (replay detection)
        self.latest = {}          # source -> latest source stamp
        self.status = {}          # source -> latest detector status list
        self.counters = {}        # source -> {"ok": n, "replay": n, ...}

    def _count(self, source, what):
        c = self.counters.setdefault(source, {})
        c[what] = c.get(what, 0) + 1
        return what

    def add(self, source, msg):
        """Take one telemetry message; returns what became of it."""
        if not isinstance(msg, dict) or not _num(msg.get("ts")):
            return self._count(source, "malformed")
        ts = float(msg["ts"])
        length = msg.get("interval_s", msg.get("period_s"))
        det = msg.get("detectors")
        if not _num(length) or length <= 0 or not isinstance(det, dict):
            return self._count(source, "malformed")
        seen = self.seen.setdefault(source, set())
        if ts in seen:
            return self._count(source, "replay")
        latest = self.latest.get(source)
        if latest is not None and ts < latest - self.keep_s:
            return self._count(source, "old")
        seen.add(ts)
        if latest is None or ts > latest:
            self.latest[source] = ts
            if isinstance(det.get("status"), list):
                self.status[source] = det["status"]
        start = ts - float(length)
        counts = _channel_values(det.get("counts"))
        occ_s = {ch: pct / 100.0 * length for ch, pct in _channel_values(det.get("occupancy_pct")).items()}
        greens = msg.get("greens") if isinstance(msg.get("greens"), dict) else {}
        green = _channel_values(greens.get("green_s"))
        terms = greens.get("terminations") if isinstance(greens.get("terminations"), dict) else {}
        mine = self.data.setdefault(source, {})
        b = self.bin_s
        k = int(start // b) * b
        while k < ts:
            lo, hi = max(start, k), min(ts, k + b)
            if hi > lo:
                f = (hi - lo) / length
                d = mine.get(k)
                if d is None:
                    d = mine[k] = BinData()
                d.covered += hi - lo
                for ch, n in counts.items():
                    d.counts[ch] = d.counts.get(ch, 0.0) + n * f
                for ch, s in occ_s.items():
                    d.occ[ch] = d.occ.get(ch, 0.0) + s * f
                for p, s in green.items():
                    d.green[p] = d.green.get(p, 0.0) + s * f
            k += b
        # terminations are events, not rates: they go to the bin where the message ends
        end_bin = mine.setdefault(int((ts - 1e-9) // b) * b, BinData())
        for p, t in terms.items():
            if isinstance(t, dict):
                e = end_bin.terms.setdefault(str(p), {})
                for name, n in t.items():
                    if _num(n):
                        e[name] = e.get(name, 0) + n
        self._forget(source)
        return self._count(source, "ok")

    def _forget(self, source):
        horizon = self.latest[source] - self.keep_s
        mine = self.data[source]
        for k in [k for k in mine if k + self.bin_s < horizon]:
            del mine[k]
        seen = self.seen[source]
        if len(seen) > 20000:
            self.seen[source] = set(t for t in seen if t >= horizon)

    def bin(self, source, start):
        """The BinData of ``source`` for the bin starting at ``start``, or None."""
        return self.data.get(source, {}).get(start)

    def complete(self, source, start, tolerance=1e-6):
        """True when the source covered the whole bin."""
        d = self.bin(source, start)
        return d is not None and d.covered >= self.bin_s - tolerance

    def window(self, source, t0, t1):
        """Sums over the bins in [t0, t1): {"covered", "counts", "occ", "green", "bins"}."""
        out = {"covered": 0.0, "counts": {}, "occ": {}, "green": {}, "bins": []}
        for k, d in sorted(self.data.get(source, {}).items()):
            if k < t0 or k + self.bin_s > t1:
                continue
            out["bins"].append(k)
            out["covered"] += d.covered
            for name in ("counts", "occ", "green"):
                acc = out[name]
                for ch, v in getattr(d, name).items():
                    acc[ch] = acc.get(ch, 0.0) + v
        return out


def _channel_values(d):
    """{int channel: number} from a telemetry map with string keys; bad entries dropped."""
    out = {}
    if not isinstance(d, dict):
        return out
    for k, v in d.items():
        try:
            ch = int(k)
        except (TypeError, ValueError):
            continue
        if _num(v):
            out[ch] = float(v)
    return out
