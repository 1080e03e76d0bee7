"""`edge-agent config check|example`: validate site and plan files, print the example site."""

import json
import sys

from edge_agent.intersection import parse_site_json
from edge_agent.plan import parse_plan_json
from edge_agent.validate import ConfigError, ms_s
from edge_agent.standard import standard_site


def register(sub):
    p = sub.add_parser("config", help="check site and plan files; print the built-in example site")
    csub = p.add_subparsers(dest="config_cmd", metavar="ACTION")
    csub.required = True
    c = csub.add_parser("check", help="validate a site file (and plan files against it)")
    c.add_argument("site", help="site JSON file")
    c.add_argument("plans", nargs="*", help="timing plan JSON files to check against the site")
    c.set_defaults(func=check)
    e = csub.add_parser("example", help="print the built-in 8-phase site as JSON")
    e.set_defaults(func=lambda args: print(json.dumps(standard_site(), indent=2)) or 0)


def _read(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as e:
        print("%s: cannot read: %s" % (path, e), file=sys.stderr)
        return None


def _problems(path, errors):
    print("%s: %d problem(s)" % (path, len(errors)), file=sys.stderr)
    for m in errors:
        print("  " + m, file=sys.stderr)


def check(args):
    """Every problem of the site, its monitor card, its fallback plan and the plans, in one run."""
    text = _read(args.site)
    if text is None:
        return 2
    status = 0
    try:
        site = parse_site_json(text)
    except ConfigError as e:
        _problems(args.site, e.errors)
        status = 1
        site = e.site          # structure sound: the plans can still be checked against it
        if site is None and args.plans:
            print("(plans not checked: the site's phases, rings, barriers or floors are "
                  "broken)", file=sys.stderr)
    else:
        print("%s: ok - %s, %d phases in %d rings, %d detectors, monitor card %d channels "
              "%d permissive pairs, fallback plan %r (worst-case cycle %s s)"
              % (args.site, site.intersection, len(site.phases), len(site.rings),
                 len(site.detectors), len(site.monitor.channels),
                 _pairs(site.monitor), site.fallback_plan.id,
                 ms_s(site.fallback_plan.worst_cycle)))
    if site is None:
        return status
    for path in args.plans:
        text = _read(path)
        if text is None:
            status = 2
            continue
        try:
            plan = parse_plan_json(text, site)
        except ConfigError as e:
            _problems(path, e.errors)
            status = max(status, 1)
            continue
        kind = "coordinated, cycle %s s" % ms_s(plan.coord.cycle) if plan.coord else "free"
        print("%s: ok - plan %r, %s, worst-case cycle %s s" % (path, plan.id, kind, ms_s(plan.worst_cycle)))
    return status


def _pairs(card):
    n = 0
    for a in card.channels:
        for b in card.channels:
            if a < b and card.permits(a, b):
                n += 1
    return n
