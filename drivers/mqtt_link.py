"""The MQTT connection to central (paho-mqtt 2.x): its own thread, own reconnects, queues both ways.

    link = MqttLink(cfg, topics, outbox, session_file)
    link.start()
    link.connected                     # control loop: broker session up (Inputs.link_up)
    for kind, payload, retain in link.received(200): ...   # control loop: drain
    link.publish(topic, payload, qos, retain)               # control loop: never blocks
    link.retain(topic, payload)        # latest retained state: re-sent on every connection
    link.stop(final_state)             # publish offline state, disconnect (no last will)

Mechanism only: the runtime decides what the messages mean. paho's callbacks
run on this thread inside `client.loop()` and only append to deques (a
callback that raises or blocks would stop the network thread). paho's own
reconnect is not used: its back-off has no jitter, and it cannot walk a broker
list, so this thread reconnects with exponential back-off and full jitter
(a random delay in [0, min(cap, base * 2^attempt)]), moving to the next broker
after each failure. Every connection gets a new session number (kept on disk)
that goes into the last will, so central can ignore a late will of an older
session.

Events are delivered end to end: the broker's PUBACK only paces the batches
in flight; an event leaves the outbox when central acknowledges it on
`events/ack` ({"first", "last"} of a stored batch). After every reconnect,
and whenever central has acknowledged nothing for `ack_timeout_s` while
events wait (doubling, up to a minute, while central stays silent), the
unacknowledged events are sent again (central drops the
duplicates by sequence number). At most `ack_window` events are sent ahead
of central's acknowledgement.
"""

import collections
import json
import random
import ssl
import threading
import time
import zlib

from drivers.store import StoreError
from drivers.topics import dumps, will_payload

try:
    import paho.mqtt.client as mqtt
except ImportError:          # the drivers extra is not installed: only tests may get here
    mqtt = None

# Message kinds handed to the runtime.
PLAN = "plan"
CMD = "cmd"
HEARTBEAT = "heartbeat"
PRIORITY = "priority"
OTHER = "other"

SESSION = "session.json"
ACK_TIMEOUT_CAP_S = 60.0
SUB_RETRY_BASE_S, SUB_RETRY_CAP_S = 0.2, 5.0


class LinkConfig:
    """Where and how to connect (the provisioning file's "mqtt" section)."""

    __slots__ = ("brokers", "site", "username", "password", "client_id", "ca_file",
                 "cert_file", "key_file", "keepalive_s", "backoff_base_s", "backoff_cap_s",
                 "connect_timeout_s", "inbound_max", "ack_timeout_s", "ack_window", "spread",
                 "events_qos", "subscribe_qos")

    def __init__(self, brokers, site, username=None, password=None, client_id=None,
                 ca_file=None, cert_file=None, key_file=None, keepalive_s=5,
                 backoff_base_s=0.5, backoff_cap_s=30.0, connect_timeout_s=3.0,
                 inbound_max=4096, ack_timeout_s=5.0, ack_window=4000, spread=False,
                 events_qos=1, subscribe_qos=1):
        self.brokers = [(h, int(p)) for h, p in brokers]   # primary first, then the others
        self.site = site
        self.username, self.password, self.client_id = username, password, client_id
        self.ca_file, self.cert_file, self.key_file = ca_file, cert_file, key_file
        self.keepalive_s = keepalive_s
        self.backoff_base_s, self.backoff_cap_s = backoff_base_s, backoff_cap_s
        self.connect_timeout_s = connect_timeout_s
        self.inbound_max = inbound_max
        self.ack_timeout_s = ack_timeout_s      # resend what central has not acknowledged
        self.ack_window = ack_window            # events sent ahead of central's acknowledgement
        self.spread = spread                    # cluster nodes: start at a node chosen by id
        # The broker tier's cost, not the guarantee: events are delivered end to end by
        # central's acknowledgement either way, and a retained plan comes back on every
        # subscription. On NATS every QoS 1 publish is a replicated JetStream write and
        # every QoS 1 subscription a JetStream consumer (docs/fleet.md): set both to 0.
        self.events_qos = events_qos            # QoS of the events batches
        self.subscribe_qos = subscribe_qos      # QoS of the plan/desired and cmd subscriptions


