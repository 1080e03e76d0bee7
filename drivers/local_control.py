"""The unit's local command socket: a technician on site talks to the running agent.

A Unix stream socket (never a network port), created 0600 in a directory the
runtime owns; the server also checks each peer's credentials (SO_PEERCRED):
only root or the user the agent runs as may send a command. One JSON line in,
one JSON line out:

    {"cmd": "status"}        -> {"ok": true, "status": {...Agent.status...}}
    {"cmd": "flash-reset"}   -> {"ok": true, "cleared": {fault}} or
                                {"ok": false, "error": "...", "remaining_ms": N}
    {"cmd": "trip", "detail": "..."}   (only with allow_trip: a HIL rig's fault injector)

The socket thread only queues requests; the runtime's control step takes them
(`take()`), feeds the core, and answers each with `reply()`. Central can never
reach this path: a latched flash is cleared on site or not at all.
"""

import json
import os
import queue
import socket
import struct
import threading

COMMANDS = ("status", "flash-reset", "trip")
MAX_REQUEST = 4096


class Waiting:
    """Something a server thread queued for the control step, waiting for its answer."""

    def __init__(self):
        self._answer = queue.Queue(maxsize=1)

    def reply(self, obj):
        """The control step's answer (the first one counts)."""
        try:
            self._answer.put_nowait(obj)
        except queue.Full:
            pass

    def wait(self, timeout_s):
        """The answer, or None when the control step did not answer in time."""
        try:
            return self._answer.get(timeout=timeout_s)
        except queue.Empty:
            return None


def drain(q):
    """Every item queued so far, without blocking (the control step's side)."""
    out = []
    while True:
        try:
            out.append(q.get_nowait())
        except queue.Empty:
            return out


class Request(Waiting):
    """One command waiting for the control step; `reply` answers it."""

    def __init__(self, cmd, detail=None):
        Waiting.__init__(self)
        self.cmd, self.detail = cmd, detail


class LocalControl:
    """A Unix-socket server whose requests the runtime drains once per step."""

    def __init__(self, path, log=None, allow_trip=False, reply_timeout_s=5.0):
        self.path = path
        self.log = log
        self.allow_trip = allow_trip
        self.reply_timeout_s = reply_timeout_s
        self._pending = queue.Queue(maxsize=64)
        self._sock = None
        self._thread = None
        self._stop = threading.Event()

    def start(self):
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, mode=0o700, exist_ok=True)
        if os.path.exists(self.path):
            os.unlink(self.path)          # a socket left by a killed run
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)             # created 0600: nobody else may even connect
        try:
            sock.bind(self.path)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        sock.listen(4)
        sock.settimeout(0.2)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="local-control", daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        if self._sock is not None:
            self._sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass

    def take(self):
        """Every request queued since the last step."""
        return drain(self._pending)

    # -- the socket thread ---------------------------------------------------------------

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                self._one(conn)
            except OSError:
                pass
            finally:
                conn.close()

    def _one(self, conn):
        conn.settimeout(2.0)
        uid = _peer_uid(conn)
        if uid is not None and uid not in (0, os.getuid()):
            _send(conn, {"ok": False, "error": "uid %d may not command this unit "
                         "(root or the agent's own user only)" % uid})
            return
        data = b""
        while b"\n" not in data and len(data) <= MAX_REQUEST:
            chunk = conn.recv(1024)
            if not chunk:
                break
            data += chunk
        req, error = _parse(data, self.allow_trip)
        if error:
            _send(conn, {"ok": False, "error": error})
            return
        try:
            self._pending.put_nowait(req)
        except queue.Full:
            _send(conn, {"ok": False, "error": "busy: too many commands waiting"})
            return
        answer = req.wait(self.reply_timeout_s) or {
            "ok": False, "error": "the control loop did not answer in %.0f s" % self.reply_timeout_s}
        _send(conn, answer)


def _parse(data, allow_trip):
    """(Request, None) or (None, why)."""
    if len(data) > MAX_REQUEST:
        return None, "request longer than %d bytes" % MAX_REQUEST
    try:
        obj = json.loads(data.decode("utf-8").strip() or "null")
    except (UnicodeDecodeError, ValueError) as e:
        return None, "not a JSON line (%s)" % e
    if not isinstance(obj, dict) or not isinstance(obj.get("cmd"), str):
        return None, "expected {\"cmd\": ...}, one of %s" % ", ".join(COMMANDS)
    cmd = obj["cmd"]
    if cmd not in COMMANDS:
        return None, "unknown command %r (one of %s)" % (cmd, ", ".join(COMMANDS))
    if cmd == "trip":
        if not allow_trip:
            return None, "fault injection is off on this unit (a HIL rig starts the agent " \
                         "with --allow-fault-injection)"
        detail = obj.get("detail")
        if not isinstance(detail, str) or not detail:
            return None, "trip needs a \"detail\" sentence"
        return Request(cmd, detail[:200]), None
    return Request(cmd), None


def _peer_uid(conn):
    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (AttributeError, OSError):
        return None
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


def _send(conn, obj):
    conn.sendall(json.dumps(obj, sort_keys=True).encode("utf-8") + b"\n")


def call(path, cmd, timeout_s=10.0, **fields):
    """Client side: send one command to a running agent; returns its JSON answer."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        sock.connect(path)
        req = dict(fields, cmd=cmd)
        sock.sendall(json.dumps(req).encode("utf-8") + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    return json.loads(data.decode("utf-8"))
