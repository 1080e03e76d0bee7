"""The escort, sans-I/O: an emergency vehicle's position updates in, signed priority requests out.

    esc = Escort(config)                                  # the brain's config (site, key, corridor)
    esc.route(vid, [("J1", 284.5, 1), ("J2", 545.0, 1), ...])   # signal, stop line m along the route, preempt
    esc.update(now_ms, vid, dist_m, speed_ms)             # the vehicle's position (m along its route)
    for topic, payload, retain, qos in esc.tick(now_ms, wall_s):
        publish(...)                                      # QoS 1, not retained
    esc.finish(vid)                                       # it left the network: clear what it holds
    esc.receive(now_ms, vid, payload)                     # the same from one JSON message (below)

Every ``renew_s`` the escort sends each signal still ahead of a vehicle a
priority request (docs/preemption.md: the plan envelope, HMAC with the
brain's key) for the vehicle's preempt, valid ``ttl_s``, with ``arrival_at``
= now + distance to the stop line / speed estimate. The speed estimate is
the measured speed, never below ``speed_ms`` (the corridor's design speed):
a vehicle held in a queue is expected at the design speed, so the signal
ahead of it is called in time to flush the queue. The agent starts the
preempt's entry ``lead`` before the arrival (edge_agent.priority.entry_lead_ms;
the escort computes it from the site's own phase timings, which the brain's
plans keep: hil.brain.planner.plan_dict).

Once a request's call has begun at the agent (the start this escort last
sent, arrival minus the lead, has passed), later renewals carry no
``arrival_at`` (call at once): a renewal with a later arrival would drop a
call that is already being served. Once the vehicle is ``past_m`` beyond a
stop line the escort sends ``clear`` for that signal (unless another
vehicle still needs the same preempt there) and stops renewing it. A
request that is not renewed (the brain died, the link dropped) expires by
itself at the agent after ``ttl_s``.

Versions rise per intersection and start from the wall clock in ms, so a
restarted escort is never refused as a replay.
"""

import json

from drivers.keys import sign_hmac
from drivers.topics import Topics
from edge_agent.intersection import parse_site
from edge_agent.priority import entry_lead_ms

DEFAULTS = {"speed_ms": 13.89, "escort_renew_s": 2.0, "escort_ttl_s": 10.0, "escort_past_m": 30.0}
SENT_KEEP = 20000         # the log of what was sent keeps this many entries (a long brain run)


