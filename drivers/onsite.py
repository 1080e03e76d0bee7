"""The unit's on-site side: what a technician at the cabinet can see and do.

The flash latch on disk (written before the flash reaches the load switches,
cleared only after a technician's reset), the local command socket
(`edge-agent flash reset|status`) and the front panel. The runtime calls
`before_step` to turn queued commands into the step's inputs and
`after_step` to persist the latch and answer each command from the step's
outputs. Nothing here decides control: the core honours or refuses a reset,
and the monitor latches; this only carries requests in and answers out.
"""

import time

from edge_agent.agent import RESET_LOCAL_COMMAND, RESET_PANEL, RESET_SOURCES
from edge_agent.events import (FLASH_RESET, FLASH_RESET_REFUSED, LOCAL_CONTROL_HELD,
                               MANUAL_PED_CALL, MANUAL_VEHICLE_CALL)
from edge_agent.events import name as event_name
from edge_agent.monitor import Fault, FAULT_NAMES


class Pending:
    """The commands taken for one step and what the unit had latched before it."""
    __slots__ = ("requests", "actions", "events", "latched")

    def __init__(self, requests, actions):
        self.requests, self.actions = requests, actions
        self.events = []
        self.latched = None


class OnSite:
    """Latch persistence, the local command socket and the front panel of one unit."""

    def __init__(self, site, store, cfg, log):
        self.site = site
        self.store = store
        self.log = log
        self.latch = store.load_latch()          # a plain dict, or None
        self.latch_saved = self.latch is not None
        self.local_until = None
        self.control = None
        if cfg.control_socket:
            from drivers.local_control import LocalControl
            self.control = LocalControl(cfg.control_socket, log, cfg.allow_trip)
        self.panel = None
        if cfg.panel:
            from drivers.panel import Panel
            host, port = cfg.panel
            self.panel = Panel(host, port, cfg.panel_password_hash, log,
                               "%s %s" % (site.intersection, site.name))

    def boot_fault(self):
        """The fault to boot into (Agent(latched=...)), logged at warning, or None."""
        d = self.latch
        if d is None:
            return None
        self.log("warning", "booting into the latched flash",
                 rule=FAULT_NAMES.get(d["code"], d["code"]), detail=d.get("detail", ""))
        return Fault.from_dict(d)

    def start(self):
        if self.control is not None:
            self.control.start()
        if self.panel is not None:
            self.panel.start()

    def stop(self):
        for part in (self.control, self.panel):
            if part is not None:
                try:
                    part.stop()
                except Exception:       # shutting down: nothing left to tell
                    pass

    # -- the control step ------------------------------------------------------------

    def before_step(self, now, inputs, agent):
        """Queued commands into this step's inputs; returns what after_step answers."""
        pend = Pending(self.control.take() if self.control is not None else (),
                       self.panel.take() if self.panel is not None else ())
        for r in pend.requests:
            if r.cmd == "flash-reset":
                inputs.flash_reset = RESET_LOCAL_COMMAND
            elif r.cmd == "trip":
                inputs.external_fault = "fault injected on the local socket: %s" % r.detail
        for a in pend.actions:
            e = self._panel_action(a, now, inputs)
            if e is not None:
                pend.events.append(e)
        if inputs.flash_reset:
            pend.latched = agent.status(now)["fault"]
        if self.local_until is not None and now >= self.local_until:
            self.local_until = None
        inputs.local_until_ms = self.local_until
        return pend

    def persist(self, out):
        """The latch is on disk before the flash reaches the load switches: a power cut
        a moment later still boots into flash. Cleared once a reset was honoured."""
        if out.fault is not None and not self.latch_saved:
            self.store.save_latch(out.fault.to_dict())
            self.latch_saved = True
            self.log("warning", "flash latched", code=out.fault.code, rule=out.fault.rule,
                     reason=out.fault.detail)
        elif out.fault is None and self.latch_saved:
            self.store.clear_latch()
            self.latch_saved = False
        for ms, code, param in out.events:
            if code == FLASH_RESET:
                self.log("warning", "latched flash reset on site", source=RESET_SOURCES[param])

    def after_step(self, now, out, pend, agent, wall_ms):
        """Answer this step's commands from its outputs; refresh the panel."""
        for r in pend.requests:
            self._answer(r, now, out, pend.latched, agent)
        for a in pend.actions:
            self._answer_action(a, now, out, pend.latched, agent)
        if self.panel is not None:
            when = _local_iso(wall_ms)
            named = [(when, ms, code, param, event_name(code)) for ms, code, param in out.events]
            self.panel.publish(agent.status(now), named)

    # -- answers -----------------------------------------------------------------------

    def _answer(self, r, now, out, latched, agent):
        if r.cmd == "status":
            r.reply({"ok": True, "status": agent.status(now)})
        elif r.cmd == "trip":
            r.reply({"ok": out.fault is not None,
                     "fault": out.fault.to_dict() if out.fault is not None else None})
        elif _logged(out, FLASH_RESET):
            r.reply({"ok": True, "cleared": latched})
        elif _logged(out, FLASH_RESET_REFUSED):
            left = agent.flash_remaining(now)
            r.reply({"ok": False, "remaining_ms": left, "fault": latched,
                     "error": "minimum flash time: %.1f s still to run before a reset"
                     % (left / 1000)})
        else:
            r.reply({"ok": False, "error": "no latched fault: the unit is not in fault flash"})

    def _panel_action(self, a, now, inputs):
        """Feed a technician's action into this step's inputs; returns its event or None."""
        site = self.site
        if a.action == "flash-reset":
            inputs.flash_reset = RESET_PANEL
            return None
        if a.action == "vehicle-call":
            dets = [d for d in site.detectors if d.phase == a.phase]
            if not dets:
                return None
            ch = ([d for d in dets if d.locking] or dets)[0].channel
            inputs.pulses = _merged(inputs.pulses, ch, 1)
            return (now, MANUAL_VEHICLE_CALL, a.phase)
        if a.action == "ped-call":
            dets = [d for d in site.ped_detectors if d.phase == a.phase]
            if not dets:
                return None
            inputs.peds = _merged(inputs.peds, dets[0].channel, True)
            return (now, MANUAL_PED_CALL, a.phase)
        if a.action == "local-control":
            self.local_until = now + int(a.minutes * 60000)
            return (now, LOCAL_CONTROL_HELD, int(round(a.minutes)))
        return None

    def _answer_action(self, a, now, out, latched, agent):
        site = self.site
        if a.action == "flash-reset":
            if _logged(out, FLASH_RESET):
                a.reply({"ok": True, "message": "flash reset; cleared: %s"
                         % (latched or {}).get("detail", "")})
            elif _logged(out, FLASH_RESET_REFUSED):
                a.reply({"ok": False, "error": "minimum flash time: %.1f s still to run"
                         % (agent.flash_remaining(now) / 1000)})
            else:
                a.reply({"ok": False, "error": "no latched fault: the unit is not in fault flash"})
        elif a.action == "vehicle-call":
            ok = any(d.phase == a.phase for d in site.detectors)
            a.reply({"ok": True, "message": "vehicle call on phase %d" % a.phase} if ok else
                    {"ok": False, "error": "phase %d has no vehicle detector" % a.phase})
        elif a.action == "ped-call":
            ok = any(d.phase == a.phase for d in site.ped_detectors)
            a.reply({"ok": True, "message": "pedestrian call on phase %d" % a.phase} if ok else
                    {"ok": False, "error": "phase %d has no push button" % a.phase})
        else:
            a.reply({"ok": True, "message": "local control for %s min" % a.minutes})
        self.log("warning" if a.action == "flash-reset" else "info",
                 "front panel action", action=a.action, phase=a.phase, minutes=a.minutes)


def _logged(out, code):
    return any(c == code for _, c, _ in out.events)


def _merged(d, key, value):
    out = dict(d or {})
    out[key] = value
    return out


def _local_iso(wall_ms):
    """Wall time in the unit's local zone, with its offset, to the millisecond."""
    t = time.localtime(wall_ms / 1000)
    off = t.tm_gmtoff
    return "%s.%03d%s%02d:%02d" % (time.strftime("%Y-%m-%dT%H:%M:%S", t), wall_ms % 1000,
                                   "+" if off >= 0 else "-", abs(off) // 3600, abs(off) % 3600 // 60)
