"""The on-disk plan store: fallback order, self-checks, replay mark across restarts, power loss.

The power-loss tests run a real child process that accepts plan after plan
into a store and kill it with SIGKILL at random moments, hundreds of times;
after every kill a fresh Store must load a complete, authentic plan.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from drivers import store as st
from drivers.keys import make_body, sign_hmac
from drivers.store import Store, StoreError
from edge_agent import envelope as env
from edge_agent.envelope import Verifier
from edge_agent.intersection import parse_site
from edge_agent.standard import standard_plan, standard_site

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET = b"controller-0001-shared-secret-32"
WALL = 1_800_000_000
SITE = parse_site(standard_site("demo-0001"))


def verifier(keys=None):
    return Verifier(SITE, keys if keys is not None else {"ctl": ("hmac", SECRET)})


def envelope(version, plan_id=None, issued_at=WALL, expires_at=None, kid="ctl", secret=SECRET):
    plan = standard_plan(plan_id or "v%d" % version)
    return sign_hmac(make_body(plan, "demo-0001", version, issued_at, expires_at), kid, secret)


def accept(store, version, **kw):
    res = verifier().check(envelope(version, **kw), store.high_water("demo-0001"), WALL)
    assert res.ok, res
    store.accept(res)
    return res


def snapshot(directory):
    return {n: open(os.path.join(directory, n), "rb").read() for n in sorted(os.listdir(directory))}


def test_empty_store_starts_on_the_sites_local_plan_and_says_so(tmp_path):
    boot = Store(str(tmp_path)).load_plan(verifier(), WALL)
    assert boot.source == st.FROM_LOCAL
    assert boot.plan is SITE.fallback_plan
    assert boot.accepted is None and boot.high_water is None
    assert [(w, r) for w, r, _ in boot.events] == [
        ("active", st.MISSING), ("last_known_good", st.MISSING), ("plan", st.FROM_LOCAL)]


def test_accepted_plan_is_active_after_restart_and_the_previous_one_last_good(tmp_path):
    s = Store(str(tmp_path))
    accept(s, 5)
    accept(s, 6)
    boot = Store(str(tmp_path)).load_plan(verifier(), WALL)
    assert boot.source == st.FROM_ACTIVE and boot.events == []
    assert boot.accepted.version == 6 and boot.plan.id == "v6"
    assert boot.high_water == 6
    assert verifier().reload(s.read(st.LAST_GOOD), WALL).version == 5


def test_high_water_mark_survives_a_restart_and_refuses_a_replay(tmp_path):
    s = Store(str(tmp_path))
    accept(s, 5)
    again = Store(str(tmp_path))
    res = verifier().check(envelope(5), again.high_water("demo-0001"), WALL)
    assert res.reason == env.REPLAY


def test_high_water_is_on_disk_before_the_plan(tmp_path, monkeypatch):
    s = Store(str(tmp_path))
    accept(s, 5)
    real_write = Store.write

    def crash_on_plan(self, name, payload):
        if name == st.ACTIVE:
            raise OSError("power lost")
        real_write(self, name, payload)
    monkeypatch.setattr(Store, "write", crash_on_plan)
    with pytest.raises(OSError):
        accept(s, 6)
    monkeypatch.undo()
    after = Store(str(tmp_path))
    boot = after.load_plan(verifier(), WALL)
    assert boot.accepted.version == 5            # the old plan still runs ...
    assert after.high_water("demo-0001") == 6    # ... and version 6 can never be replayed
    assert verifier().check(envelope(6), after.high_water("demo-0001"), WALL).reason == env.REPLAY


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "garbage"])
def test_damaged_active_falls_back_to_last_known_good(tmp_path, damage):
    s = Store(str(tmp_path))
    accept(s, 5)
    accept(s, 6)
    _damage(os.path.join(str(tmp_path), st.ACTIVE), damage)
    boot = Store(str(tmp_path)).load_plan(verifier(), WALL)
    assert boot.source == st.FROM_LAST_GOOD
    assert boot.accepted.version == 5
    assert [(w, r) for w, r, _ in boot.events] == [("active", st.CORRUPT)]
    assert boot.high_water == 6                  # the mark is its own file, undamaged


def test_both_damaged_fall_back_to_the_local_plan(tmp_path):
    s = Store(str(tmp_path))
    accept(s, 5)
    accept(s, 6)
    _damage(os.path.join(str(tmp_path), st.ACTIVE), "flip")
    _damage(os.path.join(str(tmp_path), st.LAST_GOOD), "truncate")
    boot = Store(str(tmp_path)).load_plan(verifier(), WALL)
    assert boot.source == st.FROM_LOCAL and boot.plan is SITE.fallback_plan
    assert [(w, r) for w, r, _ in boot.events] == [
        ("active", st.CORRUPT), ("last_known_good", st.CORRUPT), ("plan", st.FROM_LOCAL)]


def test_corrupt_messages_say_what_is_wrong(tmp_path):
    s = Store(str(tmp_path))
    s.write("x", b"hello world")
    path = os.path.join(str(tmp_path), "x")
    data = open(path, "rb").read()
    open(path, "wb").write(data[:-3])
    with pytest.raises(StoreError, match="payload is 8 bytes, the header says 11"):
        s.read("x")
    open(path, "wb").write(data[:-1] + b"D")
    with pytest.raises(StoreError, match="SHA-256 mismatch"):
        s.read("x")
    open(path, "wb").write(data[:10])
    with pytest.raises(StoreError, match="no valid header"):
        s.read("x")


def test_revoked_key_makes_the_stored_plan_fall_back(tmp_path):
    s = Store(str(tmp_path))
    accept(s, 5)
    rotated = {"ctl-new": ("hmac", b"n" * 32)}
    boot = Store(str(tmp_path)).load_plan(verifier(rotated), WALL)
    assert boot.source == st.FROM_LOCAL
    assert boot.events[0][:2] == ("active", env.UNKNOWN_KID)


def test_expired_active_plan_falls_back_to_last_known_good(tmp_path):
    s = Store(str(tmp_path))
    accept(s, 5)
    accept(s, 6, expires_at=WALL + 60)
    boot = Store(str(tmp_path)).load_plan(verifier(), WALL + 61)
    assert boot.source == st.FROM_LAST_GOOD and boot.accepted.version == 5
    assert boot.events[0][:2] == ("active", env.EXPIRED)
    assert boot.high_water == 6
    # An untrusted clock cannot tell: the active plan stays.
    assert Store(str(tmp_path)).load_plan(verifier(), None).accepted.version == 6


def test_corrupt_high_water_is_reported_and_raised_to_the_stored_plans(tmp_path):
    s = Store(str(tmp_path))
    accept(s, 5)
    accept(s, 6)
    _damage(os.path.join(str(tmp_path), st.HIGH_WATER), "flip")
    again = Store(str(tmp_path))
    assert again.high_water("demo-0001") is None
    boot = again.load_plan(verifier(), WALL)
    assert [(w, r) for w, r, _ in boot.events] == [("high_water", st.CORRUPT),
                                                  ("high_water", "raised")]
    assert boot.high_water == 6 and again.high_water("demo-0001") == 6
    assert Store(str(tmp_path)).high_water("demo-0001") == 6     # and written back


def test_a_leftover_temp_file_is_ignored_then_replaced(tmp_path):
    s = Store(str(tmp_path))
    accept(s, 5)
    tmp = os.path.join(str(tmp_path), "." + st.ACTIVE + ".tmp")
    open(tmp, "wb").write(b"half a pl")
    again = Store(str(tmp_path))
    assert again.load_plan(verifier(), WALL).accepted.version == 5
    accept(again, 6)
    assert not os.path.exists(tmp)
    assert sorted(os.listdir(str(tmp_path))) == [st.ACTIVE, st.HIGH_WATER, st.LAST_GOOD]


def test_keys_round_trip_and_damage_is_refused(tmp_path):
    s = Store(str(tmp_path))
    ring = {"keys": [{"kid": "ctl", "scheme": "hmac", "secret": SECRET.hex()},
                     {"kid": "central", "scheme": "ed25519", "public": "11" * 32}]}
    s.save_keys(ring)
    assert Store(str(tmp_path)).load_keys() == {"ctl": ("hmac", SECRET),
                                                "central": ("ed25519", b"\x11" * 32)}
    assert oct(os.stat(os.path.join(str(tmp_path), st.KEYS)).st_mode & 0o777) == "0o600"
    _damage(os.path.join(str(tmp_path), st.KEYS), "flip")
    with pytest.raises(StoreError) as e:
        s.load_keys()
    assert e.value.reason == st.CORRUPT
    with pytest.raises(Exception):
        s.save_keys({"keys": [{"kid": "x", "scheme": "hmac", "secret": "00"}]})


def _damage(path, how):
    data = open(path, "rb").read()
    if how == "truncate":
        data = data[: len(data) // 2]
    elif how == "flip":
        i = len(data) - 10
        data = data[:i] + bytes([data[i] ^ 0x04]) + data[i + 1:]
    elif how == "empty":
        data = b""
    else:
        data = os.urandom(len(data))
    open(path, "wb").write(data)


# -- power loss: a real child process killed with SIGKILL --------------------------

CHILD = r'''
import os, sys
from drivers.keys import make_body, sign_hmac
from drivers.store import Store
from edge_agent.envelope import Verifier
from edge_agent.intersection import parse_site
from edge_agent.standard import standard_plan, standard_site

directory, secret, mode = sys.argv[1], sys.argv[2].encode(), sys.argv[3]
if mode == "in-place":
    # A deliberately unsafe writer (no temp file, no rename, small chunks) to
    # show that the self-check catches what atomic replacement prevents.
    from drivers.store import frame
    def write(self, name, payload):
        fd = os.open(os.path.join(self.dir, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        data = frame(payload)
        for i in range(0, len(data), 256):
            os.write(fd, data[i:i + 256])
            os.fsync(fd)
        os.close(fd)
    Store.write = write
site = parse_site(standard_site("demo-0001"))
verifier = Verifier(site, {"ctl": ("hmac", secret)})
store = Store(directory)
plan = standard_plan()
version = store.high_water("demo-0001") or 0
sys.stdout.write("ready\n")
sys.stdout.flush()
while True:
    version += 1
    plan["id"] = "v%d" % version
    # A plan of changing length, so a torn file cannot pass for a whole one.
    plan["phases"][0]["max_green"] = 20.0 + version % 50
    res = verifier.check(sign_hmac(make_body(plan, "demo-0001", version, 1800000000), "ctl", secret),
                         store.high_water("demo-0001"), None)
    assert res.ok, res
    store.accept(res)
    sys.stdout.write("%d\n" % version)
    sys.stdout.flush()
'''


def _kill_loop(directory, kills, mode, max_delay_s):
    """Start, kill, reload `kills` times; yields (start, last committed, boot, store, temp_left).

    start: the high-water mark the child started from; last committed: the
    last version whose accept() returned in the child (None if none did).
    """
    envp = dict(os.environ, PYTHONPATH=REPO)
    rng = random.Random(20261125)
    for _ in range(kills):
        start = Store(directory).high_water("demo-0001") or 0
        proc = subprocess.Popen([sys.executable, "-S", "-c", CHILD, directory, SECRET.decode(), mode],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=envp)
        assert proc.stdout.readline() == b"ready\n", proc.stderr.read().decode()
        time.sleep(rng.uniform(0, max_delay_s))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        lines = proc.stdout.read().split(b"\n")
        stderr = proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL, stderr.decode()
        done = [int(x) for x in lines if x.strip()]
        temp_left = any(n.endswith(".tmp") for n in os.listdir(directory))
        store = Store(directory)
        yield start, (done[-1] if done else None), store.load_plan(verifier(), None), store, temp_left


def test_sigkill_at_random_moments_never_leaves_a_torn_plan(tmp_path):
    directory = str(tmp_path)
    seed = Store(directory)
    accept(seed, 1)
    accept(seed, 2)
    committed = 2           # the highest version whose accept() returned
    started = time.monotonic()
    kills = mid_write = 0
    for start, last, boot, store, temp_left in _kill_loop(directory, 400, "atomic", 0.006):
        committed = last if last is not None else committed
        attempted = (last if last is not None else start) + 1
        high = store.high_water("demo-0001")
        # A whole, authentic plan: the last committed one or the one being written.
        assert boot.source == st.FROM_ACTIVE and boot.events == [], boot.events
        assert committed <= boot.accepted.version <= attempted
        assert boot.plan.id == "v%d" % boot.accepted.version
        # The mark is never behind the plan, and never behind what was committed.
        assert boot.accepted.version <= high <= attempted
        kills += 1
        mid_write += temp_left
    assert kills == 400
    # The kills did land inside writes (a temp file was still there).
    assert mid_write > 0
    print("400 kills in %.1f s, %d mid-write, final version %d"
          % (time.monotonic() - started, mid_write, committed))


def test_self_check_catches_torn_files_of_an_unsafe_writer(tmp_path):
    directory = str(tmp_path)
    accept(Store(directory), 1)
    torn = 0
    for _, _, boot, _, _ in _kill_loop(directory, 100, "in-place", 0.01):
        # Whatever was torn is refused as corrupt; what loads is whole and authentic.
        for what, reason, message in boot.events:
            if what in (st.FROM_ACTIVE, st.FROM_LAST_GOOD):
                assert reason in (st.CORRUPT, st.MISSING), message
                torn += reason == st.CORRUPT
        if boot.accepted is not None:
            assert boot.plan.id == "v%d" % boot.accepted.version
            assert json.loads(boot.accepted.envelope)["kid"] == "ctl"
    assert torn > 0
