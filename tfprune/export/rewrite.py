"""Store chosen sparse tensors of a `.tflite` file dense again, removing their DENSIFY.

The converter decides every tensor's encoding at once; some of its choices
load badly or not at all (`rules`). `store_dense(data, tensors)` rewrites just
those tensors: the values are decoded (`flatbuffer.decode`), written as a dense
buffer, the sparsity parameters dropped, and a DENSIFY op that expanded the
tensor is removed (its readers read the tensor itself). Everything else in the
file is kept as it was (the schema's object API round-trips a converter file
byte for byte). Buffers are written 16-byte aligned, as the converter does.
"""

import flatbuffers
import numpy as np

from tfprune.export import flatbuffer

__all__ = ["store_dense", "csr_encode"]

_ALIGN = 16


def _aligned_buffer_class(s):
    class AlignedBufferT(s.BufferT):
        def Pack(self, builder):
            data = None
            if self.data is not None and len(self.data):
                payload = np.asarray(self.data, np.uint8).tobytes()
                builder.StartVector(1, len(payload), _ALIGN)
                builder.head = builder.head - len(payload)
                builder.Bytes[builder.head:builder.head + len(payload)] = payload
                builder.vectorNumElems = len(payload)
                data = builder.EndVector()
            s.BufferStart(builder)
            if data is not None:
                s.BufferAddData(builder, data)
            s.BufferAddOffset(builder, self.offset)
            s.BufferAddSize(builder, self.size)
            return s.BufferEnd(builder)

    return AlignedBufferT


def _as_aligned(buffer_t, cls):
    new = cls()
    new.data, new.offset, new.size = buffer_t.data, buffer_t.offset, buffer_t.size
    return new


def _index_vector(s, values):
    """The narrowest `SparseIndexVector` holding `values`: (type code, table)."""
    values = np.asarray(values)
    top = int(values.max(initial=0))
    if top <= 0xFF:
        vec, kind, dtype = s.Uint8VectorT(), s.SparseIndexVector.Uint8Vector, np.uint8
    elif top <= 0xFFFF:
        vec, kind, dtype = s.Uint16VectorT(), s.SparseIndexVector.Uint16Vector, np.uint16
    else:
        vec, kind, dtype = s.Int32VectorT(), s.SparseIndexVector.Int32Vector, np.int32
    vec.values = values.astype(dtype)
    return kind, vec


def csr_encode(dense):
    """`(values, segments, indices)` of a 2-D array stored DENSE rows, CSR columns.

    >>> import numpy as np
    >>> csr_encode(np.array([[0, 5, 0, 0], [7, 0, 0, 8]]))
    (array([5, 7, 8]), array([0, 1, 3]), array([1, 0, 3]))
    """
    dense = np.asarray(dense)
    rows, cols = np.nonzero(dense)
    segments = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=dense.shape[0]))])
    return dense[rows, cols], segments, cols


def _csr_sparsity(s, dense):
    values, segments, indices = csr_encode(dense)
    rows = s.DimensionMetadataT()
    rows.format, rows.denseSize = s.DimensionType.DENSE, int(dense.shape[0])
    cols = s.DimensionMetadataT()
    cols.format = s.DimensionType.SPARSE_CSR
    cols.arraySegmentsType, cols.arraySegments = _index_vector(s, segments)
    cols.arrayIndicesType, cols.arrayIndices = _index_vector(s, indices)
    sp = s.SparsityParametersT()
    sp.traversalOrder, sp.blockMap, sp.dimMetadata = [0, 1], None, [rows, cols]
    return sp, values


