"""What central sends the unit, taken once per control step.

Heartbeats (fresh ones only: a retained heartbeat says nothing about central
now), signed plans and commands (checked off the control thread by the
intake, their verdicts published per version and per command id), priority
requests, and everything else counted as junk with its reason. A plan that
passed its checks becomes a `CentralPlan` offer for the supervisor; a
command's effect (a plan hold, a resend) is applied here. Nothing here
decides control: the core's supervisor decides what runs.
"""

import time

from drivers.intake import ACCEPTED, CURRENT, PlanResult, REJECTED
from drivers.mqtt_link import CMD, HEARTBEAT, PLAN, PRIORITY
from drivers.topics import parse_heartbeat
from edge_agent.supervisor import CentralPlan

VERDICTS_KEPT = 8                 # retained plan/verdict/<version> topics kept per unit


class CentralInbox:
    """Central's messages into the step's inputs; verdicts and command results back out."""

    def __init__(self, link, topics, intake, priority, publisher, counters, cfg,
                 wall_clock=time.time, log=None):
        self.link, self.topics = link, topics
        self.intake, self.priority, self.publisher = intake, priority, publisher
        self.counters = counters          # shared with the runtime's own error counts
        counters.update({"heartbeats": 0, "heartbeat_bad": 0, "heartbeat_retained": 0,
                         "plan_messages": 0, "plan_cleared": 0, "cmd_messages": 0,
                         "other_messages": 0})
        self.cfg = cfg
        self.wall_clock = wall_clock
        self.log = log
        self.junk = {}                    # (topic kind, reason) -> count
        self.hold_until = None
        self.last_command = None
        self.last_result = None
        self.verdicts = []                # versions with a retained plan/verdict/<version>

    def hold(self, now):
        """The plan hold central asked for (monotonic ms), or None once it ended."""
        if self.hold_until is not None and now >= self.hold_until:
            self.hold_until = None
        return self.hold_until

    def take_link(self, link, inputs):
        for what, detail in link.take_link_events():
            if what == "up":
                self.publisher.new_session()   # new session number: state again
        inputs.heartbeat = self._drain_link(link)

    def take_results(self, now, inputs):
        for r in self.intake.results():
            offer = self._result(r, now)
            if offer is not None:
                inputs.central_plan = offer

    def _drain_link(self, link):
        heartbeat = False
        c = self.counters
        for kind, payload, retain in link.received(self.cfg.messages_per_step):
            if kind == HEARTBEAT:
                if retain:
                    # A retained heartbeat is an old one: it says nothing about central now.
                    c["heartbeat_retained"] += 1
                    self._junk("heartbeat", "retained", payload)
                    continue
                why = parse_heartbeat(payload)
                if why is not None:
                    c["heartbeat_bad"] += 1
                    self._junk("heartbeat", why, payload)
                    continue
                c["heartbeats"] += 1
                heartbeat = True
            elif kind == PLAN:
                c["plan_messages"] += 1
                if not payload:
                    c["plan_cleared"] += 1       # central removed the retained plan: keep ours
                    continue
                self.intake.submit(PLAN, payload)
            elif kind == CMD:
                c["cmd_messages"] += 1
                self.intake.submit(CMD, payload)
            elif kind == PRIORITY:
                self.priority.submit(payload)
            else:
                c["other_messages"] += 1
                self._junk("other", "unexpected_topic", payload)
        return heartbeat

    def _junk(self, topic, reason, payload):
        key = topic + ":" + reason
        self.junk[key] = self.junk.get(key, 0) + 1
        self.log.limited(key, "warning", "bad message ignored", topic=topic, reason=reason,
                         size=len(payload))

    @staticmethod
    def offer(accepted):
        exp = accepted.expires_at
        offer = CentralPlan(accepted.plan, accepted.version,
                            None if exp is None else int(exp * 1000))
        return offer

    def _result(self, r, now):
        """Act on one intake result; returns a CentralPlan to offer the core, or None."""

        if not isinstance(r, PlanResult):
            self._command(r.outcome, now)
            return None
        if r.status == CURRENT:
            return None
        self.last_result = r
        self.publisher.report_changed()
        self._verdict(r)
        if r.status == ACCEPTED:
            a = r.accepted
            self.log("info", "plan accepted", version=a.version, plan_id=a.plan.id, kid=a.kid)
            return self.offer(a)
        self.junk["plan:" + r.reason] = self.junk.get("plan:" + r.reason, 0) + 1
        self.log.limited("plan-rejected", "warning", "plan rejected", reason=r.reason,
                         version=r.version, detail=r.message)
        return None

    def _command(self, res, now):
        self.last_command = {"ok": res.ok, "id": getattr(res, "id", None),
                             "at": round(self.wall_clock(), 3)}
        if self.link is not None:       # central cmd waits for this verdict (QoS 1, by id)
            self.link.publish(self.topics.cmd_result, self._command_result(res), qos=1)
        if not res.ok:
            self.last_command.update(reason=res.reason, message=res.message)
            self.junk["cmd:" + res.reason] = self.junk.get("cmd:" + res.reason, 0) + 1
            self.log.limited("cmd-rejected", "warning", "command rejected", reason=res.reason,
                             detail=res.message)
            return
        self.last_command["command"] = res.name
        self.log("info", "command accepted", command=res.name, id=res.id, args=res.args)
        if res.name == "resend_state":
            self.publisher.resend(now)
        elif res.name == "hold_plan":
            self.hold_until = now + int(res.args["seconds"] * 1000)
        elif res.name == "release_hold":
            self.hold_until = None

    def _verdict(self, r):
        """Each version's verdict, retained on its own topic: plan/reported keeps only the
        latest (rate-limited), so a later plan could hide this one from central."""
        if self.link is None or r.version is None:
            return
        d = {"version": r.version, "result": r.status, "at": round(r.at, 3)}
        if r.status == REJECTED:
            d.update(reason=r.reason, message=r.message)
        t = self.topics
        self.link.publish(t.plan_verdict(r.version), d, qos=1, retain=True)
        if r.version not in self.verdicts:
            self.verdicts.append(r.version)
        for old in self.verdicts[:-VERDICTS_KEPT]:      # the broker keeps a few, not all
            self.link.publish(t.plan_verdict(old), b"", qos=1, retain=True)
        del self.verdicts[:-VERDICTS_KEPT]

    def _command_result(self, res):
        d = {"id": getattr(res, "id", None), "ok": res.ok, "at": round(self.wall_clock(), 3)}
        if res.ok:
            d["command"] = res.name
        else:
            d.update(reason=res.reason, message=res.message)
        return d
