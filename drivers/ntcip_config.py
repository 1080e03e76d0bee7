"""The configuration of one NTCIP 1202 detector unit: parsed and validated once, all errors at once.

    cfg = parse_ntcip({"host": "10.0.0.5", "version": "v3", "user": "edge",
                       "auth_protocol": "SHA-256", "auth_key": "...",
                       "priv_protocol": "AES-128", "priv_key": "...",
                       "detectors": {"1": 1, "2": 2}, "timeout_s": 0.3})

An unknown key, a value of the wrong type or out of its range, a v3 unit
without authentication and privacy, or a community string on a v3 unit is
refused with every problem named (`NtcipConfigError.errors`), so a typo in
the configuration is found at start-up, not in the field.
"""

VERSIONS = ("v1", "v2c", "v3")
AUTH_PROTOCOLS = ("SHA-224", "SHA-256", "SHA-384", "SHA-512")    # RFC 7860 HMAC-SHA-2
PRIV_PROTOCOLS = ("AES-128", "AES-192", "AES-256")                # RFC 3826 and its extension
PED_OBJECTS = ("auto", "pedestrian", "vehicle")
SET_KEYS = ("volume_period_s", "no_activity_min", "max_presence_min", "erratic_counts")

KEYS = ("type", "host", "port", "source", "version", "community", "user", "auth_protocol",
        "auth_key", "priv_protocol", "priv_key", "detectors", "ped_detectors", "ped_objects",
        "period_s", "slow_s", "timeout_s", "retries", "set")


class NtcipConfigError(ValueError):
    """Every problem found in one unit's configuration."""

    def __init__(self, errors):
        self.errors = list(errors)
        super().__init__("; ".join(self.errors))


class NtcipConfig:
    """One unit's validated settings (seconds as given; see parse_ntcip)."""

    __slots__ = KEYS


def _number(spec, key, lo, hi, default, errors, where, integer=False):
    v = spec.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and v != int(v)):
        errors.append("%s.%s: %r is not %s" % (where, key, v, "an integer" if integer else "a number"))
        return default
    if not lo <= v <= hi:
        errors.append("%s.%s: %s is outside %s..%s" % (where, key, v, lo, hi))
        return default
    return int(v) if integer else float(v)


def _channel_map(spec, key, errors, where):
    d = spec.get(key)
    if d is None:
        return None
    out = {}
    if not isinstance(d, dict):
        errors.append("%s.%s: must map device detector to site channel, e.g. {\"1\": 1}"
                      % (where, key))
        return None
    for k, v in d.items():
        try:
            dev, ch = int(k), int(v)
        except (TypeError, ValueError):
            errors.append("%s.%s[%r]: %r is not a detector number" % (where, key, k, v))
            continue
        if not 1 <= dev <= 255:
            errors.append("%s.%s[%r]: device detector %d is outside 1..255" % (where, key, k, dev))
            continue
        out[dev] = ch
    return out


def _choice(spec, key, choices, default, errors, where):
    v = spec.get(key, default)
    if v not in choices:
        errors.append("%s.%s: %r is not one of %s" % (where, key, v, ", ".join(choices)))
        return default
    return v


def _sets(spec, errors, where):
    """The operator's SETs: {"volume_period_s": 1, "no_activity_min": 5 or {"3": 5}, ...}."""
    d = spec.get("set") or {}
    if not isinstance(d, dict):
        errors.append("%s.set: must be an object, e.g. {\"volume_period_s\": 1}" % where)
        return {}
    out = {}
    for k, v in d.items():
        if k not in SET_KEYS:
            errors.append("%s.set.%s: unknown key (known: %s)" % (where, k, ", ".join(SET_KEYS)))
            continue
        if k == "volume_period_s":
            out[k] = _number(d, k, 1, 255, 0, errors, where + ".set", integer=True)
            continue
        per = v if isinstance(v, dict) else {"*": v}
        vals = {}
        for det, n in per.items():
            if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 255:
                errors.append("%s.set.%s[%s]: %r is not an integer 0..255" % (where, k, det, n))
                continue
            if det == "*":
                vals["*"] = n
                continue
            try:
                vals[int(det)] = n
            except ValueError:
                errors.append("%s.set.%s: %r is not a detector number" % (where, k, det))
        out[k] = vals
    return out


def parse_ntcip(spec):
    """An NtcipConfig from a source object of the config file; NtcipConfigError if invalid."""
    errors = []
    if not isinstance(spec, dict):
        raise NtcipConfigError(["ntcip source: must be an object"])
    where = "ntcip %s" % (spec.get("host"),)
    for k in sorted(set(spec) - set(KEYS)):
        errors.append("%s: unknown key %r (known: %s)" % (where, k, ", ".join(KEYS)))
    c = NtcipConfig()
    c.type = "ntcip"
    c.host = spec.get("host")
    if not isinstance(c.host, str) or not c.host:
        errors.append("%s.host: a host name or address is required" % where)
    c.port = _number(spec, "port", 1, 65535, 161, errors, where, integer=True)
    c.source = spec.get("source") or "ntcip:%s:%s" % (c.host, c.port)
    c.version = _choice(spec, "version", VERSIONS, "v2c", errors, where)
    c.community = spec.get("community")
    c.user = spec.get("user")
    c.auth_protocol = spec.get("auth_protocol")
    c.auth_key = spec.get("auth_key")
    c.priv_protocol = spec.get("priv_protocol")
    c.priv_key = spec.get("priv_key")
    if c.version == "v3":
        if c.community is not None:
            errors.append("%s.community: not used by SNMPv3 (give user, auth_* and priv_*)" % where)
        if not isinstance(c.user, str) or not c.user:
            errors.append("%s.user: SNMPv3 needs a user name" % where)
        c.auth_protocol = _choice(spec, "auth_protocol", AUTH_PROTOCOLS, "SHA-256", errors, where)
        c.priv_protocol = _choice(spec, "priv_protocol", PRIV_PROTOCOLS, "AES-128", errors, where)
        for k in ("auth_key", "priv_key"):
            v = spec.get(k)
            if not isinstance(v, str) or len(v) < 8:
                errors.append("%s.%s: SNMPv3 authPriv needs a pass phrase of at least 8 "
                              "characters (RFC 3414)" % (where, k))
    else:
        for k in ("user", "auth_protocol", "auth_key", "priv_protocol", "priv_key"):
            if k in spec:
                errors.append("%s.%s: only for version v3 (this unit is %s)" % (where, k, c.version))
        if c.community is None:
            c.community = "public"
        elif not isinstance(c.community, str) or not c.community:
            errors.append("%s.community: must be a non-empty string" % where)
    c.detectors = _channel_map(spec, "detectors", errors, where)
    if c.detectors is None:
        c.detectors = {d: d for d in range(1, 17)}
    c.ped_detectors = _channel_map(spec, "ped_detectors", errors, where) or {}
    c.ped_objects = _choice(spec, "ped_objects", PED_OBJECTS, "auto", errors, where)
    c.period_s = _number(spec, "period_s", 0.1, 1.0, 0.1, errors, where)
    c.slow_s = _number(spec, "slow_s", 0.1, 60.0, 1.0, errors, where)
    c.timeout_s = _number(spec, "timeout_s", 0.02, 10.0, 0.3, errors, where)
    c.retries = _number(spec, "retries", 0, 5, 0, errors, where, integer=True)
    c.set = _sets(spec, errors, where)
    if c.slow_s < c.period_s:
        errors.append("%s.slow_s: %s s is shorter than period_s %s s" % (where, c.slow_s, c.period_s))
    if errors:
        raise NtcipConfigError(errors)
    return c
