"""Read a `.tflite` flatbuffer: tensors, how each is stored, and the ops reading them.

TFLite stores a sparse constant as `Tensor.sparsity` (TACO-style):

- `traversal_order`: the order in which the (possibly blocked) dimensions are
  walked; dimensions `>= rank` are the inner dimensions of blocks.
- `block_map[k]`: which original dimension block dimension `rank + k` splits.
- `dim_metadata[i]`: for level `i` of the traversal, `DENSE` (every index
  `0..dense_size-1`) or `SPARSE_CSR` (`array_segments` / `array_indices`).

Walking the levels gives each stored value a position: a `DENSE` level of size
`s` maps parent `p` to children `p*s + j`; a `SPARSE_CSR` level maps `p` to the
positions `segments[p] .. segments[p+1]-1`, whose coordinates are
`indices[...]`. The leaf position indexes the stored value buffer. An original
coordinate is `outer * block + inner` for a blocked dimension.

A fully-connected weight `(out, in)` stored `DENSE, CSR` is "CSR"; stored
`DENSE, CSR, DENSE(4)` with `block_map = [1]` it is "block 1x4" (1 output row x
4 consecutive inputs), the layout TFLite's sparse FULLY_CONNECTED kernel runs.

Example:

```python
model = tfprune.export.flatbuffer.read("model.tflite")
for t in model.constants():
    print(t.name, t.shape, t.encoding, t.stored_bytes)
dense = model.dense_values(t)          # the tensor decoded to a dense array
```

Only the schema classes shipped with `ai_edge_litert` (or TensorFlow) are used;
nothing here imports Keras or runs a model.
"""

import dataclasses
import pathlib
import struct

import numpy as np

__all__ = [
    "read",
    "decode",
    "CorruptFile",
    "FlatModel",
    "TensorInfo",
    "OpInfo",
    "schema",
    "DENSE",
    "CSR",
]

DENSE = "dense"
CSR = "CSR"


class CorruptFile(ValueError):
    """Bytes that are not a whole TFLite flatbuffer (truncated, or not one at all)."""


def schema():
    """The generated flatbuffer classes of the TFLite schema: LiteRT's when
    `ai_edge_litert` is installed (imports in well under a second), else
    TensorFlow's (imports all of TensorFlow)."""
    try:
        from ai_edge_litert import schema_py_generated as s
    except ImportError:
        from tensorflow.lite.python import schema_py_generated as s
    return s


_NUMPY = {
    "FLOAT32": np.float32, "FLOAT16": np.float16, "FLOAT64": np.float64,
    "INT8": np.int8, "UINT8": np.uint8, "INT16": np.int16, "UINT16": np.uint16,
    "INT32": np.int32, "UINT32": np.uint32, "INT64": np.int64, "UINT64": np.uint64,
    "BOOL": np.bool_, "COMPLEX64": np.complex64, "COMPLEX128": np.complex128,
}


def _names(cls):
    return {v: k for k, v in vars(cls).items() if not k.startswith("_")}


@dataclasses.dataclass
class Level:
    """One `dim_metadata` entry: `format` "DENSE"/"CSR", and its arrays."""

    format: str
    dense_size: int = 0
    segments: np.ndarray = None
    indices: np.ndarray = None

    @property
    def index_bytes(self):
        return sum(a.nbytes for a in (self.segments, self.indices) if a is not None)


@dataclasses.dataclass
class TensorInfo:
    """A tensor of the file, as stored.

    shape: the dense shape (TFLite layout: a FULLY_CONNECTED weight is (out, in)).
    encoding: "dense", "CSR", or "block RxC" (the block shape in `shape`'s axes).
    stored_bytes: value buffer plus sparse index arrays, as in the file.
    dense_bytes: `prod(shape) * itemsize`.
    """

    subgraph: int
    index: int
    name: str
    shape: tuple
    dtype: str
    buffer: int
    value_bytes: int
    traversal_order: tuple = ()
    block_map: tuple = ()
    levels: tuple = ()
    quantized: bool = False

    @property
    def is_constant(self):
        return self.value_bytes > 0

    @property
    def is_sparse(self):
        return bool(self.levels)

    @property
    def itemsize(self):
        dt = _NUMPY.get(self.dtype)
        return np.dtype(dt).itemsize if dt is not None else 1

    @property
    def size(self):
        return int(np.prod(self.shape)) if self.shape else 1

    @property
    def dense_bytes(self):
        return self.size * self.itemsize

    @property
    def stored_bytes(self):
        return self.value_bytes + sum(level.index_bytes for level in self.levels)

    @property
    def block(self):
        """Block shape in `shape`'s axes, e.g. (1, 4); None if not block-sparse."""
        if not self.block_map:
            return None
        block = [1] * len(self.shape)
        for k, dim in enumerate(self.block_map):
            level = self.traversal_order.index(len(self.shape) + k)
            block[dim] = self.levels[level].dense_size
        return tuple(block)

    @property
    def encoding(self):
        if not self.is_sparse:
            return DENSE
        if self.block is None:
            return CSR
        return "block " + "x".join(map(str, self.block))


