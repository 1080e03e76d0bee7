"""Fleet figures on a real 3-node NATS cluster: connect, telemetry, plan fan-out, node kill, events.

    edge-agent bench fleet --units 1000          # a few minutes
    edge-agent bench fleet --units 10000 --agents 3

Everything runs on this machine: three `nats-server` nodes on 127.0.0.1 free
ports (JetStream, R3 MQTT streams, a permissions block per unit), the
simulated units of hil/fleet.py in this process (one asyncio loop), central's
workers as processes sharing NATS queue groups (hil/central_worker.py: SQLite
store, acknowledgements after the group commit), a 1 Hz central heartbeat,
central's plan fan-out as a process (hil/plan_fanout.py), and `--agents` real
`edge-agent run` processes whose MqttLink takes the same node list. The units
and the real agents run with events and plan/cmd subscriptions at QoS 0, as
docs/fleet.md ships them for NATS (--events-qos/--subscribe-qos 1 to
compare). Printed: the time for every
unit to connect and for central to hold its state; telemetry ingested per
second; plan fan-out (one signed plan per unit over --publishers MQTT
connections) until every verdict reached central (p50/p99/max); a node
SIGKILLed under load, with the reconnect histogram of the units it carried;
events lost and duplicated after the drain; the cluster's CPU and memory.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from drivers.keys import make_body, sign_hmac
from drivers.topics import Topics

SITE = "fleetville"
KID = "ctl-fleet"
SECRET = "f1" * 32
CENTRAL = ("central", "central-fleet-pw")


def add_arguments(p):
    p.add_argument("--units", type=int, default=1000, help="simulated units (default 1000)")
    p.add_argument("--agents", type=int, default=2, help="real `edge-agent run` processes")
    p.add_argument("--workers", type=int, default=3, help="central workers (queue group)")
    p.add_argument("--publishers", type=int, default=16, help="plan fan-out MQTT connections")
    p.add_argument("--inflight", type=int, default=20,
                   help="plans awaiting their PUBACK at once per fan-out connection")
    p.add_argument("--connect-parallel", type=int, default=25,
                   help="units connecting at once (200 at once timed out JetStream session "
                        "lookups on this machine)")
    p.add_argument("--connect-timeout", type=float, default=300.0, metavar="S",
                   help="give up waiting for every unit after S seconds (default 300)")
    p.add_argument("--telemetry-s", type=float, default=10.0, help="telemetry measuring window")
    p.add_argument("--events-qos", type=int, choices=(0, 1), default=0,
                   help="QoS of the units' event batches (default 0, as docs/fleet.md ships "
                        "for NATS: each QoS 1 publish is an R3 JetStream write)")
    p.add_argument("--subscribe-qos", type=int, choices=(0, 1), default=0,
                   help="QoS of the units' plan and command subscriptions (default 0: each "
                        "QoS 1 subscription is a JetStream consumer)")
    p.add_argument("--keep", action="store_true", help="keep the working directory")


def pct(values, q):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q / 100.0 * (len(v) - 1))))]


def wait_until(predicate, timeout_s, poll_s=0.1):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll_s)
    return False


def raise_open_files(want):
    """Every simulated unit is a socket in this process (and the nodes inherit the
    limit): raise the soft limit on open files towards `want`, up to the hard limit."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


EXAMPLE_SITE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "examples", "site.json")


def example_site(name):
    """The shipped example intersection (examples/site.json) under another name."""
    with open(EXAMPLE_SITE) as f:
        site = json.load(f)
    site["intersection"] = name
    return site


def real_agent(d, name, cluster, secret_id, events_qos=0, subscribe_qos=0):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "site.json"), "w") as f:
        json.dump({"site": example_site(name), "link": {"loss_s": 3, "stable_s": 2}}, f)
    with open(os.path.join(d, "provision.json"), "w") as f:
        json.dump({"store_dir": "store", "keys": [{"kid": KID, "scheme": "hmac",
                                                   "secret": SECRET}],
                   "mqtt": {"brokers": ["%s:%d" % n for n in cluster.mqtt_nodes], "site": SITE,
                            "username": name, "password": "pw-" + name, "client_id": secret_id,
                            "spread": True, "backoff_base_s": 0.5, "backoff_cap_s": 10,
                            "events_qos": events_qos, "subscribe_qos": subscribe_qos}}, f)
    return subprocess.Popen([sys.executable, "-m", "tools.cli", "run", "--config",
                             os.path.join(d, "site.json"), "--provision",
                             os.path.join(d, "provision.json")],
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "log"), "w"))


