"""`edge-agent plan sign|verify|show|keygen|publish`: signed plan envelopes from the command line.

    edge-agent plan keygen --kid central-2026a --scheme ed25519
    edge-agent plan sign --plan plan.json --key central-2026a.json \\
        --intersection demo-0001 --version 7 > envelope.json
    edge-agent plan verify --envelope envelope.json --site site.json \\
        --keys central-2026a.pub.json --active-version 6
    edge-agent plan show --envelope envelope.json
    edge-agent plan publish --envelope envelope.json --intersection demo-0001 \\
        --site-id springfield --broker 127.0.0.1:1883 --wait 30     (tools/plan_publish.py)
"""

import json
import os
import sys
import time

from drivers.keys import (KeyFileError, ed25519_verify, generate_key, load_json, load_keyring,
                          load_signing_key, make_body, public_half, sign_ed25519, sign_hmac)
from edge_agent.envelope import HMAC, MAX_VERSION, SCHEMES, Policy, Verifier
from edge_agent.intersection import parse_site_json
from edge_agent.plan import parse_plan
from edge_agent.validate import ConfigError


class Refused(Exception):
    """A bad argument or file: printed as one clear message, exit status 2."""


def register(sub):
    p = sub.add_parser("plan", help="sign, verify and show signed plan envelopes; make keys")
    psub = p.add_subparsers(dest="plan_command", metavar="ACTION")
    psub.required = True

    s = psub.add_parser("sign", help="wrap a plan in a signed envelope (printed on stdout)")
    s.add_argument("--plan", required=True, help="plan JSON file (a plan, or a whole body)")
    s.add_argument("--key", required=True, help="key file from `plan keygen` (HMAC or Ed25519 private)")
    s.add_argument("--version", type=int, help="plan version, above the last one sent to this intersection")
    s.add_argument("--intersection", help="intersection id the plan is for")
    s.add_argument("--expires", type=float, metavar="S", help="expire S seconds after issue")
    s.add_argument("--issued-at", type=float, metavar="UNIX_S", help="issue time (default: now)")
    s.add_argument("--site", help="site JSON file: refuse to sign a plan invalid for it")
    s.set_defaults(func=_guard(cmd_sign))

    v = psub.add_parser("verify", help="check an envelope as a controller would (exit 0 accepted, 1 rejected)")
    v.add_argument("--envelope", required=True, help="envelope file")
    v.add_argument("--site", required=True, help="site JSON file of the controller")
    v.add_argument("--keys", required=True,
                   help="keyring, public key file or provisioning file (its policy is used too)")
    v.add_argument("--active-version", type=int, metavar="N",
                   help="the controller's high-water mark (default: none accepted yet)")
    clock = v.add_mutually_exclusive_group()
    clock.add_argument("--now", type=float, metavar="UNIX_S", help="wall clock to check against")
    clock.add_argument("--no-clock", action="store_true",
                       help="wall clock untrusted: skip issue-time and expiry checks")
    v.set_defaults(func=_guard(cmd_verify))

    w = psub.add_parser("show", help="print an envelope's key id, version, times and plan (not verified)")
    w.add_argument("--envelope", required=True, help="envelope file")
    w.set_defaults(func=_guard(cmd_show))

    k = psub.add_parser("keygen", help="write a new key file (and the public half for Ed25519)")
    k.add_argument("--kid", required=True, help="key id, e.g. central-2026a or ctl-0001-2026a")
    k.add_argument("--scheme", required=True, choices=SCHEMES)
    k.add_argument("--out", help="key file to write (default: <kid>.json)")
    k.add_argument("--force", action="store_true", help="overwrite existing files")
    k.set_defaults(func=_guard(cmd_keygen))

    from tools.plan_publish import add_parser as add_publish
    add_publish(psub, _guard)


def _guard(fn):
    def run(args):
        try:
            return fn(args)
        except (Refused, KeyFileError) as e:
            print("edge-agent plan: %s" % e, file=sys.stderr)
            return 2
        except BrokenPipeError:         # `... | head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
    return run


