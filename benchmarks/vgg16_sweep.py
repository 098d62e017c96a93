#!/usr/bin/env python
"""VGG-16 (32x32): filter (unit) vs weight pruning curves, and what unit pruning buys.

1. Data: `tfprune.datasets.load_cifar10(fallback="mnist")`: CIFAR-10 from
   `$TFPRUNE_DATA_DIR` or keras's download; offline without a copy, MNIST padded to
   32x32x3 (the output and the JSON say which was used).
2. Model: `tfprune.sweep.models.vgg16(width=W)`: keras.applications.VGG16 (13 convs,
   5 poolings) at width 1, or the same layers with every filter count times W, plus
   Flatten, Dense(256, relu), Dense(10, softmax). Trained `--epochs` epochs, Adam
   `--lr`, batch 128, inputs x/255.
3. One-shot sweep (`tfprune.sweep.run`): weight and unit granularity, magnitude and
   random ranking (seed 0), layer scope, the output layer kept, on the test set.
4. At each unit level: `tfprune.shrink` of the masked model (outputs checked equal
   by shrink), its params, FLOPs, test accuracy, and batch-1 Keras latency (median of
   `--latency-runs` compiled calls; no TFLite), against the dense model's, measured
   alternately in this process.

Writes benchmarks/results/vgg16_sweep.csv (the sweep's records; unit and dense rows
carry `latency_ms` and `shrunk_latency_ms`) and vgg16_sweep.png (accuracy vs
sparsity; speed-up and size reduction of the shrunk models).

Run:  TFPRUNE_DATA_DIR=/work/shared/data .venv/bin/python benchmarks/vgg16_sweep.py
      (--quick: a smoke run, width 1/16, 2000 images, writes nothing unless --output-dir)
"""

