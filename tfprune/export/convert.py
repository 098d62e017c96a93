"""`to_tflite`: strip, optionally shrink, convert, choose encodings, verify, write.

1. Strip the pruning wrappers (`tfprune.strip_pruning`; graph models are cloned,
   a subclassed model is converted as it is: its wrappers call the masked
   layers), optionally `tfprune.shrink` it.
2. Convert with `tf.lite.TFLiteConverter.from_keras_model` (the route that keeps
   the weights; `tf.saved_model.save` + converter and `from_concrete_functions`
   drop them for Keras 3 models), once dense and, unless `sparse=False`, once
   with `Optimize.EXPERIMENTAL_SPARSITY`.
3. Per tensor the converter stored sparse: keep it sparse only where the
   combination is known to load and run correctly (`rules.tensor_hazards`)
   and, with `sparse="auto"`, where it is smaller than dense; store the others
   dense (`rewrite.store_dense`) and report why. If the result is not smaller
   than the dense file, write the dense file.
4. Verify (before writing anything): run the chosen file, and the dense file
   when a sparse one was chosen, in the interpreter next to Keras. A sparse file
   whose outputs differ from the dense file's is replaced by the dense file
   (reported); a float file further from Keras than the tolerance raises.
5. Write atomically (`tfprune.atomic`: a temporary file beside the target,
   fsync, rename, one writer per path).
"""

import contextlib
import io
import os
import pathlib
import warnings

import numpy as np

from tfprune import _compat
from tfprune.export import analyze, flatbuffer, rewrite, rules, verify as verify_lib
from tfprune.export.report import Decision, ExportReport, Verification

__all__ = ["to_tflite", "QUANTIZE_OPTIONS", "SPARSE_OPTIONS"]

QUANTIZE_OPTIONS = (None, "float16", "dynamic", "int8")
SPARSE_OPTIONS = ("auto", True, False)
# A kept sparse file may differ from the dense file of the same quantization by
# at most this (relative to max(1, max|dense output|)) before it is discarded.
SPARSE_VS_DENSE = {None: 1e-4, "float16": 1e-2, "dynamic": 5e-2, "int8": 5e-2}
_SAMPLES = 8


# --------------------------------------------------------------------- arguments


def require_tensorflow_backend(what="TFLite export"):
    import keras

    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise RuntimeError(
            f"{what} needs the TensorFlow backend (the TFLite converter traces "
            f"TensorFlow graphs); Keras is running on {backend!r}. Set "
            "KERAS_BACKEND=tensorflow before importing keras."
        )


