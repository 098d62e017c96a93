"""tfprune.export.flatbuffer: reading encodings and decoding sparse tensors.

Expectations come from the Keras weights themselves (a TFLite FULLY_CONNECTED
weight is the Keras kernel transposed), never from the reader under test."""

import numpy as np
import pytest

from tests import export_util as U
from tfprune.export import flatbuffer


def _weights(data):
    fm = flatbuffer.read(data)
    return fm, [t for t in fm.constants() if len(t.shape) == 2]


def test_decode_docstring_example_csr():
    levels = (flatbuffer.Level("DENSE", 2),
              flatbuffer.Level("CSR", 0, np.array([0, 1, 3]), np.array([1, 0, 3])))
    out = flatbuffer.decode(np.array([5.0, 7.0, 8.0]), (2, 4), (0, 1), (), levels)
    np.testing.assert_array_equal(out, [[0, 5, 0, 0], [7, 0, 0, 8]])


@pytest.mark.parametrize("block, encoding", [((4, 1), "block 1x4"), ((1, 1), "CSR"),
                                             ((1, 4), "CSR")])
def test_sparse_float_weights_decode_to_the_keras_kernel_transposed(rng, block, encoding):
    model = U.block_prune(U.mlp(64, (48,), 8), block, 0.8, rng)
    fm, weights = _weights(U.raw_convert(model))
    kernels = {k.shape[::-1]: k for k in (l.kernel.numpy() for l in model.layers)}
    assert len(weights) == 2
    for t in weights:
        assert t.encoding == encoding
        assert t.is_sparse and t.stored_bytes < t.dense_bytes
        np.testing.assert_array_equal(fm.dense_values(t), kernels[t.shape].T)


def test_block_map_and_block_shape_of_a_1x4_file(rng):
    model = U.block_prune(U.mlp(64, (48,), 8), (4, 1), 0.9, rng)
    fm, weights = _weights(U.raw_convert(model))
    t = weights[0]
    assert t.block_map == (1,) and t.block == (1, 4)
    assert [l.format for l in t.levels] == ["DENSE", "CSR", "DENSE"]
    assert t.levels[2].dense_size == 4


def test_int8_keeps_every_pruned_zero_and_adds_only_rounded_tiny_weights(rng):
    model = U.block_prune(U.mlp(64, (48,), 8), (16, 1), 0.75, rng)
    x = rng.standard_normal((32, 64)).astype("float32")
    fm, weights = _weights(U.raw_convert(model, "int8", rep=U.representative(x)))
    kernels = {k.shape[::-1]: k for k in (l.kernel.numpy() for l in model.layers)}
    for t in weights:
        assert t.dtype == "INT8" and t.encoding == "block 1x16"
        q = fm.dense_values(t)
        w = kernels[t.shape].T
        assert np.all(q[w == 0] == 0)  # every pruned zero is an exact int8 zero
        extra = (q == 0) & (w != 0)  # |w| < half a step of its row's symmetric scale
        half_step = np.abs(w).max(axis=1, keepdims=True) / 254
        assert np.all(np.abs(w)[extra] <= (half_step * np.ones_like(w))[extra] * 1.001)


def test_dense_file_has_no_sparse_tensor(rng):
    model = U.block_prune(U.mlp(), (1, 1), 0.9, rng)
    fm, weights = _weights(U.raw_convert(model, sparse=False))
    assert {t.encoding for t in weights} == {"dense"}
    assert all(t.stored_bytes == t.dense_bytes for t in weights)


def test_not_a_tflite_file_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="Not a TFLite flatbuffer"):
        flatbuffer.read(b"PK\x03\x04 not a model")
    with pytest.raises(FileNotFoundError, match="No such TFLite file"):
        flatbuffer.read(tmp_path / "missing.tflite")


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.9, 0.99])
def test_a_truncated_file_is_a_corrupt_file_error_and_inspect_names_it(tmp_path, rng, keep):
    from tfprune import export

    data = U.raw_convert(U.block_prune(U.mlp(), (1, 1), 0.9, rng))
    cut = data[: int(len(data) * keep)]
    with pytest.raises(flatbuffer.CorruptFile, match="truncated or corrupt"):
        flatbuffer.read(cut)
    path = tmp_path / "cut.tflite"
    path.write_bytes(cut)
    with pytest.raises(ValueError, match="cut.tflite' is not a valid TFLite file"):
        export.inspect(path)


def test_a_tfl3_header_without_a_model_is_a_corrupt_file_error():
    for data in (b"\0\0\0\0TFL3" + b"\xff" * 20, b"\x08\0\0\0TFL3" + b"\0" * 20):
        with pytest.raises(flatbuffer.CorruptFile, match="no subgraph"):
            flatbuffer.read(data)
