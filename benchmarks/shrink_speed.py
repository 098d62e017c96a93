"""Benchmark: `tfprune.shrink` makes unit-pruned models smaller and faster.

Models: VGG-16 (`keras.applications.VGG16(weights=None, input_shape=(32, 32, 3),
classes=10)`) and the seed MLP (Dense 1000-1000-500-200-10 on 784 inputs,
relu, no biases). For 50% and 75% unit sparsity, the lowest-L2 units of every
unit group that `tfprune.graph.unit_groups` allows (all but the output layer
here) are zeroed, kernel columns and biases, as unit pruning does
(`masks.select_np` on `masks.unit_scores_np`): the *masked* model. `shrink`
turns it into the *shrunk* model. Dense, masked and shrunk are converted to
float32 TFLite (`TFLiteConverter.from_keras_model`) and timed single-threaded
(`ai_edge_litert.interpreter.Interpreter(num_threads=1)`, median of `--runs`
invocations after warm-up, batch 1). Outputs of masked and shrunk are compared
in Keras (batch of 32) and in TFLite (the timed inputs). Weights are random,
He-scaled (`N(0, 2/fan_in)`, biases `N(0, 0.1)`) so activations keep their
scale through 16 layers and the comparison means something (latency and size do
not depend on the values); MLP inputs are MNIST test digits when `mnist.npz` is
found (TFPRUNE_DATA_DIR or ../shared/data).

Run (about 3 minutes on 2 cores):

    .venv/bin/python benchmarks/shrink_speed.py --runs 50
"""

import argparse
import contextlib
import io
import json
import os
import pathlib
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402

from tfprune import flops, graph, masks, registry  # noqa: E402
from tfprune.shrink import shrink  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent
SPARSITIES = (0.5, 0.75)


def vgg16():
    return keras.applications.VGG16(weights=None, input_shape=(32, 32, 3), classes=10)


def seed_mlp():
    sizes = (1000, 1000, 500, 200)
    layers = [keras.layers.Dense(n, activation="relu", use_bias=False) for n in sizes]
    return keras.Sequential(
        [keras.Input((784,))] + layers + [keras.layers.Dense(10, use_bias=False)], name="seed_mlp"
    )


def he_init(model, rng):
    """Random He-scaled kernels and small random biases, in place."""
    for layer in graph.leaf_layers(model):
        kernel = getattr(layer, "kernel", None)
        if kernel is None:
            continue
        fan_in = int(np.prod(kernel.shape[:-1]))
        kernel.assign(rng.normal(0, np.sqrt(2 / fan_in), kernel.shape).astype(np.float32))
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape).astype(np.float32))
    return model


def unit_kernel(layer):
    _, kernel, targets = registry.get_spec(layer).unit_targets(layer)
    return kernel, targets[0][2]


def mask_units(model, sparsity):
    """Zero the lowest-L2 units of every prunable unit group (kernel and bias)."""
    groups, excluded = graph.unit_groups(model)
    for group in groups:
        if group[0].name in excluded:
            continue
        scores = sum(masks.unit_scores_np(k.numpy(), s) for k, s in map(unit_kernel, group))
        keep = masks.select_np([scores], sparsity)[0]
        for layer in group:
            kernel, shape = unit_kernel(layer)
            kernel.assign(kernel.numpy() * keep.reshape(shape))
            if getattr(layer, "bias", None) is not None:
                layer.bias.assign(layer.bias.numpy() * keep)
    return model


def copy_model(model):
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def to_tflite(model):
    with contextlib.redirect_stdout(io.StringIO()):  # the converter prints its export
        return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def run_tflite(content, inputs, runs):
    """(median ms per batch-1 invocation, outputs for `inputs`)."""
    interp = Interpreter(model_content=content, num_threads=1)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0]["index"], interp.get_output_details()[0]["index"]
    outputs = []
    for x in inputs:
        interp.set_tensor(inp, x[None])
        interp.invoke()
        outputs.append(interp.get_tensor(out)[0])
    times = []
    for i in range(runs):
        interp.set_tensor(inp, inputs[i % len(inputs)][None])
        start = time.perf_counter()
        interp.invoke()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times), np.stack(outputs)


