"""`tfprune inspect`: what each tensor of a .tflite file became (`tfprune.export.inspect`)."""

import argparse
import json
import os

from tfprune.cli import existing_path


def _tflite(text):
    path = existing_path(text)
    if os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"must be a .tflite file. Received: {text!r}")
    with open(path, "rb") as f:
        head = f.read(8)
    if head[4:8] != b"TFL3":
        raise argparse.ArgumentTypeError(
            f"not a TFLite flatbuffer (no 'TFL3' identifier). Received: {text!r}")
    return path


def register(subparsers):
    p = subparsers.add_parser(
        "inspect",
        help="per-tensor encoding of a .tflite file (dense / CSR / block), sparse kernels",
        description="Read a .tflite file (tfprune's, tfmot's, anyone's) and print, per "
        "weight, its encoding as stored in the flatbuffer (dense, CSR, block 1x4, block "
        "1x16), bytes, exact zeros, and whether it runs on a sparse kernel or is DENSIFY'd "
        "at load; warns about known-bad combinations.",
    )
    p.add_argument("path", metavar="FILE", type=_tflite, help="the .tflite file")
    p.add_argument("--json", action="store_true",
                   help="print the report as JSON instead of a table (default: off)")
    p.set_defaults(func=run)
    return p


def run(args):
    from tfprune.export import inspect

    report = inspect(args.path)
    print(json.dumps(report.to_dict(), indent=1) if args.json else report.table())
    return 0
