"""An emulated NTCIP 1202 detector unit: a real SNMP v1/v2c agent on 127.0.0.1.

    emu = NtcipEmulator(detectors=16)
    emu.start()                          # binds 127.0.0.1 on a free port: emu.port
    emu.observe(sim.detector_log[k:])    # loop edges from the simulator
    emu.tick(now_ms)                     # presence, volume/occupancy periods
    emu.stop()

It answers GET and GET-NEXT for the objects drivers/ntcip.py polls (status
groups, detector alarms and reported alarms, volume/occupancy), built and
parsed with pysnmp's protocol modules on an asyncio UDP endpoint running on
its own thread. Faults for the tests:

  drop_rate        share of requests never answered (a timeout for the poller)
  silent           answer nothing (the unit hangs; stop() unplugs it outright)
  wrong_type       OIDs answered with an OCTET STRING instead of an INTEGER
  garbage          {oid: int} values served instead of the real ones
  alarms / reported_alarms   {detector: bits} of NTCIP cols 13 / 14
"""

import asyncio
import random
import threading

from pyasn1.codec.ber import decoder, encoder
from pysnmp.proto import api

from drivers.ntcip import (COL_ALARMS, COL_GROUP_ACTIVE, COL_GROUP_ALARMS, COL_GROUP_NUMBER,
                           COL_OCCUPANCY, COL_REPORTED_ALARMS, COL_VOLUME,
                           ACTIVE_VOLUME_OCCUPANCY_DETECTORS, MAX_STATUS_GROUPS,
                           MAX_VEHICLE_DETECTORS, VOLUME_OCCUPANCY_PERIOD,
                           VOLUME_OCCUPANCY_SEQUENCE, status_group, vehicle_detector,
                           volume_occupancy)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, emu):
        self.emu = emu

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        reply = self.emu.answer(data)
        if reply is not None:
            self.transport.sendto(reply, addr)


