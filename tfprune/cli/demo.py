"""`tfprune demo`: arguments of the end-to-end MNIST demo (`tfprune.demo`)."""


def register(subparsers):
    p = subparsers.add_parser("demo", help="end-to-end MNIST demo (prune the seed MLP to 90%%)")
    p.add_argument("--output-dir", default="demo_output")
    p.add_argument("--sparsity", type=float, default=0.9)
    p.add_argument("--unit-sparsity", type=float, default=0.5,
                   help="fraction of hidden units removed in the unit-pruning part (0: skip)")
    p.add_argument("--dense-epochs", type=int, default=1)
    p.add_argument("--prune-epochs", type=int, default=3)
    p.add_argument("--samples", type=int, default=None,
                   help="use only the first N training images (quick runs)")
    p.add_argument("--data", default=None,
                   help="mnist.npz or a directory (default: $TFPRUNE_DATA_DIR, else download)")
    p.set_defaults(func=run)
    return p


def run(args):
    from tfprune import demo

    demo.run(output_dir=args.output_dir, sparsity=args.sparsity,
             unit_sparsity=args.unit_sparsity, dense_epochs=args.dense_epochs,
             prune_epochs=args.prune_epochs, samples=args.samples, data_path=args.data)
    return 0