def _check_options(model, path, sparse, quantize, representative_data, verify, shrink,
                   xnnpack, sample_inputs=None):
    import keras

    if not isinstance(model, keras.Model):
        raise TypeError(f"Argument `model` must be a Keras model. Received: model={model!r}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"Argument `path` must be a path. Received: path={path!r}")
    if not any(sparse is o or (isinstance(sparse, str) and sparse == o) for o in SPARSE_OPTIONS):
        raise ValueError(f'Argument `sparse` must be "auto", True or False. Received: '
                         f"sparse={sparse!r}")
    if quantize not in QUANTIZE_OPTIONS:
        raise ValueError('Argument `quantize` must be None, "float16", "dynamic" or "int8". '
                         f"Received: quantize={quantize!r}")
    for name, value in (("verify", verify), ("shrink", shrink), ("xnnpack", xnnpack)):
        if not isinstance(value, bool):
            raise TypeError(f"Argument `{name}` must be True or False. Received: "
                            f"{name}={value!r}")
    if quantize == "int8" and representative_data is None:
        raise ValueError(
            'quantize="int8" needs `representative_data` (a few hundred typical inputs, '
            "an array or a generator of input lists) to calibrate activation ranges. "
            "Received: representative_data=None"
        )
    if sparse is True and quantize == "dynamic" and xnnpack:
        raise ValueError(
            'sparse=True with quantize="dynamic" is refused: under XNNPACK (LiteRT\'s '
            "default CPU delegate) dynamic-range sparse weights fail to load (CSR) or give "
            'wrong outputs (1x16 blocks). Use quantize="int8" with 1x16 blocks, float32 '
            "with 1x4 blocks, sparse=\"auto\" (stores dense), or xnnpack=False for a "
            "runtime without XNNPACK."
        )
    for name, data in (("representative_data", representative_data),
                       ("sample_inputs", sample_inputs)):
        verify_lib.check_model_inputs(model, data, f"Argument `{name}`")  # before converting
    quantized = [l.name for l in _compat.flatten_layers(model)
                 if getattr(l, "quantization_mode", None)]
    if quantized:
        raise ValueError(
            f"The model was quantized by Keras (`model.quantize`; layers {quantized[:3]}): "
            "the TFLite converter cannot convert Keras's quantized layers. Export the float "
            'model with quantize="int8" (representative_data) or quantize="dynamic".'
        )
    path = pathlib.Path(path)
    if path.is_dir():
        raise ValueError(f"Argument `path` is a directory: {str(path)!r}")
    if not path.parent.exists():
        raise FileNotFoundError(f"The directory of `path` does not exist: {str(path.parent)!r}")
    from tfprune import atomic

    atomic.check_writable(str(path))  # before minutes of conversion
    return path


# --------------------------------------------------------------------- conversion


def _has_wrappers(model):
    from tfprune import graph

    return any(graph.is_wrapper(l) for l in _compat.flatten_layers(model))


def _is_graph_model(model):
    from tfprune import graph

    return graph.functional_of(model) is not None


def prepare(model, shrink=False):
    """`(plain model to convert, ShrinkReport or None)`."""
    import tfprune

    source = model
    if _has_wrappers(model) and _is_graph_model(model):
        source = tfprune.strip_pruning(model)
    if not shrink:
        return source, None
    if not _is_graph_model(model):
        raise ValueError("shrink=True needs a Sequential or functional model; "
                         f"{type(model).__name__} is subclassed. Export with shrink=False.")
    return tfprune.shrink(source, return_report=True)


def representative_dataset(data):
    """A TF-style representative dataset (callable -> iterable of input lists)."""
    if callable(data):
        return data
    if isinstance(data, dict):
        arrays = list(data.values())
    elif isinstance(data, (list, tuple)):
        arrays = list(data)
    else:
        arrays = [data]
    arrays = [np.asarray(a, np.float32) if np.issubdtype(np.asarray(a).dtype, np.floating)
              else np.asarray(a) for a in arrays]
    n = len(arrays[0])
    if any(len(a) != n for a in arrays) or n == 0:
        raise ValueError("Argument `representative_data`: every input array needs the same "
                         f"number (> 0) of samples. Received lengths {[len(a) for a in arrays]}")

    def gen():
        for i in range(n):
            yield [a[i:i + 1] for a in arrays]

    return gen


def convert(model, quantize=None, sparse=False, representative_data=None):
    """Bytes of `model` converted with `from_keras_model` (see module doc)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    opts = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY] if sparse else []
    if quantize is not None:
        opts.append(tf.lite.Optimize.DEFAULT)
    converter.optimizations = opts
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        converter.representative_dataset = representative_dataset(representative_data)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")  # "INFO:tensorflow:Assets written to: /tmp/..."
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            # Keras prints "Saved artifact at ..." while tracing: keep stdout for reports.
            warnings.filterwarnings("ignore", message=".*Statistics for quantized inputs.*")
            return converter.convert()
    finally:
        logger.setLevel(level)


# --------------------------------------------------------------------- encodings


def counterparts(sparse_fm, dense_fm):
    """`{(subgraph, index) of a sparse constant: the same weight in the dense file}`.

    The two files come from one graph, so with DENSIFY ops left out their ops
    are the same list; a weight is matched through the op input slot reading it.
    Returns {} if the op lists differ.
    """
    def ops(fm):
        return [op for op in fm.ops if op.name != "DENSIFY"]

    a, b = ops(sparse_fm), ops(dense_fm)
    if [(o.subgraph, o.name, len(o.inputs)) for o in a] != \
            [(o.subgraph, o.name, len(o.inputs)) for o in b]:
        return {}
    out = {}
    for sop, dop in zip(a, b):
        for si, di in zip(sop.inputs, dop.inputs):
            if si < 0 or di < 0:
                continue
            t = sparse_fm.tensor(sop.subgraph, si)
            prod = sparse_fm.producer(t)
            if prod is not None and prod.name == "DENSIFY":
                t = sparse_fm.tensor(prod.subgraph, prod.inputs[0])
            d = dense_fm.tensor(dop.subgraph, di)
            if t.is_sparse and d.is_constant and d.shape == t.shape and d.dtype == t.dtype:
                out[(t.subgraph, t.index)] = d
    return out


def _lossy_reason(t, decoded, original):
    lost = int(np.count_nonzero(original) - np.count_nonzero(decoded))
    block = t.block
    if block is not None:
        for dim, (n, b) in enumerate(zip(t.shape, block)):
            if n % b:
                return (f"the converter's {t.encoding} encoding drops the partial last block "
                        f"(axis {dim} has {n} entries, not a multiple of {b}): {lost} weights "
                        "lost, wrong outputs")
    return f"the converter's {t.encoding} encoding differs from the weights ({lost} lost)"


STORED_CSR = "stored as CSR"
KEPT = ("kept sparse", STORED_CSR)


def _csr_instead(hazards, t, xnnpack):
    """float16 blocks break DEQUANTIZE; CSR + DENSIFY works under XNNPACK."""
    return xnnpack and len(t.shape) == 2 and all(h.code == "float16-block" for h in hazards)


def _csr_bytes(dense):
    values, segments, indices = rewrite.csr_encode(dense)

    def width(top):
        return 1 if top <= 0xFF else 2 if top <= 0xFFFF else 4

    return (values.size * dense.itemsize + segments.size * width(segments.max(initial=0))
            + indices.size * width(indices.max(initial=0)))


def plan(data, sparse, xnnpack, dense=None):
    """`([Decision], {key: dense values})` for the sparse constants of `data`.

    A tensor whose decoded values differ from the same weight in the `dense`
    file (the converter lost weights) is stored dense with the dense file's
    values; so are tensors in known-bad combinations (`rules.tensor_hazards`)
    and, with `sparse="auto"`, tensors not smaller sparse.
    """
    fm = flatbuffer.read(data)
    twins = counterparts(fm, flatbuffer.read(dense)) if dense is not None else {}
    dense_fm = flatbuffer.read(dense) if dense is not None else None
    out, values = [], {}
    for t in fm.constants():
        if not t.is_sparse:
            continue
        key = (t.subgraph, t.index)
        name = t.name.split(";")[0]
        decoded = fm.dense_values(t)
        twin = twins.get(key)
        original = dense_fm.dense_values(twin) if twin is not None else None
        hazards = [h for h in rules.tensor_hazards(fm, t) if h.hits(xnnpack)]
        if original is not None and not np.array_equal(decoded, original):
            out.append(Decision(name, t.encoding, "stored dense",
                                _lossy_reason(t, decoded, original)))
            values[key] = original
        elif hazards and _csr_instead(hazards, t, xnnpack):
            csr = _csr_bytes(decoded)
            if sparse == "auto" and csr >= t.dense_bytes:
                out.append(Decision(name, t.encoding, "stored dense",
                                    f"{hazards[0].message}; CSR ({csr:,} bytes) not smaller"))
            else:
                out.append(Decision(name, t.encoding, STORED_CSR,
                                    f"{hazards[0].message}: stored CSR behind DENSIFY instead"))
        elif hazards:
            out.append(Decision(name, t.encoding, "stored dense", hazards[0].message))
        elif sparse == "auto" and t.stored_bytes >= t.dense_bytes:
            out.append(Decision(name, t.encoding, "stored dense",
                                f"{t.encoding} takes {t.stored_bytes:,} bytes, dense "
                                f"{t.dense_bytes:,}"))
        else:
            out.append(Decision(name, t.encoding, "kept sparse", ""))
        out[-1].key = list(key)
    return out, values


def choose(dense, sparse_data, decisions, values=None):
    """`(bytes, warnings)`: the sparse file with the planned tensors dense, or the
    dense file when nothing stays sparse or the result is not smaller."""
    notes = []
    kept = [d for d in decisions if d.action in KEPT]
    if sparse_data is None or not kept:
        return dense, notes
    to_dense = [tuple(d.key) for d in decisions if d.action != "kept sparse"]
    csr = [tuple(d.key) for d in decisions if d.action == STORED_CSR]
    data = rewrite.store_dense(sparse_data, to_dense, values, csr) if to_dense \
        else sparse_data
    if len(data) >= len(dense):
        notes.append(f"the sparse file ({len(data):,} bytes) is not smaller than the dense "
                     f"file ({len(dense):,} bytes): wrote the dense file")
        for d in kept:
            d.action, d.reason = "stored dense", "the sparse file was not smaller"
        return dense, notes
    return data, notes


# --------------------------------------------------------------------- verification


def _keras_outputs(model, arrays):
    import keras

    x = arrays[0] if len(arrays) == 1 else arrays
    return [keras.ops.convert_to_numpy(o) for o in keras.tree.flatten(model(x, training=False))]


def _sample_inputs(runner, model, sample_inputs, representative_data):
    if sample_inputs is not None:
        if isinstance(sample_inputs, dict):
            return verify_lib.order_inputs(runner, model, sample_inputs)
        arrays = list(sample_inputs) if isinstance(sample_inputs, (list, tuple)) \
            else [sample_inputs]
        return verify_lib.order_inputs(runner, model, arrays)
    if representative_data is not None and not callable(representative_data):
        arrays = list(representative_data.values()) if isinstance(representative_data, dict) \
            else list(representative_data) if isinstance(representative_data, (list, tuple)) \
            else [representative_data]
        return verify_lib.order_inputs(runner, model, [np.asarray(a)[:32] for a in arrays])
    return verify_lib.generated_inputs(runner, _SAMPLES)


def _in_model_order(runner, model, arrays):
    """Arrays in the runner's order back to the model's input order (for Keras)."""
    names = [n for n, _, _ in runner.inputs]
    keras_names = verify_lib.keras_input_names(model)
    if sorted(keras_names) == sorted(names) and len(set(names)) == len(names):
        by_name = dict(zip(names, arrays))
        return [by_name[n] for n in keras_names]
    return list(arrays)


def check_outputs(model, data, dense, quantize, xnnpack, sample_inputs, representative_data):
    """`(file bytes to write, Verification, warnings)`; raises on a bad float export."""
    notes = []
    dense_runner = verify_lib.FileRunner(dense, xnnpack=xnnpack)
    arrays = _sample_inputs(dense_runner, model, sample_inputs, representative_data)
    reference = _keras_outputs(model, _in_model_order(dense_runner, model, arrays))
    dense_out = dense_runner(arrays)
    outputs, dense_diff, runner = dense_out, None, dense_runner
    if data is not dense:
        try:
            runner = verify_lib.FileRunner(data, xnnpack=xnnpack)
            outputs, error = runner(arrays), None
            dense_diff, _ = verify_lib.compare(outputs, dense_out)
        except (RuntimeError, ValueError) as e:  # fails to load or to run
            error = str(e).splitlines()[0] if str(e) else type(e).__name__
        limit = SPARSE_VS_DENSE[quantize] * max(
            1.0, max(float(np.max(np.abs(o), initial=0.0)) for o in dense_out))
        if error is not None or not dense_diff <= limit:
            why = error or f"its outputs differ from the dense file's by {dense_diff:.3g}"
            notes.append(f"the sparse file failed verification ({why}): wrote the dense file")
            data, outputs, dense_diff, runner = dense, dense_out, None, dense_runner
    diff, top1 = verify_lib.compare(outputs, reference)
    tol = verify_lib.TOLERANCE.get(quantize)
    scale = max(1.0, max(float(np.max(np.abs(r), initial=0.0)) for r in reference))
    limit = None if tol is None else tol * scale
    result = Verification(runner.interpreter_name, runner.runtime, int(len(arrays[0])),
                          diff, limit, top1, dense_diff)
    if limit is not None and not diff <= limit:
        raise RuntimeError(
            f"The exported file's outputs differ from Keras by {diff:.3g} (limit {limit:.3g} "
            f"for quantize={quantize!r}); nothing was written. {result.line()}"
        )
    return data, result, notes


def speed_notes(file, xnnpack):
    """Warnings about sparse kernels that are measured not to pay (`rules`)."""
    notes = []
    slow = [r.name for r in file.tensors if r.kernel == "sparse kernel"
            and r.encoding.startswith("block") and r.dtype == "FLOAT32"
            and r.sparsity < rules.BLOCK_PAYS_FROM]
    if slow:
        notes.append(f"{len(slow)} block-sparse weight(s) under {rules.BLOCK_PAYS_FROM:.0%} "
                     "zeros: the 1x4 sparse kernel can be slower than dense there (0.7x at "
                     "50% on the seed MLP); it pays from about 80%")
    int8 = [r.name for r in file.tensors if r.kernel == "sparse kernel" and r.dtype == "INT8"]
    if int8 and xnnpack:
        notes.append(f"{len(int8)} int8 block-sparse weight(s): the int8 1x16 sparse kernel runs "
                     "outside XNNPACK and measured slower than XNNPACK's dense int8 on x86: "
                     "the file is smaller, not faster; shrink=True is faster")
    return notes


# --------------------------------------------------------------------- writing


def write_atomic(path, data):
    """Write `data` to `path` through `tfprune.atomic` (temp file beside it, fsync,
    rename, one writer per path): killed at any moment, `path` holds its old
    content or the whole new file."""
    from tfprune import atomic

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(data)

    atomic.write_file(path, write)
    return pathlib.Path(path)


# --------------------------------------------------------------------- public


def to_tflite(model, path, *, sparse="auto", shrink=False, quantize=None,
              representative_data=None, verify=True, sample_inputs=None, xnnpack=True):
    """Export a (pruned) Keras model to a `.tflite` file; returns an `ExportReport`.

    Args:
        model: a Keras model, with or without `PruneLowMagnitude` wrappers
            (stripped first; the model itself is never modified).
        path: the `.tflite` file to write (replaced atomically).
        sparse: "auto" (default): store a weight sparse only where that makes the
            file smaller and the combination loads and runs correctly; True:
            every weight the converter encodes sparse and that is safe, even where
            not smaller per tensor; False: never. In every case the written file
            is never larger than the dense file (it falls back and says so).
        shrink: first remove dead units with `tfprune.shrink` (the dependable
            speedup: a narrower dense model, outputs unchanged).
        quantize: None (float32), "float16" (weights), "dynamic" (int8 weights,
            float activations), or "int8" (full integer; float inputs/outputs).
        representative_data: inputs to calibrate "int8" (an array, a list/dict
            of arrays by input, or a TF-style generator callable); required for
            "int8". Its first 32 samples also serve as verification inputs.
        verify: run the file in the interpreter and compare with Keras (see
            `Verification`). Float files off by more than 1e-4 (float16: 1e-2)
            times max(1, max|output|) raise `RuntimeError` and nothing is written.
        sample_inputs: inputs for verification (array, list or dict by input
            name); default: the representative data, else 8 random samples.
        xnnpack: the file is for LiteRT's default CPU runtime, which applies the
            XNNPACK delegate (default). False: for the builtin kernels only
            (`OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES`, or runtimes
            without XNNPACK), where dynamic-range sparse weights and int8 CSR
            weights are safe.

    Returns:
        `ExportReport`: sizes (file, dense file, sparse minimum, gzip), the
        encoding of every weight as read back from the written file, the ops on
        sparse kernels and those whose weights are DENSIFY'd, what was stored
        dense and why, the verification figures, warnings.

    Which zeros pay: only FULLY_CONNECTED weights whose zeros come in blocks of 4
    consecutive inputs of an output unit (float; 16 for int8) run on sparse
    kernels, which in a Keras Dense kernel `(in, out)` are blocks of shape
    `(4, 1)` / `(16, 1)`. Other sparse weights are only smaller (densified when
    the model is loaded). `tfprune.export.check(model)` predicts this before
    converting.

    Example:

    ```python
    report = tfprune.export.to_tflite(pruned, "model.tflite")
    print(report)                      # sizes, per-tensor encodings, verification
    small = tfprune.export.to_tflite(pruned, "small.tflite", shrink=True)
    q = tfprune.export.to_tflite(pruned, "int8.tflite", quantize="int8",
                                 representative_data=x_train[:200])
    ```
    """
    require_tensorflow_backend()
    path = _check_options(model, path, sparse, quantize, representative_data, verify, shrink,
                          xnnpack, sample_inputs)
    source, shrink_report = prepare(model, shrink)
    dense = convert(source, quantize, False, representative_data)
    decisions, notes, sparse_data, values = [], [], None, {}
    if sparse is not False:
        sparse_data = convert(source, quantize, True, representative_data)
        decisions, values = plan(sparse_data, sparse, xnnpack, dense)
        if not decisions:
            notes.append("no weight has 30% or more zeros: the converter stores every tensor "
                         "dense")
    data, more = choose(dense, sparse_data, decisions, values)
    notes += more
    verification = None
    if verify:
        data, verification, more = check_outputs(source, data, dense, quantize, xnnpack,
                                                 sample_inputs, representative_data)
        notes += more
        if data is dense:
            for d in decisions:
                if d.action in KEPT:
                    d.action, d.reason = "stored dense", "the sparse file failed verification"
    write_atomic(path, data)
    file = analyze.analyze(data, path=path)
    notes += speed_notes(file, xnnpack)
    report = ExportReport(path=str(path), quantize=quantize, sparse=sparse,
                          dense_size=len(dense), file=file,
                          decisions=decisions, verification=verification, warnings=notes,
                          shrink=shrink_report)
    return report
