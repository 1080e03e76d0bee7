"""Signed plan envelopes: authenticate the exact bytes, then check freshness and the plan.

Wire format (docs/protocols/plan-envelope.md has the whole story):

    {"kid": "<key id>", "body": "<plan body as JSON text>", "mac": "<hex HMAC-SHA256>"}

or "sig" (hex Ed25519 signature) in place of "mac". The body text is what was
signed: it is authenticated as received, never re-serialised (MicroPython dicts
are unordered), and it is only parsed once it is known to be authentic.

`Verifier.check` returns an `Accepted` or a `Rejected`, never raises: a
rejected envelope changes nothing, and its reason code and message are what the
caller logs and reports. The verifier holds no state; the caller owns the
active version (the replay high-water mark) and the wall clock.
"""

import binascii
import hashlib
import hmac
import json

from edge_agent.plan import parse_plan
from edge_agent.validate import Checker, ConfigError, is_int, is_number, kind

# Reason codes, one per way an envelope can fail (docs/protocols/plan-envelope.md).
MALFORMED = "malformed"
UNKNOWN_KID = "unknown_kid"
UNSUPPORTED_SCHEME = "unsupported_scheme"
SCHEME_MISMATCH = "scheme_mismatch"
BAD_MAC = "bad_mac"
BAD_SIG = "bad_sig"
WRONG_INTERSECTION = "wrong_intersection"
REPLAY = "replay"
VERSION_JUMP = "version_jump"
FUTURE = "future"
STALE = "stale"
EXPIRED = "expired"
INVALID_PLAN = "invalid_plan"
REASONS = (MALFORMED, UNKNOWN_KID, UNSUPPORTED_SCHEME, SCHEME_MISMATCH, BAD_MAC,
           BAD_SIG, WRONG_INTERSECTION, REPLAY, VERSION_JUMP, FUTURE, STALE,
           EXPIRED, INVALID_PLAN)

HMAC = "hmac"
ED25519 = "ed25519"
SCHEMES = (HMAC, ED25519)

ENVELOPE_KEYS = ("kid", "body", "mac", "sig")
BODY_KEYS = ("intersection", "version", "issued_at", "expires_at", "plan")
MAX_KID = 64
MAX_VERSION = 9007199254740991      # 2**53 - 1: the largest integer every JSON reader keeps exact
MAX_TIME_S = 100000000000           # unix seconds; anything later is a broken clock or an attack
MAC_HEX = 64                        # HMAC-SHA256: 32 bytes
SIG_HEX = 128                       # Ed25519: 64 bytes
MIN_SECRET = 16                     # bytes; 32 recommended


class Policy:
    """Acceptance bounds from the provisioning file (docs/provisioning.md)."""
    __slots__ = ("max_version_jump", "max_future_s", "max_age_s", "max_envelope_bytes")

    def __init__(self, max_version_jump=1000, max_future_s=300, max_age_s=86400,
                 max_envelope_bytes=65536):
        self.max_version_jump = max_version_jump     # None: no bound
        self.max_future_s = max_future_s             # issued_at may lead the wall clock by this
        self.max_age_s = max_age_s                   # None: any age is acceptable
        self.max_envelope_bytes = max_envelope_bytes


class Accepted:
    """An authentic, fresh envelope carrying a plan valid for this site."""
    __slots__ = ("version", "plan", "body", "kid", "intersection", "issued_at",
                 "expires_at", "envelope")
    ok = True

    def __init__(self, version, plan, body, kid, intersection, issued_at, expires_at, envelope):
        self.version = version          # int, the new replay high-water mark
        self.plan = plan                # a validated edge_agent.plan.Plan
        self.body = body                # the parsed body dict
        self.kid = kid
        self.intersection = intersection
        self.issued_at = issued_at      # unix seconds
        self.expires_at = expires_at    # unix seconds or None
        self.envelope = envelope        # the exact bytes received, for the store

    def __repr__(self):
        return "Accepted(version=%d, kid=%r, plan=%r)" % (self.version, self.kid, self.plan.id)


class Rejected:
    """Why an envelope was refused: a reason code from REASONS and a message."""
    __slots__ = ("reason", "message", "errors", "version")
    ok = False

    def __init__(self, reason, message, errors=None, version=None):
        self.reason = reason
        self.message = message
        self.errors = errors or [message]   # the plan's path-qualified problems for invalid_plan
        self.version = version              # the version, once authentic and for this intersection

    def __repr__(self):
        return "Rejected(%r, %r)" % (self.reason, self.message)


