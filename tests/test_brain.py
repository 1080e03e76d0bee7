"""The reference central brain: bins by source time, distrust checks, planning, restart, and
its plans through the agents' own envelope checks."""

import json
import random

from edge_agent import events as ev
from edge_agent.agent import Agent, Inputs
from edge_agent.envelope import HMAC, Policy, Verifier
from edge_agent.intersection import parse_site
from edge_agent.supervisor import CentralPlan, LinkPolicy
from hil.brain import distrust, planner
from hil.brain.bins import BinData, Bins
from hil.brain.brain import Brain
from hil.sumo.netmap import starting_site

WALL0 = 1_767_225_600
KEY = {"kid": "test-brain", "secret": "ab" * 32}
IDS = ["J1", "J2", "J3", "J4", "J5", "J6"]
XS = [300.0, 550.0, 950.0, 1130.0, 1480.0, 1700.0]
# channel -> phase, as the map helper writes them for a corridor signal
LANES = {"J_N_0": (1, 8), "J_S_0": (2, 4), "E_0": (3, 6), "E_1": (4, 6), "E_2": (5, 1),
         "W_0": (6, 2), "W_1": (7, 2), "W_2": (8, 5)}
PHASES = {1: "WB left", 2: "EB through", 4: "NB through", 5: "EB left", 6: "WB through",
          8: "SB through"}


def corridor_site(jid):
    phases = {p: {"name": n} for p, n in PHASES.items()}
    return starting_site(jid, phases, {lane: p for lane, (_, p) in LANES.items()},
                         {lane: ch for lane, (ch, _) in LANES.items()}, 13.89)


def config(**over):
    cfg = {"site": "test", "key": dict(KEY),
           "corridor": [{"id": j, "site": corridor_site(j), "x": x} for j, x in zip(IDS, XS)]}
    cfg.update(over)
    return cfg


# veh/h per channel: arterial through lanes 300 each way, lefts 60, side 120
RATES = {1: 120, 2: 120, 3: 300, 4: 300, 5: 60, 6: 300, 7: 300, 8: 60}


def message(ts, interval, scale=1.0, rates=RATES, on_s=2.0):
    """A telemetry message covering [ts - interval, ts) at rates that vary second by second
    (by up to 20 %, the same at every signal); each vehicle occupies its loop on_s seconds."""
    f = 1.0 + 0.04 * ((int(ts) * 7919) % 11 - 5)
    counts = {str(ch): q / 3600.0 * interval * scale * f for ch, q in rates.items()}
    occ = {str(ch): 100.0 * q / 3600.0 * on_s * f for ch, q in rates.items()}
    return {"ts": ts, "interval_s": interval, "period_s": interval,
            "detectors": {"counts": counts, "occupancy_pct": occ}}


def feed(brain, t0_s, t1_s, scale=None, now_ms=0):
    """Every signal reports each second from t0 to t1 (wall s after WALL0)."""
    scale = scale or {}
    for t in range(t0_s + 1, t1_s + 1):
        for j in IDS:
            brain.receive(now_ms, "tsc/v1/test/%s/telemetry" % j,
                          json.dumps(message(WALL0 + t, 1.0, scale.get(j, 1.0))).encode())


# ---------------------------------------------------------------- bins

def test_three_report_rates_with_jitter_and_delay_fill_exact_bins():
    rng = random.Random(7)
    bins = Bins(bin_s=60)
    rate = 0.5                   # vehicles per second on channel 1, every source
    arrivals = []
    for source, period in (("one", 1.0), ("five", 5.0), ("sixty", 60.0)):
        t = 1000.0
        while t < 1000.0 + 600:
            nxt = t + period + (rng.uniform(-0.3, 0.3) if period < 60 else rng.uniform(-2, 2))
            msg = {"ts": nxt, "interval_s": nxt - t,
                   "detectors": {"counts": {"1": rate * (nxt - t)}, "occupancy_pct": {"1": 25.0}}}
            arrivals.append((nxt + rng.uniform(0.05, 3.0), source, msg))   # delivery delay
            t = nxt
    rng.shuffle(arrivals)        # out of order on arrival, too
    for _, source, msg in arrivals:
        assert bins.add(source, msg) == "ok"
    for source in ("one", "five", "sixty"):
        for k in range(1020, 1560, 60):           # whole bins inside the 10 minutes
            d = bins.bin(source, k)
            assert round(d.covered, 9) == 60.0
            assert round(d.counts[1], 9) == 30.0
            assert round(d.occ[1], 9) == 15.0
    assert bins.add("one", arrivals[0][2]) == "replay"
    assert bins.counters["one"] == {"ok": sum(1 for a in arrivals if a[1] == "one"), "replay": 1}


