#!/usr/bin/env python
"""Accuracy after pruning: LeNet-300-100 on MNIST, tfprune (Keras 3) vs tfmot (tf_keras).

For each seed (default 0, 1, 2):

1. Train LeNet-300-100 (Dense 300-100-10, relu, biases; inputs x/255 flattened;
   dropout 0.1 after the hidden layers and L2 1e-5 on the kernels) dense with Keras 3
   (Adam, batch 128, per-epoch cosine learning-rate decay).
2. From those dense weights, for each target sparsity (92% and 95% by default):
   - tfprune: `tfprune.prune_low_magnitude(model, PolynomialDecay(0, target, 0,
     end_step, frequency=100))` on a Keras 3 copy;
   - tfmot: `tfmot.sparsity.keras.prune_low_magnitude(...)` with the same
     PolynomialDecay on a tf_keras copy (weights copied across);
   both trained `--prune-epochs` (sparsity ramp) + `--finetune-epochs` (final
   sparsity, masks fixed) with the same fresh Adam, the same learning rates and the
   same batches in the same order (one NumPy permutation per epoch, shared). Only
   the dropout draws differ (each Keras has its own RNG).
3. Strip, evaluate test accuracy, measure the sparsity of the stripped kernels.

Layer scope in both (each kernel pruned to the target on its own; biases are not
pruned, as in tfmot). Prints a table (mean over seeds and each seed) and writes
benchmarks/results/mnist_accuracy.{json,csv,png}.

Run:  TFPRUNE_DATA_DIR=/work/shared/data .venv/bin/python benchmarks/mnist_accuracy.py
      (--quick for a smoke run; see --help)
"""

import os

# tfmot picks its Keras at import time: make it tf_keras. `import keras` is still
# Keras 3 (tfprune); `import tf_keras` is Keras 2.
os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import pathlib  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402
import tf_keras  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402

import tfprune  # noqa: E402
from _common import one_process_environment  # noqa: E402

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
SIZES = (300, 100, 10)
FREQUENCY = 100
HAN = {"sparsity": 1 - 21.76e3 / 266.2e3, "accuracy": 0.9841,
       "source": "Han et al. 2015 (arXiv 1506.02626), LeNet-300-100 pruned 12x, "
                 "error 1.59% (dense 1.64%)"}
TARGET_ACCURACY_AT_92 = 0.984


# --------------------------------------------------------------------------- models


def _layers(lib, l2, dropout):
    """LeNet-300-100 layers of `lib` (keras / tf_keras); optional L2 and dropout."""
    reg = (lambda: lib.regularizers.L2(l2)) if l2 else (lambda: None)
    layers = [lib.Input((784,))]
    for i, units in enumerate(SIZES):
        last = i == len(SIZES) - 1
        layers.append(lib.layers.Dense(units, activation="softmax" if last else "relu",
                                       kernel_regularizer=reg(), name=f"fc{i + 1}"))
        if dropout and not last:
            layers.append(lib.layers.Dropout(dropout, name=f"dropout{i + 1}"))
    return layers


def build_keras3(l2=0.0, dropout=0.0):
    return keras.Sequential(_layers(keras, l2, dropout), name="lenet_300_100")


def build_tf_keras(l2=0.0, dropout=0.0):
    return tf_keras.Sequential(_layers(tf_keras, l2, dropout), name="lenet_300_100")


def compile_model(model, lib):
    if lib == "keras3":
        model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                      metrics=["accuracy"], jit_compile=False)
    else:
        model.compile(tf_keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                      metrics=["accuracy"])
    return model


def cosine_lr(epoch, epochs, lr_max, lr_min):
    """Learning rate of `epoch` (0-based) of a cosine decay over `epochs` epochs."""
    if epochs <= 1:
        return lr_max
    return lr_min + 0.5 * (lr_max - lr_min) * (1 + math.cos(math.pi * epoch / (epochs - 1)))


