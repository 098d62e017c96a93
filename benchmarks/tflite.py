"""Benchmark: what TFLite files of pruned models weigh and how fast they run.

Models (trained one epoch on MNIST so int8 calibration and top-1 mean something):

- `mlp`: the seed MLP, `tfprune.demo.seed_mlp()` (784-1000-1000-500-200-10, no
  biases, 2.39M weights);
- `cnn`: Conv2D(32, 3) - MaxPool - Conv2D(64, 3) - MaxPool - Flatten -
  Dense(256) - Dense(10) on 28x28x1 (0.43M weights, 95% of them in Dense).

Structures, pruned one-shot from the trained weights (NumPy, exact counts with
`tfprune.masks.select_np`, every kernel of the model), then fine-tuned one epoch
with the masks held (Keras constraints `w * mask`, as tfprune's wrappers do):

- `unstructured`: smallest |w| per kernel;
- `block4`: Dense kernels in Keras blocks (4, 1) (4 consecutive inputs of one
  output unit: TFLite's FULLY_CONNECTED block 1x4), scored by mean |w|, exact
  block counts per kernel; convolution kernels unstructured (TFLite has no block
  kernel for convolutions);
- `block16`: the same with (16, 1) blocks (TFLite's int8 block 1x16);
- `units`: the fraction of hidden units (Dense columns, conv filters, output
  layer kept) with the smallest L2 norm zeroed, then `to_tflite(shrink=True)`.

For each structure x sparsity (50/80/90/95%) x quantization (float32, float16,
int8 with 200 MNIST training images as calibration) the pruned model goes through
`tfprune.export.to_tflite` (default `sparse="auto"`, XNNPACK runtime) and the
script records the file size, the size of the dense file of the same weights,
the sparse minimum (nnz x (value + index bytes)), gzip size, the encodings found
in the file, latency, and max |file - Keras| / top-1 agreement / test accuracy on
`--eval` MNIST test images. Latency: `ai_edge_litert` Interpreter, one thread,
batch 1, default delegate (XNNPACK), the file of the *unpruned* model of the same
quantization timed in the same rounds (`--rounds` alternations of `--runs`
invocations each; medians). The raw converter (`from_keras_model` +
`EXPERIMENTAL_SPARSITY`, what a user gets without tfprune) is recorded beside:
its size, whether it loads under XNNPACK, and its max |file - Keras|.

Also: Keras 3's own `model.quantize("int8")` on the 90% unstructured MLP (zeros
kept, `.keras` size).

Run (about 25 minutes on 2 shared cores):

    .venv/bin/python benchmarks/tflite.py
    .venv/bin/python benchmarks/tflite.py --quick       # smoke run, writes nothing
"""

import argparse
import contextlib
import gzip
import io
import json
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _common  # noqa: E402

import tfprune  # noqa: E402
from tfprune import datasets, demo, masks  # noqa: E402
from tfprune.export import convert as convert_mod  # noqa: E402
from tfprune.export import to_tflite  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent
STRUCTURES = ("unstructured", "block4", "block16", "units")
QUANTIZE = (None, "float16", "int8")
SPARSITIES = (0.5, 0.8, 0.9, 0.95)


# ----------------------------------------------------------------------- models


def mlp():
    return demo.seed_mlp()


def cnn():
    L = keras.layers
    return keras.Sequential([
        keras.Input((28, 28, 1)), L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(),
        L.Conv2D(64, 3, activation="relu"), L.MaxPooling2D(), L.Flatten(),
        L.Dense(256, activation="relu"), L.Dense(10, activation="softmax")], name="cnn")


def data(name, train, evaluate):
    (xt, yt), (xe, ye) = datasets.load_mnist()
    shape = (-1, 784) if name == "mlp" else (-1, 28, 28, 1)
    xt = xt[:train].reshape(shape).astype("float32") / 255.0
    xe = xe[:evaluate].reshape(shape).astype("float32") / 255.0
    return xt, yt[:train], xe, ye[:evaluate]


def trained(name, x, y):
    keras.utils.set_random_seed(0)
    model = mlp() if name == "mlp" else cnn()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=1, batch_size=128, verbose=0)
    return model


