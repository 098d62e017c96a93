#!/usr/bin/env python
"""One backend's half of `overhead.py`: run by it as a subprocess, one per Keras backend.

The Keras backend is fixed when Keras is imported, so `overhead.py` starts this
script once per backend (`KERAS_BACKEND` set in its environment) with a config
JSON (`--config`: sizes, repeats, the path of the shared initial weights) and
reads back the JSON it writes (`--out`). Everything compared in one ratio runs in
this one process, interleaved:

- epochs: per compile mode of the backend (TensorFlow: `graph` and `xla`, i.e.
  `jit_compile=False` / `True`; JAX: `jit`; torch: `eager`), the plain Keras 3
  model and its `tfprune.prune_low_magnitude` copy (plus, with `breakdown`, the
  two diagnostic variants `noupdate` and `countonly`); on TensorFlow also
  tf_keras and tfmot (`tf_keras` mode). Each round trains one epoch of every
  variant, mode by mode; the order of the modes and of the variants inside a mode
  rotates every round, so the two epochs of a plain/pruned pair run back to back.
- mask update: one update at 90% of a 1000x1000 and the big kernel, compiled the
  way the backend's train step is (TensorFlow: `tf.function` and
  `tf.function(jit_compile=True)`; JAX: `jax.jit`; torch: eager), alternating with
  tfmot's own `Pruning.conditional_mask_update()` (a `tf.function` on a tf_keras
  kernel with the same values) in the same process.

Not meant to be run by hand; see `overhead.py`.
"""

import os

# tfmot picks its Keras at import time: make it tf_keras. `import keras` stays
# Keras 3 on the backend `overhead.py` chose (KERAS_BACKEND).
os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import pathlib  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402

MODES = {"tensorflow": ("graph", "xla"), "jax": ("jit",), "torch": ("eager",)}
JIT_COMPILE = {"graph": False, "xla": True, "jit": True, "eager": False}
SIZES = (1000, 1000, 500, 200, 10)


def log(msg):
    print(msg, flush=True)


# --------------------------------------------------------------------------- models


def build_keras3(weights):
    import keras

    layers = [keras.Input((784,))]
    for i, units in enumerate(SIZES):
        layers.append(keras.layers.Dense(
            units, activation="softmax" if i == len(SIZES) - 1 else "relu", use_bias=False,
            name=f"dense_{i}"))
    model = keras.Sequential(layers, name="mlp")
    model.set_weights(weights)
    return model


def build_tf_keras(weights):
    import tf_keras

    model = tf_keras.Sequential(
        [tf_keras.Input((784,))]
        + [tf_keras.layers.Dense(units, activation="softmax" if i == len(SIZES) - 1 else "relu",
                                 use_bias=False, name=f"dense_{i}")
           for i, units in enumerate(SIZES)],
        name="mlp",
    )
    model.set_weights(weights)
    return model


class EpochTimer:
    """Wall and process CPU time of each epoch (all threads of this process).

    Epoch hooks only, so Keras does not sync after each batch. At the end of an
    epoch the last kernel is read back to the host: it depends on every step of
    the epoch, so asynchronous work (JAX) is inside the timed epoch.
    """

    def __init__(self, sync):
        self.sync = sync
        self.times = []
        self.cpu = []

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()
        self._c0 = time.process_time()

    def on_epoch_end(self, epoch, logs=None):
        self.sync()
        self.times.append(time.perf_counter() - self._t0)
        self.cpu.append(time.process_time() - self._c0)


def _timer(callback_base, sync):
    class Timer(EpochTimer, callback_base):
        def __init__(self):
            callback_base.__init__(self)
            EpochTimer.__init__(self, sync)

    return Timer()


