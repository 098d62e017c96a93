"""The `tfprune` command line: `tfprune demo`, `tfprune prune-h5 ...`.

Each subcommand is a module of this package (listed in `COMMANDS`) with
`register(subparsers)`, which adds its parser and sets `func`, the function that
runs it. Command modules import nothing heavy at module level (TensorFlow, Keras,
h5py are imported inside `func`), so parsing arguments and `--help` stay fast.
User errors print one line on stderr and exit with status 2. A command module that
fails to import is an error, never a silently missing command.
"""

import argparse
import importlib
import sys

__all__ = ["main", "build_parser", "COMMANDS"]

# Module names in tfprune.cli, in the order `tfprune --help` lists them.
COMMANDS = ("demo", "prune_h5")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="tfprune", description="Magnitude pruning for Keras 3 on TensorFlow."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError, PermissionError, RuntimeError) as e:
        print(f"tfprune {args.command}: error: {e}", file=sys.stderr)
        return 2
