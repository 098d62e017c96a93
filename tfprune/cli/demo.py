"""`tfprune demo`: arguments of the end-to-end MNIST demo (`tfprune.demo`).

Every argument is checked while parsing (before TensorFlow is imported), so a bad
value is a one-line error within a fraction of a second, never after training.
"""

from tfprune.cli import (
    existing_path,
    fraction,
    nonnegative_int,
    output_directory,
    positive_int,
)


def register(subparsers):
    p = subparsers.add_parser(
        "demo",
        help="end-to-end MNIST demo: prune the seed MLP to 90%% by weight, then "
        "remove 50%% of its hidden units",
        description="Train the seed article's MLP (784-1000-1000-500-200-10) on MNIST, "
        "prune it to --sparsity of its weights during training, strip and save it, "
        "then prune --unit-sparsity of its hidden units, shrink it and measure it. "
        "Each phase prints its heading before it starts. About 3 minutes on 2 CPU "
        "cores with the full data; --samples 2000 --prune-epochs 2 for a quick run.",
    )
    p.add_argument("--output-dir", default="demo_output", type=output_directory,
                   metavar="DIR", help="where the pruned models and weight files go")
    p.add_argument("--sparsity", type=fraction, default=0.9, metavar="S",
                   help="fraction of weights pruned, in [0, 1)")
    p.add_argument("--unit-sparsity", type=fraction, default=0.5, metavar="S",
                   help="fraction of hidden units removed in the unit-pruning part, in "
                   "[0, 1); 0 skips that part")
    p.add_argument("--dense-epochs", type=nonnegative_int, default=1, metavar="N",
                   help="epochs of dense training before pruning")
    p.add_argument("--prune-epochs", type=positive_int, default=3, metavar="N",
                   help="epochs of training while pruning (sparsity reaches its target "
                   "after all but the last)")
    p.add_argument("--samples", type=positive_int, default=None, metavar="N",
                   help="train on the first N training images only (default: all 60,000)")
    p.add_argument("--data", default=None, metavar="PATH", type=existing_path,
                   help="mnist.npz or a directory holding it or the idx files "
                   "(default: $TFPRUNE_DATA_DIR, else keras's download)")
    p.set_defaults(func=run)
    return p


def run(args):
    from tfprune import demo
    from tfprune.cli import quiet_native_output

    with quiet_native_output():  # the TFLite interpreter's "INFO: Created ... delegate"
        demo.run(output_dir=args.output_dir, sparsity=args.sparsity,
                 unit_sparsity=args.unit_sparsity, dense_epochs=args.dense_epochs,
                 prune_epochs=args.prune_epochs, samples=args.samples, data_path=args.data)
    return 0
