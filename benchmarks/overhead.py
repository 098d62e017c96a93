#!/usr/bin/env python
"""Training overhead of pruning: tfprune on Keras 3 vs tfmot on tf_keras.

Two measurements, in one Python process:

1. Epoch time of the seed MLP (Dense 1000-1000-500-200-10 on flattened 784-pixel
   MNIST, no biases, relu, softmax output; Adam, batch 128, sparse categorical
   cross-entropy + accuracy) trained four ways on the same batches and the same
   initial weights:

       keras3   plain Keras 3 model
       tfprune  tfprune.prune_low_magnitude(keras3 model)
       tf_keras plain tf_keras (Keras 2) model
       tfmot    tfmot.sparsity.keras.prune_low_magnitude(tf_keras model)

   Both pruned models use PolynomialDecay(0 -> 0.9, begin_step=0, end_step = the
   steps of the whole run rounded down to a multiple of 100, frequency=100). An
   epoch is 25,600 samples (200 batches), so every timed epoch holds exactly two
   mask updates: the rate a real run has. Each model first trains one warm-up
   epoch (tracing, excluded); then `--repeats` rounds each train one epoch per
   model, in an order rotated every round (interleaved, so load from other
   processes hits all variants alike). Reported: median epoch wall time and
   process CPU time, and the overhead ratios tfprune/keras3 and tfmot/tf_keras
   (ratio of medians, and the median of the per-round ratios). `--breakdown` adds
   two diagnostic tfprune variants (no mask updates; no updates and no mask
   constraint) that show where tfprune's overhead goes.

2. One mask update at 90% sparsity on a 1000x1000 and a 25088x4096 (VGG-16 fc6)
   kernel, inside a `tf.function`, each writing the new mask into a variable:

       tfprune  tfprune.masks.select([tfprune.masks.weight_scores(w)], 0.9)
                (O(n) radix select)
       tfmot    tfmot's own `pruning_impl.Pruning(...).conditional_mask_update()`
                (schedule check + `_update_mask`: top_k(k=n) full sort, threshold at
                index k-1, `mask = |w| >= threshold`) on a tf_keras Dense kernel

   Calls alternate between the two; medians are reported.

Run:  TFPRUNE_DATA_DIR=/work/shared/data .venv/bin/python benchmarks/overhead.py
      (--quick for a smoke run; see --help)
"""

import os

# tfmot picks its Keras at import time: make it tf_keras. `import keras` is still
# Keras 3 (tfprune); `import tf_keras` is Keras 2.
os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import pathlib  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402
import tf_keras  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402
from tensorflow_model_optimization.python.core.sparsity.keras import (  # noqa: E402
    pruning_impl as tfmot_pruning_impl,
)

import tfprune  # noqa: E402
from _common import one_process_environment  # noqa: E402

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
VARIANTS = ("keras3", "tfprune", "tf_keras", "tfmot")
SIZES = (1000, 1000, 500, 200, 10)
FREQUENCY = 100
FINAL_SPARSITY = 0.9
TARGET_RATIO = 1.05
TARGET_MASK_SPEEDUP = 5.0


# --------------------------------------------------------------------------- models


def build_keras3(seed):
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((784,))]
    for i, units in enumerate(SIZES):
        last = i == len(SIZES) - 1
        layers.append(
            keras.layers.Dense(
                units, activation="softmax" if last else "relu", use_bias=False,
                name=f"dense_{i}",
            )
        )
    return keras.Sequential(layers, name="mlp")


def build_tf_keras(weights):
    model = tf_keras.Sequential(
        [tf_keras.Input((784,))]
        + [
            tf_keras.layers.Dense(
                units, activation="softmax" if i == len(SIZES) - 1 else "relu",
                use_bias=False, name=f"dense_{i}",
            )
            for i, units in enumerate(SIZES)
        ],
        name="mlp",
    )
    model.set_weights(weights)
    return model


class EpochTimer:
    """Wall and process CPU time of each epoch.

    Epoch-level hooks only, so neither Keras syncs after every batch. CPU time
    (all threads of this process) is less disturbed by other processes on shared
    cores than wall time, so both are reported.
    """

    def __init__(self):
        self.times = []
        self.cpu = []

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()
        self._c0 = time.process_time()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._t0)
        self.cpu.append(time.process_time() - self._c0)


class K3Timer(EpochTimer, keras.callbacks.Callback):
    def __init__(self):
        keras.callbacks.Callback.__init__(self)
        EpochTimer.__init__(self)


