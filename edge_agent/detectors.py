"""Detector conditioning: raw presence in, calls and extensions per phase out.

Each vehicle detector applies its NTCIP options: delay (a call on a red phase
only once the zone has been occupied for the delay time), extend (carry-over:
the output is held for the extend time after the zone clears while the phase
is green), locking (a call placed on red stays until the phase is served) and
call-at-red-only (ignored while its phase shows yellow).
"""

from edge_agent import events as ev


class _DetState:
    __slots__ = ("det", "bit", "raw", "on_since", "hold_until")


class Detectors:
    """Per-detector state; `update` turns one step of inputs into phase masks."""

    def __init__(self, site):
        self.states = []
        for det in site.detectors:
            s = _DetState()
            s.det = det
            s.bit = 1 << det.phase
            s.raw = False
            s.on_since = 0
            s.hold_until = -1
            self.states.append(s)
        self.ped_map = [(ch, 1 << p) for ch, p in site.ped_detectors]
        self.ped_raw = {}
        # Masks produced by the last update.
        self.locking_calls = 0     # phases that get a latched call
        self.calls = 0             # phases with a non-locking call this step
        self.extend = 0            # green phases extended this step
        self.ped_calls = 0         # phases whose ped button was pressed
        # Fail recall: phases whose detector is in fault are recalled (set by
        # detector diagnostics; min recall places a call, max also extends).
        self.fail_min = 0
        self.fail_max = 0

    def update(self, now, inputs, green, yellow, log):
        """Condition one step of detector inputs against the phase states."""
        locking = calls = extend = 0
        levels = inputs.detectors
        pulses = inputs.pulses
        for s in self.states:
            det = s.det
            ch = det.channel
            raw = levels.get(ch, s.raw) if levels else s.raw
            pulse = pulses.get(ch, 0) if pulses else 0
            if raw != s.raw:
                s.raw = raw
                if raw:
                    s.on_since = now
                    log.append((now, ev.DETECTOR_ON, ch))
                else:
                    log.append((now, ev.DETECTOR_OFF, ch))
            elif pulse:
                # A vehicle crossed between two steps: on and off in one report.
                log.append((now, ev.DETECTOR_ON, ch))
                log.append((now, ev.DETECTOR_OFF, ch))
            bit = s.bit
            if green & bit:
                active = raw or pulse > 0
                if active:
                    s.hold_until = now + det.extend
                elif now < s.hold_until:
                    active = True          # carry-over (extend) after the zone clears
                if active and det.extends_green:
                    extend |= bit
                continue
            s.hold_until = -1
            if yellow & bit and det.call_at_red_only:
                continue
            if pulse > 0 and det.delay == 0:
                active = True
            else:
                active = raw and now - s.on_since >= det.delay
            if active:
                if det.locking:
                    locking |= bit
                else:
                    calls |= bit
        ped = 0
        for ch, bit in self.ped_map:
            pressed = inputs.peds.get(ch, False) if inputs.peds else False
            before = self.ped_raw.get(ch, False)
            if pressed != before:
                self.ped_raw[ch] = pressed
                log.append((now, ev.PED_DETECTOR_ON if pressed else ev.PED_DETECTOR_OFF, ch))
            if pressed:
                ped |= bit
        self.locking_calls, self.calls, self.extend, self.ped_calls = locking, calls, extend, ped