def test_a_partly_reported_bin_gives_rates_not_a_short_count():
    bins = Bins(bin_s=60)
    bins.add("a", {"ts": 1030.0, "interval_s": 30.0, "detectors": {"counts": {"3": 10}}})
    d = bins.bin("a", 1020)
    assert (d.covered, round(d.counts[3], 12)) == (10.0, round(10 / 3.0, 12))
    assert bins.bin("a", 960).covered == 20.0
    assert not bins.complete("a", 1020)


# ---------------------------------------------------------------- distrust

def _junctions():
    return [planner.Junction(j, corridor_site(j), x) for j, x in zip(IDS, XS)]


def _window(scale=1.0, seconds=300.0, on_s=2.0):
    counts = {ch: q / 3600.0 * seconds * scale for ch, q in RATES.items()}
    occ = {ch: q / 3600.0 * seconds * on_s for ch, q in RATES.items()}
    return {"covered": seconds, "counts": counts, "occ": occ, "green": {}, "bins": [0]}


def test_plausibility_flags_volumes_three_times_what_occupancy_allows():
    j = _junctions()[2]
    # free-flowing vehicles: 1.5 s on a 12 m loop each (about 11 m/s)
    assert distrust.plausibility(j, _window(on_s=1.5)) == []
    reasons = distrust.plausibility(j, _window(scale=3.0, on_s=1.5))
    assert reasons[0] == ("channel 1: 30 vehicles but 15.0 s occupied (0.50 s each, faster than "
                          "25 m/s over a 12 m loop)")
    assert len(reasons) == 8         # every channel: each is 3x its occupancy


def test_health_flags_only_channels_the_agent_reports_faulted():
    j = _junctions()[0]
    status = [{"channel": 3, "ped": False, "state": "fault", "conditions": ["stuck on"]},
              {"channel": 4, "ped": False, "state": "ok", "conditions": []}]
    assert distrust.health(j, status) == ["channel 3: the agent reports it fault (stuck on)"]
    assert distrust.health(j, status[1:]) == []


def test_stuck_flags_counts_that_repeat_bin_after_bin():
    j = _junctions()[0]

    def b(n):
        d = BinData()
        d.covered = 60.0
        d.counts = {3: n, 4: 5.0}
        return d
    assert distrust.stuck(j, [b(5.0), b(6.0), b(5.0), b(7.0)]) == []
    assert distrust.stuck(j, [b(5.0)] * 4) == ["counts identical in 4 bins in a row: {3: 5.0, 4: 5.0}"]


def _flows(scale_at=None, factor=3.0):
    rng = random.Random(3)
    out = {}
    for j in IDS:
        f = factor if j == scale_at else 1.0
        out[j] = {2: 600.0 * f * rng.uniform(0.9, 1.1), 6: 500.0 * f * rng.uniform(0.9, 1.1),
                  4: 120.0, 8: 120.0, 1: 60.0, 5: 60.0}
    return out


def test_neighbour_consistency_flags_the_scaled_source_and_no_clean_one():
    js = _junctions()
    assert distrust.neighbours(js, _flows()) == {}
    for bad in IDS:
        flagged = distrust.neighbours(js, _flows(bad))
        assert sorted(flagged) == [bad], bad
    assert sorted(distrust.neighbours(js, _flows("J3", factor=0.2))) == ["J3"]


