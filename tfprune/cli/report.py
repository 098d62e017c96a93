"""`tfprune report`: per-layer sparsity of a saved Keras model (`tfprune.sparsity_report`)."""

from tfprune.cli.export import check_not_weights_only, load_saved_model, saved_model_file


def register(subparsers):
    p = subparsers.add_parser(
        "report",
        help="per-layer sparsity, params and FLOPs of a saved Keras model",
        description="Load a saved Keras model (.keras, or a full-model .h5; pruned "
        "checkpoints with tfprune wrappers included) without its training code and print "
        "the zeros of every prunable weight, and params / nonzero params / FLOPs per "
        "layer.",
    )
    p.add_argument("model", metavar="MODEL", type=saved_model_file,
                   help="the saved model (.keras or .h5)")
    p.add_argument("--json", action="store_true",
                   help="print the report as JSON instead of tables (default: off)")
    p.set_defaults(func=run)
    return p


def run(args):
    check_not_weights_only(args.model)
    model = load_saved_model(args.model)  # first: it loads tfprune in a safe order
    import tfprune

    report = tfprune.sparsity_report(model)
    print(report.to_json(indent=1) if args.json else str(report))
    return 0