class Verifier:
    """Checks envelopes for one site against a keyring and a policy.

    keys: {kid: (scheme, key bytes)} from parse_keys; an HMAC entry holds the
    shared secret, an Ed25519 entry the signer's 32-byte public key.
    ed25519_verify: optional fn(public_key, sig, body) -> bool (the core holds
    no public-key code; drivers/keys.py provides one for CPython). Without it,
    Ed25519 key ids are refused as unsupported_scheme.
    """

    def __init__(self, site, keys, policy=None, ed25519_verify=None):
        self.site = site
        self.keys = keys
        self.policy = policy or Policy()
        self.ed25519_verify = ed25519_verify

    def check(self, envelope, active_version, wall_s=None):
        """Accept a newly received envelope or say why not.

        envelope: bytes or str as received. active_version: the highest version
        accepted so far for this intersection, None when none ever was (no
        jump bound then). wall_s: unix seconds when the wall clock is trusted,
        None when it is not (issue-time and expiry checks are skipped).
        """
        return self._verify(envelope, active_version, wall_s, True)

    def reload(self, envelope, wall_s=None):
        """Re-check a stored envelope at start-up: keys, site, plan and expiry.

        No replay, version-jump, future or age checks: the envelope was
        accepted before and its version is already the high-water mark.
        """
        return self._verify(envelope, None, wall_s, False)

    def _verify(self, data, active, wall_s, fresh):
        opened = open_envelope(data, self.keys, self.ed25519_verify,
                               self.policy.max_envelope_bytes)
        if isinstance(opened, Rejected):
            return opened
        kid, body_text, text = opened
        try:
            body = json.loads(body_text)
        except Exception:
            return Rejected(MALFORMED, "body: not valid JSON")
        why = _body_errors(body)
        if why:
            return Rejected(MALFORMED, why)
        version = body["version"]
        issued = body["issued_at"]
        expires = body.get("expires_at")
        if body["intersection"] != self.site.intersection:
            return Rejected(WRONG_INTERSECTION, "body.intersection %r is not this controller's "
                            "intersection %r" % (body["intersection"], self.site.intersection))
        pol = self.policy
        if fresh and active is not None:
            if version <= active:
                return Rejected(REPLAY, "version %d is not above the active version %d"
                                % (version, active), version=version)
            if pol.max_version_jump is not None and version - active > pol.max_version_jump:
                return Rejected(VERSION_JUMP, "version %d is %d ahead of the active version %d "
                                "(at most %d allowed)" % (version, version - active, active,
                                                          pol.max_version_jump), version=version)
        if wall_s is not None:
            if fresh and issued - wall_s > pol.max_future_s:
                return Rejected(FUTURE, "issued_at %s is %s s ahead of the wall clock %s "
                                "(at most %s s allowed)" % (_t(issued), _t(issued - wall_s),
                                                            _t(wall_s), _t(pol.max_future_s)),
                                version=version)
            if fresh and pol.max_age_s is not None and wall_s - issued > pol.max_age_s:
                return Rejected(STALE, "issued_at %s is %s s old (at most %s s allowed)"
                                % (_t(issued), _t(wall_s - issued), _t(pol.max_age_s)),
                                version=version)
            if expires is not None and wall_s >= expires:
                return Rejected(EXPIRED, "expired at %s, the wall clock reads %s"
                                % (_t(expires), _t(wall_s)), version=version)
        try:
            plan = parse_plan(body["plan"], self.site, "plan")
        except ConfigError as e:
            return Rejected(INVALID_PLAN, "; ".join(e.errors), e.errors, version)
        return Accepted(version, plan, body, kid, body["intersection"], issued, expires,
                        data if isinstance(data, bytes) else text.encode("utf-8"))

def open_envelope(data, keys, ed25519_verify=None, limit=65536):
    """Authenticate an envelope as received: (kid, body text, envelope text) or a Rejected.

    The wire format, key lookup and MAC / signature check shared by plans and
    commands; what the body means is the caller's to check.
    """
    text, why = _decode(data, limit)
    if why:
        return Rejected(MALFORMED, why)
    try:
        env = json.loads(text)
    except Exception:       # ValueError, and RecursionError on deep nesting
        return Rejected(MALFORMED, "envelope: not valid JSON")
    kid, body_text, field, tag, why = _fields(env)
    if why:
        return Rejected(MALFORMED, why)
    entry = keys.get(kid)
    if entry is None:
        return Rejected(UNKNOWN_KID, "key id %r is not in this controller's keyring" % (kid,))
    why = _authenticate(kid, entry, field, tag, body_text, ed25519_verify)
    if why is not None:
        return why
    return kid, body_text, text


