"""Report objects of `tfprune.export`: plain dataclasses, `table()` and `to_dict()`.

`InspectReport` (what a file holds), `ExportReport` (what `to_tflite` wrote, why,
and how it verified), `CheckReport` (what `check` predicts before converting).
"""

import dataclasses
import json

__all__ = [
    "TensorRow",
    "OpRow",
    "InspectReport",
    "Decision",
    "Verification",
    "ExportReport",
    "CheckRow",
    "CheckReport",
]


def _table(header, lines, left):
    """Aligned text table: the first `left` columns left-aligned, the rest right.

    (The same layout as `tfprune.report`'s tables; kept here so reading a .tflite
    file needs neither Keras nor TensorFlow.)
    """
    widths = [max(len(h), *(len(l[i]) for l in lines)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" if i < left else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths))]
                     + [fmt.format(*l) for l in lines])


def _kb(n):
    return "-" if n is None else f"{n:,}"


def _ratio(a, b):
    return f"{a / b:.2f}x" if b else "-"


def _asdict(obj):
    out = dataclasses.asdict(obj)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


@dataclasses.dataclass
class TensorRow:
    """One weight of a file: encoding as stored, bytes, exact zeros, kernel."""

    name: str
    shape: tuple
    dtype: str
    encoding: str
    stored_bytes: int
    dense_bytes: int
    zeros: int
    size: int
    kernel: str
    consumers: tuple = ()
    hazards: tuple = ()
    subgraph: int = 0
    index: int = 0

    @property
    def sparsity(self):
        return self.zeros / self.size if self.size else 0.0

    def to_dict(self):
        return {**_asdict(self), "sparsity": self.sparsity}


@dataclasses.dataclass
class OpRow:
    """An op reading a sparse weight directly (`kernel="sparse kernel"`) or
    through DENSIFY (`"densified"`)."""

    index: int
    op: str
    kernel: str
    weight: str
    subgraph: int = 0


def _tensor_table(rows):
    lines = [(r.name[-48:], "x".join(map(str, r.shape)), r.dtype, r.encoding,
              _kb(r.stored_bytes), _kb(r.dense_bytes), f"{r.sparsity:.2%}", r.kernel)
             for r in rows]
    if not lines:
        return "(no weights)"
    return _table(("tensor", "shape", "dtype", "encoding", "bytes", "dense bytes",
                   "zeros", "kernel"), lines, 4)


def _op_summary(ops):
    sparse = [o for o in ops if o.kernel == "sparse kernel"]
    dens = [o for o in ops if o.kernel == "densified"]
    broken = [o for o in ops if o.kernel == "broken"]

    def names(rows):
        return ", ".join(f"{o.op}#{o.index}" for o in rows) if rows else "none"

    out = [f"ops on sparse kernels: {names(sparse)}", f"ops with DENSIFY'd weights: {names(dens)}"]
    if broken:
        out.append(f"ops reading sparse weights they cannot: {names(broken)}")
    return out


@dataclasses.dataclass
class InspectReport:
    """What a `.tflite` file holds (`tfprune.export.inspect`)."""

    path: str
    size: int
    gzip_size: int
    sparse_min: int
    tensors: list
    ops: list
    warnings: list = dataclasses.field(default_factory=list)

    @property
    def sparse_ops(self):
        return [o for o in self.ops if o.kernel == "sparse kernel"]

    @property
    def densified_ops(self):
        return [o for o in self.ops if o.kernel == "densified"]

    @property
    def encodings(self):
        """`{tensor name: encoding}` of the weights."""
        return {r.name: r.encoding for r in self.tensors}

    def to_dict(self):
        return {
            "path": self.path, "size": self.size, "gzip_size": self.gzip_size,
            "sparse_min": self.sparse_min,
            "tensors": [r.to_dict() for r in self.tensors],
            "ops": [_asdict(o) for o in self.ops], "warnings": list(self.warnings),
        }

    def to_json(self, **kwargs):
        return json.dumps(self.to_dict(), **kwargs)

    def table(self):
        head = [f"{self.path or '<bytes>'}: {_kb(self.size)} bytes (gzip {_kb(self.gzip_size)}; "
                f"sparse minimum {_kb(self.sparse_min)}, {_ratio(self.size, self.sparse_min)})"]
        lines = head + [_tensor_table(self.tensors)] + _op_summary(self.ops)
        lines += [f"WARNING: {w}" for w in self.warnings]
        return "\n".join(lines)

    __str__ = table


@dataclasses.dataclass
class Decision:
    """What `to_tflite` did with one tensor the converter stored sparse."""

    tensor: str
    encoding: str
    action: str  # "kept sparse" / "stored dense" / "stored as CSR"
    reason: str
    key: list = None  # [subgraph, tensor index] in the converter's sparse file


@dataclasses.dataclass
class Verification:
    """The exported file run in the interpreter next to Keras.

    max_abs_diff: max |file - keras| over all outputs and samples.
    tolerance: the limit that raises (None for integer quantization: reported only).
    top1_agreement: share of samples whose argmax agrees (classifier outputs), or None.
    dense_file_diff: max |sparse file - dense file| when a sparse file was kept.
    """

    interpreter: str
    runtime: str
    samples: int
    max_abs_diff: float
    tolerance: float = None
    top1_agreement: float = None
    dense_file_diff: float = None

    def line(self):
        out = (f"verified in {self.interpreter} ({self.runtime}) on {self.samples} samples: "
               f"max |tflite - keras| = {self.max_abs_diff:.3g}")
        if self.tolerance is not None:
            out += f" (limit {self.tolerance:.3g})"
        if self.top1_agreement is not None:
            out += f", top-1 agreement {self.top1_agreement:.1%}"
        if self.dense_file_diff is not None:
            out += f", max |sparse file - dense file| = {self.dense_file_diff:.3g}"
        return out


@dataclasses.dataclass
class ExportReport:
    """What `to_tflite` wrote (`file`: the `InspectReport` of the written file),
    the dense file's size for comparison, per-tensor decisions, verification and
    warnings."""

    path: str
    quantize: str
    sparse: object
    dense_size: int
    file: InspectReport
    decisions: list = dataclasses.field(default_factory=list)
    verification: Verification = None
    warnings: list = dataclasses.field(default_factory=list)
    shrink: object = None  # tfprune.ShrinkReport when shrink=True

    size = property(lambda self: self.file.size)
    gzip_size = property(lambda self: self.file.gzip_size)
    sparse_min = property(lambda self: self.file.sparse_min)
    tensors = property(lambda self: self.file.tensors)
    sparse_ops = property(lambda self: self.file.sparse_ops)
    densified_ops = property(lambda self: self.file.densified_ops)
    encodings = property(lambda self: self.file.encodings)

    @property
    def encoded_sparse(self):
        """True when the written file stores at least one tensor sparse."""
        return any(r.encoding != "dense" for r in self.tensors)

    def to_dict(self):
        return {
            "path": self.path, "quantize": self.quantize, "sparse": self.sparse,
            "size": self.size, "dense_size": self.dense_size, "sparse_min": self.sparse_min,
            "gzip_size": self.gzip_size, "encoded_sparse": self.encoded_sparse,
            "tensors": [r.to_dict() for r in self.tensors],
            "ops": [_asdict(o) for o in self.file.ops],
            "decisions": [_asdict(d) for d in self.decisions],
            "verification": None if self.verification is None else _asdict(self.verification),
            "warnings": list(self.warnings) + list(self.file.warnings),
            "shrink": None if self.shrink is None else str(self.shrink),
        }

    def to_json(self, **kwargs):
        return json.dumps(self.to_dict(), **kwargs)

    def table(self):
        q = self.quantize or "float32"
        lines = [
            f"{self.path}: {q}, sparse={self.sparse!r}",
            f"size {_kb(self.size)} bytes = {_ratio(self.size, self.dense_size)} of the dense "
            f"file ({_kb(self.dense_size)}), {_ratio(self.size, self.sparse_min)} of the sparse "
            f"minimum ({_kb(self.sparse_min)}); gzip {_kb(self.gzip_size)}",
            _tensor_table(self.tensors),
        ]
        lines += _op_summary(self.file.ops)
        for d in self.decisions:
            if d.action != "kept sparse":
                lines.append(f"{d.action}: {d.tensor[-48:]} ({d.encoding} in the converter's "
                             f"sparse file): {d.reason}")
        if self.verification is not None:
            lines.append(self.verification.line())
        lines += [f"WARNING: {w}" for w in list(self.warnings) + list(self.file.warnings)]
        if self.shrink is not None:
            lines += ["", "shrink:", str(self.shrink)]
        return "\n".join(lines)

    __str__ = table


@dataclasses.dataclass
class CheckRow:
    """`check`'s prediction for one prunable weight."""

    layer: str
    weight: str
    shape: tuple
    sparsity: float
    encoding: str  # predicted: dense / CSR / block 1x4 / block 1x16 / kept dense
    speed: str  # "sparse kernel" / "none (densified at load)" / "none" / ...
    advice: str = ""


@dataclasses.dataclass
class CheckReport:
    """`check(model)`: per prunable weight, the predicted encoding and speed effect,
    and the warnings about what will not pay."""

    target: str
    quantize: str
    rows: list
    warnings: list = dataclasses.field(default_factory=list)

    def to_dict(self):
        return {"target": self.target, "quantize": self.quantize,
                "rows": [_asdict(r) for r in self.rows], "warnings": list(self.warnings)}

    def to_json(self, **kwargs):
        return json.dumps(self.to_dict(), **kwargs)

    def table(self):
        lines = [(r.layer, r.weight, "x".join(map(str, r.shape)), f"{r.sparsity:.2%}",
                  r.encoding, r.speed) for r in self.rows]
        out = [f"tfprune.export.check (target={self.target}, quantize={self.quantize})"]
        out.append(_table(("layer", "weight", "shape", "zeros", "TFLite encoding", "speed"),
                          lines, 2) if lines else "(no prunable weights)")
        out += [f"WARNING: {w}" for w in self.warnings]
        return "\n".join(out)

    __str__ = table
