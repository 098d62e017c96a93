"""`inspect(path)`: what each tensor of a `.tflite` file became, and what runs sparse.

For every constant weight (rank >= 2): its encoding read from the flatbuffer
(dense / CSR / block 1x4 / block 1x16), stored and dense bytes, exact zeros
(decoded from the file), and its kernel:

- "sparse kernel": an op reads the sparse tensor directly (FULLY_CONNECTED with
  1x4 float or 1x16 int8 blocks): compute skips the zero blocks;
- "densified": the tensor goes through a DENSIFY op, expanded to dense when the
  model is prepared: a smaller file, no speed;
- "dense".

Known-bad patterns (`rules.tensor_hazards`) become warnings. Works on any file:
tfprune's, tfmot's, a user's.

The sparse minimum is `sum over constants of min(dense bytes, nnz * (value bytes
+ index bytes))`, index bytes = 1 / 2 / 4 for a last axis of <= 256 / <= 65536 /
more entries: what a CSR encoding with the narrowest indices would need.
"""

import gzip
import os
import pathlib

import numpy as np

from tfprune.export import flatbuffer, rules
from tfprune.export.report import InspectReport, OpRow, TensorRow

__all__ = ["inspect", "analyze", "sparse_minimum"]

GZIP_LEVEL = 6


def _index_bytes(n):
    return 1 if n <= 256 else 2 if n <= 65536 else 4


def _short(name):
    return name.split(";")[0]


def _kernel(fm, tensor):
    if not tensor.is_sparse:
        return "dense", [op.name for op in fm.consumers(tensor)]
    consumers = fm.consumers(tensor)
    reads = []
    kernel = "sparse kernel"
    for op in consumers:
        if op.name == "DENSIFY":
            kernel = "densified"
            out = fm.tensor(op.subgraph, op.outputs[0])
            reads += [f"DENSIFY>{c.name}" for c in fm.consumers(out)]
        elif op.name == "DEQUANTIZE":
            kernel = "broken (sparse read as dense)"
            reads.append(op.name)
        else:
            reads.append(op.name)
    return kernel, reads


def sparse_minimum(fm, values=None):
    """Bytes of the constants of `fm` stored at best as CSR (see module doc)."""
    total = 0
    for t in fm.constants():
        dense = values[id(t)] if values and id(t) in values else _safe_dense(fm, t)
        if dense is None:
            total += t.value_bytes
            continue
        nnz = int(np.count_nonzero(dense))
        last = t.shape[-1] if t.shape else 1
        total += min(t.dense_bytes, nnz * (t.itemsize + _index_bytes(last)))
    return total


def _safe_dense(fm, t):
    try:
        return fm.dense_values(t)
    except flatbuffer.CorruptFile:
        raise
    except ValueError:
        return None


def analyze(source, path=None):
    """`InspectReport` of a file given as path or bytes (`path` names it)."""
    fm = flatbuffer.read(source)
    data = fm.data
    rows, warnings, values = [], [], {}
    for t in fm.constants():
        dense = _safe_dense(fm, t)
        values[id(t)] = dense
        if len(t.shape) < 2 or dense is None:
            continue
        kernel, reads = _kernel(fm, t)
        zeros = int(dense.size - np.count_nonzero(dense))
        hazards = rules.tensor_hazards(fm, t)
        rows.append(TensorRow(
            name=_short(t.name), shape=tuple(t.shape), dtype=t.dtype, encoding=t.encoding,
            stored_bytes=t.stored_bytes, dense_bytes=t.dense_bytes, zeros=zeros,
            size=int(dense.size), kernel=kernel, consumers=tuple(reads),
            hazards=tuple(h.code for h in hazards), subgraph=t.subgraph, index=t.index))
        for h in hazards:
            where = "all runtimes" if len(h.runtimes) > 1 else f"{h.runtimes[0]} runtime"
            warnings.append(f"{_short(t.name)}: {h.message} ({where})")
    ops = _op_rows(fm)
    return InspectReport(
        path=str(path) if path is not None else None, size=len(data),
        gzip_size=len(gzip.compress(data, GZIP_LEVEL)),
        sparse_min=sparse_minimum(fm, values), tensors=rows, ops=ops, warnings=warnings)


def _op_rows(fm):
    rows = []
    for op in fm.ops:
        if op.name == "DENSIFY":
            continue
        weights = [fm.tensor(op.subgraph, i) for i in op.inputs if i >= 0]
        sparse = [t for t in weights if t.is_sparse]
        dens = []
        for t in weights:
            prod = fm.producer(t)
            if prod is not None and prod.name == "DENSIFY":
                dens.append(fm.tensor(prod.subgraph, prod.inputs[0]))
        if sparse or dens:
            kernel = "sparse kernel" if sparse and op.name != "DEQUANTIZE" else (
                "broken" if sparse else "densified")
            rows.append(OpRow(op.index, op.name, kernel,
                              _short((sparse or dens)[0].name), op.subgraph))
    return rows


def inspect(path):
    """The per-tensor encoding report of an existing `.tflite` file.

    Args:
        path: a `.tflite` file (any producer: tfprune, tfmot, the converter).

    Returns:
        `InspectReport`: file and gzip size, the sparse minimum, one row per
        weight (encoding from the flatbuffer, bytes, exact zeros, kernel), the
        ops that run on sparse kernels and those whose weights are DENSIFY'd,
        and warnings for known-bad patterns. `print(report)`; `report.to_dict()`.

    Example:

    ```python
    report = tfprune.export.inspect("model.tflite")
    print(report)
    [r.name for r in report.tensors if r.kernel == "sparse kernel"]
    ```
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"Argument `path` must be a path to a .tflite file. "
                        f"Received: path={path!r}")
    p = pathlib.Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"No such TFLite file: {str(path)!r}")
    try:
        return analyze(p.read_bytes(), path=p)
    except flatbuffer.CorruptFile as e:
        raise ValueError(f"{str(path)!r} is not a valid TFLite file: {e}") from None
