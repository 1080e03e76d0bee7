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


def check(args):
    text = _read(args.site)
    if text is None:
        return 2
    try:
        site = parse_site_json(text)
    except ConfigError as e:
        print("%s: %d problem(s)" % (args.site, len(e.errors)), file=sys.stderr)
        for m in e.errors:
            print("  " + m, file=sys.stderr)
        return 1
    print("%s: ok - %s, %d phases in %d rings, %d detectors, fallback plan %r "
          "(worst-case cycle %s s)" % (args.site, site.intersection, len(site.phases),
                                        len(site.rings), len(site.detectors),
                                        site.fallback_plan.id, ms_s(site.fallback_plan.worst_cycle)))
    status = 0
    for path in args.plans:
        text = _read(path)
        if text is None:
            status = 2
            continue
        try:
            plan = parse_plan_json(text, site)
        except ConfigError as e:
            print("%s: %d problem(s)" % (path, len(e.errors)), file=sys.stderr)
            for m in e.errors:
                print("  " + m, file=sys.stderr)
            status = max(status, 1)
            continue
        kind = "coordinated, cycle %s s" % ms_s(plan.coord.cycle) if plan.coord else "free"
        print("%s: ok - plan %r, %s, worst-case cycle %s s" % (path, plan.id, kind, ms_s(plan.worst_cycle)))
    return status
