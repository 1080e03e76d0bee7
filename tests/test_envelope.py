"""Envelopes on CPython: hypothesis-made bad envelopes, Ed25519, stolen secrets, rotation, CLI.

Every bad envelope is offered the way the runtime offers one (check, and
store.accept only when accepted) to a store holding version 10: each must be
refused with the expected reason, and the store's files and high-water mark
must be byte-for-byte what they were.
"""

import binascii
import json
import os

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings, strategies as hs

from drivers.keys import ed25519_verify, make_body, sign_ed25519, sign_hmac
from drivers.store import Store
from edge_agent import envelope as env
from edge_agent.envelope import Verifier
from edge_agent.intersection import parse_site
from edge_agent.standard import standard_plan, standard_site
from tools.cli import main

SECRET_A = b"controller-A-shared-secret-32byt"
SECRET_B = b"controller-B-shared-secret-32byt"
WALL = 1_800_000_000
CENTRAL = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
CENTRAL_PUB = CENTRAL.public_key().public_bytes_raw()
SITE_A = parse_site(standard_site("int-A"))
SITE_B = parse_site(standard_site("int-B"))
KEYS_A = {"ctl-A": ("hmac", SECRET_A), "central": ("ed25519", CENTRAL_PUB)}
KEYS_B = {"ctl-B": ("hmac", SECRET_B), "central": ("ed25519", CENTRAL_PUB)}
VERIFIER = Verifier(SITE_A, KEYS_A, None, ed25519_verify)
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def body(version=11, intersection="int-A", issued_at=WALL, **extra):
    d = {"intersection": intersection, "version": version, "issued_at": issued_at,
         "plan": standard_plan("am-peak")}
    d.update(extra)
    return json.dumps(d)


GOOD = sign_hmac(body(), "ctl-A", SECRET_A)


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path), fsync=False)
    res = VERIFIER.check(sign_hmac(body(version=10), "ctl-A", SECRET_A), None, WALL)
    s.accept(res)
    return s


def offer(store, data):
    """What the runtime does with an envelope from the link."""
    res = VERIFIER.check(data, store.high_water("int-A"), WALL)
    if res.ok:
        store.accept(res)
    return res


def files(store):
    return {n: open(os.path.join(store.dir, n), "rb").read() for n in sorted(os.listdir(store.dir))}


def refused(store, data, reason):
    before = files(store)
    res = offer(store, data)
    assert not res.ok, "accepted: %r" % (data,)
    if reason is not None:
        assert res.reason == reason, (res, data)
    assert files(store) == before
    assert store.high_water("int-A") == 10
    assert Store(store.dir).high_water("int-A") == 10
    return res


def test_the_good_envelope_is_accepted_and_stored(store):
    assert offer(store, GOOD).version == 11
    assert store.high_water("int-A") == 11


json_values = hs.recursive(
    hs.none() | hs.booleans() | hs.integers() | hs.floats() | hs.text(max_size=20),
    lambda inner: hs.lists(inner, max_size=4) | hs.dictionaries(hs.text(max_size=8), inner, max_size=4),
    max_leaves=8)


@SETTINGS
@given(data=hs.binary(max_size=3000))
def test_random_bytes_are_malformed(store, data):
    refused(store, data, env.MALFORMED)


@SETTINGS
@given(cut=hs.integers(0, len(GOOD) - 1))
def test_truncated_envelopes_are_malformed(store, cut):
    refused(store, GOOD[:cut], env.MALFORMED)


@SETTINGS
@given(field=hs.sampled_from(["kid", "body", "mac"]),
       value=json_values.filter(lambda v: not isinstance(v, str)))
def test_envelope_fields_of_the_wrong_type_are_malformed(store, field, value):
    e = json.loads(GOOD)
    e[field] = value
    refused(store, json.dumps(e), env.MALFORMED)


@SETTINGS
@given(extra=hs.dictionaries(hs.text(max_size=6).filter(lambda k: k not in env.ENVELOPE_KEYS),
                             json_values, min_size=1, max_size=3))
def test_unknown_envelope_fields_are_malformed(store, extra):
    e = json.loads(GOOD)
    e.update(extra)
    refused(store, json.dumps(e), env.MALFORMED)


@SETTINGS
@given(field=hs.sampled_from(["intersection", "version", "issued_at", "expires_at", "plan"]),
       value=json_values)
