"""A real Mosquitto broker for tests and benches: loopback only, a free port, its own config.

    with Broker(tmp_path) as b:              # starts mosquitto on 127.0.0.1:<free port>
        b.port, b.host
        b.kill()                             # SIGKILL, as a crash or power cut
        b.start()                            # same port, same config, same persistence

Each broker gets a directory of its own (config, persistence, log) and is
started and stopped by pid, never by name. `extra` lines are appended to the
listener's config (ACL, passwords, TLS); `persistence=True` keeps retained
messages and durable sessions across a kill (saved every second).
"""

import os
import random
import shutil
import signal
import socket
import subprocess
import time


def mosquitto_binary():
    """The mosquitto executable, or None when it is not installed."""
    for cand in (shutil.which("mosquitto"), "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if cand and os.path.exists(cand):
            return cand
    return None


_GIVEN = set()                   # ports handed out by this process: never twice
_RNG = random.Random()


def _ephemeral_low():
    """The first port of the kernel's ephemeral range (outgoing connections' ports)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port():
    """A TCP port free on 127.0.0.1 right now, for a server started at run time.

    Chosen below the kernel's ephemeral range, and never twice by this process. The
    kernel's own choice (bind to port 0) comes from that range, so it can repeat
    between two calls (a cluster takes 12 ports), and a broker restarted on its port
    after a kill can find it taken by one of the test's outgoing connections. Both made
    a server exit with "address already in use", at random."""
    low = _ephemeral_low()
    if low > 2048:
        for _ in range(500):
            port = _RNG.randrange(max(1024, low - 20000), low)
            if port not in _GIVEN and _bindable(port):
                _GIVEN.add(port)
                return port
    while True:                  # no room below the range: the kernel's choice
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


class Broker:
    """One mosquitto process bound to 127.0.0.1 on a port chosen at run time."""

    def __init__(self, directory, extra=(), persistence=True, port=None, anonymous=True):
        self.dir = str(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.proc = None
        self.binary = mosquitto_binary()
        if self.binary is None:
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        self.conf = os.path.join(self.dir, "mosquitto.conf")
        self.log = os.path.join(self.dir, "mosquitto.log")
        lines = ["listener %d 127.0.0.1" % self.port,
                 "allow_anonymous %s" % ("true" if anonymous else "false"),
                 "max_queued_messages 100000",
                 "max_inflight_messages 100",
                 "log_dest file %s" % self.log,
                 "log_type error", "log_type warning", "log_type notice"]
        if os.geteuid() == 0:
            # Run as root, Mosquitto would switch to its own user, which cannot
            # read a test's private directory: stay the user that started it.
            lines.append("user root")
        if persistence:
            lines += ["persistence true",
                      "persistence_location %s/" % self.dir,
                      "autosave_interval 1"]
        lines += list(extra)
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def start(self, timeout_s=5.0):
        """Start (or restart) the broker and wait until it accepts connections."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        self.proc = subprocess.Popen([self.binary, "-c", self.conf],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     cwd=self.dir)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("mosquitto exited with %s; log:\n%s"
                                   % (self.proc.returncode, self.read_log()))
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        self.kill()
        raise RuntimeError("mosquitto did not listen on %s:%d within %.1f s"
                           % (self.host, self.port, timeout_s))

    def kill(self):
        """SIGKILL the broker by pid and reap it: a crash, nothing saved on the way out."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def stop(self):
        """SIGTERM the broker by pid (a clean shutdown) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()

    def read_log(self):
        try:
            with open(self.log) as f:
                return f.read()
        except OSError:
            return ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
