"""Demand: piecewise-constant rates by time of day and the Poisson arrivals they drive.

A rate schedule answers "what is the arrival rate now, and until when does it
hold?" in simulation milliseconds. The Poisson process draws exponential gaps
at the current rate and restarts at each rate change; since the process is
memoryless this is an exact non-homogeneous Poisson process with a
piecewise-constant rate.
"""

DAY_MS = 86_400_000


def parse_time_of_day(text, where):
    """'07:00' or '07:00:30' -> milliseconds after midnight; raises ValueError naming `where`."""
    parts = str(text).split(":")
    try:
        if len(parts) not in (2, 3):
            raise ValueError
        h, m = int(parts[0]), int(parts[1])
        s = int(parts[2]) if len(parts) == 3 else 0
    except ValueError:
        raise ValueError(f"{where}: {text!r} is not a time of day like '07:00'") from None
    if not (0 <= h < 24 and 0 <= m < 60 and 0 <= s < 60):
        raise ValueError(f"{where}: {text!r} is not a time of day like '07:00'")
    return ((h * 60 + m) * 60 + s) * 1000


def format_time_of_day(ms):
    """Milliseconds after midnight -> 'HH:MM:SS'."""
    s = (ms // 1000) % 86_400
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}"


class DailyProfile:
    """Hourly rates (per hour) that change at given times of day and repeat every day."""

    __slots__ = ("starts", "rates")

    def __init__(self, periods):
        # periods: [(from_tod_ms, rate_per_hour)], any order; the last one wraps past midnight.
        periods = sorted(periods)
        self.starts = [p[0] for p in periods]
        self.rates = [float(p[1]) for p in periods]

    def at(self, tod_ms):
        """(rate per hour, ms until the rate next changes) at a time of day."""
        tod_ms %= DAY_MS
        i = len(self.starts) - 1
        while i > 0 and self.starts[i] > tod_ms:
            i -= 1
        if self.starts[i] > tod_ms:  # before the first listed start: the last period wraps
            i = len(self.starts) - 1
        nxt = self.starts[(i + 1) % len(self.starts)]
        until = (nxt - tod_ms) % DAY_MS or DAY_MS
        return self.rates[i], until

    def mean(self, tod_ms, duration_ms):
        """Time-weighted mean rate per hour over [tod, tod + duration)."""
        if duration_ms <= 0:
            return self.at(tod_ms)[0]
        total, t = 0.0, 0
        while t < duration_ms:
            rate, until = self.at(tod_ms + t)
            dt = min(until, duration_ms - t)
            total += rate * dt
            t += dt
        return total / duration_ms


class Platoon:
    """Arrivals bunched by an upstream signal: a share of them inside its green window.

    The window repeats every `cycle_ms`, opens `offset_ms` after each cycle start
    (cycles counted from midnight) and lasts `green_ms`. With share p and green
    fraction g, the rate inside the window is r·(p/g + 1 − p) and outside r·(1 − p),
    which keeps the mean rate r.
    """

    __slots__ = ("cycle_ms", "green_ms", "offset_ms", "share")

    def __init__(self, cycle_ms, green_ms, offset_ms, share):
        self.cycle_ms = cycle_ms
        self.green_ms = green_ms
        self.offset_ms = offset_ms
        self.share = share

    def factor(self, tod_ms):
        """(rate multiplier, ms until the window opens or closes)."""
        pos = (tod_ms - self.offset_ms) % self.cycle_ms
        g = self.green_ms / self.cycle_ms
        if pos < self.green_ms:
            return self.share / g + 1.0 - self.share, self.green_ms - pos
        return 1.0 - self.share, self.cycle_ms - pos


class RateSchedule:
    """Rate in events per millisecond at simulation time t (ms), for a sim started at `start_tod_ms`."""

    __slots__ = ("profile", "platoon", "start_tod_ms")

    def __init__(self, profile, start_tod_ms, platoon=None):
        self.profile = profile
        self.platoon = platoon
        self.start_tod_ms = start_tod_ms

    def at(self, t_ms):
        """(rate per ms, sim time at which it next changes)."""
        tod = self.start_tod_ms + t_ms
        rate_h, until = self.profile.at(tod)
        if self.platoon is not None:
            f, p_until = self.platoon.factor(tod)
            rate_h *= f
            until = min(until, p_until)
        return rate_h / 3_600_000.0, t_ms + until


class PoissonArrivals:
    """Arrival times (float ms) of a Poisson process with a scheduled rate, from its own random stream."""

    __slots__ = ("rng", "schedule", "clock")

    def __init__(self, rng, schedule, start_ms=0.0):
        self.rng = rng
        self.schedule = schedule
        self.clock = float(start_ms)

    def next(self):
        """The next arrival time after the previous one, or None if the rate is always zero."""
        if not any(self.schedule.profile.rates):
            return None
        t = self.clock
        while True:
            rate, change = self.schedule.at(t)
            if rate > 0.0:
                t_next = t + self.rng.expovariate(rate)
                if t_next < change:
                    self.clock = t_next
                    return t_next
            t = float(change)