def test_signed_body_fields_of_the_wrong_type_are_malformed(store, field, value):
    ok = {"intersection": lambda v: isinstance(v, str),
          "version": lambda v: type(v) is int and 1 <= v <= env.MAX_VERSION,
          "issued_at": lambda v: type(v) in (int, float) and 0 <= v <= env.MAX_TIME_S,
          "expires_at": lambda v: type(v) in (int, float) and WALL < v <= env.MAX_TIME_S,
          "plan": lambda v: isinstance(v, dict)}[field]
    if ok(value):
        return
    refused(store, sign_hmac(body(**{field: value}), "ctl-A", SECRET_A), env.MALFORMED)


huge = (hs.integers(min_value=env.MAX_VERSION + 1) | hs.integers(max_value=0)
        | hs.sampled_from([10 ** 400, -(10 ** 400), 1e308, float("inf"), float("-inf"),
                           float("nan"), 2 ** 64]))


@SETTINGS
@given(field=hs.sampled_from(["version", "issued_at", "expires_at"]), value=huge)
def test_huge_numbers_are_malformed(store, field, value):
    if field != "version" and type(value) is int and 0 <= value <= env.MAX_TIME_S:
        return      # an in-range time: not this test's business
    refused(store, sign_hmac(body(**{field: value}), "ctl-A", SECRET_A), env.MALFORMED)


@SETTINGS
@given(where=hs.integers(0, 10 ** 6), bit=hs.integers(0, 6))
def test_a_flipped_bit_in_the_body_is_a_bad_mac(store, where, bit):
    e = json.loads(GOOD)
    text = e["body"]
    i = where % len(text)
    e["body"] = text[:i] + chr(ord(text[i]) ^ (1 << bit)) + text[i + 1:]
    refused(store, json.dumps(e), env.BAD_MAC)


@SETTINGS
@given(where=hs.integers(0, 31), bit=hs.integers(0, 7))
def test_a_flipped_bit_in_the_mac_is_a_bad_mac(store, where, bit):
    e = json.loads(GOOD)
    tag = bytearray(binascii.unhexlify(e["mac"]))
    tag[where] ^= 1 << bit
    e["mac"] = tag.hex()
    refused(store, json.dumps(e), env.BAD_MAC)


@SETTINGS
@given(where=hs.integers(0, 10 ** 6), bit=hs.integers(0, 7))
def test_a_flipped_bit_anywhere_is_refused(store, where, bit):
    data = bytearray(GOOD.encode())
    data[where % len(data)] ^= 1 << bit
    res = refused(store, bytes(data), None)
    assert res.reason in (env.MALFORMED, env.BAD_MAC, env.UNKNOWN_KID), res


@SETTINGS
@given(mac=hs.text(max_size=80).filter(lambda s: len(s) != 64 or s != s.lower()))
def test_a_mac_that_is_not_64_lowercase_hex_digits_is_malformed(store, mac):
    e = json.loads(GOOD)
    e["mac"] = mac
    refused(store, json.dumps(e), env.MALFORMED)


def test_every_refusal_reason_leaves_the_store_untouched(store):
    p = standard_plan()
    p["phases"][0]["yellow"] = 1.0
    cases = {
        env.UNKNOWN_KID: sign_hmac(body(), "ctl-Z", SECRET_A),
        env.SCHEME_MISMATCH: sign_hmac(body(), "central", SECRET_A),
        env.BAD_SIG: sign_ed25519(body(), "central", Ed25519PrivateKey.generate()),
        env.WRONG_INTERSECTION: sign_hmac(body(intersection="int-B"), "ctl-A", SECRET_A),
        env.REPLAY: sign_hmac(body(version=10), "ctl-A", SECRET_A),
        env.VERSION_JUMP: sign_hmac(body(version=10 + 1001), "ctl-A", SECRET_A),
        env.FUTURE: sign_hmac(body(issued_at=WALL + 301), "ctl-A", SECRET_A),
        env.STALE: sign_hmac(body(issued_at=WALL - 86401), "ctl-A", SECRET_A),
        env.EXPIRED: sign_hmac(body(issued_at=WALL - 9, expires_at=WALL), "ctl-A", SECRET_A),
        env.INVALID_PLAN: sign_hmac(body(plan=p), "ctl-A", SECRET_A),
    }
    for reason, data in cases.items():
        refused(store, data, reason)


# -- Ed25519 -------------------------------------------------------------------------

def test_ed25519_envelope_from_central_is_accepted(store):
    res = offer(store, sign_ed25519(body(), "central", CENTRAL))
    assert res.ok and res.kid == "central" and res.version == 11


