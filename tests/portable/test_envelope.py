"""Signed plan envelopes: what is accepted, and the exact reason for each refusal.

Portable: runs under CPython (pytest) and MicroPython 1.27 (tests/mpy/runner.mjs).
Plain asserts only. Site: the standard 8-phase intersection "demo-0001";
wall clock 1,800,000,000 s; policy: jump <= 1000, future <= 300 s, age <= 86,400 s.
"""

import json

from edge_agent import envelope as env
from edge_agent.envelope import Verifier, Policy, seal_hmac, equal_ct, parse_keys, parse_policy
from edge_agent.intersection import parse_site
from edge_agent.standard import standard_site, standard_plan
from edge_agent.validate import ConfigError

WALL = 1800000000
SECRET_A = b"controller-0001-shared-secret-32"
SECRET_B = b"rotated-in-secret-for-2027-keys!"
PUBLIC = b"\x11" * 32
KEYS = {"ctl-2026": ("hmac", SECRET_A), "ctl-2027": ("hmac", SECRET_B),
        "central": ("ed25519", PUBLIC)}
SITE = parse_site(standard_site("demo-0001"))


def body(version=5, intersection="demo-0001", issued_at=WALL, plan=None, expires_at=None):
    d = {"intersection": intersection, "version": version, "issued_at": issued_at,
         "plan": plan if plan is not None else standard_plan("am-peak")}
    if expires_at is not None:
        d["expires_at"] = expires_at
    return json.dumps(d)


def verifier(ed25519_verify=None):
    return Verifier(SITE, KEYS, Policy(), ed25519_verify)


def check(envelope, active=4, wall=WALL, ed25519_verify=None):
    return verifier(ed25519_verify).check(envelope, active, wall)


def reason(envelope, active=4, wall=WALL, ed25519_verify=None):
    res = check(envelope, active, wall, ed25519_verify)
    assert not res.ok, "expected a rejection, got %r" % (res,)
    assert res.reason in env.REASONS
    assert res.message
    return res.reason


def sealed(text, kid="ctl-2026", secret=SECRET_A):
    return seal_hmac(text, kid, secret)


def test_hmac_envelope_is_accepted_with_its_exact_version_and_plan():
    res = check(sealed(body(version=5, expires_at=WALL + 3600)))
    assert res.ok
    assert res.version == 5
    assert res.kid == "ctl-2026"
    assert res.intersection == "demo-0001"
    assert res.issued_at == WALL and res.expires_at == WALL + 3600
    assert res.plan.id == "am-peak"
    assert res.plan.min_green[2] == 10000 and res.plan.yellow[1] == 3500
    assert res.body["plan"]["id"] == "am-peak"


def test_bytes_and_text_envelopes_are_the_same_envelope():
    text = sealed(body())
    assert check(text).ok
    res = check(text.encode("utf-8"))
    assert res.ok and res.envelope == text.encode("utf-8")


def test_body_with_keys_in_another_order_verifies_as_sent():
    plan = json.dumps(standard_plan("am-peak"))
    texts = [
        '{"intersection": "demo-0001", "version": 5, "issued_at": %d, "plan": %s}' % (WALL, plan),
        '{"plan": %s, "issued_at": %d, "version": 5, "intersection": "demo-0001"}' % (plan, WALL),
        '{ "version":5,"plan":%s,\n"intersection":"demo-0001","issued_at":%d }' % (plan, WALL),
    ]
    for text in texts:
        res = check(sealed(text))
        assert res.ok, res
        assert res.version == 5 and res.plan.id == "am-peak"
    # The MAC is over the text: a body re-ordered after signing is a different body.
    e = json.loads(sealed(texts[0]))
    e["body"] = texts[1]
    assert reason(json.dumps(e)) == env.BAD_MAC


def test_two_key_ids_active_at_once_for_rotation():
    assert check(sealed(body(version=5), "ctl-2026", SECRET_A)).ok
    assert check(sealed(body(version=5), "ctl-2027", SECRET_B)).ok
    # Each kid checks against its own secret only.
    assert reason(sealed(body(version=5), "ctl-2027", SECRET_A)) == env.BAD_MAC


