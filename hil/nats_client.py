"""A minimal NATS core-protocol client (one socket, one reader thread) for central's workers.

    n = NatsConnection("127.0.0.1", 4222, "central", "pw").start()
    n.subscribe("tsc.v1.springfield.*.events", handler, queue="central-events")
    n.publish("tsc.v1.springfield.demo-0001.events.ack", b"...")
    n.close()

Central reads the units' MQTT traffic as NATS subjects ('/' becomes '.'):
a queue group spreads the messages of one subscription over every worker
that joins it, and a worker that dies simply stops taking its share. Core
NATS delivery is at most once, which is enough here: a unit resends every
event central has not acknowledged (drivers/mqtt_link.py), so an event a
dying worker had in hand comes back to a live one.
"""

import json
import socket
import threading


class NatsConnection:
    """CONNECT, SUB (with queue group), PUB, PING/PONG and MSG: nothing else."""

    def __init__(self, host, port, user=None, password=None, name="edge-agent-central"):
        self.host, self.port, self.user, self.password, self.name = host, port, user, password, name
        self.sock = None
        self.handlers = {}
        self.sid = 0
        self.lock = threading.Lock()
        self.thread = None
        self.closed = threading.Event()
        self.pong = threading.Event()
        self.errors = []

    def start(self, timeout_s=10.0):
        self.sock = socket.create_connection((self.host, self.port), timeout=timeout_s)
        self.file = self.sock.makefile("rb")
        info = self.file.readline()
        if not info.startswith(b"INFO "):
            raise ConnectionError("not a NATS server: %r" % info[:40])
        opts = {"verbose": False, "pedantic": False, "name": self.name, "lang": "python",
                "version": "0", "protocol": 1, "headers": False}
        if self.user is not None:
            opts.update(user=self.user, **{"pass": self.password})
        self._send(b"CONNECT " + json.dumps(opts).encode() + b"\r\nPING\r\n")
        line = self.file.readline()
        if line.startswith(b"-ERR"):
            raise ConnectionError(line.decode().strip())
        self.sock.settimeout(None)
        self.thread = threading.Thread(target=self._run, name="nats-reader", daemon=True)
        self.thread.start()
        return self

    def _send(self, data):
        with self.lock:
            self.sock.sendall(data)

    def subscribe(self, subject, handler, queue=None):
        """handler(subject, payload) runs on the reader thread."""
        self.sid += 1
        self.handlers[str(self.sid).encode()] = handler
        q = (" " + queue) if queue else ""
        self._send(("SUB %s%s %d\r\n" % (subject, q, self.sid)).encode())
        return self.sid

    def publish(self, subject, payload):
        self.publish_many([(subject, payload)])

    def publish_many(self, messages):
        """Publish (subject, payload) pairs in one write."""
        data = b"".join(b"PUB %s %d\r\n%s\r\n" % (subject.encode(), len(payload), payload)
                        for subject, payload in messages)
        if data:
            self._send(data)

    def flush(self, timeout_s=5.0):
        """True once the server answered a PING sent after everything before it."""
        self.pong.clear()
        self._send(b"PING\r\n")
        return self.pong.wait(timeout_s)

    def _run(self):
        f = self.file
        try:
            while True:
                line = f.readline()
                if not line:
                    break
                if line.startswith(b"MSG "):
                    parts = line.split()
                    n = int(parts[-1])
                    data = f.read(n + 2)[:n]
                    h = self.handlers.get(parts[2])
                    if h is not None:
                        try:
                            h(parts[1].decode(), data)
                        except Exception as e:     # a handler bug must not stop the reader
                            self.errors.append(repr(e))
                elif line.startswith(b"PING"):
                    self._send(b"PONG\r\n")
                elif line.startswith(b"PONG"):
                    self.pong.set()
                elif line.startswith(b"-ERR"):
                    self.errors.append(line.decode().strip())
        except OSError:
            pass
        finally:
            self.closed.set()

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        if self.thread is not None:
            self.thread.join(5)
