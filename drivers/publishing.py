"""What the unit tells central, and when: the publishing schedule.

Policy only. The runtime builds each payload (state, plan/reported,
telemetry) on demand; this class decides when each goes out over the link:

- `state` (retained) whenever the mode or the plan in effect changes, and
  again after every new broker session (a new session number);
- `plan/reported` (retained) whenever anything it reports changed, at most
  once per `reported_min_s` (a burst of plan traffic is coalesced; each
  version's own verdict has its own retained topic and is never coalesced);
- `telemetry` every `telemetry_s`, carrying the length of the interval it
  covers.
"""

import time


class Publisher:
    """The schedule of the unit's retained state, plan report and telemetry."""

    def __init__(self, link, topics, telemetry_s, reported_min_s, wall_clock, log):
        self.link, self.topics = link, topics
        self.telemetry_ms = int(telemetry_s * 1000)
        self.telemetry_s = telemetry_s
        self.reported_min_s = reported_min_s
        self.wall_clock = wall_clock
        self.log = log
        self.state_key = None
        self.reported_due = True
        self.reported_at = 0.0
        self.next_telemetry = 0         # monotonic ms of the next telemetry message
        self.last_telemetry = None      # monotonic ms of the last one (its interval's start)
        self.mode_since = None          # wall s of the last mode change (in state)
        self.mode_prev = None

    def new_session(self):
        """A new broker session: state and the plan report again."""
        self.state_key = None
        self.reported_due = True

    def report_changed(self):
        """Something plan/reported carries changed (a verdict, a boot problem)."""
        self.reported_due = True

    def resend(self, now):
        """Central asked for everything again (the resend_state command)."""
        self.new_session()
        self.next_telemetry = now

    def interval_s(self, now):
        """Seconds the counts and greens of this telemetry message cover."""
        last, self.last_telemetry = self.last_telemetry, now
        return round((now - last) / 1000.0, 3) if last is not None else self.telemetry_s

    def step(self, now, mode, plan_key, state, reported, telemetry):
        """Publish what is due. `state`, `reported`, `telemetry` build their payloads."""
        link, t = self.link, self.topics
        if mode != self.mode_prev:
            self.mode_since = round(self.wall_clock(), 3)
            self.log("info", "mode changed", new_mode=mode, previous=self.mode_prev)
            self.mode_prev = mode
        key = (mode,) + tuple(plan_key)
        if key != self.state_key:
            self.state_key = key
            self.reported_due = True
            link.retain(t.state, state())
        wall = time.monotonic()
        if self.reported_due and wall - self.reported_at >= self.reported_min_s:
            self.reported_due = False
            self.reported_at = wall
            link.retain(t.plan_reported, reported())
        if now >= self.next_telemetry:
            self.next_telemetry = now + self.telemetry_ms
            link.publish(t.telemetry, telemetry(), qos=0)
