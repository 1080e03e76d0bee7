"""A central-brain stand-in: heartbeat, plan and command publisher, and a collector of what agents send.

    c = Central("127.0.0.1", 1883, site="springfield").start()
    c.heartbeat(period_s=1.0)                  # every second on tsc/v1/<site>/central/heartbeat
    c.publish_plan("demo-0001", envelope)      # retained, QoS 1, on plan/desired
    c.state("demo-0001")                       # latest retained state (dict)
    c.reported("demo-0001")                    # latest plan/reported (dict)
    c.events("demo-0001")                      # events de-duplicated by sequence number
    c.stop_heartbeat(); c.stop()

The collector subscribes with a durable session (clean_session False, QoS 1)
so a broker with persistence queues events for it while it reconnects. It
keeps every event once per sequence number and counts the duplicates it
dropped; gaps are visible in `missing()`. Once a batch is stored it
acknowledges it to the unit on `<intersection>/events/ack` ({"first",
"last"}, QoS 1): only then may the unit drop those events. A duplicate batch
is acknowledged again (the unit may have missed the first ack). With
`store=path` the events are journalled there (one JSON line per new event,
flushed and fsynced before the ack) and read back on start: a central that
restarts still knows what it stored, so the consumer is durable and
idempotent across its own crashes too.
"""

import collections
import json
import os
import threading
import time

import paho.mqtt.client as mqtt

from drivers.topics import PREFIX, dumps, heartbeat_payload


