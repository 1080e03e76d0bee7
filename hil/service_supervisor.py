"""A stand-in for systemd running deploy/edge-agent.service: notify socket, watchdog, restart.

    sup = ServiceSupervisor(argv, watchdog_s=1.0)
    sup.start()                 # bind the notify socket, spawn the unit
    sup.run_until(lambda: sup.count("first-green") == 2, timeout_s=20)
    sup.stop()
    sup.events                  # [(monotonic s, what, detail)]

What systemd does for `Type=notify`, `WatchdogSec=`, `Restart=always`,
`RestartSec=0`, reduced to what the agent can see: $NOTIFY_SOCKET names an
AF_UNIX datagram socket and $WATCHDOG_USEC the watchdog interval; READY=1
ends start-up; a unit silent for longer than the interval gets SIGABRT
(systemd's WatchdogSignal default), then SIGKILL, and is started again, as is
one that exits. The rig and the tests use it to prove the notify protocol
with a real socket and to time a restart to the first green.
"""

import os
import signal
import socket
import subprocess
import tempfile
import time


class ServiceSupervisor:
    """One unit under a systemd-like watchdog."""

    def __init__(self, argv, watchdog_s=1.0, cwd=None, env=None, kill_grace_s=0.5):
        self.argv = list(argv)
        self.watchdog_s = watchdog_s
        self.cwd = cwd
        self.env = dict(os.environ if env is None else env)
        self.kill_grace_s = kill_grace_s
        self.dir = tempfile.mkdtemp(prefix="edge-agent-notify-")
        self.path = os.path.join(self.dir, "notify")
        self.sock = None
        self.proc = None
        self.started_at = None
        self.last_ping = None
        self.events = []

    def _event(self, what, detail=None):
        self.events.append((time.monotonic(), what, detail))

    def count(self, what):
        return sum(1 for _, w, _ in self.events if w == what)

    def start(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.05)
        self._spawn()
        return self

    def _spawn(self):
        env = dict(self.env, NOTIFY_SOCKET=self.path,
                   WATCHDOG_USEC=str(int(self.watchdog_s * 1_000_000)))
        self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.started_at = self.last_ping = time.monotonic()
        self._event("start", self.proc.pid)

    def poll(self):
        """Take the notifications waiting (up to 50 ms) and enforce the watchdog."""
        try:
            data = self.sock.recv(4096)
        except socket.timeout:
            data = None
        now = time.monotonic()
        if data:
            for line in data.decode("utf-8", "replace").splitlines():
                if line == "READY=1":
                    self._event("ready")
                elif line == "WATCHDOG=1":
                    self.last_ping = now
                    self._event("ping")
                elif line == "STATUS=first green":
                    self._event("first-green")
                elif line == "STOPPING=1":
                    self._event("stopping")
                elif line.startswith("STATUS="):
                    self._event("status", line[7:])
        if self.proc.poll() is not None:
            self._event("exit", self.proc.returncode)
            self._spawn()
        elif now - self.last_ping > self.watchdog_s:
            self._event("watchdog-timeout", self.proc.pid)
            self._kill()
            self._spawn()

    def _kill(self):
        p = self.proc
        try:
            os.kill(p.pid, signal.SIGABRT)
            p.wait(self.kill_grace_s)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(5)
        except ProcessLookupError:
            pass
        # A stopped (SIGSTOP) process cannot act on SIGABRT until continued.
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(5)
        self._event("killed", p.returncode)

    def run_until(self, cond, timeout_s):
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            self.poll()
            if cond():
                return True
        return False

    def stop(self):
        p = self.proc
        if p is not None and p.poll() is None:
            os.kill(p.pid, signal.SIGCONT)
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        if self.sock is not None:
            self.sock.close()
            os.unlink(self.path)
            os.rmdir(self.dir)
            self.sock = None

    def first(self, what, after=0.0):
        """Monotonic time of the first `what` event after `after`, or None."""
        for t, w, _ in self.events:
            if w == what and t > after:
                return t
        return None
