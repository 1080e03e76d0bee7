"""`edge-agent panel hash`: the front panel password's hash for the provisioning file.

    edge-agent panel hash < password.txt
    -> pbkdf2_sha256$200000$...   put it in provision.json as {"panel": {"password_hash": "..."}}

The password itself is never stored or logged; only this PBKDF2-SHA256 hash.
"""

import getpass
import sys

from drivers.panel import hash_password


def register(sub):
    p = sub.add_parser("panel", help="front panel helpers (password hash for provisioning)")
    psub = p.add_subparsers(dest="panel_cmd", metavar="ACTION")
    psub.required = True
    h = psub.add_parser("hash", help="read a password (stdin or prompt), print its hash")
    h.set_defaults(func=cmd_hash)


def cmd_hash(args):
    if sys.stdin.isatty():
        pw = getpass.getpass("panel password: ")
        if getpass.getpass("again: ") != pw:
            print("edge-agent panel hash: the two passwords differ", file=sys.stderr)
            return 1
    else:
        pw = sys.stdin.readline().rstrip("\n")
    if len(pw) < 8:
        print("edge-agent panel hash: a panel password needs at least 8 characters",
              file=sys.stderr)
        return 1
    print(hash_password(pw))
    return 0
