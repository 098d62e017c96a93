"""tfprune.export.check: predictions from the weights, and what will not pay."""

import doctest

import keras
import numpy as np
import pytest

import tfprune
import tfprune.export
from tests import export_util as U
from tests.helpers import every_step, fit
from tfprune.export import check, to_tflite


def _row(report, layer):
    return next(r for r in report.rows if r.layer == layer)


def test_predictions_match_the_encodings_of_the_exported_file(tmp_path, rng):
    model = U.mlp(64, (48, 32, 16), 8)
    d = model.layers
    U.block_prune(model, (4, 1), 0.9, rng, layers=[d[0]])
    U.block_prune(model, (1, 4), 0.9, rng, layers=[d[1]])
    U.block_prune(model, (1, 1), 0.8, rng, layers=[d[2]])
    U.block_prune(model, (1, 1), 0.1, rng, layers=[d[3]])
    predicted = check(model)
    exported = to_tflite(model, tmp_path / "m.tflite")
    by_shape = {r.shape: r.encoding for r in exported.tensors}
    for row in predicted.rows:
        assert row.encoding == by_shape[row.shape[::-1]]
    assert [r.speed for r in predicted.rows] == [
        "sparse kernel", "none (densified at load)", "none (densified at load)", "none"]


def test_tfmot_orientation_blocks_are_flagged_with_the_keras_block_that_works(rng):
    model = U.block_prune(U.mlp(64, (48,), 8), (1, 4), 0.9, rng)
    report = check(model)
    assert {r.encoding for r in report.rows} == {"CSR"}
    assert any("block_size=(1, 4)" in w and "(4, 1)" in w for w in report.warnings)


def test_int8_needs_16_wide_blocks(rng):
    model = U.block_prune(U.mlp(64, (48,), 8), (4, 1), 0.9, rng)
    report = check(model, quantize="int8")
    row = report.rows[0]
    assert row.encoding.startswith("dense") and row.speed == "none"
    assert "need 16" in row.advice and "(16, 1)" in row.advice
    ok = check(U.block_prune(U.mlp(64, (48,), 8), (16, 1), 0.9, rng), quantize="int8")
    assert {r.encoding for r in ok.rows} == {"block 1x16"}
    assert all(r.speed.startswith("smaller only") for r in ok.rows)  # outside XNNPACK


@pytest.mark.parametrize("quantize, xnnpack, expected", [
    ("float16", True, "dense (float16 blocks break)"),
    ("dynamic", True, "dense (dynamic + sparse unsafe)"),
    ("dynamic", False, "block 1x16"),
])
def test_known_bad_combinations_are_predicted_dense(rng, quantize, xnnpack, expected):
    model = U.block_prune(U.mlp(64, (48,), 8), (16, 1), 0.9, rng)
    assert check(model, quantize=quantize, xnnpack=xnnpack).rows[0].encoding == expected


def test_lost_partial_block_and_low_sparsity_are_reported(rng):
    model = U.mlp(66, (48,), 8)
    U.block_prune(model, (4, 1), 0.9, rng, layers=[model.layers[0]])
    k = model.layers[0].kernel.numpy()
    k[64:, 0] = 1.0
    model.layers[0].kernel.assign(k)
    U.block_prune(model, (1, 1), 0.2, rng, layers=[model.layers[1]])
    report = check(model)
    assert report.rows[0].encoding == "dense (partial block lost)"
    assert "multiple of 4" in report.rows[0].advice
    assert any("under 30%" in w for w in report.warnings)


def test_convolutions_have_no_sparse_kernel_and_dead_filters_suggest_shrink(rng):
    model = keras.Sequential([keras.Input((12, 12, 3)), keras.layers.Conv2D(16, 3),
                              keras.layers.Flatten(), keras.layers.Dense(4)])
    k = model.layers[0].kernel.numpy()
    k[..., :8] = 0.0  # 8 dead filters: 50% zeros
    model.layers[0].kernel.assign(k)
    report = check(model)
    conv = report.rows[0]
    assert conv.encoding == "CSR" and conv.speed == "none (densified at load)"
    assert "x86 with AVX" in conv.advice
    assert any("8 of 16 units" in w and "shrink=True" in w for w in report.warnings)
    assert check(model, quantize="int8").rows[0].encoding == "dense (int8 + DENSIFY fails)"


def test_pruned_wrapped_model_is_checked_on_its_masked_weights(rng):
    pruned = tfprune.prune_low_magnitude(U.mlp(64, (32,), 10), every_step(0.9))
    x = rng.standard_normal((16, 64)).astype("float32")
    fit(pruned, x, rng.standard_normal((16, 10)).astype("float32"), steps=1)
    report = check(pruned)
    assert [round(r.sparsity, 2) for r in report.rows] == [0.9, 0.9]
    assert "CSR" in report.table() and report.to_dict()["rows"][0]["layer"] == "dense"


def test_argument_errors():
    with pytest.raises(ValueError, match="Received: target='onnx'"):
        check(U.mlp(), target="onnx")
    with pytest.raises(ValueError, match="Received: quantize='int4'"):
        check(U.mlp(), quantize="int4")
    with pytest.raises(TypeError, match="Keras model"):
        check(np.zeros(3))


@pytest.mark.parametrize("name", ["tfprune.export.flatbuffer", "tfprune.export.rules", "tfprune.export.rewrite",
                                  "tfprune.export.check"])
def test_docstring_examples_run(name):
    import importlib

    module = importlib.import_module(name)
    result = doctest.testmod(module, extraglobs={"tfprune": tfprune},
                             optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
