"""`edge-agent central heartbeat|cmd`: the central side's heartbeat and signed commands.

    edge-agent central heartbeat --site-id springfield --broker 127.0.0.1:1883 [--period 1]
    edge-agent central cmd --site-id springfield --intersection demo-0001 \\
        --key ctl-0001.json --id 17 --command hold_plan --args '{"seconds": 600}'

The heartbeat (never retained) is what tells every agent of the site that
central is alive: silence for the agents' loss time sends them to local
control even while the broker is up. Commands are signed like plans and
carry an increasing id; see docs/protocols/mqtt.md for the list. `cmd` waits
for the agent's verdict on cmd/result and prints it: a refusal (replay, id
jump, stale...) exits 1 with the agent's reason.
"""

import json
import sys
import threading
import time

from drivers.commands import COMMANDS, command_body, sign_command
from drivers.keys import KeyFileError, load_signing_key
from drivers.topics import heartbeat_payload
from tools.mqtt_args import add_broker_arguments, connect, decode, topics


def register(sub):
    p = sub.add_parser("central", help="central stand-in: heartbeat publisher, signed commands")
    csub = p.add_subparsers(dest="central_command", metavar="ACTION")
    csub.required = True
    h = csub.add_parser("heartbeat", help="publish the central heartbeat every --period seconds")
    h.add_argument("--period", type=float, default=1.0)
    h.add_argument("--seconds", type=float, help="stop after this many seconds")
    h.add_argument("--backoff-cap", type=float, default=2.0, metavar="S",
                   help="reconnect after a broker loss within [0, S] s (full jitter)")
    add_broker_arguments(h)
    h.set_defaults(func=cmd_heartbeat)
    c = csub.add_parser("cmd", help="sign and send a command to one intersection")
    c.add_argument("--intersection", required=True)
    c.add_argument("--key", required=True, help="key file to sign with (as for plans)")
    c.add_argument("--id", type=int, required=True, help="command id, above the last one sent")
    c.add_argument("--command", required=True, choices=COMMANDS)
    c.add_argument("--args", default="{}", help="JSON object of arguments")
    c.add_argument("--wait", type=float, default=10.0, metavar="S",
                   help="wait up to S seconds for the agent's verdict (0: do not wait)")
    add_broker_arguments(c)
    c.set_defaults(func=cmd_command)


def cmd_heartbeat(args):
    # Agents judge central by this heartbeat: come back within seconds of the broker.
    c = connect(args, "central-heartbeat", backoff=(0.1, args.backoff_cap))
    topic = "tsc/v1/%s/central/heartbeat" % args.site_id
    t0 = time.monotonic()
    seq = 0
    try:
        while args.seconds is None or time.monotonic() - t0 < args.seconds:
            seq += 1
            c.publish(topic, heartbeat_payload(round(time.time(), 3), seq), qos=0)
            time.sleep(max(0.0, t0 + seq * args.period - time.monotonic()))
    finally:
        c.loop_stop()
        c.disconnect()
    print("%d heartbeats on %s" % (seq, topic), file=sys.stderr)
    return 0


def cmd_command(args):
    try:
        kid, scheme, key = load_signing_key(args.key)
        cmd_args = json.loads(args.args)
    except (KeyFileError, ValueError) as e:
        print("edge-agent central cmd: %s" % e, file=sys.stderr)
        return 2
    body = command_body(args.intersection, args.id, args.command, int(time.time()), cmd_args)
    payload = sign_command(body, kid, key, scheme)
    t = topics(args, args.intersection)
    verdict = threading.Event()
    seen = {}

    def on_message(client, userdata, msg):
        d = decode(msg.payload)
        if isinstance(d, dict) and d.get("id") == args.id:
            seen["result"] = d
            verdict.set()

    # Subscribed before sending: the agent's verdict (cmd/result, QoS 1) cannot be missed.
    c = connect(args, "central-cmd", on_message, [(t.cmd_result, 1)] if args.wait else ())
    try:
        c.publish(t.cmd, payload, qos=1).wait_for_publish(10)
        print("sent %s (id %d) to %s" % (args.command, args.id, args.intersection))
        if not args.wait:
            return 0
        if not verdict.wait(args.wait):
            print("no answer from %s within %.0f s (offline? commands are not retained)"
                  % (args.intersection, args.wait), file=sys.stderr)
            return 1
    finally:
        c.loop_stop()
        c.disconnect()
    r = seen["result"]
    if r.get("ok"):
        print("accepted: %s (id %d)" % (r.get("command"), args.id))
        return 0
    print("refused: %s: %s" % (r.get("reason"), r.get("message")))
    return 1