def test_malformed_envelopes():
    good = json.loads(sealed(body()))
    cases = [
        b"",
        b"not json",
        b"\xff\xfe{}",
        b"[1, 2]",
        b'"just a string"',
        b"{}",
        json.dumps({"body": good["body"], "mac": good["mac"]}),              # no kid
        json.dumps({"kid": 7, "body": good["body"], "mac": good["mac"]}),
        json.dumps({"kid": "", "body": good["body"], "mac": good["mac"]}),
        json.dumps({"kid": "ctl-2026", "mac": good["mac"]}),                 # no body
        json.dumps({"kid": "ctl-2026", "body": {"version": 5}, "mac": good["mac"]}),
        json.dumps({"kid": "ctl-2026", "body": good["body"]}),               # no mac
        json.dumps({"kid": "ctl-2026", "body": good["body"], "mac": good["mac"],
                    "sig": "00" * 64}),
        json.dumps({"kid": "ctl-2026", "body": good["body"], "mac": good["mac"].upper()}),
        json.dumps({"kid": "ctl-2026", "body": good["body"], "mac": good["mac"][:-2]}),
        json.dumps({"kid": "ctl-2026", "body": good["body"], "mac": 12345}),
        json.dumps({"kid": "ctl-2026", "body": good["body"], "mac": good["mac"], "x": 1}),
        b"{" * 5000,
        b"x" * 70000,                                                        # over the size limit
    ]
    for case in cases:
        assert reason(case) == env.MALFORMED, case


def test_authentic_bodies_of_the_wrong_shape_are_malformed():
    p = standard_plan()
    bodies = [
        "not json",
        "[5]",
        json.dumps({"intersection": "demo-0001", "issued_at": WALL, "plan": p}),
        json.dumps({"intersection": "demo-0001", "version": "6", "issued_at": WALL, "plan": p}),
        json.dumps({"intersection": "demo-0001", "version": 6.0, "issued_at": WALL, "plan": p}),
        json.dumps({"intersection": "demo-0001", "version": True, "issued_at": WALL, "plan": p}),
        json.dumps({"intersection": "demo-0001", "version": 0, "issued_at": WALL, "plan": p}),
        json.dumps({"intersection": 1, "version": 6, "issued_at": WALL, "plan": p}),
        json.dumps({"intersection": "demo-0001", "version": 6, "issued_at": "now", "plan": p}),
        json.dumps({"intersection": "demo-0001", "version": 6, "issued_at": WALL, "plan": [p]}),
        json.dumps({"intersection": "demo-0001", "version": 6, "issued_at": WALL}),
        json.dumps({"intersection": "demo-0001", "version": 6, "issued_at": WALL, "plan": p,
                    "expires_at": WALL - 1}),
        json.dumps({"intersection": "demo-0001", "version": 6, "issued_at": WALL, "plan": p,
                    "priority": "high"}),
        # Huge numbers: beyond what every JSON reader keeps exact.
        '{"intersection": "demo-0001", "version": 123456789012345678901234567890, '
        '"issued_at": %d, "plan": {}}' % WALL,
        '{"intersection": "demo-0001", "version": 6, "issued_at": 1e999, "plan": {}}',
        '{"intersection": "demo-0001", "version": 6, "issued_at": %d, "expires_at": '
        '99999999999999999999999, "plan": {}}' % WALL,
    ]
    for text in bodies:
        assert reason(sealed(text)) == env.MALFORMED, text


def test_malformed_message_names_the_field():
    res = check(sealed('{"intersection": "demo-0001", "version": "6", "issued_at": %d, '
                       '"plan": {}}' % WALL))
    assert res.reason == env.MALFORMED
    assert res.message.startswith("body.version: must be an integer"), res.message


