#!/usr/bin/env python
"""VGG-16 (32x32): filter (unit) vs weight pruning curves, and what unit pruning buys.

1. Data: `tfprune.datasets.load_cifar10(fallback="mnist")`: CIFAR-10 from
   `$TFPRUNE_DATA_DIR` or keras's download; offline without a copy, MNIST padded to
   32x32x3 (the output and the JSON say which was used).
2. Model: `tfprune.sweep.models.vgg16(width=W)`: keras.applications.VGG16 (13 convs,
   5 poolings, no BatchNormalization) at width 1, or the same layers with every
   filter count times W, plus Flatten, Dense(256, relu), Dense(10, softmax).
   Trained `--epochs` epochs on `--train-samples` images, Adam `--lr`, batch 128,
   inputs x/255.
3. One-shot sweep (`tfprune.sweep.run`): weight and unit granularity, magnitude and
   random ranking (seed 0), layer scope, the output layer kept, on `--test-samples`
   test images.
4. Fine-tuned unit curve: at each level `--finetune-epochs` of
   `prune_low_magnitude(granularity="unit")` from the dense weights on
   `--finetune-samples` training images (`tfprune.sweep.run(finetune=...)`).
5. At each unit level: `tfprune.shrink` of the masked model (outputs checked equal
   by shrink): params, FLOPs, and batch-1 Keras latency of the dense and the shrunk
   model (compiled calls, no TFLite), alternated call by call, median of
   `--latency-runs` each. The shrunk architecture depends only on the level (layer
   scope keeps the same unit counts), so one latency serves the one-shot and the
   fine-tuned model of a level; their accuracies are the records' (shrink verifies
   that the shrunk model computes what the masked one does).

Writes benchmarks/results/vgg16_sweep.csv (the records; unit and dense rows carry
`latency_ms` and `shrunk_latency_ms`), vgg16_sweep.png (accuracy vs sparsity;
speed-up and size reduction of the shrunk models) and vgg16_sweep.json. The trained
model and the sweeps' records are kept in `--work-dir` (a rerun resumes).

Run:  TFPRUNE_DATA_DIR=/work/shared/data .venv/bin/python benchmarks/vgg16_sweep.py
      (--quick: a smoke run, width 1/16, 2000 images, writes nothing unless --output-dir;
       --plot-only: redraw the PNG from the saved CSV and JSON)
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


def paired_latency(a, b, x, runs, warmup=5):
    """Median batch-1 latency (ms) of models `a` and `b`, calls alternated so both
    see the same machine load."""
    import tensorflow as tf

    calls = [tf.function(lambda t, m=m: m(t, training=False)) for m in (a, b)]
    sample = tf.constant(x[:1])
    for call in calls:
        for _ in range(warmup):
            call(sample)
    times = ([], [])
    for _ in range(runs):
        for call, out in zip(calls, times):
            t0 = time.perf_counter()
            keras.ops.convert_to_numpy(call(sample))
            out.append(time.perf_counter() - t0)
    return [1e3 * float(np.median(t)) for t in times]


def unit_levels(model, test, levels, runs, accuracy):
    """Shrunk model per unit level: params, FLOPs, latency (paired with the dense
    model's); `accuracy[(level, finetuned)]` from the sweep's records."""
    x, _ = test
    rows = []
    for s in levels:
        with tfprune.oneshot.apply_masks(model, s, granularity="unit"):
            small, report = shrink(model, return_report=True)
        dense_ms, small_ms = paired_latency(model, small, x, runs)
        row = dict(sparsity=s, shrunk_params=report.params_after,
                   shrunk_flops=report.flops_after, dense_ms=dense_ms, shrunk_ms=small_ms,
                   speedup=dense_ms / small_ms, one_shot_accuracy=accuracy.get((s, False)),
                   finetuned_accuracy=accuracy.get((s, True)))
        rows.append(row)
        tuned = row["finetuned_accuracy"]
        log(f"  unit {s:.0%}: params {model.count_params():,} -> {report.params_after:,} "
            f"({model.count_params() / report.params_after:.1f}x smaller), latency "
            f"{dense_ms:.2f} -> {small_ms:.2f} ms ({dense_ms / small_ms:.1f}x faster), accuracy "
            f"one-shot {row['one_shot_accuracy']:.4f}"
            + (f", fine-tuned {tuned:.4f}" if tuned is not None else ""))
    return rows


def figure(result, rows, dense_params, path, title):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    fig = Figure(figsize=(13, 5), layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2, width_ratios=(3, 2))
    tfprune.plot.curves(result, ax=left, title="accuracy vs sparsity")
    fig.suptitle(title)
    xs = [r["sparsity"] for r in rows]
    right.plot(xs, [r["speedup"] for r in rows], "o-", color="tab:orange",
               label="batch-1 latency: dense / shrunk (Keras, this CPU)")
    right.plot(xs, [dense_params / r["shrunk_params"] for r in rows], "s--", color="tab:purple",
               label="params: dense / shrunk")
    for r in rows:
        acc = r["finetuned_accuracy"] if r["finetuned_accuracy"] is not None else \
            r["one_shot_accuracy"]
        right.annotate(f"{acc:.1%}", (r["sparsity"], r["speedup"]),
                       textcoords="offset points", xytext=(0, 7), ha="center",
                       fontsize="x-small")
    right.axhline(1.0, color="0.35", linestyle=":", linewidth=1.5, label="dense model (1x)")
    right.set_yscale("log")
    right.set_xlim(0.0, 1.0)
    right.xaxis.set_major_formatter(PercentFormatter(1.0))
    right.set_xlabel("unit (filter) sparsity: fraction of units removed by shrink")
    right.set_ylabel("x smaller / x faster (log scale)")
    right.set_title("Unit pruning + shrink (labels: test accuracy"
                    + (", fine-tuned)" if rows and rows[0]["finetuned_accuracy"] is not None
                       else ", one-shot)"))
    right.grid(alpha=0.3)
    right.legend(fontsize="small", loc="upper left")
    fig.savefig(path, dpi=150)


def title_for(width, name, finetuned):
    data = ("MNIST padded to 32x32x3 (offline stand-in, not CIFAR-10)"
            if name.startswith("mnist") else name)
    return (f"VGG-16 (width {width:g}) on {data}: test accuracy, one-shot"
            + (" and fine-tuned" if finetuned else ""))


def plot_only(out):
    """Redraw vgg16_sweep.png from the saved vgg16_sweep.{csv,json} (no TensorFlow work)."""
    csv_path, json_path = out / "vgg16_sweep.csv", out / "vgg16_sweep.json"
    if not (csv_path.is_file() and json_path.is_file()):
        raise SystemExit(f"--plot-only: no {csv_path} / {json_path}; run the sweep first")
    result = tfprune.sweep.SweepResult.load(csv_path)
    saved = json.loads(json_path.read_text())
    result.config.update(data=f"{saved['data']}:test")
    finetuned = any(r["finetune_epochs"] for r in result.records)
    figure(result, saved["unit_levels"], saved["params"], out / "vgg16_sweep.png",
           title_for(saved["settings"]["width"], saved["data"], finetuned))
    log(f"wrote {out / 'vgg16_sweep.png'} from {csv_path}, {json_path}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--width", type=float, default=0.25,
                   help="filter-count multiplier (1.0: keras.applications.VGG16; default 0.25)")
    p.add_argument("--epochs", type=int, default=2, help="training epochs (default 2)")
    p.add_argument("--lr", type=float, default=5e-4, help="Adam learning rate (default 5e-4)")
    p.add_argument("--train-samples", type=int, default=30000, help="default 30000")
    p.add_argument("--test-samples", type=int, default=5000, help="default 5000")
    p.add_argument("--finetune-epochs", type=int, default=1,
                   help="fine-tuning epochs per unit level, 0 to skip (default 1)")
    p.add_argument("--finetune-samples", type=int, default=10000, help="default 10000")
    p.add_argument("--latency-runs", type=int, default=100, help="calls per latency median")
    p.add_argument("--quick", action="store_true", help="smoke run (width 1/16, 2000 images)")
    p.add_argument("--work-dir", default="/tmp/tfprune_vgg16_sweep_work",
                   help="trained model and sweep records, for resuming")
    p.add_argument("--output-dir", default=None,
                   help="where to write vgg16_sweep.* (default benchmarks/results; --quick "
                        "writes nothing unless given)")
    p.add_argument("--plot-only", action="store_true",
                   help="redraw vgg16_sweep.png from the saved vgg16_sweep.{csv,json} in "
                        "--output-dir (default benchmarks/results), without running")
    args = p.parse_args()
    if args.plot_only:
        return plot_only(pathlib.Path(args.output_dir) if args.output_dir else RESULTS)
    levels = LEVELS
    if args.quick:
        args.width, args.epochs = 0.0625, 1
        args.train_samples, args.test_samples, args.latency_runs = 2000, 500, 10
        args.finetune_samples = 1000
        levels = (0.5, 0.9)
    out = pathlib.Path(args.output_dir) if args.output_dir else (None if args.quick else RESULTS)
    work = pathlib.Path(args.work_dir) / ("quick" if args.quick else "full")
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    name, note, train, test = load(args.train_samples, args.test_samples)
    log(f"data: {name} ({len(train[1])} train / {len(test[1])} test)" + (f" -- {note}" if note else ""))
    path = work / f"vgg16_w{args.width:g}_{args.epochs}ep_{len(train[1])}_{name}.keras"
    train_s = 0.0
    if path.exists():
        model = keras.models.load_model(path)
        log(f"trained model loaded from {path}")
    else:
        keras.utils.set_random_seed(0)
        model = tfprune.sweep.models.vgg16(width=args.width)
        model.compile(keras.optimizers.Adam(args.lr), "sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        t0 = time.perf_counter()
        model.fit(*train, batch_size=128, epochs=args.epochs, verbose=2)
        train_s = time.perf_counter() - t0
        model.save(path)
    log(f"VGG-16 width {args.width}: {model.count_params():,} params, trained {args.epochs} "
        f"epochs ({train_s:.0f} s)")
    t0 = time.perf_counter()
    result = tfprune.sweep.run(model, test, sparsities=levels, progress=False,
                               out=work / f"oneshot_{path.stem}")
    sweep_s = time.perf_counter() - t0
    log(f"one-shot sweep: {len(result.records)} records in {sweep_s:.0f} s")
    results = [result]
    finetune_s = 0.0
    if args.finetune_epochs:
        t0 = time.perf_counter()
        subset = (train[0][:args.finetune_samples], train[1][:args.finetune_samples])
        tuned = tfprune.sweep.run(
            model, test, sparsities=levels, granularities=("unit",), methods=("magnitude",),
            progress=False, finetune=dict(epochs=args.finetune_epochs, train_data=subset),
            out=work / f"finetuned_{args.finetune_epochs}ep_{args.finetune_samples}_{path.stem}")
        finetune_s = time.perf_counter() - t0
        log(f"fine-tuned unit curve in {finetune_s:.0f} s")
        results.append(tfprune.sweep.SweepResult(
            [r for r in tuned.records if r["finetune_epochs"]], "sweep", tuned.metrics))
    result = tfprune.sweep.SweepResult.merge(results)
    result.config.update(model=f"VGG-16 (width {args.width:g})", data=f"{name}:test")
    print(result.table())
    accuracy = {(r["sparsity"], bool(r["finetune_epochs"])): r["accuracy"] for r in result.records
                if r["granularity"] == "unit" and r["method"] == "magnitude"}
    rows = unit_levels(model, test, levels, args.latency_runs, accuracy)
    dense_ms = float(np.median([r["dense_ms"] for r in rows]))
    by_level = {r["sparsity"]: r for r in rows}
    for r in result.records:
        if r["granularity"] is None:
            r.update(latency_ms=dense_ms, shrunk_latency_ms=None)
        elif r["granularity"] == "unit":
            row = by_level[r["sparsity"]]
            r.update(latency_ms=row["dense_ms"], shrunk_latency_ms=row["shrunk_ms"])
        else:
            r.update(latency_ms=None, shrunk_latency_ms=None)
    timings = dict(train=train_s, sweep=sweep_s, finetune=finetune_s,
                   total=time.perf_counter() - t_start)
    if out is None:
        return
    out.mkdir(parents=True, exist_ok=True)
    result.to_csv(out / "vgg16_sweep.csv")
    figure(result, rows, model.count_params(), out / "vgg16_sweep.png",
           title_for(args.width, name, bool(args.finetune_epochs)))
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