def parse_link_config(d, base_dir="."):
    """LinkConfig from the provisioning file's "mqtt" object; ValueError lists every problem."""
    import os
    errors = []
    if not isinstance(d, dict):
        raise ValueError("mqtt: must be an object")
    brokers = []
    for i, b in enumerate(d.get("brokers") or []):
        if isinstance(b, str) and ":" in b:
            host, _, port = b.rpartition(":")
        elif isinstance(b, dict):
            host, port = b.get("host"), b.get("port", 8883 if d.get("tls") else 1883)
        else:
            errors.append("mqtt.brokers[%d]: must be \"host:port\" or {\"host\", \"port\"}" % i)
            continue
        try:
            port = int(port)
        except (TypeError, ValueError):
            port = 0
        if not isinstance(host, str) or not host or not 0 < port < 65536:
            errors.append("mqtt.brokers[%d]: %r is not a host and port" % (i, b))
            continue
        brokers.append((host, port))
    if not brokers:
        errors.append("mqtt.brokers: at least one broker is required (primary, then secondary)")
    site = d.get("site")
    if not isinstance(site, str) or not site:
        errors.append("mqtt.site: is required (the site level of tsc/v1/<site>/<intersection>)")
    tls = d.get("tls") or {}
    if not isinstance(tls, dict):
        errors.append("mqtt.tls: must be an object {\"ca_file\", \"cert_file\", \"key_file\"}")
        tls = {}

    def path(v):
        return None if v is None else os.path.join(base_dir, v)

    num = {}
    for key, default, lo, hi in (("keepalive_s", 5, 1, 600), ("backoff_base_s", 0.5, 0.01, 60),
                                 ("backoff_cap_s", 30.0, 0.1, 600),
                                 ("connect_timeout_s", 3.0, 0.1, 60),
                                 ("ack_timeout_s", 5.0, 0.1, 3600)):
        v = d.get(key, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
            errors.append("mqtt.%s: must be a number %s..%s, got %r" % (key, lo, hi, v))
        num[key] = v
    spread = d.get("spread", False)
    if not isinstance(spread, bool):
        errors.append("mqtt.spread: must be true (a cluster: units spread over the nodes) "
                      "or false (the first broker is the primary), got %r" % (spread,))
    for key in ("events_qos", "subscribe_qos"):
        v = d.get(key, 1)
        if isinstance(v, bool) or v not in (0, 1):
            errors.append("mqtt.%s: must be 0 or 1 (QoS 2 is not used: NATS refuses it), got %r"
                          % (key, v))
        num[key] = v
    if errors:
        raise ValueError("\n  ".join(errors))
    return LinkConfig(brokers, site, d.get("username"), d.get("password"), d.get("client_id"),
                      path(tls.get("ca_file")), path(tls.get("cert_file")),
                      path(tls.get("key_file")), spread=spread, **num)


class MqttLink:
    """One client, one thread: connect, subscribe, publish, reconnect."""

    def __init__(self, cfg, topics, outbox=None, store=None, seed=None, batch_events=500,
                 max_batches_in_flight=8, log=None):
        if mqtt is None:
            raise RuntimeError("paho-mqtt is not installed (pip install 'edge-agent[drivers]')")
        self.cfg = cfg
        self.topics = topics
        self.outbox = outbox
        self.store = store                    # a drivers.store.Store for the session number
        self.rng = random.Random(seed)
        self.batch_events = batch_events
        self.max_batches = max_batches_in_flight
        self.log = log or (lambda level, msg, **kw: None)
        self.connected = False                # CONNACK accepted, not yet lost
        self.session = self._load_session()
        self.broker = None                    # (host, port) of the current or last attempt
        self.inbound = collections.deque()
        self.outbound = collections.deque(maxlen=256)
        self.retained = {}                    # topic -> latest payload, re-sent on connect
        self.retained_dirty = set()
        self.retained_lock = threading.Lock()     # held for a few dict operations only
        self.acks = collections.deque()       # mids acknowledged by the broker (on_publish)
        self.central_acks = collections.deque()   # events/ack payloads from central
        self.ack_wait_since = None            # monotonic s since central owes an ack
        self.ack_timeout = cfg.ack_timeout_s  # doubles while central stays silent
        self.link_events = collections.deque()    # ("up", session) / ("down", reason)
        self.in_flight = {}                   # mid -> last event seq of a batch not PUBACKed
        self.counters = collections.Counter()
        self.unencodable_topics = set()
        self.stopping = threading.Event()
        self.thread = None
        self._attempt = 0
        # A cluster's units start on different nodes (a stable choice per unit), so a
        # node's loss moves only its share; a primary/secondary pair starts on the first.
        self._broker_index = (zlib.crc32(topics.intersection.encode()) % len(cfg.brokers)
                              if cfg.spread else 0)
        self.sub_mids = {}                    # SUBSCRIBE mid -> [(topic, qos)]
        self.sub_failed = collections.deque()     # [(topic, qos)] refused (SUBACK 0x80)
        self.sub_retry_at = None
        self.sub_attempt = 0                  # retries of refused subscriptions, this connection
        self._connack = None
        self.client = self._make_client()

    # -- set-up -------------------------------------------------------------------

    def _make_client(self):
        cfg = self.cfg
        # The broker binds client ids to user names (Mosquitto use_username_as_clientid);
        # where it cannot (NATS), provisioning gives a per-unit secret client id.
        cid = cfg.client_id or cfg.username or "edge-agent-%s" % self.topics.intersection
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, clean_session=True,
                        protocol=mqtt.MQTTv311)
        if cfg.username is not None:
            c.username_pw_set(cfg.username, cfg.password)
        if cfg.ca_file or cfg.cert_file:
            c.tls_set(ca_certs=cfg.ca_file, certfile=cfg.cert_file, keyfile=cfg.key_file,
                      cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        c.connect_timeout = cfg.connect_timeout_s
        c.max_inflight_messages_set(max(20, self.max_batches + 8))
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        c.on_subscribe = self._on_subscribe
        c.suppress_exceptions = True
        return c

    def _load_session(self):
        if self.store is None:
            return 0
        try:
            return int(json.loads(self.store.read(SESSION).decode())["session"])
        except (StoreError, ValueError, KeyError, TypeError):
            return 0

    def _next_session(self):
        self.session += 1
        if self.store is not None:
            try:
                self.store.write(SESSION, dumps({"session": self.session}))
            except OSError as e:
                self.counters["session_write_errors"] += 1
                self.log("warning", "session number not saved", error=str(e))
        return self.session

    # -- paho callbacks: append and return -------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        ok = not reason_code.is_failure
        self._connack = ok
        if ok:
            self.sub_mids.clear()             # a new connection: older SUBSCRIBEs are void
            self._subscribe(client, self.topics.subscriptions(self.cfg.subscribe_qos))
        else:
            self.counters["refused"] += 1
            self.link_events.append(("refused", str(reason_code)))

    def _subscribe(self, client, subs):
        try:
            rc, mid = client.subscribe(subs)
            if rc == mqtt.MQTT_ERR_SUCCESS:
                self.sub_mids[mid] = subs
        except Exception:            # never let anything out of a paho callback
            self.counters["subscribe_errors"] += 1

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        # NATS 2.9 refused ~1 in 5 QoS 1 subscriptions (SUBACK 0x80, after 4 s) while
        # a cluster node was down (nats-server #3116), and 2.15 refuses them past a
        # stream's consumer cap: those are retried, not given up.
        subs = self.sub_mids.pop(mid, None)
        if subs is None:
            return
        for sub, code in zip(subs, reason_codes):
            if code.is_failure:
                self.counters["subscribe_refused"] += 1
                self.sub_failed.append(sub)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.link_events.append(("down", str(reason_code)))

    def _on_message(self, client, userdata, msg):
        t = msg.topic
        tp = self.topics
        if t == tp.events_ack:                # the link's own business, not the runtime's
            if len(self.central_acks) < self.cfg.inbound_max:
                self.central_acks.append(msg.payload)
            return
        kind = (PLAN if t == tp.plan_desired else CMD if t == tp.cmd
                else HEARTBEAT if t == tp.heartbeat else PRIORITY if t == tp.priority else OTHER)
        if len(self.inbound) >= self.cfg.inbound_max:
            self.counters["inbound_dropped"] += 1
            return
        self.inbound.append((kind, msg.payload, bool(msg.retain)))

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        self.acks.append(mid)

    # -- the control loop's side ---------------------------------------------------------

    def received(self, limit):
        """Up to `limit` received messages as (kind, payload bytes, retained)."""
        out = []
        q = self.inbound
        while q and len(out) < limit:
            out.append(q.popleft())
        return out

    def publish(self, topic, payload, qos=0, retain=False):
        """Queue a publish for the link thread; while offline QoS 0 is dropped (counted)."""
        if not self.connected and qos == 0:
            self.counters["dropped_offline"] += 1
            return
        if len(self.outbound) == self.outbound.maxlen:
            self.counters["outbound_dropped"] += 1
        self.outbound.append((topic, payload, qos, retain))

    def retain(self, topic, payload):
        """Set the latest retained payload of a topic: sent now and after every reconnect."""
        with self.retained_lock:
            self.retained[topic] = payload
            self.retained_dirty.add(topic)

    @property
    def subscribed(self):
        """Connected, and every subscription of this connection granted (SUBACK)."""
        return self.connected and not self.sub_mids and not self.sub_failed

    def take_link_events(self):
        out = []
        while self.link_events:
            out.append(self.link_events.popleft())
        return out

    # -- the thread -------------------------------------------------------------------------

    def start(self):
        self.thread = threading.Thread(target=self._run, name="mqtt-link", daemon=True)
        self.thread.start()
        return self

    def stop(self, final_state=None, timeout_s=2.0):
        """Publish the final (offline) state and disconnect cleanly; the will is not sent."""
        self._final = final_state
        self._final_timeout = timeout_s
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout_s + self.cfg.connect_timeout_s + 2)
            self.thread = None

    def _run(self):
        self._final = None
        delay = 0.0
        while not self.stopping.is_set():
            if self.stopping.wait(delay):
                break
            try:
                if not self._connect():
                    delay = self._backoff()
                    continue
                self._attempt = 0
                self._serve()
            except Exception as e:        # the link thread must outlive any bug or library error
                self.connected = False
                self.counters["link_errors"] += 1
                self.log("error", "link error", error=repr(e))
                try:
                    self.client.disconnect()
                except Exception:
                    pass
            delay = self._backoff() if not self.stopping.is_set() else 0
        self._shutdown()

    def _backoff(self):
        """Full jitter: uniform in [0, min(cap, base * 2^attempt)]."""
        cfg = self.cfg
        delay = full_jitter(self._attempt, cfg.backoff_base_s, cfg.backoff_cap_s, self.rng)
        self._attempt += 1
        return delay

    def _connect(self):
        """Open a session with the next broker; True once CONNACK accepted it."""
        cfg = self.cfg
        host, port = self.broker = cfg.brokers[self._broker_index % len(cfg.brokers)]
        session = self._next_session()
        c = self.client
        self.counters["connect_attempts"] += 1
        try:
            c.will_set(self.topics.state, will_payload(session), qos=1, retain=True)
            self._connack = None
            c.connect(host, port, keepalive=cfg.keepalive_s)
            deadline = time.monotonic() + cfg.connect_timeout_s
            while self._connack is None and time.monotonic() < deadline \
                    and not self.stopping.is_set():
                rc = c.loop(timeout=0.05)
                if rc != mqtt.MQTT_ERR_SUCCESS:
                    break
        except (OSError, ssl.SSLError, ValueError) as e:
            self._connack = False
            self.counters["connect_errors"] += 1
            self.log("warning", "broker connection failed", broker="%s:%d" % (host, port),
                     error=str(e) or type(e).__name__)
        if self._connack:
            self.connected = True
            self.counters["connections"] += 1
            self.link_events.append(("up", session))
            self.log("info", "broker connected", broker="%s:%d" % (host, port), session=session)
            with self.retained_lock:
                self.retained_dirty = set(self.retained)
            self.in_flight.clear()            # a new connection: old mids mean nothing
            self.sub_failed.clear()           # on_connect subscribed to everything again
            self.sub_retry_at = None
            self.sub_attempt = 0
            if self.outbox is not None:
                self.outbox.rewind()          # resend all central has not acknowledged
            self.ack_wait_since = None
            self.ack_timeout = cfg.ack_timeout_s
            return True
        if self._connack is None:
            self.counters["connect_timeouts"] += 1
        try:
            c.disconnect()
        except Exception:
            pass
        self._broker_index += 1
        return False

    def _serve(self):
        """Pump the connection until it is lost or the link stops."""
        c = self.client
        while not self.stopping.is_set():
            rc = c.loop(timeout=0.02)
            self._take_acks()
            if rc != mqtt.MQTT_ERR_SUCCESS:
                break
            self._retry_subscriptions()
            self._send()
        lost = not self.stopping.is_set()
        if lost:
            self.connected = False
            self.counters["connections_lost"] += 1
            self.link_events.append(("down", "connection lost"))
            self.log("warning", "broker connection lost",
                     broker="%s:%d" % self.broker if self.broker else None)
            self._broker_index += 1 if len(self.cfg.brokers) > 1 else 0

    def _send(self):
        c = self.client
        with self.retained_lock:
            due = [(t, self.retained[t]) for t in self.retained_dirty]
            self.retained_dirty.clear()
        for topic, payload in due:
            c.publish(topic, payload, qos=1, retain=True)
        q = self.outbound
        while q:
            topic, payload, qos, retain = q.popleft()
            if isinstance(payload, dict):
                try:
                    payload = dumps(payload)
                except (TypeError, ValueError) as e:
                    # A message that cannot be encoded is that message's defect: drop
                    # it (counted, said once per topic), keep the connection and the rest.
                    self.counters["unencodable"] += 1
                    if topic not in self.unencodable_topics:
                        self.unencodable_topics.add(topic)
                        self.log("error", "message not encodable, dropped", topic=topic,
                                 error=repr(e))
                    continue
            c.publish(topic, payload, qos=qos, retain=retain)
            self.counters["published"] += 1
        box = self.outbox
        while box is not None and len(self.in_flight) < self.max_batches \
                and box.unacked_sent() < self.cfg.ack_window:
            batch = box.next_batch(self.batch_events)
            if batch is None:
                break
            payload = dumps({"intersection": self.topics.intersection, "session": self.session,
                             "first": batch[0], "last": batch[1], "events": batch[2]})
            info = c.publish(self.topics.events, payload, qos=self.cfg.events_qos)
            self.in_flight[info.mid] = batch[1]
            box.sent(batch)
            if self.ack_wait_since is None:
                self.ack_wait_since = time.monotonic()
            self.counters["event_batches"] += 1

    def _retry_subscriptions(self):
        if not self.sub_failed:
            return
        now = time.monotonic()
        if self.sub_retry_at is None:
            # Full jitter, growing while the broker keeps refusing (a cluster at its
            # consumer cap or short of a node must not be asked again by every unit
            # at once): [0, min(5 s, 0.2 s * 2^k)] after the k-th retry of this connection.
            self.sub_retry_at = now + full_jitter(self.sub_attempt, SUB_RETRY_BASE_S,
                                                  SUB_RETRY_CAP_S, self.rng)
        elif now >= self.sub_retry_at:
            subs = list(dict.fromkeys(self.sub_failed))
            self.sub_failed.clear()
            self.sub_retry_at = None
            self.sub_attempt += 1
            self.counters["subscribe_retries"] += 1
            self._subscribe(self.client, subs)

    def _take_acks(self):
        while self.acks:
            self.in_flight.pop(self.acks.popleft(), None)
        box = self.outbox
        if box is None:
            return
        while self.central_acks:
            d = _ack(self.central_acks.popleft())
            if d is None:
                self.counters["bad_acks"] += 1
                continue
            # Central answers: it is back, so the wait stops doubling; but only the oldest
            # outstanding event's acknowledgement restarts the clock: a batch lost while
            # central was away (QoS 0, a dead worker) is sent again within ack_timeout_s,
            # however many later batches central acknowledges meanwhile.
            self.ack_timeout = self.cfg.ack_timeout_s
            if box.acked_range(*d):
                self.counters["central_acks"] += 1
                self.ack_wait_since = time.monotonic()
        if box.unacked_sent() == 0:
            self.ack_wait_since = None
        elif self.ack_wait_since is not None and \
                time.monotonic() - self.ack_wait_since > self.ack_timeout:
            # Central has not confirmed for a while (offline, or its broker lost the
            # batches): send everything unacknowledged again, and wait twice as long
            # next time (up to a minute) so a long central outage is not a resend storm.
            box.rewind()
            self.counters["resends"] += 1
            self.ack_wait_since = None
            self.ack_timeout = min(ACK_TIMEOUT_CAP_S, self.ack_timeout * 2)

    def _shutdown(self):
        c = self.client
        if self.connected and self._final is not None:
            try:
                info = c.publish(self.topics.state, self._final, qos=1, retain=True)
                deadline = time.monotonic() + self._final_timeout
                while not info.is_published() and time.monotonic() < deadline:
                    if c.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS:
                        break
                    self._take_acks()
            except Exception as e:
                self.log("warning", "final state not published", error=str(e))
        try:
            c.disconnect()
            c.loop(timeout=0.05)
        except Exception:
            pass
        self.connected = False

    def stats(self):
        s = dict(self.counters)
        s["connected"] = self.connected
        s["session"] = self.session
        s["broker"] = "%s:%d" % self.broker if self.broker else None
        s["events_in_flight"] = len(self.in_flight)
        return s


