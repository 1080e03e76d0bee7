"""Central's plan fan-out as its own process: signed plans to every unit over several connections.

    python -m hil.plan_fanout --plans plans.jsonl --node 127.0.0.1:1883 --node ... \
        --user central --password-env PW --publishers 16 --inflight 20

plans.jsonl holds one {"topic", "envelope"} per line. Each is published
retained at QoS 1 over `--publishers` MQTT connections (one connection
managed only 24-68 retained QoS 1 messages a second to subscribers on other
nodes of the 2.9 cluster), with `--inflight` PUBACKs outstanding on each. A
connection the cluster closes (a busy node, a QoS 1 publish JetStream did not
acknowledge in time) is opened again, on the next node; a plan gets three
tries. Central runs on its own machines: in its own process here, its
publishing does not wait on the simulated fleet's interpreter.

Prints one JSON line: {"started": monotonic s, "published": n, "seconds": s,
"failed": [topics]}.
"""

import argparse
import asyncio
import json
import os
import sys
import time

from drivers.mqtt_link import full_jitter
from hil.fleet_mqtt import FleetClient


async def fan_out(plans, nodes, user, password, publishers, inflight):
    failed = []

    async def connected(k):
        for attempt in range(30):
            c = FleetClient("central-plans-%d" % k, user, password)
            try:
                return await c.connect(*nodes[(k + attempt) % len(nodes)])
            except (OSError, ConnectionError, EOFError, asyncio.TimeoutError):
                c.abort()
                await asyncio.sleep(full_jitter(attempt, 0.5, 5.0))
        raise ConnectionError("central-plans-%d: no node accepted the connection" % k)

    pubs = [await connected(k) for k in range(publishers)]
    relink = [asyncio.Lock() for _ in pubs]

    async def lane(k):
        window = asyncio.Semaphore(inflight)

        async def one(topic, env):
            async with window:
                for _ in range(3):
                    c = pubs[k]
                    try:
                        await c.publish(topic, env, qos=1, retain=True, timeout_s=60)
                        return
                    except (OSError, ConnectionError, EOFError, asyncio.TimeoutError):
                        async with relink[k]:          # one reconnect per lane
                            if pubs[k] is c:
                                c.abort()
                                pubs[k] = await connected(k)
                failed.append(topic)
        await asyncio.gather(*(one(t, e) for t, e in plans[k::len(pubs)]))

    started = time.monotonic()
    await asyncio.gather(*(lane(k) for k in range(len(pubs))))
    seconds = time.monotonic() - started
    for c in pubs:
        await c.disconnect()
    return {"started": started, "published": len(plans) - len(failed), "seconds": seconds,
            "failed": failed}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m hil.plan_fanout")
    p.add_argument("--plans", required=True)
    p.add_argument("--node", action="append", required=True, help="host:port (MQTT)")
    p.add_argument("--user", required=True)
    p.add_argument("--password-env", required=True)
    p.add_argument("--publishers", type=int, default=16)
    p.add_argument("--inflight", type=int, default=20)
    a = p.parse_args(argv)
    nodes = [(h, int(port)) for h, _, port in (n.rpartition(":") for n in a.node)]
    with open(a.plans) as f:
        plans = [(d["topic"], d["envelope"].encode()) for d in map(json.loads, f)]
    result = asyncio.run(fan_out(plans, nodes, a.user, os.environ[a.password_env],
                                 a.publishers, a.inflight))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0 if not result["failed"] else 1


if __name__ == "__main__":
    sys.exit(main())
