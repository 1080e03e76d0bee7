"""The request seam: the one way coordination, preemption and outside inputs
ask the controller for anything.

    req = Requests()
    req.force_off |= 1 << 4        # end phase 4's green at its next legal point
    req.target = (1 << 2) | (1 << 6)   # bring 2+6 to green and hold them there
    controller.step(now, detectors, req, log, wall_ms)

Masks are phase bitmasks (bit p = phase p). Times are ms; -1 means "no
request". A truncation asks the controller to end a running interval at the
lesser of its own value and the request's, and the controller never goes
below the site floor; a clearance override only ever lengthens a clearance.
"""


class Requests:
    """One step's requests to the controller."""
    __slots__ = ("force_off", "hold", "omit", "window_omit", "no_walk", "free_max", "ped_omit", "calls", "target",
                 "min_green", "walk", "ped_clear", "yellow", "red_clear",
                 "force_code", "preempting")

    def __init__(self, force_off=0, hold=0, omit=0):
        self.force_off = force_off   # end these greens (force-off) when they may end
        self.hold = hold             # keep these greens (no termination)
        self.omit = omit             # do not start these phases (logged: omit on/off)
        self.window_omit = 0         # coordination: outside their permissive windows now
        self.no_walk = 0             # coordination: no walk recycle on these greens
        self.free_max = False        # coordination's timer is not running: time max 1
        self.ped_omit = 0            # do not start a walk on these phases
        self.calls = 0               # place a vehicle call on these phases
        self.target = 0              # serve these phases now and hold them (preempt)
        self.min_green = -1          # truncate running min greens (ms, site floor kept)
        self.walk = -1               # truncate running walks (ms, site floor kept)
        self.ped_clear = -1          # truncate pedestrian clearances (ms, site floor kept)
        self.yellow = -1             # yellow for greens ended now (ms, never shorter)
        self.red_clear = -1          # red clearance for greens ended now (ms, never shorter)
        self.force_code = 0          # event logged for a force-off (0: 6 force-off)
        self.preempting = False      # preemption active: coordination and plan changes wait

    def clear(self, force_off=0, hold=0, omit=0):
        """Reset to "no request" (reused each step: no allocation in the loop)."""
        self.__init__(force_off, hold, omit)
