"""The moving parts of the simulator: vehicles, lanes, movements (plain state, no logic)."""

import math
from collections import deque

# What the signal lets a lane do at an instant.
STOP = 0        # red (or yellow after the entry window): stand at the bar
GO = 1          # green, or yellow within the entry window
FILTER = 2      # permissive left: go through gaps in the opposing flow
STOP_SIGN = 3   # flashing red or dark: stop, then go one at a time

INF = 1 << 62   # "never", in ms


class Vehicle:
    """One vehicle from entry to stop-bar crossing."""

    __slots__ = ("id", "mv", "lane", "seq", "t_entry", "x_entry", "t_ff", "t_at_bar",
                 "stopped", "t_cross", "det_iv")

    def __repr__(self):
        return f"Vehicle({self.id}, {self.mv.spec.id}/{self.lane.index}, entry {self.t_entry})"


class Lane:
    """One lane of a movement: vehicles driving toward the stop bar, the standing queue."""

    __slots__ = ("mv", "index", "moving", "queue", "t_next", "last_entry", "head_since",
                 "seq", "last_departed_seq", "tail_at_green", "state_before",
                 "loops", "recent_iv", "q_at_prev", "q_hist")

    def __init__(self, mv, index):
        self.mv, self.index = mv, index
        self.moving = deque()
        self.queue = deque()
        self.t_next = -INF        # earliest next stop-bar crossing (saturation headway)
        self.last_entry = -INF
        self.head_since = 0
        self.seq = 0
        self.last_departed_seq = 0
        self.tail_at_green = 0    # seq of the last vehicle queued when the green began
        self.state_before = STOP
        self.loops = []           # LoopModel covering this lane
        self.recent_iv = []       # [loop, on, off] of vehicles no longer driving freely
        self.q_at_prev = 0
        self.q_hist = []          # [(t_ms, queue length)] within the current step


class Movement:
    """Run-time state of a movement: its lanes, arrivals and timings in ms."""

    __slots__ = ("spec", "lanes", "arrivals", "next_gen", "scripted", "headway_ms", "free_ms",
                 "speed_mpms", "opposing", "x_entry")

    def next_entry_ms(self):
        """Time of the next vehicle to enter (Poisson or scripted), or None."""
        t = math.ceil(self.next_gen) if self.next_gen is not None else None
        if self.scripted and (t is None or self.scripted[0] < t):
            return self.scripted[0]
        return t
