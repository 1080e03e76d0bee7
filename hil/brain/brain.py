"""The reference central brain, sans-I/O: telemetry in, signed plans and heartbeats out.

    brain = Brain(config, key, now_ms=0)                  # or Brain(..., store=snapshot)
    brain.receive(now_ms, topic, payload)                 # telemetry, our retained plans
    for topic, payload, retain, qos in brain.tick(now_ms, wall_s):
        publish(...)                                      # the caller owns the I/O
    save(brain.snapshot())                                # its own store, after each plan

Every ``plan_every_s`` it takes the last ``window_s`` of aligned telemetry per
intersection (hil.brain.bins), checks it (hil.brain.distrust), plans the corridor
(hil.brain.planner) from trusted flows - a flagged intersection from its own
last trusted flows, or its neighbours' - moves each plan a bounded step, and
publishes each as an ordinary signed plan envelope (retained plan/desired).
A restarted brain rebuilds from its store and the retained plans (versions
and current timings) and plans again ``resume_s`` after it starts.

config (a plain dict; docs/brain.md):
    {"site": "springfield", "key": {"kid": .., "secret": hex},
     "corridor": [{"id": "J1", "site": {site dict}, "x": 300.0}, ...],   # in EB order
     "speed_ms": 13.89, "cycle": [60, 140], "plan_every_s": 300, "window_s": 300,
     "bin_s": 60, "first_plan_s": 300, "resume_s": 5, "max_cycle_step_s": 8,
     "max_split_step_s": 6, "travel_s": {id: s from the first signal} (optional)}
"""

import json

from drivers.keys import make_body, sign_hmac
from drivers.topics import CENTRAL, PREFIX, heartbeat_payload, Topics
from edge_agent.envelope import open_envelope, HMAC
from edge_agent.intersection import parse_site
from edge_agent.plan import parse_plan
from edge_agent.validate import ConfigError

from hil.brain import distrust, planner
from hil.brain.bins import Bins
from hil.brain.probes import Probes

DEFAULTS = {"speed_ms": 13.89, "cycle": [60, 140], "plan_every_s": 300, "window_s": 300,
            "bin_s": 60, "first_plan_s": 300, "resume_s": 5, "max_cycle_step_s": 8,
            "max_split_step_s": 6, "heartbeat_s": 1.0, "probe_window_s": 900, "probe_least": 5}


