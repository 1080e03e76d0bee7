"""The controller's on-disk plan store: plans, replay high-water mark and keys.

Files in the store directory, each written atomically (temp file in the same
directory, fsync, rename over, fsync the directory) and framed with its own
length and SHA-256 so a torn or damaged file is recognised on load:

    active.envelope      the envelope of the plan in effect, bytes as received
    last-good.envelope   the envelope that was active before it
    high-water.json      {intersection: highest version ever accepted}
    keys.json            the keyring (edge_agent.envelope.parse_keys format)
    flash-latch.json     the monitor's latched fault, while the unit is in fault flash

Order on acceptance: the high-water mark is on disk before the plan is, so a
replayed envelope is refused even after a crash at any moment. A crash between
the two leaves the old plan active and the new version burnt: central sees the
old version in plan/reported and issues a higher one.
"""

import hashlib
import json
import os

from edge_agent.envelope import parse_keys
from edge_agent.validate import ConfigError

ACTIVE = "active.envelope"
LAST_GOOD = "last-good.envelope"
HIGH_WATER = "high-water.json"
KEYS = "keys.json"
LATCH = "flash-latch.json"
MAGIC = b"edge-agent-store/1"

# Why a file could not be used (envelope rejection reasons come from the verifier).
MISSING = "missing"
CORRUPT = "corrupt"

# Where the plan in effect at start-up came from.
FROM_ACTIVE = "active"
FROM_LAST_GOOD = "last_known_good"
FROM_LOCAL = "local"


class StoreError(Exception):
    """A store file is missing or fails its self-check."""

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason
        self.message = message


class Boot:
    """The plan to start with, where it came from, and every problem met on the way.

    events: [(what, reason, message)], what being "active", "last_known_good",
    "high_water" or "plan"; the caller logs and reports each one.
    """
    __slots__ = ("plan", "source", "accepted", "high_water", "events")

    def __init__(self, plan, source, accepted, high_water, events):
        self.plan = plan              # a validated Plan (the site's local plan as a last resort)
        self.source = source          # FROM_ACTIVE, FROM_LAST_GOOD or FROM_LOCAL
        self.accepted = accepted      # the stored envelope's Accepted, None for the local plan
        self.high_water = high_water  # replay high-water mark for the site's intersection
        self.events = events


