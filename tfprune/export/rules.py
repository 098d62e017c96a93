"""What TFLite does with a sparse weight, and which combinations break.

Measured with TF 2.21 / ai-edge-litert 2.3 on x86 (AVX2) and read from the
converter's `dense_to_sparse.cc` and the FULLY_CONNECTED kernels:

- The converter (`Optimize.EXPERIMENTAL_SPARSITY`) stores a 2-D or 4-D constant
  sparse only if at least `MIN_SPARSITY` (30%) of it is zero. It stores it as a
  block if the block-sparse ratio `zeros in all-zero blocks / zeros` exceeds 0.9
  (0.8 for int8 weights), with the only block shapes an op supports:
  FULLY_CONNECTED `(1, 4)` for float32/float16 weights and `(1, 16)` for int8
  weights, in TFLite's `(out, in)` layout. Anything else is CSR followed by a
  DENSIFY op, i.e. expanded to dense when the model is prepared: smaller file,
  no speed. Convolutions have no block shape: always CSR + DENSIFY.
- TFLite's `(out, in)` block `(1, 4)` is `(4, 1)` of a Keras Dense kernel
  `(in, out)`: 4 consecutive *inputs* of one output unit. Zeros in Keras
  `(1, 4)` blocks (tfmot's `block_size=(1, 4)`: 1 input row x 4 output columns)
  become CSR + DENSIFY and run no faster.
- Known-bad (each reproduced by a test in tests/test_export_rules.py):
  * float16 weights stored as blocks: the DEQUANTIZE op reads the sparse values
    as if dense: outputs NaN/garbage on every runtime.
  * int8 weights behind DENSIFY (full-integer or dynamic-range): XNNPACK, the
    default CPU delegate of LiteRT's Interpreter, fails to load the model
    ("failed to delegate FULLY_CONNECTED").
  * dynamic-range (hybrid) models with any sparse weight under XNNPACK: a hybrid
    FULLY_CONNECTED with 1x16-block weights gives wrong outputs or NaN, and so
    does a float 1x4-block FULLY_CONNECTED next to dense hybrid ops (small
    weights stay float32 in dynamic-range files), silently.
  * the hybrid sparse kernel keeps per-row block counts and block column indices
    in uint8 and ignores its own error: more than 255 nonzero blocks in a row,
    or more than 256 blocks per row (more than 4096 inputs), give wrong outputs
    silently even without XNNPACK.
  * a block-sparse weight whose width is not a multiple of the block (e.g. 66
    inputs in 1x4 blocks): the converter drops the partial last block of every
    row: its weights are lost and the file gives wrong outputs, silently.
  * float16 + DENSIFY with the builtin kernels (no XNNPACK): correct, but the
    weight is densified on every inference (25x slower than dense).
"""

import numpy as np

__all__ = [
    "MIN_SPARSITY",
    "BLOCK_RATIO",
    "TFLITE_FC_BLOCK",
    "KERAS_DENSE_BLOCK",
    "weight_kind",
    "block_sparsity",
    "predict_fc_encoding",
    "partial_block_alive",
    "Hazard",
    "tensor_hazards",
]

MIN_SPARSITY = 0.3
BLOCK_RATIO = {"float32": 0.9, "float16": 0.9, "int8": 0.8}
# FULLY_CONNECTED block shapes per weight kind, TFLite (out, in) layout ...
TFLITE_FC_BLOCK = {"float32": (1, 4), "float16": (1, 4), "int8": (1, 16)}
# ... and the same blocks in a Keras Dense kernel (in, out).
KERAS_DENSE_BLOCK = {k: (b[1], b[0]) for k, b in TFLITE_FC_BLOCK.items()}
HYBRID_LEDGER_MAX = 255
# Speed, measured (benchmarks/tflite.py, seed MLP, x86 AVX2, 1 thread, XNNPACK runtime):
# the float 1x4 sparse kernel runs 0.7x dense speed at 50% zeros, 2x at 80%, 4.3x at
# 90%, 8x at 95%; the int8 1x16 sparse kernel runs outside XNNPACK and was slower than
# XNNPACK's dense int8 at every sparsity.
BLOCK_PAYS_FROM = 0.7

XNNPACK = "xnnpack"
BUILTIN = "builtin"


def weight_kind(quantize):
    """How weights are stored for a `quantize` option: float32, float16 or int8."""
    return {None: "float32", "float16": "float16", "dynamic": "int8", "int8": "int8"}[quantize]


