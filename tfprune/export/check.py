"""`check(model)`: predict, before converting, what each pruned weight becomes in
TFLite and whether it will pay, from the weights alone (`rules`).

Per prunable weight: its zeros, the encoding the converter will choose
(dense / CSR / block 1x4 / block 1x16) or that `to_tflite` will store instead
(a known-bad combination kept dense), and the speed effect:

- "sparse kernel": a Dense kernel whose zeros come in blocks of 4 consecutive
  inputs of one output unit (16 for int8): Keras kernel blocks `(4, 1)` / `(16, 1)`;
- "none (densified at load)": CSR, smaller file only. Unstructured zeros,
  Keras `(1, 4)` blocks (tfmot's `block_size=(1, 4)`), every convolution;
- "none": stored dense.

Warnings say what will not pay and the alternative: under 30% zeros, unstructured
weights, blocks in the wrong orientation or of the wrong width for the
quantization, convolution sparsity on x86 (XNNPACK's sparse CNN path needs a
3x3 stride-2 stem with 3 input channels and >= 2/3 zeros in 1x1 convolutions,
and is never used on x86 with AVX), dead units that `shrink` would remove.
"""

import numpy as np

from tfprune.export import rules
from tfprune.export.report import CheckReport, CheckRow

__all__ = ["check"]

_SPARSE = "sparse kernel"
_DENSIFIED = "none (densified at load)"
_NONE = "none"