def run_epochs(model, lib, data, plan, seed, callbacks, log, label):
    """Train one epoch per `(epoch_id, lr)` in `plan`.

    The batches of epoch `epoch_id` come from one NumPy permutation seeded by
    `(seed, epoch_id)`, so Keras 3 and tf_keras runs see identical batches.
    """
    x, y = data
    history = []
    for epoch_id, lr in plan:
        perm = np.random.default_rng([seed, epoch_id]).permutation(len(x))
        model.optimizer.learning_rate = lr
        t0 = time.perf_counter()
        h = model.fit(x[perm], y[perm], batch_size=BATCH, epochs=1, shuffle=False,
                      verbose=0, callbacks=list(callbacks))
        history.append({"epoch": epoch_id, "lr": lr, "loss": float(h.history["loss"][-1]),
                        "accuracy": float(h.history["accuracy"][-1]),
                        "seconds": time.perf_counter() - t0})
    log(f"  {label}: {len(plan)} epochs, last train loss {history[-1]['loss']:.4f}, "
        f"{sum(h['seconds'] for h in history):.0f} s")
    return history


def test_accuracy(model, x_test, y_test):
    p = model.predict(x_test, batch_size=1000, verbose=0)
    return float(np.mean(np.argmax(p, axis=1) == y_test))


def kernel_stats(model):
    rows = []
    nonzero_params = 0
    for layer in model.layers:
        if not hasattr(layer, "kernel"):
            continue
        k = layer.kernel.numpy()
        b = layer.bias.numpy()
        nonzero_params += int(np.count_nonzero(k)) + int(np.count_nonzero(b))
        rows.append({"layer": layer.name, "shape": list(k.shape), "total": int(k.size),
                     "zeros": int(k.size - np.count_nonzero(k)),
                     "sparsity": float(1 - np.count_nonzero(k) / k.size)})
    total = sum(r["total"] for r in rows)
    zeros = sum(r["zeros"] for r in rows)
    return {"layers": rows, "kernel_weights": total, "nonzero_kernel_weights": total - zeros,
            "kernel_sparsity": zeros / total, "nonzero_params": nonzero_params}


def prune_run(method, target, dense_weights, arch, data, plan, end_step, seed, test, log):
    """Prune a copy of the dense model with `method` to `target`; returns a result row."""
    if method == "tfprune":
        keras.utils.set_random_seed(seed + 1)
        base = build_keras3(**arch)
        base.set_weights(dense_weights)
        pruned = tfprune.prune_low_magnitude(
            base, tfprune.PolynomialDecay(0.0, target, 0, end_step, frequency=FREQUENCY))
        callbacks = [tfprune.callbacks.UpdatePruningStep()]
        lib, strip = "keras3", tfprune.strip_pruning
    else:
        tf_keras.utils.set_random_seed(seed + 1)
        base = build_tf_keras(**arch)
        base.set_weights(dense_weights)
        pruned = tfmot.sparsity.keras.prune_low_magnitude(
            base, pruning_schedule=tfmot.sparsity.keras.PolynomialDecay(
                0.0, target, 0, end_step, frequency=FREQUENCY))
        callbacks = [tfmot.sparsity.keras.UpdatePruningStep()]
        lib, strip = "tf_keras", tfmot.sparsity.keras.strip_pruning
    compile_model(pruned, lib)
    hist = run_epochs(pruned, lib, data, plan, seed, callbacks, log,
                      f"seed {seed} {method:7s} @ {target:.0%}")
    stripped = strip(pruned)
    row = {"method": method, "target_sparsity": target, "seed": seed,
           "test_accuracy": test_accuracy(stripped, *test), **kernel_stats(stripped)}
    if method == "tfprune":
        row["sparsity_report"] = tfprune.sparsity_report(stripped).sparsity
    row["history"] = hist
    log(f"    test accuracy {row['test_accuracy']:.4f}, kernel sparsity "
        f"{row['kernel_sparsity']:.5f}")
    return row


