"""Signed priority requests: central (or an emergency-vehicle dispatch system)
asks for preempt N ahead of a vehicle's expected arrival.

Same envelope and rules as plans (docs/protocols/plan-envelope.md): the exact
body bytes are authenticated with the keyring, then the body is checked:

    {"intersection": "demo-0001", "version": 17, "issued_at": 1764150000,
     "expires_at": 1764150030, "preempt": 1, "action": "request",
     "arrival_at": 1764150020}

`version` is the sender's monotonic counter (replay: it must rise), a
`request` is renewed by sending it again with a later `expires_at`, and a
request that is not renewed expires by itself; `clear` cancels it. The agent
starts the preempt `lead` before the arrival, so that the dwell begins before
the vehicle does (`entry_lead_ms`: the longest entry the preempt can need).
`PriorityVerifier.check` never raises and changes nothing: it returns a
`preempt.PriorityRequest` in monotonic ms, or an `envelope.Rejected`.
"""

import json

from edge_agent.envelope import (Rejected, open_envelope, MALFORMED, WRONG_INTERSECTION,
                                 REPLAY, FUTURE, STALE, EXPIRED, Policy)
from edge_agent.preempt import PriorityRequest
from edge_agent.validate import Checker, is_int, is_number

PRIORITY_KEYS = ("intersection", "version", "issued_at", "expires_at", "preempt",
                 "action", "arrival_at")
UNKNOWN_PREEMPT = "unknown_preempt"
MAX_REQUEST_S = 600            # a request may be valid for at most 10 minutes


def entry_lead_ms(pr, site, plan):
    """The longest time from the start of preempt `pr` to its dwell (ms): delay,
    the longest green, walk and clearance it may have to wait out, then the
    longest yellow and red clearance, and the track clearance if any."""
    f = site.floors
    worst = 0
    for p in site.phases:
        green = plan.min_green[p] if pr.min_green < 0 else max(f.min_green, min(plan.min_green[p], pr.min_green))
        ped = 0
        if site.has_ped[p]:
            walk = plan.walk[p] if pr.min_walk < 0 else max(f.min_walk, min(plan.walk[p], pr.min_walk))
            clear = plan.ped_clear[p] if pr.ped_clear < 0 else max(f.min_ped_clear, min(plan.ped_clear[p], pr.ped_clear))
            ped = walk + clear
        t = max(green, ped) + max(plan.yellow[p], pr.enter_yellow) + max(plan.red_clear[p], pr.enter_red_clear)
        worst = max(worst, t)
    if pr.track:
        longest_clear = 0
        for p in site.phases:
            if pr.track & (1 << p):
                longest_clear = max(longest_clear, max(plan.yellow[p], pr.track_yellow)
                                    + max(plan.red_clear[p], pr.track_red_clear))
        worst += pr.track_green + longest_clear
    return pr.delay + worst


class PriorityVerifier:
    """Checks priority-request envelopes for one site against a keyring."""

    def __init__(self, site, keys, policy=None, ed25519_verify=None):
        self.site = site
        self.keys = keys
        self.policy = policy or Policy()
        self.ed25519_verify = ed25519_verify

    def check(self, data, last_version, wall_s, now_ms, plan):
        """A PriorityRequest (mono ms, against `now_ms` and `wall_s`) or a Rejected.

        last_version: the highest version accepted so far, None if none.
        wall_s: unix seconds now; a priority request needs a trusted wall clock.
        plan: the active plan (for the lead time).
        """
        opened = open_envelope(data, self.keys, self.ed25519_verify,
                               self.policy.max_envelope_bytes)
        if isinstance(opened, Rejected):
            return opened
        try:
            body = json.loads(opened[1])
        except Exception:
            return Rejected(MALFORMED, "body: not valid JSON")
        why = _body_errors(body)
        if why:
            return Rejected(MALFORMED, why)
        version = body["version"]
        if body["intersection"] != self.site.intersection:
            return Rejected(WRONG_INTERSECTION, "body.intersection %r is not this controller's "
                            "intersection %r" % (body["intersection"], self.site.intersection))
        if last_version is not None and version <= last_version:
            return Rejected(REPLAY, "version %d is not above the last accepted version %d"
                            % (version, last_version), version=version)
        if wall_s is None:
            return Rejected(STALE, "the wall clock is not trusted: a priority request "
                            "cannot be timed", version=version)
        issued, expires = body["issued_at"], body["expires_at"]
        pol = self.policy
        if issued - wall_s > pol.max_future_s:
            return Rejected(FUTURE, "issued_at %s is %s s ahead of the wall clock %s"
                            % (issued, issued - wall_s, wall_s), version=version)
        if wall_s >= expires:
            return Rejected(EXPIRED, "expired at %s, the wall clock reads %s"
                            % (expires, wall_s), version=version)
        n = body["preempt"]
        pr = self.site.preempts.get(n)
        if pr is None:
            return Rejected(UNKNOWN_PREEMPT, "body.preempt %d is not a preempt of this "
                            "intersection" % n, version=version)
        expires_ms = now_ms + int((expires - wall_s) * 1000)
        if body["action"] == "clear":
            return PriorityRequest(n, clear=True, version=version)
        start = now_ms
        if "arrival_at" in body:
            start = now_ms + int((body["arrival_at"] - wall_s) * 1000) - entry_lead_ms(pr, self.site, plan)
        return PriorityRequest(n, max(start, now_ms), expires_ms, version=version)


def _body_errors(body):
    c = Checker()
    d = c.obj(body, "body")
    if d is None:
        return c.errors[0]
    c.unknown_keys(d, PRIORITY_KEYS, "body")
    c.text(d, "intersection", "body")
    if not is_int(d.get("version")) or not d.get("version") >= 1:
        c.error("body.version", "must be an integer >= 1, got %r" % (d.get("version"),))
    for key in ("issued_at", "expires_at", "arrival_at"):
        if key not in d:
            if key != "arrival_at":
                c.error("body." + key, "is required")
            continue
        if not is_number(d[key]) or not 0 <= d[key] <= 100000000000:
            c.error("body." + key, "must be unix seconds, got %r" % (d[key],))
    if not c.errors and d["expires_at"] <= d["issued_at"]:
        c.error("body.expires_at", "%s is not after issued_at %s" % (d["expires_at"], d["issued_at"]))
    if not c.errors and d["expires_at"] - d["issued_at"] > MAX_REQUEST_S:
        c.error("body.expires_at", "a request may last at most %d s, this one %s s"
                % (MAX_REQUEST_S, d["expires_at"] - d["issued_at"]))
    if not is_int(d.get("preempt")):
        c.error("body.preempt", "must be a preempt number, got %r" % (d.get("preempt"),))
    if d.get("action") not in ("request", "clear"):
        c.error("body.action", "must be \"request\" or \"clear\", got %r" % (d.get("action"),))
    return "; ".join(c.errors) if c.errors else None
