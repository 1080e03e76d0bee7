"""A city's fleet in one process: thousands of simulated units on a broker cluster, and
central's workers sharing their traffic.

    fleet = Fleet(units, nodes, site, keys)       # units: [(id, password, secret client id)]
    fleet.start()                                  # an asyncio loop on its own thread
    fleet.connect_all()                            # every unit: CONNECT, SUBSCRIBE, state
    workers = CentralWorkers(nats_nodes, site, store_path, workers=3).start()

Each simulated unit speaks the real link protocol (drivers/topics.py names
and payloads): retained `state` with a last will, 1 Hz `telemetry`, sequence-
numbered `events` batches kept until central acknowledges them on
`events/ack` (resent after a reconnect or an acknowledgement timeout, as
drivers/mqtt_link.py does), signed plans on `plan/desired` checked with the
real envelope code, and each verdict retained on `plan/verdict/<version>`.
It reconnects with full jitter to the next node when its node dies, and
notes how long that took. The MQTT client is hil/fleet_mqtt.py (one asyncio
loop, not one paho thread per unit).

Central's workers (CentralWorkers, each its own process: hil/central_worker.py)
read the units' subjects through NATS queue groups, so the load is shared and
a worker that dies loses nothing (the units resend what no worker
acknowledged); events are stored once per (unit, sequence) in SQLite (INSERT
OR IGNORE: duplicates counted, dropped) in group commits, and acknowledged
after the commit.
"""

import asyncio
import collections
import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
import zlib

from drivers.mqtt_link import SUB_RETRY_BASE_S, SUB_RETRY_CAP_S, full_jitter
from drivers.topics import Topics, dumps, will_payload
from edge_agent.envelope import open_envelope
from hil.central_worker import open_store
from hil.fleet_mqtt import FleetClient
from hil.nats_client import NatsConnection


class SimOutbox:
    """The outbox's rules in memory: numbered events, drop only central's ranges, resend."""

    __slots__ = ("next_seq", "acked", "send_from", "ranges", "records", "sent_at")

    def __init__(self):
        self.next_seq, self.acked, self.send_from = 1, 0, 1
        self.ranges = []
        self.records = collections.deque()      # unacknowledged [seq, unix_ms, mono_ms, code, p]
        self.sent_at = None

    def add(self, n, unix_ms, mono_ms):
        for _ in range(n):
            self.records.append([self.next_seq, unix_ms, mono_ms, 1 + self.next_seq % 9, 2])
            self.next_seq += 1

    def batch(self, limit=200):
        if self.send_from >= self.next_seq:
            return None
        recs = [r for r in self.records if r[0] >= self.send_from][:limit]
        if not recs:
            return None
        self.send_from = recs[-1][0] + 1
        return recs

    def acked_range(self, first, last):
        """Central stored first..last; True when the acknowledged mark moved."""
        before = self.acked
        self.ranges.append((first, last))
        self.ranges.sort()
        keep = []
        for lo, hi in self.ranges:
            if lo <= self.acked + 1:
                self.acked = max(self.acked, hi)
            elif hi > self.acked:
                keep.append((lo, hi))
        self.ranges = keep[-64:]
        while self.records and self.records[0][0] <= self.acked:
            self.records.popleft()
        self.send_from = max(self.send_from, self.acked + 1)
        return self.acked > before

    def rewind(self):
        self.send_from = self.acked + 1