def cmd_sign(args):
    kid, scheme, key = load_signing_key(args.key)
    doc = _json_file(args.plan, "plan file")
    if isinstance(doc, dict) and "plan" in doc:      # a whole body: its fields are defaults
        plan = doc["plan"]
        intersection = args.intersection or doc.get("intersection")
        version = args.version if args.version is not None else doc.get("version")
    else:
        plan, intersection, version = doc, args.intersection, args.version
    if not isinstance(intersection, str) or not intersection:
        raise Refused("--intersection is required (the plan file names none)")
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= MAX_VERSION:
        raise Refused("--version is required: an integer 1..%d above the last one sent" % MAX_VERSION)
    if args.site:
        site = _site(args.site)
        if site.intersection != intersection:
            raise Refused("site %s is intersection %r, not %r" % (args.site, site.intersection,
                                                                  intersection))
        try:
            parse_plan(plan, site, "plan")
        except ConfigError as e:
            raise Refused("plan %s is invalid for this site:\n  %s" % (args.plan, "\n  ".join(e.errors)))
    issued = args.issued_at if args.issued_at is not None else int(time.time())
    issued = int(issued) if float(issued).is_integer() else issued
    expires = None
    if args.expires is not None:
        if args.expires <= 0:
            raise Refused("--expires must be a positive number of seconds")
        expires = issued + args.expires
        expires = int(expires) if float(expires).is_integer() else expires
    body = make_body(plan, intersection, version, issued, expires)
    sign = sign_hmac if scheme == HMAC else sign_ed25519
    print(sign(body, kid, key))
    return 0


def cmd_verify(args):
    envelope = _read_bytes(args.envelope, "envelope file")    # verified exactly as stored
    site = _site(args.site)
    keys, policy = load_keyring(args.keys)
    verifier = Verifier(site, keys, policy or Policy(), ed25519_verify)
    wall = None if args.no_clock else (args.now if args.now is not None else time.time())
    res = verifier.check(envelope, args.active_version, wall)
    if res.ok:
        print("accepted: version %d for %s, key %s, plan %r%s" % (
            res.version, res.intersection, res.kid, res.plan.id,
            ", expires %s" % _when(res.expires_at) if res.expires_at is not None else ""))
        return 0
    print("rejected: %s" % res.reason)
    for line in res.errors:
        print("  %s" % line)
    return 1


def cmd_show(args):
    raw = _read(args.envelope, "envelope file")
    try:
        env = json.loads(raw)
    except ValueError as e:
        raise Refused("envelope %s: not valid JSON (%s)" % (args.envelope, e))
    if not isinstance(env, dict) or not isinstance(env.get("body"), str):
        raise Refused("envelope %s: not an envelope (needs \"kid\", \"body\" text and "
                      "\"mac\" or \"sig\")" % args.envelope)
    try:
        body = json.loads(env["body"])
    except ValueError as e:
        raise Refused("envelope %s: body is not valid JSON (%s)" % (args.envelope, e))
    field = "mac (HMAC-SHA256)" if "mac" in env else "sig (Ed25519)" if "sig" in env else "none"
    body = body if isinstance(body, dict) else {"(body)": body}
    print("envelope     %s (not verified: use `edge-agent plan verify`)" % args.envelope)
    print("key id       %s" % env.get("kid"))
    print("tag          %s" % field)
    print("intersection %s" % body.get("intersection"))
    print("version      %s" % body.get("version"))
    print("issued       %s" % _when(body.get("issued_at")))
    print("expires      %s" % (_when(body["expires_at"]) if "expires_at" in body else "never"))
    print("plan")
    print(json.dumps(body.get("plan"), indent=2, sort_keys=True))
    return 0


def cmd_keygen(args):
    key = generate_key(args.kid, args.scheme)
    out = args.out or "%s.json" % args.kid
    files = [(out, key, 0o600)]
    if args.scheme != HMAC:
        base = out[:-5] if out.endswith(".json") else out
        files.append(("%s.pub.json" % base, public_half(key), 0o644))
    for path, _, _ in files:
        if os.path.exists(path) and not args.force:
            raise Refused("%s exists: not overwriting a key (use --force)" % path)
    for path, doc, mode in files:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(doc, indent=2) + "\n")
            os.chmod(path, mode)
        except OSError as e:
            raise Refused("cannot write %s (%s)" % (path, e.strerror or e))
    if args.scheme == HMAC:
        print("wrote %s: shared secret for key id %s; give it to central and to the "
              "controller it belongs to, nobody else" % (out, args.kid))
    else:
        print("wrote %s (private, keep it on central) and %s (public, for controllers)"
              % (out, files[1][0]))
    return 0


def _read_bytes(path, what):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise Refused("%s %s: cannot read (%s)" % (what, path, e.strerror or e))


def _read(path, what):
    data = _read_bytes(path, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused("%s %s: not UTF-8 text" % (what, path))


def _json_file(path, what):
    try:
        return load_json(path, what)
    except KeyFileError as e:
        raise Refused(str(e))


def _site(path):
    try:
        return parse_site_json(_read(path, "site file"))
    except ConfigError as e:
        raise Refused("site %s is invalid:\n  %s" % (path, "\n  ".join(e.errors)))


def _when(s):
    if isinstance(s, bool) or not isinstance(s, (int, float)):
        return "%r (not a time)" % (s,)
    try:
        text = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(s))
    except (OverflowError, ValueError, OSError):
        text = "out of range"
    return "%s (%s)" % (text, s)
