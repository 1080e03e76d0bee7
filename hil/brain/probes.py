"""Measured travel times of the arterial's links from probe vehicles, sans-I/O.

    probes = Probes([("J1", 300.0), ("J2", 550.0), ...])    # signals in EB order, at their x
    probes.update(wall_s, "veh-17", "EB", 412.3)             # a probe's map-matched position
    probes.travel(wall_s)   # {"EB": {("J1", "J2"): 19.4 or None, ...}, "WB": {("J2", "J1"): ...}}

A probe (a connected vehicle, a fleet's GPS unit: what the escort takes for
emergency vehicles) reports once a second where it is along the corridor, in
the brain's own coordinate (the signals' ``x``, metres eastwards), and which
way it drives. A probe crosses a signal when two positions in a row bracket
the signal's x; the crossing time is interpolated between them. When it
crosses the next signal downstream without having stopped in between (no
report slower than ``stop_ms``), the time between the two crossings is one
sample of that link: the travel time of a vehicle the progression carried,
which is what offsets are for. A vehicle that stopped at the downstream
signal says how bad the offsets are, not how long the link is, and is not
counted. A link's travel time is the median of its samples of the last
``window_s``, once there are ``least`` of them; until then the planner uses
distance / design speed for it.
"""

from collections import deque

DIRECTIONS = ("EB", "WB")
KEEP = 400                 # samples kept per link


class Probes:
    """Link travel times from probe positions."""

    def __init__(self, signals, window_s=900.0, least=5, stop_ms=2.0, max_gap_s=5.0):
        self.signals = [(jid, float(x)) for jid, x in signals]
        self.window_s, self.least, self.stop_ms = float(window_s), int(least), float(stop_ms)
        self.max_gap_s = float(max_gap_s)
        self.last = {}             # vid -> [wall, x, direction, last crossing (jid, wall) or None, stopped]
        self.samples = {}          # (direction, a, b) -> deque[(wall of arrival, seconds)]
        self.counters = {"reports": 0, "crossings": 0, "samples": 0, "stopped": 0, "malformed": 0}

    def links(self, direction):
        ids = [j for j, _ in self.signals]
        if direction == "WB":
            ids = ids[::-1]
        return list(zip(ids, ids[1:]))

    def update(self, wall_s, vid, direction, x):
        """One probe report; returns why it changed nothing, or None."""
        if direction not in DIRECTIONS or not _num(x) or not _num(wall_s) or not isinstance(vid, str):
            self.counters["malformed"] += 1
            return "malformed probe"
        self.counters["reports"] += 1
        x = float(x)
        prev = self.last.get(vid)
        if prev is None or prev[2] != direction or not 0 < wall_s - prev[0] <= self.max_gap_s:
            self.last[vid] = [wall_s, x, direction, None, False]
            return None
        w0, x0, _, cross, stopped = prev
        ahead = x - x0 if direction == "EB" else x0 - x
        if ahead / (wall_s - w0) < self.stop_ms:
            stopped = True
        for jid, xs in self._passed(direction, x0, x):
            t = w0 + (wall_s - w0) * (xs - x0) / (x - x0)
            self.counters["crossings"] += 1
            if cross is not None and (cross[0], jid) in self.links(direction):
                if stopped:
                    self.counters["stopped"] += 1
                else:
                    key = (direction, cross[0], jid)
                    self.samples.setdefault(key, deque(maxlen=KEEP)).append((t, t - cross[1]))
                    self.counters["samples"] += 1
            cross, stopped = (jid, t), False
        self.last[vid] = [wall_s, x, direction, cross, stopped]
        return None

    def _passed(self, direction, x0, x1):
        """The signals between two positions, in driving order."""
        if direction == "EB":
            return [(j, xs) for j, xs in self.signals if x0 < xs <= x1]
        return [(j, xs) for j, xs in reversed(self.signals) if x1 <= xs < x0]

    def finish(self, vid):
        """The probe left the corridor."""
        self.last.pop(vid, None)

    def travel(self, wall_s):
        """{direction: {(a, b): median seconds of the window's samples, or None}}."""
        out = {}
        for d in DIRECTIONS:
            out[d] = {}
            for a, b in self.links(d):
                xs = sorted(s for t, s in self.samples.get((d, a, b), ()) if t >= wall_s - self.window_s)
                out[d][(a, b)] = _median(xs) if len(xs) >= self.least else None
        return out

    def forget(self, wall_s):
        """Drop the vehicles not heard from for a while (called once a plan)."""
        for vid in [v for v, p in self.last.items() if wall_s - p[0] > self.max_gap_s]:
            del self.last[vid]


def _median(xs):
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2.0


def _num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) < 1e12