def _ack(payload):
    """(first, last) of an events/ack payload, or None when it is not one."""
    try:
        d = json.loads(payload)
        first, last = d["first"], d["last"]
    except (ValueError, TypeError, KeyError, UnicodeDecodeError, RecursionError):
        return None
    if type(first) is not int or type(last) is not int or not 0 < first <= last:
        return None
    return first, last


def full_jitter(attempt, base_s, cap_s, rng=random):
    """A reconnect delay drawn uniformly from [0, min(cap, base * 2^attempt)]."""
    return rng.uniform(0, min(cap_s, base_s * (2 ** min(attempt, 30))))


def use_full_jitter(client, base_s=0.1, cap_s=2.0, rng=None):
    """Make a paho client's own reconnects (loop_start) wait with full jitter.

    paho's back-off doubles from 1 s to 120 s with no jitter: after a 20 s
    outage a client came back 21 s late. Before each wait paho reads its delay
    from reconnect_delay_set, so every loss or failed attempt draws the next one.
    Chains the client's on_connect and on_disconnect; call after setting them.
    """
    rng = rng or random.Random()
    attempt = [0]
    connected, disconnected = client.on_connect, client.on_disconnect

    def draw():
        d = full_jitter(attempt[0], base_s, cap_s, rng)
        attempt[0] += 1
        client.reconnect_delay_set(d, d)

    def on_connect(c, userdata, flags, reason_code, properties):
        if not reason_code.is_failure:
            attempt[0] = 0
        if connected is not None:
            connected(c, userdata, flags, reason_code, properties)

    def on_disconnect(c, userdata, flags, reason_code, properties):
        draw()
        if disconnected is not None:
            disconnected(c, userdata, flags, reason_code, properties)

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_connect_fail = lambda c, userdata: draw()
    draw()
    return client
