"""The brain on a real broker: a thin adapter around the sans-I/O ``Brain``.

    node = BrainNode(config, "127.0.0.1", 1883, store_path="brain.store.json").start()
    node.wait_planned(timeout_s=10)      # a first plan after start (or restart)
    node.stop()

One paho client (VERSION2 callbacks). It subscribes, inside on_connect so a
reconnect restores them, to every intersection's telemetry and to the
retained plan/desired topics (its own last plans: a restarted brain takes
its versions and timings back from them). Messages go through a queue to one
loop thread that owns the Brain: it feeds them in, ticks the brain every
100 ms with the monotonic and wall clocks, publishes what comes out, and
writes the store (atomically, fsynced) after every plan. Callbacks never
raise: a callback that raises stops paho's network thread.
"""

import json
import os
import queue
import threading
import time

from drivers.topics import PREFIX
from hil.brain.brain import Brain
from hil.brain.escort import Escort


def load_store(path):
    """The brain's store, or None when there is none yet (or it is unreadable)."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def save_store(path, data):
    """Write the store atomically: temp file, fsync, rename, fsync of the directory."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BrainNode:
    """Brain + broker + store, in real time."""

    def __init__(self, config, host, port, store_path=None, username=None, password=None,
                 client_id="edge-agent-brain", tick_s=0.1):
        import paho.mqtt.client as mqtt
        self.config = config
        self.store_path = store_path
        self.tick_s = tick_s
        self.inbox = queue.Queue(maxsize=100000)
        self.stopping = threading.Event()
        self.planned = threading.Event()
        self.subscribed = threading.Event()   # the broker acknowledged the subscriptions
        self.published = []              # (monotonic s, topic) of plans, for tests and logs
        self.errors = 0
        self.brain = None
        self.escort = None
        self.escort_errors = []          # why an escort message changed nothing (last 100)
        self.lock = threading.Lock()
        site = config["site"]
        self.subs = [("%s/%s/+/telemetry" % (PREFIX, site), 0),
                     ("%s/%s/+/plan/desired" % (PREFIX, site), 1),
                     ("%s/%s/central/escort/+" % (PREFIX, site), 1),
                     ("%s/%s/central/probe" % (PREFIX, site), 0)]
        self.escort_prefix = "%s/%s/central/escort/" % (PREFIX, site)
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        if username is not None:
            c.username_pw_set(username, password)
        c.reconnect_delay_set(0.1, 2.0)
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        self.client = c
        self.host, self.port = host, port
        self.thread = None

    def _on_connect(self, client, userdata, flags, rc, props):
        try:
            if not rc.is_failure:
                client.subscribe(self.subs)
        except Exception:
            self.errors += 1

    def _on_subscribe(self, client, userdata, mid, reason_codes, props):
        self.subscribed.set()

    def _on_message(self, client, userdata, msg):
        try:
            self.inbox.put_nowait((msg.topic, bytes(msg.payload)))
        except Exception:        # a full inbox drops telemetry (QoS 0 anyway)
            self.errors += 1

    def start(self):
        now = int(time.monotonic() * 1000)
        store = load_store(self.store_path) if self.store_path else None
        self.brain = Brain(self.config, now_ms=now, store=store)
        self.escort = Escort(self.config)
        self.client.connect(self.host, self.port, keepalive=10)
        self.client.loop_start()
        self.thread = threading.Thread(target=self._loop, name="brain", daemon=True)
        self.thread.start()
        return self

    def _loop(self):
        while not self.stopping.is_set():
            now = int(time.monotonic() * 1000)
            try:
                while True:
                    topic, payload = self.inbox.get_nowait()
                    if topic.startswith(self.escort_prefix):
                        why = self.escort.receive(now, topic[len(self.escort_prefix):], payload)
                        if why:
                            self.escort_errors = (self.escort_errors + [why])[-100:]
                    else:
                        self.brain.receive(now, topic, payload)
            except queue.Empty:
                pass
            try:
                wall = time.time()
                pubs = self.brain.tick(now, wall) + self.escort.tick(now, wall)
            except Exception:
                self.errors += 1
                pubs = []
            plans = False
            for topic, payload, retain, qos in pubs:
                self.client.publish(topic, payload, qos=qos, retain=retain)
                if retain:
                    plans = True
                    self.published.append((time.monotonic(), topic))
            if plans:
                if self.store_path:
                    save_store(self.store_path, self.brain.snapshot())
                self.planned.set()
            self.stopping.wait(self.tick_s)

    def wait_planned(self, timeout_s):
        return self.planned.wait(timeout_s)

    def stop(self):
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(5)
        self.client.loop_stop()
        self.client.disconnect()
