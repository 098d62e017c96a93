"""`tfprune demo`: the end-to-end MNIST demo (the README's main job).

1. Trains the seed article's MLP (784-1000-1000-500-200-10, no biases) on MNIST.
2. Weight pruning: prunes it to 90% sparsity during `fit` (polynomial schedule),
   prints per-layer sparsity and test accuracy, strips the wrappers, saves the plain
   model, and reports what that buys on disk (raw and gzipped weight files).
3. Unit pruning: prunes 50% of the hidden units by L2 norm (counts kept a multiple
   of 8), then `shrink` removes them: params, FLOPs, accuracy and batch-1 latency of
   the dense and shrunk models, whose outputs equal the masked model's.
4. Sweep: the dense model pruned one-shot at 50-98% by weight and by unit, test
   accuracy drawn to `sweep.png` (`tfprune.sweep.quick_curve`).
5. TFLite: the weight-pruned and the shrunk models exported (`tfprune.export`),
   each file run in the interpreter against Keras.

Every argument is checked (`check_arguments`) before any work, and each phase
prints its heading before it starts, so a long run shows where it is.
"""

import functools
import gzip
import numbers
import os
import pathlib
import sys
import time

__all__ = ["seed_mlp", "run", "check_arguments"]

PHASES = 7


def _check_fraction(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"Argument `{name}` must be a number in [0, 1). "
                        f"Received: {name}={value!r}")
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"Argument `{name}` must be in [0, 1) (0.9 means 90%). "
                         f"Received: {name}={value!r}")


def _check_int(name, value, minimum, allow_none=False):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"Argument `{name}` must be an integer. Received: {name}={value!r}")
    if value < minimum:
        raise ValueError(f"Argument `{name}` must be >= {minimum}. Received: {name}={value!r}")


def _check_output_dir(output_dir):
    if not isinstance(output_dir, (str, os.PathLike)) or not str(output_dir):
        raise TypeError("Argument `output_dir` must be a directory path. "
                        f"Received: output_dir={output_dir!r}")
    path = pathlib.Path(output_dir).absolute()
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        what = "is a file" if existing == path else f"is inside a file ({str(existing)!r})"
        raise ValueError(f"Argument `output_dir` must be a directory, but it {what}. "
                         f"Received: output_dir={str(output_dir)!r}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"Argument `output_dir` is not writable ({str(existing)!r}). "
                              f"Received: output_dir={str(output_dir)!r}")


def check_arguments(output_dir="demo_output", sparsity=0.9, unit_sparsity=0.5,
                    dense_epochs=1, prune_epochs=3, batch_size=128, samples=None,
                    data_path=None):
    """Check `run`'s arguments before any work: TypeError for a wrong type,
    ValueError (or FileNotFoundError / PermissionError for paths) naming the value.

    >>> check_arguments(sparsity=90)
    Traceback (most recent call last):
    ...
    ValueError: Argument `sparsity` must be in [0, 1) (0.9 means 90%). Received: sparsity=90
    """
    _check_fraction("sparsity", sparsity)
    _check_fraction("unit_sparsity", unit_sparsity)
    _check_int("dense_epochs", dense_epochs, 0)
    _check_int("prune_epochs", prune_epochs, 1)
    _check_int("batch_size", batch_size, 1)
    _check_int("samples", samples, 1, allow_none=True)
    _check_output_dir(output_dir)
    if data_path is not None and not os.path.exists(data_path):
        raise FileNotFoundError("Argument `data_path` must be an existing mnist.npz or "
                                f"directory. Received: data_path={str(data_path)!r}")


def seed_mlp(input_dim=784, hidden=(1000, 1000, 500, 200), classes=10):
    """The seed article's MLP: Dense layers without biases, ReLU, softmax."""
    import keras

    layers = [keras.Input((input_dim,))]
    layers += [keras.layers.Dense(u, activation="relu", use_bias=False) for u in hidden]
    layers.append(keras.layers.Dense(classes, activation="softmax", use_bias=False))
    return keras.Sequential(layers, name="seed_mlp")


def _data(samples, data_path):
    """MNIST as flat float32 images in [0, 1]: x (n, 784), y (n,) uint8 labels."""
    from tfprune import datasets

    (x_train, y_train), (x_test, y_test) = datasets.load_mnist(data_path)
    x_train = x_train.reshape(len(x_train), -1).astype("float32") / 255.0
    x_test = x_test.reshape(len(x_test), -1).astype("float32") / 255.0
    if samples:
        x_train, y_train = x_train[:samples], y_train[:samples]
    return x_train, y_train, x_test, y_test


def _heading(log, number, text):
    log(f"\n[{number}/{PHASES}] {text}")


def _fit_verbosity():
    """A progress bar on a terminal, one line per epoch in logs and pipes."""
    return 1 if sys.stdout.isatty() else 2