def run(args):
    from hil.fleet import CentralWorkers, Fleet
    from hil.nats import NatsCluster, nats_binary, nats_version
    # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C: the nodes, agents and workers
    # started here are stopped by the finally below, not left running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    d = tempfile.mkdtemp(prefix="bench-fleet-")
    n = args.units
    nofile = raise_open_files(n + 1000)
    units = [("u%05d" % i, "pw-u%05d" % i, "sim-%08x" % (i * 2654435761 % 2 ** 32))
             for i in range(n)]
    agents = ["agent-%02d" % i for i in range(args.agents)]
    passwords = dict((u, pw) for u, pw, _ in units)
    passwords.update((a, "pw-" + a) for a in agents)
    cluster = NatsCluster(os.path.join(d, "nats"), units=passwords, central=CENTRAL,
                          max_connections=n + 1000)
    procs, fleet, workers = [], None, None
    hb_stop = threading.Event()
    print("bench fleet: %d simulated units + %d real agents, 3 nats-server %s nodes (%s), "
          "%d workers; open files limit %d; events QoS %d, plan/cmd subscriptions QoS %d"
          % (n, len(agents), nats_version(), nats_binary(), args.workers, nofile,
             args.events_qos, args.subscribe_qos))
    try:
        t0 = time.monotonic()
        cluster.start(60)
        print("cluster up: %.1f s" % (time.monotonic() - t0))
        workers = CentralWorkers([("127.0.0.1", p["client"]) for p in cluster.ports], SITE,
                                 os.path.join(d, "central.sqlite"), *CENTRAL,
                                 workers=args.workers).start()

        def beat():
            seq = 0
            while not hb_stop.wait(1.0):
                seq += 1
                try:
                    workers.heartbeat(seq)
                except (OSError, StopIteration):
                    pass
        threading.Thread(target=beat, daemon=True).start()
        for i, a in enumerate(agents):
            procs.append(real_agent(os.path.join(d, a), a, cluster, "agent-secret-%d" % i,
                                    args.events_qos, args.subscribe_qos))
        keys = {KID: ("hmac", bytes.fromhex(SECRET))}
        fleet = Fleet(units, cluster.mqtt_nodes, SITE, keys,
                      connect_parallel=args.connect_parallel, events_qos=args.events_qos,
                      subscribe_qos=args.subscribe_qos).start()
        usage0 = cluster.usage()
        t0 = time.monotonic()
        got = fleet.connect_all(args.connect_timeout)
        t_conn = time.monotonic() - t0
        everyone = [u for u, _, _ in units] + agents
        ok = wait_until(lambda: all(u in workers.state for u in everyone), 120)
        t_state = time.monotonic() - t0
        print("connect: %d/%d units connected in %.1f s (%d connect failures: timeouts and "
              "refusals the cluster answered); central held every state (incl. real agents: "
              "%s) after %.1f s" % (got, n, t_conn, fleet.counters["connect_failures"], ok,
                                    t_state))
        if got < n:
            print("  NOT every unit connected within --connect-timeout: the figures below "
                  "are for a partial fleet")

        fleet.start_ticks()
        time.sleep(3)
        c0, s0, w0 = (workers.counters["telemetry"], fleet.counters["telemetry_sent"],
                      time.monotonic())
        time.sleep(args.telemetry_s)
        span = time.monotonic() - w0
        rate = (workers.counters["telemetry"] - c0) / span
        sent = (fleet.counters["telemetry_sent"] - s0) / span
        print("telemetry: %.0f messages/s ingested by central, %.0f/s sent by the simulated "
              "units (%d units at 1 Hz; the simulator's 1 Hz schedule %.1f s late at the end)"
              % (rate, sent, n, fleet.ticks_behind_s))

        # Plan fan-out: one signed plan per unit over several publishing connections.
        plan = dict(example_site("fleet")["fallback_plan"], id="central-fleet")
        issued = int(time.time())
        envs = [(Topics(SITE, u).plan_desired,
                 sign_hmac(make_body(plan, u, 1, issued), KID, bytes.fromhex(SECRET)).encode())
                for u, _, _ in units]

        # Central's fan-out runs in its own process (hil/plan_fanout.py), as it runs on
        # central's machines: its publishing does not wait on the fleet's interpreter.
        plans_file = os.path.join(d, "plans.jsonl")
        with open(plans_file, "w") as f:
            for topic, env in envs:
                f.write(json.dumps({"topic": topic, "envelope": env.decode()}) + "\n")
        refused_at_publish = sum(1 for u in fleet.units if u.refused)
        cmd = [sys.executable, "-m", "hil.plan_fanout", "--plans", plans_file,
               "--user", CENTRAL[0], "--password-env", "EDGE_AGENT_CENTRAL_PW",
               "--publishers", str(args.publishers), "--inflight", str(args.inflight)]
        for host, port in cluster.mqtt_nodes:
            cmd += ["--node", "%s:%d" % (host, port)]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                             env=dict(os.environ, EDGE_AGENT_CENTRAL_PW=CENTRAL[1]))
        try:
            result = json.loads(out.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise RuntimeError("plan fan-out failed: %s" % out.stderr[-2000:])
        t_pub0, t_pub, failed = result["started"], result["seconds"], result["failed"]
        done = wait_until(lambda: sum(1 for u, _, _ in units if (u, 1) in workers.verdicts) >= n,
                          120)
        lat = [workers.verdicts[(u, 1)] - t_pub0 for u, _, _ in units if (u, 1) in workers.verdicts]
        print("plan fan-out: %d plans published in %.1f s over %d connections (%d in flight "
              "each); verdicts at central %d/%d: p50 %.2f s, p99 %.2f s, max %.2f s%s"
              % (n, t_pub, args.publishers, args.inflight, len(lat), n, pct(lat, 50),
                 pct(lat, 99),
                 max(lat) if lat else float("nan"), "" if done else " (timed out)"))
        if failed:
            print("  %d plans not acknowledged by the cluster after 3 tries" % len(failed))
        print("  plans received by units %d, verdicts published %d (%d with no connection), "
              "verdict messages at central %d; units with a refused subscription at publish "
              "time %d (subscribe retries %d)"
              % (fleet.counters["plans_received"], fleet.counters["verdicts_sent"],
                 fleet.counters["verdicts_unsent"], workers.counters["verdict_messages"],
                 refused_at_publish, fleet.counters["subscribe_retries"]))

        # A node SIGKILLed under load.
        victim = 1
        carried = [u for u in fleet.units if u.client is not None and u.node % 3 == victim]
        usage1 = cluster.usage()
        # Central's liveness while it happens: units it heard nothing from for > 3 s
        # (their wills are not sent when their node dies), every half second.
        silence, watching = [], threading.Event()

        def watch_silence():
            while not watching.wait(0.5):
                silence.append((time.monotonic() - t_kill, len(workers.silent(3.0))))
        t_kill = time.monotonic()
        threading.Thread(target=watch_silence, daemon=True).start()
        cluster.kill(victim)
        # Back = each unit it carried has noticed the loss and reconnected since (a unit
        # that has not yet seen its socket close still looks connected).
        seen = dict((u.uid, len(u.reconnects)) for u in carried)
        back = wait_until(lambda: all(len(u.reconnects) > seen[u.uid] and u.client is not None
                                      for u in carried) and fleet.connected() == n, 180, 0.2)
        t_back = time.monotonic() - t_kill
        rec = [u.reconnects[-1] for u in carried if u.reconnects]
        first_connack = [u.connacks[0] for u in carried if u.connacks]
        hist = {}
        for r in rec:
            hist[int(r)] = hist.get(int(r), 0) + 1
        print("node kill: %d units on node %d; all back on survivors in %.1f s%s; reconnect "
              "p50 %.1f s, p99 %.1f s, max %.1f s" % (len(carried), victim, t_back,
                                                       "" if back else " (timed out)",
                                                       pct(rec, 50), pct(rec, 99),
                                                       max(rec) if rec else float("nan")))
        print("  first CONNACK on a survivor: p50 %.1f s, p99 %.1f s (the rest: subscribing, "
              "and the retained state's PUBACK, while the streams elect new leaders)"
              % (pct(first_connack, 50), pct(first_connack, 99)))
        print("  reconnect histogram (s: units): " +
              ", ".join("%d-%d: %d" % (k, k + 1, hist[k]) for k in sorted(hist)))
        wait_until(lambda: silence and silence[-1][0] > t_back + 4 and silence[-1][1] == 0, 30)
        watching.set()
        worst = max(silence, key=lambda x: x[1]) if silence else (float("nan"), 0)
        if worst[1] == 0:
            print("  central's liveness (units silent > 3 s, no will needed): none silent "
                  "that long")
        else:
            clear = next((t for t, k in silence if t > worst[0] and k == 0), float("nan"))
            print("  central's liveness (units silent > 3 s, no will needed): at most %d, "
                  "at %.1f s after the kill; none again at %.1f s" % (worst[1], worst[0],
                                                                      clear))
        # A central worker dies too; the others take its share.
        if args.workers > 1:
            workers.kill(0)
        time.sleep(5)
        fleet.stopping_ticks = True
        fleet.events_per_tick = 0                         # stop making events; drain the rest
        drained = wait_until(lambda: all(u.box.acked >= u.box.next_seq - 1
                                         for u in fleet.units), 180, 0.5)
        behind = [u for u in fleet.units if u.box.acked < u.box.next_seq - 1]
        if behind:
            print("  not drained: %d units (%d of them were on the killed node), e.g. %s acked "
                  "%d of %d, connected %s" % (len(behind), sum(1 for u in behind if u in carried),
                                             behind[0].uid, behind[0].box.acked,
                                             behind[0].box.next_seq - 1,
                                             behind[0].client is not None))
        stored = workers.stored()
        in_store = sum(len(v) for v in stored.values())
        lost = sum(len(set(range(1, u.box.next_seq)) - stored.get(u.uid, set()))
                   for u in fleet.units)
        made = sum(u.box.next_seq - 1 for u in fleet.units)
        print("events: %d made by the simulated units, %d in central's store (the real "
              "agents' too), %d %s, %d duplicates dropped by central's workers (drained: %s; "
              "unit resends %d)" % (made, in_store, lost,
                                    "lost" if drained else "not stored when the bench gave up "
                                    "(still in the units' outboxes, none dropped)",
                                    workers.counters["duplicates"], drained,
                                    fleet.counters["resends"]))
        alive = [a for a, p in zip(agents, procs) if p.poll() is None]
        got = {a: len(stored.get(a, ())) for a in agents}
        print("real agents: %d/%d running, events stored per agent %s, state online at "
              "central: %s" % (len(alive), len(agents), got,
                 {a: workers.state.get(a, {}).get("online") for a in agents}))
        usage2 = cluster.usage()
        for name, u in (("at start", usage0), ("before kill", usage1), ("end", usage2)):
            print("cluster %s: " % name + ", ".join(
                "node%d cpu %.1f s rss %.0f MiB" % (i, c, r / 1024) for i, (c, r) in sorted(u.items())))
        cpu = {i: usage2[i][0] - usage0.get(i, (0, 0))[0] for i in usage2}
        print("cluster CPU over the run: " + ", ".join("node%d %.1f s" % kv for kv in sorted(cpu.items()))
              + "; this process %.1f s" % sum(os.times()[:2]))
        return 0
    finally:
        hb_stop.set()
        for p in procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    os.kill(p.pid, signal.SIGKILL)
        if fleet is not None:
            try:
                fleet.stop()
            except Exception as e:
                print("fleet stop: %r" % e, file=sys.stderr)
        if workers is not None:
            workers.stop()
        cluster.stop()
        if not args.keep:
            shutil.rmtree(d, ignore_errors=True)
        else:
            print("kept %s" % d)