def test_brain_flags_a_source_reporting_three_times_its_volumes_and_plans_it_from_history():
    b = Brain(config(), now_ms=0)
    feed(b, 0, 300)
    b.plan(WALL0 + 300)
    assert b.flags == {}
    clean = dict(b.history["J3"])
    feed(b, 300, 600, scale={"J3": 3.0})
    b.plan(WALL0 + 600)
    assert sorted(b.flags) == ["J3"]
    # 2 s per vehicle on the loop: 3x is still physically possible (0.67 s each), so
    # it is the neighbours that give J3 away
    assert b.flags["J3"][0].startswith("inconsistent with J2 and J4: phase 2: ")
    assert "(ratio 3.00, expected 0.6-1.6)" in b.flags["J3"][0]
    assert b.history["J3"] == clean          # J3's plan came from its last trusted flows
    flows, _ = b.assess(WALL0 + 600)
    assert flows["J3"] == clean


# ---------------------------------------------------------------- planning

def test_splits_keep_ring_and_barrier_sums_and_minimums():
    j = _junctions()[0]
    q = {1: 60.0, 2: 600.0, 4: 120.0, 5: 60.0, 6: 600.0, 8: 120.0}
    Y, L = j.critical(q)
    assert (round(Y, 4), L) == (round(60 / 1700 + 600 / 3600 + 120 / 1800, 4), 15.0)
    C = planner.webster(Y, L, 60, 140)
    assert C == 60
    sp = planner.splits(j, q, 90)
    assert sp[1] + sp[2] + sp[4] == 90 and sp[5] + sp[6] + sp[8] == 90
    assert sp[1] + sp[2] == sp[5] + sp[6]
    assert min(sp[p] - j.clear[p] - j.min_green[p] for p in sp) >= 0
    assert sp == {1: 14.9, 2: 51.5, 4: 23.6, 5: 14.9, 6: 51.5, 8: 23.6}
    y = j.ratios(q)
    x = {p: y[p] * 90 / (sp[p] - j.clear[p]) for p in sp}     # degree of saturation
    assert max(x.values()) - min(x.values()) < 0.01


def test_a_plan_moves_a_bounded_step_toward_its_target():
    j = _junctions()[0]
    old = (60, {1: 10.0, 2: 35.0, 4: 15.0, 5: 10.0, 6: 35.0, 8: 15.0}, 0)
    target = (100, {1: 10.0, 2: 40.0, 4: 50.0, 5: 10.0, 6: 40.0, 8: 50.0}, 30)
    C, sp, o = planner.bounded_step(j, old, target, 8, 6)
    assert (C, o) == (68, 30)
    assert sp[1] + sp[2] + sp[4] == 68 and sp[5] + sp[6] + sp[8] == 68
    assert abs(sp[4] - 15.0 * 68 / 60) <= 6.0 + 1e-9


# ---------------------------------------------------------------- restart

def test_a_restarted_brain_rebuilds_from_its_store_and_retained_plans_within_ten_seconds():
    a = Brain(config(), now_ms=0)
    retained = {}
    for now_s in range(0, 601):
        if now_s:
            feed(a, now_s - 1, now_s, now_ms=now_s * 1000)
        for topic, payload, retain, _ in a.tick(now_s * 1000, WALL0 + now_s):
            if retain:
                retained[topic] = payload
    assert [w - WALL0 for w, _, _ in a.plans] == [300.0, 600.0]
    store = json.loads(json.dumps(a.snapshot()))
    # killed at 600 s; restarted at 700 s with its store and the broker's retained plans
    b = Brain(config(), now_ms=700_000, store=store)
    for topic, payload in sorted(retained.items()):
        assert b.receive(700_000, topic, payload) == "retained"
    assert b.versions == a.versions == {j: 2 for j in IDS}
    assert b.current == a.current
    feed(b, 690, 700, now_ms=700_000)
    out = []
    for now_ms in range(700_000, 710_001, 100):
        out = [p for p in b.tick(now_ms, WALL0 + now_ms / 1000.0) if p[2]]
        if out:
            break
    assert now_ms - 700_000 <= 10_000
    assert now_ms == 705_000
    assert len(out) == 6
    bodies = [json.loads(json.loads(p[1])["body"]) for p in out]
    assert [x["version"] for x in bodies] == [3] * 6