def copy(model):
    """An uncompiled copy (Keras 3.15's clone_model also copies the optimizer)."""
    clone = model.__class__.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    return clone


# --------------------------------------------------------------------- pruning


def _kernel_layers(model):
    return [l for l in model.layers if getattr(l, "kernel", None) is not None]


def _block_keep(kernel, block, sparsity):
    """Keep mask of whole (b, 1) blocks of a Dense kernel (in, out), exact count."""
    rows, cols = kernel.shape
    b = block
    pad = -(-rows // b) * b
    k = np.zeros((pad, cols), np.float64)
    k[:rows] = np.abs(kernel)
    counts = np.full((pad // b, cols), b, np.float64)
    counts[-1] = b - (pad - rows)  # a partial last block averages its real entries
    score = k.reshape(pad // b, b, cols).sum(1) / counts
    keep = masks.select_np([score.ravel()], sparsity)[0].reshape(score.shape)
    return np.repeat(keep, b, axis=0)[:rows]


class _Mask(keras.constraints.Constraint):
    def __init__(self, mask):
        self.mask = mask

    def __call__(self, w):
        return w * self.mask


def finetune(model, x, y, epochs=1):
    """Train `model` with its zero pattern held; checks that it held."""
    zeros = []
    for layer in _kernel_layers(model):
        alive = (layer.kernel.numpy() != 0).astype("float32")
        layer.kernel.constraint = _Mask(alive)
        if getattr(layer, "bias", None) is not None:
            unit_alive = alive.reshape(-1, alive.shape[-1]).any(0).astype("float32")
            layer.bias.constraint = _Mask(unit_alive)
        zeros.append(int((alive == 0).sum()))
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=epochs, batch_size=128, verbose=0)
    for layer, z in zip(_kernel_layers(model), zeros):
        layer.kernel.constraint = None
        if getattr(layer, "bias", None) is not None:
            layer.bias.constraint = None
        assert int(np.sum(layer.kernel.numpy() == 0)) >= z, "fine-tuning lost zeros"
    return copy(model)  # uncompiled


def prune(model, structure, sparsity):
    """A pruned copy of `model` (masks applied to the weights)."""
    out = copy(model)
    layers = _kernel_layers(out)
    if structure == "units":
        for layer in layers[:-1]:
            k = layer.kernel.numpy()
            keep = masks.select_np([masks.unit_scores_np(k, (k.shape[-1],))], sparsity)[0]
            layer.kernel.assign(k * keep)
            if layer.bias is not None:
                layer.bias.assign(layer.bias.numpy() * keep)
        return out
    for layer in layers:
        k = layer.kernel.numpy()
        if structure.startswith("block") and isinstance(layer, keras.layers.Dense):
            keep = _block_keep(k, int(structure[5:]), sparsity)
        else:
            keep = masks.select_np([masks.weight_scores_np(k)], sparsity)[0].reshape(k.shape)
        layer.kernel.assign(k * keep)
    return out


# --------------------------------------------------------------------- measuring


class Timer:
    """Batch-1 single-thread invocations of one file (default delegate)."""

    def __init__(self, content, x):
        from ai_edge_litert.interpreter import Interpreter

        self.it = Interpreter(model_content=content, num_threads=1)
        self.it.allocate_tensors()
        self.inp = self.it.get_input_details()[0]["index"]
        self.x = x
        for i in range(10):
            self.invoke(i)

    def invoke(self, i):
        self.it.set_tensor(self.inp, self.x[i % len(self.x)][None])
        self.it.invoke()

    def times(self, n):
        out = []
        for i in range(n):
            self.it.set_tensor(self.inp, self.x[i % len(self.x)][None])
            t0 = time.perf_counter()
            self.it.invoke()
            out.append(time.perf_counter() - t0)
        return out


def paired_latency(dense, sparse, x, runs, rounds):
    """ms of the dense and the pruned file, timed in alternating rounds:
    `(median dense, median pruned, 10th percentile dense, 10th percentile pruned)`.
    The 10th percentile is less disturbed by other processes on a shared machine."""
    a, b = Timer(dense, x), Timer(sparse, x)
    ta, tb = [], []
    for _ in range(rounds):
        ta += a.times(runs)
        tb += b.times(runs)
    return (1e3 * statistics.median(ta), 1e3 * statistics.median(tb),
            1e3 * float(np.percentile(ta, 10)), 1e3 * float(np.percentile(tb, 10)))


def file_outputs(content, x):
    from tfprune.export.verify import FileRunner

    return FileRunner(content)([x])[0]


def raw_converter(model, quantize, cal, x, ref):
    """What `from_keras_model` + EXPERIMENTAL_SPARSITY gives without tfprune."""
    content = convert_mod.convert(model, quantize, True, cal)
    row = {"raw_size": len(content)}
    try:
        out = file_outputs(content, x)
        row["raw_loads"] = True
        row["raw_max_abs_diff"] = float(np.nanmax(np.abs(out - ref))) \
            if np.isfinite(out).all() else float("inf")
    except (RuntimeError, ValueError) as e:
        row["raw_loads"] = False
        row["raw_error"] = str(e).splitlines()[0][:120]
    return row


def measure(name, pruned, structure, sparsity, quantize, dense_file, cal, xe, ye, args, tmp):
    path = tmp / "m.tflite"
    t0 = time.perf_counter()
    report = to_tflite(pruned, path, quantize=quantize, representative_data=cal,
                       shrink=structure == "units", sample_inputs=xe[:32])
    seconds = time.perf_counter() - t0
    content = path.read_bytes()
    ref = keras.ops.convert_to_numpy(pruned(xe))
    out = file_outputs(content, xe)
    enc = {}
    for t in report.tensors:
        enc[t.encoding] = enc.get(t.encoding, 0) + 1
    dense_ms, ms, dense_p10, p10 = paired_latency(dense_file, content, xe, args.runs,
                                                  args.rounds)
    row = {
        "model": name, "structure": structure, "sparsity": sparsity,
        "quantize": quantize or "float32",
        "size": report.size, "dense_size": report.dense_size,
        "unpruned_size": len(dense_file), "sparse_min": report.sparse_min,
        "ratio_to_sparse_min": report.size / report.sparse_min,
        "gzip_size": report.gzip_size,
        "unpruned_gzip_size": len(gzip.compress(dense_file, 6)),
        "encodings": enc, "sparse_ops": len(report.sparse_ops),
        "densified_ops": len(report.densified_ops),
        "stored_dense": [d.reason for d in report.decisions if d.action != "kept sparse"],
        "warnings": report.warnings,
        "dense_ms": dense_ms, "ms": ms, "speedup": dense_ms / ms,
        "dense_ms_p10": dense_p10, "ms_p10": p10, "speedup_p10": dense_p10 / p10,
        "max_abs_diff": float(np.abs(out - ref).max()),
        "top1_agreement": float(np.mean(out.argmax(-1) == ref.argmax(-1))),
        "file_accuracy": float(np.mean(out.argmax(-1) == ye)),
        "keras_accuracy": float(np.mean(ref.argmax(-1) == ye)),
        "export_seconds": seconds,
    }
    if structure == "units":
        # the shrunk file against the masked model: outputs must be equal
        row["shrunk_vs_masked"] = row["max_abs_diff"]
        row["params_after_shrink"] = int(sum(np.prod(r.shape) for r in report.tensors))
    else:
        row.update(raw_converter(pruned, quantize, cal, xe, ref))
    return row


def keras_quantize(model, xe, tmp):
    """Keras 3 `model.quantize("int8")` of the 90% unstructured pruned model."""
    pruned = prune(model, "unstructured", 0.9)
    ref = keras.ops.convert_to_numpy(pruned(xe))
    zero_masks = [l.kernel.numpy() == 0 for l in _kernel_layers(pruned)]
    f, q = tmp / "f.keras", tmp / "q.keras"
    pruned.save(f)
    pruned.quantize("int8")
    int8 = [keras.ops.convert_to_numpy(l._kernel) for l in pruned.layers]
    out = keras.ops.convert_to_numpy(pruned(xe))
    pruned.save(q)
    return {
        "pruned_zeros": [int(z.sum()) for z in zero_masks],
        "pruned_zeros_kept": [int(np.sum(k[z] == 0)) for k, z in zip(int8, zero_masks)],
        "int8_zeros": [int(np.sum(k == 0)) for k in int8],
        "float_keras_bytes": f.stat().st_size, "int8_keras_bytes": q.stat().st_size,
        "float_keras_gzip": len(gzip.compress(f.read_bytes(), 6)),
        "int8_keras_gzip": len(gzip.compress(q.read_bytes(), 6)),
        "max_abs_diff": float(np.abs(out - ref).max()),
        "top1_agreement": float(np.mean(out.argmax(-1) == ref.argmax(-1))),
    }


# ----------------------------------------------------------------------- tables


def _mb(n):
    return f"{n / 1e6:.3f}"


def markdown(results):
    lines = []
    for name in results["models"]:
        rows = [r for r in results["rows"] if r["model"] == name]
        acc = results.get("dense_accuracy", {}).get(name)
        lines += [f"### {name} (unpruned test accuracy {acc:.3f})" if acc else f"### {name}", "",
                  "| structure | sparsity | quant | file MB | / unpruned | / sparse min | "
                  "gzip MB | encodings | ms (unpruned ms) | speedup (p10) | max diff | "
                  "top-1 agree | accuracy file (Keras) | raw converter |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            enc = ", ".join(f"{v} {k}" for k, v in sorted(r["encodings"].items()))
            if r["structure"] == "units":
                raw = "-"
            elif not r.get("raw_loads", True):
                raw = f"{_mb(r['raw_size'])} MB, fails to load"
            else:
                raw = f"{_mb(r['raw_size'])} MB, diff {r['raw_max_abs_diff']:.2g}"
            lines.append(
                f"| {r['structure']} | {r['sparsity']:.0%} | {r['quantize']} | {_mb(r['size'])} "
                f"| {r['size'] / r['unpruned_size']:.3f} | {r['ratio_to_sparse_min']:.3f} | "
                f"{_mb(r['gzip_size'])} | {enc} | {r['ms']:.3f} ({r['dense_ms']:.3f}) | "
                f"{r['speedup']:.2f}x ({r['speedup_p10']:.2f}x) | {r['max_abs_diff']:.2g} | "
                f"{r['top1_agreement']:.3f} "
                f"| {r['file_accuracy']:.3f} ({r['keras_accuracy']:.3f}) | {raw} |")
        lines.append("")
    kq = results.get("keras_quantize")
    if kq:
        lines += ["### Keras `model.quantize(\"int8\")` of the 90% unstructured MLP", "",
                  f"- pruned zeros per kernel {kq['pruned_zeros']}; still zero in int8 "
                  f"{kq['pruned_zeros_kept']}; all int8 zeros {kq['int8_zeros']}",
                  f"- `.keras` {kq['float_keras_bytes']:,} -> {kq['int8_keras_bytes']:,} "
                  f"bytes; gzip {kq['float_keras_gzip']:,} -> {kq['int8_keras_gzip']:,}",
                  f"- max |int8 - float| {kq['max_abs_diff']:.3g}, top-1 agreement "
                  f"{kq['top1_agreement']:.3f}", ""]
    return "\n".join(lines)


def check_targets(results):
    rows = results["rows"]
    out = {}
    f = [r for r in rows if r["quantize"] != "int8" and r["structure"] != "units"]
    f = [r for r in f if set(r["encodings"]) != {"dense"}]
    out["float sparse files <= 1.1x the sparse minimum"] = {
        "worst": max(r["ratio_to_sparse_min"] for r in f) if f else None,
        "met": all(r["ratio_to_sparse_min"] <= 1.1 for r in f)}
    out["never larger than the dense file of the same weights"] = {
        "met": all(r["size"] <= r["dense_size"] for r in rows)}
    b = [r for r in rows if r["model"] == "mlp" and r["structure"] == "block4"
         and r["sparsity"] == 0.9 and r["quantize"] == "float32"]
    out["1x4-block MLP at 90% >= 4x faster than dense (float32)"] = {
        "speedup": b[0]["speedup"] if b else None,
        "speedup_p10": b[0]["speedup_p10"] if b else None,
        "met": bool(b) and b[0]["speedup"] >= 4}
    u = [r for r in rows if r["structure"] == "units" and r["quantize"] == "float32"]
    out["shrunk outputs equal the masked ones (<= 1e-5)"] = {
        "worst": max(r["shrunk_vs_masked"] for r in u) if u else None,
        "met": all(r["shrunk_vs_masked"] <= 1e-5 for r in u)}
    i = [r for r in rows if r["quantize"] == "int8"]
    out["int8 sparse files never larger than int8 dense"] = {
        "met": all(r["size"] <= r["dense_size"] for r in i)}
    return out


# ------------------------------------------------------------------------- main


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny smoke run; writes nothing")
    p.add_argument("--models", default="mlp,cnn", help="comma list of mlp,cnn")
    p.add_argument("--sparsities", default=",".join(map(str, SPARSITIES)))
    p.add_argument("--structures", default=",".join(STRUCTURES))
    p.add_argument("--quantize", default="float32,float16,int8")
    p.add_argument("--runs", type=int, default=100, help="invocations per timing round")
    p.add_argument("--rounds", type=int, default=5, help="alternating timing rounds")
    p.add_argument("--train", type=int, default=10000, help="training images (1 epoch)")
    p.add_argument("--eval", type=int, default=500, help="MNIST test images compared")
    p.add_argument("--finetune", type=int, default=1,
                   help="epochs of fine-tuning with the masks held (0: one-shot only)")
    p.add_argument("--output-dir", default=str(ROOT / "results"))
    args = p.parse_args(argv)
    if args.quick:
        args.models, args.sparsities, args.runs, args.rounds = "mlp", "0.9", 20, 2
        args.train, args.eval, args.finetune = 1000, 64, 1
        args.quantize, args.structures = "float32,int8", "unstructured,block4,units"
    quants = [None if q == "float32" else q for q in args.quantize.split(",")]
    results = {"env": {
        "tensorflow": __import__("tensorflow").__version__, "keras": keras.__version__,
        "ai_edge_litert": __import__("importlib.metadata").metadata.version("ai-edge-litert"),
        "machine": platform.machine(), "processor": platform.processor(),
        "cpu_count": os.cpu_count(), "tfprune_source": _common.tfprune_source(),
        "args": vars(args)}, "models": [], "rows": []}
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="tfprune_tflite_"))
    start = time.perf_counter()
    for name in args.models.split(","):
        xt, yt, xe, ye = data(name, args.train, args.eval)
        model = trained(name, xt, yt)
        cal = xt[:200]
        results["models"].append(name)
        results.setdefault("dense_accuracy", {})[name] = float(np.mean(
            keras.ops.convert_to_numpy(model(xe)).argmax(-1) == ye))
        dense_files = {}
        for quantize in quants:
            dense_files[quantize] = convert_mod.convert(model, quantize, False, cal)
        for structure in args.structures.split(","):
            for s in map(float, args.sparsities.split(",")):
                pruned = prune(model, structure, s)
                if args.finetune:
                    pruned = finetune(pruned, xt, yt, args.finetune)
                for quantize in quants:
                    row = measure(name, pruned, structure, s, quantize, dense_files[quantize],
                                  cal, xe, ye, args, tmp)
                    results["rows"].append(row)
                    print(f"[{time.perf_counter() - start:6.0f}s] {name} {structure:12s} "
                          f"{s:.0%} {row['quantize']:7s} size {row['size']:>9,} "
                          f"(unpruned {row['unpruned_size']:,}, sparse min "
                          f"{row['ratio_to_sparse_min']:.2f}x) {row['encodings']} "
                          f"{row['ms']:.3f} ms vs {row['dense_ms']:.3f} ms = "
                          f"{row['speedup']:.2f}x, diff {row['max_abs_diff']:.2g}, acc "
                          f"{row['file_accuracy']:.3f}", flush=True)
        if name == "mlp":
            results["keras_quantize"] = keras_quantize(model, xe, tmp)
    results["targets"] = check_targets(results)
    results["seconds"] = time.perf_counter() - start
    print(markdown(results))
    print(json.dumps(results["targets"], indent=1))
    if not args.quick:
        out = pathlib.Path(args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "tflite.json").write_text(json.dumps(results, indent=1) + "\n")
        (out / "tflite.md").write_text(markdown(results) + "\n")
        print(f"wrote {out / 'tflite.json'} and {out / 'tflite.md'}")


if __name__ == "__main__":
    main()