def mnist_digits(n):
    for d in (os.environ.get("TFPRUNE_DATA_DIR"), ROOT.parent / "../shared/data"):
        path = pathlib.Path(d or "/nonexistent") / "mnist.npz"
        if path.exists():
            with np.load(path) as data:
                return data["x_test"][:n].reshape(n, 784).astype(np.float32) / 255.0, "mnist"
    return np.random.default_rng(0).random((n, 784), dtype=np.float32), "random"


def inputs_for(name, n):
    if name == "seed_mlp":
        return mnist_digits(n)
    return np.random.default_rng(0).normal(size=(n, 32, 32, 3)).astype(np.float32), "random"


def costs(model):
    values = flops.layer_costs(model).values()
    return sum(p for p, _ in values), sum(f for _, f in values)


def measure(model, x, runs):
    content = to_tflite(model)
    ms, out = run_tflite(content, x[:8], runs)
    params, fl = costs(model)
    return {"params": params, "flops": fl, "tflite_bytes": len(content), "latency_ms": ms}, out


def bench_model(name, build, runs):
    dense = he_init(build(), np.random.default_rng(0))
    x, source = inputs_for(name, 32)
    rows = [dict(model=name, variant="dense", sparsity=0.0, inputs=source)]
    rows[0].update(measure(dense, x, runs)[0])
    for sparsity in SPARSITIES:
        masked = mask_units(copy_model(dense), sparsity)
        start = time.perf_counter()
        small = shrink(masked)
        shrink_s = time.perf_counter() - start
        reference = masked.predict(x, verbose=0)
        keras_diff = float(np.max(np.abs(reference - small.predict(x, verbose=0))))
        m, m_out = measure(masked, x, runs)
        s, s_out = measure(small, x, runs)
        tflite_diff = float(np.max(np.abs(m_out - s_out)))
        rows.append(dict(model=name, variant="masked", sparsity=sparsity, inputs=source, **m))
        rows.append(
            dict(
                model=name, variant="shrunk", sparsity=sparsity, inputs=source, **s,
                shrink_seconds=round(shrink_s, 2),
                max_abs_diff_vs_masked_keras=keras_diff,
                max_abs_diff_vs_masked_tflite=tflite_diff,
                max_abs_output_masked=float(np.max(np.abs(reference))),
            )
        )
    for r in rows:
        r["latency_ratio_dense_over"] = rows[0]["latency_ms"] / r["latency_ms"]
        r["size_ratio_dense_over"] = rows[0]["tflite_bytes"] / r["tflite_bytes"]
    return rows


def print_table(rows):
    head = (
        f"{'model':<9} {'variant':<7} {'sp':>4} {'params':>10} {'MFLOPs':>8} {'TFLite MB':>9} "
        f"{'ms (1 thr)':>10} {'dense/x lat':>11} {'dense/x size':>12} "
        f"{'diff keras':>10} {'diff tflite':>11}"
    )
    print(head + "\n" + "-" * len(head))
    for r in rows:
        print(
            f"{r['model']:<9} {r['variant']:<7} {r['sparsity']:>4.2f} {r['params']:>10} "
            f"{r['flops'] / 1e6:>8.1f} {r['tflite_bytes'] / 2**20:>9.2f} {r['latency_ms']:>10.3f} "
            f"{r['latency_ratio_dense_over']:>10.2f}x {r['size_ratio_dense_over']:>11.2f}x "
            f"{r.get('max_abs_diff_vs_masked_keras', float('nan')):>10.2g} "
            f"{r.get('max_abs_diff_vs_masked_tflite', float('nan')):>11.2g}"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=50, help="timed invocations per model")
    parser.add_argument("--out", default=str(ROOT / "results" / "shrink_speed.json"))
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    rows = bench_model("vgg16", vgg16, args.runs)
    rows += bench_model("seed_mlp", seed_mlp, args.runs * 20)
    print_table(rows)
    result = {
        "environment": {
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "threads": 1,
            "runs": {"vgg16": args.runs, "seed_mlp": args.runs * 20},
            "timing": "median ms of batch-1 invocations after 8 warm-up calls",
        },
        "rows": rows,
    }
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
