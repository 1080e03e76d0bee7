"""What the runtime measures between two telemetry messages: loop lateness, detector activity.

    late = Lateness()
    late.add(ms)                 # each step: how late the loop woke
    late.summary()               # {"p50": .., "p99": .., "max": .., "n": ..}
    act = DetectorActivity()
    act.sample(agent.status(now)["detectors"])  # each step: presence and on-edges
    act.take(step_ms)            # counts and occupancy over the interval, then reset
    ph = PhaseActivity()
    ph.sample(now, out.vehicle, out.events)   # each step: greens and terminations
    ph.take()                    # {"green_s": {phase: s}, "terminations": {phase: {...}}}
"""

from edge_agent import events as ev
from edge_agent.indications import GREEN



def percentile(sorted_values, q):
    """The q-quantile (0..1) of sorted values, nearest rank; None when empty."""
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, int(round(q * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


class Lateness:
    """Loop wake-up lateness samples (ms, float) of one interval and of the whole run."""

    def __init__(self, keep_all=False):
        self.interval = []
        self.all = [] if keep_all else None
        self.max_ever = 0.0
        self.steps = 0
        self.overruns = 0            # steps that woke a whole period or more late

    def add(self, ms, period_ms=100):
        self.interval.append(ms)
        if self.all is not None:
            self.all.append(ms)
        self.steps += 1
        if ms > self.max_ever:
            self.max_ever = ms
        if ms >= period_ms:
            self.overruns += 1

    def take(self):
        """Summary of the interval since the last take, then start a new one."""
        s = summary(self.interval)
        self.interval = []
        s["max_ever"] = round(self.max_ever, 3)
        s["steps"] = self.steps
        s["overruns"] = self.overruns
        return s


def summary(values):
    v = sorted(values)
    if not v:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    return {"n": len(v), "p50": round(percentile(v, 0.5), 3), "p99": round(percentile(v, 0.99), 3),
            "max": round(v[-1], 3)}


class DetectorActivity:
    """Per vehicle-detector channel: on-edges and occupied steps over one interval."""

    def __init__(self):
        self.counts = {}
        self.occupied = {}
        self.was = {}
        self.steps = 0

    def sample(self, detectors):
        """One step of Agent.status()["detectors"]: presence and this step's pulses."""
        self.steps += 1
        counts, occ, was = self.counts, self.occupied, self.was
        for s in detectors:
            if s["ped"]:
                continue
            ch = s["channel"]
            raw = s["presence"]
            n = s["pulses"]
            if raw and not was.get(ch, False) and n == 0:
                n = 1
            was[ch] = raw
            if n:
                counts[ch] = counts.get(ch, 0) + n
            if raw:
                occ[ch] = occ.get(ch, 0) + 1

    def take(self, channels):
        """{channel: count}, {channel: occupancy percent} for the interval; then reset."""
        steps = max(self.steps, 1)
        counts = {str(c): self.counts.get(c, 0) for c in channels}
        occ = {str(c): round(100.0 * self.occupied.get(c, 0) / steps, 1) for c in channels}
        self.counts, self.occupied, self.steps = {}, {}, 0
        return counts, occ


TERMINATION_NAMES = {ev.PHASE_GAP_OUT: "gap_out", ev.PHASE_MAX_OUT: "max_out",
                     ev.PHASE_FORCE_OFF: "force_off"}


class PhaseActivity:
    """Per phase: seconds of green and terminations (gap-out, max-out, force-off) over one
    interval, from the outputs each step (what a central planner needs besides volumes)."""

    def __init__(self):
        self.green_ms = {}
        self.terms = {}
        self.green_now = ()
        self.last_ms = None

    def sample(self, now, vehicle, events):
        if self.last_ms is not None:
            dt = now - self.last_ms
            for p in self.green_now:
                self.green_ms[p] = self.green_ms.get(p, 0) + dt
        self.last_ms = now
        self.green_now = [p for p in range(1, len(vehicle)) if vehicle[p] == GREEN]
        for _, code, p in events:
            name = TERMINATION_NAMES.get(code)
            if name is not None:
                d = self.terms.setdefault(p, {"gap_out": 0, "max_out": 0, "force_off": 0})
                d[name] += 1

    def catch_up(self, now):
        """Count the greens shown since the last sample up to now (held outputs: a rig
        that steps an agent only on events samples it only then)."""
        if self.last_ms is not None and now > self.last_ms:
            for p in self.green_now:
                self.green_ms[p] = self.green_ms.get(p, 0) + now - self.last_ms
            self.last_ms = now

    def take(self):
        """{"green_s": {phase: s}, "terminations": {phase: counts}} for the interval; reset."""
        out = {"green_s": {str(p): round(ms / 1000.0, 3) for p, ms in sorted(self.green_ms.items())},
               "terminations": {str(p): d for p, d in sorted(self.terms.items())}}
        self.green_ms, self.terms = {}, {}
        return out


def phase_view(status):
    """Indications, interval timers and calls of each phase, from Agent.status, for
    telemetry and status views (the wire names: veh, ped, interval, *_left_ms, call)."""
    phases = {}
    for p, e in status["phases"].items():
        entry = {"veh": e["vehicle"]}
        if "ped" in e:
            entry["ped"] = e["ped"]
        if e.get("interval", "red") != "red":
            for k in ("interval", "elapsed_ms", "min_left_ms", "gap_left_ms", "max_left_ms"):
                if k in e:
                    entry[k] = e[k]
        if e.get("call"):
            entry["call"] = True
        if e.get("ped_call"):
            entry["ped_call"] = True
        phases[str(p)] = entry
    return phases
