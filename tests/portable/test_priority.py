"""Signed priority requests: envelope rules, lead time, renew, expire, clear.

Site and preempt 1 as in test_preempt.py. Its longest entry: a through phase
in walk cut to 5 s, entry pedestrian clearance 8 s, yellow 4.0 s, entry red
clearance 2.0 s: 19.0 s, so a request for an arrival 60 s away starts the
preempt 41 s from now.
"""

import json

try:
    from tests.portable.test_preempt import site, EMERGENCY, at
except ImportError:
    from test_preempt import site, EMERGENCY, at
from edge_agent import events as ev
from edge_agent.agent import Agent, Inputs
from edge_agent.envelope import seal_hmac
from edge_agent.intersection import parse_site
from edge_agent.priority import PriorityVerifier, entry_lead_ms

SECRET = b"0123456789abcdef0123456789abcdef"
KEYS = {"central-1": ("hmac", SECRET)}
WALL = 1_764_150_000
SITE = parse_site(site(EMERGENCY))


def envelope(**body):
    b = {"intersection": "demo-0001", "version": 1, "issued_at": WALL, "expires_at": WALL + 30,
         "preempt": 1, "action": "request"}
    b.update(body)
    return seal_hmac(json.dumps(b), "central-1", SECRET)


def check(data, last=None, wall=WALL, now=10_000):
    return PriorityVerifier(SITE, KEYS).check(data, last, wall, now, SITE.fallback_plan)


def test_lead_time_is_the_longest_entry():
    assert entry_lead_ms(SITE.preempts[1], SITE, SITE.fallback_plan) == 19_000


def test_request_starts_the_preempt_the_lead_before_the_arrival():
    r = check(envelope(arrival_at=WALL + 60, expires_at=WALL + 90))
    assert (r.number, r.start_ms, r.expires_ms, r.clear, r.version) == (1, 51_000, 100_000, False, 1)
    agent = Agent(SITE)
    log = []
    for t in range(0, 120_001, 100):
        out = agent.step(t, Inputs(priority=[r] if t == 10_000 else None))
        log.extend(out.events)
    assert at(log, ev.PREEMPT_CALL_ON, 1) == [51_000]
    assert at(log, ev.PREEMPT_ENTRY, 1) == [51_000]
    # Not renewed: it expires by itself at 100.0 s.
    assert at(log, ev.PREEMPT_CALL_OFF, 1) == [100_000]
    dwell = at(log, ev.PREEMPT_DWELL, 1)
    assert len(dwell) == 1 and dwell[0] <= 51_000 + 19_000


def test_renewal_extends_and_clear_cancels():
    first = check(envelope(expires_at=WALL + 10))
    renew = check(envelope(version=2, issued_at=WALL + 5, expires_at=WALL + 40), last=1,
                  wall=WALL + 5, now=15_000)
    clear = check(envelope(version=3, issued_at=WALL + 20, action="clear"), last=2,
                  wall=WALL + 20, now=30_000)
    assert clear.clear and (renew.start_ms, renew.expires_ms) == (15_000, 50_000)
    agent = Agent(SITE)
    log = []
    feed = {10_000: [first], 15_000: [renew], 30_000: [clear]}
    for t in range(0, 60_001, 100):
        out = agent.step(t, Inputs(priority=feed.get(t)))
        log.extend(out.events)
    assert at(log, ev.PREEMPT_CALL_ON, 1) == [10_000]
    assert at(log, ev.PREEMPT_CALL_OFF, 1) == [30_000]


def test_each_bad_request_is_rejected_with_its_reason():
    good = envelope()
    flipped = good[:-3] + ("1" if good[-3] == "0" else "0") + good[-2:]
    cases = [
        (flipped, "bad_mac"),
        (envelope(intersection="demo-0002"), "wrong_intersection"),
        (envelope(version=4), "replay"),
        (envelope(issued_at=WALL - 60, expires_at=WALL - 1), "expired"),
        (envelope(issued_at=WALL + 3_600, expires_at=WALL + 3_630), "future"),
        (envelope(preempt=5), "unknown_preempt"),
        (envelope(action="go"), "malformed"),
        (envelope(expires_at=WALL + 3_600), "malformed"),
    ]
    for data, reason in cases:
        r = check(data, last=4 if reason == "replay" else None)
        assert getattr(r, "reason", None) == reason, (reason, r)
    r = check(envelope(), wall=None)
    assert r.reason == "stale" and "wall clock is not trusted" in r.message
