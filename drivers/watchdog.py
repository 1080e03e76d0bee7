"""systemd service notification (sd_notify) as a runtime output: ready, alive, stopping.

    wd = Watchdog.from_env()     # None unless systemd gave NOTIFY_SOCKET
    outputs.append(wd)           # write(now, out) after each completed control step

The documented protocol (sd_notify(3)): one datagram of "KEY=VALUE" lines to
the AF_UNIX socket named in $NOTIFY_SOCKET ("@" = abstract namespace). With
`Type=notify` systemd waits for READY=1; with `WatchdogSec=` it expects
WATCHDOG=1 at least every $WATCHDOG_USEC and kills and restarts a unit that
goes silent. The loop notifies after every completed step (at most every
quarter of the watchdog interval), so a loop that hangs — a deadlock, a
stuck driver call — stops the pings and is restarted; the cabinet's own MMU
watchdog has flashed the intersection by then. STATUS= carries the mode and
marks the first green after start-up, so a restart can be timed.
No dependency: a socket and a few bytes.
"""

import os
import socket

from edge_agent.indications import GREEN

MODES = ("startup-flash", "startup-all-red", "run", "flash")


class Notifier:
    """Datagrams to systemd's notification socket."""

    def __init__(self, path):
        self.addr = "\0" + path[1:] if path.startswith("@") else path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.errors = 0

    def notify(self, text):
        try:
            self.sock.sendto(text.encode(), self.addr)
            return True
        except OSError:            # systemd busy or gone: never stop the loop for it
            self.errors += 1
            return False

    def close(self):
        self.sock.close()


class Watchdog:
    """A runtime output: READY=1 after the first step, WATCHDOG=1 while steps complete."""

    name = "systemd"

    def __init__(self, notifier, watchdog_usec=None):
        self.notifier = notifier
        self.interval_ms = (watchdog_usec // 4000) if watchdog_usec else None
        self.last_ping = None
        self.ready = False
        self.mode = None
        self.green_seen = False
        self.pings = 0

    @classmethod
    def from_env(cls, env=None):
        env = os.environ if env is None else env
        path = env.get("NOTIFY_SOCKET")
        if not path:
            return None
        usec = env.get("WATCHDOG_USEC")
        pid = env.get("WATCHDOG_PID")
        if pid and pid != str(os.getpid()):
            usec = None                      # the watchdog is meant for another process
        return cls(Notifier(path), int(usec) if usec and usec.isdigit() else None)

    def start(self):
        pass

    def write(self, now, out):
        lines = []
        if not self.ready:
            self.ready = True
            lines.append("READY=1")
            lines.append("MAINPID=%d" % os.getpid())
        if out.mode != self.mode:
            self.mode = out.mode
            lines.append("STATUS=mode %s" % MODES[out.mode])
        if not self.green_seen and GREEN in out.vehicle:
            self.green_seen = True
            lines.append("STATUS=first green")
        if self.interval_ms is not None and (self.last_ping is None
                                             or now - self.last_ping >= self.interval_ms):
            self.last_ping = now
            self.pings += 1
            lines.append("WATCHDOG=1")
        if lines:
            self.notifier.notify("\n".join(lines))

    def stop(self):
        self.notifier.notify("STOPPING=1")
        self.notifier.close()

    def stats(self):
        return {"pings": self.pings, "errors": self.notifier.errors}