import argparse
import json
import os
import pathlib
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfprune  # noqa: E402
import tfprune.plot  # noqa: E402
import tfprune.sweep  # noqa: E402
from tfprune.shrink import shrink  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import tfprune_source  # noqa: E402

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
LEVELS = (0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def log(*a):
    print(*a, flush=True)


def load(train_samples, test_samples):
    data = tfprune.datasets.load_cifar10(fallback="mnist")
    (x_train, y_train), (x_test, y_test) = data
    x_train = x_train[:train_samples].astype("float32") / 255.0
    x_test = x_test[:test_samples].astype("float32") / 255.0
    return data.name, data.note, (x_train, y_train[:train_samples]), (x_test, y_test[:test_samples])


def unit_levels(model, test, levels, runs):
    """Shrunk model per unit level: params, FLOPs, accuracy, latency (alternated)."""
    x, y = test
    rows = []
    for s in levels:
        with tfprune.oneshot.apply_masks(model, s, granularity="unit"):
            masked_acc = model.evaluate(x, y, batch_size=256, verbose=0, return_dict=True)
            small, report = shrink(model, return_report=True)
        small.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        acc = small.evaluate(x, y, batch_size=256, verbose=0, return_dict=True)["accuracy"]
        dense_ms = tfprune.sweep.latency_ms(model, x, runs=runs)
        small_ms = tfprune.sweep.latency_ms(small, x, runs=runs)
        rows.append(dict(sparsity=s, shrunk_params=report.params_after,
                         shrunk_flops=report.flops_after, accuracy=acc,
                         masked_accuracy=masked_acc["accuracy"], dense_ms=dense_ms,
                         shrunk_ms=small_ms, speedup=dense_ms / small_ms,
                         max_abs_diff=report.max_abs_diff))
        log(f"  unit {s:.0%}: params {model.count_params():,} -> {report.params_after:,} "
            f"({model.count_params() / report.params_after:.1f}x smaller), latency "
            f"{dense_ms:.2f} -> {small_ms:.2f} ms ({dense_ms / small_ms:.1f}x faster), "
            f"accuracy {acc:.4f} (masked {masked_acc['accuracy']:.4f})")
    return rows


def figure(result, rows, dense_params, path, title):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    fig = Figure(figsize=(13, 5), layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2, width_ratios=(3, 2))
    tfprune.plot.curves(result, ax=left, title=title)
    xs = [r["sparsity"] for r in rows]
    right.plot(xs, [r["speedup"] for r in rows], "o-", color="tab:orange",
               label="batch-1 latency: dense / shrunk (Keras, this CPU)")
    right.plot(xs, [dense_params / r["shrunk_params"] for r in rows], "s--", color="tab:purple",
               label="params: dense / shrunk")
    for r in rows:
        right.annotate(f"{r['accuracy']:.1%}", (r["sparsity"], r["speedup"]),
                       textcoords="offset points", xytext=(0, 7), ha="center",
                       fontsize="x-small")
    right.axhline(1.0, color="0.35", linestyle=":", linewidth=1.5, label="dense model (1x)")
    right.set_yscale("log")
    right.set_xlim(0.0, 1.0)
    right.xaxis.set_major_formatter(PercentFormatter(1.0))
    right.set_xlabel("unit (filter) sparsity: fraction of units removed by shrink")
    right.set_ylabel("x smaller / x faster (log scale)")
    right.set_title("Unit pruning + shrink (labels: test accuracy)")
    right.grid(alpha=0.3)
    right.legend(fontsize="small", loc="upper left")
    fig.savefig(path, dpi=150)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--width", type=float, default=0.25,
                   help="filter-count multiplier (1.0: keras.applications.VGG16; default 0.25)")
    p.add_argument("--epochs", type=int, default=3, help="training epochs (default 3)")
    p.add_argument("--lr", type=float, default=5e-4, help="Adam learning rate (default 5e-4)")
    p.add_argument("--train-samples", type=int, default=None, help="default: all")
    p.add_argument("--test-samples", type=int, default=None, help="default: all")
    p.add_argument("--latency-runs", type=int, default=50, help="calls per latency median")
    p.add_argument("--quick", action="store_true", help="smoke run (width 1/16, 2000 images)")
    p.add_argument("--output-dir", default=None,
                   help="where to write vgg16_sweep.* (default benchmarks/results; --quick "
                        "writes nothing unless given)")
    args = p.parse_args()
    levels = LEVELS
    if args.quick:
        args.width, args.epochs = 0.0625, 1
        args.train_samples, args.test_samples, args.latency_runs = 2000, 500, 10
        levels = (0.5, 0.9)
    out = pathlib.Path(args.output_dir) if args.output_dir else (None if args.quick else RESULTS)
    t_start = time.perf_counter()
    name, note, train, test = load(args.train_samples, args.test_samples)
    log(f"data: {name} ({len(train[1])} train / {len(test[1])} test)" + (f" -- {note}" if note else ""))
    keras.utils.set_random_seed(0)
    model = tfprune.sweep.models.vgg16(width=args.width)
    model.compile(keras.optimizers.Adam(args.lr), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    t0 = time.perf_counter()
    model.fit(*train, batch_size=128, epochs=args.epochs, verbose=2)
    train_s = time.perf_counter() - t0
    log(f"VGG-16 width {args.width}: {model.count_params():,} params, trained {args.epochs} "
        f"epochs in {train_s:.0f} s")
    t0 = time.perf_counter()
    result = tfprune.sweep.run(model, test, sparsities=levels, progress=False)
    sweep_s = time.perf_counter() - t0
    result.config.update(model=f"VGG-16 (width {args.width:g})", data=f"{name}:test")
    print(result.table())
    log(f"sweep: {len(result.records)} records in {sweep_s:.0f} s")
    rows = unit_levels(model, test, levels, args.latency_runs)
    dense_ms = float(np.median([r["dense_ms"] for r in rows]))
    by_level = {r["sparsity"]: r for r in rows}
    for r in result.records:
        if r["granularity"] is None:
            r.update(latency_ms=dense_ms, shrunk_latency_ms=None)
        elif r["granularity"] == "unit":
            row = by_level[r["sparsity"]]
            r.update(latency_ms=row["dense_ms"], shrunk_latency_ms=row["shrunk_ms"])
    timings = dict(train=train_s, sweep=sweep_s, total=time.perf_counter() - t_start)
    if out is None:
        return
    out.mkdir(parents=True, exist_ok=True)
    result.to_csv(out / "vgg16_sweep.csv")
    figure(result, rows, model.count_params(), out / "vgg16_sweep.png",
           f"VGG-16 (width {args.width:g}) on {name}: one-shot, test accuracy")
    payload = dict(data=name, data_note=note, settings=vars(args), levels=list(levels),
                   params=model.count_params(), dense_latency_ms=dense_ms, unit_levels=rows,
                   summary=result.summary(), timings=timings,
                   environment=dict(python=platform.python_version(), keras=keras.__version__,
                                    cpus=os.cpu_count(), load_average=os.getloadavg(),
                                    tfprune_source=tfprune_source()))
    (out / "vgg16_sweep.json").write_text(json.dumps(
        tfprune.sweep.result._jsonable(payload), indent=1) + "\n")
    log(f"wrote {out / 'vgg16_sweep.csv'}, .png, .json in {timings['total']:.0f} s")


if __name__ == "__main__":
    main()