def _authenticate(kid, entry, field, tag, body_text, ed25519_verify):
    """None when the tag is authentic for the body, else a Rejected."""
    scheme, key = entry
    if (scheme == HMAC) != (field == "mac"):
        return Rejected(SCHEME_MISMATCH, "key %r is an %s key: the envelope must carry %r, "
                        "not %r" % (kid, scheme, "mac" if scheme == HMAC else "sig", field))
    try:
        body = body_text.encode("utf-8")
    except Exception:       # a lone surrogate cannot have been signed
        return Rejected(MALFORMED, "envelope.body: not encodable as UTF-8")
    if scheme == HMAC:
        if not equal_ct(mac(key, body), tag):
            return Rejected(BAD_MAC, "HMAC-SHA256 of the body does not match key %r" % (kid,))
        return None
    if ed25519_verify is None:
        return Rejected(UNSUPPORTED_SCHEME, "key %r is an Ed25519 key and this controller "
                        "has no Ed25519 verifier" % (kid,))
    try:
        good = ed25519_verify(key, tag, body) is True
    except Exception:
        good = False
    if not good:
        return Rejected(BAD_SIG, "Ed25519 signature of the body does not verify with key %r"
                        % (kid,))
    return None


def mac(secret, body):
    """HMAC-SHA256 of the body bytes (32 bytes)."""
    # MicroPython's hmac needs the digest given explicitly; its default differs.
    return hmac.new(secret, body, hashlib.sha256).digest()


def equal_ct(a, b):
    """Compare two byte strings in time independent of where they differ."""
    if len(a) != len(b):
        return False
    diff = 0
    for i in range(len(a)):
        diff |= a[i] ^ b[i]
    return diff == 0


def seal_hmac(body_text, kid, secret):
    """The envelope text for a body signed with an HMAC key (central and tests)."""
    tag = mac(secret, body_text.encode("utf-8"))
    return json.dumps({"kid": kid, "body": body_text, "mac": binascii.hexlify(tag).decode()})


def parse_keys(obj):
    """{kid: (scheme, key bytes)} from a keyring: {"keys": [...]}, a list, or one key.

    Each key: {"kid", "scheme": "hmac", "secret": hex} or
    {"kid", "scheme": "ed25519", "public": hex}. Raises ConfigError.
    """
    c = Checker()
    if isinstance(obj, dict) and "keys" in obj:
        entries, where = c.array(obj["keys"], "keys"), "keys"
    elif isinstance(obj, dict):
        entries, where = [obj], "key"
    else:
        entries, where = c.array(obj, "keys"), "keys"
    keys = {}
    for i, e in enumerate(entries or ()):
        path = "%s[%d]" % (where, i) if where == "keys" else "key"
        e = c.obj(e, path)
        if e is None:
            continue
        if "private" in e:
            c.error(path, "holds a private key: a controller keyring takes only the "
                    "\"public\" half (the .pub.json file)")
            continue
        c.unknown_keys(e, ("kid", "scheme", "secret", "public", "note"), path)
        kid = c.text(e, "kid", path)
        scheme = c.text(e, "scheme", path, choices=SCHEMES)
        if kid is not None and not 0 < len(kid) <= MAX_KID:
            c.error(path + ".kid", "must be 1..%d characters" % MAX_KID)
        if kid in keys:
            c.error(path + ".kid", "key id %r is listed twice" % (kid,))
        if scheme == HMAC:
            key = _hex_key(c, e, "secret", path, MIN_SECRET, 1024)
        elif scheme == ED25519:
            key = _hex_key(c, e, "public", path, 32, 32)
        else:
            continue
        if kid is not None and key is not None:
            keys[kid] = (scheme, key)
    if entries is not None and not entries:
        c.error(where, "must hold at least one key")
    c.raise_if_any()
    return keys


def parse_policy(obj):
    """A Policy from the provisioning file's "policy" object; raises ConfigError."""
    c = Checker()
    d = c.obj(obj, "policy")
    if d is None:
        c.raise_if_any()
    c.unknown_keys(d, ("max_version_jump", "max_future_s", "max_age_s",
                       "max_envelope_bytes"), "policy")
    p = Policy()
    if d.get("max_version_jump") is not None:
        p.max_version_jump = c.integer(d["max_version_jump"], "policy.max_version_jump",
                                       1, MAX_VERSION)
    if "max_future_s" in d:
        p.max_future_s = _seconds(c, d["max_future_s"], "policy.max_future_s")
    if d.get("max_age_s") is not None:
        p.max_age_s = _seconds(c, d["max_age_s"], "policy.max_age_s")
    elif "max_age_s" in d:
        p.max_age_s = None
    if "max_envelope_bytes" in d:
        p.max_envelope_bytes = c.integer(d["max_envelope_bytes"], "policy.max_envelope_bytes",
                                         1024, 1048576)
    c.raise_if_any()
    return p


def _seconds(c, v, path):
    if not is_number(v) or v < 0 or v > MAX_TIME_S:
        c.error(path, "must be a number of seconds 0..%d, got %s" % (MAX_TIME_S, _show(v)))
        return None
    return v