def test_unknown_key_id():
    assert reason(sealed(body(), kid="ctl-2025")) == env.UNKNOWN_KID


def test_bad_mac_when_body_or_mac_is_altered():
    e = json.loads(sealed(body(version=5)))
    forged = dict(e)
    forged["body"] = e["body"].replace('"version": 5', '"version": 6')
    assert forged["body"] != e["body"]
    assert reason(json.dumps(forged)) == env.BAD_MAC
    flipped = dict(e)
    last = "0" if e["mac"][-1] != "0" else "1"
    flipped["mac"] = e["mac"][:-1] + last
    assert reason(json.dumps(flipped)) == env.BAD_MAC


def test_hmac_key_used_for_a_signature_or_the_reverse_is_a_scheme_mismatch():
    e = json.loads(sealed(body()))
    as_sig = {"kid": "ctl-2026", "body": e["body"], "sig": e["mac"] * 2}
    assert reason(json.dumps(as_sig)) == env.SCHEME_MISMATCH
    # The public key as an HMAC secret (the old algorithm-confusion forgery).
    confused = sealed(body(), kid="central", secret=PUBLIC)
    assert reason(confused, ed25519_verify=lambda k, s, b: True) == env.SCHEME_MISMATCH


def _signed(text):
    return json.dumps({"kid": "central", "body": text, "sig": "ab" * 64})


def test_ed25519_without_a_verifier_is_unsupported():
    assert reason(_signed(body())) == env.UNSUPPORTED_SCHEME


def test_ed25519_goes_through_the_injected_verifier_with_the_body_bytes():
    seen = []

    def fake(public, sig, data):
        seen.append((public, sig, data))
        return sig == b"\xab" * 64

    text = body()
    assert check(_signed(text), ed25519_verify=fake).ok
    assert seen == [(PUBLIC, b"\xab" * 64, text.encode("utf-8"))]
    assert reason(_signed(text), ed25519_verify=lambda k, s, b: False) == env.BAD_SIG

    def broken(k, s, b):
        raise ValueError("bad point")
    assert reason(_signed(text), ed25519_verify=broken) == env.BAD_SIG
    # Only True accepts: a truthy non-bool is not a verification.
    assert reason(_signed(text), ed25519_verify=lambda k, s, b: 1) == env.BAD_SIG


def test_wrong_intersection():
    assert reason(sealed(body(intersection="demo-0002"))) == env.WRONG_INTERSECTION


def test_replay_of_the_active_or_an_older_version():
    assert reason(sealed(body(version=4)), active=4) == env.REPLAY
    assert reason(sealed(body(version=3)), active=4) == env.REPLAY
    assert check(sealed(body(version=5)), active=4).ok


def test_version_jump_beyond_the_bound():
    assert check(sealed(body(version=1004)), active=4).ok          # exactly +1000
    assert reason(sealed(body(version=1005)), active=4) == env.VERSION_JUMP
    # With nothing accepted yet there is nothing to jump from.
    assert check(sealed(body(version=1005)), active=None).ok


def test_issued_too_far_in_the_future():
    assert check(sealed(body(issued_at=WALL + 300))).ok
    assert reason(sealed(body(issued_at=WALL + 301))) == env.FUTURE


def test_issued_too_long_ago_is_stale():
    assert check(sealed(body(issued_at=WALL - 86400))).ok
    assert reason(sealed(body(issued_at=WALL - 86401))) == env.STALE


def test_expired():
    assert check(sealed(body(expires_at=WALL + 1))).ok
    assert reason(sealed(body(issued_at=WALL - 10, expires_at=WALL))) == env.EXPIRED
    assert reason(sealed(body(issued_at=WALL - 100, expires_at=WALL - 50))) == env.EXPIRED


def test_untrusted_wall_clock_skips_the_time_checks():
    for text in (body(issued_at=WALL + 10000), body(issued_at=WALL - 10 ** 7),
                 body(issued_at=WALL - 100, expires_at=WALL - 50)):
        assert check(sealed(text), wall=None).ok


