"""`tfprune prune-h5`: prune the weights in a saved Keras file in place (`tfprune.h5`)."""

import json
import sys


def register(subparsers):
    """Add the `prune-h5` subcommand to an argparse `subparsers` object."""
    p = subparsers.add_parser(
        "prune-h5",
        help="prune the weights in a saved Keras file in place",
        description="Magnitude-prune a Keras .h5 / .weights.h5 / .keras file in place "
        "(atomically). Prints a per-layer report.",
    )
    p.add_argument("path", help="the Keras file to prune")
    p.add_argument("--sparsity", type=float, required=True, help="target sparsity in [0, 1)")
    p.add_argument("--granularity", default="weight", help="weight (default) or unit")
    p.add_argument("--scope", default="layer", help="layer (default) or global")
    p.add_argument("--include", help="only prune layers whose name matches this regex")
    p.add_argument("--exclude", help="do not prune layers whose name matches this regex")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--keep-output-layer", dest="skip_output_layer", action="store_true",
                     default=True, help="keep the output layer unpruned (default)")
    out.add_argument("--prune-output-layer", dest="skip_output_layer",
                     action="store_false", help="prune the output layer too")
    p.add_argument("--round-to", type=int, default=1,
                   help="with --granularity unit: keep unit counts a multiple of this")
    p.add_argument("--dry-run", action="store_true", help="report only, write nothing")
    p.add_argument("--backup", action="store_true", help="keep the original as PATH.orig")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)
    return p


def run(args):
    """Run `prune-h5` from parsed args; returns the exit code."""
    from tfprune.h5 import prune_weights_file

    try:
        report = prune_weights_file(
            args.path, args.sparsity, granularity=args.granularity, scope=args.scope,
            include=args.include, exclude=args.exclude,
            skip_output_layer=args.skip_output_layer, dry_run=args.dry_run,
            backup=args.backup, round_to=args.round_to,
        )
    except (ValueError, OSError) as e:
        print(f"tfprune prune-h5: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_dict(), indent=1) if args.json else report.table())
    return 0
