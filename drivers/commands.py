"""Signed commands on `cmd`: the plan envelope's wire format with a command body.

    {"kid": "...", "body": "<body JSON text>", "mac": "<hex>"}   (or "sig" for Ed25519)

Body: {"intersection": str, "id": int (increasing), "issued_at": unix s,
"expires_at": unix s (optional), "command": str, "args": {...} (optional)}.

The key ids, schemes and the exact-bytes rule are those of plan envelopes
(edge_agent.envelope): the body is authenticated as received, then parsed.
Commands are short-lived: one issued more than `max_age_s` ago (or ahead of
the wall clock by more than the plan policy allows) is refused, and so is one
whose id is not above the last accepted command id (replay). A command can
never clear a latched flash: that stays a local technician action.

Command ids have the plans' jump limit (policy.max_version_jump): an id more
than that above the last accepted one (above 0 before the first) is refused
as "id_jump", so one mistyped or hostile-but-signed id near 2^53 cannot lock
out every later command.
"""

import json

from edge_agent.envelope import HMAC, open_envelope, seal_hmac

RESEND_STATE = "resend_state"
HOLD_PLAN = "hold_plan"
RELEASE_HOLD = "release_hold"
COMMANDS = (RESEND_STATE, HOLD_PLAN, RELEASE_HOLD)
LOCAL_ONLY = ("technician_reset", "reset_flash", "clear_flash", "flash_reset")
MAX_HOLD_S = 3600
MAX_COMMAND_BYTES = 4096

BODY_KEYS = ("intersection", "id", "issued_at", "expires_at", "command", "args")


class Command:
    """An authentic, fresh command."""
    __slots__ = ("id", "name", "args", "kid", "issued_at")
    ok = True

    def __init__(self, cid, name, args, kid, issued_at):
        self.id, self.name, self.args, self.kid, self.issued_at = cid, name, args, kid, issued_at


class Refused:
    """Why a command was refused: reason code and message."""
    __slots__ = ("reason", "message", "id")
    ok = False

    def __init__(self, reason, message, cid=None):
        self.reason, self.message, self.id = reason, message, cid

    def __repr__(self):
        return "Refused(%r, %r)" % (self.reason, self.message)


class CommandVerifier:
    """Checks command envelopes against the controller's keyring."""

    def __init__(self, intersection, keys, ed25519_verify=None, max_age_s=300,
                 max_future_s=300, max_id_jump=1000):
        self.intersection = intersection
        self.max_id_jump = max_id_jump          # None: no bound (as for plans)
        self.keys = keys
        self.ed25519_verify = ed25519_verify
        self.max_age_s, self.max_future_s = max_age_s, max_future_s

    def check(self, data, last_id, wall_s=None):
        """A Command or a Refused; never raises. last_id: highest accepted id or None."""
        opened = open_envelope(data, self.keys, self.ed25519_verify, MAX_COMMAND_BYTES)
        if not isinstance(opened, tuple):
            return Refused(opened.reason, opened.message.replace("envelope", "command", 1))
        kid, body_text, _ = opened
        try:
            d = json.loads(body_text)
        except (ValueError, RecursionError):
            return Refused("malformed", "command body: not valid JSON")
        if not isinstance(d, dict) or set(d) - set(BODY_KEYS):
            return Refused("malformed", "command body: must be an object of %s" % ", ".join(BODY_KEYS))
        cid, issued, name = d.get("id"), d.get("issued_at"), d.get("command")
        if not _int(cid) or cid < 1 or not _num(issued) or not isinstance(name, str):
            return Refused("malformed", "command body: id (integer >= 1), issued_at (unix s) "
                           "and command (string) are required")
        if d.get("intersection") != self.intersection:
            return Refused("wrong_intersection", "command for %r, this is %r"
                           % (d.get("intersection"), self.intersection), cid)
        if last_id is not None and cid <= last_id:
            return Refused("replay", "command id %d is not above %d" % (cid, last_id), cid)
        base = last_id or 0
        if self.max_id_jump is not None and cid - base > self.max_id_jump:
            return Refused("id_jump", "command id %d is %d above the last accepted id %d "
                           "(at most %d allowed)" % (cid, cid - base, base, self.max_id_jump), cid)
        expires = d.get("expires_at")
        if expires is not None and not _num(expires):
            return Refused("malformed", "command body: expires_at must be unix seconds", cid)
        if wall_s is not None:
            if issued - wall_s > self.max_future_s:
                return Refused("future", "issued %.0f s ahead of the wall clock" % (issued - wall_s), cid)
            if wall_s - issued > self.max_age_s:
                return Refused("stale", "issued %.0f s ago (at most %d s)"
                               % (wall_s - issued, self.max_age_s), cid)
            if expires is not None and wall_s >= expires:
                return Refused("expired", "expired at %s" % expires, cid)
        args = d.get("args") or {}
        if not isinstance(args, dict):
            return Refused("malformed", "command body: args must be an object", cid)
        if name in LOCAL_ONLY:
            return Refused("local_only", "%r is a local technician action: a latched flash is "
                           "never cleared remotely" % name, cid)
        if name not in COMMANDS:
            return Refused("unknown_command", "%r is not one of %s" % (name, ", ".join(COMMANDS)), cid)
        if name == HOLD_PLAN:
            s = args.get("seconds")
            if not _num(s) or not 0 < s <= MAX_HOLD_S:
                return Refused("malformed", "hold_plan: args.seconds must be 0..%d" % MAX_HOLD_S, cid)
        return Command(cid, name, args, kid, issued)


def sign_command(body_text, kid, key, scheme=HMAC):
    """The command envelope text (central and tests); Ed25519 signing lives in drivers.keys."""
    if scheme == HMAC:
        return seal_hmac(body_text, kid, key)
    from drivers.keys import sign_ed25519
    return sign_ed25519(body_text, kid, key)


def command_body(intersection, cid, command, issued_at, args=None, expires_at=None):
    """The command body JSON text central signs."""
    d = {"intersection": intersection, "id": cid, "issued_at": issued_at, "command": command}
    if args:
        d["args"] = args
    if expires_at is not None:
        d["expires_at"] = expires_at
    return json.dumps(d, sort_keys=True, separators=(",", ":"))


def _int(v):
    return isinstance(v, int) and not isinstance(v, bool) and v < 2 ** 53


def _num(v):
    return (isinstance(v, (int, float)) and not isinstance(v, bool) and v == v
            and 0 <= v < 1e11)