class SimUnit:
    """One simulated intersection's link."""

    def __init__(self, fleet, uid, password, client_id):
        self.fleet, self.uid, self.password, self.client_id = fleet, uid, password, client_id
        self.t = Topics(fleet.site, uid)
        self.node = zlib.crc32(uid.encode()) % len(fleet.nodes)
        self.client = None
        self.box = SimOutbox()
        self.session = 0
        self.active = None
        self.connected_at = None
        self.lost_at = None
        self.reconnects = []           # seconds from loss to subscribed and state sent
        self.connacks = []             # seconds from loss to a CONNACK (each attempt that got one)
        self.attempt = 0
        self.refused = []              # [(topic, qos)] the broker refused on this connection
        self.off = False               # powered off: no ticks, no reconnects

    async def connect(self):
        f = self.fleet
        while not f.stopping:
            host, port = f.nodes[self.node % len(f.nodes)]
            self.session += 1
            c = FleetClient(self.client_id, self.uid, self.password, self.on_message,
                            will=(self.t.state, will_payload(self.session)), keepalive=10)
            try:
                await c.connect(host, port)
                if self.lost_at is not None:
                    self.connacks.append(time.monotonic() - self.lost_at)
                subs = self.t.subscriptions(f.subscribe_qos)
                codes = await c.subscribe(subs)
                self.refused = [sub for sub, code in zip(subs, codes) if code >= 0x80]
                await c.publish(self.t.state, dumps({"online": True, "mode": "central",
                                                     "session": self.session}),
                                qos=1, retain=True)
            except (OSError, ConnectionError, EOFError, asyncio.TimeoutError):
                f.counters["connect_failures"] += 1
                c.abort()
                self.node += 1
                await asyncio.sleep(full_jitter(self.attempt, f.backoff_base_s, f.backoff_cap_s,
                                                f.rng))
                self.attempt += 1
                continue
            self.client = c
            self.attempt = 0
            now = time.monotonic()
            if self.lost_at is not None:
                self.reconnects.append(now - self.lost_at)
                self.lost_at = None
            self.connected_at = now
            self.box.rewind()                 # resend whatever central has not acknowledged
            self.box.sent_at = None
            loop = asyncio.get_running_loop()
            loop.create_task(self.watch(c))
            if self.refused:
                loop.create_task(self.resubscribe(c))
            return

    async def resubscribe(self, c):
        """Ask again for the refused subscriptions (SUBACK 0x80), with full jitter, until
        all are granted or this connection is gone: never carry on without the plan
        subscription (nats-server #3116, consumer limits), as drivers/mqtt_link.py does."""
        f = self.fleet
        attempt = 0
        while self.refused and self.client is c and not f.stopping:
            await asyncio.sleep(full_jitter(attempt, SUB_RETRY_BASE_S, SUB_RETRY_CAP_S, f.rng))
            attempt += 1
            f.counters["subscribe_retries"] += 1
            try:
                codes = await c.subscribe(self.refused)
            except (ConnectionError, asyncio.TimeoutError):
                return
            self.refused = [sub for sub, code in zip(self.refused, codes) if code >= 0x80]

    def power_off(self):
        """The unit loses power: its connection drops without DISCONNECT and it sends
        nothing more (called on the fleet's loop: Fleet.power_off)."""
        self.off = True
        if self.client is not None:
            self.client.abort()

    async def watch(self, c):
        await c.closed
        if self.off and self.client is c:
            self.client = None                 # powered off: stays down
        if self.fleet.stopping or self.client is not c:
            return
        self.client = None
        self.lost_at = time.monotonic()
        self.fleet.counters["connections_lost"] += 1
        self.node += 1                         # the next node: this one is gone
        await asyncio.sleep(full_jitter(0, self.fleet.backoff_base_s, self.fleet.backoff_cap_s,
                                        self.fleet.rng))
        self.attempt = 1
        await self.connect()

    def on_message(self, topic, payload, retain):
        t = self.t
        if topic == t.events_ack:
            try:
                d = json.loads(payload)
                if self.box.acked_range(int(d["first"]), int(d["last"])):
                    self.box.sent_at = None       # only the oldest's ack restarts the clock
            except (ValueError, KeyError, TypeError):
                self.fleet.counters["bad_acks"] += 1
        elif topic == t.plan_desired and payload:
            self.plan(payload)
        elif topic == t.heartbeat:
            self.fleet.counters["heartbeats"] += 1

    def plan(self, payload):
        f = self.fleet
        f.counters["plans_received"] += 1
        opened = open_envelope(payload, f.keys)
        if not isinstance(opened, tuple):
            f.counters["plans_rejected"] += 1
            return
        body = json.loads(opened[1])
        v = body.get("version")
        if body.get("intersection") != self.uid or not isinstance(v, int):
            return
        result = "accepted" if self.active is None or v > self.active else "rejected"
        if result == "accepted":
            self.active = v
        d = {"version": v, "result": result, "at": round(time.time(), 3)}
        c = self.client
        if c is not None and c.publish_nowait(t_verdict(self.t, v), dumps(d), qos=1, retain=True):
            f.counters["verdicts_sent"] += 1
        else:
            f.counters["verdicts_unsent"] += 1

    def tick(self, now_ms, unix_ms):
        """Once a second: telemetry, new events, and the events central still owes us."""
        c = self.client
        f = self.fleet
        if self.off:
            return
        self.box.add(f.events_per_tick, unix_ms, now_ms)
        if c is None:
            return
        # dumps() of the same dicts (sorted keys, compact), written out: at 10,000 units
        # the encoder was a tenth of the simulator's CPU.
        packets = [(self.t.telemetry, b'{"mode":"central","plan":%s,"ts":%d}'
                    % (b"null" if self.active is None else b"%d" % self.active,
                       unix_ms // 1000), 0)]
        box = self.box
        now_s = time.monotonic()
        if box.send_from - 1 <= box.acked:
            box.sent_at = None                    # nothing owed by central
        elif box.sent_at is None:
            box.sent_at = now_s                   # owed since now (an ack moved the mark)
        elif now_s - box.sent_at > f.ack_timeout_s:
            box.rewind()                          # a worker died, an ack was lost: again
            box.sent_at = None
            f.counters["resends"] += 1
        b = box.batch()
        if b is not None:
            packets.append((self.t.events, b'{"events":%s,"first":%d,"intersection":"%s",'
                            b'"last":%d,"session":%d}'
                            % (json.dumps(b, separators=(",", ":")).encode(), b[0][0],
                               self.uid.encode(), b[-1][0], self.session), f.events_qos))
            if box.sent_at is None:
                box.sent_at = now_s
        if c.publish_many_nowait(packets):        # one write: telemetry and events
            f.counters["telemetry_sent"] += 1


def t_verdict(topics, version):
    return topics.plan_verdict(version)


def new_event_loop():
    """uvloop's event loop where it is installed (the rig extra installs it): its C
    transports halve the simulator's cost of a socket write, the largest left at 10,000
    units; asyncio's own otherwise (the same behaviour, slower)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class Fleet:
    """Every simulated unit on one asyncio loop (its own thread)."""

    def __init__(self, units, nodes, site, keys, events_per_tick=2, ack_timeout_s=10.0,
                 backoff_base_s=0.5, backoff_cap_s=10.0, connect_parallel=200, seed=1,
                 events_qos=1, subscribe_qos=1):
        self.nodes, self.site, self.keys = nodes, site, keys
        self.events_qos, self.subscribe_qos = events_qos, subscribe_qos   # as LinkConfig's
        self.events_per_tick = events_per_tick
        self.ack_timeout_s = ack_timeout_s
        self.backoff_base_s, self.backoff_cap_s = backoff_base_s, backoff_cap_s
        self.connect_parallel = connect_parallel
        self.rng = random.Random(seed)
        self.counters = collections.Counter()
        self.stopping = False
        self.units = [SimUnit(self, u, pw, cid) for u, pw, cid in units]
        self.loop = None
        self.thread = None
        self.ticking = False
        self.ticks_behind_s = 0.0        # how far the 1 Hz schedule runs late

    def start(self):
        ready = threading.Event()

        def run():
            self.loop = new_event_loop()
            asyncio.set_event_loop(self.loop)
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, name="fleet", daemon=True)
        self.thread.start()
        ready.wait()
        return self

    def call(self, coro, timeout_s=None):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def connect_all(self, timeout_s=600):
        """Connect every unit (connect_parallel at a time); the number connected when
        all were at once or timeout_s passed (the others keep trying in the background).
        A unit whose new connection the cluster closes again reconnects on its own
        (watch): it counts once it is back, not as lost at the moment its first
        connect returned."""
        async def go():
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout_s
            sem = asyncio.Semaphore(self.connect_parallel)

            async def one(u):
                async with sem:
                    await u.connect()
            tasks = [asyncio.ensure_future(one(u)) for u in self.units]
            await asyncio.wait(tasks, timeout=timeout_s)
            while self.connected() < len(self.units) and loop.time() < deadline:
                await asyncio.sleep(0.05)
        self.call(go())
        return self.connected()

    def start_ticks(self):
        """1 Hz per unit, spread over the second in ten slices, on a fixed schedule: a
        slice that starts late does not push the next ones back (a relative sleep lost
        the loop's latency every slice: 7,800 ticks a second instead of 10,000)."""
        async def ticker():
            k = 0
            start = time.monotonic()
            while not self.stopping:
                now = time.monotonic()
                unix_ms = int(time.time() * 1000)
                for u in self.units[k % 10::10]:
                    u.tick(int(now * 1000), unix_ms)
                k += 1
                self.ticks_behind_s = max(0.0, time.monotonic() - (start + k * 0.1))
                await asyncio.sleep(max(0.0, start + k * 0.1 - time.monotonic()))
        self.loop.call_soon_threadsafe(lambda: self.loop.create_task(ticker()))

    def connected(self):
        return sum(1 for u in self.units if u.client is not None)

    def power_off(self, uids):
        """Those units lose power at once (e.g. with the cabinet that feeds a node)."""
        async def off():
            for u in self.units:
                if u.uid in uids:
                    u.power_off()
        self.call(off())

    def stop(self):
        self.stopping = True

        async def close():
            for u in self.units:
                if u.client is not None:
                    await u.client.disconnect()
            me = asyncio.current_task()
            rest = [t for t in asyncio.all_tasks() if t is not me]
            for t in rest:
                t.cancel()
            await asyncio.gather(*rest, return_exceptions=True)
        try:
            self.call(close(), 30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


class CentralWorkers:
    """Central's workers, each its own process (hil/central_worker.py) in NATS queue groups.

    The bench and the tests read what the workers report (states, verdicts with the
    monotonic time central first saw them, counters, batches per worker); `kill(i)`
    SIGKILLs worker i, as a crash would. A process per worker keeps central's work
    off the simulated fleet's interpreter, as central runs on its own machines.
    """

    def __init__(self, nats_nodes, site, store_path, user, password, workers=3):
        self.nodes, self.site, self.store_path = nats_nodes, site, store_path
        self.user, self.password = user, password
        self.n = workers
        self.lock = threading.Lock()
        self.counters = collections.Counter()
        self.per_worker = collections.Counter()
        self.state = {}
        self.verdicts = {}             # (unit, version) -> monotonic s first seen
        self.procs = []
        self.readers = []
        self.ready = [threading.Event() for _ in range(workers)]
        self.beat_conn = None
        open_store(store_path).close()

    def start(self, timeout_s=30.0):
        env = dict(os.environ, EDGE_AGENT_CENTRAL_PW=self.password)
        for i in range(self.n):
            host, port = self.nodes[i % len(self.nodes)]
            p = subprocess.Popen([sys.executable, "-m", "hil.central_worker", "--index", str(i),
                                  "--node", "%s:%d" % (host, port), "--site", self.site,
                                  "--store", self.store_path, "--user", self.user,
                                  "--password-env", "EDGE_AGENT_CENTRAL_PW"],
                                 stdout=subprocess.PIPE, env=env)
            self.procs.append(p)
            t = threading.Thread(target=self._read, args=(i, p.stdout), daemon=True,
                                 name="central-worker-%d" % i)
            t.start()
            self.readers.append(t)
        for i, ev in enumerate(self.ready):
            if not ev.wait(timeout_s):
                self.stop()
                raise RuntimeError("central worker %d did not subscribe within %.0f s"
                                   % (i, timeout_s))
        host, port = self.nodes[0]
        self.beat_conn = NatsConnection(host, port, self.user, self.password,
                                        name="central-heartbeat").start()
        return self

    def _read(self, i, stream):
        for line in stream:
            try:
                d = json.loads(line)
            except ValueError:
                continue
            if "ready" in d:
                self.ready[i].set()
                continue
            with self.lock:
                self.counters.update(d.get("c", {}))
                self.per_worker[i] += d.get("w", 0)
                self.state.update(d.get("s", {}))
                for unit, version, t in d.get("v", ()):
                    self.verdicts.setdefault((unit, version), t)

    def kill(self, i):
        """Worker i dies (SIGKILL): whatever it had not acknowledged comes back to the others."""
        p = self.procs[i]
        if p.poll() is None:
            p.kill()
            p.wait(10)
        self.readers[i].join(10)

    def heartbeat(self, seq):
        self.beat_conn.publish("tsc.v1.%s.central.heartbeat" % self.site,
                               dumps({"ts": round(time.time(), 3), "seq": seq}))

    def silent(self, after_s, now=None):
        """Units central has heard nothing from (telemetry, events) for more than after_s
        seconds, from the workers' shared store: the liveness a node's death needs,
        since the wills of the units it carried are not sent."""
        now = time.time() if now is None else now
        db = sqlite3.connect(self.store_path, timeout=30)
        try:
            return {u for u, in db.execute("SELECT unit FROM seen WHERE at < ?",
                                           (now - after_s,))}
        finally:
            db.close()

    def stored(self):
        """{unit: set of stored sequence numbers}."""
        db = sqlite3.connect(self.store_path)
        out = collections.defaultdict(set)
        for unit, seq in db.execute("SELECT unit, seq FROM events"):
            out[unit].add(seq)
        db.close()
        return out

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except Exception:
                p.kill()
                p.wait(10)
        for t in self.readers:
            t.join(5)
        if self.beat_conn is not None and not self.beat_conn.closed.is_set():
            self.beat_conn.close()