class Escort:
    """Priority requests for emergency vehicles along their routes."""

    def __init__(self, config):
        cfg = dict(DEFAULTS)
        cfg.update(config)
        self.site_name = cfg["site"]
        self.kid = cfg["key"]["kid"]
        self.secret = bytes.fromhex(cfg["key"]["secret"])
        self.speed_ms = float(cfg["speed_ms"])
        self.renew_ms = int(cfg["escort_renew_s"] * 1000)
        self.ttl_s = float(cfg["escort_ttl_s"])
        self.past_m = float(cfg["escort_past_m"])
        self.topics, self.lead_ms = {}, {}
        for e in cfg["corridor"]:
            s = parse_site(e["site"])
            self.topics[e["id"]] = Topics(self.site_name, e["id"]).priority
            self.lead_ms[e["id"]] = {n: entry_lead_ms(pr, s, s.fallback_plan) for n, pr in s.preempts.items()}
        self.routes = {}          # vid -> [(tls, stop m, preempt)] still ahead
        self.where = {}           # vid -> (ms, dist m, speed m/s) last update
        self.start_sent = {}      # (tls, preempt) -> wall s of the call start last sent (arrival - lead)
        self.version = {}         # tls -> last version sent
        self.next_ms = None
        self.sent = []            # (ms, tls, preempt, "request"|"clear", arrival wall s or None)

    # ------------------------------------------------------------ input

    def route(self, vid, signals):
        """A vehicle to escort: [(tls, stop line m along its route, preempt number)] in order."""
        for tls, _, n in signals:
            if tls not in self.lead_ms or n not in self.lead_ms[tls]:
                raise ValueError("escort %s: %s has no preempt %s" % (vid, tls, n))
        self.routes[vid] = list(signals)

    def update(self, now_ms, vid, dist_m, speed_ms=None):
        """The vehicle is ``dist_m`` along its route (speed measured, or from the last update)."""
        if vid not in self.routes:
            return
        last = self.where.get(vid)
        if speed_ms is None:
            speed_ms = 0.0 if last is None or now_ms <= last[0] else \
                max(0.0, (dist_m - last[1]) * 1000.0 / (now_ms - last[0]))
        self.where[vid] = (now_ms, float(dist_m), float(speed_ms))
        if self.next_ms is None:
            self.next_ms = now_ms          # a new vehicle is served at once

    def finish(self, vid):
        """The vehicle has left (arrived, or is no longer tracked): its signals are cleared
        at the next tick."""
        if vid in self.routes:
            self.where[vid] = (None, float("inf"), 0.0)
            if self.next_ms is None:
                self.next_ms = 0

    def receive(self, now_ms, vid, payload):
        """One message about vehicle ``vid`` (the broker's ``central/escort/<vid>`` topic):
        ``{"route": [[tls, stop m, preempt], ...]}``, ``{"dist_m": m, "speed_ms": v}`` (speed
        optional) or ``{"done": true}``. Returns None, or why the message changed nothing."""
        try:
            msg = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            return "escort %s: not JSON" % vid
        if not isinstance(msg, dict):
            return "escort %s: not an object" % vid
        if "route" in msg:
            r = msg["route"]
            if not isinstance(r, list) or not r or not all(
                    isinstance(x, list) and len(x) == 3 and isinstance(x[0], str)
                    and isinstance(x[1], (int, float)) and isinstance(x[2], int)
                    and not isinstance(x[2], bool) for x in r):
                return "escort %s: route must be [[intersection, stop line m, preempt], ...], got %r" % (vid, r)
            try:
                self.route(vid, [tuple(x) for x in r])
            except ValueError as e:
                return str(e)
            return None
        if msg.get("done") is True:
            self.finish(vid)
            return None
        d, v = msg.get("dist_m"), msg.get("speed_ms")
        if not isinstance(d, (int, float)) or isinstance(d, bool) or \
                (v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0)):
            return "escort %s: needs dist_m (m along the route) and an optional speed_ms >= 0, got %r" % (vid, msg)
        if vid not in self.routes:
            return "escort %s: position before its route" % vid
        self.update(now_ms, vid, d, v)
        return None

    # ------------------------------------------------------------ output

    def tick(self, now_ms, wall_s):
        """Requests, renewals and clears due now."""
        if self.next_ms is None or now_ms < self.next_ms:
            return []
        out = []
        wanted = {}               # (tls, preempt) -> earliest arrival wall s of the vehicles ahead
        passed = []
        for vid in sorted(self.routes):
            w = self.where.get(vid)
            if w is None:
                continue
            _, dist, speed = w
            ahead = []
            for tls, stop, n in self.routes[vid]:
                if dist >= stop + self.past_m:
                    passed.append((tls, n))
                    continue
                ahead.append((tls, stop, n))
                eta = wall_s + max(0.0, stop - dist) / max(speed, self.speed_ms)
                k = (tls, n)
                wanted[k] = min(eta, wanted.get(k, eta))
            self.routes[vid] = ahead
            if not ahead:
                del self.routes[vid]
                self.where.pop(vid, None)
        for k in sorted(set(passed)):
            if k in wanted or k not in self.start_sent:
                continue
            del self.start_sent[k]
            out.append(self._send(now_ms, wall_s, k, "clear", None))
        for k in sorted(wanted):
            arrival = round(wanted[k], 1)
            started = k in self.start_sent and self.start_sent[k] <= wall_s
            if started:
                out.append(self._send(now_ms, wall_s, k, "request", None))
            else:
                self.start_sent[k] = arrival - self.lead_ms[k[0]][k[1]] / 1000.0
                out.append(self._send(now_ms, wall_s, k, "request", arrival))
        self.next_ms = now_ms + self.renew_ms if (self.routes or self.start_sent) else None
        return out

    def _send(self, now_ms, wall_s, key, action, arrival):
        tls, n = key
        v = max(self.version.get(tls, 0) + 1, int(wall_s * 1000))
        self.version[tls] = v
        body = {"intersection": tls, "version": v, "issued_at": round(wall_s, 3),
                "expires_at": round(wall_s + self.ttl_s, 3), "preempt": n, "action": action}
        if arrival is not None:
            body["arrival_at"] = arrival
        self.sent.append((now_ms, tls, n, action, arrival))
        if len(self.sent) > SENT_KEEP:
            del self.sent[:len(self.sent) - SENT_KEEP]
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return (self.topics[tls], sign_hmac(text, self.kid, self.secret).encode(), False, 1)
