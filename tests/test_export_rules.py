"""tfprune.export.rules: the converter's choices and the known-bad combinations.

Each known-bad combination is reproduced here on the converter's raw output
(no tfprune.export involved), so a TF/LiteRT upgrade that fixes one fails a test
and tells us to relax the rule."""

import numpy as np
import pytest

from tests import export_util as U
from tfprune.export import flatbuffer, rules


def test_block_sparsity_counts_elements_in_all_zero_blocks():
    w = np.zeros((2, 8))
    w[0, :4] = 1.0
    assert rules.block_sparsity(w, (1, 4)) == 0.75
    w[1, 7] = 1.0  # one element alive in the last block of row 1
    assert rules.block_sparsity(w, (1, 4)) == 0.5
    assert rules.block_sparsity(np.zeros((3, 6)), (1, 4)) == 1.0  # padded last block


def test_keras_blocks_are_the_tflite_blocks_transposed():
    assert rules.KERAS_DENSE_BLOCK == {"float32": (4, 1), "float16": (4, 1), "int8": (16, 1)}


@pytest.mark.parametrize("block, sparsity, quantize", [
    ((4, 1), 0.9, None), ((1, 4), 0.9, None), ((1, 1), 0.8, None), ((1, 1), 0.2, None),
    ((16, 1), 0.8, "int8"), ((4, 1), 0.9, "int8"),
])
def test_predicted_fc_encoding_is_what_the_converter_stores(rng, block, sparsity, quantize):
    model = U.block_prune(U.mlp(64, (48,), 16), block, sparsity, rng)
    rep = U.representative(rng.standard_normal((16, 64)).astype("float32"))
    fm = flatbuffer.read(U.raw_convert(model, quantize, rep=rep))
    stored = sorted((t.shape, t.encoding) for t in fm.constants() if len(t.shape) == 2)
    kind = rules.weight_kind(quantize)
    predicted = sorted((tuple(l.kernel.shape)[::-1], rules.predict_fc_encoding(l.kernel.numpy().T, kind))
                       for l in model.layers)
    assert [e for _, e in stored] == [e for _, e in predicted]


def _hazards(data):
    fm = flatbuffer.read(data)
    return {h.code for t in fm.constants() for h in rules.tensor_hazards(fm, t)}


def test_float16_blocks_give_nan_and_are_flagged(rng):
    model = U.block_prune(U.mlp(64, (48,), 8), (4, 1), 0.9, rng)
    data = U.raw_convert(model, "float16")
    assert "float16-block" in _hazards(data)
    x = rng.standard_normal((4, 64)).astype("float32")
    out = U.run_file(data, x)[0]
    ref = model(x).numpy()
    assert not np.allclose(out, ref, atol=1e-2)  # NaN or garbage


def test_int8_csr_behind_densify_fails_to_load_under_xnnpack(rng):
    model = U.block_prune(U.mlp(64, (48,), 8), (1, 1), 0.9, rng)
    x = rng.standard_normal((16, 64)).astype("float32")
    data = U.raw_convert(model, "int8", rep=U.representative(x))
    assert "int8-densify" in _hazards(data)
    with pytest.raises(RuntimeError, match="delegate"):
        U.run_file(data, x[:1])
    U.run_file(data, x[:1], xnnpack=False)  # the builtin kernels load it


def test_dynamic_range_blocks_are_wrong_under_xnnpack(rng):
    model = U.block_prune(U.mlp(256, (64,), 8), (16, 1), 0.9, rng)
    data = U.raw_convert(model, "dynamic")
    assert "hybrid-sparse-xnnpack" in _hazards(data)
    x = rng.standard_normal((4, 256)).astype("float32")
    dense = U.run_file(U.raw_convert(model, "dynamic", sparse=False), x)[0]
    builtin = U.run_file(data, x, xnnpack=False)[0]
    xnn = U.run_file(data, x)[0]
    scale = np.abs(dense).max()
    assert np.abs(builtin - dense).max() < 0.05 * scale
    assert not np.allclose(xnn, dense, atol=0.2 * scale)  # garbage or NaN


def test_hybrid_kernel_with_more_than_256_blocks_per_row_is_wrong_even_without_xnnpack(rng):
    model = U.block_prune(U.mlp(8192, (), 8), (16, 1), 0.9, rng)
    data = U.raw_convert(model, "dynamic")
    assert "hybrid-ledger" in _hazards(data)
    x = rng.standard_normal((2, 8192)).astype("float32")
    dense = U.run_file(U.raw_convert(model, "dynamic", sparse=False), x, xnnpack=False)[0]
    builtin = U.run_file(data, x, xnnpack=False)[0]
    assert not np.allclose(builtin, dense, atol=0.2 * np.abs(dense).max())


def test_converter_drops_the_partial_last_block_of_a_row(rng):
    """66 inputs in 1x4 blocks: the weights of inputs 64-65 are not in the file."""
    model = U.block_prune(U.mlp(66, (), 16), (4, 1), 0.9, rng)
    kernel = model.layers[0].kernel.numpy()
    kernel[64:, 0] = 1.0  # make sure the partial tail block of unit 0 is alive
    model.layers[0].kernel.assign(kernel)
    fm = flatbuffer.read(U.raw_convert(model))
    t = [t for t in fm.constants() if len(t.shape) == 2][0]
    assert t.encoding == "block 1x4"
    decoded = fm.dense_values(t)
    np.testing.assert_array_equal(decoded[:, :64], kernel[:64].T)
    assert not decoded[:, 64:].any()  # lost
    x = rng.standard_normal((2, 66)).astype("float32")
    assert np.abs(U.run_file(fm.data, x)[0] - model(x).numpy()).max() > 0.1
    assert rules.partial_block_alive(kernel.T, (1, 4))
    assert not rules.partial_block_alive(kernel[:64].T, (1, 4))


def test_float_blocks_next_to_dense_hybrid_ops_give_nan_under_xnnpack(rng):
    """Dynamic-range keeps small weights float32; a 1x4-block one breaks XNNPACK."""
    model = U.mlp(64, (48,), 8)
    U.block_prune(model, (4, 1), 0.9, rng, layers=[model.layers[1]])
    data = U.raw_convert(model, "dynamic")
    fm = flatbuffer.read(data)
    assert {t.dtype: t.encoding for t in fm.constants() if len(t.shape) == 2} == \
        {"INT8": "dense", "FLOAT32": "block 1x4"}
    assert "hybrid-sparse-xnnpack" in _hazards(data)
    x = rng.standard_normal((4, 64)).astype("float32")
    ref = model(x).numpy()
    builtin = U.run_file(data, x, xnnpack=False)[0]
    assert np.abs(builtin - ref).max() < 0.05 * np.abs(ref).max()
    assert not np.allclose(U.run_file(data, x)[0], ref, atol=0.2 * np.abs(ref).max())