class Central:
    """The central side of the link, for tests, benches and the `edge-agent central` command."""

    def __init__(self, host, port, site, username=None, password=None, ca_file=None,
                 cert_file=None, key_file=None, client_id="central-standin", durable=True,
                 ack=True, store=None, fsync=True):
        self.host, self.port, self.site = host, port, site
        self.ack = ack                   # acknowledge stored event batches to the units
        self.store_path = store
        self.fsync = fsync
        self.journal = None
        self.lock = threading.Lock()
        self.states = {}
        self.reports = {}
        self.telemetry = {}
        self.telemetry_count = collections.Counter()
        self.state_log = []              # (monotonic s, intersection, state dict)
        self.event_seen = {}             # intersection -> {seq: record}
        self.duplicates = collections.Counter()
        self.event_batches = collections.Counter()
        self.hb_thread = None
        self.hb_stop = threading.Event()
        self.hb_seq = 0
        self.connected = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                        clean_session=not durable, protocol=mqtt.MQTTv311)
        if username is not None:
            c.username_pw_set(username, password)
        if ca_file:
            c.tls_set(ca_certs=ca_file, certfile=cert_file, keyfile=key_file)
        c.reconnect_delay_set(0.05, 0.2)
        c.on_connect = self._on_connect
        c.on_disconnect = lambda *a: self.connected.clear()
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        self.sub_mids = {}
        self.subscribed = threading.Event()   # every subscription granted (SUBACK)
        self.client = c

    def start(self, timeout_s=5.0):
        if self.store_path is not None:
            self._load_journal()
        self.client.connect(self.host, self.port, keepalive=5)
        self.client.loop_start()
        if not self.connected.wait(timeout_s) or not self.subscribed.wait(timeout_s):
            raise RuntimeError("central stand-in could not connect and subscribe to %s:%d"
                               % (self.host, self.port))
        return self

    def stop(self):
        self.stop_heartbeat()
        self.client.loop_stop()
        try:
            self.client.disconnect()
        except Exception:
            pass
        if self.journal is not None:
            self.journal.close()
            self.journal = None

    def _load_journal(self):
        try:
            with open(self.store_path, "rb") as f:
                for line in f:
                    try:
                        inter, rec = json.loads(line)
                    except ValueError:
                        break                    # a torn last line: never acknowledged
                    self.event_seen.setdefault(inter, {})[rec[0]] = rec
        except FileNotFoundError:
            pass
        self.journal = open(self.store_path, "ab")

    def _journal(self, inter, new):
        for rec in new:
            self.journal.write(json.dumps([inter, rec], separators=(",", ":")).encode() + b"\n")
        self.journal.flush()
        if self.fsync:
            os.fsync(self.journal.fileno())

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            return
        base = "%s/%s/" % (PREFIX, self.site)
        self.subscribed.clear()
        self._subscribe([(base + "+/state", 1), (base + "+/plan/reported", 1),
                         (base + "+/events", 1), (base + "+/telemetry", 0)])
        self.connected.set()

    def _subscribe(self, subs):
        rc, mid = self.client.subscribe(subs)
        self.sub_mids[mid] = subs

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        # A NATS cluster with a node down refuses some QoS 1 subscriptions (#3116): again.
        subs = self.sub_mids.pop(mid, [])
        again = [sub for sub, code in zip(subs, reason_codes) if code.is_failure]
        if again:
            self._subscribe(again)
        elif not self.sub_mids:
            self.subscribed.set()

    def _on_message(self, client, userdata, msg):
        try:
            parts = msg.topic.split("/")
            inter, what = parts[3], "/".join(parts[4:])
            data = json.loads(msg.payload) if msg.payload else None
        except (ValueError, IndexError):
            return
        with self.lock:
            if what == "state":
                self.states[inter] = data
                self.state_log.append((time.monotonic(), inter, data))
            elif what == "plan/reported":
                self.reports[inter] = data
            elif what == "telemetry":
                self.telemetry[inter] = data
                self.telemetry_count[inter] += 1
            elif what == "events" and isinstance(data, dict):
                self.event_batches[inter] += 1
                seen = self.event_seen.setdefault(inter, {})
                seqs, new = [], []
                for rec in data.get("events", ()):
                    if not isinstance(rec, list) or not rec or type(rec[0]) is not int:
                        continue
                    seqs.append(rec[0])
                    if rec[0] in seen:
                        self.duplicates[inter] += 1
                    else:
                        seen[rec[0]] = rec
                        new.append(rec)
                if new and self.journal is not None:
                    self._journal(inter, new)      # stored before it is acknowledged
                if seqs and self.ack:
                    client.publish(self.topic(inter, "events/ack"),
                                   dumps({"first": min(seqs), "last": max(seqs)}), qos=1)

    # -- what central sends ----------------------------------------------------------

    def topic(self, intersection, what):
        return "%s/%s/%s/%s" % (PREFIX, self.site, intersection, what)

    def publish_plan(self, intersection, envelope, retain=True):
        """Publish an envelope on plan/desired (retained, QoS 1); wait until the broker has it."""
        info = self.client.publish(self.topic(intersection, "plan/desired"), envelope, qos=1,
                                   retain=retain)
        info.wait_for_publish(5)
        return info

    def publish_cmd(self, intersection, envelope):
        info = self.client.publish(self.topic(intersection, "cmd"), envelope, qos=1)
        info.wait_for_publish(5)
        return info

    def publish_raw(self, topic, payload, qos=0, retain=False):
        return self.client.publish(topic, payload, qos=qos, retain=retain)

    def heartbeat(self, period_s=1.0):
        """Start publishing the central heartbeat every period_s (its own thread)."""
        self.hb_stop.clear()

        def run():
            while not self.hb_stop.is_set():
                self.beat()
                self.hb_stop.wait(period_s)

        self.hb_thread = threading.Thread(target=run, name="central-heartbeat", daemon=True)
        self.hb_thread.start()

    def beat(self):
        self.hb_seq += 1
        self.client.publish("%s/%s/central/heartbeat" % (PREFIX, self.site),
                            heartbeat_payload(round(time.time(), 3), self.hb_seq), qos=0)

    def stop_heartbeat(self):
        self.hb_stop.set()
        if self.hb_thread is not None:
            self.hb_thread.join(3)
            self.hb_thread = None

    # -- what central saw -------------------------------------------------------------------

    def state(self, intersection):
        with self.lock:
            return self.states.get(intersection)

    def reported(self, intersection):
        with self.lock:
            return self.reports.get(intersection)

    def last_telemetry(self, intersection):
        with self.lock:
            return self.telemetry.get(intersection)

    def events(self, intersection):
        """Every event received, once per sequence number, in sequence order."""
        with self.lock:
            seen = self.event_seen.get(intersection, {})
            return [seen[k] for k in sorted(seen)]

    def missing(self, intersection):
        """Sequence numbers absent between the first and the last received."""
        with self.lock:
            seen = self.event_seen.get(intersection, {})
            if not seen:
                return []
            lo, hi = min(seen), max(seen)
            return [s for s in range(lo, hi + 1) if s not in seen]

    def wait_for(self, predicate, timeout_s, poll_s=0.05):
        """Poll predicate() until it is truthy; returns its value or None on timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            v = predicate()
            if v:
                return v
            time.sleep(poll_s)
        return None