def _densify_code(s, model):
    for i, c in enumerate(model.operatorCodes):
        if max(c.builtinCode, c.deprecatedBuiltinCode) == s.BuiltinOperator.DENSIFY:
            return i
    code = s.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.DENSIFY
    code.version = 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _insert_densify(s, model, sg, index, densify):
    """A DENSIFY op and its output tensor in front of every reader of `index`."""
    t = sg.tensors[index]
    out = s.TensorT()
    out.shape, out.type, out.buffer = list(t.shape), t.type, 0
    out.name = (t.name or b"") + b"/densified"
    sg.tensors.append(out)
    new = len(sg.tensors) - 1
    readers = [i for i, op in enumerate(sg.operators)
               if op.inputs is not None and index in list(op.inputs)]
    for i in readers:
        op = sg.operators[i]
        op.inputs = np.where(np.asarray(op.inputs) == index, new,
                             np.asarray(op.inputs)).astype(np.int32)
    op = s.OperatorT()
    op.opcodeIndex = densify
    op.inputs = np.array([index], np.int32)
    op.outputs = np.array([new], np.int32)
    sg.operators.insert(min(readers) if readers else 0, op)


def store_dense(data, tensors, values=None, csr=()):
    """Bytes of the file `data` with `tensors` ((subgraph, index) pairs) stored dense.

    `values` may give the dense values of some of them (`{key: array}`, e.g. from
    the dense file when the sparse encoding lost weights); the others are
    decoded from the file. The 2-D tensors in `csr` (keys, a subset of
    `tensors`) are stored as CSR behind a new DENSIFY op instead of dense (a
    block encoding replaced by one every reader handles). Raises ValueError if a
    listed tensor is not a sparse constant of the file, or a given array does not
    have its shape and dtype.
    """
    s = flatbuffer.schema()
    fm = flatbuffer.read(data)
    model = s.ModelT.InitFromPackedBuf(bytearray(fm.data), 0)
    buffer_cls = _aligned_buffer_class(s)
    densify = {i for i, c in enumerate(model.operatorCodes)
               if max(c.builtinCode, c.deprecatedBuiltinCode) == s.BuiltinOperator.DENSIFY}
    for key in sorted(set(tensors)):
        info = fm.tensor(*key)
        if not info.is_sparse or not info.is_constant:
            raise ValueError(f"Tensor {info.name!r} is not a sparse constant of the file.")
        given = (values or {}).get(key)
        dense = np.ascontiguousarray(fm.dense_values(info) if given is None else given)
        if dense.shape != tuple(info.shape) or dense.dtype != fm.stored_values(info).dtype:
            raise ValueError(f"Values for tensor {info.name!r} must have shape {info.shape} "
                             f"and dtype {fm.stored_values(info).dtype}; received "
                             f"{dense.shape} {dense.dtype}.")
        sg = model.subgraphs[key[0]]
        t = sg.tensors[key[1]]
        t.sparsity = None
        stored = dense
        if key in set(csr):
            if dense.ndim != 2:
                raise ValueError(f"Only 2-D tensors can be stored CSR; {info.name!r} is "
                                 f"{dense.shape}.")
            t.sparsity, stored = _csr_sparsity(s, dense)
        model.buffers[t.buffer].data = np.frombuffer(
            stored.astype(stored.dtype.newbyteorder("<")).tobytes(), np.uint8)
        _drop_densify(sg, key[1], densify)
        if key in set(csr):
            _insert_densify(s, model, sg, key[1], _densify_code(s, model))
    model.buffers = [_as_aligned(b, buffer_cls) for b in model.buffers]
    builder = flatbuffers.Builder(len(fm.data) + 4 * sum(
        fm.tensor(*k).dense_bytes for k in set(tensors)) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _drop_densify(sg, index, densify_codes):
    """Remove DENSIFY ops reading tensor `index`; their readers read `index`."""
    keep = []
    for op in sg.operators:
        if op.opcodeIndex in densify_codes and list(op.inputs) == [index]:
            out = int(op.outputs[0])
            for other in sg.operators:
                if other.inputs is not None:
                    other.inputs = np.where(np.asarray(other.inputs) == out, index,
                                            np.asarray(other.inputs)).astype(np.int32)
            if sg.outputs is not None and out in list(sg.outputs):
                raise ValueError("A DENSIFY output is a model output; cannot remove it.")
            continue
        keep.append(op)
    sg.operators = keep
