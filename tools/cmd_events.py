"""`edge-agent events tail | export`: follow the events agents send; export a log for ATSPM.

    edge-agent events tail --site-id springfield --intersection demo-0001
    edge-agent events tail --site-id springfield --json --count 1000 > events.jsonl
    edge-agent events export --config site.json --history /var/lib/edge-agent/history \
        --since "2026-03-08 06:00" --until "2026-03-08 10:00" --out export/
    edge-agent events export --config site.json --log events.jsonl --format parquet --out export/
    edge-agent events export --rig arterial --duration 3600 --out export/

`export` writes events.csv (TimeStamp local with offset, DeviceId, EventId,
Parameter) and detectors.csv (DeviceId, Phase, Parameter, Function) from the
unit's history, a run log (`tail --json` lines or the outbox journal) or a
fresh rig run; tools/export.py says how.

Events arrive in batches with per-agent sequence numbers (docs/protocols/mqtt.md).
A batch sent again after a reconnect repeats sequence numbers: the tail drops
them, and reports a jump in the numbers as a gap. The tail's session is
durable (a fixed client id, clean session off): events published while it
reconnects, or while the broker restarts, are queued for it, not missed.
"""

import json
import sys
import threading
import time

from drivers.outbox import EVENTS_LOST
from drivers.runtime import BOOT_PLAN
from edge_agent import events as ev
from tools.mqtt_args import add_broker_arguments, connect, decode, split_topic

NAMES = dict(ev.NAMES)
NAMES[EVENTS_LOST] = "events lost (outbox full)"
NAMES[BOOT_PLAN] = "boot plan source"


def register(sub):
    p = sub.add_parser("events", help="follow controller events from agents")
    esub = p.add_subparsers(dest="events_command", metavar="ACTION")
    esub.required = True
    t = esub.add_parser("tail", help="print events as they arrive (de-duplicated by sequence)")
    t.add_argument("--intersection", default="+", help="one intersection (default: all of the site)")
    t.add_argument("--json", action="store_true", help="one JSON object per line")
    t.add_argument("--count", type=int, help="exit after this many events")
    t.add_argument("--seconds", type=float, help="exit after this many seconds")
    t.add_argument("--client-id", help="durable session name (default events-tail-<site>): the "
                   "broker queues events for it while it is away, even across a broker restart")
    add_broker_arguments(t)
    t.set_defaults(func=cmd_tail)
    x = esub.add_parser("export", help="write the event log and detector table ATSPM reads")
    src = x.add_mutually_exclusive_group(required=True)
    src.add_argument("--history", metavar="DIR", help="the unit's event history (<store_dir>/history)")
    src.add_argument("--log", metavar="FILE", help="a run log: `events tail --json` lines or an outbox journal")
    src.add_argument("--rig", metavar="SCENARIO", help="run the agent on a rig scenario and export it")
    x.add_argument("--config", metavar="SITE", help="site JSON (zone, device id, detectors); "
                   "--rig uses the scenario's site")
    x.add_argument("--since", metavar="TIME", help="from this local time (or ISO 8601 with offset)")
    x.add_argument("--until", metavar="TIME", help="up to this local time (exclusive)")
    x.add_argument("--format", choices=("csv", "parquet"), default="csv")
    x.add_argument("--out", required=True, metavar="DIR", help="directory for events.* and detectors.*")
    x.add_argument("--duration", type=float, metavar="S", help="--rig: simulated seconds")
    x.add_argument("--seed", type=int, help="--rig: demand seed")
    x.add_argument("--start", metavar="TIME", help="--rig: local start (default: the scenario's "
                   "time of day, today)")
    x.set_defaults(func=cmd_export)


class Tail:
    """De-duplicates by (intersection, sequence) and notices gaps."""

    def __init__(self, out, as_json=False):
        self.out = out
        self.as_json = as_json
        self.last = {}
        self.count = 0
        self.duplicates = 0
        self.gaps = 0

    def batch(self, intersection, data):
        if not isinstance(data, dict) or not isinstance(data.get("events"), list):
            return
        last = self.last.get(intersection)
        for rec in data["events"]:
            if not isinstance(rec, list) or len(rec) < 5:
                continue
            seq = rec[0]
            if last is not None and seq <= last:
                self.duplicates += 1
                continue
            if last is not None and seq > last + 1:
                self.gaps += 1
                self._line(intersection, {"gap": [last + 1, seq - 1]})
            last = seq
            self.count += 1
            self._line(intersection, rec)
        self.last[intersection] = last

    def _line(self, inter, rec):
        if isinstance(rec, dict):
            text = (json.dumps({"intersection": inter, **rec}) if self.as_json
                    else "%s  -- gap: sequence %d..%d not received" % (inter, *rec["gap"]))
        elif self.as_json:
            text = json.dumps({"intersection": inter, "seq": rec[0], "unix_ms": rec[1],
                               "mono_ms": rec[2], "code": rec[3], "param": rec[4]})
        else:
            t = rec[1]
            when = (time.strftime("%H:%M:%S", time.localtime(t / 1000)) + ".%03d" % (t % 1000)
                    if isinstance(t, int) else "?")
            text = "%s  %8d  %s  %3d %-26s %s" % (inter, rec[0], when, rec[3],
                                                  NAMES.get(rec[3], "event %d" % rec[3]), rec[4])
        self.out.write(text + "\n")
        self.out.flush()


def cmd_tail(args):
    tail = Tail(sys.stdout, args.json)
    done = threading.Event()
    lock = threading.Lock()

    def on_message(client, userdata, msg):
        inter, _ = split_topic(msg.topic)
        with lock:
            tail.batch(inter, decode(msg.payload))
            if args.count is not None and tail.count >= args.count:
                done.set()

    topic = "tsc/v1/%s/%s/events" % (args.site_id, args.intersection)
    client_id = args.client_id or "events-tail-%s" % args.site_id
    c = connect(args, client_id, on_message, [(topic, 1)], durable=True, backoff=(0.1, 2.0))
    try:
        done.wait(args.seconds)
    finally:
        c.loop_stop()
        c.disconnect()
    print("%d events, %d duplicates dropped, %d gaps" % (tail.count, tail.duplicates, tail.gaps),
          file=sys.stderr)
    return 0


def cmd_export(args):
    from tools import export
    try:
        if args.rig:
            site, events = export.run_and_export(args.rig, args.duration, args.seed, args.start)
        else:
            if not args.config:
                print("edge-agent events export: --config SITE is needed with --history or --log",
                      file=sys.stderr)
                return 2
            site = export.load_site(args.config)
            if args.history:
                events = export.history_events(args.history)
            else:
                events = export.log_events(args.log)
        since, until = export.parse_window(site, args.since, args.until)
        events = export.window(events, since, until)
        paths = export.write_export(args.out, site, events, args.format)
    except (export.ExportError, OSError) as e:
        print("edge-agent events export: %s" % e, file=sys.stderr)
        return 2
    print("%d events of %s (%s, zone %s): %s" % (len(events), site.device_id, site.intersection,
                                                 site.time_zone, ", ".join(paths)))
    return 0