def one_seed(seed, args, data, test, log):
    """Dense training, then every (target, method) from the dense weights."""
    arch = dict(l2=args.l2, dropout=args.dropout)
    keras.utils.set_random_seed(seed)
    tf_keras.utils.set_random_seed(seed)
    dense = compile_model(build_keras3(**arch), "keras3")
    plan = [(e, cosine_lr(e, args.dense_epochs, args.lr, args.lr_min))
            for e in range(args.dense_epochs)]
    hist = run_epochs(dense, "keras3", data, plan, seed, [], log, f"seed {seed} dense")
    dense_weights = dense.get_weights()
    copy = build_tf_keras(**arch)
    copy.set_weights(dense_weights)
    row = {"method": "dense", "target_sparsity": 0.0, "seed": seed,
           "test_accuracy": test_accuracy(dense, *test),
           "test_accuracy_tf_keras_copy": test_accuracy(copy, *test),
           **kernel_stats(dense), "history": hist}
    log(f"    dense test accuracy {row['test_accuracy']:.4f} (same weights in tf_keras: "
        f"{row['test_accuracy_tf_keras_copy']:.4f})")
    rows = [row]
    total = args.prune_epochs + args.finetune_epochs
    prune_plan = [
        (1000 + e, args.lr if e < args.prune_epochs else
         cosine_lr(e - args.prune_epochs + 1, args.finetune_epochs + 1, args.lr, args.lr_min))
        for e in range(total)
    ]
    for target in args.targets:
        for method in args.methods:
            rows.append(prune_run(method, target, dense_weights, arch, data, prune_plan,
                                  args.end_step, seed, test, log))
    return rows


def aggregate(results):
    """Mean / min / max over seeds of each (method, target)."""
    groups = {}
    for r in results:
        groups.setdefault((r["method"], r["target_sparsity"]), []).append(r)
    out = []
    for (method, target), rs in groups.items():
        acc = [r["test_accuracy"] for r in rs]
        out.append({
            "method": method, "target_sparsity": target, "seeds": [r["seed"] for r in rs],
            "test_accuracy_mean": float(np.mean(acc)),
            "test_accuracy_min": float(np.min(acc)), "test_accuracy_max": float(np.max(acc)),
            "test_accuracy_std": float(np.std(acc, ddof=1)) if len(acc) > 1 else 0.0,
            "kernel_sparsity_mean": float(np.mean([r["kernel_sparsity"] for r in rs])),
            "kernel_sparsity_min": float(np.min([r["kernel_sparsity"] for r in rs])),
            "nonzero_kernel_weights_mean": float(np.mean([r["nonzero_kernel_weights"] for r in rs])),
            "nonzero_params_mean": float(np.mean([r["nonzero_params"] for r in rs])),
        })
    return out


def _fmt_table(header, rows):
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths))]
                     + [fmt.format(*r) for r in rows])


BATCH = 128


