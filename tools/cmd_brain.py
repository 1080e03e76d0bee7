"""`edge-agent brain`: the reference central brain against a real broker.

    edge-agent brain config --out brain.json --key central.key.json   # for the project's corridor
    edge-agent brain run --broker 127.0.0.1:1883 --config brain.json --store brain.store.json

The config (docs/brain.md) names the MQTT site level, the signing key and the
corridor's intersections in eastbound order with their positions and sites.
In the config, a "site" or the "key" may be a path (relative to the config
file) instead of the object itself. The store keeps the brain's versions,
plans and trusted history so a restarted brain plans again within seconds.
"""

import json
import os
import sys
import time

from tools.mqtt_args import broker_address


def load_config(path):
    """The brain config with sites and key read from their files where given as paths."""
    base = os.path.dirname(os.path.abspath(path))
    with open(path) as f:
        cfg = json.load(f)
    if isinstance(cfg.get("key"), str):
        with open(os.path.join(base, cfg["key"])) as f:
            k = json.load(f)
        if k.get("scheme", "hmac") != "hmac":
            raise ValueError("%s: the brain signs with an HMAC key, not %r" % (cfg["key"], k.get("scheme")))
        cfg["key"] = {"kid": k["kid"], "secret": k["secret"]}
    for e in cfg.get("corridor", ()):
        if isinstance(e.get("site"), str):
            with open(os.path.join(base, e["site"])) as f:
                e["site"] = json.load(f)
    return cfg


def cmd_run(args):
    from hil.brain.mqtt import BrainNode
    try:
        cfg = load_config(args.config)
    except (OSError, ValueError, KeyError) as e:
        print("edge-agent brain run: %s" % e, file=sys.stderr)
        return 2
    host, port = broker_address(args.broker)
    node = BrainNode(cfg, host, port, store_path=args.store, username=args.username,
                     password=args.password)
    try:
        node.start()
    except OSError as e:
        print("edge-agent brain run: cannot connect to %s:%d (%s)" % (host, port, e), file=sys.stderr)
        return 2
    print("brain for %s: %d intersections, planning every %s s; store %s"
          % (cfg["site"], len(cfg["corridor"]), node.brain.cfg["plan_every_s"], args.store or "none"),
          flush=True)
    t0 = time.monotonic()
    seen = flags_seen = 0
    try:
        while args.seconds is None or time.monotonic() - t0 < args.seconds:
            time.sleep(0.5)
            plans = node.brain.plans
            while seen < len(plans):
                w, cycle, rec = plans[seen]
                print("%s plan: cycle %d s, offsets %s; flagged %s"
                      % (time.strftime("%H:%M:%S", time.localtime(w)), cycle,
                         {k: v[1] for k, v in sorted(rec.items())}, node.brain.flagged[seen] or "none"),
                      flush=True)
                measured = node.brain.travel_log[seen][1] if seen < len(node.brain.travel_log) else {}
                if measured.get("EB") or measured.get("WB"):
                    print("  travel times measured by probes (s): EB %s, WB %s"
                          % (measured.get("EB"), measured.get("WB")), flush=True)
                seen += 1
            log = node.brain.flag_log
            while flags_seen < len(log):
                _, jid, why = log[flags_seen]
                print("  flagged %s: %s" % (jid, why), flush=True)
                flags_seen += 1
    except KeyboardInterrupt:
        pass
    finally:
        node.stop()
    return 0


def cmd_config(args):
    from hil.sumo.corridor import build_corridor
    from hil.sumo.corridor_run import brain_config
    from hil.sumo.netmap import load_map, link_counts
    c = build_corridor()
    m = load_map(c.map, link_counts(c.net))
    cfg = brain_config(m, c, site=args.site_id)
    if args.key:
        with open(args.key) as f:
            k = json.load(f)
        cfg["key"] = {"kid": k["kid"], "secret": k["secret"]}
    with open(args.out, "w") as f:
        json.dump(cfg, f, indent=1)
    print("brain config for %s (%s): %s" % (c.dir, ", ".join(c.signals), args.out))
    return 0


def register(sub):
    p = sub.add_parser("brain", help="the reference central brain (plans a corridor from telemetry)")
    bsub = p.add_subparsers(dest="brain_command", metavar="ACTION")
    bsub.required = True
    r = bsub.add_parser("run", help="run the brain against a broker")
    r.add_argument("--broker", default="127.0.0.1:1883", metavar="HOST:PORT")
    r.add_argument("--config", required=True, help="brain config JSON (docs/brain.md)")
    r.add_argument("--store", help="the brain's own store (JSON), kept across restarts")
    r.add_argument("--seconds", type=float, help="stop after this many seconds")
    r.add_argument("--username", help="MQTT user name")
    r.add_argument("--password", default=os.environ.get("EDGE_AGENT_MQTT_PASSWORD"),
                   help="MQTT password (default: $EDGE_AGENT_MQTT_PASSWORD)")
    r.set_defaults(func=cmd_run)
    c = bsub.add_parser("config", help="write a brain config for the project's SUMO corridor")
    c.add_argument("--out", required=True)
    c.add_argument("--site-id", default="corridor", help="the MQTT site level (default corridor)")
    c.add_argument("--key", help="HMAC key file (keygen format) to sign with; default: a test key")
    c.set_defaults(func=cmd_config)