class Brain:
    """One corridor's planner, stepped by whoever owns the clock and the broker."""

    def __init__(self, config, now_ms=0, store=None):
        cfg = dict(DEFAULTS)
        cfg.update(config)
        self.cfg = cfg
        self.site_name = cfg["site"]
        self.kid = cfg["key"]["kid"]
        self.secret = bytes.fromhex(cfg["key"]["secret"])
        self.junctions = [planner.Junction(e["id"], e["site"], e["x"]) for e in cfg["corridor"]]
        self.by_id = {j.id: j for j in self.junctions}
        self.parsed = {j.id: parse_site(j.site) for j in self.junctions}
        self.topics = {j.id: Topics(self.site_name, j.id) for j in self.junctions}
        x0 = self.junctions[0].x
        self.static_travel = cfg.get("travel_s") or {j.id: (j.x - x0) / cfg["speed_ms"] for j in self.junctions}
        self.bins = Bins(cfg["bin_s"])
        self.probes = Probes([(j.id, j.x) for j in self.junctions], cfg["probe_window_s"],
                             cfg["probe_least"])
        self.travel_log = []         # (wall s, {"EB"|"WB": {"a-b": measured s}}) every plan
        self.versions = {j.id: 0 for j in self.junctions}
        self.current = {}            # id -> (cycle, splits {phase: s}, offset)
        self.history = {}            # id -> last trusted flows {phase: veh/h}
        self.flags = {}              # id -> [reasons] at the last plan
        self.flag_log = []           # (wall s, id, reason) every time a source is flagged
        self.plans = []              # (wall s, cycle, {id: (splits, offset)}) every plan
        self.flagged = []            # the sorted flagged ids at every plan
        self.replays_seen = {}
        self.hb_seq = 0
        self.next_hb_ms = now_ms
        self.started_ms = now_ms
        if store:
            self._restore(store)
            self.next_plan_ms = now_ms + int(cfg["resume_s"] * 1000)
        else:
            self.next_plan_ms = now_ms + int(cfg["first_plan_s"] * 1000)

    # ------------------------------------------------------------ input

    def receive(self, now_ms, topic, payload):
        """One message from the broker: telemetry, or our own retained plan/desired."""
        parts = topic.split("/")
        if len(parts) < 4 or parts[0] != PREFIX.split("/")[0] or parts[2] != self.site_name:
            return None
        jid = parts[3]
        rest = "/".join(parts[4:])
        if jid == CENTRAL and rest == "probe":
            return self._probe(payload)
        if jid not in self.by_id:
            return None
        if rest == "telemetry":
            try:
                msg = json.loads(payload)
            except (ValueError, UnicodeDecodeError):
                msg = None
            return self.bins.add(jid, msg)
        if rest == "plan/desired":
            return self._retained_plan(jid, payload)
        return None

    def _probe(self, payload):
        """A probe vehicle's position: {"id", "dir": "EB"|"WB", "x": m, "ts": wall s}."""
        try:
            msg = json.loads(payload)
            return self.probes.update(msg["ts"], msg["id"], msg["dir"], msg["x"])
        except (ValueError, UnicodeDecodeError, KeyError, TypeError):
            self.probes.counters["malformed"] += 1
            return "malformed probe"

    def travel_times(self, wall_s):
        """(EB s from the first signal, WB s to the first signal, {"EB"|"WB": {"a-b": s}} the
        links measured by probes): each link measured where probes allow, else the
        configured or distance / design-speed time."""
        meas = self.probes.travel(wall_s)
        js = self.junctions
        eb, wb = {js[0].id: 0.0}, {js[0].id: 0.0}
        used = {"EB": {}, "WB": {}}
        for a, b in zip(js, js[1:]):
            static = self.static_travel[b.id] - self.static_travel[a.id]
            m_eb, m_wb = meas["EB"][(a.id, b.id)], meas["WB"][(b.id, a.id)]
            eb[b.id] = eb[a.id] + (static if m_eb is None else m_eb)
            wb[b.id] = wb[a.id] + (static if m_wb is None else m_wb)
            if m_eb is not None:
                used["EB"]["%s-%s" % (a.id, b.id)] = round(m_eb, 1)
            if m_wb is not None:
                used["WB"]["%s-%s" % (b.id, a.id)] = round(m_wb, 1)
        return eb, wb, used

    def _retained_plan(self, jid, payload):
        """Our own retained plan: take its version and timings (after a restart)."""
        opened = open_envelope(payload, {self.kid: (HMAC, self.secret)})
        if not isinstance(opened, tuple):
            return "foreign"
        try:
            body = json.loads(opened[1])
            v = int(body["version"])
            co = body["plan"]["coordination"]
        except (ValueError, KeyError, TypeError):
            return "foreign"
        if v >= self.versions.get(jid, 0):
            self.versions[jid] = v
            self.current[jid] = (int(co["cycle"]), {int(p): float(s) for p, s in co["splits"].items()},
                                 int(co["offset"]))
        return "retained"

    # ------------------------------------------------------------ output

    def tick(self, now_ms, wall_s):
        """What to publish now: heartbeats, and plans when one is due."""
        out = []
        if now_ms >= self.next_hb_ms:
            self.next_hb_ms = now_ms + int(self.cfg["heartbeat_s"] * 1000)
            self.hb_seq += 1
            out.append(("%s/%s/central/heartbeat" % (PREFIX, self.site_name),
                        heartbeat_payload(round(wall_s, 3), self.hb_seq), False, 0))
        if now_ms >= self.next_plan_ms:
            self.next_plan_ms = now_ms + int(self.cfg["plan_every_s"] * 1000)
            out.extend(self.plan(wall_s))
        return out

    def assess(self, wall_s):
        """(flows to plan with, flags) for the window ending at the last whole bin."""
        b = self.cfg["bin_s"]
        t1 = int(wall_s // b) * b
        t0 = t1 - self.cfg["window_s"]
        raw, flags = {}, {}
        for j in self.junctions:
            w = self.bins.window(j.id, t0, t1)
            raw[j.id] = j.flows(w)
            n = self.bins.counters.get(j.id, {}).get("replay", 0)
            reasons = distrust.replayed(n - self.replays_seen.get(j.id, 0))
            self.replays_seen[j.id] = n
            # a few seconds of data (a restart, a dropped link) say nothing: judge and plan
            # such a source from its history instead
            short = distrust.coverage(w, self.cfg["window_s"])
            if short:
                reasons += short
            else:
                reasons += distrust.health(j, self.bins.status.get(j.id))
                reasons += distrust.plausibility(j, w)
                # the stuck check looks further back than one window: a loop held longer
                # than the maximum cycle
                back = self.bins.window(j.id, t1 - max(self.cfg["window_s"], 2 * j.max_cycle), t1)
                reasons += distrust.stuck(j, [self.bins.bin(j.id, k) for k in back["bins"]])
            if reasons:
                flags[j.id] = reasons
        # neighbours are compared on the sources that passed their own checks
        clean = [j for j in self.junctions if j.id not in flags]
        for jid, why in distrust.neighbours(clean, raw).items():
            flags[jid] = [why]
        flows = {}
        for j in self.junctions:
            if j.id in flags:
                flows[j.id] = self._stand_in(j, raw, flags)
            else:
                flows[j.id] = raw[j.id]
                self.history[j.id] = raw[j.id]
        return flows, flags

    def _stand_in(self, j, raw, flags):
        """A flagged intersection's flows: its last trusted ones, else its neighbours'."""
        if j.id in self.history:
            return dict(self.history[j.id])
        k = self.junctions.index(j)
        near = [self.junctions[i].id for i in (k - 1, k + 1)
                if 0 <= i < len(self.junctions) and self.junctions[i].id not in flags]
        q = {p: 0.0 for p in j.phases}
        for p in (2, 6):
            vals = [raw[i].get(p, 0.0) for i in near]
            if vals:
                q[p] = sum(vals) / len(vals)
        return q

    def plan(self, wall_s):
        """Plan the corridor now; returns the plan publications."""
        flows, flags = self.assess(wall_s)
        for jid, reasons in sorted(flags.items()):
            if self.flags.get(jid) != reasons:
                for r in reasons:
                    self.flag_log.append((round(wall_s, 1), jid, r))
        self.flags = flags
        self.flagged.append(sorted(flags))
        lo, hi = self.cfg["cycle"]
        target_c = planner.corridor_cycle([(j, flows[j.id]) for j in self.junctions], lo, hi)
        c0 = next(iter(self.current.values()))[0] if self.current else None
        C = target_c if c0 is None else int(c0 + max(-self.cfg["max_cycle_step_s"],
                                                     min(self.cfg["max_cycle_step_s"], target_c - c0)))
        target = {j.id: planner.splits(j, flows[j.id], C) for j in self.junctions}
        q_eb = sum(flows[j.id].get(2, 0.0) for j in self.junctions)
        q_wb = sum(flows[j.id].get(6, 0.0) for j in self.junctions)
        t_eb, t_wb, measured = self.travel_times(wall_s)
        self.travel_log.append((round(wall_s, 1), measured))
        self.probes.forget(wall_s)
        offs = planner.offsets(self.junctions, target, C, t_eb,
                               (max(q_eb, 1.0), max(q_wb, 1.0)), travel_wb=t_wb)
        out, record = [], {}
        for j in self.junctions:
            new = (C, target[j.id], offs[j.id])
            old = self.current.get(j.id)
            if old is not None:
                new = planner.bounded_step(j, old, new, self.cfg["max_cycle_step_s"],
                                           self.cfg["max_split_step_s"])
            self.versions[j.id] += 1
            v = self.versions[j.id]
            plan = planner.plan_dict(j, "brain-%d" % v, new[0], new[1], new[2])
            try:
                parse_plan(plan, self.parsed[j.id], "plan")
            except ConfigError as e:        # never publish what the agent would refuse
                self.versions[j.id] -= 1
                self.flag_log.append((round(wall_s, 1), j.id, "plan not published: %s" % "; ".join(e.errors)))
                continue
            self.current[j.id] = new
            record[j.id] = (new[1], new[2])
            body = make_body(plan, j.id, v, int(wall_s))
            out.append((self.topics[j.id].plan_desired, sign_hmac(body, self.kid, self.secret).encode(),
                        True, 1))
        self.plans.append((round(wall_s, 1), C, record))
        return out

    # ------------------------------------------------------------ store

    def snapshot(self):
        """What the brain keeps in its own store (JSON-ready)."""
        return {"versions": dict(self.versions),
                "current": {k: [c, {str(p): s for p, s in sp.items()}, o]
                            for k, (c, sp, o) in self.current.items()},
                "history": {k: {str(p): q for p, q in v.items()} for k, v in self.history.items()},
                "flags": dict(self.flags)}

    def _restore(self, store):
        for k, v in store.get("versions", {}).items():
            if k in self.versions:
                self.versions[k] = max(self.versions[k], int(v))
        for k, (c, sp, o) in store.get("current", {}).items():
            if k in self.by_id:
                self.current[k] = (int(c), {int(p): float(s) for p, s in sp.items()}, int(o))
        for k, v in store.get("history", {}).items():
            if k in self.by_id:
                self.history[k] = {int(p): float(q) for p, q in v.items()}
        self.flags = dict(store.get("flags", {}))