class Store:
    """One directory of self-checking files; one writer (the runtime) at a time."""

    def __init__(self, directory, fsync=True):
        self.dir = directory
        self.fsync = fsync            # False only in tests that measure nothing about durability
        # A temp file left by a write cut short is never read, and the next
        # write of that file truncates it; it is not removed here because a
        # reader opening the store must not pull it from under the writer.
        os.makedirs(directory, exist_ok=True)
        self.problems = []
        try:
            self._high = _high_water(self.read(HIGH_WATER))
        except StoreError as e:
            self._high = {}
            if e.reason != MISSING:
                self.problems.append(("high_water", e.reason, e.message))

    # -- files ------------------------------------------------------------------

    def read(self, name):
        """The payload of a store file; raises StoreError(MISSING or CORRUPT)."""
        path = os.path.join(self.dir, name)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise StoreError(MISSING, "%s: no such file" % name)
        except OSError as e:
            raise StoreError(CORRUPT, "%s: cannot read (%s)" % (name, e.strerror or e))
        return unframe(data, name)

    def write(self, name, payload):
        """Replace a store file atomically: readers see the old or the new, never a mix."""
        path = os.path.join(self.dir, name)
        tmp = os.path.join(self.dir, "." + name + ".tmp")
        data = frame(payload)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        # The rename itself is durable only once the directory is.
        self._sync_dir()

    def _sync_dir(self):
        if self.fsync:
            dfd = os.open(self.dir, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    # -- plans ------------------------------------------------------------------

    def high_water(self, intersection):
        """Highest version ever accepted for the intersection, None if none ever was."""
        return self._high.get(intersection)

    def accept(self, accepted):
        """Persist an Accepted envelope: high-water mark first, then the plan.

        The plan that was active becomes the last-known-good one.
        """
        high = dict(self._high)
        high[accepted.intersection] = max(high.get(accepted.intersection, 0), accepted.version)
        self.write(HIGH_WATER, _json(high))
        self._high = high
        try:
            old = self.read(ACTIVE)
        except StoreError:
            old = None
        if old is not None and old != accepted.envelope:
            self.write(LAST_GOOD, old)
        self.write(ACTIVE, bytes(accepted.envelope))

    def load_plan(self, verifier, wall_s=None):
        """The plan to start with: active, else last-known-good, else the site's local plan.

        Each stored envelope is re-checked with verifier.reload (keys may have
        been revoked, the site changed, the plan expired). The high-water mark
        never ends up below a stored authentic envelope's version.
        """
        site = verifier.site
        events = list(self.problems)
        chosen = None
        floor = 0
        for what, name in ((FROM_ACTIVE, ACTIVE), (FROM_LAST_GOOD, LAST_GOOD)):
            try:
                payload = self.read(name)
            except StoreError as e:
                events.append((what, e.reason, e.message))
                continue
            res = verifier.reload(payload, wall_s)
            if res.version is not None:     # authentic and for this intersection
                floor = max(floor, res.version)
            if res.ok:
                if chosen is None:
                    chosen = (what, res)
            else:
                events.append((what, res.reason, res.message))
        high = self._high.get(site.intersection)
        if floor and (high is None or high < floor):
            events.append(("high_water", "raised", "high-water mark %s is below stored version %d: "
                           "raised to %d" % (high, floor, floor)))
            self._high = dict(self._high)
            self._high[site.intersection] = floor
            self.write(HIGH_WATER, _json(self._high))
        high = self._high.get(site.intersection)
        if chosen is None:
            events.append(("plan", FROM_LOCAL, "no stored plan is usable: running the site's "
                           "built-in local plan %r" % site.fallback_plan.id))
            return Boot(site.fallback_plan, FROM_LOCAL, None, high, events)
        what, res = chosen
        return Boot(res.plan, what, res, high, events)

    # -- keys -------------------------------------------------------------------

    def save_keys(self, keyring):
        """Store a keyring (checked first: a bad one raises ConfigError, nothing written)."""
        parse_keys(keyring)
        self.write(KEYS, _json(keyring))

    def load_keys(self):
        """{kid: (scheme, key bytes)}; raises StoreError(MISSING or CORRUPT)."""
        payload = self.read(KEYS)
        try:
            return parse_keys(json.loads(payload.decode("utf-8")))
        except (ValueError, ConfigError) as e:
            raise StoreError(CORRUPT, "%s: not a usable keyring (%s)" % (KEYS, e))


    # -- the flash latch ------------------------------------------------------------

    def save_latch(self, fault):
        """Persist a latched monitor fault (a plain dict) before the flash is shown."""
        self.write(LATCH, _json(fault))

    def load_latch(self):
        """The latched fault to boot with, or None.

        A latch file that cannot be read still means a latched fault: the unit
        boots into flash and says why (rule 7: what it cannot reason about).
        """
        try:
            payload = self.read(LATCH)
        except StoreError as e:
            if e.reason == MISSING:
                return None
            return _unreadable_latch(e.message)
        try:
            d = json.loads(payload.decode("utf-8"))
        except ValueError:
            d = None
        if not isinstance(d, dict) or not isinstance(d.get("code"), int) \
                or not isinstance(d.get("ms"), int):
            return _unreadable_latch("%s: not a fault record" % LATCH)
        return d

    def clear_latch(self):
        """Remove the latch after a technician reset (durably: the directory is synced)."""
        try:
            os.remove(os.path.join(self.dir, LATCH))
        except FileNotFoundError:
            return
        self._sync_dir()


def _unreadable_latch(why):
    from edge_agent.monitor import FAULT_CONTROLLER
    return {"ms": 0, "code": FAULT_CONTROLLER, "channel": 0, "other": 0,
            "detail": "stored flash latch unreadable (%s)" % why}


def frame(payload):
    """Payload behind a header line carrying its length and SHA-256."""
    payload = bytes(payload)
    return b"%s %d %s\n%s" % (MAGIC, len(payload), hashlib.sha256(payload).hexdigest().encode(),
                              payload)


def unframe(data, name="file"):
    """The payload of framed bytes; raises StoreError(CORRUPT) saying what is wrong."""
    head, nl, payload = data.partition(b"\n")
    parts = head.split(b" ")
    if not nl or len(parts) != 3 or parts[0] != MAGIC or not parts[1].isdigit():
        if not data:
            return _corrupt(name, "empty file")
        return _corrupt(name, "no valid header (not a store file, or cut short)")
    length = int(parts[1])
    if len(payload) != length:
        return _corrupt(name, "payload is %d bytes, the header says %d" % (len(payload), length))
    if hashlib.sha256(payload).hexdigest().encode() != parts[2]:
        return _corrupt(name, "SHA-256 mismatch: the file was damaged")
    return payload


def _corrupt(name, why):
    raise StoreError(CORRUPT, "%s: %s" % (name, why))


def _json(obj):
    return json.dumps(obj, sort_keys=True).encode("utf-8")


def _high_water(payload):
    try:
        d = json.loads(payload.decode("utf-8"))
    except ValueError:
        d = None
    if not isinstance(d, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
            for k, v in d.items()):
        raise StoreError(CORRUPT, "%s: not a map of intersection to version" % HIGH_WATER)
    return d