def test_ed25519_flipped_signature_or_body_is_a_bad_sig(store):
    e = json.loads(sign_ed25519(body(), "central", CENTRAL))
    sig = bytearray(binascii.unhexlify(e["sig"]))
    sig[5] ^= 0x10
    refused(store, json.dumps(dict(e, sig=sig.hex())), env.BAD_SIG)
    refused(store, json.dumps(dict(e, body=e["body"].replace("am-peak", "am-peal"))), env.BAD_SIG)


def test_ed25519_raw_private_key_bytes_sign_the_same_as_the_key_object():
    assert sign_ed25519("x", "central", bytes(range(32))) == sign_ed25519("x", "central", CENTRAL)


def test_without_an_ed25519_verifier_central_keys_are_unsupported():
    v = Verifier(SITE_A, KEYS_A)
    assert v.check(sign_ed25519(body(), "central", CENTRAL), 10, WALL).reason == \
        env.UNSUPPORTED_SCHEME


def test_a_stolen_hmac_secret_of_A_cannot_forge_a_plan_for_B():
    b = Verifier(SITE_B, KEYS_B, None, ed25519_verify)
    forged = body(intersection="int-B", version=11)

    def attempt(data):
        res = b.check(data, 10, WALL)
        assert not res.ok
        return res.reason
    assert attempt(sign_hmac(forged, "ctl-A", SECRET_A)) == env.UNKNOWN_KID
    assert attempt(sign_hmac(forged, "ctl-B", SECRET_A)) == env.BAD_MAC
    assert attempt(sign_hmac(forged, "central", SECRET_A)) == env.SCHEME_MISMATCH
    # Central's public key is public: as an HMAC secret it is still refused.
    assert attempt(sign_hmac(forged, "central", CENTRAL_PUB)) == env.SCHEME_MISMATCH
    tag = env.mac(SECRET_A, forged.encode())
    assert attempt(json.dumps({"kid": "central", "body": forged,
                               "sig": (tag + tag).hex()})) == env.BAD_SIG
    # Central's genuine plan for A, replayed at B, is for the wrong intersection.
    assert attempt(sign_ed25519(body(), "central", CENTRAL)) == env.WRONG_INTERSECTION
    assert b.check(sign_ed25519(forged, "central", CENTRAL), 10, WALL).ok


def test_key_rotation_two_kids_active_then_the_old_one_removed():
    new = Ed25519PrivateKey.generate()
    ring = {"central-2026": ("ed25519", CENTRAL_PUB),
            "central-2027": ("ed25519", new.public_key().public_bytes_raw())}
    v = Verifier(SITE_A, ring, None, ed25519_verify)
    assert v.check(sign_ed25519(body(version=11), "central-2026", CENTRAL), 10, WALL).ok
    assert v.check(sign_ed25519(body(version=12), "central-2027", new), 11, WALL).ok
    # A kid is bound to its own key: the new kid with the old key fails.
    assert v.check(sign_ed25519(body(version=12), "central-2027", CENTRAL), 11, WALL).reason \
        == env.BAD_SIG
    del ring["central-2026"]
    assert Verifier(SITE_A, ring, None, ed25519_verify).check(
        sign_ed25519(body(version=13), "central-2026", CENTRAL), 12, WALL).reason == env.UNKNOWN_KID


# -- the `edge-agent plan` command -----------------------------------------------------

@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "site.json").write_text(json.dumps(standard_site("int-A")))
    (tmp_path / "plan.json").write_text(json.dumps(standard_plan("pm-peak")))
    return tmp_path


def test_cli_keygen_sign_verify_show_round_trip(workdir, capsys):
    assert main(["plan", "keygen", "--kid", "central", "--scheme", "ed25519"]) == 0
    assert main(["plan", "keygen", "--kid", "ctl-A", "--scheme", "hmac"]) == 0
    assert (os.stat("central.json").st_mode & 0o777) == 0o600
    assert "private" not in json.loads((workdir / "central.pub.json").read_text())
    for key, keys in (("central.json", "central.pub.json"), ("ctl-A.json", "ctl-A.json")):
        capsys.readouterr()
        assert main(["plan", "sign", "--plan", "plan.json", "--key", key, "--intersection",
                     "int-A", "--version", "7", "--expires", "3600", "--site", "site.json"]) == 0
        (workdir / "e.json").write_text(capsys.readouterr().out)
        assert main(["plan", "verify", "--envelope", "e.json", "--site", "site.json",
                     "--keys", keys, "--active-version", "6"]) == 0
        assert capsys.readouterr().out.startswith("accepted: version 7 for int-A")
        assert main(["plan", "verify", "--envelope", "e.json", "--site", "site.json",
                     "--keys", keys, "--active-version", "7"]) == 1
        assert capsys.readouterr().out == (
            "rejected: replay\n  version 7 is not above the active version 7\n")
    assert main(["plan", "show", "--envelope", "e.json"]) == 0
    out = capsys.readouterr().out
    assert "key id       ctl-A" in out and "version      7" in out and '"pm-peak"' in out


