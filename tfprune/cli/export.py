"""`tfprune export`: convert a saved Keras model to TFLite (`tfprune.export.to_tflite`)."""

import argparse
import json
import os

from tfprune.cli import existing_path, quiet_native_output

_SPARSE = {"auto": "auto", "on": True, "off": False}
_MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")


def saved_model_file(text):
    """An argparse type: a saved Keras model file (.keras, full-model .h5)."""
    path = existing_path(text)
    if os.path.isdir(path) or not path.lower().endswith(_MODEL_SUFFIXES):
        raise argparse.ArgumentTypeError(
            f"must be a saved Keras model (.keras or .h5). Received: {text!r}")
    if path.lower().endswith(".weights.h5"):
        raise argparse.ArgumentTypeError(
            f"holds weights only, no model: `tfprune prune-h5 {text} --sparsity 0 --dry-run` "
            f"shows its per-tensor zeros. Received: {text!r}")
    return model_bytes_checked(path, text)


def model_bytes_checked(path, text):
    """`path` if its bytes are a .keras archive / HDF5 file (`tfprune.modelfiles`),
    else an argparse error naming `text` (standard library only: no TensorFlow)."""
    from tfprune import modelfiles

    problem = modelfiles.content_problem(path)
    if problem:
        raise argparse.ArgumentTypeError(f"{problem}. Received: {text!r}")
    return path


def check_not_weights_only(path):
    """Raise ValueError for an .h5 file without a model config (h5py, no Keras)."""
    if not path.lower().endswith((".h5", ".hdf5")):
        return
    import h5py

    try:
        with h5py.File(path, "r") as f:
            has_config = "model_config" in f.attrs
    except OSError:
        return  # not HDF5: let Keras say what it is
    if not has_config:
        raise ValueError(f"{path} holds weights only (no model config): `tfprune prune-h5 "
                         f"{path} --sparsity 0 --dry-run` shows its zeros")


def _npz(text):
    path = existing_path(text)
    if not path.lower().endswith(".npz"):
        raise argparse.ArgumentTypeError(
            f"must be a .npz file of input arrays (np.savez). Received: {text!r}")
    import zipfile

    if os.path.isdir(path) or not zipfile.is_zipfile(path):
        raise argparse.ArgumentTypeError(
            f"not a .npz file (not a zip archive; write it with np.savez). Received: {text!r}")
    return path


def _output(text):
    parent = os.path.dirname(os.path.abspath(text)) or "."
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"must be a file path, not a directory. "
                                         f"Received: {text!r}")
    if not os.path.isdir(parent):
        raise argparse.ArgumentTypeError(f"its directory does not exist. Received: {text!r}")
    return text


def register(subparsers):
    p = subparsers.add_parser(
        "export",
        help="convert a saved Keras model to a .tflite file, sparse where it pays",
        description="Convert a saved Keras model (pruned or not) to TFLite/LiteRT: strip "
        "the pruning wrappers, optionally remove dead units, store weights sparse only "
        "where the file gets smaller and the combination loads and runs correctly, never "
        "write a file larger than the dense one, and verify the file in the interpreter "
        "against Keras before writing it. Prints what each tensor became.",
    )
    p.add_argument("model", metavar="MODEL", type=saved_model_file,
                   help="the saved Keras model (.keras or full-model .h5)")
    p.add_argument("output", metavar="OUT", type=_output, help="the .tflite file to write")
    p.add_argument("--shrink", action="store_true",
                   help="remove dead units first (tfprune.shrink): the dependable speedup "
                   "(default: off)")
    p.add_argument("--quantize", choices=("float16", "dynamic", "int8"), default=None,
                   help="weight/activation quantization (default: none, float32)")
    p.add_argument("--calibration", metavar="NPZ", type=_npz, default=None,
                   help="inputs for int8 calibration, a .npz of arrays (one per model input, "
                   "by input name or in order); required with --quantize int8, and used to "
                   "verify (default: none)")
    p.add_argument("--samples", metavar="NPZ", type=_npz, default=None,
                   help="inputs to verify the file on (default: the calibration inputs, "
                   "else 8 random samples)")
    p.add_argument("--sparse", choices=tuple(_SPARSE), default="auto",
                   help="auto: sparse only where smaller and safe; on: every safe sparse "
                   "tensor; off: dense")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="do not run the file in the interpreter (default: verify)")
    p.add_argument("--no-xnnpack", dest="xnnpack", action="store_false",
                   help="target the builtin kernels without LiteRT's default XNNPACK "
                   "delegate (allows dynamic-range and int8 CSR sparsity) (default: "
                   "XNNPACK)")
    p.add_argument("--json", action="store_true",
                   help="print the report as JSON instead of a table (default: off)")
    p.set_defaults(func=run, parser=p)
    return p


def load_saved_model(path):
    """`keras.models.load_model(path, compile=False)` with tfprune's objects registered."""
    import keras

    import tfprune

    # Under the console script tfprune loads lazily; the first public name accessed
    # loads every module (registering the pruning wrapper for load_model). Start
    # from one whose module imports no wrappers: starting from PruneLowMagnitude
    # or sparsity_report hits a circular import in the lazy loader.
    tfprune.PolynomialDecay
    try:
        return keras.models.load_model(path, compile=False)
    except (ValueError, TypeError, KeyError, OSError) as e:  # a config Keras cannot read
        raise ValueError(f"Could not load {path!r} as a Keras model: "
                         f"{' '.join(str(e).split()) or type(e).__name__}") from e


def _arrays(path, flag):
    """The arrays of a .npz file, by name; ValueError naming the file if it is not one."""
    import zipfile

    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as data:
            if not hasattr(data, "files"):  # a .npy renamed
                raise ValueError("a single array (.npy), not a .npz archive")
            return {k: data[k] for k in data.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        why = " ".join(str(e).split()) or type(e).__name__
        raise ValueError(f"{flag} {path!r} is not a readable .npz file of arrays ({why})") \
            from None


def _model_inputs(path, flag, model):
    """The arrays of `path` as the model's inputs (see `_inputs`), checked against
    the model's inputs (count, shapes) before any conversion."""
    from tfprune.export import verify

    arrays = _arrays(path, flag)
    data = _inputs(arrays, model)
    verify.check_model_inputs(model, data, f"{flag} {path!r}", labels=list(arrays))
    return data


def _inputs(arrays, model):
    """One array: the input; several: a dict when names match the model's inputs."""
    if arrays is None:
        return None
    names = [t.name for t in getattr(model, "inputs", None) or []]
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    if sorted(arrays) == sorted(names):
        return dict(arrays)
    return list(arrays.values())


def run(args):
    if args.quantize == "int8" and args.calibration is None:
        args.parser.error("--quantize int8 needs --calibration NPZ (a few hundred typical "
                          "inputs)")
    if os.path.abspath(args.output) == os.path.abspath(args.model):
        args.parser.error("OUT must differ from MODEL")
    check_not_weights_only(args.model)
    from tfprune.export import to_tflite

    model = load_saved_model(args.model)
    calibration = _model_inputs(args.calibration, "--calibration", model) \
        if args.calibration else None
    samples = _model_inputs(args.samples, "--samples", model) if args.samples else None
    with quiet_native_output():  # the converter's "fully_quantize: 0, ..." lines
        report = to_tflite(model, args.output, sparse=_SPARSE[args.sparse],
                           shrink=args.shrink, quantize=args.quantize,
                           representative_data=calibration, verify=args.verify,
                           sample_inputs=samples, xnnpack=args.xnnpack)
    print(json.dumps(report.to_dict(), indent=1) if args.json else report.table())
    return 0