class Run:
    """One variant: a compiled model, its fit arguments and its callbacks."""

    def __init__(self, mode, variant, model, callbacks, keras2=False):
        self.mode = mode
        self.variant = variant
        self.model = model
        self.callbacks = callbacks
        self.keras2 = keras2

    @property
    def name(self):
        return f"{self.mode}:{self.variant}"

    def epoch(self, data):
        if self.keras2:
            import tf_keras

            base = tf_keras.callbacks.Callback
            sync = lambda: self.model.trainable_variables[-1].numpy()  # noqa: E731
        else:
            import keras

            base = keras.callbacks.Callback
            sync = lambda: keras.ops.convert_to_numpy(  # noqa: E731
                self.model.trainable_variables[-1])
        timer = _timer(base, sync)
        x, y, fit_kwargs = data
        self.model.fit(x, y, epochs=1, verbose=0, shuffle=False,
                       callbacks=self.callbacks + [timer], **fit_kwargs)
        return timer.times[-1], timer.cpu[-1]


def _count_steps(driver):
    """What a driver does every step apart from the update conditional: count."""
    from keras import ops

    step = ops.cast(driver.wrappers[0]._state.pruning_step, "int32") + 1
    for w in driver.wrappers:
        w._state.pruning_step.assign(step)


class _StepsOnly:
    """Diagnostic constraint: counts the steps as the driver does, with neither the
    update conditional nor the mask multiply."""

    def __init__(self, base):
        self.base = base

    def __call__(self, w):
        _count_steps(self.base.drive)
        return w


class _CountOnly:
    """Diagnostic constraint: runs the schedule driver (step counting, the update
    condition) but does not multiply by the mask."""

    def __init__(self, base):
        self.base = base

    def __call__(self, w):
        self.base.drive(self.base, w)
        return w


def CountOnlyPruningStep(constraint=None):  # noqa: N802 (a callback factory)
    """`UpdatePruningStep` that, after linking, leaves only the drivers' step
    counting: the other pruned kernels lose their constraint (no `w * mask`, no
    assign), the driving kernel (the 200x10 output kernel) counts steps and is
    assigned unmasked. Changes only this process's objects (diagnostic)."""
    import tfprune

    class CountOnly(tfprune.callbacks.UpdatePruningStep):
        def on_train_begin(self, logs=None):
            saved = getattr(self, "_saved", {})
            for w in tfprune.wrappers.collect_wrappers(self.model):
                for t in w.targets:
                    if id(t.variable) in saved:
                        t.variable.constraint = saved[id(t.variable)]
            super().on_train_begin(logs)
            self._saved = {}
            for w in self._wrappers:
                for t in w.targets:
                    c = t.variable.constraint
                    self._saved[id(t.variable)] = c
                    t.variable.constraint = (constraint or _CountOnly)(c) \
                        if c.drive is not None else None

    return CountOnly()


def MasksOnlyPruningStep():  # noqa: N802 (a callback factory)
    """`UpdatePruningStep` whose update conditional writes only the masks and the
    pruning state: the pruned kernels are no longer operands/results of the
    conditional (the next step's constraint applies a new mask to them, one step
    late: not exact, for timing only). Measures what passing every kernel through
    the conditional costs under XLA/JAX. Changes only this process's objects."""
    import tfprune

    class MasksOnly(tfprune.callbacks.UpdatePruningStep):
        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)
            for w in self._wrappers:
                for t in w.targets:
                    d = t.variable.constraint.drive
                    if d is None:
                        continue
                    kernels = {id(u.variable) for x in d.wrappers for u in x.targets
                               if u is not d.target}
                    every = type(d)._variables.__get__(d)
                    d._variables = lambda every=every, kernels=kernels: [
                        v for v in every() if id(v) not in kernels]

    return MasksOnly()


def _compile_k3(model, mode):
    import keras

    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"], jit_compile=JIT_COMPILE[mode])
    return model