def _gzip_size(path):
    return len(gzip.compress(pathlib.Path(path).read_bytes(), compresslevel=6))


def _schedule(sparsity, steps_per_epoch, prune_epochs):
    """PolynomialDecay reaching `sparsity` after all but the last epoch.

    end_step must be a multiple of the frequency or the final sparsity is never
    applied (tfprune warns about that).
    """
    import tfprune

    frequency = max(1, min(100, steps_per_epoch // 4))
    end_step = frequency * max(1, steps_per_epoch * max(prune_epochs - 1, 1) // frequency)
    return tfprune.PolynomialDecay(0.0, sparsity, begin_step=0, end_step=end_step,
                                   frequency=frequency)


def _latency_ms(model, x, runs=200):
    """Median latency of one batch-1 forward pass (compiled call), in ms."""
    import tensorflow as tf

    call = tf.function(lambda t: model(t, training=False))
    sample = tf.constant(x[:1])
    for _ in range(10):
        call(sample)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        call(sample).numpy()
        times.append(time.perf_counter() - t0)
    return 1e3 * sorted(times)[len(times) // 2]


def _unit_pruning(model, data, steps_per_epoch, unit_sparsity, prune_epochs, batch_size,
                  out, log):
    import numpy as np

    import tfprune

    x_train, y_train, x_test, y_test = data
    schedule = _schedule(unit_sparsity, steps_per_epoch, prune_epochs)
    _heading(log, 5, f"Unit pruning: removing {unit_sparsity:.0%} of the hidden units "
             f"(L2 norm, counts a multiple of 8) over {prune_epochs} epoch(s), then shrink")
    pruned = tfprune.prune_low_magnitude(model, schedule, granularity="unit", round_to=8)
    pruned.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    pruned.fit(x_train, y_train, epochs=prune_epochs, batch_size=batch_size,
               verbose=_fit_verbosity(), callbacks=[tfprune.callbacks.UpdatePruningStep()])
    log("Shrinking: removing the dead units and checking outputs against the masked model...")
    masked = tfprune.strip_pruning(pruned)
    small, shrink_report = tfprune.shrink(masked, round_to=8, return_report=True)
    small.compile(metrics=["accuracy"], loss="sparse_categorical_crossentropy")
    acc = small.evaluate(x_test, y_test, verbose=0)[1]
    diff = float(np.max(np.abs(small.predict(x_test, verbose=0)
                               - masked.predict(x_test, verbose=0))))
    log(str(tfprune.sparsity_report(small, reference=model)).split("\n\n")[-1])
    log("Measuring batch-1 latency (median of 200 calls)...")
    dense_ms, small_ms = _latency_ms(model, x_test), _latency_ms(small, x_test)
    log(f"shrunk: test accuracy {acc:.4f}; max |shrunk - masked| on the test set {diff:.1e}")
    log(f"batch-1 latency (Keras, this CPU): dense {dense_ms:.3f} ms, shrunk "
        f"{small_ms:.3f} ms ({dense_ms / small_ms:.1f}x faster)")
    path = out / "mnist_mlp_shrunk.keras"
    small.save(path)
    log(f"Saved the shrunk model to {path}")
    return {"shrunk_model": small, "shrunk_accuracy": float(acc), "shrunk_max_diff": diff,
            "shrink_report": shrink_report, "latency_ratio": dense_ms / small_ms}


def _sweep(model, x_test, y_test, out, log):
    """Phase 6: the dense model pruned one-shot (no training) at several levels,
    by weight and by unit, drawn to `sweep.png`."""
    import tfprune.sweep

    _heading(log, 6, "One-shot sparsity sweep of the dense model (no fine-tuning): "
             "weight vs unit pruning")
    path = out / "sweep.png"
    result = tfprune.sweep.quick_curve(model, (x_test, y_test), path)
    log(result.table())
    log(f"Saved the accuracy-vs-sparsity plot to {path}")
    return {"sweep": result, "sweep_plot": str(path)}


def _export(stripped, shrunk, x_test, out, log):
    """Phase 7: the weight-pruned and the shrunk models exported to TFLite (float32,
    sparse encoding where it makes the file smaller), each run in the interpreter
    and compared with Keras on test images."""
    import tfprune.export

    _heading(log, 7, "Exporting to TFLite and checking the files in the interpreter")
    reports = {}
    for name, m in (("pruned", stripped), ("shrunk", shrunk)):
        if m is None:
            continue
        path = out / f"mnist_mlp_{name}.tflite"
        r = tfprune.export.to_tflite(m, path, sample_inputs=x_test[:256])
        v = r.verification
        log(f"  {path.name:26s} {r.size / 1e6:6.2f} MB (dense float32 {r.dense_size / 1e6:.2f} MB)"
            f"  {'sparse tensors' if r.encoded_sparse else 'dense tensors'}"
            f"  max |tflite - keras| {v.max_abs_diff:.1e}"
            + (f", top-1 agreement {v.top1_agreement:.1%}" if v.top1_agreement is not None else ""))
        reports[name] = r
    log("(`tfprune inspect FILE` shows each tensor's encoding; `tfprune export --help`)")
    return {"tflite": reports}


def run(output_dir="demo_output", sparsity=0.9, unit_sparsity=0.5, dense_epochs=1,
        prune_epochs=3, batch_size=128, samples=None, data_path=None, log=None):
    """Run the demo; returns a dict of the measured figures.

    Arguments are checked first (`check_arguments`); `log` prints each line
    (default: `print`, flushed, so the progress shows in pipes and logs).
    """
    check_arguments(output_dir, sparsity, unit_sparsity, dense_epochs, prune_epochs,
                    batch_size, samples, data_path)
    log = log or functools.partial(print, flush=True)
    out = pathlib.Path(output_dir)

    _heading(log, 1, "Loading MNIST")
    x_train, y_train, x_test, y_test = _data(samples, data_path)
    log(f"MNIST: {len(x_train)} train / {len(x_test)} test images, flattened to "
        f"float32 {x_train.shape[1:]} in [0, 1]"
        + (f" (--samples {samples}: the first {len(x_train)})" if samples else ""))
    out.mkdir(parents=True, exist_ok=True)

    import keras

    import tfprune

    keras.utils.set_random_seed(0)
    steps_per_epoch = -(-len(x_train) // batch_size)

    _heading(log, 2, f"Training the dense seed MLP (784-1000-1000-500-200-10, no biases) "
             f"for {dense_epochs} epoch(s)")
    model = seed_mlp()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    t0 = time.perf_counter()
    model.fit(x_train, y_train, epochs=dense_epochs, batch_size=batch_size,
              verbose=_fit_verbosity())
    dense_acc = model.evaluate(x_test, y_test, verbose=0)[1]
    log(f"dense:  test accuracy {dense_acc:.4f}  ({time.perf_counter() - t0:.0f} s)")

    schedule = _schedule(sparsity, steps_per_epoch, prune_epochs)
    _heading(log, 3, f"Weight pruning to {sparsity:.0%} during {prune_epochs} epoch(s) of "
             f"training: {schedule}")
    pruned = tfprune.prune_low_magnitude(model, schedule)
    pruned.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    t0 = time.perf_counter()
    pruned.fit(x_train, y_train, epochs=prune_epochs, batch_size=batch_size,
               verbose=_fit_verbosity(), callbacks=[tfprune.callbacks.UpdatePruningStep()])
    pruned_acc = pruned.evaluate(x_test, y_test, verbose=0)[1]
    log(f"pruned: test accuracy {pruned_acc:.4f}  ({time.perf_counter() - t0:.0f} s)")

    _heading(log, 4, "Stripping the wrappers, saving, and comparing file sizes")
    stripped = tfprune.strip_pruning(pruned)
    report = tfprune.sparsity_report(stripped)
    log("Per-layer sparsity of the stripped model:\n" + str(report))

    model_path = out / "mnist_mlp_pruned.keras"
    stripped.save(model_path)
    # Like for like: the weights alone, dense vs pruned (zeros are stored, and compress).
    dense_path, pruned_path = out / "dense.weights.h5", out / "pruned.weights.h5"
    dense_plain = seed_mlp()  # uncompiled: no optimizer slots in the file
    dense_plain.set_weights(model.get_weights())
    dense_plain.save_weights(dense_path)
    stripped.save_weights(pruned_path)
    sizes = {p.name: (os.path.getsize(p), _gzip_size(p)) for p in (dense_path, pruned_path)}
    log("\nWeights on disk (stored dense, so only compression shrinks them):")
    for name, (raw, gz) in sizes.items():
        log(f"  {name:20s} {raw / 1e6:7.2f} MB   gzip {gz / 1e6:6.2f} MB")
    ratio = sizes[dense_path.name][1] / sizes[pruned_path.name][1]
    log(f"  gzipped, the pruned weights are {ratio:.1f}x smaller than the dense ones")
    log(f"Saved the stripped model to {model_path}")
    results = {}
    if unit_sparsity:
        results = _unit_pruning(model, (x_train, y_train, x_test, y_test), steps_per_epoch,
                                unit_sparsity, prune_epochs, batch_size, out, log)
    else:
        _heading(log, 5, "Unit pruning: skipped (--unit-sparsity 0)")
    shrunk = results.pop("shrunk_model", None)
    results |= _sweep(model, x_test, y_test, out, log)
    results |= _export(stripped, shrunk, x_test, out, log)
    return results | {
        "dense_accuracy": float(dense_acc),
        "pruned_accuracy": float(pruned_acc),
        "sparsity": report.sparsity,
        "gzip_ratio": ratio,
        "report": report,
        "model_path": str(model_path),
    }