def _fc_row(layer, kernel, quantize, xnnpack):
    """Prediction for a Dense kernel `(in, out)`; TFLite stores it `(out, in)`."""
    kind = rules.weight_kind(quantize)
    w = np.asarray(kernel).T
    sparsity = float(np.mean(w == 0)) if w.size else 0.0
    enc = rules.predict_fc_encoding(w, kind)
    advice = []
    speed = _NONE if enc == "dense" else _SPARSE if enc.startswith("block") else _DENSIFIED
    if enc.startswith("block") and rules.partial_block_alive(w, rules.TFLITE_FC_BLOCK[kind]):
        b = rules.TFLITE_FC_BLOCK[kind][1]
        enc, speed = "dense (partial block lost)", _NONE
        advice.append(f"{w.shape[1]} inputs is not a multiple of {b}: the converter would drop "
                      f"the last partial block of each row (to_tflite stores it dense); use a "
                      f"multiple of {b} inputs or prune the last {w.shape[1] % b} input rows")
    elif enc.startswith("block") and kind == "float16":
        enc, speed = "dense (float16 blocks break)", _NONE
        advice.append("float16 block-sparse weights give NaN in TFLite: export float32 for "
                      "the 1x4 sparse kernel (to_tflite stores float16 blocks dense)")
    elif enc != "dense" and quantize == "dynamic" and xnnpack:
        enc, speed = "dense (dynamic + sparse unsafe)", _NONE
        advice.append('dynamic-range sparse weights fail or give wrong outputs under XNNPACK: '
                      'use quantize="int8" with (16, 1) blocks, or float32')
    elif enc == "CSR" and kind == "int8" and xnnpack:
        enc, speed = "dense (int8 + DENSIFY fails)", _NONE
        advice.append("int8 CSR weights behind DENSIFY do not load under XNNPACK: to_tflite "
                      "stores them dense; prune in (16, 1) blocks for the int8 sparse kernel")
    elif enc.startswith("block") and quantize == "dynamic":
        blocks_per_row = -(-w.shape[1] // rules.TFLITE_FC_BLOCK[kind][1])
        if blocks_per_row > 256 or _max_row_blocks(w, kind) > rules.HYBRID_LEDGER_MAX:
            enc, speed = "dense (hybrid ledger)", _NONE
            advice.append("the hybrid sparse kernel cannot index more than 256 blocks per row "
                          f"({blocks_per_row} here) or count more than 255")
    if enc == "CSR" or enc.startswith("dense (int8"):
        advice += _orientation_advice(w, kind, sparsity)
    if speed == _SPARSE and kind == "int8" and xnnpack:
        speed = "smaller only (int8 sparse kernel runs outside XNNPACK)"
        advice.append("the int8 1x16 sparse kernel runs outside XNNPACK and measured slower "
                      "than XNNPACK's dense int8 on x86: smaller file, no speed")
    elif speed == _SPARSE and sparsity < rules.BLOCK_PAYS_FROM:
        advice.append(f"{sparsity:.0%} zeros: the 1x4 sparse kernel pays from about 80% "
                      "(0.7x dense speed at 50% on the seed MLP)")
    if 0 < sparsity < rules.MIN_SPARSITY:
        advice.append(f"{sparsity:.0%} zeros: under 30%, the converter stores it dense")
    return CheckRow(layer.name, "kernel", tuple(np.shape(kernel)), sparsity, enc, speed,
                    "; ".join(advice))


def _max_row_blocks(w, kind):
    b = rules.TFLITE_FC_BLOCK[kind][1]
    pad = -(-w.shape[1] // b) * b
    nz = np.zeros((w.shape[0], pad), bool)
    nz[:, :w.shape[1]] = w != 0
    return int(nz.reshape(w.shape[0], -1, b).any(-1).sum(-1).max(initial=0))


def _orientation_advice(w, kind, sparsity):
    if sparsity < rules.MIN_SPARSITY:
        return []
    out = []
    for k, block in rules.TFLITE_FC_BLOCK.items():
        ratio = rules.block_sparsity(w, block) / sparsity
        if ratio > rules.BLOCK_RATIO[k] and block != rules.TFLITE_FC_BLOCK[kind]:
            keras = rules.KERAS_DENSE_BLOCK[kind]
            out.append(f"zeros come in blocks of {block[1]} inputs but {kind} sparse kernels "
                       f"need {rules.TFLITE_FC_BLOCK[kind][1]}: prune Keras kernel blocks "
                       f"{keras}")
            return out
    transposed = rules.block_sparsity(w, (4, 1)) / sparsity
    if transposed > rules.BLOCK_RATIO["float32"]:
        out.append("zeros come in blocks of 4 output units (Keras kernel blocks (1, 4), "
                   "tfmot's block_size=(1, 4)); TFLite's sparse kernel needs blocks of "
                   f"consecutive inputs: Keras kernel blocks {rules.KERAS_DENSE_BLOCK[kind]}")
    else:
        out.append("unstructured zeros: smaller file, no speed; for speed prune Dense kernels "
                   f"in {rules.KERAS_DENSE_BLOCK[kind]} blocks, or prune units and shrink")
    return out


def _conv_row(layer, path, kernel, quantize, xnnpack):
    kind = rules.weight_kind(quantize)
    w = np.asarray(kernel)
    sparsity = float(np.mean(w == 0)) if w.size else 0.0
    if sparsity < rules.MIN_SPARSITY:
        enc, speed = "dense", _NONE
    elif kind == "int8" and xnnpack:
        enc, speed = "dense (int8 + DENSIFY fails)", _NONE
    elif quantize == "dynamic":
        enc, speed = "dense (dynamic + sparse unsafe)" if xnnpack else "CSR", \
            _NONE if xnnpack else _DENSIFIED
    else:
        enc, speed = "CSR", _DENSIFIED
    advice = "convolution weights have no sparse kernel (CSR + DENSIFY; XNNPACK's sparse " \
        "CNN path is off on x86 with AVX): prune filters and shrink for speed" \
        if sparsity >= rules.MIN_SPARSITY else ""
    return CheckRow(layer.name, path, tuple(w.shape), sparsity, enc, speed, advice)


def _dead_units(layer, kernel):
    w = np.asarray(kernel)
    if w.ndim < 2:
        return 0, 0
    alive = (w.reshape(-1, w.shape[-1]) != 0).any(0)
    return int((~alive).sum()), int(alive.size)


def _rows(model, quantize, xnnpack):
    import keras

    from tfprune import graph, registry

    L = keras.layers
    convs = (L.Conv1D, L.Conv2D, L.Conv3D, L.DepthwiseConv1D, L.DepthwiseConv2D,
             L.SeparableConv1D, L.SeparableConv2D, L.Conv1DTranspose, L.Conv2DTranspose,
             L.Conv3DTranspose)
    rows, dead = [], []
    for layer in graph.leaf_layers(model):
        spec = registry.get_spec(layer)
        if spec is None or not layer.built:
            continue
        for path, var in spec.weight_targets(layer):
            value = keras.ops.convert_to_numpy(var)
            if isinstance(layer, L.Dense) and path == "kernel":
                rows.append(_fc_row(layer, value, quantize, xnnpack))
                n, total = _dead_units(layer, value)
            elif isinstance(layer, convs):
                rows.append(_conv_row(layer, path, value, quantize, xnnpack))
                n, total = _dead_units(layer, value)
            else:
                s = float(np.mean(value == 0)) if value.size else 0.0
                what = "dense (gather reads it dense)" if isinstance(layer, L.Embedding) \
                    else "unknown: export and inspect"
                rows.append(CheckRow(layer.name, path, tuple(value.shape), s, what, _NONE, ""))
                n, total = 0, 0
            if n:
                dead.append((layer.name, n, total))
    return rows, dead


def check(model, target="tflite", quantize=None, xnnpack=True):
    """Deployment lint: predict each pruned weight's TFLite encoding and speed effect.

    Args:
        model: a Keras model, pruned (wrapped) or stripped.
        target: "tflite" (the only target so far).
        quantize: the `to_tflite` quantization you plan (None, "float16",
            "dynamic", "int8"): block widths and safe combinations depend on it.
        xnnpack: the file will run under LiteRT's default XNNPACK delegate.

    Returns:
        `CheckReport` with one `CheckRow` per prunable weight (predicted encoding,
        speed effect, advice) and warnings about what will not pay.
        `print(report)`; `report.to_dict()`.

    Example:

    >>> import keras, numpy as np, tfprune
    >>> model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32)])
    >>> k = model.layers[0].kernel.numpy()
    >>> k[np.arange(64) % 8 < 4] = 0.0     # zero groups of 4 consecutive inputs
    >>> _ = model.layers[0].kernel.assign(k)
    >>> [(r.encoding, r.speed) for r in tfprune.export.check(model).rows]
    [('block 1x4', 'sparse kernel')]
    """
    from tfprune.export.convert import QUANTIZE_OPTIONS, _has_wrappers, _is_graph_model
    import keras

    if not isinstance(model, keras.Model):
        raise TypeError(f"Argument `model` must be a Keras model. Received: model={model!r}")
    if target != "tflite":
        raise ValueError(f'Argument `target` must be "tflite". Received: target={target!r}')
    if quantize not in QUANTIZE_OPTIONS:
        raise ValueError('Argument `quantize` must be None, "float16", "dynamic" or "int8". '
                         f"Received: quantize={quantize!r}")
    if _has_wrappers(model) and _is_graph_model(model):
        import tfprune

        model = tfprune.strip_pruning(model)
    rows, dead = _rows(model, quantize, xnnpack)
    warnings = []
    densified = [r for r in rows if r.speed == _DENSIFIED]
    if densified:
        warnings.append(f"{len(densified)} weight(s) will be CSR + DENSIFY (smaller file, no "
                        f"speed): {', '.join(r.layer for r in densified)}")
    low = [r for r in rows if 0 < r.sparsity < rules.MIN_SPARSITY]
    if low:
        warnings.append(f"{len(low)} weight(s) under 30% zeros are stored dense: "
                        f"{', '.join(r.layer for r in low)}")
    for r in rows:
        if r.advice:
            warnings.append(f"{r.layer}: {r.advice}")
    for name, n, total in dead:
        warnings.append(f"{name}: {n} of {total} units have all-zero weights: "
                        "to_tflite(..., shrink=True) removes them (faster on every runtime)")
    return CheckReport(target, quantize, rows, warnings)
