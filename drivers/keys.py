"""Key material on CPython: Ed25519 via `cryptography`, key files, signing for central.

The core verifies HMAC itself and takes Ed25519 verification as an injected
function; `ed25519_verify` here is that function. Signing lives here too,
for central and the `edge-agent plan` tools: a controller never signs.

Key files (written by `edge-agent plan keygen`):

    {"kid": "ctl-0001-2026a", "scheme": "hmac", "secret": "<hex>"}
    {"kid": "central-2026a", "scheme": "ed25519", "private": "<hex>", "public": "<hex>"}

and the public half of an Ed25519 key, the only part a controller holds:

    {"kid": "central-2026a", "scheme": "ed25519", "public": "<hex>"}
"""

import binascii
import json
import os

from edge_agent.envelope import (ED25519, HMAC, MIN_SECRET, Policy, parse_keys,
                                 parse_policy, seal_hmac)
from edge_agent.validate import ConfigError

__all__ = ["ed25519_verify", "sign_hmac", "sign_ed25519", "make_body", "generate_key",
           "public_half", "load_json", "load_signing_key", "load_keyring",
           "load_provisioning", "Provisioning", "KeyFileError"]


class KeyFileError(Exception):
    """A key, keyring or provisioning file cannot be used; the message says why."""


def ed25519_verify(public_key, sig, body):
    """True when sig (64 bytes) is public_key's (32 bytes) Ed25519 signature of body."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    try:
        Ed25519PublicKey.from_public_bytes(bytes(public_key)).verify(bytes(sig), bytes(body))
    except (InvalidSignature, ValueError):
        return False
    return True


def sign_hmac(body_text, kid, secret):
    """Envelope text for body_text, HMAC-SHA256 with the shared secret (bytes)."""
    return seal_hmac(body_text, kid, bytes(secret))


def sign_ed25519(body_text, kid, private_key):
    """Envelope text for body_text signed with an Ed25519 private key (32 raw bytes or object)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    if isinstance(private_key, (bytes, bytearray)):
        private_key = Ed25519PrivateKey.from_private_bytes(bytes(private_key))
    sig = private_key.sign(body_text.encode("utf-8"))
    return json.dumps({"kid": kid, "body": body_text, "sig": binascii.hexlify(sig).decode()})


def make_body(plan, intersection, version, issued_at, expires_at=None):
    """The body JSON text central signs (compact, keys sorted: one canonical choice)."""
    body = {"intersection": intersection, "version": version, "issued_at": issued_at,
            "plan": plan}
    if expires_at is not None:
        body["expires_at"] = expires_at
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def generate_key(kid, scheme):
    """A new key file dict for kid: a 32-byte HMAC secret or an Ed25519 key pair."""
    if scheme == HMAC:
        return {"kid": kid, "scheme": HMAC, "secret": os.urandom(32).hex()}
    if scheme != ED25519:
        raise KeyFileError("scheme %r is not one of hmac, ed25519" % (scheme,))
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(ser.Encoding.Raw, ser.PrivateFormat.Raw, ser.NoEncryption())
    public = key.public_key().public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
    return {"kid": kid, "scheme": ED25519, "private": private.hex(), "public": public.hex()}


def public_half(key):
    """What a controller may hold of a key file: all of an HMAC key, the public Ed25519 half."""
    if key["scheme"] == ED25519:
        return {"kid": key["kid"], "scheme": ED25519, "public": key["public"]}
    return dict(key)


def load_json(path, what):
    """Parse a JSON file, turning every failure into a KeyFileError naming the file."""
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except OSError as e:
        raise KeyFileError("%s %s: cannot read (%s)" % (what, path, e.strerror or e))
    except (ValueError, RecursionError) as e:
        raise KeyFileError("%s %s: not valid JSON (%s)" % (what, path, e))


def load_signing_key(path):
    """(kid, scheme, secret or private key bytes) from a key file written by keygen."""
    d = load_json(path, "key file")
    if not isinstance(d, dict):
        raise KeyFileError("key file %s: must be a JSON object" % path)
    kid, scheme = d.get("kid"), d.get("scheme")
    if not isinstance(kid, str) or not kid:
        raise KeyFileError("key file %s: \"kid\" must be a non-empty string" % path)
    field = {HMAC: "secret", ED25519: "private"}.get(scheme)
    if field is None:
        raise KeyFileError("key file %s: \"scheme\" must be \"hmac\" or \"ed25519\", got %r"
                           % (path, scheme))
    if field not in d:
        raise KeyFileError("key file %s: has no %r: %s" % (path, field, (
            "this is the public half; signing needs the private key file"
            if scheme == ED25519 else "an HMAC key file holds the shared secret")))
    try:
        key = bytes.fromhex(d[field])
    except (TypeError, ValueError):
        raise KeyFileError("key file %s: %r is not hex" % (path, field))
    want = (MIN_SECRET, 1024) if scheme == HMAC else (32, 32)
    if not want[0] <= len(key) <= want[1]:
        raise KeyFileError("key file %s: %r is %d bytes, must be %d..%d"
                           % (path, field, len(key), want[0], want[1]))
    return kid, scheme, key


def load_keyring(path):
    """(keys, policy or None) from a keyring, a public key file or a provisioning file."""
    d = load_json(path, "keyring")
    try:
        keys = parse_keys(d)
        policy = parse_policy(d["policy"]) if isinstance(d, dict) and "policy" in d else None
    except ConfigError as e:
        raise KeyFileError("keyring %s:\n  %s" % (path, "\n  ".join(e.errors)))
    return keys, policy


class Provisioning:
    """What this module reads of a controller's provisioning file (docs/provisioning.md)."""
    __slots__ = ("keys", "policy", "store_dir", "raw")

    def __init__(self, keys, policy, store_dir, raw):
        self.keys = keys            # {kid: (scheme, key bytes)}
        self.policy = policy        # edge_agent.envelope.Policy
        self.store_dir = store_dir  # absolute path
        self.raw = raw              # the whole file, for the sections other drivers read


def load_provisioning(path):
    """Keys, policy and store directory of a provisioning file; raises KeyFileError."""
    d = load_json(path, "provisioning file")
    if not isinstance(d, dict):
        raise KeyFileError("provisioning file %s: must be a JSON object" % path)
    errors = []
    keys, policy = {}, Policy()
    try:
        keys = parse_keys({"keys": d.get("keys")})
    except ConfigError as e:
        errors.extend(e.errors)
    try:
        if "policy" in d:
            policy = parse_policy(d["policy"])
    except ConfigError as e:
        errors.extend(e.errors)
    store_dir = d.get("store_dir")
    if not isinstance(store_dir, str) or not store_dir:
        errors.append("store_dir: is required (the directory the plan store keeps its files in)")
    if errors:
        raise KeyFileError("provisioning file %s:\n  %s" % (path, "\n  ".join(errors)))
    base = os.path.dirname(os.path.abspath(path))
    return Provisioning(keys, policy, os.path.join(base, store_dir), d)
