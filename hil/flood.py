"""Fault injection on the link: junk payloads, and a flood of them from a separate process.

    python -m hil.flood --port 1883 --topic tsc/v1/s/i/plan/desired --rate 1000 --seconds 10

`JUNK` is the catalogue the tests and `edge-agent bench link` send to every
topic an agent subscribes to: malformed JSON, wrong types, binary, empty,
deep nesting, and 1 MB. The flood runs in its own process (an attacker or a
broken central is never inside the agent) and paces itself to `rate`
messages per second round-robin over the topics, QoS 0, then prints how many
it sent as JSON on stdout.
"""

import argparse
import json
import os
import random
import sys
import time

JUNK = {
    "malformed_json": b"{not json at all",
    "wrong_type_array": b"[1, 2, 3]",
    "wrong_type_fields": b'{"ts": "yesterday", "kid": 5, "body": [], "mac": null}',
    "envelope_shaped": b'{"kid": "ctl-test", "body": "{}", "mac": "zz"}',
    "binary": bytes(range(256)) * 4,
    "empty": b"",
    "deep_nesting": b"[" * 50000,
    "one_megabyte": b"x" * 1_000_000,
}


def flood_payloads(seed=1):
    """Small junk for a flood (the 1 MB one is sent once, not a thousand times a second)."""
    rng = random.Random(seed)
    small = [v for k, v in JUNK.items() if k not in ("one_megabyte", "deep_nesting")]
    return small + [bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300)))
                    for _ in range(20)]


def flood(host, port, topics, rate, seconds, username=None, password=None, seed=1):
    """Publish junk round-robin to topics at `rate` per second for `seconds`; returns counts."""
    import paho.mqtt.client as mqtt
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="flood-%d" % os.getpid())
    if username:
        c.username_pw_set(username, password)
    c.max_queued_messages_set(0)
    c.connect(host, port, keepalive=10)
    c.loop_start()
    payloads = flood_payloads(seed)
    sent = {t: 0 for t in topics}
    t0 = time.monotonic()
    n = 0
    total = int(rate * seconds)
    while n < total:
        due = t0 + n / rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        topic = topics[n % len(topics)]
        c.publish(topic, payloads[n % len(payloads)], qos=0)
        sent[topic] += 1
        n += 1
    time.sleep(0.5)
    c.loop_stop()
    c.disconnect()
    return {"sent": sent, "total": n, "elapsed_s": round(time.monotonic() - t0, 3)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--topic", action="append", required=True)
    p.add_argument("--rate", type=float, default=1000)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--username")
    p.add_argument("--password")
    a = p.parse_args(argv)
    res = flood(a.host, a.port, a.topic, a.rate, a.seconds, a.username, a.password)
    json.dump(res, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
