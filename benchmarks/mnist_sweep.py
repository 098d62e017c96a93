#!/usr/bin/env python
"""The seed article's picture: MNIST accuracy vs sparsity of its MLP, with baselines.

For each seed (default 0, 1, 2):

1. Train the seed MLP (`tfprune.demo.seed_mlp()`: Dense 1000-1000-500-200-10, no
   biases, relu, softmax) on full MNIST (x/255 flattened): Adam 1e-3, batch 128,
   `--epochs` epochs (default 10), sparse categorical cross-entropy.
2. One-shot sweep (`tfprune.sweep.run`): weight and unit granularity, magnitude and
   random ranking (random seed = the training seed), at the seed's levels
   .25 .5 .6 .7 .8 .9 .95 .97 .99, layer scope, the output layer kept (as the seed
   script), evaluated on the 10,000 test images.
3. Fine-tuned weight curve: at each level, `tfprune.prune_low_magnitude` from the
   dense weights, `--finetune-epochs` epochs (default 2; PolynomialDecay over the
   first half, the second half at the final sparsity; Adam 1e-3), stripped, evaluated.

The three seeds' records are merged: the curves are the mean over the three trained
models with a ± std band. Targets (issue #7): one-shot weight within 1 point of dense
up to 90%, unit falls earlier; magnitude >= 10 points above random at 90% weight
sparsity; fine-tuned >= 98.0% at 95% weight sparsity.

Sweep speed (`--speed-repeats`, default 3, on seed 0's model): the wall and CPU time
of a one-shot `tfprune.sweep.run` (9 levels x 2 granularities x 2 methods + the dense
model = 37 evaluations, with sizes) against the sum of 37 plain `model.evaluate`
calls on the same test set and batch size, in this process, alternated; target
<= 1.3x. Also with `sizes=False` (no gzip / shrink per level).

Writes benchmarks/results/mnist_sweep.{csv,json,png}. Trained models, the sweeps'
records (`out=` folders) and the speed rounds are kept in `--work-dir`, so a rerun
after an interruption resumes where it stopped.

Run:  TFPRUNE_DATA_DIR=/work/shared/data .venv/bin/python benchmarks/mnist_sweep.py
      (--quick: a smoke run on 5000 images, writes nothing unless --output-dir;
       --plot-only: redraw the PNG from the saved JSON)
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
from tfprune.demo import seed_mlp  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import tfprune_source  # noqa: E402

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
LEVELS = (0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97, 0.99)
BATCH = 256  # evaluation batch size (sweep and baseline alike)


def log(*a):
    print(*a, flush=True)


def load(samples=None):
    (x_train, y_train), (x_test, y_test) = tfprune.datasets.load_mnist()
    x_train = x_train.reshape(len(x_train), -1).astype("float32") / 255.0
    x_test = x_test.reshape(len(x_test), -1).astype("float32") / 255.0
    if samples:
        x_train, y_train = x_train[:samples], y_train[:samples]
        x_test, y_test = x_test[: samples // 5], y_test[: samples // 5]
    return (x_train, y_train), (x_test, y_test)


def check_one_source():
    """Every tfprune module loaded comes from the same folder (a snapshot on
    PYTHONPATH must not fall back to the editable checkout for a missing file)."""
    root = pathlib.Path(tfprune.__file__).resolve().parent
    strays = [name for name, m in sys.modules.items() if name.startswith("tfprune.")
              and getattr(m, "__file__", None)
              and root not in pathlib.Path(m.__file__).resolve().parents]
    if strays:
        raise SystemExit(f"tfprune modules loaded from outside {root}: {strays}")


def train(seed, data, epochs, work):
    path = work / f"seed_mlp_seed{seed}_{epochs}ep_{len(data[1])}.keras"
    if path.exists():
        return keras.models.load_model(path), 0.0
    keras.utils.set_random_seed(seed)
    model = seed_mlp()
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    t0 = time.perf_counter()
    model.fit(*data, batch_size=128, epochs=epochs, verbose=0)
    secs = time.perf_counter() - t0
    model.save(path)
    return model, secs


def sweep_speed(model, test, repeats):
    """Alternate plain evaluate x 37 and one-shot sweeps; wall and CPU seconds."""
    n_evals = 1 + len(LEVELS) * 2 * 2
    model.evaluate(*test, batch_size=BATCH, verbose=0)  # trace the baseline once (its favour)
    rows = []
    for i in range(repeats):
        row = {}
        for what in ("evaluate", "sweep", "sweep_nosizes"):
            t0, c0 = time.perf_counter(), time.process_time()
            if what == "evaluate":
                for _ in range(n_evals):
                    model.evaluate(*test, batch_size=BATCH, verbose=0)
            else:
                tfprune.sweep.run(model, test, sparsities=LEVELS, progress=False,
                                  batch_size=BATCH, sizes=what == "sweep")
            row[what] = (time.perf_counter() - t0, time.process_time() - c0)
        row["ratio_wall"] = row["sweep"][0] / row["evaluate"][0]
        row["ratio_cpu"] = row["sweep"][1] / row["evaluate"][1]
        row["ratio_wall_nosizes"] = row["sweep_nosizes"][0] / row["evaluate"][0]
        row["ratio_cpu_nosizes"] = row["sweep_nosizes"][1] / row["evaluate"][1]
        log(f"  speed round {i + 1}: evaluate x{n_evals} {row['evaluate'][0]:.1f} s wall / "
            f"{row['evaluate'][1]:.1f} s CPU; sweep {row['sweep'][0]:.1f} / {row['sweep'][1]:.1f}"
            f" ({row['ratio_wall']:.3f}x wall, {row['ratio_cpu']:.3f}x CPU); without sizes "
            f"{row['sweep_nosizes'][0]:.1f} / {row['sweep_nosizes'][1]:.1f} "
            f"({row['ratio_wall_nosizes']:.3f}x, {row['ratio_cpu_nosizes']:.3f}x)")
        rows.append(row)
    med = {k: float(np.median([r[k] for r in rows])) for k in rows[0] if k.startswith("ratio")}
    return {"evaluations": n_evals, "batch_size": BATCH, "rounds": rows, "median": med,
            "load_average": os.getloadavg()}


def at(summary, granularity, method, sparsity, finetune=0):
    for s in summary:
        if (s["granularity"], s["method"], s["finetune_epochs"]) == (granularity, method,
                                                                        finetune) and \
                abs(s["sparsity"] - sparsity) < 1e-9:
            return s
    return None


def targets(result, finetune_epochs):
    summary = result.summary()
    dense = result.dense["accuracy"]
    checks = {}
    weight = [s for s in summary if s["granularity"] == "weight" and s["method"] == "magnitude"
              and s["finetune_epochs"] == 0]
    within = [s for s in weight if s["sparsity"] <= 0.9 + 1e-9]
    worst = min(within, key=lambda s: s["accuracy"])
    checks["one-shot weight within 1 point of dense up to 90%"] = dict(
        value=f"worst drop {dense - worst['accuracy']:.4f} at {worst['sparsity']:.0%}",
        passed=all(dense - s["accuracy"] <= 0.01 for s in within))
    first_drop = {}
    for g in ("weight", "unit"):
        curve = sorted([s for s in summary if s["granularity"] == g and s["method"] == "magnitude"
                        and s["finetune_epochs"] == 0], key=lambda s: s["sparsity"])
        first_drop[g] = next((s["sparsity"] for s in curve if dense - s["accuracy"] > 0.01), None)
    checks["unit falls earlier than weight (first level > 1 point below dense)"] = dict(
        value=f"unit {first_drop['unit']}, weight {first_drop['weight']}",
        passed=first_drop["unit"] is not None and (first_drop["weight"] is None
                                                   or first_drop["unit"] < first_drop["weight"]))
    mag, rnd = at(summary, "weight", "magnitude", 0.9), at(summary, "weight", "random", 0.9)
    if mag and rnd:
        checks["magnitude >= random + 10 points at 90% weight"] = dict(
            value=f"{mag['accuracy']:.4f} vs {rnd['accuracy']:.4f} "
                  f"(+{100 * (mag['accuracy'] - rnd['accuracy']):.1f} points)",
            passed=mag["accuracy"] - rnd["accuracy"] >= 0.10)
    tuned = at(summary, "weight", "magnitude", 0.95, finetune_epochs)
    if tuned:
        checks["fine-tuned >= 98.0% at 95% weight"] = dict(
            value=f"{tuned['accuracy']:.4f} ± {tuned['accuracy_std']:.4f}",
            passed=tuned["accuracy"] >= 0.98)
    return dense, checks


def figure(result, path, title):
    """Two panels: every curve on the full accuracy range, and the same curves zoomed on
    the top 6 points, with the bands the targets are read against."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    fig = Figure(figsize=(14, 5.6), layout="constrained")
    FigureCanvasAgg(fig)
    full, zoom = fig.subplots(1, 2, width_ratios=(1, 1))
    tfprune.plot.curves(result, ax=full, title="all curves")
    full.legend(fontsize="small", loc="lower left")
    tfprune.plot.curves(result, ax=zoom, title="zoom: dense - 6 to dense + 1 percentage points (the targets)")
    dense = result.dense["accuracy"]
    zoom.get_legend().remove()
    band = zoom.axhspan(dense - 0.01, dense, color="tab:blue", alpha=0.08, linewidth=0)
    goal = zoom.axhline(0.98, color="tab:green", linestyle="-.", linewidth=1)
    zoom.plot([0.95], [0.98], marker="v", color="tab:green", markersize=8, linestyle="none")
    zoom.axvline(0.9, color="0.6", linestyle=":", linewidth=1)
    zoom.set_ylim(dense - 0.06, dense + 0.01)
    zoom.legend([band, goal], ["within 1 point of dense (one-shot target up to 90%)",
                               "98.0%: fine-tuned target at 95% weight sparsity (\u25bc)"],
                fontsize="small", loc="lower left")
    fig.suptitle(title)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=130)
    os.replace(tmp, path)


