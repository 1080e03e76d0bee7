"""An emulated NTCIP 1202 detector unit: a real SNMP agent on 127.0.0.1, as strict as a device.

    emu = NtcipEmulator(detectors=16, delay_ms=40, jitter_ms=5)
    emu.start()                          # binds 127.0.0.1 on a free port: emu.port
    emu.observe(sim.detector_log[k:])    # loop edges from the simulator
    emu.tick(now_ms)                     # presence, volume/occupancy periods
    emu.stop()

It serves the detector objects drivers/ntcip.py uses (status groups, the
vehicle detector table's thresholds and alarms, volume/occupancy, the
pedestrian detector table and status groups) and the MIB-II system group,
built and parsed with pysnmp's protocol modules on an asyncio UDP endpoint on
its own thread. Like a device, and unlike a forgiving test double, it:

- answers after `delay_ms` plus up to `jitter_ms` (each request on its own timer);
- answers GET, GET-NEXT, GETBULK (v2c) and SET; a walk ends in endOfMibView (v2c)
  or noSuchName (v1);
- tells noSuchObject (the unit has no such object) from noSuchInstance (no such
  row) in v2c; in v1 answers exactly per RFC 1157: error-status noSuchName or
  badValue, error-index of the first failing varbind, the request's varbinds
  echoed unchanged (`v1_errors="lenient"` instead answers NULL values with no
  error, as some sloppy units do);
- applies a SET only if every varbind is valid (RFC 3416 4.2.5), else refuses it
  with notWritable / noCreation / wrongType / wrongValue (v1: noSuchName / badValue);
- serves SNMPv3 (USM, authPriv) when given `v3_user` (hil/ntcip_v3.py).

Faults and variants for the tests:

  delay_ms, jitter_ms   response time
  drop_rate             share of requests never answered (a timeout for the poller)
  silent                answer nothing (the unit hangs; stop() unplugs it outright)
  columns_off           optional objects the unit lacks: "alarms", "reported_alarms",
                        "volume", "ped" (every pedestrian object), "thresholds"
  wrong_type            OIDs answered with an OCTET STRING instead of an INTEGER
  garbage               {oid: int} values served instead of the real ones
  read_only             refuse every SET (notWritable / v1 noSuchName)
  alarms / reported_alarms / ped_alarms   {detector: bits}
"""

import asyncio
import random
import threading

from pyasn1.codec.ber import decoder, encoder
from pysnmp.proto import api

from drivers.ntcip_objects import (
    COL_ALARMS, COL_GROUP_ACTIVE, COL_GROUP_ALARMS, COL_GROUP_NUMBER, COL_OCCUPANCY,
    COL_REPORTED_ALARMS, COL_VOLUME, COL_PED_ALARMS, THRESHOLDS,
    ACTIVE_VOLUME_OCCUPANCY_DETECTORS, MAX_STATUS_GROUPS, MAX_VEHICLE_DETECTORS,
    MAX_PED_DETECTORS, MAX_PED_STATUS_GROUPS, VOLUME_OCCUPANCY_PERIOD, VOLUME_OCCUPANCY_SEQUENCE,
    SYS_DESCR, SYS_OBJECT_ID, SYS_UPTIME, SYS_NAME, status_group, vehicle_detector,
    volume_occupancy, ped_detector, ped_status_group)

# SNMP error-status values (RFC 1157, RFC 3416).
NO_SUCH_NAME, BAD_VALUE, GEN_ERR = 2, 3, 5
WRONG_TYPE, WRONG_VALUE, NO_CREATION, NOT_WRITABLE = 7, 10, 11, 17
MAX_BULK_VARBINDS = 64


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, emu):
        self.emu = emu

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        emu = self.emu
        reply = emu.answer(data)
        if reply is None:
            return
        delay = emu.delay_ms + (emu.rng.uniform(0, emu.jitter_ms) if emu.jitter_ms else 0)
        if delay > 0:
            emu.loop.call_later(delay / 1000, self.transport.sendto, reply, addr)
        else:
            self.transport.sendto(reply, addr)


