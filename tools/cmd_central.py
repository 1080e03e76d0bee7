"""`edge-agent central heartbeat|cmd`: the central side's heartbeat and signed commands.

    edge-agent central heartbeat --site-id springfield --broker 127.0.0.1:1883 [--period 1]
    edge-agent central cmd --site-id springfield --intersection demo-0001 \\
        --key ctl-0001.json --id 17 --command hold_plan --args '{"seconds": 600}'
    edge-agent central units --site-id springfield [--listen 5] [--silent-after 3]

The heartbeat (never retained) is what tells every agent of the site that
central is alive: silence for the agents' loss time sends them to local
control even while the broker is up. Commands are signed like plans and
carry an increasing id; see docs/protocols/mqtt.md for the list. `cmd` waits
for the agent's verdict on cmd/result and prints it: a refusal (replay, id
jump, stale...) exits 1 with the agent's reason.

`units` listens for --listen seconds and lists every unit of the site with
its retained state and when its telemetry was last heard. A unit whose
state says online but that sent no telemetry for --silent-after seconds is
SILENT: on a broker cluster a unit that dies with its node leaves no will,
so its retained state still says online (docs/fleet.md). Exits 1 when a unit
is silent.
"""

import json
import sys
import threading
import time

from drivers.commands import COMMANDS, command_body, sign_command
from drivers.keys import KeyFileError, load_signing_key
from drivers.topics import heartbeat_payload
from tools.mqtt_args import add_broker_arguments, connect, decode, split_topic, topics


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
    u = csub.add_parser("units", help="every unit of the site: state, telemetry age, silent ones")
    u.add_argument("--listen", type=float, default=5.0, metavar="S",
                   help="listen this long for telemetry (default 5 s)")
    u.add_argument("--silent-after", type=float, default=3.0, metavar="S",
                   help="online by its state but no telemetry for S s: SILENT (default 3)")
    add_broker_arguments(u)
    u.set_defaults(func=cmd_units)


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


def units_table(states, heard, listened_s, silent_after_s, now):
    """The lines of `central units` and the number of silent units.

    states: {unit: retained state dict}; heard: {unit: monotonic s of its last
    telemetry}; now: monotonic s at the end of the listening window."""
    lines = ["%-24s %-8s %-18s %s" % ("unit", "state", "telemetry", "verdict")]
    silent = 0
    for unit in sorted(set(states) | set(heard)):
        st = states.get(unit)
        online = None if st is None else bool(st.get("online"))
        age = None if unit not in heard else now - heard[unit]
        told = "never in %.0f s" % listened_s if age is None else "%.1f s ago" % age
        if online is False:
            verdict = "offline (%s)" % (st.get("reason") or "last will")
        elif age is None or age > silent_after_s:
            verdict = "SILENT: %s, no telemetry for %s" % (
                "state says online" if online else "no state retained",
                "the %.0f s listened" % listened_s if age is None else "%.1f s" % age)
            silent += 1
        else:
            verdict = "ok"
        lines.append("%-24s %-8s %-18s %s" % (unit, {True: "online", False: "offline",
                                                      None: "-"}[online], told, verdict))
    return lines, silent


def cmd_units(args):
    states, heard = {}, {}
    lock = threading.Lock()

    def on_message(client, userdata, msg):
        unit, what = split_topic(msg.topic)
        if unit is None or unit == "central":
            return
        with lock:
            if what == "state":
                d = decode(msg.payload)
                if isinstance(d, dict):
                    states[unit] = d
            elif what == "telemetry":
                heard[unit] = time.monotonic()

    base = "tsc/v1/%s/+/" % args.site_id
    c = connect(args, "central-units", on_message, [(base + "state", 1), (base + "telemetry", 0)])
    try:
        time.sleep(args.listen)
    finally:
        c.loop_stop()
        c.disconnect()
    with lock:
        lines, silent = units_table(states, heard, args.listen, args.silent_after,
                                    time.monotonic())
    print("\n".join(lines))
    if silent:
        print("%d unit(s) silent: state online (or none) but no telemetry for %g s"
              % (silent, args.silent_after), file=sys.stderr)
    return 1 if silent else 0
