"""Smoke tests of the MicroPython modules the core may lean on.

Portable: runs under CPython (pytest) and MicroPython 1.27 (tests/mpy/runner.mjs).
Plain asserts only; no pytest, no fixtures, no hexdigest() on hashlib objects
(MicroPython's hashlib has only digest(), callable once per object),
digestmod always explicit, no hmac.compare_digest.
"""

import binascii
import hashlib
import hmac
import json
import struct


def _hex(b):
    return binascii.hexlify(b).decode()


def test_sha256_known_vectors():
    # FIPS 180-2 examples.
    assert _hex(hashlib.sha256(b"").digest()) == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    assert _hex(hashlib.sha256(b"abc").digest()) == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    # Incremental update; digest() only once: MicroPython finalises the
    # object on digest() ("ValueError: hash is final" on a second call).
    h = hashlib.sha256(b"ab")
    h.update(b"c")
    d = h.digest()
    assert d == hashlib.sha256(b"abc").digest()
    assert len(d) == 32


def test_hmac_sha256_rfc4231():
    # RFC 4231 test case 1.
    mac = hmac.new(b"\x0b" * 20, b"Hi There", hashlib.sha256)
    assert _hex(mac.digest()) == (
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
    # RFC 4231 test case 2 (key shorter than the block, incremental update).
    mac = hmac.new(b"Jefe", b"what do ya want ", digestmod=hashlib.sha256)
    mac.update(b"for nothing?")
    assert _hex(mac.digest()) == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    # RFC 4231 test case 6 (key longer than the 64-byte block is hashed first).
    mac = hmac.new(b"\xaa" * 131,
                   b"Test Using Larger Than Block-Size Key - Hash Key First",
                   hashlib.sha256)
    assert _hex(mac.digest()) == (
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")


def test_json_round_trip_and_exact_text():
    # Lists and scalars serialise identically; dict key order is not portable
    # (MicroPython dicts are unordered), so compare dicts by value.
    assert json.dumps([1, -2, "a", None, True, False, 1.5]) == (
        '[1, -2, "a", null, true, false, 1.5]')
    assert json.dumps({"k": [2]}) == '{"k": [2]}'
    obj = {"phase": 2, "times": [4000, 1500], "name": "EB through",
           "nested": {"ok": True, "x": None}}
    assert json.loads(json.dumps(obj)) == obj
    assert json.loads('{"a": [1, 2.5, null, false, "x\\u00e9"]}') == {
        "a": [1, 2.5, None, False, "x\u00e9"]}
    try:
        json.loads("{bad")
    except ValueError:
        pass
    else:
        assert False, "malformed JSON must raise ValueError"


def test_struct_pack_unpack_exact_bytes():
    assert struct.calcsize(">HhI") == 8
    assert struct.calcsize("<BBHIq") == 16
    packed = struct.pack(">HhI", 1, -2, 3)
    assert packed == b"\x00\x01\xff\xfe\x00\x00\x00\x03"
    assert struct.unpack(">HhI", packed) == (1, -2, 3)
    assert struct.unpack("<i", b"\xff\xff\xff\xff") == (-1,)
    assert struct.pack("<Q", 2 ** 40 + 5) == b"\x05\x00\x00\x00\x00\x01\x00\x00"
    assert struct.unpack_from(">H", b"\x00\x12\x34", 1) == (0x1234,)