def _hex_key(c, e, field, path, lo, hi):
    v = e.get(field)
    if v is None:
        c.error(path + "." + field, "is required for this scheme")
        return None
    b = _unhex(v)
    if b is None:
        c.error(path + "." + field, "must be lowercase hex, got %s" % kind(v))
        return None
    if not lo <= len(b) <= hi:
        c.error(path + "." + field, "is %d bytes, must be %s" % (
            len(b), lo if lo == hi else "%d..%d" % (lo, hi)))
        return None
    return b


def _unhex(v):
    """Bytes of a lowercase hex string, or None."""
    if not isinstance(v, str) or len(v) % 2:
        return None
    try:
        b = binascii.unhexlify(v)
    except Exception:
        return None
    # Round-trip so upper case and anything unhexlify tolerates are refused.
    return b if binascii.hexlify(b).decode() == v else None


def _decode(data, limit):
    """(text, None) or (None, why) for an envelope as received."""
    if isinstance(data, str):
        if len(data) > limit:
            return None, "envelope: %d characters exceed the %d-byte limit" % (len(data), limit)
        return data, None
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    if not isinstance(data, bytes):
        return None, "envelope: must be bytes or text, got %s" % kind(data)
    if len(data) > limit:
        return None, "envelope: %d bytes exceed the %d-byte limit" % (len(data), limit)
    try:
        return data.decode("utf-8"), None
    except Exception:
        return None, "envelope: not UTF-8"


def _fields(env):
    """(kid, body text, "mac" or "sig", tag bytes, None) or (.., why)."""
    bad = None, None, None, None
    if not isinstance(env, dict):
        return bad + ("envelope: must be a JSON object, got %s" % kind(env),)
    unknown = sorted(k for k in env if k not in ENVELOPE_KEYS)
    if unknown:
        return bad + ("envelope: unknown key %r" % (unknown[0],),)
    kid = env.get("kid")
    if not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID:
        return bad + ("envelope.kid: must be a string of 1..%d characters, got %s"
                      % (MAX_KID, _show(kid)),)
    body = env.get("body")
    if not isinstance(body, str):
        return bad + ("envelope.body: must be a string (the body's JSON text), got %s"
                      % _show(body),)
    if ("mac" in env) == ("sig" in env):
        return bad + ("envelope: must carry exactly one of \"mac\" (HMAC-SHA256) or "
                      "\"sig\" (Ed25519)",)
    field = "mac" if "mac" in env else "sig"
    want = MAC_HEX if field == "mac" else SIG_HEX
    v = env[field]
    tag = _unhex(v) if isinstance(v, str) and len(v) == want else None
    if tag is None:
        return bad + ("envelope.%s: must be %d lowercase hex digits, got %s"
                      % (field, want, _show(v)),)
    return kid, body, field, tag, None


def _body_errors(body):
    """A message listing every problem of an authentic body's shape, or None."""
    c = Checker()
    d = c.obj(body, "body")
    if d is None:
        return c.errors[0]
    c.unknown_keys(d, BODY_KEYS, "body")
    c.text(d, "intersection", "body")
    if "version" not in d:
        c.error("body.version", "is required")
    elif not is_int(d["version"]) or not 1 <= d["version"] <= MAX_VERSION:
        c.error("body.version", "must be an integer 1..%d, got %s" % (MAX_VERSION,
                                                                      _show(d["version"])))
    for key in ("issued_at", "expires_at"):
        if key not in d:
            if key == "issued_at":
                c.error("body.issued_at", "is required")
            continue
        v = d[key]
        if not is_number(v) or not 0 <= v <= MAX_TIME_S:
            c.error("body." + key, "must be unix seconds 0..%d, got %s" % (MAX_TIME_S, _show(v)))
    if not c.errors and "expires_at" in d and d["expires_at"] <= d["issued_at"]:
        c.error("body.expires_at", "%s is not after issued_at %s"
                % (_t(d["expires_at"]), _t(d["issued_at"])))
    if "plan" not in d:
        c.error("body.plan", "is required")
    elif not isinstance(d["plan"], dict):
        c.error("body.plan", "must be an object, got %s" % kind(d["plan"]))
    return "; ".join(c.errors) if c.errors else None


def _show(v):
    """A value for a message: short, and never a 10,000-digit number."""
    if isinstance(v, str):
        return "%r" % (v[:40] + "..." if len(v) > 40 else v,)
    if is_int(v) and not -10 ** 15 < v < 10 ** 15:
        return "an out-of-range integer"
    if isinstance(v, (int, float)) and v is not True and v is not False:
        return repr(v)
    return kind(v)


def _t(s):
    """Seconds for a message: integers as they are, others to 0.1 s."""
    if is_int(s):
        return "%d" % s
    return "%.1f" % s
