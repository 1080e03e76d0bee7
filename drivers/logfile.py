"""A size-rotated log file for RunLog: agent.log, agent.log.1 ... agent.log.N.

    log = RunLog(RotatingFile("/var/log/edge-agent/agent.log", max_bytes=5_000_000, backups=5))

Written only by the log thread, so the control loop never waits for the disk.
The file is reopened after rotation; a full or missing disk drops lines
(RunLog counts them) and never raises into the writer.
"""

import os


class RotatingFile:
    """A file-like stream that rotates when it grows past max_bytes."""

    def __init__(self, path, max_bytes=5_000_000, backups=5):
        self.path, self.max_bytes, self.backups = path, max_bytes, backups
        d = os.path.dirname(os.path.abspath(path))
        os.makedirs(d, exist_ok=True)
        self.f = open(path, "a", encoding="utf-8")

    def write(self, text):
        if self.f.tell() + len(text) > self.max_bytes and self.f.tell() > 0:
            self._rotate()
        self.f.write(text)

    def flush(self):
        self.f.flush()

    def _rotate(self):
        self.f.close()
        for i in range(self.backups - 1, 0, -1):
            src = "%s.%d" % (self.path, i)
            if os.path.exists(src):
                os.replace(src, "%s.%d" % (self.path, i + 1))
        if self.backups > 0:
            os.replace(self.path, self.path + ".1")
        else:
            os.remove(self.path)
        self.f = open(self.path, "a", encoding="utf-8")

    def close(self):
        self.f.close()
