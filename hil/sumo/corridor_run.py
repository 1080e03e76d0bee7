"""The corridor measurement: SUMO's programs, a frozen green wave, free agents, agents with the
brain, and with the brain's escort of emergency vehicles.

    loop = BrainLoop(corridor_map, brain_config(...), seed=1)     # the brain's side of the rig
    r = run_agents(m, net, routes, loops, 3600, seed, hooks=loop)
    loop.flag_log, loop.plans

``BrainLoop`` plays, in virtual time, what the broker and the agents' runtimes
do in the field: each agent's telemetry every report period (1 s by default)
with jitter and a delivery delay, stamped with the source's own time; the
brain's heartbeat and signed plans delivered to each agent, checked by the
agent's own envelope verifier and handed to its supervisor. Faults: a
source's volumes scaled, a source reporting every 60 s, the brain killed and
restarted from its store and the retained plans, one agent's link dropped.
With ``escort`` (``ev_routes``) the brain's escort (hil.brain.escort) gets each
emergency vehicle's position along its route once a second (as a GPS unit
would report it) and its signed priority requests go to the agents, each
checked by the agent's own priority verifier (edge_agent.priority), like plans.
"""

import heapq
import json
import random
import xml.etree.ElementTree as ET
import zlib

from drivers.telemetry import PhaseActivity
from drivers.topics import PREFIX
from edge_agent.envelope import HMAC, Policy, Verifier
from edge_agent.intersection import parse_site
from edge_agent.priority import PriorityVerifier
from edge_agent.supervisor import CentralPlan, LinkPolicy

from hil.brain.brain import Brain
from hil.brain.escort import Escort
from hil.sumo import network_rig

WALL0 = 1_767_225_600          # 2026-01-01 00:00 UTC: the rig's wall clock starts at a midnight
KEY = {"kid": "corridor-brain", "secret": "5c" * 32}
HOLDOVER_MS = 300_000          # agents keep a central plan 5 min after losing central


def brain_config(netmap, corridor, **over):
    """The brain's config for a built corridor: its signals in EB order, at their x."""
    xs = corridor_positions(corridor)
    cfg = {"site": "corridor", "key": dict(KEY),
           "corridor": [{"id": tls, "site": netmap.tls[tls].site, "x": xs[tls]}
                        for tls in corridor.signals]}
    cfg.update(over)
    return cfg


def corridor_positions(corridor):
    from hil.sumo.corridor import SPACING
    spacing = json.loads((corridor.dir / "spacing.json").read_text()) \
        if (corridor.dir / "spacing.json").exists() else SPACING
    x, out = 0.0, {}
    for i, s in enumerate(spacing[:-1]):
        x += s
        out["J%d" % (i + 1)] = x
    return out


PROBE_SHARE = 0.1             # end-to-end arterial trips that report their position (probes)


def probe_routes(corridor, config):
    """{"EB"|"WB": ({edge: m along the route}, [(stop line m, the signal's x)])}: how the rig
    map-matches an arterial vehicle's position to the brain's corridor x (piecewise linear
    through the stop lines, so a probe crosses a signal's x at its stop line)."""
    from hil.sumo.corridor import arterial_edges
    xs = {e["id"]: float(e["x"]) for e in config["corridor"]}
    out = {}
    for d in ("EB", "WB"):
        offsets, stops = route_table(corridor.net, arterial_edges(corridor.n, d))
        out[d] = (offsets, [(m, xs[tls]) for tls, m in stops])
    return out


def corridor_x(anchors, m):
    """The corridor x of a point m metres along a route, through its (m, x) anchors."""
    (m0, x0), (m1, x1) = anchors[0], anchors[-1]
    if m <= m0:
        return x0 + (m - m0) * (1 if x1 > x0 else -1)
    if m >= m1:
        return x1 + (m - m1) * (1 if x1 > x0 else -1)
    for (ma, xa), (mb, xb) in zip(anchors, anchors[1:]):
        if ma <= m <= mb:
            return xa + (xb - xa) * (m - ma) / (mb - ma)


