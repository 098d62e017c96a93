"""`tfprune prune-h5`: prune the weights in a saved Keras file in place (`tfprune.h5`)."""

import argparse
import json
import re
import sys


def _pair(sep, what):
    def parse(text):
        m = re.fullmatch(rf"\s*(\d+)\s*{sep}\s*(\d+)\s*", text)
        if not m:
            raise argparse.ArgumentTypeError(f"expected {what}, e.g. {'1x4' if sep == 'x' else '2:4'}; "
                                             f"got {text!r}")
        return int(m.group(1)), int(m.group(2))
    return parse


def register(subparsers):
    """Add the `prune-h5` subcommand to an argparse `subparsers` object."""
    p = subparsers.add_parser(
        "prune-h5",
        help="prune the weights in a saved Keras file in place",
        description="Magnitude-prune the weights stored in a Keras file in place, "
        "without the model's code: Keras 3 .keras and .weights.h5, tf_keras/Keras 2 .h5 "
        "(full model or save_weights). The new file is written beside the original "
        "and renamed over it, so an interrupted run leaves the original intact. "
        "Prints a per-layer report (--json for JSON).",
    )
    p.add_argument("path", metavar="PATH", help="the Keras file to prune (rewritten in place)")
    p.add_argument("--sparsity", type=float, metavar="S",
                   help="required (except with --m-by-n): fraction of each tensor's weights "
                   "(or units, or blocks) set to zero, in [0, 1); 0.9 means 90%%")
    p.add_argument("--granularity", default="weight", metavar="{weight,unit}",
                   help="'weight' ranks single weights by |w|; 'unit' ranks output units "
                   "(Dense columns, conv filters) by the L2 norm of their weights and "
                   "zeroes whole units and their biases (default: weight)")
    p.add_argument("--scope", default="layer", metavar="{layer,global}",
                   help="'layer' ranks each tensor on its own; 'global' ranks all "
                   "pruned tensors together (default: layer)")
    p.add_argument("--include", metavar="REGEX",
                   help="only prune layers whose name (e.g. 'inner/dense_2') matches this "
                   "regular expression (default: every prunable layer)")
    p.add_argument("--exclude", metavar="REGEX",
                   help="do not prune layers whose name matches this regular expression "
                   "(default: none excluded)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--keep-output-layer", dest="skip_output_layer", action="store_true",
                     default=True,
                     help="keep the output layer unpruned (the default here; note that "
                     "training-time prune_low_magnitude prunes the output layer's "
                     "weights unless granularity='unit')")
    out.add_argument("--prune-output-layer", dest="skip_output_layer",
                     action="store_false",
                     help="prune the output layer too, as training-time weight pruning does "
                     "(default: off)")
    p.add_argument("--round-to", type=int, default=1, metavar="N",
                   help="with --granularity unit: keep each layer's unit count a multiple "
                   "of N, e.g. 8 (default: 1)")
    p.add_argument("--block-size", type=_pair("x", "ROWSxCOLS"), default=(1, 1),
                   metavar="RxC",
                   help="prune 2-D kernels (Dense) in whole RxC blocks of the Keras kernel "
                   "(in, out), exact block counts; e.g. 4x1 for TFLite's 1x4 sparse "
                   "fully-connected kernel (default: 1x1, single weights)")
    p.add_argument("--block-pooling", default="avg", choices=("avg", "max"),
                   help="how a block is scored from its |w| (default: avg)")
    p.add_argument("--m-by-n", type=_pair(":", "M:N"), default=None, metavar="M:N",
                   help="zero the M smallest of every N consecutive weights along each "
                   "kernel's input axis, e.g. 2:4 (tfmot's sparsity_m_by_n; --sparsity is "
                   "not used) (default: off)")
    p.add_argument("--dry-run", action="store_true",
                   help="report what would be pruned, write nothing (default: off)")
    p.add_argument("--backup", action="store_true",
                   help="keep the original as PATH.orig; refuses if it exists (default: off)")
    p.add_argument("--json", action="store_true",
                   help="print the report as JSON instead of a table (default: off)")
    p.set_defaults(func=run)
    return p


def run(args):
    """Run `prune-h5` from parsed args; returns the exit code."""
    if args.sparsity is None and args.m_by_n is None:
        print("tfprune prune-h5: error: the following arguments are required: --sparsity "
              "(or --m-by-n)", file=sys.stderr)
        return 2
    from tfprune.h5 import prune_weights_file

    try:
        report = prune_weights_file(
            args.path, args.sparsity, granularity=args.granularity, scope=args.scope,
            include=args.include, exclude=args.exclude,
            skip_output_layer=args.skip_output_layer, dry_run=args.dry_run,
            backup=args.backup, round_to=args.round_to, block_size=args.block_size,
            block_pooling_type=args.block_pooling.upper(), sparsity_m_by_n=args.m_by_n,
        )
    except (ValueError, OSError) as e:
        print(f"tfprune prune-h5: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_dict(), indent=1) if args.json else report.table())
    return 0