def test_invalid_plan_carries_the_path_qualified_problems():
    p = standard_plan("short-yellow")
    p["phases"][3]["yellow"] = 2.5
    res = check(sealed(body(plan=p)))
    assert res.reason == env.INVALID_PLAN
    assert res.errors == ["plan.phases[3].yellow: 2.5 s is below the site minimum 3.0 s"], res.errors
    assert res.version == 5


def test_reload_skips_replay_and_freshness_but_not_expiry_or_keys():
    v = verifier()
    old = sealed(body(version=5, issued_at=WALL - 10 ** 6))
    assert v.reload(old, WALL).ok
    assert v.reload(sealed(body(expires_at=WALL - 1, issued_at=WALL - 10))
                    , WALL).reason == env.EXPIRED
    assert v.reload(sealed(body(), "ctl-2025"), WALL).reason == env.UNKNOWN_KID


def test_constant_time_compare():
    assert equal_ct(b"", b"")
    assert equal_ct(b"\x00\x01\xff", b"\x00\x01\xff")
    assert not equal_ct(b"\x01\x01\xff", b"\x00\x01\xff")     # first byte differs
    assert not equal_ct(b"\x00\x01\xfe", b"\x00\x01\xff")     # last byte differs
    assert not equal_ct(b"\x00\x01", b"\x00\x01\xff")         # lengths differ
    a = bytes(range(32))
    for i in range(32):
        for bit in range(8):
            b = bytearray(a)
            b[i] ^= 1 << bit
            assert not equal_ct(a, bytes(b))


def test_mac_matches_rfc_4231_case_2():
    import binascii
    tag = env.mac(b"Jefe", b"what do ya want for nothing?")
    assert binascii.hexlify(tag).decode() == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")


def test_keyring_parsing():
    keys = parse_keys({"keys": [
        {"kid": "ctl-2026", "scheme": "hmac", "secret": "00" * 32},
        {"kid": "central", "scheme": "ed25519", "public": "11" * 32}]})
    assert keys == {"ctl-2026": ("hmac", b"\x00" * 32), "central": ("ed25519", b"\x11" * 32)}
    assert parse_keys({"kid": "k", "scheme": "hmac", "secret": "ab" * 16}) == {
        "k": ("hmac", b"\xab" * 16)}
    bad = {"keys": [
        {"kid": "a", "scheme": "hmac", "secret": "00" * 8},           # too short
        {"kid": "b", "scheme": "ed25519", "public": "AB" * 32},       # upper case
        {"kid": "c", "scheme": "rsa", "public": "00"},
        {"kid": "d", "scheme": "ed25519", "private": "00" * 32, "public": "00" * 32},
        {"kid": "e", "scheme": "hmac", "secret": "00" * 32},
        {"kid": "e", "scheme": "hmac", "secret": "11" * 32}]}
    try:
        parse_keys(bad)
    except ConfigError as e:
        assert len(e.errors) == 5, e.errors
        assert e.errors[0] == "keys[0].secret: is 8 bytes, must be 16..1024"
        assert e.errors[3].startswith("keys[3]: holds a private key")
        assert e.errors[4] == "keys[5].kid: key id 'e' is listed twice"
    else:
        assert False, "a bad keyring must raise ConfigError"


def test_policy_parsing():
    p = parse_policy({"max_version_jump": 10, "max_future_s": 60, "max_age_s": None})
    assert p.max_version_jump == 10 and p.max_future_s == 60 and p.max_age_s is None
    assert p.max_envelope_bytes == 65536
    try:
        parse_policy({"max_version_jump": 0, "max_future_s": -1, "grace": 3})
    except ConfigError as e:
        assert e.errors == ["policy: unknown key 'grace'",
                            "policy.max_version_jump: 0 is outside 1..9007199254740991",
                            "policy.max_future_s: must be a number of seconds "
                            "0..100000000000, got -1"], e.errors
    else:
        assert False, "a bad policy must raise ConfigError"
