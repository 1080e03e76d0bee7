"""`edge-agent flash reset|status`: a technician on site clears or reads a latched flash.

Talks to the running agent over its local Unix socket (drivers/local_control),
never over the network: central cannot clear a latched flash. The reset is
honoured only after the monitor card's minimum flash time; the command prints
the fault it cleared, or why it was refused.
"""

import json
import os
import sys

from drivers.local_control import call


def register(sub):
    p = sub.add_parser("flash", help="reset or read the unit's latched flash (on site, local socket)")
    fsub = p.add_subparsers(dest="flash_cmd", metavar="ACTION")
    fsub.required = True
    for name, helptext, func in (("reset", "clear a latched monitor fault (after the minimum flash)",
                                  reset),
                                 ("status", "show the unit's mode and latched fault", status)):
        c = fsub.add_parser(name, help=helptext)
        where = c.add_mutually_exclusive_group(required=True)
        where.add_argument("--socket", help="the agent's local command socket")
        where.add_argument("--provision", help="the provisioning file (socket in its store_dir)")
        c.set_defaults(func=func)


def _socket(args):
    if args.socket:
        return args.socket
    from drivers.keys import KeyFileError, load_provisioning
    try:
        return os.path.join(load_provisioning(args.provision).store_dir, "control.sock")
    except KeyFileError as e:
        raise OSError(str(e))


def _call(args, cmd):
    try:
        return call(_socket(args), cmd)
    except (OSError, ValueError) as e:
        print("edge-agent flash: cannot reach the agent: %s" % e, file=sys.stderr)
        return None


def reset(args):
    answer = _call(args, "flash-reset")
    if answer is None:
        return 2
    if not answer.get("ok"):
        print("refused: %s" % answer.get("error"), file=sys.stderr)
        if answer.get("fault"):
            print("latched: %s" % describe(answer["fault"]), file=sys.stderr)
        return 1
    print("cleared: %s" % describe(answer["cleared"]))
    print("the unit starts up again: start-up flash, all-red, then its start-up phases")
    return 0


def status(args):
    answer = _call(args, "status")
    if answer is None:
        return 2
    st = answer.get("status") or {}
    print("mode: %s" % st.get("mode"))
    if st.get("fault"):
        print("latched: %s" % describe(st["fault"]))
        print("minimum flash still to run: %.1f s" % (st.get("flash_remaining_ms", 0) / 1000))
    else:
        print("no latched fault")
    if os.environ.get("EDGE_AGENT_JSON"):
        print(json.dumps(st, sort_keys=True))
    return 0


def describe(fault):
    """One line a technician reads: rule, channels, figures, sentence."""
    if not fault:
        return "none"
    parts = [fault.get("rule", "fault %s" % fault.get("code"))]
    if fault.get("channel"):
        parts.append("channel %d" % fault["channel"])
    if fault.get("other"):
        parts.append("with channel %d" % fault["other"])
    if fault.get("limit_ms", -1) >= 0:
        parts.append("measured %d ms, limit %d ms" % (fault["measured_ms"], fault["limit_ms"]))
    return "%s: %s" % (", ".join(parts), fault.get("detail", ""))