def title_for(seeds):
    return (f"Seed MLP on MNIST (test accuracy): one-shot and fine-tuned, "
            f"mean ± std of {len(seeds)} trained models")


def plot_only(out):
    """Redraw mnist_sweep.png from a saved mnist_sweep.json (no TensorFlow work)."""
    saved = out / "mnist_sweep.json"
    if not saved.is_file():
        raise SystemExit(f"--plot-only: no {saved}; run the sweep first")
    result = tfprune.sweep.SweepResult.load(saved)
    seeds = json.loads(saved.read_text())["settings"]["seeds"]
    figure(result, out / "mnist_sweep.png", title_for(seeds))
    log(f"wrote {out / 'mnist_sweep.png'} from {saved}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", default="0,1,2", help="training seeds (default 0,1,2)")
    p.add_argument("--epochs", type=int, default=10, help="dense training epochs (default 10)")
    p.add_argument("--finetune-epochs", type=int, default=2,
                   help="fine-tuning epochs per level, 0 to skip (default 2)")
    p.add_argument("--speed-repeats", type=int, default=3,
                   help="rounds of the sweep-speed measurement, 0 to skip (default 3)")
    p.add_argument("--quick", action="store_true", help="smoke run: 5000 images, 1 seed")
    p.add_argument("--work-dir", default="/tmp/tfprune_mnist_sweep_work",
                   help="trained models, sweep records and speed rounds, for resuming "
                        "(default /tmp/tfprune_mnist_sweep_work)")
    p.add_argument("--output-dir", default=None,
                   help="where to write mnist_sweep.* (default benchmarks/results; "
                        "--quick writes nothing unless given)")
    p.add_argument("--plot-only", action="store_true",
                   help="redraw mnist_sweep.png from the saved mnist_sweep.json in "
                        "--output-dir (default benchmarks/results), without running")
    args = p.parse_args()
    if args.plot_only:
        return plot_only(pathlib.Path(args.output_dir) if args.output_dir else RESULTS)
    seeds = [int(s) for s in args.seeds.split(",")]
    samples = None
    if args.quick:
        seeds, samples = seeds[:1], 5000
        args.epochs, args.finetune_epochs = min(args.epochs, 1), min(args.finetune_epochs, 1)
        args.speed_repeats = min(args.speed_repeats, 1)
    out = pathlib.Path(args.output_dir) if args.output_dir else (None if args.quick else RESULTS)
    work = pathlib.Path(args.work_dir) / ("quick" if args.quick else "full")
    work.mkdir(parents=True, exist_ok=True)
    check_one_source()
    train_data, test = load(samples)
    log(f"MNIST {len(train_data[1])} train / {len(test[1])} test; seeds {seeds}; "
        f"{args.epochs} dense epochs; fine-tune {args.finetune_epochs} epochs; "
        f"keras {keras.__version__}; load average {os.getloadavg()[0]:.2f}")
    t_start = time.perf_counter()
    results, speed, timings = [], None, {}
    for seed in seeds:
        model, secs = train(seed, train_data, args.epochs, work)
        timings[f"train_{seed}"] = secs
        log(f"seed {seed}: trained in {secs:.0f} s" if secs else f"seed {seed}: trained model "
            f"loaded from {work}")
        speed_file = work / f"speed_{args.speed_repeats}.json"
        if speed is None and args.speed_repeats:
            if speed_file.exists():
                speed = json.loads(speed_file.read_text())
                log(f"  speed rounds loaded from {speed_file}")
            else:
                speed = sweep_speed(model, test, args.speed_repeats)
                speed_file.write_text(json.dumps(speed, indent=1))
        t0 = time.perf_counter()
        one_shot = tfprune.sweep.run(model, test, sparsities=LEVELS, seeds=(seed,),
                                     batch_size=BATCH, progress=False,
                                     out=work / f"seed{seed}_oneshot")
        timings[f"one_shot_{seed}"] = time.perf_counter() - t0
        log(f"seed {seed}: one-shot sweep in {timings[f'one_shot_{seed}']:.0f} s, dense "
            f"accuracy {one_shot.dense['accuracy']:.4f}")
        results.append(one_shot)
        if args.finetune_epochs:
            t0 = time.perf_counter()
            tuned = tfprune.sweep.run(
                model, test, sparsities=LEVELS, granularities=("weight",),
                methods=("magnitude",), seeds=(seed,), batch_size=BATCH, progress=False,
                sizes=True, finetune=dict(epochs=args.finetune_epochs, train_data=train_data,
                                          batch_size=128),
                out=work / f"seed{seed}_finetuned_{args.finetune_epochs}ep")
            timings[f"finetune_{seed}"] = time.perf_counter() - t0
            log(f"seed {seed}: fine-tuned curve in {timings[f'finetune_{seed}']:.0f} s")
            results.append(tfprune.sweep.SweepResult(
                [r for r in tuned.records if r["finetune_epochs"]], "sweep", tuned.metrics))
    result = tfprune.sweep.SweepResult.merge(results)
    result.config.update(model="seed MLP 784-1000-1000-500-200-10", data="MNIST:test",
                         training_seeds=seeds, finetune_epochs=args.finetune_epochs)
    print(result.table())
    dense, checks = targets(result, args.finetune_epochs)
    log(f"dense accuracy {dense:.4f} (mean of {len(seeds)} trained models)")
    for name, c in checks.items():
        log(f"  {'PASS' if c['passed'] else 'MISS'}  {name}: {c['value']}")
    if speed:
        m = speed["median"]
        log(f"sweep speed ({speed['evaluations']} evaluations, median of "
            f"{len(speed['rounds'])} rounds): {m['ratio_wall']:.3f}x wall, {m['ratio_cpu']:.3f}x "
            f"CPU of plain evaluate (target <= 1.3x: "
            f"{'PASS' if m['ratio_wall'] <= 1.3 else 'MISS'}); without sizes "
            f"{m['ratio_wall_nosizes']:.3f}x wall, {m['ratio_cpu_nosizes']:.3f}x CPU")
    timings["total"] = time.perf_counter() - t_start
    if out is None:
        return
    out.mkdir(parents=True, exist_ok=True)
    result.to_csv(out / "mnist_sweep.csv")
    payload = result.to_dict()
    payload.update(targets={k: v for k, v in checks.items()}, speed=speed, timings=timings,
                   timings_note="seconds spent in this process; a phase loaded from "
                                "--work-dir (a resumed run) shows ~0 s",
                   settings=dict(seeds=seeds, epochs=args.epochs,
                                 finetune_epochs=args.finetune_epochs, batch_size=BATCH,
                                 levels=list(LEVELS), train_samples=len(train_data[1])),
                   environment=dict(python=platform.python_version(), keras=keras.__version__,
                                    tfprune=tfprune.__version__, machine=platform.machine(),
                                    cpus=os.cpu_count(), tfprune_source=tfprune_source()))
    (out / "mnist_sweep.json").write_text(json.dumps(
        tfprune.sweep.result._jsonable(payload), indent=1) + "\n")
    figure(result, out / "mnist_sweep.png", title_for(seeds))
    log(f"wrote {out / 'mnist_sweep.csv'}, .json, .png in {timings['total']:.0f} s")


if __name__ == "__main__":
    main()