def probe_reports(rig, share, routes, wall_s):
    """The probe messages of this instant: each selected end-to-end trip's corridor x."""
    out = []
    for vid in rig.vehicle_ids():
        if not vid.startswith(network_rig.END_TO_END) or zlib.crc32(vid.encode()) % 1000 >= share * 1000:
            continue
        d = vid[:2]
        pos = rig.vehicle_position(vid)
        offsets, anchors = routes[d]
        if pos is None or pos[0] not in offsets:
            continue
        x = corridor_x(anchors, offsets[pos[0]] + pos[1])
        out.append({"id": vid, "dir": d, "x": round(x, 2), "ts": round(wall_s, 3)})
    return out


def route_table(net, edges):
    """({edge or internal edge: m along the route at its start}, [(tls, stop line m)]) for a
    route given as its edges in order: lengths and the connections' internal lanes from the net."""
    root = ET.parse(str(net)).getroot()
    length = {}
    for e in root.iter("edge"):
        for lane in e.iter("lane"):
            length[lane.get("id")] = float(lane.get("length"))
            length.setdefault(e.get("id"), float(lane.get("length")))
    via = {}
    for c in root.iter("connection"):
        key = (c.get("from"), c.get("to"))
        if c.get("via") and key not in via:
            via[key] = (c.get("via"), c.get("tl"))
    offsets, stops, x = {}, [], 0.0
    for a, b in zip(edges, list(edges[1:]) + [None]):
        offsets[a] = x
        x += length[a]
        if b is None:
            break
        if (a, b) not in via:
            raise ValueError("route: no connection from %s to %s in %s" % (a, b, net))
        lane, tl = via[(a, b)]
        if tl:
            stops.append((tl, round(x, 2)))
        offsets[lane.rsplit("_", 1)[0]] = x
        x += length[lane]
    return offsets, stops


def ev_routes(corridor):
    """{vid: (depart ms, {edge: m}, [(tls, stop m, preempt)])} for the corridor's emergency
    vehicles (ids EV_EB.k / EV_WB.k), the escort's view of their routes."""
    from hil.sumo.corridor import PREEMPTS, arterial_edges
    tables = {}
    for d, num, _ in PREEMPTS:
        offsets, stops = route_table(corridor.net, arterial_edges(corridor.n, d))
        tables[d] = (offsets, [(tls, m, num) for tls, m in stops])
    out = {}
    for trip in ET.parse(str(corridor.ev_routes)).getroot().iter("trip"):
        vid = trip.get("id")
        offsets, signals = tables[vid.split(".")[0][3:]]
        out[vid] = (int(round(float(trip.get("depart")) * 1000)), offsets, signals)
    return out


class Reporter:
    """One agent's telemetry as its runtime composes it: counts, occupancy, greens."""

    def __init__(self, period_ms, first_ms):
        self.period_ms = period_ms
        self.next_ms = first_ms
        self.last_ms = 0
        self.counts, self.occ, self.steps = {}, {}, 0
        self.phases = PhaseActivity()

    def seen(self, r):
        self.steps += 1
        for ch, n in r.pulses.items():
            if n:
                self.counts[ch] = self.counts.get(ch, 0) + n
        for ch, on in r.detectors.items():
            if on:
                self.occ[ch] = self.occ.get(ch, 0) + 1

    def take(self, now, channels, scale=1.0, shown_to=None):
        """The message for the interval ending now; shown_to: the agents' last tick (its
        greens held since its last step count up to there, as if stepped every tick)."""
        if shown_to is not None:
            self.phases.catch_up(shown_to)
        steps = max(1, self.steps)
        msg = {"ts": round(WALL0 + now / 1000.0, 3), "ms": now,
               "period_s": self.period_ms / 1000.0, "interval_s": (now - self.last_ms) / 1000.0,
               "detectors": {"counts": {str(c): round(self.counts.get(c, 0) * scale, 3) for c in channels},
                             "occupancy_pct": {str(c): round(100.0 * self.occ.get(c, 0) / steps, 2)
                                               for c in channels}},
               "greens": self.phases.take()}
        self.counts, self.occ, self.steps = {}, {}, 0
        self.last_ms = now
        return msg


