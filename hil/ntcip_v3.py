"""SNMPv3 for the NTCIP emulator: pysnmp's own agent engine (USM authPriv) over the emulator's objects.

USM (RFC 3414: engine discovery, time windows, HMAC-SHA-2 per RFC 7860, AES per
RFC 3826) is too much to hand-roll for a test double, so the v3 emulator runs
pysnmp's command responders with one user at authPriv and reads and writes the
same objects, with the same SET rules, as the v1/v2c emulator
(hil/ntcip_emulator.py). A request with the wrong keys is dropped by the engine
(the manager sees a timeout or an authentication report), as a device would.
The response delay is applied by holding each outgoing datagram.
"""

import socket

from drivers.ntcip_session import AUTH, PRIV


class _Instrum:
    """The MIB instrumentation pysnmp's responders call: the emulator's objects."""

    def __init__(self, emu):
        self.emu = emu

    def _typed(self, tv):
        from pysnmp.proto import rfc1902
        kind, v = tv
        return {"i": rfc1902.Integer32, "s": rfc1902.OctetString,
                "o": rfc1902.ObjectName, "t": rfc1902.TimeTicks}[kind](v)

    def read_variables(self, *binds, **context):
        from pysnmp.proto import rfc1905
        emu = self.emu
        emu.served["requests"] += 1
        with emu.lock:
            objs = emu.objects()
            out = []
            for oid, _ in binds:
                o = tuple(oid)
                if o in objs:
                    out.append((oid, self._typed(objs[o])))
                elif emu.exists(o, objs):
                    out.append((oid, rfc1905.noSuchInstance))
                else:
                    out.append((oid, rfc1905.noSuchObject))
        emu.served["answered"] += 1
        return out

    def read_next_variables(self, *binds, **context):
        from pysnmp.proto import rfc1902, rfc1905
        emu = self.emu
        emu.served["requests"] += 1
        with emu.lock:
            objs = emu.objects()
            order = sorted(objs)
            out = []
            for oid, _ in binds:
                nxt = emu._successor(tuple(oid), order)
                if nxt is None:
                    out.append((oid, rfc1905.endOfMibView))
                else:
                    out.append((rfc1902.ObjectName(nxt), self._typed(objs[nxt])))
        emu.served["answered"] += 1
        return out

    def write_variables(self, *binds, **context):
        from pyasn1.type.univ import Integer
        from pysnmp.smi import error as smi_error
        from hil.ntcip_emulator import NOT_WRITABLE, NO_CREATION, WRONG_TYPE
        emu = self.emu
        emu.served["requests"] += 1
        plain = [(tuple(o), int(v) if isinstance(v, Integer) else None) for o, v in binds]
        with emu.lock:
            status, index = emu.check_set(plain, emu.objects())
            if status:
                emu.served["sets_refused"] += 1
                err = {NOT_WRITABLE: smi_error.NotWritableError,
                       NO_CREATION: smi_error.NoCreationError,
                       WRONG_TYPE: smi_error.WrongTypeError}.get(status, smi_error.WrongValueError)
                raise err(name=binds[index - 1][0], idx=index - 1)
            emu.apply_set(plain)
        emu.served["sets_applied"] += 1
        emu.served["answered"] += 1
        return list(binds)


def serve_v3(emu, loop):
    """Start the v3 agent for `emu` on its host:port in `loop`; returns (engine, port)."""
    from pysnmp.carrier.asyncio.dgram import udp
    from pysnmp.entity import config, engine
    from pysnmp.entity.rfc3413 import cmdrsp, context
    user, auth_protocol, auth_key, priv_protocol, priv_key = emu.v3
    snmp = engine.SnmpEngine()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((emu.host, emu.port))
    port = sock.getsockname()[1]
    transport = udp.UdpTransport(loop=loop).open_server_mode(sock=sock)
    if emu.delay_ms or emu.jitter_ms:
        send = transport.send_message

        def delayed(msg, addr):
            d = emu.delay_ms + (emu.rng.uniform(0, emu.jitter_ms) if emu.jitter_ms else 0)
            loop.call_later(d / 1000, send, msg, addr)
        transport.send_message = delayed
    config.add_transport(snmp, udp.DOMAIN_NAME, transport)
    config.add_v3_user(snmp, user, authProtocol=getattr(config, AUTH[auth_protocol]),
                       authKey=auth_key, privProtocol=getattr(config, PRIV[priv_protocol]),
                       privKey=priv_key)
    ctx = context.SnmpContext(snmp)
    ctx.unregister_context_name(b"")
    ctx.register_context_name(b"", _Instrum(emu))
    for responder in (cmdrsp.GetCommandResponder, cmdrsp.NextCommandResponder,
                      cmdrsp.BulkCommandResponder, cmdrsp.SetCommandResponder):
        responder(snmp, ctx)
    return snmp, port