class NtcipEmulator:
    """One detector unit's objects, served over SNMP from the simulator's loops."""

    def __init__(self, detectors=16, community="public", host="127.0.0.1", port=0,
                 vo_period_s=1, seed=1, ped_detectors=0, delay_ms=0, jitter_ms=0,
                 v1_errors="rfc1157", v3_user=None, v3_auth_key=None, v3_priv_key=None,
                 v3_auth_protocol="SHA-256", v3_priv_protocol="AES-128", columns_off=(),
                 read_only=False, wrong_type=()):
        self.n = detectors
        self.n_ped = ped_detectors
        self.community = community
        self.host, self.port = host, port
        self.vo_period_ms = vo_period_s * 1000
        self.delay_ms, self.jitter_ms = delay_ms, jitter_ms
        self.v1_errors = v1_errors
        self.v3 = (v3_user, v3_auth_protocol, v3_auth_key, v3_priv_protocol, v3_priv_key) \
            if v3_user else None
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.presence = {d: False for d in range(1, detectors + 1)}
        self.ped_presence = {d: False for d in range(1, ped_detectors + 1)}
        self.on_since = {d: None for d in self.presence}
        self.on_ms = {d: 0 for d in self.presence}
        self.count = {d: 0 for d in self.presence}
        self.volume = {d: 0 for d in self.presence}
        self.occupancy = {d: 0 for d in self.presence}
        self.thresholds = {}            # (table, column, detector) -> value, as SET
        self.alarms = {}
        self.reported_alarms = {}
        self.ped_alarms = {}
        self.sequence = 0
        self.period_start = None
        self.started_ms = None
        self.now_ms = 0
        self.pending = []
        # faults and variants
        self.drop_rate = 0.0
        self.silent = False
        self.columns_off = set(columns_off)
        self.wrong_type = set(wrong_type)
        self.garbage = {}
        self.read_only = read_only
        self.served = {"requests": 0, "answered": 0, "dropped": 0, "undecodable": 0,
                       "sets_applied": 0, "sets_refused": 0}
        self.thread = None
        self.loop = None
        self.transport = None
        self.v3_engine = None

    # -- the server -----------------------------------------------------------

    def start(self):
        """Serve on host:port (port 0: a free one, then in self.port) until stop()."""
        ready = threading.Event()
        errors = []

        def run():
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self.loop = loop
            try:
                if self.v3 is not None:
                    from hil.ntcip_v3 import serve_v3
                    self.v3_engine, self.port = serve_v3(self, loop)
                    transport = None
                else:
                    transport, _ = loop.run_until_complete(loop.create_datagram_endpoint(
                        lambda: _Protocol(self), local_addr=(self.host, self.port)))
                    self.port = transport.get_extra_info("sockname")[1]
            except Exception as e:
                errors.append(e)
                ready.set()
                loop.close()
                return
            self.transport = transport
            ready.set()
            try:
                loop.run_forever()
            finally:
                if transport is not None:
                    transport.close()
                if self.v3_engine is not None:
                    self.v3_engine.close_dispatcher()
                    self.v3_engine = None
                loop.run_until_complete(asyncio.sleep(0))
                loop.close()

        self.thread = threading.Thread(target=run, name="ntcip-emulator", daemon=True)
        self.thread.start()
        ready.wait(5.0)
        if errors:
            raise errors[0]
        return self.port

    def stop(self):
        """The unit is gone (unplugged): the port closes, requests go unanswered."""
        if self.loop is not None and self.thread is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=5.0)
        self.thread = self.loop = self.transport = None

    # -- the simulator side ----------------------------------------------------------

    def observe(self, edges):
        """Exact loop edges (ms, detector, on) from the simulator's detector log."""
        with self.lock:
            for t, d, on in edges:
                if d in self.presence:
                    self.pending.append((t, d, bool(on)))

    def tick(self, now_ms):
        """Apply edges up to now_ms; close volume/occupancy periods that ended."""
        with self.lock:
            self.now_ms = now_ms
            if self.period_start is None:
                self.period_start = self.started_ms = now_ms
            due = sorted(e for e in self.pending if e[0] <= now_ms)
            self.pending = [e for e in self.pending if e[0] > now_ms]
            while self.vo_period_ms and self.period_start + self.vo_period_ms <= now_ms:
                end = self.period_start + self.vo_period_ms
                while due and due[0][0] <= end:
                    self._apply(*due.pop(0))
                self._close_period(end)
            for e in due:
                self._apply(*e)

    def _apply(self, t, d, on):
        if self.presence[d] == on:
            return
        self.presence[d] = on
        if on:
            self.on_since[d] = t
            self.count[d] += 1
        else:
            self.on_ms[d] += t - max(self.on_since[d], self.period_start)
            self.on_since[d] = None

    def _close_period(self, end):
        for d in self.presence:
            on = self.on_ms[d]
            if self.on_since[d] is not None:
                on += end - max(self.on_since[d], self.period_start)
            self.volume[d] = min(self.count[d], 254)
            self.occupancy[d] = min(200, on * 200 // self.vo_period_ms)
            self.count[d] = 0
            self.on_ms[d] = 0
        self.period_start = end
        self.sequence = (self.sequence + 1) % 256

    # -- the objects -------------------------------------------------------------------

    def objects(self):
        """{instance OID: (type, value)} of every object the unit has now.
        Types: "i" INTEGER, "s" OCTET STRING, "o" OBJECT IDENTIFIER, "t" TimeTicks."""
        off = self.columns_off
        n, groups = self.n, (self.n + 7) // 8
        o = {SYS_DESCR: ("s", b"edge-agent NTCIP 1202 detector unit emulator"),
             SYS_OBJECT_ID: ("o", (1, 3, 6, 1, 4, 1, 1206, 4, 2, 1)),
             SYS_UPTIME: ("t", (self.now_ms - (self.started_ms or 0)) // 10),
             SYS_NAME: ("s", b"ntcip-emulator"),
             MAX_VEHICLE_DETECTORS: ("i", n), MAX_STATUS_GROUPS: ("i", groups)}
        self._groups(o, status_group, groups, self.presence,
                     lambda d: self.alarms.get(d) or self.reported_alarms.get(d))
        for d in range(1, n + 1):
            if "thresholds" not in off:
                for _, col, _, _ in THRESHOLDS:
                    o[vehicle_detector(col, d)] = ("i", self.thresholds.get(("v", col, d), 0))
            if "alarms" not in off:
                o[vehicle_detector(COL_ALARMS, d)] = ("i", self.alarms.get(d, 0))
            if "reported_alarms" not in off:
                o[vehicle_detector(COL_REPORTED_ALARMS, d)] = ("i", self.reported_alarms.get(d, 0))
        if "volume" not in off:
            o[VOLUME_OCCUPANCY_SEQUENCE] = ("i", self.sequence)
            o[VOLUME_OCCUPANCY_PERIOD] = ("i", self.vo_period_ms // 1000)
            o[ACTIVE_VOLUME_OCCUPANCY_DETECTORS] = ("i", n)
            for d in range(1, n + 1):
                o[volume_occupancy(COL_VOLUME, d)] = ("i", self.volume[d])
                o[volume_occupancy(COL_OCCUPANCY, d)] = ("i", self.occupancy[d])
        if self.n_ped and "ped" not in off:
            pgroups = (self.n_ped + 7) // 8
            o[MAX_PED_DETECTORS] = ("i", self.n_ped)
            o[MAX_PED_STATUS_GROUPS] = ("i", pgroups)
            for d in range(1, self.n_ped + 1):
                for _, _, col, _ in THRESHOLDS:
                    o[ped_detector(col, d)] = ("i", self.thresholds.get(("p", col, d), 0))
                o[ped_detector(COL_PED_ALARMS, d)] = ("i", self.ped_alarms.get(d, 0))
            self._groups(o, ped_status_group, pgroups, self.ped_presence, self.ped_alarms.get)
        for oid, v in self.garbage.items():
            if oid in o:
                o[oid] = ("i", v)
        for oid in self.wrong_type:
            if oid in o:
                o[oid] = ("s", b"\xde\xad")
        return o

    @staticmethod
    def _groups(o, oid_of, groups, presence, alarmed):
        """Status groups (number, active, alarms) of 8 detectors each into o."""
        for g in range(1, groups + 1):
            active = alarms = 0
            for k in range(8):
                d = 8 * g - 7 + k
                if presence.get(d):
                    active |= 1 << k
                if alarmed(d):
                    alarms |= 1 << k
            o[oid_of(COL_GROUP_NUMBER, g)] = ("i", g)
            o[oid_of(COL_GROUP_ACTIVE, g)] = ("i", active)
            o[oid_of(COL_GROUP_ALARMS, g)] = ("i", alarms)

    def value(self, oid):
        """The integer served for oid, or None when the unit has no such object (tests)."""
        with self.lock:
            v = self.objects().get(tuple(oid))
        return v[1] if v is not None and v[0] == "i" else None

    def writable(self, oid):
        """(lo, hi, key) for an object a SET may write, or None."""
        if oid == VOLUME_OCCUPANCY_PERIOD and "volume" not in self.columns_off:
            return (1, 255, "period")
        head, col, idx = oid[:-2], oid[-2] if len(oid) > 2 else None, oid[-1]
        for _, vcol, pcol, (lo, hi) in THRESHOLDS:
            if head == vehicle_detector(0, 0)[:-2] and col == vcol and "thresholds" not in self.columns_off:
                return (lo, hi, ("v", vcol, idx))
            if head == ped_detector(0, 0)[:-2] and col == pcol and self.n_ped \
                    and "ped" not in self.columns_off:
                return (lo, hi, ("p", pcol, idx))
        return None

    def check_set(self, binds, objs):
        """(error status, 1-based index) for the first varbind a SET cannot apply, or (0, 0).
        binds: [(oid tuple, int value or None if not an INTEGER)]."""
        for i, (oid, v) in enumerate(binds, 1):
            w = self.writable(oid)
            if self.read_only or w is None:
                return (NOT_WRITABLE if oid in objs else NO_CREATION), i
            if oid not in objs:
                return NO_CREATION, i
            if v is None:
                return WRONG_TYPE, i
            if not w[0] <= v <= w[1]:
                return WRONG_VALUE, i
        return 0, 0

    def apply_set(self, binds):
        for oid, v in binds:
            key = self.writable(oid)[2]
            if key == "period":
                self.vo_period_ms = v * 1000
            else:
                self.thresholds[key] = v

    @staticmethod
    def exists(oid, objs):
        """Whether the unit has the object (column or scalar) of an instance OID."""
        head = oid[:-1]
        return any(k[:-1] == head for k in objs)

    # -- SNMP v1 / v2c -------------------------------------------------------------------

    def answer(self, data):
        """The response datagram to one request datagram, or None (dropped)."""
        self.served["requests"] += 1
        if self.silent or (self.drop_rate and self.rng.random() < self.drop_rate):
            self.served["dropped"] += 1
            return None
        try:
            version = int(api.decodeMessageVersion(data))
            pmod = api.PROTOCOL_MODULES[version]
            req, _ = decoder.decode(data, asn1Spec=pmod.Message())
        except Exception:
            self.served["undecodable"] += 1
            return None
        if bytes(pmod.apiMessage.get_community(req)) != self.community.encode():
            self.served["dropped"] += 1       # wrong community: agents stay silent
            return None
        rsp = pmod.apiMessage.get_response(req)
        req_pdu = pmod.apiMessage.get_pdu(req)
        rsp_pdu = pmod.apiMessage.get_pdu(rsp)
        v1 = version == api.SNMP_VERSION_1
        req_binds = [(tuple(o), v) for o, v in pmod.apiPDU.get_varbinds(req_pdu)]
        with self.lock:
            objs = self.objects()
            if req_pdu.isSameTypeWith(pmod.GetRequestPDU()):
                status, index, binds = self._get(pmod, v1, req_binds, objs)
            elif req_pdu.isSameTypeWith(pmod.GetNextRequestPDU()):
                status, index, binds = self._next(pmod, v1, req_binds, objs)
            elif not v1 and req_pdu.isSameTypeWith(pmod.GetBulkRequestPDU()):
                status, index, binds = self._bulk(pmod, req_pdu, req_binds, objs)
            elif req_pdu.isSameTypeWith(pmod.SetRequestPDU()):
                status, index, binds = self._set(pmod, v1, req_binds, objs)
            else:
                status, index, binds = GEN_ERR, 1, None
        if status:
            if v1 and status not in (NO_SUCH_NAME, BAD_VALUE, GEN_ERR):
                # RFC 2576 4.3: v2 errors mapped to the v1 set
                status = BAD_VALUE if status in (WRONG_TYPE, WRONG_VALUE) else NO_SUCH_NAME
            pmod.apiPDU.set_error_status(rsp_pdu, status)
            pmod.apiPDU.set_error_index(rsp_pdu, index)
            # RFC 1157 4.1.2-4.1.5: on error the response echoes the request's varbinds
            binds = list(pmod.apiPDU.get_varbinds(req_pdu))
        pmod.apiPDU.set_varbinds(rsp_pdu, binds)
        self.served["answered"] += 1
        return encoder.encode(rsp)

    @staticmethod
    def _typed(pmod, tv):
        kind, v = tv
        if kind == "i":
            return pmod.Integer(v)
        if kind == "s":
            return pmod.OctetString(v)
        if kind == "o":
            return pmod.ObjectIdentifier(v)
        return pmod.TimeTicks(v)

    def _get(self, pmod, v1, req_binds, objs):
        binds = []
        for i, (oid, _) in enumerate(req_binds, 1):
            tv = objs.get(oid)
            if tv is not None:
                binds.append((oid, self._typed(pmod, tv)))
            elif v1 and self.v1_errors == "rfc1157":
                return NO_SUCH_NAME, i, None
            elif v1:
                binds.append((oid, pmod.Null()))
            elif self.exists(oid, objs):
                binds.append((oid, api.v2c.NoSuchInstance("")))
            else:
                binds.append((oid, api.v2c.NoSuchObject("")))
        return 0, 0, binds

    @staticmethod
    def _successor(oid, order):
        for k in order:
            if k > oid:
                return k
        return None

    def _next(self, pmod, v1, req_binds, objs):
        order = sorted(objs)
        binds = []
        for i, (oid, _) in enumerate(req_binds, 1):
            nxt = self._successor(oid, order)
            if nxt is not None:
                binds.append((nxt, self._typed(pmod, objs[nxt])))
            elif v1:
                return NO_SUCH_NAME, i, None
            else:
                binds.append((oid, api.v2c.EndOfMibView("")))
        return 0, 0, binds

    def _bulk(self, pmod, req_pdu, req_binds, objs):
        """RFC 3416 4.2.3: N non-repeaters once, then M rounds over the R repeaters."""
        order = sorted(objs)
        n = max(0, min(int(pmod.apiBulkPDU.get_non_repeaters(req_pdu)), len(req_binds)))
        m = max(0, int(pmod.apiBulkPDU.get_max_repetitions(req_pdu)))
        _, _, binds = self._next(pmod, False, req_binds[:n], objs)
        cursor = [oid for oid, _ in req_binds[n:]]
        for _ in range(m):
            if not cursor or len(binds) + len(cursor) > MAX_BULK_VARBINDS:
                break
            row = []
            for oid in cursor:
                nxt = self._successor(oid, order) if oid is not None else None
                if nxt is None:
                    row.append((oid if oid is not None else req_binds[0][0],
                                api.v2c.EndOfMibView("")))
                else:
                    row.append((nxt, self._typed(pmod, objs[nxt])))
            binds.extend(row)
            cursor = [o if not isinstance(v, api.v2c.EndOfMibView) else None for o, v in row]
            if all(c is None for c in cursor):
                break
        return 0, 0, binds

    def _set(self, pmod, v1, req_binds, objs):
        from pyasn1.type.univ import Integer
        binds = [(oid, int(v) if isinstance(v, Integer) else None) for oid, v in req_binds]
        status, index = self.check_set(binds, objs)
        if status:
            self.served["sets_refused"] += 1
            return status, index, None
        self.apply_set(binds)
        self.served["sets_applied"] += 1
        return 0, 0, [(oid, v) for oid, v in req_binds]