def block_sparsity(weight, block):
    """Fraction of `weight`'s elements lying in all-zero blocks of shape `block`.

    The converter's test for a block encoding (`CalculateBlockSparsity`): the
    blocks tile `weight` from index 0 (a partial last block is padded with zeros).

    >>> import numpy as np
    >>> w = np.zeros((2, 8)); w[0, :4] = 1.0      # one nonzero 1x4 block of four
    >>> block_sparsity(w, (1, 4))
    0.75
    """
    w = np.asarray(weight)
    if w.ndim != len(block):
        raise ValueError(f"Block {block} does not fit a weight of shape {w.shape}.")
    padded = [-(-n // b) * b for n, b in zip(w.shape, block)]
    nz = np.zeros(padded, bool)
    nz[tuple(slice(0, n) for n in w.shape)] = w != 0
    view = nz.reshape([x for n, b in zip(padded, block) for x in (n // b, b)])
    alive = view.any(axis=tuple(range(1, 2 * w.ndim, 2)))
    return float(1.0 - alive.sum() * int(np.prod(block)) / w.size)


def partial_block_alive(weight, block):
    """True if a partial last block (width not a multiple of `block`) holds a
    nonzero: the converter's block encoding would lose it.

    >>> import numpy as np
    >>> w = np.zeros((2, 6)); w[1, 5] = 1.0
    >>> partial_block_alive(w, (1, 4)), partial_block_alive(w[:, :4], (1, 4))
    (True, False)
    """
    w = np.asarray(weight)
    for axis, (n, b) in enumerate(zip(w.shape, block)):
        if n % b and np.take(w, np.arange(n - n % b, n), axis=axis).any():
            return True
    return False


def predict_fc_encoding(weight, kind):
    """The converter's encoding of a FULLY_CONNECTED weight `(out, in)`.

    Returns "dense" (under 30% zeros), "block 1x4" / "block 1x16" (sparse kernel),
    or "CSR" (DENSIFY at load). `kind` is a `weight_kind`. For int8 the zeros are
    counted on the float weights (symmetric quantization keeps zeros zero; a
    few tiny weights may round to zero too, which only helps).
    """
    w = np.asarray(weight)
    sparsity = float(np.mean(w == 0)) if w.size else 0.0
    if sparsity < MIN_SPARSITY:
        return "dense"
    block = TFLITE_FC_BLOCK[kind]
    if w.ndim == 2 and block_sparsity(w, block) / sparsity > BLOCK_RATIO[kind]:
        return "block " + "x".join(map(str, block))
    return "CSR"


class Hazard:
    """A known-bad pattern found in a file: `code`, `message`, `runtimes` hit."""

    def __init__(self, code, message, runtimes):
        self.code, self.message, self.runtimes = code, message, tuple(runtimes)

    def hits(self, xnnpack):
        return (XNNPACK if xnnpack else BUILTIN) in self.runtimes

    def __repr__(self):
        return f"Hazard({self.code!r})"


def _hybrid_ledger_ok(model, tensor):
    """Hybrid sparse kernel limits: <= 255 blocks per row and block index <= 255."""
    if tensor.block is None or len(tensor.levels) < 2:
        return True
    csr = tensor.levels[1]
    if csr.format != "CSR" or csr.segments is None:
        return True
    counts = np.diff(np.asarray(csr.segments, np.int64))
    indices = np.asarray(csr.indices, np.int64)
    return not (counts.size and counts.max() > HYBRID_LEDGER_MAX) and not (
        indices.size and indices.max() > HYBRID_LEDGER_MAX)


_WEIGHT_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV",
               "BATCH_MATMUL", "UNIDIRECTIONAL_SEQUENCE_LSTM", "CONV_3D", "EMBEDDING_LOOKUP")


def _is_hybrid(model, op):
    """A float-activation op with an int8 constant weight (dynamic-range quantization)."""
    if op.name not in _WEIGHT_OPS or not op.inputs:
        return False
    act = model.tensor(op.subgraph, op.inputs[0])
    if act.dtype not in ("FLOAT32", "FLOAT16"):
        return False
    for i in op.inputs[1:]:
        if i < 0:
            continue
        t = model.tensor(op.subgraph, i)
        if t.dtype == "INT8":
            return True
        prod = model.producer(t)
        if prod is not None and prod.name == "DENSIFY" and \
                model.tensor(prod.subgraph, prod.inputs[0]).dtype == "INT8":
            return True
    return False


def has_hybrid_ops(model):
    """True if a `FlatModel` has dynamic-range (hybrid) ops."""
    cached = getattr(model, "_tfprune_hybrid", None)
    if cached is None:
        cached = any(_is_hybrid(model, op) for op in model.ops)
        model._tfprune_hybrid = cached
    return cached


def tensor_hazards(model, tensor):
    """The known-bad patterns a sparse constant `tensor` of `model` takes part in.

    `model` is a `flatbuffer.FlatModel`. Returns a list of `Hazard`.
    """
    if not tensor.is_sparse:
        return []
    out = []
    consumers = model.consumers(tensor)
    names = {op.name for op in consumers}
    quantized = tensor.dtype in ("INT8", "UINT8", "INT16")
    if tensor.dtype == "FLOAT16" and tensor.block is not None and "DEQUANTIZE" in names:
        out.append(Hazard("float16-block",
                          "float16 block-sparse weight read by DEQUANTIZE: the runtime reads "
                          "the sparse values as dense (NaN / wrong outputs)",
                          (XNNPACK, BUILTIN)))
    if quantized and "DENSIFY" in names:
        out.append(Hazard("int8-densify",
                          "int8 weight behind a DENSIFY op: XNNPACK (LiteRT's default CPU "
                          "delegate) fails to load the model", (XNNPACK,)))
    if tensor.dtype == "FLOAT16" and "DENSIFY" in names:
        out.append(Hazard("float16-densify-builtin",
                          "float16 weight behind DENSIFY: without XNNPACK it is densified on "
                          "every inference (much slower than dense)", (BUILTIN,)))
    if has_hybrid_ops(model):
        out.append(Hazard("hybrid-sparse-xnnpack",
                          "sparse weight in a dynamic-range (hybrid) model: wrong outputs or "
                          "NaN under XNNPACK", (XNNPACK,)))
    for op in consumers:
        if op.name != "FULLY_CONNECTED" or not quantized or not _is_hybrid(model, op):
            continue
        if not _hybrid_ledger_ok(model, tensor):
            out.append(Hazard("hybrid-ledger",
                              "hybrid sparse kernel: more than 255 nonzero blocks in a row or "
                              "more than 256 blocks per row (uint8 ledger): wrong outputs",
                              (XNNPACK, BUILTIN)))
    return out