class NtcipEmulator:
    """One detector unit's objects, served over SNMP from the simulator's loops."""

    def __init__(self, detectors=16, community="public", host="127.0.0.1", port=0,
                 vo_period_s=1, seed=1):
        self.n = detectors
        self.community = community
        self.host, self.port = host, port
        self.vo_period_ms = vo_period_s * 1000
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.presence = {d: False for d in range(1, detectors + 1)}
        self.on_since = {d: None for d in self.presence}
        self.on_ms = {d: 0 for d in self.presence}
        self.count = {d: 0 for d in self.presence}
        self.volume = {d: 0 for d in self.presence}
        self.occupancy = {d: 0 for d in self.presence}
        self.alarms = {}
        self.reported_alarms = {}
        self.sequence = 0
        self.period_start = None
        self.pending = []
        # faults
        self.drop_rate = 0.0
        self.silent = False
        self.wrong_type = set()
        self.garbage = {}
        self.served = {"requests": 0, "answered": 0, "dropped": 0, "undecodable": 0}
        self.thread = None
        self.loop = None
        self.transport = None

    # -- the server -----------------------------------------------------------

    def start(self):
        """Serve on host:port (port 0: a free one, then in self.port) until stop()."""
        ready = threading.Event()
        errors = []

        def run():
            loop = asyncio.new_event_loop()
            self.loop = loop
            try:
                transport, _ = loop.run_until_complete(loop.create_datagram_endpoint(
                    lambda: _Protocol(self), local_addr=(self.host, self.port)))
            except Exception as e:
                errors.append(e)
                ready.set()
                loop.close()
                return
            self.transport = transport
            self.port = transport.get_extra_info("sockname")[1]
            ready.set()
            try:
                loop.run_forever()
            finally:
                transport.close()
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
            if self.period_start is None:
                self.period_start = now_ms
            due = sorted(e for e in self.pending if e[0] <= now_ms)
            self.pending = [e for e in self.pending if e[0] > now_ms]
            while self.period_start + self.vo_period_ms <= now_ms:
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

    def value(self, oid):
        """The integer served for oid, or None when the unit has no such object."""
        if oid in self.garbage:
            return self.garbage[oid]
        if oid == MAX_VEHICLE_DETECTORS:
            return self.n
        if oid == MAX_STATUS_GROUPS:
            return (self.n + 7) // 8
        if oid == VOLUME_OCCUPANCY_SEQUENCE:
            return self.sequence
        if oid == VOLUME_OCCUPANCY_PERIOD:
            return self.vo_period_ms // 1000
        if oid == ACTIVE_VOLUME_OCCUPANCY_DETECTORS:
            return self.n
        head, col, idx = oid[:-2], oid[-2], oid[-1]
        if head == status_group(0, 0)[:-2] and 1 <= idx <= (self.n + 7) // 8:
            if col == COL_GROUP_NUMBER:
                return idx
            bits = 0
            for k in range(8):
                d = 8 * idx - 7 + k
                if col == COL_GROUP_ACTIVE and self.presence.get(d):
                    bits |= 1 << k
                if col == COL_GROUP_ALARMS and (self.alarms.get(d) or self.reported_alarms.get(d)):
                    bits |= 1 << k
            return bits if col in (COL_GROUP_ACTIVE, COL_GROUP_ALARMS) else None
        if head == vehicle_detector(0, 0)[:-2] and idx in self.presence:
            if col == COL_ALARMS:
                return self.alarms.get(idx, 0)
            if col == COL_REPORTED_ALARMS:
                return self.reported_alarms.get(idx, 0)
            return None
        if head == volume_occupancy(0, 0)[:-2] and idx in self.presence:
            if col == COL_VOLUME:
                return self.volume[idx]
            if col == COL_OCCUPANCY:
                return self.occupancy[idx]
        return None

    def _oids(self):
        out = [MAX_VEHICLE_DETECTORS, MAX_STATUS_GROUPS, VOLUME_OCCUPANCY_SEQUENCE,
               VOLUME_OCCUPANCY_PERIOD, ACTIVE_VOLUME_OCCUPANCY_DETECTORS]
        for g in range(1, (self.n + 7) // 8 + 1):
            for c in (COL_GROUP_NUMBER, COL_GROUP_ACTIVE, COL_GROUP_ALARMS):
                out.append(status_group(c, g))
        for d in range(1, self.n + 1):
            out.append(vehicle_detector(COL_ALARMS, d))
            out.append(vehicle_detector(COL_REPORTED_ALARMS, d))
            out.append(volume_occupancy(COL_VOLUME, d))
            out.append(volume_occupancy(COL_OCCUPANCY, d))
        return sorted(out)

    # -- SNMP ----------------------------------------------------------------------------

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
        binds = []
        error = None
        with self.lock:
            if req_pdu.isSameTypeWith(pmod.GetRequestPDU()):
                for i, (oid, _) in enumerate(pmod.apiPDU.get_varbinds(req_pdu)):
                    o = tuple(oid)
                    binds.append((oid, self._typed(pmod, o, version)))
                    if binds[-1][1] is None:
                        error = error or i + 1
                        binds[-1] = (oid, pmod.Null())
            elif req_pdu.isSameTypeWith(pmod.GetNextRequestPDU()):
                oids = self._oids()
                for i, (oid, _) in enumerate(pmod.apiPDU.get_varbinds(req_pdu)):
                    o = tuple(oid)
                    nxt = next((x for x in oids if x > o), None)
                    if nxt is None:
                        error = error or i + 1
                        binds.append((oid, pmod.Null()))
                    else:
                        binds.append((pmod.ObjectIdentifier(nxt), self._typed(pmod, nxt, version)))
            else:
                error = 1
                binds = list(pmod.apiPDU.get_varbinds(req_pdu))
        if error:
            if version == api.SNMP_VERSION_1:
                pmod.apiPDU.set_error_status(rsp_pdu, 2)          # noSuchName
                pmod.apiPDU.set_error_index(rsp_pdu, error)
                binds = list(pmod.apiPDU.get_varbinds(req_pdu))
            else:
                binds = [(oid, val if not isinstance(val, pmod.Null) else
                          api.v2c.NoSuchInstance("")) for oid, val in binds]
        pmod.apiPDU.set_varbinds(rsp_pdu, binds)
        self.served["answered"] += 1
        return encoder.encode(rsp)

    def _typed(self, pmod, oid, version):
        v = self.value(oid)
        if v is None:
            return None
        if oid in self.wrong_type:
            return pmod.OctetString(b"\xde\xad")
        return pmod.Integer(v)