# ---------------------------------------------------------------- plans at the agents

def test_brain_plans_pass_the_agents_envelope_checks_and_take_effect_at_barriers():
    b = Brain(config(), now_ms=0)
    feed(b, 0, 300)
    pubs = b.plan(WALL0 + 300)
    site = parse_site(corridor_site("J2"))
    env = [p for t, p, _, _ in pubs if "/J2/" in t][0]
    v = Verifier(site, {KEY["kid"]: (HMAC, bytes.fromhex(KEY["secret"]))}, Policy())
    res = v.check(env, None, WALL0 + 300)
    assert res.ok and res.version == 1 and res.plan.coord.cycle == 60_000
    assert v.check(env, 1, WALL0 + 300).reason == "replay"
    tampered = env.replace(b'"cycle\\":60', b'"cycle\\":61')
    assert v.check(tampered, None, WALL0 + 300).reason == "bad_mac"
    agent = Agent(site, link_policy=LinkPolicy(loss_ms=3000, holdover_ms=0, stable_ms=2000))
    log = []
    ids = []
    for now in range(0, 180_000, 100):
        inp = Inputs(detectors={ch: ((now // 1000) + ch) % 9 < 2 for ch in range(1, 9)},
                     link_up=True, heartbeat=now % 1000 == 0, wall_ms=now,
                     central_plan=CentralPlan(res.plan, res.version) if now == 5000 else None)
        out = agent.step(now, inp)
        log.extend(out.events)
        ids.append(out.plan_id)
    central = [t for t, c, _ in log if c == ev.SOURCE_CENTRAL]
    active = [t for t, c, _ in log if c == ev.PLAN_ACTIVATED]
    barriers = set(t for t, c, _ in log if c == ev.BARRIER_TERMINATION)
    assert central == [5000]
    assert len(active) == 1 and active[0] > 5000 and active[0] in barriers
    assert ids[-1] == "brain-1" and ids.index("brain-1") == active[0] // 100


def test_a_left_turner_waiting_a_whole_bin_is_not_a_stuck_loop():
    j = _junctions()[4]
    n = [0]

    def held():
        n[0] += 1
        d = BinData()
        d.covered = 60.0
        d.counts = {5: 0.0, 3: 4.0 + n[0]}
        d.occ = {5: 60.0, 3: 9.0}
        return d

    def moving():
        d = BinData()
        d.covered = 60.0
        d.counts = {5: 2.0, 3: 5.0}
        d.occ = {5: 30.0, 3: 10.0}
        return d
    assert distrust.stuck(j, [moving(), moving(), held()]) == []
    assert distrust.stuck(j, [moving()] + [held() for _ in range(4)]) == []          # 240 s: still a cycle
    assert distrust.stuck(j, [held() for _ in range(5)]) == [
        "channel 5: occupied for 300 s with no new vehicle (longer than the maximum cycle 240 s)"]


def test_a_source_with_too_little_telemetry_is_planned_from_its_history():
    b = Brain(config(), now_ms=0)
    feed(b, 0, 300)
    b.plan(WALL0 + 300)
    kept = dict(b.history["J2"])
    for t in range(301, 601):
        for jid in IDS:
            if jid != "J2" or t > 500:             # J2 silent for 200 of the 300 s
                b.receive(0, "tsc/v1/test/%s/telemetry" % jid,
                          json.dumps(message(WALL0 + t, 1.0)).encode())
    b.plan(WALL0 + 600)
    assert b.flags == {"J2": ["too little telemetry: 100 of 300 s covered"]}
    assert b.history["J2"] == kept