def main(argv=None):
    global BATCH
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dense-epochs", type=int, default=20)
    p.add_argument("--prune-epochs", type=int, default=10,
                   help="epochs of the sparsity ramp (PolynomialDecay 0 -> target)")
    p.add_argument("--finetune-epochs", type=int, default=10,
                   help="epochs at the final sparsity after the ramp")
    p.add_argument("--targets", type=float, nargs="+", default=[0.92, 0.95])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (Adam)")
    p.add_argument("--lr-min", type=float, default=1e-5, help="last-epoch learning rate")
    p.add_argument("--l2", type=float, default=1e-5, help="L2 penalty on the kernels")
    p.add_argument("--dropout", type=float, default=0.1, help="dropout after hidden layers")
    p.add_argument("--methods", nargs="+", default=["tfprune", "tfmot"],
                   choices=["tfprune", "tfmot"])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--train-samples", type=int, default=60000)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: one seed, 2 dense + 1 + 1 epochs on 12800 samples; "
                        "writes nothing unless --output-dir is given")
    p.add_argument("--output-dir", default=None,
                   help="where the json/csv/png go (default benchmarks/results)")
    p.add_argument("--plot-only", action="store_true",
                   help="redraw the PNG from an existing mnist_accuracy.json, no training")
    args = p.parse_args(argv)
    if args.plot_only:
        out = pathlib.Path(args.output_dir or RESULTS)
        saved = json.loads((out / "mnist_accuracy.json").read_text())
        plot(saved["results"], saved["summary"], out / "mnist_accuracy.png")
        print(f"wrote {out / 'mnist_accuracy.png'}")
        return saved["results"]
    if args.quick:
        args.dense_epochs, args.prune_epochs, args.finetune_epochs = 2, 1, 1
        args.train_samples, args.seeds = 12800, args.seeds[:1]
    out_dir = args.output_dir or (None if args.quick else str(RESULTS))
    BATCH = args.batch_size

    def log(msg):
        print(msg, flush=True)

    env = one_process_environment(log)
    t_start = time.perf_counter()
    tf.config.experimental.enable_op_determinism()

    (x_train, y_train), (x_test, y_test) = tfprune.datasets.load_mnist()
    n = min(args.train_samples, len(x_train))
    data = (x_train[:n].reshape(n, 784).astype("float32") / 255.0,
            y_train[:n].astype("int64"))
    test = (x_test.reshape(-1, 784).astype("float32") / 255.0, y_test.astype("int64"))
    steps_per_epoch = math.ceil(n / args.batch_size)
    args.end_step = max(FREQUENCY, (args.prune_epochs * steps_per_epoch // FREQUENCY) * FREQUENCY)
    log(f"dense: {args.dense_epochs} epochs, Adam, cosine lr {args.lr:g} -> {args.lr_min:g}; "
        f"pruning: PolynomialDecay(0 -> target, begin 0, end {args.end_step}, frequency "
        f"{FREQUENCY}) over {args.prune_epochs} epochs ({steps_per_epoch} steps each), then "
        f"{args.finetune_epochs} fine-tuning epochs; lr {args.lr:g} during the ramp, cosine "
        f"to {args.lr_min:g} while fine-tuning; l2 {args.l2:g}, dropout {args.dropout:g}; "
        f"seeds {args.seeds}")

    results = []
    for seed in args.seeds:
        results.extend(one_seed(seed, args, data, test, log))
    summary_rows = aggregate(results)

    # report
    agg = {(r["method"], r["target_sparsity"]): r for r in summary_rows}
    per_seed = {(r["method"], r["target_sparsity"], r["seed"]): r for r in results}
    checks = {}
    if "tfmot" in args.methods and "tfprune" in args.methods:
        for t in args.targets:
            wins = sum(per_seed[("tfprune", t, s)]["test_accuracy"]
                       >= per_seed[("tfmot", t, s)]["test_accuracy"] for s in args.seeds)
            checks[f"tfprune>=tfmot@{t:g} (mean)"] = (
                agg[("tfprune", t)]["test_accuracy_mean"] >= agg[("tfmot", t)]["test_accuracy_mean"])
            checks[f"tfprune>=tfmot@{t:g} (seeds)"] = f"{wins}/{len(args.seeds)}"
    if ("tfprune", 0.92) in agg:
        checks["tfprune@0.92>=0.984 (mean)"] = (
            agg[("tfprune", 0.92)]["test_accuracy_mean"] >= TARGET_ACCURACY_AT_92)

    log("")
    log(f"LeNet-300-100 on MNIST ({n} training samples, 10000 test), "
        f"{len(args.seeds)} seed(s) {args.seeds}:")
    seeds_hdr = [f"seed {s}" for s in args.seeds]
    table_rows = []
    for r in summary_rows:
        accs = [f"{per_seed[(r['method'], r['target_sparsity'], s)]['test_accuracy']:.2%}"
                for s in args.seeds]
        table_rows.append((r["method"], f"{r['target_sparsity']:.0%}",
                           f"{r['kernel_sparsity_min']:.4%}",
                           f"{r['nonzero_kernel_weights_mean']:.0f}",
                           f"{r['test_accuracy_mean']:.2%}", *accs))
    log(_fmt_table(("method", "target", "kernel sparsity (min)", "nonzero kernel w.",
                    "test acc (mean)", *seeds_hdr), table_rows))
    log(f"reference: {HAN['source']}: {HAN['accuracy']:.2%} at {HAN['sparsity']:.1%}")
    for name, ok in checks.items():
        log(f"  {name}: {ok if isinstance(ok, str) else ('PASS' if ok else 'MISS')}")
    total_s = time.perf_counter() - t_start
    log(f"total {total_s:.0f} s")

    if out_dir:
        out = pathlib.Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        summary = {
            "environment": dict(env, python=platform.python_version(),
                                machine=platform.machine(), cpu_count=os.cpu_count()),
            "args": vars(args),
            "train_samples": n,
            "steps_per_epoch": steps_per_epoch,
            "schedule": {"initial": 0.0, "begin_step": 0, "end_step": args.end_step,
                         "frequency": FREQUENCY, "power": 3},
            "summary": summary_rows,
            "checks": checks,
            "reference": HAN,
            "results": results,
            "total_s": total_s,
        }
        (out / "mnist_accuracy.json").write_text(json.dumps(summary, indent=1) + "\n")
        with open(out / "mnist_accuracy.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["method", "target_sparsity", "seed", "kernel_sparsity",
                        "nonzero_kernel_weights", "nonzero_params", "test_accuracy"])
            for r in results:
                w.writerow([r["method"], f"{r['target_sparsity']:.2f}", r["seed"],
                            f"{r['kernel_sparsity']:.6f}", r["nonzero_kernel_weights"],
                            r["nonzero_params"], f"{r['test_accuracy']:.4f}"])
            for r in summary_rows:
                w.writerow([r["method"], f"{r['target_sparsity']:.2f}", "mean",
                            f"{r['kernel_sparsity_mean']:.6f}",
                            f"{r['nonzero_kernel_weights_mean']:.0f}",
                            f"{r['nonzero_params_mean']:.0f}",
                            f"{r['test_accuracy_mean']:.4f}"])
        plot(results, summary_rows, out / "mnist_accuracy.png")
        log(f"wrote {out / 'mnist_accuracy.json'}, .csv, .png")
    return results


def plot(results, summary_rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.4), dpi=100)
    dense = [r for r in summary_rows if r["method"] == "dense"][0]
    ax.axhline(100 * dense["test_accuracy_mean"], color="0.4", ls="--", lw=1,
               label=f"dense ({100 * dense['test_accuracy_mean']:.2f}%)")
    offsets = {"tfprune": -0.15, "tfmot": 0.15}
    for method, style in (("tfprune", dict(color="C0", marker="o")),
                          ("tfmot", dict(color="C1", marker="s"))):
        rs = sorted((r for r in summary_rows if r["method"] == method),
                    key=lambda r: r["target_sparsity"])
        if not rs:
            continue
        xs = [100 * r["kernel_sparsity_mean"] + offsets[method] for r in rs]
        ys = [100 * r["test_accuracy_mean"] for r in rs]
        err = [[100 * (r["test_accuracy_mean"] - r["test_accuracy_min"]) for r in rs],
               [100 * (r["test_accuracy_max"] - r["test_accuracy_mean"]) for r in rs]]
        ax.errorbar(xs, ys, yerr=err, label=f"{method} (mean, min-max over seeds)",
                    lw=1.5, ms=6, capsize=3, **style)
    ax.plot([100 * HAN["sparsity"]], [100 * HAN["accuracy"]], "k*", ms=9,
            label="Han et al. 2015")
    ax.set_xlabel("kernel sparsity (%)  [tfprune/tfmot drawn 0.15 left/right]", fontsize=9)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("LeNet-300-100 on MNIST", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main() and 0)
