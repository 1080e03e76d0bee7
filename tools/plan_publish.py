"""`edge-agent plan publish`: sign (or take) an envelope and publish it on plan/desired.

    edge-agent plan publish --intersection demo-0001 --site-id springfield \\
        --plan plan.json --key central-2026a.json --version 8 --broker 10.1.2.3:8883 \\
        --ca-file ca.crt --username central --wait 30

Retained, QoS 1: an agent that is offline now reads it when it reconnects.
With --wait the command waits for this version's own verdict, retained on
plan/verdict/<version> (accepted, or rejected with its reason), and prints
it: plan/reported shows only the latest verdict, which a later plan could hide.
"""

import json
import sys
import threading
import time

from drivers.keys import load_signing_key, make_body, sign_ed25519, sign_hmac
from edge_agent.envelope import HMAC
from tools.mqtt_args import add_broker_arguments, connect, decode, topics


def add_parser(psub, guard):
    p = psub.add_parser("publish", help="sign and publish a plan on plan/desired (retained, QoS 1)")
    p.add_argument("--intersection", required=True)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--envelope", help="an envelope file from `plan sign`, published as it is")
    src.add_argument("--plan", help="plan JSON file to sign now (with --key and --version)")
    p.add_argument("--key", help="key file to sign with")
    p.add_argument("--version", type=int, help="plan version, above the agent's high-water mark")
    p.add_argument("--expires", type=float, metavar="S", help="expire S seconds after issue")
    p.add_argument("--wait", type=float, metavar="S", default=0,
                   help="wait up to S seconds for the agent's verdict in plan/reported")
    add_broker_arguments(p)
    p.set_defaults(func=guard(cmd_publish))


def cmd_publish(args):
    from tools.cmd_plan import Refused, _json_file, _read_bytes
    if args.envelope:
        payload = _read_bytes(args.envelope, "envelope file")
        try:
            version = json.loads(json.loads(payload)["body"])["version"]
        except (ValueError, KeyError, TypeError):
            version = None
    else:
        if not args.key or args.version is None:
            raise Refused("--plan needs --key and --version")
        kid, scheme, key = load_signing_key(args.key)
        plan = _json_file(args.plan, "plan file")
        issued = int(time.time())
        expires = issued + args.expires if args.expires else None
        body = make_body(plan, args.intersection, args.version, issued, expires)
        payload = (sign_hmac if scheme == HMAC else sign_ed25519)(body, kid, key).encode()
        version = args.version
    t = topics(args, args.intersection)
    verdict = threading.Event()
    seen = {}

    def on_message(client, userdata, msg):
        d = decode(msg.payload)
        if msg.topic == t.plan_reported and isinstance(d, dict):
            d = d.get("last")            # an envelope without a readable version
        if isinstance(d, dict) and d.get("version") == version and d.get("at", 0) >= t0 - 1:
            seen["last"] = d
            verdict.set()

    t0 = time.time()
    watch = t.plan_reported if version is None else t.plan_verdict(version)
    c = connect(args, "plan-publish", on_message, [(watch, 1)] if args.wait else ())
    try:
        c.publish(t.plan_desired, payload, qos=1, retain=True).wait_for_publish(10)
        print("published version %s on %s (%d bytes, retained)" % (version, t.plan_desired,
                                                                   len(payload)))
        if not args.wait:
            return 0
        if not verdict.wait(args.wait):
            print("no verdict from %s within %.0f s (offline? it will read the retained plan "
                  "when it reconnects)" % (args.intersection, args.wait), file=sys.stderr)
            return 1
        last = seen["last"]
        if last["result"] == "accepted":
            print("accepted: version %s" % version)
            return 0
        print("rejected: %s: %s" % (last.get("reason"), last.get("message")))
        return 1
    finally:
        c.loop_stop()
        c.disconnect()
