"""One of central's workers, as its own process: events stored then acknowledged, in group commits.

    python -m hil.central_worker --index 0 --node 127.0.0.1:4222 --site fleetville \
        --store central.sqlite --user central --password-env PW

It joins the `events`, `telemetry`, `state` and `verdicts` NATS queue groups
on its node (hil/nats_client.py), so the workers share every subject's load
and a worker that dies (SIGKILL) simply stops taking its share: the units
resend what it never acknowledged.

Events are stored in group commits: the reader thread queues what arrives,
and this process's main thread takes everything waiting (up to GROUP_MAX
batches), writes it with one INSERT OR IGNORE and one commit, and only then
publishes the acknowledgements, in one write. Idle, a batch is committed as
soon as it arrives; under load one commit covers hundreds of batches (one
commit per batch held a 10,000-unit fleet's central to ~2,000 messages/s).

What the bench reads is written to stdout as JSON lines, at most every
0.2 s while busy and at once when idle:
{"c": {counter: increment}, "w": batches handled, "s": {unit: state},
"v": [[unit, version, monotonic s first seen]]}. CLOCK_MONOTONIC is one
clock for every process of the machine, so the parent compares the times.
"""

import argparse
import json
import os
import queue
import sqlite3
import sys
import threading
import time

from drivers.topics import dumps
from hil.nats_client import NatsConnection

GROUP_MAX = 2000
REPORT_EVERY_S = 0.2


def open_store(path):
    db = sqlite3.connect(path, timeout=30)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE IF NOT EXISTS events (unit TEXT, seq INTEGER, rec TEXT, "
               "PRIMARY KEY (unit, seq))")
    # Liveness: when central last heard from each unit (unix s). A unit's last will is
    # not sent when its *node* dies, so the age of what it sends is what tells central.
    db.execute("CREATE TABLE IF NOT EXISTS seen (unit TEXT PRIMARY KEY, at REAL)")
    db.commit()
    return db


class Worker:
    """The loop of one worker: take what arrived, store, acknowledge, report."""

    def __init__(self, conn, db, site, out):
        self.conn, self.db, self.site, self.out = conn, db, site, out
        self.inbox = queue.SimpleQueue()
        self.pending = {"c": {}, "w": 0, "s": {}, "v": []}
        self.reported_at = time.monotonic()

    def subscribe(self):
        base = "tsc.v1.%s.*." % self.site
        for what, group in (("events", "events"), ("telemetry", "telemetry"),
                            ("state", "state"), ("plan.verdict.*", "verdicts")):
            self.conn.subscribe(base + what, self._queue(group), queue=group)
        self.conn.flush()

    def _queue(self, kind):
        put = self.inbox.put
        return lambda subject, payload: put((kind, subject, payload))

    def run(self, stop):
        while not stop.is_set() and not self.conn.closed.is_set():
            try:
                first = self.inbox.get(timeout=REPORT_EVERY_S)
            except queue.Empty:
                self.report()
                continue
            items = [first]
            while len(items) < GROUP_MAX:
                try:
                    items.append(self.inbox.get_nowait())
                except queue.Empty:
                    break
            self.handle(items)
            if time.monotonic() - self.reported_at >= REPORT_EVERY_S or self.inbox.empty():
                self.report()

    def report(self):
        """What was handled since the last report, as one JSON line (the times in it
        were taken when each message was handled, not now)."""
        r = self.pending
        if not (r["c"] or r["w"] or r["s"] or r["v"]):
            return
        line = {"c": r["c"], "w": r["w"]}
        if r["s"]:
            line["s"] = r["s"]
        if r["v"]:
            line["v"] = r["v"]
        self.out.write(json.dumps(line, separators=(",", ":")) + "\n")
        self.out.flush()
        self.pending = {"c": {}, "w": 0, "s": {}, "v": []}
        self.reported_at = time.monotonic()

    def handle(self, items):
        counts = {}
        rows, acks, states, verdicts = [], [], {}, []
        now = time.monotonic()
        wall = time.time()
        seen = {}
        batches = 0
        for kind, subject, payload in items:
            unit = subject.split(".")[3]
            if kind in ("telemetry", "events"):          # what the unit itself sends
                seen[unit] = wall
            if kind == "telemetry":
                counts["telemetry"] = counts.get("telemetry", 0) + 1
            elif kind == "events":
                try:
                    recs = json.loads(payload)["events"]
                    first, last = recs[0][0], recs[-1][0]
                    new_rows = [(unit, r[0], json.dumps(r)) for r in recs]
                except (ValueError, KeyError, TypeError, IndexError):
                    counts["bad_events"] = counts.get("bad_events", 0) + 1
                    continue
                rows.extend(new_rows)
                acks.append((unit, first, last))
                batches += 1
            elif kind == "state":
                try:
                    states[unit] = json.loads(payload)
                except ValueError:
                    counts["bad_states"] = counts.get("bad_states", 0) + 1
            elif kind == "verdicts" and payload:
                counts["verdict_messages"] = counts.get("verdict_messages", 0) + 1
                try:
                    verdicts.append([unit, int(subject.split(".")[-1]), now])
                except ValueError:
                    counts["bad_verdicts"] = counts.get("bad_verdicts", 0) + 1
        if rows or seen:
            db = self.db
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO events VALUES (?, ?, ?)", rows)
            new = db.total_changes - before
            db.executemany("INSERT INTO seen VALUES (?, ?) ON CONFLICT(unit) "
                           "DO UPDATE SET at = max(at, excluded.at)", seen.items())
            db.commit()                                  # stored, then acknowledged
            counts["events"] = new
            counts["duplicates"] = len(rows) - new
            counts["commits"] = 1
        if acks:
            self.conn.publish_many(("tsc.v1.%s.%s.events.ack" % (self.site, unit),
                                    dumps({"first": first, "last": last}))
                                   for unit, first, last in acks)
        r = self.pending
        for k, n in counts.items():
            r["c"][k] = r["c"].get(k, 0) + n
        r["w"] += batches
        r["s"].update(states)
        r["v"].extend(verdicts)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m hil.central_worker")
    p.add_argument("--index", type=int, required=True)
    p.add_argument("--node", required=True, help="host:port of a NATS client listener")
    p.add_argument("--site", required=True)
    p.add_argument("--store", required=True, help="the SQLite event store (shared)")
    p.add_argument("--user", required=True)
    p.add_argument("--password-env", required=True, help="environment variable with the password")
    a = p.parse_args(argv)
    host, _, port = a.node.rpartition(":")
    conn = NatsConnection(host, int(port), a.user, os.environ[a.password_env],
                          name="central-%d" % a.index).start()
    w = Worker(conn, open_store(a.store), a.site, sys.stdout)
    w.subscribe()
    sys.stdout.write(json.dumps({"ready": a.index}) + "\n")
    sys.stdout.flush()
    stop = threading.Event()
    try:
        w.run(stop)
    except (KeyboardInterrupt, BrokenPipeError):
        pass
    finally:
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
