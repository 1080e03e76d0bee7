"""The `edge-agent` command: one subcommand per tools/cmd_*.py module.

Each command module defines `register(subparsers)`, which adds its parser and
sets `func` to a function taking the parsed arguments and returning an exit
status. Modules are found by name, so adding a command touches no other file.
"""

import argparse
import importlib
import os
import sys


def command_modules():
    here = os.path.dirname(os.path.abspath(__file__))
    names = sorted(f[:-3] for f in os.listdir(here) if f.startswith("cmd_") and f.endswith(".py"))
    return [importlib.import_module("tools." + n) for n in names]


def build_parser():
    parser = argparse.ArgumentParser(
        prog="edge-agent",
        description="Roadside traffic-signal controller agent: run, demo, check, sign, bench.")
    from edge_agent import __version__
    parser.add_argument("--version", action="version", version="edge-agent " + __version__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for mod in command_modules():
        mod.register(sub)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