@dataclasses.dataclass
class OpInfo:
    subgraph: int
    index: int
    name: str
    inputs: tuple
    outputs: tuple


class FlatModel:
    """A parsed `.tflite` file: `tensors`, `ops`, `size`; raw access to values."""

    def __init__(self, data):
        self.data = bytes(data)
        self.size = len(self.data)
        s = schema()
        if len(self.data) < 8 or self.data[4:8] != b"TFL3":
            raise CorruptFile(
                "Not a TFLite flatbuffer (file identifier 'TFL3' missing). "
                f"Received {len(self.data)} bytes starting with {self.data[:8]!r}"
            )
        try:
            self._parse(s)
        except (struct.error, IndexError, KeyError, ValueError, UnicodeDecodeError) as e:
            if isinstance(e, CorruptFile):
                raise
            raise CorruptFile(
                f"truncated or corrupt flatbuffer ({len(self.data):,} bytes; reading it "
                f"failed: {' '.join(str(e).split())})") from None

    def _parse(self, s):
        self._model = s.Model.GetRootAs(self.data, 0)
        self.tensors, self.ops = [], []
        types = _names(s.TensorType)
        opnames = _names(s.BuiltinOperator)
        codes = []
        m = self._model
        if m.SubgraphsLength() < 1:
            raise CorruptFile("the flatbuffer holds no subgraph (not a model)")
        for i in range(m.OperatorCodesLength()):
            oc = m.OperatorCodes(i)
            code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
            custom = oc.CustomCode()
            codes.append(custom.decode() if custom else opnames.get(code, f"OP_{code}"))
        for g in range(m.SubgraphsLength()):
            sg = m.Subgraphs(g)
            for i in range(sg.TensorsLength()):
                self.tensors.append(self._tensor(g, i, sg.Tensors(i), types))
            for i in range(sg.OperatorsLength()):
                op = sg.Operators(i)
                ins = tuple(int(v) for v in op.InputsAsNumpy()) if op.InputsLength() else ()
                outs = tuple(int(v) for v in op.OutputsAsNumpy()) if op.OutputsLength() else ()
                self.ops.append(OpInfo(g, i, codes[op.OpcodeIndex()], ins, outs))
        self._by_key = {(t.subgraph, t.index): t for t in self.tensors}

    # ------------------------------------------------------------------ parsing

    def _buffer_bytes(self, index):
        if index <= 0 or index >= self._model.BuffersLength():
            return None
        b = self._model.Buffers(index)
        if b.Offset() > 1:  # large models keep data outside the flatbuffer
            if b.Offset() + b.Size() > len(self.data):
                raise CorruptFile(f"buffer {index} ends at byte {b.Offset() + b.Size():,}, "
                                  f"past the end of the file ({len(self.data):,} bytes): "
                                  "truncated")
            return memoryview(self.data)[b.Offset():b.Offset() + b.Size()]
        if b.DataLength() == 0:
            return None
        return b.DataAsNumpy()

    def _tensor(self, g, i, t, types):
        shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        data = self._buffer_bytes(t.Buffer())
        q = t.Quantization()
        quantized = bool(q is not None and q.ScaleLength())
        info = TensorInfo(g, i, (t.Name() or b"").decode(errors="replace"), shape,
                          types.get(t.Type(), str(t.Type())), t.Buffer(),
                          0 if data is None else len(data), quantized=quantized)
        sp = t.Sparsity()
        if sp is not None and sp.DimMetadataLength():
            info.traversal_order = tuple(int(v) for v in sp.TraversalOrderAsNumpy()) \
                if sp.TraversalOrderLength() else tuple(range(sp.DimMetadataLength()))
            info.block_map = tuple(int(v) for v in sp.BlockMapAsNumpy()) \
                if sp.BlockMapLength() else ()
            info.levels = tuple(self._level(sp.DimMetadata(d))
                                for d in range(sp.DimMetadataLength()))
        return info

    @staticmethod
    def _level(dm):
        s = schema()
        if dm.Format() == s.DimensionType.DENSE:
            return Level("DENSE", int(dm.DenseSize()))
        return Level("CSR", 0, _index_vector(dm.ArraySegments(), dm.ArraySegmentsType()),
                     _index_vector(dm.ArrayIndices(), dm.ArrayIndicesType()))

    # ------------------------------------------------------------------ queries

    def tensor(self, subgraph, index):
        return self._by_key[(subgraph, index)]

    def constants(self):
        """Tensors holding data in the file (weights, biases, constants)."""
        return [t for t in self.tensors if t.is_constant]

    def consumers(self, tensor):
        """Ops of `tensor`'s subgraph that read it."""
        return [op for op in self.ops
                if op.subgraph == tensor.subgraph and tensor.index in op.inputs]

    def producer(self, tensor):
        for op in self.ops:
            if op.subgraph == tensor.subgraph and tensor.index in op.outputs:
                return op
        return None

    def stored_values(self, tensor):
        """The raw value buffer of a constant tensor, as its dtype (flat)."""
        raw = self._buffer_bytes(tensor.buffer)
        if raw is None:
            raise ValueError(f"Tensor {tensor.name!r} holds no data in the file.")
        dtype = _NUMPY.get(tensor.dtype)
        if dtype is None:
            raise ValueError(f"Tensor {tensor.name!r} has dtype {tensor.dtype}, not decodable.")
        return np.frombuffer(bytes(raw), dtype=np.dtype(dtype).newbyteorder("<"))

    def dense_values(self, tensor):
        """A constant tensor decoded to its dense shape (sparse ones expanded)."""
        values = self.stored_values(tensor)
        if not tensor.is_sparse:
            return values.reshape(tensor.shape)
        return decode(values, tensor.shape, tensor.traversal_order, tensor.block_map,
                      tensor.levels)


