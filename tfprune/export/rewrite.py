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

__all__ = ["store_dense"]

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


def store_dense(data, tensors, values=None):
    """Bytes of the file `data` with `tensors` ((subgraph, index) pairs) stored dense.

    `values` may give the dense values of some of them (`{key: array}`, e.g. from
    the dense file when the sparse encoding lost weights); the others are
    decoded from the file. Raises ValueError if a listed tensor is not a sparse
    constant of the file, or a given array does not have its shape and dtype.
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
        model.buffers[t.buffer].data = np.frombuffer(
            dense.astype(dense.dtype.newbyteorder("<")).tobytes(), np.uint8)
        _drop_densify(sg, key[1], densify)
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