class BrainLoop:
    """The brain, the broker and the agents' link in one virtual-time loop (run_agents hooks).

    It gives an agent inputs only when something changed (a heartbeat, a plan, a
    priority request, its link going up or down) and holds none, so the rig may step
    the agents event-driven (``event_driven``)."""

    event_driven = True

    def __init__(self, netmap, config, seed=1, control=True, period_s=None, scale=None,
                 kill=None, drop=None, delay_s=(0.05, 0.5), jitter_ms=100, escort=None,
                 probes=None):
        self.map = netmap
        self.config = config
        self.control = control                   # False: the brain listens, agents run free
        self.rng = random.Random(seed)
        self.delay_s, self.jitter_ms = delay_s, jitter_ms
        self.scale = scale or {}                 # {tls: factor on reported volumes}
        self.kill = kill                         # (from_ms, to_ms): brain down
        self.drop = drop                         # (tls, from_ms, to_ms): that agent's link down
        self.link_policy = LinkPolicy(loss_ms=3000, holdover_ms=HOLDOVER_MS, stable_ms=10_000)
        self.brain = Brain(config, now_ms=0)
        key = bytes.fromhex(config["key"]["secret"])
        self.verifiers = {t: Verifier(parse_site(tm.site), {config["key"]["kid"]: (HMAC, key)}, Policy())
                          for t, tm in netmap.tls.items()}
        self.channels = {t: sorted(tm.loops.values()) for t, tm in netmap.tls.items()}
        periods = period_s or {}
        self.reporters = {t: Reporter(int(periods.get(t, 1.0) * 1000),
                                      int(periods.get(t, 1.0) * 1000)) for t in netmap.tls}
        self.queue = []                          # (deliver ms, n, topic, payload)
        self.n = 0
        self.pending = {t: {} for t in netmap.tls}
        self.active = {t: None for t in netmap.tls}
        self.retained = {}                       # what the broker keeps: plan/desired per topic
        self.rejected = []                       # (ms, tls, reason) envelopes an agent refused
        self.accepted = {t: [] for t in netmap.tls}   # (ms, version, plan id)
        self.link_given = {t: None for t in netmap.tls}   # the link_up an agent holds
        self.snapshot = None
        self.restarts = []                       # (ms killed, ms planning again)
        self._dead = False
        self.evs = escort or {}                  # ev_routes(): the vehicles to escort
        self.escort = Escort(config) if escort else None
        self.ev_state = {}                       # vid -> "on" | "done"
        self.next_ev_ms = 0
        self.priority_verifiers = {t: PriorityVerifier(parse_site(tm.site), {config["key"]["kid"]: (HMAC, key)},
                                                       Policy()) for t, tm in netmap.tls.items()}
        self.priority_version = {t: None for t in netmap.tls}
        self.plan_of = {t: parse_site(tm.site).fallback_plan for t, tm in netmap.tls.items()}
        self.priority = {t: [] for t in netmap.tls}   # (ms, preempt, "clear" | call start ms)
        # probes: (share of end-to-end trips, probe_routes()): their positions once a second
        self.probe_share, self.probe_routes = probes if probes else (0.0, None)
        self.probe_rng = random.Random(seed * 7919 + 1)  # its own: the telemetry's draws stay the same
        self.next_probe_ms = 0
        self.probe_topic = "%s/%s/central/probe" % (PREFIX, config["site"])

    # hooks called by network_rig.run_agents ----------------------------------

    def inputs(self, now, tls):
        """What reached the agent since its last step; link_up only when it changed (the
        agent holds it)."""
        p = self.pending[tls]
        up = self.control and not self._dropped(tls, now)
        if up != self.link_given[tls]:
            p["link_up"] = self.link_given[tls] = up
        if not p:
            return None
        self.pending[tls] = {}
        return p

    def after(self, now, tls, out):
        self.reporters[tls].phases.sample(now, out.vehicle, out.events)

    def seen(self, now, tls, r):
        self.reporters[tls].seen(r)

    def tick(self, now, rig):
        for tls, rep in self.reporters.items():
            if now >= rep.next_ms:
                msg = rep.take(now, self.channels[tls], self.scale.get(tls, 1.0),
                               shown_to=now - rig.step_ms)
                # whole 100 ms steps, floored: -100 or 0 ms, +100 ms once in 201 draws
                # (the draws of the recorded measurement; docs/corridor.md)
                jitter = self.rng.randint(-self.jitter_ms, self.jitter_ms) // 100 * 100
                rep.next_ms = now + rep.period_ms + jitter
                if self._dropped(tls, now):
                    continue
                delay = int(self.rng.uniform(*self.delay_s) * 1000)
                topic = self.brain.topics[tls].telemetry
                heapq.heappush(self.queue, (now + delay, self.n, topic, json.dumps(msg).encode()))
                self.n += 1
        if self.probe_share and now >= self.next_probe_ms:
            self.next_probe_ms = now + 1000
            self._probes(now, rig)
        self._brain_life(now)
        while self.queue and self.queue[0][0] <= now:
            _, _, topic, payload = heapq.heappop(self.queue)
            if not self._dead:
                self.brain.receive(now, topic, payload)
        if self._dead:
            return
        if self.escort is not None:
            self._escort(now, rig)
        for topic, payload, retain, _ in self.brain.tick(now, WALL0 + now / 1000.0):
            if retain:
                self.retained[topic] = payload
                if self.restarts and self.restarts[-1][1] is None:
                    self.restarts[-1] = (self.restarts[-1][0], now)
            if not self.control:
                continue
            if topic.endswith("/heartbeat"):
                for tls in self.pending:
                    if not self._dropped(tls, now):
                        self.pending[tls]["heartbeat"] = True
            else:
                tls = topic.split("/")[3]
                if not self._dropped(tls, now):
                    self._offer(now, tls, payload)

    # -------------------------------------------------------------------------

    def _probes(self, now, rig):
        """Each probe's map-matched position, as its GPS unit reports it (with the link's delay)."""
        for msg in probe_reports(rig, self.probe_share, self.probe_routes, WALL0 + now / 1000.0):
            delay = int(self.probe_rng.uniform(*self.delay_s) * 1000)
            heapq.heappush(self.queue, (now + delay, self.n, self.probe_topic, json.dumps(msg).encode()))
            self.n += 1

    def _escort(self, now, rig):
        """Positions in once a second, priority requests out to the agents' verifiers."""
        if now >= self.next_ev_ms:
            self.next_ev_ms = now + 1000
            for vid, (depart, offsets, signals) in sorted(self.evs.items()):
                state = self.ev_state.get(vid)
                if state == "done" or now < depart:
                    continue
                pos = rig.vehicle_position(vid)
                if pos is None:
                    if state == "on":
                        self.ev_state[vid] = "done"
                        self.escort.finish(vid)
                    continue
                if pos[0] not in offsets:
                    continue
                if state is None:
                    self.ev_state[vid] = "on"
                    self.escort.route(vid, signals)
                self.escort.update(now, vid, offsets[pos[0]] + pos[1])
        wall = WALL0 + now / 1000.0
        for topic, payload, _, _ in self.escort.tick(now, wall):
            tls = topic.split("/")[3]
            if self._dropped(tls, now):
                continue
            r = self.priority_verifiers[tls].check(payload, self.priority_version[tls], wall, now,
                                                   self.plan_of[tls])
            if getattr(r, "ok", True) is False:
                self.rejected.append((now, tls, "priority " + r.reason + ": " + r.message))
                continue
            self.priority_version[tls] = r.version
            self.priority[tls].append((now, r.number, "clear" if r.clear else r.start_ms))
            self.pending[tls].setdefault("priority", []).append(r)

    def _offer(self, now, tls, payload):
        res = self.verifiers[tls].check(payload, self.active[tls], WALL0 + now / 1000.0)
        if not res.ok:
            self.rejected.append((now, tls, res.reason + ": " + res.message))
            return
        self.active[tls] = res.version
        self.accepted[tls].append((now, res.version, res.plan.id))
        self.plan_of[tls] = res.plan
        self.pending[tls]["central_plan"] = CentralPlan(res.plan, res.version)

    def _dropped(self, tls, now):
        return self.drop is not None and tls == self.drop[0] and self.drop[1] <= now < self.drop[2]

    def _brain_life(self, now):
        if self.kill is None:
            return
        if not self._dead and self.kill[0] <= now < self.kill[1]:
            self.snapshot = json.loads(json.dumps(self.brain.snapshot()))   # what its store holds
            self.history_before = (self.brain.flag_log, self.brain.plans)
            self._dead = True
        elif self._dead and now >= self.kill[1]:
            self.brain = Brain(self.config, now_ms=now, store=self.snapshot)
            for topic, payload in sorted(self.retained.items()):
                self.brain.receive(now, topic, payload)
            self.brain.flag_log = self.history_before[0] + self.brain.flag_log
            self.brain.plans = self.history_before[1] + self.brain.plans
            self.restarts.append((now, None))
            self._dead = False

    @property
    def flag_log(self):
        return self.brain.flag_log

    @property
    def plans(self):
        return self.brain.plans


