"""A small asyncio MQTT 3.1.1 client for the fleet simulator: thousands of sessions, one thread.

    c = FleetClient(client_id, username, password, on_message, will=(topic, payload))
    await c.connect(host, port)          # CONNECT/CONNACK; raises ConnectionError on refusal
    await c.subscribe([(topic, qos)])    # returns the SUBACK codes (0x80: refused)
    await c.publish(topic, payload, qos=1, retain=False)   # qos 1 waits for the PUBACK
    c.closed                             # a future done when the connection is lost

paho runs one network thread per client; 10,000 simulated units would be
10,000 threads. This speaks only what a unit needs (CONNECT with will and
credentials, PUBLISH QoS 0/1, PUBACK, SUBSCRIBE, PINGREQ), over one asyncio
loop. The real agent's link stays paho (drivers/mqtt_link.py); benches run a
few real agents beside the fleet.
"""

import asyncio
import struct

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK, PINGREQ, PINGRESP, DISCONNECT = (
    1, 2, 3, 4, 8, 9, 12, 13, 14)


def _str(s):
    b = s if isinstance(s, bytes) else s.encode()
    return struct.pack("!H", len(b)) + b


def _packet(kind, flags, body):
    n = len(body)
    out = bytearray([(kind << 4) | flags])
    while True:
        byte = n % 128
        n //= 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            break
    return bytes(out) + body


class _Session(asyncio.Protocol):
    """The bytes of one connection: packets are cut out of the buffer as they arrive,
    in data_received, with no coroutine per packet (asyncio streams woke a reader task
    three times per packet; at 10,000 units that was a third of the simulator's CPU)."""

    def __init__(self, client):
        self.client = client
        self.buf = bytearray()

    def connection_made(self, transport):
        self.client.transport = transport

    def data_received(self, data):
        buf = self.buf
        buf += data
        i, end = 0, len(buf)
        client = self.client
        while True:
            # fixed header: the packet type, then a remaining length of 1-4 bytes
            j, n, shift = i + 1, 0, 0
            while j < end:
                b = buf[j]
                j += 1
                n |= (b & 0x7F) << shift
                if not b & 0x80:
                    break
                shift += 7
                if shift > 21:
                    client.transport.abort()          # not MQTT: a length of over 4 bytes
                    return
            else:
                break                                  # the length has not all arrived
            if j + n > end:
                break                                  # nor has the body
            head = buf[i]
            client.packet(head >> 4, head & 0x0F, bytes(buf[j:j + n]))
            i = j + n
        if i:
            del buf[:i]

    def connection_lost(self, exc):
        self.client.lost()


