"""`edge-agent bench <what>`: benchmarks that print their figures.

Each benchmark lives in a tools/bench_<what>.py module defining `run(args)`
and optionally `add_arguments(parser)`.
"""

import importlib
import os


def _benches():
    here = os.path.dirname(os.path.abspath(__file__))
    return sorted(f[6:-3] for f in os.listdir(here) if f.startswith("bench_") and f.endswith(".py"))


def _missing(name, err):
    def run(args):
        print("edge-agent bench %s: %s; install the extras: pip install 'edge-agent[drivers,rig]'"
              % (name, err))
        return 2
    return run


def register(sub):
    p = sub.add_parser("bench", help="run a benchmark and print its figures")
    bsub = p.add_subparsers(dest="bench", metavar="WHAT")
    bsub.required = True
    for name in _benches():
        try:
            mod = importlib.import_module("tools.bench_" + name)
        except ImportError as e:
            # An optional extra is missing: every other command must still work.
            bp = bsub.add_parser(name, help="(needs an extra: %s)" % e)
            bp.set_defaults(func=_missing(name, e))
            continue
        bp = bsub.add_parser(name, help=(mod.__doc__ or "").strip().splitlines()[0])
        if hasattr(mod, "add_arguments"):
            mod.add_arguments(bp)
        bp.set_defaults(func=mod.run)