def make_runs(backend, weights, end_step, frequency, final, breakdown, modes=None,
              masksonly=False):
    """`[[Run, ...] per mode]`: every variant from the same initial weights (only
    the compile modes in `modes`, `tf_keras` included, when given)."""
    import tfprune

    def schedule():
        return tfprune.PolynomialDecay(0.0, final, 0, end_step, frequency=frequency)

    groups = []
    for mode in MODES[backend]:
        if modes and mode not in modes:
            continue
        runs = [
            Run(mode, "plain", _compile_k3(build_keras3(weights), mode), []),
            Run(mode, "tfprune", _compile_k3(
                tfprune.prune_low_magnitude(build_keras3(weights), schedule()), mode),
                [tfprune.callbacks.UpdatePruningStep()]),
        ]
        if breakdown:
            never = tfprune.ConstantSparsity(final, begin_step=2**30)  # int32 on JAX
            runs.append(Run(mode, "noupdate", _compile_k3(
                tfprune.prune_low_magnitude(build_keras3(weights), never), mode),
                [tfprune.callbacks.UpdatePruningStep()]))
            runs.append(Run(mode, "countonly", _compile_k3(
                tfprune.prune_low_magnitude(build_keras3(weights), never), mode),
                [CountOnlyPruningStep()]))
            runs.append(Run(mode, "stepsonly", _compile_k3(
                tfprune.prune_low_magnitude(build_keras3(weights), never), mode),
                [CountOnlyPruningStep(_StepsOnly)]))
        if masksonly:
            runs.append(Run(mode, "masksonly", _compile_k3(
                tfprune.prune_low_magnitude(build_keras3(weights), schedule()), mode),
                [MasksOnlyPruningStep()]))
        groups.append(runs)
    if backend == "tensorflow" and (not modes or "tf_keras" in modes):
        import tensorflow_model_optimization as tfmot
        import tf_keras

        def compile_tfk(model):
            model.compile(tf_keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                          metrics=["accuracy"])
            return model

        tm = tfmot.sparsity.keras.prune_low_magnitude(
            build_tf_keras(weights),
            pruning_schedule=tfmot.sparsity.keras.PolynomialDecay(
                0.0, final, 0, end_step, frequency=frequency))
        groups.append([
            Run("tf_keras", "plain", compile_tfk(build_tf_keras(weights)), [], keras2=True),
            Run("tf_keras", "tfmot", compile_tfk(tm),
                [tfmot.sparsity.keras.UpdatePruningStep()], keras2=True),
        ])
    return groups


def load_data(cfg, samples):
    import tfprune

    (x, y), _ = tfprune.datasets.load_mnist()
    n = min(samples, len(x))
    x = x[:n].reshape(n, 784).astype("float32") / 255.0
    y = y[:n].astype("int32")
    return x, y


def input_pipeline(backend, x, y, batch_size):
    """`(x, y, fit kwargs)`: a cached `tf.data` pipeline on TensorFlow (what a TF
    user feeds), NumPy arrays on JAX and torch (Keras's own array adapter, no
    TensorFlow in the loop); the same batches in the same order everywhere."""
    if backend != "tensorflow":
        return x, y, {"batch_size": batch_size}
    import tensorflow as tf

    ds = (tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size, drop_remainder=True)
          .cache().prefetch(tf.data.AUTOTUNE))
    return ds, None, {}


def final_state(run):
    """Sparsity of the kernels after the run, and the pruning step counters."""
    if run.keras2:
        import tensorflow_model_optimization as tfmot

        stripped = tfmot.sparsity.keras.strip_pruning(run.model)
        kernels = [layer.kernel.numpy() for layer in stripped.layers]
        return {"kernel_sparsity": float(sum((k == 0).sum() for k in kernels)
                                         / sum(k.size for k in kernels))}
    import keras
    import tfprune

    wrappers = tfprune.wrappers.collect_wrappers(run.model)
    kernels = [keras.ops.convert_to_numpy(t.variable) for w in wrappers for t in w.targets]
    out = {"kernel_sparsity": float(sum((k == 0).sum() for k in kernels)
                                    / sum(k.size for k in kernels))}
    out["pruning_step"] = int(keras.ops.convert_to_numpy(wrappers[0].pruning_step))
    out["last_update_step"] = int(keras.ops.convert_to_numpy(wrappers[0].last_update_step))
    return out