class TFKTimer(EpochTimer, tf_keras.callbacks.Callback):
    def __init__(self):
        tf_keras.callbacks.Callback.__init__(self)
        EpochTimer.__init__(self)


def _compile_k3(model):
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"], jit_compile=False)
    return model


def _compile_tfk(model):
    model.compile(tf_keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def _tfprune_schedule(end_step):
    return tfprune.PolynomialDecay(0.0, FINAL_SPARSITY, 0, end_step, frequency=FREQUENCY)


def make_runs(seed, end_step, breakdown=False):
    """`{variant: (model, timer class, callbacks)}`, all from the same initial weights.

    With `breakdown`, two diagnostic tfprune variants are added (they change
    nothing in tfprune's files, only this process's objects):
    `tfprune_noupdate`: schedule that never updates (begin_step beyond the run), so
    only the per-step cost (schedule check, step counter, mask constraint) remains;
    `tfprune_noupd_nocons`: the same with the mask constraint removed from the
    kernels, so only the schedule check and the step counter remain.
    """
    base = build_keras3(seed)
    weights = base.get_weights()

    k3 = build_keras3(seed)
    k3.set_weights(weights)
    tp = tfprune.prune_low_magnitude(base, _tfprune_schedule(end_step))
    tm = tfmot.sparsity.keras.prune_low_magnitude(
        build_tf_keras(weights),
        pruning_schedule=tfmot.sparsity.keras.PolynomialDecay(
            0.0, FINAL_SPARSITY, 0, end_step, frequency=FREQUENCY
        ),
    )
    runs = {
        "keras3": (_compile_k3(k3), K3Timer, []),
        "tfprune": (_compile_k3(tp), K3Timer, [tfprune.callbacks.UpdatePruningStep()]),
        "tf_keras": (_compile_tfk(build_tf_keras(weights)), TFKTimer, []),
        "tfmot": (_compile_tfk(tm), TFKTimer, [tfmot.sparsity.keras.UpdatePruningStep()]),
    }
    if breakdown:
        never = tfprune.ConstantSparsity(FINAL_SPARSITY, begin_step=10**12)
        for name, keep_constraint in (("tfprune_noupdate", True),
                                      ("tfprune_noupd_nocons", False)):
            m = build_keras3(seed)
            m.set_weights(weights)
            m = tfprune.prune_low_magnitude(m, never)
            if not keep_constraint:
                for w in tfprune.wrappers.collect_wrappers(m):
                    for t in w.targets:
                        t.variable.constraint = t.variable.constraint.inner
            runs[name] = (_compile_k3(m), K3Timer, [tfprune.callbacks.UpdatePruningStep()])
    return runs


def train_one_epoch(run, dataset):
    model, timer_cls, callbacks = run
    timer = timer_cls()
    model.fit(dataset, epochs=1, verbose=0, shuffle=False, callbacks=callbacks + [timer])
    return timer.times[-1], timer.cpu[-1]


def final_sparsity(name, model):
    if name == "tfprune":
        return tfprune.sparsity_report(tfprune.strip_pruning(model)).sparsity
    stripped = tfmot.sparsity.keras.strip_pruning(model)
    kernels = [l.kernel.numpy() for l in stripped.layers]
    return float(sum((k == 0).sum() for k in kernels) / sum(k.size for k in kernels))


PAIRS = (("tfprune", "keras3"), ("tfmot", "tf_keras"),
         ("tfprune_noupdate", "keras3"), ("tfprune_noupd_nocons", "keras3"))


def bench_epochs(args, log):
    (x, y), _ = tfprune.datasets.load_mnist()
    n = min(args.samples, len(x))
    x = x[:n].reshape(n, 784).astype("float32") / 255.0
    y = y[:n].astype("int64")
    steps = n // args.batch_size
    dataset = (
        tf.data.Dataset.from_tensor_slices((x, y))
        .batch(args.batch_size, drop_remainder=True)
        .cache()
        .prefetch(tf.data.AUTOTUNE)
    )
    total_steps = steps * (1 + args.repeats)
    end_step = max(FREQUENCY, (total_steps // FREQUENCY) * FREQUENCY)
    runs = make_runs(args.seed, end_step, breakdown=args.breakdown)
    names = list(runs)
    log(f"epoch timing: {n} samples, {steps} steps/epoch of batch {args.batch_size}, "
        f"1 warm-up + {args.repeats} timed epochs per model; "
        f"PolynomialDecay(0 -> {FINAL_SPARSITY}, 0, {end_step}, frequency={FREQUENCY})")

    warmup = {}
    for name in names:
        warmup[name] = train_one_epoch(runs[name], dataset)[0]
        log(f"  warm-up {name:9s} {warmup[name]:7.2f} s")
    wall = {name: [] for name in names}
    cpu = {name: [] for name in names}
    for r in range(args.repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            w, c = train_one_epoch(runs[name], dataset)
            wall[name].append(w)
            cpu[name].append(c)
        log(f"  round {r + 1}/{args.repeats}: "
            + "  ".join(f"{k} {wall[k][-1]:.2f}s" for k in names))

    def ratios(times):
        med = {k: statistics.median(v) for k, v in times.items()}
        out = {}
        for pruned, plain in PAIRS:
            if pruned not in times:
                continue
            paired = [a / b for a, b in zip(times[pruned], times[plain])]
            out[f"{pruned}/{plain}"] = {
                "ratio_of_medians": med[pruned] / med[plain],
                "median_paired_ratio": statistics.median(paired),
                "paired_ratios": paired,
            }
        return med, out

    med, wall_ratios = ratios(wall)
    cpu_med, cpu_ratios = ratios(cpu)
    sparsity = {k: final_sparsity(k, runs[k][0]) for k in ("tfprune", "tfmot")}
    return {
        "samples": n,
        "batch_size": args.batch_size,
        "steps_per_epoch": steps,
        "timed_epochs_per_model": args.repeats,
        "mask_updates_per_epoch": steps / FREQUENCY,
        "schedule": {"initial": 0.0, "final": FINAL_SPARSITY, "begin_step": 0,
                     "end_step": end_step, "frequency": FREQUENCY, "power": 3},
        "warmup_epoch_s": warmup,
        "epoch_s": wall,
        "epoch_cpu_s": cpu,
        "median_epoch_s": med,
        "median_epoch_cpu_s": cpu_med,
        "median_step_ms": {k: 1000 * v / steps for k, v in med.items()},
        "median_step_cpu_ms": {k: 1000 * v / steps for k, v in cpu_med.items()},
        "ratios": wall_ratios,
        "cpu_ratios": cpu_ratios,
        "final_kernel_sparsity": sparsity,
    }


# --------------------------------------------------------------------------- masks


def mask_update_fns(shape, seed):
    """The tfprune and tfmot mask updates for one tf_keras Dense kernel of `shape`."""
    tf_keras.utils.set_random_seed(seed)
    layer = tf_keras.layers.Dense(shape[1], use_bias=False)
    layer.build((None, shape[0]))
    w = layer.kernel  # a tf_keras (tf.Variable) kernel, glorot-uniform

    tfp_mask = tf.Variable(tf.ones(shape), trainable=False)

    @tf.function
    def tfprune_update():
        (keep,) = tfprune.masks.select([tfprune.masks.weight_scores(w)], FINAL_SPARSITY)
        tfp_mask.assign(tf.cast(tf.reshape(keep, shape), tf.float32))

    tfm_mask = tf.Variable(tf.ones(shape), trainable=False)
    tfm_threshold = tf.Variable(0.0, trainable=False)
    step = tf.Variable(0, dtype=tf.int64, trainable=False)
    pruning = tfmot_pruning_impl.Pruning(
        training_step_fn=lambda: step,
        pruning_vars=[(w, tfm_mask, tfm_threshold)],
        pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(
            FINAL_SPARSITY, begin_step=0, frequency=1
        ),
        block_size=(1, 1),
        block_pooling_type="AVG",
    )

    @tf.function
    def tfmot_update():
        pruning.conditional_mask_update()

    return w, tfprune_update, tfp_mask, tfmot_update, tfm_mask


def bench_mask(shape, repeats, seed, log):
    w, tfp_fn, tfp_mask, tfm_fn, tfm_mask = mask_update_fns(shape, seed)
    times = {"tfprune": [], "tfmot": []}
    fns = {"tfprune": tfp_fn, "tfmot": tfm_fn}
    for fn in fns.values():  # trace + first run, excluded
        fn()
    for r in range(repeats):
        for name in (("tfprune", "tfmot") if r % 2 == 0 else ("tfmot", "tfprune")):
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
    n = int(np.prod(shape))
    a = tfp_mask.numpy().astype(bool)
    b = tfm_mask.numpy().astype(bool)
    kept_target = tfprune.masks.keep_count(n, FINAL_SPARSITY)
    med = {k: statistics.median(v) for k, v in times.items()}
    out = {
        "shape": list(shape),
        "weights": n,
        "repeats": repeats,
        "times_s": times,
        "median_ms": {k: 1000 * v for k, v in med.items()},
        "speedup_tfmot_over_tfprune": med["tfmot"] / med["tfprune"],
        "kept": {"target": kept_target, "tfprune": int(a.sum()), "tfmot": int(b.sum())},
        "masks_differ": int((a != b).sum()),
    }
    del w, tfp_mask, tfm_mask
    log(f"  mask {shape[0]}x{shape[1]}: tfprune {out['median_ms']['tfprune']:.2f} ms, "
        f"tfmot {out['median_ms']['tfmot']:.2f} ms "
        f"({out['speedup_tfmot_over_tfprune']:.1f}x); kept {out['kept']}")
    return out


# --------------------------------------------------------------------------- report


def table(rows, header):
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    lines = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*map(str, r)) for r in rows]
    return "\n".join(lines)


def verdicts(result):
    """Targets met or not: tfprune/keras3 median paired wall ratio <= 1.05; each mask
    update >= 5x faster than tfmot's."""
    out = {}
    e = result.get("epochs")
    if e:
        r = e["ratios"]["tfprune/keras3"]["median_paired_ratio"]
        out["tfprune/keras3 <= 1.05 (median paired wall ratio)"] = {
            "value": r, "pass": r <= TARGET_RATIO}
    for m in result.get("mask_update", []):
        v = m["speedup_tfmot_over_tfprune"]
        out[f"mask update {m['shape'][0]}x{m['shape'][1]} >= 5x"] = {
            "value": v, "pass": v >= TARGET_MASK_SPEEDUP}
    return out


def summarize(result):
    out = []
    e = result.get("epochs")
    if e:
        rows = []
        for k in e["epoch_s"]:
            ts = e["epoch_s"][k]
            rows.append((k, f"{e['median_epoch_s'][k]:.3f}", f"{e['median_step_ms'][k]:.2f}",
                         f"{min(ts):.3f}", f"{max(ts):.3f}",
                         f"{e['median_step_cpu_ms'][k]:.2f}"))
        out.append(f"Epoch time, {e['samples']} samples ({e['steps_per_epoch']} steps of "
                   f"{e['batch_size']}, {e['mask_updates_per_epoch']:g} mask updates/epoch), "
                   f"median of {e['timed_epochs_per_model']} interleaved epochs "
                   "(warm-up excluded):")
        out.append(table(rows, ("variant", "epoch s", "ms/step", "min s", "max s",
                                "CPU ms/step")))
        rows = []
        for key, r in e["ratios"].items():
            c = e["cpu_ratios"][key]
            main_pair = key == "tfprune/keras3"
            target = f"<= {TARGET_RATIO}" if main_pair else (
                "(reference)" if key.startswith("tfmot") else "(diagnostic)")
            # Verdict on the median of per-round ratios: the two epochs of a round run
            # seconds apart, so a burst of load from other processes hits both; a
            # ratio of medians can pair a loaded epoch with a quiet one.
            ok = ("PASS" if r["median_paired_ratio"] <= TARGET_RATIO else "MISS") if main_pair else ""
            rows.append((key, f"{r['ratio_of_medians']:.3f}", f"{r['median_paired_ratio']:.3f}",
                         f"{c['ratio_of_medians']:.3f}", f"{c['median_paired_ratio']:.3f}",
                         target, ok))
        out.append("")
        out.append(table(rows, ("overhead", "wall: medians", "wall: paired", "CPU: medians",
                                "CPU: paired", "target", "(wall paired)")))
        out.append("final kernel sparsity after the run: "
                   + ", ".join(f"{k} {v:.4f}" for k, v in e["final_kernel_sparsity"].items()))
    m = result.get("mask_update")
    if m:
        rows = []
        for r in m:
            ok = "PASS" if r["speedup_tfmot_over_tfprune"] >= TARGET_MASK_SPEEDUP else "MISS"
            rows.append(("x".join(map(str, r["shape"])), r["weights"],
                         f"{r['median_ms']['tfprune']:.2f}", f"{r['median_ms']['tfmot']:.2f}",
                         f"{r['speedup_tfmot_over_tfprune']:.1f}x", ok,
                         f"{r['kept']['target']}/{r['kept']['tfprune']}/{r['kept']['tfmot']}"))
        out.append("")
        out.append("One mask update at 90% sparsity (tf.function, median; tfmot = its own "
                   "pruning_impl.Pruning.conditional_mask_update, full sort):")
        out.append(table(rows, ("kernel", "weights", "tfprune ms", "tfmot ms", "speedup",
                                f">= {TARGET_MASK_SPEEDUP:.0f}x", "kept target/tfprune/tfmot")))
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, default=25600,
                   help="training samples per epoch (default 25600 = 200 batches, so every epoch has exactly 2 mask updates)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=15, help="timed epochs per model")
    p.add_argument("--mask-repeats", type=int, default=30,
                   help="timed calls per library for the 1000x1000 kernel")
    p.add_argument("--big-repeats", type=int, default=3,
                   help="timed calls per library for the big kernel")
    p.add_argument("--big-shape", default="25088x4096", help="big kernel shape, RxC")
    p.add_argument("--breakdown", action="store_true",
                   help="also time two diagnostic tfprune variants (no mask updates; "
                        "no updates and no mask constraint) to show where overhead goes")
    p.add_argument("--skip-epochs", action="store_true")
    p.add_argument("--skip-masks", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 2560 samples, 2 repeats, 4096x4096 big kernel; "
                        "writes no file unless --output is given")
    p.add_argument("--output", default=None,
                   help="JSON file (default benchmarks/results/overhead.json)")
    p.add_argument("--summarize", metavar="JSON", default=None,
                   help="print the tables of an earlier run's JSON file and exit")
    args = p.parse_args(argv)
    if args.summarize:
        saved = json.loads(pathlib.Path(args.summarize).read_text())
        print(summarize(saved))
        if args.output:  # add the derived target verdicts to an earlier run's file
            saved["targets"] = verdicts(saved)
            pathlib.Path(args.output).write_text(json.dumps(saved, indent=1) + "\n")
        return saved
    if args.quick:
        args.samples, args.repeats = 2560, 2
        args.mask_repeats, args.big_repeats, args.big_shape = 5, 2, "4096x4096"
    output = args.output or (None if args.quick else str(RESULTS / "overhead.json"))
    if args.breakdown:
        # The never-updating diagnostic variants warn "NOTHING WAS PRUNED" after
        # every epoch, on purpose; the main tfprune variant is checked by its
        # final sparsity instead.
        warnings.filterwarnings("ignore", message="tfprune: training ended")
        logging.getLogger("tfprune").addFilter(
            lambda record: "NOTHING WAS PRUNED" not in record.getMessage())

    def log(msg):
        print(msg, flush=True)

    env = one_process_environment(log)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    result = {
        "environment": dict(
            env, python=platform.python_version(), machine=platform.machine(),
            cpu_count=os.cpu_count(), loadavg_before=load_before,
        ),
        "args": vars(args),
    }
    if not args.skip_epochs:
        result["epochs"] = bench_epochs(args, log)
    if not args.skip_masks:
        log("mask update timing:")
        big = tuple(int(s) for s in args.big_shape.lower().split("x"))
        result["mask_update"] = [
            bench_mask((1000, 1000), args.mask_repeats, args.seed, log),
            bench_mask(big, args.big_repeats, args.seed, log),
        ]
        result["mask_update_note"] = (
            "tfprune: tfprune.masks.select([weight_scores(w)], 0.9) + mask.assign; tfmot: "
            "its own pruning_impl.Pruning(...).conditional_mask_update() on a tf_keras "
            "Dense kernel (ConstantSparsity(0.9, 0, frequency=1); top_k(k=n) full sort, "
            "threshold at index k-1, mask = |w| >= threshold, mask and threshold assigned)."
        )
    result["environment"]["loadavg_after"] = os.getloadavg()
    result["targets"] = verdicts(result)
    result["total_s"] = time.perf_counter() - t0
    log("")
    log(summarize(result))
    log(f"\ntotal {result['total_s']:.0f} s; load average before {load_before[0]:.2f}, "
        f"after {result['environment']['loadavg_after'][0]:.2f} (2 shared cores: noisy)")
    if output:
        pathlib.Path(output).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(output).write_text(json.dumps(result, indent=1) + "\n")
        log(f"wrote {output}")
    return result


if __name__ == "__main__":
    sys.exit(main() and 0)