def frozen_plan(loop, wall_end_s):
    """The brain's plan from the whole run's telemetry (a fresh brain, no bounded step):
    the best-informed fixed-time green wave. {tls: {cycle, offset, splits}}."""
    cfg = dict(loop.config)
    cfg["window_s"] = int(wall_end_s - WALL0) // 60 * 60
    b = Brain(cfg, now_ms=0)
    b.bins = loop.brain.bins
    b.probes = loop.brain.probes
    b.plan(wall_end_s)
    return {tls: {"cycle": c, "offset": o, "splits": {str(p): s for p, s in sp.items()}}
            for tls, (c, sp, o) in b.current.items()}


# ---------------------------------------------------------------- the table

CASES = ("sumo-static", "sumo-actuated", "green-wave", "agents-free", "agents-brain", "agents-escort")
FAULTS = ("scaled-3x", "slow-60s", "brain-killed", "link-dropped")


def run_case(case, corridor, netmap, duration_s, seed, frozen=None, probe_share=PROBE_SHARE):
    """One row for one seed: measures, plus what the brain did when there is one.
    probe_share: the share of end-to-end arterial trips reporting as probes (0: none, the
    brain's offsets then use distance / design speed)."""
    routes = [corridor.routes, corridor.ev_routes]
    add = [corridor.loops]
    programs = {"sumo-static": "netconvert", "sumo-actuated": "actuated", "green-wave": "static"}
    if case in programs:
        return {"measures": _ev_time_loss(network_rig.run_program(
            programs[case], netmap, corridor.net, routes, add, duration_s, seed,
            coord=frozen if case == "green-wave" else None, keep_files=True))}
    cfg = brain_config(netmap, corridor)
    kw = {}
    mid = int(duration_s * 1000) // 2
    if case == "agents-free":
        kw["control"] = False
    elif case == "agents-escort":
        kw["escort"] = ev_routes(corridor)
    elif case == "scaled-3x":
        kw["scale"] = {corridor.signals[2]: 3.0}
    elif case == "slow-60s":
        kw["period_s"] = {corridor.signals[2]: 60.0}
    elif case == "brain-killed":
        kw["kill"] = (mid, mid + 120_000)
    elif case == "link-dropped":
        kw["drop"] = (corridor.signals[3], mid - 600_000, mid + 600_000)
    if probe_share:
        kw["probes"] = (probe_share, probe_routes(corridor, cfg))
    loop = BrainLoop(netmap, cfg, seed=seed, **kw)
    r = network_rig.run_agents(netmap, corridor.net, routes, add, duration_s, seed, hooks=loop,
                               keep_files=True)
    _ev_time_loss(r["measures"])
    r["loop"] = loop
    return r


def _ev_time_loss(measures):
    """Add the emergency vehicles' mean time loss (s, SUMO's tripinfo) to the measures; the
    run's files are removed."""
    import shutil
    files = measures.pop("files")
    losses = []
    try:
        for _, el in ET.iterparse(str(files) + "/tripinfo.xml"):
            if el.tag == "tripinfo" and el.get("id").startswith(network_rig.EMERGENCY) \
                    and float(el.get("arrival")) >= 0 and el.get("vaporized") != "end":
                losses.append(float(el.get("timeLoss")))
    finally:
        shutil.rmtree(files, ignore_errors=True)
    measures["ev_time_loss_s"] = round(sum(losses) / len(losses), 2) if losses else None
    return measures
