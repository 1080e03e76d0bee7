"""One picture from sources of uneven rates: 1 Hz, 5 Hz and 10 Hz, with jitter.

The same vehicle passages over channel 2 (phase 2; phase 4 on min recall) are
replayed three ways: wired directly (presence read every 100 ms step, the
reference), and through a source that samples every P ms (plus up to J ms of
send jitter), stamps its own clock (offset by 7,654,321 ms) and lists the
on/off edges of the last two periods, its reports arriving 5..45 ms late.
Every gap-out of phase 2 must happen in all runs, each within one report
period P of the reference (a source's jitter J makes that a period as sent;
these seeds measure exactly one period at every rate).
"""

try:
    from tests.portable.test_detectors import site_with
    from tests.portable.sheets import phase_timing, times
except ImportError:
    from test_detectors import site_with
    from sheets import phase_timing, times
from edge_agent import events as ev
from edge_agent.agent import Agent, Inputs
from edge_agent.intersection import parse_site
from edge_agent.detectors import Report, PRESENCE

CARD_CLOCK = 7_654_321
END_MS = 240_000


class Lcg:
    """A tiny deterministic generator: the same numbers on CPython and MicroPython."""

    def __init__(self, seed):
        self.x = seed & 0x7FFFFFFF

    def below(self, n):
        self.x = (self.x * 1103515245 + 12345) & 0x7FFFFFFF
        return (self.x >> 8) % n

    def between(self, lo, hi):
        return lo + self.below(hi - lo + 1)


def passages(seed=3):
    """Bursts of vehicles: gaps 0.2-1.5 s (under passage minus one second), each
    over the loop 0.15-0.6 s; a burst lasts about 20-30 s, then 20 s of nothing."""
    rng = Lcg(seed)
    out = []
    t = 3_000
    while t < END_MS - 40_000:
        end = t + rng.between(20_000, 30_000)
        while t < end:
            occ = rng.between(150, 600)
            out.append((t, t + occ))
            t += occ + rng.between(200, 1_500)
        t += 20_000
    return out


def site():
    return site_with(t4=phase_timing(4, recall="min"))


def reference(vehicles):
    agent = Agent(parse_site(site()))
    log = []
    t = 0
    while t <= END_MS:
        on = False
        n = 0
        for a, b in vehicles:
            if a <= t < b:
                on = True
            if t - 100 < a <= t and b <= t:
                n += 1                 # on and off within the step: a pulse
        log.extend(agent.step(t, Inputs(detectors={2: on}, pulses={2: n} if n else None)).events)
        t += 100
    return log


def source_reports(vehicles, period, jitter, seed):
    """Reports of a source sampling every `period` ms (+ up to `jitter` ms)."""
    rng = Lcg(seed)
    edges = []
    for a, b in vehicles:
        edges.append((a, True))
        edges.append((b, False))
    reps = []
    k = 1
    while True:
        s = k * period + rng.between(0, jitter)
        if s > END_MS:
            return reps
        on = False
        for a, b in vehicles:
            if a <= s < b:
                on = True
        recent = [(t + CARD_CLOCK, 2, e) for t, e in edges if s - 2 * period < t <= s]
        rx = s + rng.between(5, 45)
        reps.append(Report("radar", PRESENCE, rx, s + CARD_CLOCK, presence={2: on}, edges=recent))
        k += 1


def via_source(vehicles, period, jitter, seed):
    reps = source_reports(vehicles, period, jitter, seed)
    agent = Agent(parse_site(site()))
    log = []
    i = 0
    t = 0
    while t <= END_MS:
        batch = []
        while i < len(reps) and reps[i].rx_ms <= t:
            batch.append(reps[i])
            i += 1
        log.extend(agent.step(t, Inputs(reports=batch or None)).events)
        t += 100
    return log


def check_rate(period, jitter, seed):
    vehicles = passages()
    ref = times(reference(vehicles), ev.PHASE_GAP_OUT, 2)
    got = times(via_source(vehicles, period, jitter, seed), ev.PHASE_GAP_OUT, 2)
    assert len(ref) >= 5, ref
    assert len(got) == len(ref), (period, ref, got)
    worst = 0
    for a, b in zip(ref, got):
        d = b - a
        if d < 0:
            d = -d
        if d > worst:
            worst = d
    assert worst <= period, (period, worst, ref, got)
    return worst


def test_1_hz_source_with_200_ms_jitter_gaps_out_within_one_report_period():
    assert check_rate(1_000, 200, 11) == 1_000


def test_5_hz_source_with_40_ms_jitter_gaps_out_within_one_report_period():
    assert check_rate(200, 40, 12) == 200


def test_10_hz_source_with_20_ms_jitter_gaps_out_within_one_report_period():
    assert check_rate(100, 20, 13) == 100


def test_no_short_actuation_is_lost_at_1_hz():
    vehicles = passages()
    reps = source_reports(vehicles, 1_000, 200, 11)
    agent = Agent(parse_site(site()))
    ons = 0
    i = 0
    t = 0
    while t <= END_MS:
        batch = []
        while i < len(reps) and reps[i].rx_ms <= t:
            batch.append(reps[i])
            i += 1
        for e in agent.step(t, Inputs(reports=batch or None)).events:
            if e[1] == ev.DETECTOR_ON and e[2] == 2:
                ons += 1
        t += 100
    # Every vehicle reported before the end of the run shows up as one detector-on.
    last_rx = reps[-1].src_ms - CARD_CLOCK
    assert ons == len([v for v in vehicles if v[0] <= last_rx])