def _index_vector(table, kind):
    """A `SparseIndexVector` union member as a NumPy array (None if absent)."""
    if table is None or kind == 0:
        return None
    s = schema()
    cls = {1: s.Int32Vector, 2: s.Uint16Vector, 3: s.Uint8Vector}[kind]
    vec = cls()
    vec.Init(table.Bytes, table.Pos)
    return vec.ValuesAsNumpy() if vec.ValuesLength() else np.zeros(0, np.int32)


def decode(values, shape, traversal_order, block_map, levels):
    """Expand TFLite sparse storage to a dense array (see the module docstring).

    Args:
        values: the stored values, flat.
        shape: the dense shape.
        traversal_order, block_map: as in `SparsityParameters`.
        levels: one `Level` (format "DENSE" with `dense_size`, or "CSR" with
            `segments` and `indices`) per traversal level.

    Example:

    >>> import numpy as np
    >>> from tfprune.export.flatbuffer import Level, decode
    >>> # 2x4 matrix [[0, 5, 0, 0], [7, 0, 0, 8]] as DENSE rows, CSR columns
    >>> levels = (Level("DENSE", 2), Level("CSR", 0, np.array([0, 1, 3]), np.array([1, 0, 3])))
    >>> decode(np.array([5., 7., 8.]), (2, 4), (0, 1), (), levels)
    array([[0., 5., 0., 0.],
           [7., 0., 0., 8.]])
    """
    rank = len(shape)
    block = [1] * rank
    for k, dim in enumerate(block_map):
        block[dim] = levels[list(traversal_order).index(rank + k)].dense_size
    pos = np.zeros(1, np.int64)
    coords = {}
    for level, dim in zip(levels, traversal_order):
        if level.format == "DENSE":
            s = int(level.dense_size)
            child = (pos[:, None] * s + np.arange(s)).ravel()
            coord = np.tile(np.arange(s), len(pos))
            repeat = np.full(len(pos), s)
        else:
            seg = np.asarray(level.segments, np.int64)
            start, stop = seg[pos], seg[pos + 1]
            repeat = stop - start
            child = np.repeat(start - np.cumsum(repeat) + repeat, repeat) + np.arange(repeat.sum())
            coord = np.asarray(level.indices, np.int64)[child]
        coords = {d: np.repeat(c, repeat) for d, c in coords.items()}
        coords[dim] = coord
        pos = child
    index = []
    for d in range(rank):
        outer = coords.get(d, np.zeros(len(pos), np.int64))
        inner = coords.get(rank + block_map.index(d), 0) if d in block_map else 0
        index.append(outer * block[d] + inner)
    inside = np.ones(len(pos), bool)
    for d in range(rank):
        inside &= index[d] < shape[d]
    out = np.zeros(shape, dtype=np.asarray(values).dtype)
    out[tuple(i[inside] for i in index)] = np.asarray(values)[pos[inside]]
    return out


def read(source):
    """Parse a `.tflite` file (path) or its bytes into a `FlatModel`."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return FlatModel(source)
    path = pathlib.Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"No such TFLite file: {str(path)!r}")
    return FlatModel(path.read_bytes())