class FleetClient:
    """One MQTT 3.1.1 session on the shared asyncio loop."""

    def __init__(self, client_id, username=None, password=None, on_message=None, will=None,
                 keepalive=30, clean_session=True):
        self.client_id, self.username, self.password = client_id, username, password
        self.on_message = on_message or (lambda topic, payload, retain: None)
        self.will, self.keepalive, self.clean = will, keepalive, clean_session
        self.transport = None
        self.mid = 0
        self.waiting = {}                # mid -> future (CONNACK: 0 / PUBACK / SUBACK)
        self.closed = None
        self.pinger = None
        self.last_write = 0.0

    async def connect(self, host, port, timeout_s=10.0):
        loop = asyncio.get_running_loop()
        self.closed = loop.create_future()
        await asyncio.wait_for(loop.create_connection(lambda: _Session(self), host, port),
                               timeout_s)
        flags = 0x02 if self.clean else 0
        payload = _str(self.client_id)
        if self.will:
            flags |= 0x04 | (1 << 3) | 0x20          # will, QoS 1, retained
            payload += _str(self.will[0]) + _str(self.will[1])
        if self.username is not None:
            flags |= 0x80
            payload += _str(self.username)
            if self.password is not None:
                flags |= 0x40
                payload += _str(self.password)
        body = _str("MQTT") + bytes([4, flags]) + struct.pack("!H", self.keepalive) + payload
        fut = loop.create_future()
        self.waiting[0] = fut
        self._write(_packet(CONNECT, 0, body))
        try:
            data = await asyncio.wait_for(fut, timeout_s)
        except (asyncio.TimeoutError, ConnectionError):
            self.abort()
            raise
        if len(data) < 2 or data[1] != 0:
            self.abort()
            raise ConnectionError("CONNACK refused: %r" % (bytes(data[1:2]),))
        self.pinger = loop.create_task(self._keepalive())
        return self

    def packet(self, kind, flags, data):
        if kind == PUBLISH:
            qos = (flags >> 1) & 3
            tl = (data[0] << 8) | data[1]
            topic = data[2:2 + tl].decode()
            i = 2 + tl
            if qos:
                self._write(_packet(PUBACK, 0, data[i:i + 2]))
                i += 2
            self.on_message(topic, data[i:], bool(flags & 1))
        elif kind in (PUBACK, SUBACK, CONNACK):
            mid = 0 if kind == CONNACK else (data[0] << 8) | data[1]
            fut = self.waiting.pop(mid, None)
            if fut is not None and not fut.done():
                fut.set_result(data if kind == CONNACK else list(data[2:]))

    def lost(self):
        for fut in self.waiting.values():
            if not fut.done():
                fut.set_exception(ConnectionError("connection lost"))
        self.waiting.clear()
        if self.closed is not None and not self.closed.done():
            self.closed.set_result(True)
        if self.pinger is not None:
            self.pinger.cancel()

    def _closing(self):
        return self.transport is None or self.transport.is_closing()

    def _write(self, data):
        self.last_write = asyncio.get_running_loop().time()
        self.transport.write(data)

    async def _keepalive(self):
        """PINGREQ after keepalive/2 s without a packet *sent*: the broker drops a client
        silent for 1.5 x keepalive however much it receives (units get a heartbeat every
        second and, before their ticks start, send nothing)."""
        loop = asyncio.get_running_loop()
        every = self.keepalive / 2
        while not self._closing():
            await asyncio.sleep(max(0.05, self.last_write + every - loop.time()))
            if loop.time() - self.last_write >= every and not self._closing():
                self._write(_packet(PINGREQ, 0, b""))

    def _next_mid(self):
        self.mid = self.mid % 65535 + 1
        return self.mid

    async def subscribe(self, subs, timeout_s=10.0):
        if self._closing():
            raise ConnectionError("not connected")
        mid = self._next_mid()
        body = struct.pack("!H", mid) + b"".join(_str(t) + bytes([q]) for t, q in subs)
        fut = asyncio.get_running_loop().create_future()
        self.waiting[mid] = fut
        self._write(_packet(SUBSCRIBE, 2, body))
        return await asyncio.wait_for(fut, timeout_s)

    async def publish(self, topic, payload, qos=0, retain=False, timeout_s=10.0):
        if self._closing():
            raise ConnectionError("not connected")
        flags = (qos << 1) | (1 if retain else 0)
        if qos == 0:
            self._write(_packet(PUBLISH, flags, _str(topic) + payload))
            return None
        mid = self._next_mid()
        fut = asyncio.get_running_loop().create_future()
        self.waiting[mid] = fut
        self._write(_packet(PUBLISH, flags, _str(topic) + struct.pack("!H", mid) + payload))
        return await asyncio.wait_for(fut, timeout_s)

    def publish_nowait(self, topic, payload, qos=0, retain=False):
        """Write a PUBLISH and return; a QoS 1 PUBACK is not awaited (the caller's
        end-to-end acknowledgement decides what was delivered)."""
        return self.publish_many_nowait([(topic, payload, qos, retain)])

    def publish_many_nowait(self, messages):
        """publish_nowait for several (topic, payload, qos[, retain]) in one socket write."""
        if self._closing():
            return False
        out = []
        for topic, payload, qos, *retain in messages:
            mid = struct.pack("!H", self._next_mid()) if qos else b""
            flags = qos << 1 | (1 if retain and retain[0] else 0)
            out.append(_packet(PUBLISH, flags, _str(topic) + mid + payload))
        self._write(b"".join(out))
        return True

    def abort(self):
        """Drop the connection without DISCONNECT (the broker sends the will)."""
        if self.transport is not None:
            self.transport.abort()

    async def disconnect(self):
        if not self._closing():
            self.transport.write(_packet(DISCONNECT, 0, b""))
            self.transport.close()
