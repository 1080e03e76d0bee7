"""The cabinet's hardwired flash-reset input, read as a GPIO value file.

On a Linux controller a digital input appears as a file holding "0" or "1"
(sysfs `/sys/class/gpio/gpioN/value`, or a libgpiod export); the technician's
reset switch closes it. The runtime reads it once per step as a source: a
rising edge (0 -> 1) is one reset request from RESET_HARDWIRED. A file that
cannot be read is counted and logged, never a reset.
"""

from edge_agent.agent import RESET_HARDWIRED


class ResetInput:
    """A runtime source: `read(now, inputs)` sets `inputs.flash_reset` on a rising edge."""

    name = "reset-input"

    def __init__(self, path, active_high=True, log=None):
        self.path = path
        self.active_high = active_high
        self.log = log
        self.level = None            # unknown until first read: no edge at start-up
        self.errors = 0
        self.presses = 0

    def start(self):
        pass

    def stop(self):
        pass

    def read(self, now, inputs):
        try:
            with open(self.path, "rb") as f:
                raw = f.read(8).strip()
        except OSError:
            self.errors += 1
            return
        if raw not in (b"0", b"1"):
            self.errors += 1
            return
        on = (raw == b"1") == self.active_high
        if on and self.level is False:
            self.presses += 1
            inputs.flash_reset = RESET_HARDWIRED
        self.level = on

    def stats(self):
        return {"presses": self.presses, "errors": self.errors}
