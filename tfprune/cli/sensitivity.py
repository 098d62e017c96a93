"""`tfprune sensitivity`: per-layer sensitivity of a saved model (`tfprune.sweep.sensitivity`)."""

import argparse

from tfprune.cli.sweep import add_common, check_metric


def tolerance(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number >= 0. Received: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0. Received: {text}")
    return value


def register(subparsers):
    p = subparsers.add_parser(
        "sensitivity",
        help="per-layer sensitivity: each layer pruned alone at each sparsity",
        description="Prune one layer (or one coupled unit group) of a saved Keras model at "
        "a time, the others dense, evaluate at each sparsity, and write sensitivity.csv, "
        "sensitivity.json and sensitivity.png to --out, with per layer the highest "
        "sparsity within --tolerance of the dense metric.",
    )
    add_common(p, ("magnitude",))
    p.add_argument("--granularity", choices=("weight", "unit"), default="weight",
                   help="weight or unit pruning")
    p.add_argument("--layers", default=None, metavar="NAME,NAME",
                   help="only these layers (default: every prunable layer)")
    p.add_argument("--tolerance", type=tolerance, default=0.01,
                   help="metric drop allowed for the per-layer highest sparsity (0.01: 1 point "
                   "of accuracy)")
    p.add_argument("--skip-output-layer", action="store_true",
                   help="leave the output layer out (default: analysed too)")
    p.set_defaults(func=run)
    return p


def run(args):
    import pathlib

    import tfprune.sweep

    layers = [n.strip() for n in args.layers.split(",") if n.strip()] if args.layers else None
    result = tfprune.sweep.sensitivity(
        args.model, args.data, layers=layers, sparsities=args.sparsities,
        granularity=args.granularity, methods=args.method, scope=args.scope,
        seeds=args.seeds, skip_output_layer=args.skip_output_layer, tolerance=args.tolerance,
        out=args.out, resume=args.resume, progress=not args.quiet, batch_size=args.batch_size,
        samples=args.samples)
    check_metric(result, args)
    png = pathlib.Path(args.out) / "sensitivity.png"
    result.plot(metric=args.metric, tolerance=args.tolerance, path=png)
    metric = args.metric or result.default_metric()
    print(f"{'layer':<24} {'area':>8} {'max sparsity':>13} {'at highest level':>17}")
    for row in result.layer_summary(metric, args.tolerance):
        print(f"{row['layer']:<24} {row['auc']:>8.4f} {row['max_sparsity']:>13.0%} "
              f"{row['worst']:>17.4f}")
    print(f"(area: mean {metric} over the levels; max sparsity: within {args.tolerance:g} of "
          f"dense)")
    print(f"wrote {pathlib.Path(args.out) / 'sensitivity.csv'}, sensitivity.json, {png.name}")
    return 0
