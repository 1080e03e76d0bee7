"""Broker options shared by the central-side commands (plan publish, status, events, central)."""

import json
import os
import threading

from drivers.topics import PREFIX, Topics


def add_broker_arguments(p, intersection=True):
    p.add_argument("--broker", default="127.0.0.1:1883", metavar="HOST:PORT")
    p.add_argument("--site-id", required=True, metavar="SITE",
                   help="the site level of tsc/v1/<site>/<intersection>")
    p.add_argument("--username", help="MQTT user name (central's, for these tools)")
    p.add_argument("--password", default=os.environ.get("EDGE_AGENT_MQTT_PASSWORD"),
                   help="MQTT password (default: $EDGE_AGENT_MQTT_PASSWORD)")
    p.add_argument("--ca-file", help="CA certificate: connect with TLS")
    p.add_argument("--cert-file", help="client certificate (TLS)")
    p.add_argument("--key-file", help="client key (TLS)")


def broker_address(text):
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise SystemExit("--broker %r: expected HOST:PORT" % text)
    return host, int(port)


def connect(args, client_id, on_message=None, subscriptions=(), timeout_s=5.0, durable=False,
            backoff=None):
    """A connected paho client running its own network thread; raises SystemExit on failure.

    durable: client_id is used as it is with a persistent session (clean_session
    False), so the broker keeps the subscriptions and queues QoS 1 messages while
    the client is away. backoff: (base s, cap s) of full-jitter reconnects.
    """
    import paho.mqtt.client as mqtt
    host, port = broker_address(args.broker)
    ready = threading.Event()
    failure = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                    client_id=client_id if durable else "%s-%d" % (client_id, os.getpid()),
                    clean_session=not durable)
    if args.username:
        c.username_pw_set(args.username, args.password)
    if args.ca_file or args.cert_file:
        c.tls_set(ca_certs=args.ca_file, certfile=args.cert_file, keyfile=args.key_file)

    def on_connect(client, userdata, flags, rc, props):
        if rc.is_failure:
            failure.append(str(rc))
        elif subscriptions:
            client.subscribe(list(subscriptions))
        ready.set()

    c.on_connect = on_connect
    if on_message is not None:
        c.on_message = on_message
    if backoff is not None:
        from drivers.mqtt_link import use_full_jitter
        use_full_jitter(c, *backoff)
    try:
        c.connect(host, port, keepalive=10)
    except OSError as e:
        raise SystemExit("cannot connect to %s:%d (%s)" % (host, port, e))
    c.loop_start()
    if not ready.wait(timeout_s) or failure:
        c.loop_stop()
        raise SystemExit("broker %s:%d refused or did not answer%s"
                         % (host, port, ": " + failure[0] if failure else ""))
    return c


def topics(args, intersection):
    return Topics(args.site_id, intersection)


def decode(payload):
    try:
        return json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None


def split_topic(topic):
    """(intersection, what) of tsc/v1/<site>/<intersection>/<what...>, or (None, None)."""
    parts = topic.split("/")
    if len(parts) < 5 or "/".join(parts[:2]) != PREFIX:
        return None, None
    return parts[3], "/".join(parts[4:])
