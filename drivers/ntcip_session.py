"""One SNMP manager session to one NTCIP unit (pysnmp 7, asyncio): GET, GETBULK and SET with real timeouts.

    s = SnmpSession(cfg, clock)                 # cfg: drivers.ntcip_config.NtcipConfig
    await s.open()                              # inside the poller's own event loop
    r = await s.get([oid, ...])                 # -> Response
    r.error          # None, "timeout", "transport: ...", or "noSuchName" etc. (r.index: 1-based)
    r.values         # {oid: value} as the unit sent them
    s.close()

pysnmp counts request timeouts in ticks of its dispatcher's timer, 100 ms by
default: a 50 ms timeout expired at the next tick, 1-100 ms after sending,
and a unit answering in 20-40 ms lost a quarter to half of its polls. The
session registers its own dispatcher ticking every 10 ms (pysnmp's finest)
and asks for the configured timeout plus one tick, so a request expires
between timeout_s and timeout_s + 10 ms after it was sent, never before.
This module is the mechanism (one request, one answer); what to ask and what
an answer means is the poller's business (drivers/ntcip.py).
"""

TICK_S = 0.01          # pysnmp's finest timer resolution

AUTH = {"SHA-224": "USM_AUTH_HMAC128_SHA224", "SHA-256": "USM_AUTH_HMAC192_SHA256",
        "SHA-384": "USM_AUTH_HMAC256_SHA384", "SHA-512": "USM_AUTH_HMAC384_SHA512"}
PRIV = {"AES-128": "USM_PRIV_CFB128_AES", "AES-192": "USM_PRIV_CFB192_AES",
        "AES-256": "USM_PRIV_CFB256_AES"}

# What a varbind value means for the poller.
OK, ABSENT, WRONG_TYPE = "ok", "absent", "wrong_type"


class Response:
    """The outcome of one request: error (None when answered) and values, with send/receive ms."""

    __slots__ = ("sent", "rx", "error", "index", "values", "binds")

    def __init__(self, sent, rx, error=None, index=0, values=None, binds=()):
        self.sent, self.rx, self.error, self.index = sent, rx, error, index
        self.values = values or {}
        self.binds = list(binds)          # [(oid, value)] in order (a GETBULK may repeat an OID)

    @property
    def sample(self):
        """The midpoint of request and response: when the unit most likely read its objects."""
        return (self.sent + self.rx) // 2


def classify(val):
    """(OK, int value) for an INTEGER; (ABSENT, None) for noSuchObject / noSuchInstance /
    endOfMibView (the unit has no such object); (WRONG_TYPE, type name) otherwise."""
    from pyasn1.type.univ import Integer
    from pysnmp.proto.rfc1905 import NoSuchObject, NoSuchInstance, EndOfMibView
    if val is None or isinstance(val, (NoSuchObject, NoSuchInstance, EndOfMibView)):
        return ABSENT, None
    if isinstance(val, Integer):
        return OK, int(val)
    return WRONG_TYPE, type(val).__name__


def auth_data(cfg):
    """pysnmp's CommunityData (v1, v2c) or UsmUserData (v3 authPriv) for a unit's config."""
    from pysnmp.hlapi.v3arch.asyncio import auth, CommunityData, UsmUserData
    if cfg.version == "v3":
        return UsmUserData(cfg.user, authKey=cfg.auth_key, privKey=cfg.priv_key,
                           authProtocol=getattr(auth, AUTH[cfg.auth_protocol]),
                           privProtocol=getattr(auth, PRIV[cfg.priv_protocol]))
    return CommunityData(cfg.community, mpModel=0 if cfg.version == "v1" else 1)


class SnmpSession:
    """GET / GETBULK / SET to one unit, timeouts and retries as configured."""

    tick_s = TICK_S            # the bench sets pysnmp's default (0.1 s) to show the difference

    def __init__(self, cfg, clock):
        self.cfg = cfg
        self.clock = clock
        self.engine = None
        self.target = None
        self.auth = None

    async def open(self):
        from pysnmp.carrier.asyncio.dispatch import AsyncioDispatcher
        from pysnmp.hlapi.v3arch.asyncio import SnmpEngine, UdpTransportTarget
        self.engine = SnmpEngine()
        dispatcher = AsyncioDispatcher()
        dispatcher.set_timer_resolution(self.tick_s)
        self.engine.register_transport_dispatcher(dispatcher)
        self.auth = auth_data(self.cfg)
        self.target = await UdpTransportTarget.create(
            (self.cfg.host, self.cfg.port), timeout=self.cfg.timeout_s + self.tick_s,
            retries=self.cfg.retries)

    def close(self):
        if self.engine is not None:
            try:
                self.engine.close_dispatcher()
            except Exception:
                pass
            self.engine = None

    async def get(self, oids):
        from pysnmp.hlapi.v3arch.asyncio import get_cmd
        return await self._request(get_cmd, [self._bind(o) for o in oids])

    async def set(self, values):
        """SET [(oid, int)]: the unit applies them all or none (RFC 3416 4.2.5)."""
        from pysnmp.hlapi.v3arch.asyncio import set_cmd
        from pysnmp.proto.rfc1902 import Integer32
        return await self._request(set_cmd, [self._bind(o, Integer32(v)) for o, v in values])

    async def bulk(self, oids, repetitions):
        """GETBULK (v2c, v3): up to `repetitions` successors of each OID, in one round trip."""
        from pysnmp.hlapi.v3arch.asyncio import bulk_cmd
        return await self._request(bulk_cmd, [self._bind(o) for o in oids], 0, repetitions)

    @staticmethod
    def _bind(oid, value=None):
        from pysnmp.hlapi.v3arch.asyncio import ObjectType, ObjectIdentity
        if value is None:
            return ObjectType(ObjectIdentity(oid))
        return ObjectType(ObjectIdentity(oid), value)

    async def _request(self, cmd, binds, *args):
        from pysnmp.hlapi.v3arch.asyncio import ContextData
        sent = self.clock()
        err_ind, err_status, err_index, got = await cmd(
            self.engine, self.auth, self.target, ContextData(), *args, *binds, lookupMib=False)
        rx = self.clock()
        if err_ind:
            text = str(err_ind)
            return Response(sent, rx, "timeout" if "timeout" in text.lower() else "transport: " + text)
        binds = [(tuple(oid), val) for oid, val in got]
        values = dict(binds)
        if int(err_status):
            return Response(sent, rx, err_status.prettyPrint(), int(err_index), values, binds)
        return Response(sent, rx, None, 0, values, binds)