def inputs(backend, cfg):
    """`(x, y, initial weights, fit's (x, y, kwargs))`: whole batches only (as
    `tf.data` drops the rest)."""
    samples = cfg.get("samples_for", {}).get(backend, cfg["samples"])
    x, y = load_data(cfg, samples)
    weights = [w.astype("float32") for w in np.load(cfg["weights"]).values()]
    batch = cfg["batch_size"]
    steps = len(x) // batch
    x, y = x[: steps * batch], y[: steps * batch]
    return x, y, weights, input_pipeline(backend, x, y, batch)


def bench_epochs(backend, cfg, loaded):
    """`loaded`: what `inputs` returns (shared with the per-step timing)."""
    repeats = cfg.get("repeats_for", {}).get(backend, cfg["repeats"])
    x, y, weights, data = loaded
    batch = cfg["batch_size"]
    steps = len(x) // batch
    frequency = cfg["frequency"]
    total_steps = steps * (1 + repeats)
    end_step = max(frequency, (total_steps // frequency) * frequency)
    groups = make_runs(backend, weights, end_step, frequency, cfg["final_sparsity"],
                       cfg["breakdown"], cfg.get("modes"), cfg.get("masksonly", False))
    runs = [r for g in groups for r in g]
    if not runs:
        log(f"[{backend}] no epoch timing: none of its modes is in {cfg.get('modes')}")
        return None
    log(f"[{backend}] epoch timing: {len(x)} samples, {steps} steps/epoch of batch {batch}, "
        f"{steps / frequency:g} mask updates/epoch; 1 warm-up + {repeats} timed epochs "
        f"per variant; PolynomialDecay(0 -> {cfg['final_sparsity']}, 0, {end_step}, "
        f"frequency={frequency}); variants {[r.name for r in runs]}")
    warmup = {}
    for r in runs:
        t0 = time.perf_counter()
        r.epoch(data)
        warmup[r.name] = time.perf_counter() - t0
        log(f"[{backend}]   warm-up {r.name:22s} {warmup[r.name]:7.2f} s")
    wall = {r.name: [] for r in runs}
    cpu = {r.name: [] for r in runs}
    loads = []
    for i in range(repeats):
        order = groups[i % len(groups):] + groups[: i % len(groups)]
        for g in order:
            shift = i % len(g)
            for r in g[shift:] + g[:shift]:
                w, c = r.epoch(data)
                wall[r.name].append(w)
                cpu[r.name].append(c)
        loads.append(os.getloadavg()[0])
        log(f"[{backend}]   round {i + 1}/{repeats} (load {loads[-1]:.1f}): "
            + "  ".join(f"{r.name} {wall[r.name][-1]:.2f}s" for r in runs))
    state = {r.name: final_state(r) for r in runs
             if r.variant in ("tfprune", "tfmot", "masksonly")}
    return {
        "samples": len(x),
        "steps_per_epoch": steps,
        "timed_epochs_per_variant": repeats,
        "mask_updates_per_epoch": steps / frequency,
        "schedule": {"initial": 0.0, "final": cfg["final_sparsity"], "begin_step": 0,
                     "end_step": end_step, "frequency": frequency, "power": 3},
        "modes": [g[0].mode for g in groups],
        "variants": {g[0].mode: [r.variant for r in g] for g in groups},
        "warmup_epoch_s": warmup,
        "epoch_s": wall,
        "epoch_cpu_s": cpu,
        "loadavg_per_round": loads,
        "final_state": state,
    }


# --------------------------------------------------------------------------- masks


def _tfmot_update(w, final):
    """tfmot's own mask update (`pruning_impl.Pruning.conditional_mask_update`, a
    full `top_k` sort) on the tf_keras kernel `w`, in a `tf.function`."""
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    from tensorflow_model_optimization.python.core.sparsity.keras import pruning_impl

    mask = tf.Variable(tf.ones(w.shape), trainable=False)
    threshold = tf.Variable(0.0, trainable=False)
    step = tf.Variable(0, dtype=tf.int64, trainable=False)
    pruning = pruning_impl.Pruning(
        training_step_fn=lambda: step,
        pruning_vars=[(w, mask, threshold)],
        pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(final, begin_step=0,
                                                               frequency=1),
        block_size=(1, 1),
        block_pooling_type="AVG",
    )

    @tf.function
    def update():
        pruning.conditional_mask_update()

    update.trace = update.get_concrete_function  # warm-up without running the sort
    return update, lambda: mask.numpy()


def _tfprune_updates(backend, w_np, final, breakdown=False):
    """`{mode: (update(), read mask())}`: `tfprune.masks.select([weight_scores(w)],
    final)` and the mask written, compiled as the backend's train step is (with
    `breakdown` on torch also `eager+bincount`, see `_bincount_histograms`)."""
    import keras
    from keras import ops

    import tfprune

    shape = w_np.shape
    w = keras.Variable(w_np, trainable=False, name="kernel")
    mask = keras.Variable(np.ones(shape, "float32"), trainable=False, name="mask")

    def new_mask(value):
        (keep,) = tfprune.masks.select([tfprune.masks.weight_scores(value)], final)
        return ops.cast(ops.reshape(keep, shape), "float32")

    read = lambda: ops.convert_to_numpy(mask)  # noqa: E731
    out = {}
    if backend == "tensorflow":
        import tensorflow as tf

        for mode in MODES[backend]:
            @tf.function(jit_compile=JIT_COMPILE[mode])
            def update():
                mask.assign(new_mask(w.value))
            out[mode] = (update, read)
    elif backend == "jax":
        import jax

        jitted = jax.jit(new_mask)

        def update():
            mask.assign(jitted(w.value))
            mask.value.block_until_ready()
        out["jit"] = (update, read)
    else:
        import torch

        def update():
            with torch.no_grad():
                mask.assign(new_mask(w.value))
        out["eager"] = (update, read)
        if breakdown:
            mask2 = keras.Variable(np.ones(shape, "float32"), trainable=False, name="mask2")

            def patched():
                undo = _bincount_histograms()
                try:
                    with torch.no_grad():
                        mask2.assign(new_mask(w.value))
                finally:
                    undo()
            out["eager+bincount"] = (patched, lambda: ops.convert_to_numpy(mask2))
            return out, (w, mask, mask2)
    return out, (w, mask)


def _bincount_histograms():
    """Diagnostic (torch): `tfprune.masks.ops_kernel`'s two radix histograms as
    `ops.bincount` instead of `ops.segment_sum` (Keras's torch `segment_sum` repeats
    the ids, converts to float and runs `scatter_reduce`). Patches only the
    kernel's `ops` name in this process; returns the undo function."""
    from keras import ops

    from tfprune.masks import ops_kernel

    class Ops:
        def __getattr__(self, name):
            return getattr(ops, name)

        @staticmethod
        def segment_sum(data, segment_ids, num_segments=None, sorted=False):
            # `data` is all ones in the radix select: a histogram of the ids
            return ops.bincount(segment_ids, minlength=num_segments)[:num_segments]

    ops_kernel.ops = Ops()
    return lambda: setattr(ops_kernel, "ops", ops)


def bench_mask(backend, shape, repeats, cfg):
    import tf_keras

    import tfprune

    final = cfg["final_sparsity"]
    tf_keras.utils.set_random_seed(cfg["seed"])
    layer = tf_keras.layers.Dense(shape[1], use_bias=False)
    layer.build((None, shape[0]))  # glorot-uniform tf_keras kernel (a tf.Variable)
    fns, keep_alive = _tfprune_updates(backend, layer.kernel.numpy(), final,
                                       cfg.get("breakdown", False))
    fns["tfmot"] = _tfmot_update(layer.kernel, final)
    names = list(fns)
    trace_only = int(np.prod(shape)) > cfg.get("tfmot_warmup_limit", 1 << 24)
    for k, (update, _) in fns.items():  # trace/compile (+ first run), excluded
        if k == "tfmot" and trace_only:
            update.trace()  # the first call still pays graph optimization (~ms)
        else:
            update()
    times = {k: [] for k in names}
    for i in range(repeats):
        shift = i % len(names)
        for k in names[shift:] + names[:shift]:
            t0 = time.perf_counter()
            fns[k][0]()
            times[k].append(time.perf_counter() - t0)
    n = int(np.prod(shape))
    masks = {k: fns[k][1]().astype(bool) for k in names}
    med = {k: statistics.median(v) for k, v in times.items()}
    out = {
        "shape": list(shape), "weights": n, "repeats": repeats, "times_s": times,
        "tfmot_warmup": "traced only" if trace_only else "traced and run once",
        "median_ms": {k: 1000 * v for k, v in med.items()},
        "speedup_vs_tfmot": {k: med["tfmot"] / med[k] for k in names if k != "tfmot"},
        "kept": {"target": tfprune.masks.keep_count(n, final),
                 **{k: int(m.sum()) for k, m in masks.items()}},
        "masks_differ_from_tfmot": {k: int((masks[k] != masks["tfmot"]).sum())
                                    for k in names if k != "tfmot"},
    }
    log(f"[{backend}]   mask {shape[0]}x{shape[1]}: "
        + ", ".join(f"{k} {out['median_ms'][k]:.2f} ms" for k in names)
        + "; speedup " + ", ".join(f"{k} {v:.1f}x" for k, v in out["speedup_vs_tfmot"].items())
        + f"; kept {out['kept']}")
    del keep_alive, layer, fns, masks
    gc.collect()
    return out


# --------------------------------------------------------------------------- main


def environment(backend):
    import keras
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras
    from tensorflow_model_optimization.python.core.keras.compat import keras as tfmot_keras

    import tfprune

    if keras.backend.backend() != backend:
        raise SystemExit(f"KERAS_BACKEND={backend} asked, Keras runs {keras.backend.backend()}")
    if not tfmot_keras.__name__.startswith("tf_keras"):
        raise SystemExit(f"tfmot uses {tfmot_keras.__name__}, not tf_keras")
    from _common import tfprune_source

    env = {"backend": backend, "keras": keras.__version__, "tensorflow": tf.__version__,
           "tf_keras": tf_keras.__version__, "tfmot": tfmot.__version__,
           "tfprune": tfprune.__version__, "tfprune_source": tfprune_source()}
    if backend == "jax":
        import jax
        import jaxlib

        env.update(jax=jax.__version__, jaxlib=jaxlib.__version__,
                   jax_devices=[str(d) for d in jax.devices()])
    if backend == "torch":
        import torch

        env.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
    return env


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="config JSON written by overhead.py")
    p.add_argument("--out", required=True, help="where to write this backend's JSON")
    args = p.parse_args(argv)
    cfg = json.loads(pathlib.Path(args.config).read_text())
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    # The never-updating diagnostic variants warn "NOTHING WAS PRUNED", on purpose.
    warnings.filterwarnings("ignore", message="tfprune: training ended")
    logging.getLogger("tfprune").addFilter(
        lambda record: "NOTHING WAS PRUNED" not in record.getMessage())
    import keras

    keras.utils.set_random_seed(cfg["seed"])
    result = {"environment": environment(backend), "loadavg_before": os.getloadavg()}
    t0 = time.perf_counter()
    if not cfg["skip_epochs"] or cfg.get("steps"):
        loaded = inputs(backend, cfg)  # the same data and initial weights for both
    if not cfg["skip_epochs"]:
        epochs = bench_epochs(backend, cfg, loaded)
        if epochs is not None:
            result["epochs"] = epochs
    if cfg.get("steps"):
        import overhead_steps

        result["steps"] = overhead_steps.bench_steps(
            backend, cfg, make_runs, final_state, *loaded)
    if not cfg["skip_masks"]:
        log(f"[{backend}] mask update timing ({', '.join(MODES[backend])} vs tfmot):")
        result["mask_update"] = [
            bench_mask(backend, (1000, 1000), cfg["mask_repeats"], cfg),
            bench_mask(backend, tuple(cfg["big_shape"]), cfg["big_repeats"], cfg),
        ]
    result["loadavg_after"] = os.getloadavg()
    result["total_s"] = time.perf_counter() - t0
    pathlib.Path(args.out).write_text(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
