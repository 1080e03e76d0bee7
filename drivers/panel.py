"""The local front panel: a web page a technician opens on the cabinet's local port.

Standard library only (http.server + server-sent events), no JavaScript build
step, nothing loaded from outside: the page works on a laptop with no
network but the cabinet's. It binds 127.0.0.1 unless the operator gives
another address (`run --panel ADDR:PORT`).

    GET  /               the page (drivers/panel_page.html)
    GET  /stream         server-sent events: one JSON snapshot per control step
                         that changed (Agent.status + the newest events)
    GET  /events.csv     the unit's event log (newest first), as CSV
    POST /action         {"password", "action", ...}: a technician action

Actions (behind the panel password set at provisioning, stored only as a
PBKDF2 hash, never logged): "flash-reset", "vehicle-call" {phase}, "ped-call"
{phase}, "local-control" {minutes}. The HTTP thread only queues an action;
the control step performs it through the same inputs as every other driver
and answers. Nothing on the page can change a plan or bypass the monitor.
"""

import base64
import hashlib
import hmac
import json
import os
import queue
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from drivers.local_control import Waiting, drain

ACTIONS = ("flash-reset", "vehicle-call", "ped-call", "local-control")
PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "panel_page.html")
ITERATIONS = 200_000
MAX_BODY = 4096
EVENTS_KEPT = 2000


def hash_password(password, salt=None, iterations=ITERATIONS):
    """'pbkdf2_sha256$iterations$salt$hash' (base64), for the provisioning file."""
    salt = salt or os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return "pbkdf2_sha256$%d$%s$%s" % (iterations, base64.b64encode(salt).decode(),
                                      base64.b64encode(digest).decode())


def check_password(password, stored):
    """True when `password` matches a hash_password() string (constant-time compare)."""
    try:
        scheme, iterations, salt, digest = stored.split("$")
        if scheme != "pbkdf2_sha256":
            return False
        got = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"),
                                  base64.b64decode(salt), int(iterations))
        return hmac.compare_digest(got, base64.b64decode(digest))
    except (ValueError, AttributeError, TypeError):
        return False


class Action(Waiting):
    """One technician action waiting for the control step; `reply` answers it."""

    def __init__(self, action, phase=None, minutes=None):
        Waiting.__init__(self)
        self.action, self.phase, self.minutes = action, phase, minutes