def test_cli_verify_with_a_provisioning_file_uses_its_policy(workdir, capsys):
    (workdir / "prov.json").write_text(json.dumps({
        "store_dir": "store", "policy": {"max_version_jump": 2},
        "keys": [{"kid": "ctl-A", "scheme": "hmac", "secret": SECRET_A.hex()}]}))
    (workdir / "e.json").write_text(sign_hmac(body(version=9, issued_at=WALL), "ctl-A", SECRET_A))
    assert main(["plan", "verify", "--envelope", "e.json", "--site", "site.json", "--keys",
                 "prov.json", "--active-version", "6", "--no-clock"]) == 1
    assert capsys.readouterr().out.startswith("rejected: version_jump")


@pytest.mark.parametrize("argv,message", [
    (["plan", "sign", "--plan", "missing.json", "--key", "k.json", "--version", "1",
      "--intersection", "int-A"], "key file k.json: cannot read"),
    (["plan", "sign", "--plan", "site.json", "--key", "bad.json", "--version", "1",
      "--intersection", "int-A"], "key file bad.json: not valid JSON"),
    (["plan", "sign", "--plan", "plan.json", "--key", "pub.json", "--version", "1",
      "--intersection", "int-A"], "this is the public half"),
    (["plan", "sign", "--plan", "plan.json", "--key", "hmac.json", "--intersection", "int-A"],
     "--version is required"),
    (["plan", "sign", "--plan", "bad.json", "--key", "hmac.json", "--version", "1",
      "--intersection", "int-A"], "plan file bad.json: not valid JSON"),
    (["plan", "verify", "--envelope", "missing.json", "--site", "site.json", "--keys",
      "hmac.json"], "envelope file missing.json: cannot read"),
    (["plan", "verify", "--envelope", "plan.json", "--site", "plan.json", "--keys",
      "hmac.json"], "site plan.json is invalid"),
    (["plan", "verify", "--envelope", "plan.json", "--site", "site.json", "--keys",
      "bad.json"], "keyring bad.json: not valid JSON"),
    (["plan", "verify", "--envelope", "plan.json", "--site", "site.json", "--keys",
      "priv.json"], "holds a private key"),
    (["plan", "show", "--envelope", "bad.json"], "not valid JSON"),
    (["plan", "show", "--envelope", "plan.json"], "not an envelope"),
])
def test_cli_bad_files_give_clear_errors_not_tracebacks(workdir, capsys, argv, message):
    (workdir / "bad.json").write_text("{not json")
    (workdir / "hmac.json").write_text(json.dumps({"kid": "ctl-A", "scheme": "hmac",
                                                   "secret": SECRET_A.hex()}))
    (workdir / "pub.json").write_text(json.dumps({"kid": "c", "scheme": "ed25519",
                                                  "public": CENTRAL_PUB.hex()}))
    (workdir / "priv.json").write_text(json.dumps({"kid": "c", "scheme": "ed25519",
                                                   "public": CENTRAL_PUB.hex(),
                                                   "private": "00" * 32}))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cli_verify_of_a_garbage_envelope_is_a_rejection(workdir, capsys):
    (workdir / "e.json").write_bytes(b"\xff\x00garbage")
    (workdir / "hmac.json").write_text(json.dumps({"kid": "ctl-A", "scheme": "hmac",
                                                   "secret": SECRET_A.hex()}))
    assert main(["plan", "verify", "--envelope", "e.json", "--site", "site.json",
                 "--keys", "hmac.json"]) == 1
    assert capsys.readouterr().out == "rejected: malformed\n  envelope: not UTF-8\n"


def test_make_body_is_compact_sorted_json():
    text = make_body({"id": "x"}, "int-A", 3, 100, 200)
    assert text == ('{"expires_at":200,"intersection":"int-A","issued_at":100,'
                    '"plan":{"id":"x"},"version":3}')
