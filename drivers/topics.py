"""MQTT topic names and the small fixed payloads of the link (docs/protocols/mqtt.md).

    t = Topics("springfield", "demo-0001")
    t.state        # tsc/v1/springfield/demo-0001/state
    t.heartbeat    # tsc/v1/springfield/central/heartbeat

The site and intersection ids are whole topic levels: the broker's ACL
patterns put the MQTT user name (= the intersection id) in a level of its own.
"""

import json

PREFIX = "tsc/v1"
CENTRAL = "central"

MAX_HEARTBEAT_BYTES = 512


class TopicError(ValueError):
    """A site or intersection id that cannot be one MQTT topic level."""


def check_level(value, what):
    """value if it can stand as one topic level, else TopicError saying why."""
    if not isinstance(value, str) or not value:
        raise TopicError("%s: must be a non-empty string, got %r" % (what, value))
    bad = [c for c in ("/", "+", "#", "\x00") if c in value]
    if bad:
        raise TopicError("%s %r: %r cannot appear in an MQTT topic level" % (what, value, bad[0]))
    if value == CENTRAL and what == "intersection":
        raise TopicError("intersection id %r is reserved for central's own topics" % value)
    if len(value.encode("utf-8")) > 128:
        raise TopicError("%s %r: longer than 128 bytes" % (what, value))
    return value


class Topics:
    """Every topic one intersection's agent reads or writes."""

    __slots__ = ("site", "intersection", "base", "state", "plan_desired", "plan_reported",
                 "telemetry", "events", "cmd", "heartbeat", "events_ack", "cmd_result",
                 "priority")

    def __init__(self, site, intersection):
        self.site = check_level(site, "site")
        self.intersection = check_level(intersection, "intersection")
        self.base = "%s/%s/%s/" % (PREFIX, site, intersection)
        self.state = self.base + "state"
        self.plan_desired = self.base + "plan/desired"
        self.plan_reported = self.base + "plan/reported"
        self.telemetry = self.base + "telemetry"
        self.events = self.base + "events"
        self.cmd = self.base + "cmd"
        self.events_ack = self.base + "events/ack"       # central: stored event ranges
        self.cmd_result = self.base + "cmd/result"       # agent: each command's verdict
        self.priority = self.base + "priority"      # signed priority requests (preemption)
        self.heartbeat = "%s/%s/%s/heartbeat" % (PREFIX, site, CENTRAL)

    def plan_verdict(self, version):
        """The retained verdict of one plan version (never overwritten by another version)."""
        return "%splan/verdict/%d" % (self.base, version)

    def subscriptions(self, qos=1):
        """(topic, QoS) the agent subscribes to on every connection; `qos` is the
        plan's and the commands' (the link's subscribe_qos)."""
        # events/ack at QoS 0: a lost ack costs a resend (central drops the duplicate),
        # and on NATS each QoS 1 subscription is a JetStream consumer per unit.
        return [(self.plan_desired, qos), (self.cmd, qos), (self.heartbeat, 0),
                (self.events_ack, 0), (self.priority, 0)]


def dumps(obj):
    """Compact JSON bytes, keys sorted (payloads are read by people too)."""
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode("utf-8")


def will_payload(session):
    """The retained last will on `state`: offline, and which session it belongs to."""
    return dumps({"online": False, "session": session})


def heartbeat_payload(ts, seq):
    """What central publishes on its heartbeat topic every second (never retained)."""
    return dumps({"ts": ts, "seq": seq})


def parse_heartbeat(payload):
    """None when the payload is a valid heartbeat, else why not (a short reason code)."""
    if len(payload) > MAX_HEARTBEAT_BYTES:
        return "oversize"
    try:
        d = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return "malformed"
    if not isinstance(d, dict):
        return "wrong_type"
    ts = d.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, (int, float)) or ts != ts or ts < 0:
        return "wrong_type"
    return None