class Panel:
    """The panel server: the runtime `publish()`es a snapshot each step and `take()`s actions."""

    def __init__(self, host, port, password_hash, log=None, site_name=""):
        self.host, self.port = host, port
        self.password_hash = password_hash
        self.log = log
        self.site_name = site_name
        self._cond = threading.Condition()
        self._snapshot = None
        self._version = 0
        self._events = []              # newest last: (wall iso, ms, code, param, name)
        self._actions = queue.Queue(maxsize=16)
        self._server = None
        self._thread = None
        self._closing = False
        self.refused = 0

    # -- the control loop's side --------------------------------------------------------

    def publish(self, status, events):
        """A new snapshot (Agent.status plus this step's events, already named)."""
        with self._cond:
            if events:
                self._events.extend(events)
                del self._events[:-EVENTS_KEPT]
            status["events"] = self._events[-200:][::-1]
            self._snapshot = json.dumps(status, sort_keys=True, default=str)
            self._version += 1
            self._cond.notify_all()

    def take(self):
        """Every action queued since the last step."""
        return drain(self._actions)

    # -- lifecycle ---------------------------------------------------------------------

    def start(self):
        panel = self

        class Handler(_Handler):
            owner = panel
        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="panel",
                                        daemon=True)
        self._thread.start()
        if self.log:
            self.log("info", "front panel serving", url="http://%s:%d/" % (self.host, self.port))

    def stop(self):
        if self._server is not None:
            with self._cond:
                self._closing = True
                self._version += 1
                self._cond.notify_all()
            self._server.shutdown()
            self._server.server_close()

    def wait_snapshot(self, seen, timeout_s):
        with self._cond:
            self._cond.wait_for(lambda: self._version != seen, timeout_s)
            return self._version, self._snapshot

    def events_csv(self):
        with self._cond:
            rows = list(self._events)[::-1]
        lines = ["time,ms,code,parameter,event"]
        for when, ms, code, param, name in rows:
            lines.append("%s,%d,%d,%d,%s" % (when, ms, code, param, name.replace(",", ";")))
        return "\n".join(lines) + "\n"

    def submit(self, body):
        """Check a POSTed action; queue it for the control step and wait for its answer."""
        try:
            req = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return 400, {"ok": False, "error": "the body is not JSON"}
        if not isinstance(req, dict):
            return 400, {"ok": False, "error": "expected an object {password, action, ...}"}
        if not self.password_hash:
            return 403, {"ok": False, "error": "no panel password was set at provisioning: "
                                               "technician actions are off"}
        if not isinstance(req.get("password"), str) or \
                not check_password(req["password"], self.password_hash):
            self.refused += 1
            if self.log:
                self.log("warning", "front panel action refused: wrong password",
                         action=str(req.get("action"))[:40])
            return 403, {"ok": False, "error": "wrong password"}
        action = req.get("action")
        if action not in ACTIONS:
            return 400, {"ok": False, "error": "unknown action %r (one of %s)"
                         % (action, ", ".join(ACTIONS))}
        phase = minutes = None
        if action in ("vehicle-call", "ped-call"):
            phase = req.get("phase")
            if not isinstance(phase, int) or isinstance(phase, bool) or not 1 <= phase <= 16:
                return 400, {"ok": False, "error": "%s needs a phase 1..16" % action}
        if action == "local-control":
            minutes = req.get("minutes")
            if not isinstance(minutes, (int, float)) or isinstance(minutes, bool) \
                    or not 0 < minutes <= 240:
                return 400, {"ok": False, "error": "local-control needs minutes in 0..240"}
        a = Action(action, phase, minutes)
        try:
            self._actions.put_nowait(a)
        except queue.Full:
            return 503, {"ok": False, "error": "busy: too many actions waiting"}
        answer = a.wait(5.0)
        if answer is None:
            return 504, {"ok": False, "error": "the control loop did not answer"}
        return (200 if answer.get("ok") else 409), answer


class _Handler(BaseHTTPRequestHandler):
    owner = None
    server_version = "edge-agent-panel"

    def log_message(self, fmt, *args):      # the run log, not stderr lines per request
        pass

    def do_GET(self):
        p = self.owner
        if self.path == "/" or self.path.startswith("/?"):
            with open(PAGE, "rb") as f:
                page = f.read().replace(b"{{SITE}}", p.site_name.encode("utf-8"))
            self._send(200, "text/html; charset=utf-8", page)
        elif self.path == "/stream":
            self._stream()
        elif self.path == "/events.csv":
            self._send(200, "text/csv; charset=utf-8", p.events_csv().encode("utf-8"),
                       {"Content-Disposition": "attachment; filename=events.csv"})
        else:
            self._send(404, "text/plain", b"not found\n")

    def do_POST(self):
        if self.path != "/action":
            self._send(404, "text/plain", b"not found\n")
            return
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            self._send(413, "application/json", b'{"ok": false, "error": "body too long"}')
            return
        code, answer = self.owner.submit(self.rfile.read(n))
        self._send(code, "application/json", json.dumps(answer).encode("utf-8"))

    def _send(self, code, ctype, body, headers=None):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _stream(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        seen = -1
        try:
            while not self.owner._closing:
                seen, snap = self.owner.wait_snapshot(seen, 15.0)
                if snap is None:
                    self.wfile.write(b": waiting\n\n")
                else:
                    self.wfile.write(b"data: " + snap.encode("utf-8") + b"\n\n")
                self.wfile.flush()
                time.sleep(0.05)       # at most 20 updates a second per viewer
        except (BrokenPipeError, ConnectionResetError, OSError):
            return
