"""The `tfprune` command line: `tfprune demo`, `tfprune prune-h5 ...`.

Each subcommand lives with its module (`register_cli(subparsers)`); user errors
print one line on stderr and exit non-zero.
"""

import argparse
import importlib
import sys

__all__ = ["main"]

_COMMAND_MODULES = ("tfprune.demo", "tfprune.h5")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="tfprune", description="Magnitude pruning for Keras 3 on TensorFlow."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            continue
        module.register_cli(sub)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, PermissionError, RuntimeError) as e:
        print(f"tfprune {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
