"""A console output for `edge-agent run --console`: the signal heads as one line, once a second.

An output like the load-switch bank: `write(now_ms, out)` each step. The
line is written by its own thread so a slow terminal never holds the loop.
"""

import sys
import threading

from drivers.runtime import mode_name
from edge_agent.indications import PED_LETTERS, VEHICLE_LETTERS


class ConsoleView:
    """Mode and per-phase indication letters (G Y R, r/Y flashing; W F D walk)."""

    name = "console"

    def __init__(self, site, stream=None, every_ms=1000):
        self.site = site
        self.stream = stream or sys.stdout
        self.every_ms = every_ms
        self.next_ms = None
        self.line = None
        self.wake = threading.Event()
        self.stopping = False
        self.thread = None

    def start(self):
        self.thread = threading.Thread(target=self._run, name="console", daemon=True)
        self.thread.start()

    def stop(self):
        self.stopping = True
        self.wake.set()
        if self.thread is not None:
            self.thread.join(2)

    def write(self, now, out):
        if self.next_ms is not None and now < self.next_ms:
            return
        self.next_ms = now + self.every_ms
        heads = " ".join("%d:%s%s" % (p, VEHICLE_LETTERS[out.vehicle[p]],
                                      PED_LETTERS[out.ped[p]] if self.site.has_ped[p] else "")
                         for p in self.site.phases)
        mode = mode_name(out.mode, out.source)
        self.line = "%-12s %-8s plan %-10s %s" % (self.site.intersection[:12], mode, out.plan_id,
                                                  heads)
        self.wake.set()

    def _run(self):
        while not self.stopping:
            self.wake.wait(1.0)
            self.wake.clear()
            line, self.line = self.line, None
            if line:
                try:
                    self.stream.write(line + "\n")
                    self.stream.flush()
                except (OSError, ValueError):
                    pass
