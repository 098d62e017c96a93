"""`tfprune sweep`: accuracy-vs-sparsity curves of a saved model (`tfprune.sweep.run`)."""

import argparse
import os

from tfprune.cli import existing_path, fraction, nonnegative_int, output_directory, positive_int

MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")
LOADERS = ("mnist", "fashion_mnist", "cifar10")
DEFAULT_SPARSITIES = "0.25,0.5,0.6,0.7,0.8,0.9,0.95,0.97,0.99"


def model_file(text):
    """A saved Keras model (.keras or full-model .h5)."""
    path = existing_path(text)
    if os.path.isdir(path) or not path.lower().endswith(MODEL_SUFFIXES):
        raise argparse.ArgumentTypeError(
            f"must be a saved Keras model (.keras or .h5). Received: {text!r}")
    if path.lower().endswith(".weights.h5"):
        raise argparse.ArgumentTypeError(
            f"holds weights only, no model: sweep a .keras or full-model .h5. Received: {text!r}")
    from tfprune.cli.export import model_bytes_checked

    return model_bytes_checked(path, text)


def data_source(text):
    """A bundled loader name or an existing .npz file."""
    if text in LOADERS:
        return text
    if text.lower().endswith(".npz") and os.path.isfile(text):
        import zipfile

        if not zipfile.is_zipfile(text):
            raise argparse.ArgumentTypeError(
                f"not a .npz file (not a zip archive; write it with np.savez). "
                f"Received: {text!r}")
        return text
    raise argparse.ArgumentTypeError(
        f"must be one of {', '.join(LOADERS)} or an existing .npz file (x_test/y_test or x/y, "
        f"plus x_train/y_train to fine-tune). Received: {text!r}")


def fractions(text):
    """Comma-separated sparsities in (0, 1)."""
    values = [fraction(t.strip()) for t in text.split(",") if t.strip()]
    if not values or any(v == 0 for v in values):
        raise argparse.ArgumentTypeError(
            f"must be comma-separated sparsities in (0, 1), e.g. 0.5,0.9. Received: {text!r}")
    return values


def choices(allowed):
    def parse(text):
        values = [t.strip() for t in text.split(",") if t.strip()]
        bad = [v for v in values if v not in allowed]
        if not values or bad:
            raise argparse.ArgumentTypeError(
                f"must be comma-separated values of {', '.join(allowed)}. Received: {text!r}")
        return values

    parse.__name__ = "list"
    return parse


def integers(text):
    """Comma-separated integers >= 0."""
    return [nonnegative_int(t.strip()) for t in text.split(",") if t.strip()] or \
        nonnegative_int(text)


def add_common(p, methods):
    """Options shared by `sweep` and `sensitivity` (`methods`: the default rankings)."""
    p.add_argument("model", metavar="MODEL", type=model_file,
                   help="the saved model (.keras or full-model .h5)")
    p.add_argument("--data", required=True, type=data_source,
                   help=f"evaluation data: {', '.join(LOADERS)} (the test half; from "
                   "$TFPRUNE_DATA_DIR or keras's download) or a .npz file")
    p.add_argument("--out", required=True, type=output_directory,
                   help="folder for the records, CSV, JSON and PNG (resumed if it holds a "
                   "run with the same arguments)")
    p.add_argument("--sparsities", type=fractions, default=fractions(DEFAULT_SPARSITIES),
                   metavar="S,S,...", help=f"levels (default: {DEFAULT_SPARSITIES})")
    p.add_argument("--method", type=choices(("magnitude", "random")), default=list(methods),
                   metavar="M,M", help=f"magnitude and/or random ranking (default: "
                   f"{','.join(methods)})")
    p.add_argument("--scope", choices=("layer", "global"), default="layer",
                   help="rank each layer on its own, or all together")
    p.add_argument("--seeds", type=integers, default=[0], metavar="N,N,...",
                   help="seeds of random rankings and fine-tuning runs (default: 0)")
    p.add_argument("--samples", type=positive_int, default=None,
                   help="evaluate on the first N examples only (default: all)")
    p.add_argument("--batch-size", type=positive_int, default=256, help="evaluation batch size")
    p.add_argument("--metric", default=None,
                   help="metric to plot (default: the first one that is not the loss)")
    p.add_argument("--no-resume", dest="resume", action="store_false",
                   help="start the --out folder over instead of resuming (default: resume)")
    p.add_argument("--quiet", action="store_true", help="no progress bar (default: off)")


def check_metric(result, args):
    """ValueError for a --metric the run did not report (known only once it ran);
    the records are kept in --out, so the rerun resumes."""
    if args.metric is None or args.metric in result.metrics:
        return
    raise ValueError(f"--metric {args.metric!r} is not a metric of this run (it reported "
                     f"{', '.join(result.metrics)}); the records are in {args.out!r}: rerun "
                     "with one of those and the run resumes from them")


def register(subparsers):
    p = subparsers.add_parser(
        "sweep",
        help="accuracy-vs-sparsity curves of a saved model (weight/unit, magnitude/random)",
        description="Prune a saved Keras model one-shot at each sparsity (and optionally "
        "fine-tune), evaluate it, and write sweep.csv, sweep.json and sweep.png to --out. "
        "The model file is never modified.",
    )
    add_common(p, ("magnitude", "random"))
    p.add_argument("--granularity", type=choices(("weight", "unit")), default=["weight", "unit"],
                   metavar="G,G", help="weight and/or unit pruning (default: weight,unit)")
    p.add_argument("--finetune-epochs", type=nonnegative_int, default=0,
                   help="also fine-tune each level for N epochs on the training half of "
                   "--data (0: one-shot only)")
    p.add_argument("--prune-output-layer", dest="skip_output_layer", action="store_false",
                   help="prune the output layer's weights too (default: kept, as the seed "
                   "script)")
    p.add_argument("--no-sizes", dest="sizes", action="store_false",
                   help="skip gzip and shrunk sizes per level (faster; default: measured)")
    p.add_argument("--x", choices=("sparsity", "params", "flops", "size"), default="sparsity",
                   help="x axis of sweep.png")
    p.set_defaults(func=run)
    return p


def run(args):
    import pathlib

    import tfprune.sweep

    methods = args.method
    finetune = None
    if args.finetune_epochs:
        if "magnitude" not in methods:
            raise ValueError("--finetune-epochs makes fine-tuned magnitude curves: include "
                             "magnitude in --method")
        finetune = dict(epochs=args.finetune_epochs)
    result = tfprune.sweep.run(
        args.model, args.data, sparsities=args.sparsities, granularities=args.granularity,
        methods=methods, scope=args.scope, finetune=finetune, seeds=args.seeds,
        skip_output_layer=args.skip_output_layer, out=args.out, resume=args.resume,
        progress=not args.quiet, batch_size=args.batch_size, sizes=args.sizes,
        samples=args.samples)
    check_metric(result, args)
    png = pathlib.Path(args.out) / "sweep.png"
    result.plot(metric=args.metric, x=args.x, path=png)
    print(result.table(args.metric))
    print(f"wrote {pathlib.Path(args.out) / 'sweep.csv'}, sweep.json, {png.name}")
    return 0
