"""`tfprune report`: per-layer sparsity of a saved Keras model (`tfprune.sparsity_report`)."""

import argparse
import json
import os

from tfprune.cli import existing_path

_SUFFIXES = (".keras", ".h5", ".hdf5")


def _model_file(text):
    path = existing_path(text)
    if os.path.isdir(path) or not path.lower().endswith(_SUFFIXES):
        raise argparse.ArgumentTypeError(
            f"must be a saved Keras model (.keras or .h5). Received: {text!r}")
    if path.lower().endswith(".weights.h5"):
        raise argparse.ArgumentTypeError(
            f"holds weights only, no model: `tfprune prune-h5 {text} --sparsity 0 --dry-run` "
            f"shows its per-tensor zeros. Received: {text!r}")
    return path


def register(subparsers):
    p = subparsers.add_parser(
        "report",
        help="per-layer sparsity, params and FLOPs of a saved Keras model",
        description="Load a saved Keras model (.keras, or a full-model .h5; pruned "
        "checkpoints with tfprune wrappers included) without its training code and print "
        "the zeros of every prunable weight, and params / nonzero params / FLOPs per "
        "layer.",
    )
    p.add_argument("model", metavar="MODEL", type=_model_file,
                   help="the saved model (.keras or .h5)")
    p.add_argument("--json", action="store_true",
                   help="print the report as JSON instead of tables (default: off)")
    p.set_defaults(func=run)
    return p


def _weights_only(path):
    if not path.lower().endswith((".h5", ".hdf5")):
        return False
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return "model_config" not in f.attrs
    except OSError:
        return False  # not HDF5: let Keras say what it is


def run(args):
    if _weights_only(args.model):
        raise ValueError(f"{args.model} holds weights only (no model config): `tfprune "
                         f"prune-h5 {args.model} --sparsity 0 --dry-run` shows its zeros")
    import keras

    import tfprune

    # Under the console script tfprune loads lazily; the first public name accessed
    # loads every module (registering the pruning wrapper for load_model). Start
    # from one whose module imports no wrappers: starting from PruneLowMagnitude
    # or sparsity_report hits a circular import in the lazy loader.
    tfprune.PolynomialDecay
    model = keras.models.load_model(args.model, compile=False)
    report = tfprune.sparsity_report(model)
    print(report.to_json(indent=1) if args.json else str(report))
    return 0
