"""`edge-agent provision new`: a ready bundle for a new controller.

    edge-agent provision new --intersection ctl-0042 --name "Main St & 1st Ave" \\
        --site-id city --broker mqtt.city.example:8883 --out /etc/edge-agent \\
        [--template standard|suburban|arterial|night|FILE] [--panel-password-file FILE]

Writes into --out (refusing to overwrite without --force):

  site.json           the template site with this intersection's id and name
  provision.json      store directory, the controller's keyring (a fresh HMAC key),
                      the "mqtt" section (broker, site, username = intersection,
                      a fresh broker password, a secret random client id), the
                      front panel's password hash
  central-key.json    the same HMAC key for central to sign this controller's plans
  mosquitto-passwd.txt  "username:password" for the broker's password file

The panel password is read from --panel-password-file, the environment
variable EDGE_AGENT_PANEL_PASSWORD, or asked for twice on the terminal; only
its PBKDF2-SHA256 hash (200,000 iterations, random salt, as
"panel": {"password_hash": "pbkdf2_sha256$iterations$salt$hash"}) is stored,
and it is never printed or logged. Secret files are created with mode 0600.
"""

import getpass
import json
import os
import sys

from drivers.keys import generate_key
from drivers.panel import check_password, hash_password  # noqa: F401 (tests use both from here)
from edge_agent.intersection import parse_site
from edge_agent.standard import standard_site
from edge_agent.validate import ConfigError

MIN_PASSWORD = 8


class Refused(Exception):
    """Printed as one message (exit status 2)."""


def register(sub):
    p = sub.add_parser("provision", help="provision a new controller (site, keys, broker, panel)")
    psub = p.add_subparsers(dest="provision_command", metavar="ACTION")
    psub.required = True
    n = psub.add_parser("new", help="write a ready bundle for a new controller")
    n.add_argument("--intersection", required=True, help="intersection id, e.g. ctl-0042")
    n.add_argument("--name", help="the intersection's name, e.g. \"Main St & 1st Ave\"")
    n.add_argument("--site-id", required=True, help="site level of the MQTT topics (the city)")
    n.add_argument("--broker", action="append", required=True, metavar="HOST:PORT",
                   help="MQTT broker; repeat for a cluster (first is primary)")
    n.add_argument("--spread", action="store_true",
                   help="the brokers are nodes of one cluster: the unit starts on a node "
                        "chosen by its id instead of the first (docs/fleet.md)")
    n.add_argument("--nats", action="store_true",
                   help="the brokers are NATS nodes: events and the plan and command "
                        "subscriptions at QoS 0, each QoS 1 one being a JetStream write or "
                        "consumer there (docs/fleet.md); use with --spread")
    n.add_argument("--template", default="standard",
                   help="site template: standard (built-in 8 phases), a built-in scenario "
                        "name (suburban, arterial, night) or a site JSON file")
    n.add_argument("--panel-password-file", help="file holding the front panel's password")
    n.add_argument("--store-dir", default="/var/lib/edge-agent",
                   help="plan store directory on the controller (default /var/lib/edge-agent)")
    n.add_argument("--out", required=True, help="directory to write the bundle into")
    n.add_argument("--force", action="store_true", help="overwrite an existing bundle")
    n.set_defaults(func=cmd_new)


def template_site(name):
    if name == "standard":
        return standard_site()
    if os.path.isfile(name):
        try:
            with open(name) as f:
                doc = json.load(f)
        except (OSError, ValueError) as e:
            raise Refused("template %s: %s" % (name, e))
        return doc.get("site", doc) if isinstance(doc, dict) else doc
    try:
        from hil.scenario import load_scenario
        return dict(load_scenario(name).raw["site"])
    except Exception as e:
        raise Refused("template %r: not standard, a built-in scenario or a file (%s)" % (name, e))


def read_password(args):
    if args.panel_password_file:
        try:
            with open(args.panel_password_file) as f:
                pw = f.read().rstrip("\r\n")
        except OSError as e:
            raise Refused("panel password file %s: %s" % (args.panel_password_file,
                                                           e.strerror or e))
    elif os.environ.get("EDGE_AGENT_PANEL_PASSWORD"):
        pw = os.environ["EDGE_AGENT_PANEL_PASSWORD"]
    elif sys.stdin.isatty():
        pw = getpass.getpass("front panel password: ")
        if getpass.getpass("again: ") != pw:
            raise Refused("the two passwords differ")
    else:
        raise Refused("no panel password: give --panel-password-file, set "
                      "EDGE_AGENT_PANEL_PASSWORD, or run on a terminal")
    if len(pw) < MIN_PASSWORD:
        raise Refused("panel password: at least %d characters" % MIN_PASSWORD)
    return pw


def _write(path, doc, secret=False, text=None):
    data = text if text is not None else json.dumps(doc, indent=2) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
    with os.fdopen(fd, "w") as f:
        f.write(data)


def cmd_new(args):
    try:
        return _new(args)
    except Refused as e:
        print("edge-agent provision new: %s" % e, file=sys.stderr)
        return 2


def _new(args):
    site = template_site(args.template)
    site["intersection"] = args.intersection
    if args.name:
        site["name"] = args.name
    try:
        parse_site(site)
    except ConfigError as e:
        raise Refused("the site from template %r is invalid:\n  %s"
                      % (args.template, "\n  ".join(e.errors)))
    password = read_password(args)
    out = args.out
    names = ("site.json", "provision.json", "central-key.json", "mosquitto-passwd.txt")
    os.makedirs(out, exist_ok=True)
    existing = [n for n in names if os.path.exists(os.path.join(out, n))]
    if existing and not args.force:
        raise Refused("%s already holds %s (use --force to overwrite)"
                      % (out, ", ".join(existing)))
    key = generate_key("%s-key1" % args.intersection, "hmac")
    broker_password = os.urandom(18).hex()
    # The client id is a per-unit secret, never the guessable "edge-agent-<id>": a broker
    # that does not bind ids to user names (NATS) would otherwise let any unit's
    # credentials knock this one off (docs/fleet.md).
    mqtt = {"brokers": list(args.broker), "site": args.site_id,
            "username": args.intersection, "password": broker_password,
            "client_id": "unit-" + os.urandom(16).hex()}
    if args.spread:
        mqtt["spread"] = True
    if args.nats:
        mqtt.update(events_qos=0, subscribe_qos=0)
    provision = {
        "store_dir": args.store_dir,
        "keys": [dict(key, note="shared with central; central-key.json holds the same key")],
        "mqtt": mqtt,
        "panel": {"password_hash": hash_password(password)},
    }
    _write(os.path.join(out, "site.json"), site)
    _write(os.path.join(out, "provision.json"), provision, secret=True)
    _write(os.path.join(out, "central-key.json"), key, secret=True)
    _write(os.path.join(out, "mosquitto-passwd.txt"), None, secret=True,
           text="%s:%s\n" % (args.intersection, broker_password))
    print("wrote %s: site.json (%s, %s), provision.json (key %s, broker %s, site %s, "
          "panel password hashed), central-key.json, mosquitto-passwd.txt"
          % (out, args.intersection, site.get("name", ""), key["kid"], ", ".join(args.broker),
             args.site_id))
    print("next: edge-agent config check %s; install provision.json and site.json on the "
          "controller; give central-key.json to central and add mosquitto-passwd.txt with "
          "mosquitto_passwd -U" % os.path.join(out, "site.json"))
    return 0
