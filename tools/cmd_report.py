"""`edge-agent report`: performance-measure charts from an export, on one HTML page.

    edge-agent report export/events.csv export/detectors.csv -o report.html
    edge-agent report --history /var/lib/edge-agent/history --config site.json \\
        --since "2026-03-09 06:00" --until "2026-03-09 10:00" -o report.html

The measures are computed by ODOT's `atspm` package (pip install -e
'.[atspm]'); tools/atspm_report.py draws them.
"""

import os
import sys
import tempfile


def register(sub):
    p = sub.add_parser("report", help="ATSPM charts (atspm package) from an export or the unit's history",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("events", nargs="?", help="exported events (.csv or .parquet)")
    p.add_argument("detectors", nargs="?", help="exported detector table (.csv or .parquet)")
    p.add_argument("--history", metavar="DIR", help="report straight from a unit's history")
    p.add_argument("--config", metavar="SITE", help="with --history: the site JSON")
    p.add_argument("--since", metavar="TIME", help="with --history: from this local time")
    p.add_argument("--until", metavar="TIME", help="with --history: up to this local time")
    p.add_argument("-o", "--out", default="report.html", help="HTML file (default report.html)")
    p.add_argument("--png-dir", metavar="DIR", help="also write each chart as a PNG here")
    p.add_argument("--title", help="page title")
    p.set_defaults(func=cmd_report)


def cmd_report(args):
    try:
        from tools.atspm_report import write_report
    except ImportError as e:
        print("edge-agent report: %s (pip install -e '.[atspm,rig]')" % e, file=sys.stderr)
        return 2
    from tools import export
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if args.history:
                if not args.config:
                    print("edge-agent report: --history needs --config SITE", file=sys.stderr)
                    return 2
                site = export.load_site(args.config)
                lo, hi = export.parse_window(site, args.since, args.until)
                events, detectors = export.write_export(
                    tmp, site, export.history_events(args.history, lo, hi))
            elif args.events and args.detectors:
                events, detectors = args.events, args.detectors
            else:
                print("edge-agent report: give EVENTS DETECTORS, or --history DIR --config SITE",
                      file=sys.stderr)
                return 2
            figs = write_report(args.out, events, detectors, args.title, args.png_dir)
    except (export.ExportError, OSError, ValueError) as e:
        print("edge-agent report: %s" % e, file=sys.stderr)
        return 2
    print("%d charts: %s" % (len(figs), os.path.abspath(args.out)))
    return 0
