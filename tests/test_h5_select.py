"""`tfprune.h5.select`: exact keep sets, block by block equal to `masks.select_np` on
whole arrays, and NaN / inf weights refused (naming layer, tensor and count)."""

import os

import keras
import numpy as np
import pytest

from h5_files import CASES, H5_WARNING, randomize, sha256, spec_expected, temps, weight_of
from tfprune import h5 as h5prune
from tfprune import masks
from tfprune import registry

pytestmark = H5_WARNING
L = keras.layers


def test_ties_prune_exact_count_lowest_index_kept(tmp_path):
    model = keras.Sequential([keras.Input((8,)), L.Dense(8, name="d"), L.Dense(2, name="o")])
    model.layers[0].kernel.assign(np.ones((8, 8), "float32"))
    path = str(tmp_path / "ties.weights.h5")
    model.save_weights(path)
    h5prune.prune_weights_file(path, 0.75)
    model.load_weights(path)
    flat = model.layers[0].kernel.numpy().reshape(-1)
    k = masks.keep_count(64, 0.75)
    assert np.count_nonzero(flat) == k  # tfmot would keep all 64 tied weights
    assert np.all(flat[:k] == 1) and np.all(flat[k:] == 0)


def _blocky_model():
    """Conv, depthwise, transposed conv and Dense kernels with ties and zeros."""
    inp = keras.Input((6, 6, 3))
    x = L.Conv2D(8, 3, padding="same", name="conv")(inp)
    x = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw")(x)
    x = L.Conv2DTranspose(6, 3, padding="same", name="convt")(x)
    x = L.Dense(40, name="dense")(L.Flatten()(x))
    model = keras.Model(inp, L.Dense(2, name="head")(x))
    randomize(model, 3)
    rng = np.random.default_rng(3)
    dense = np.round(model.get_layer("dense").kernel.numpy(), 1)  # long tie runs
    dense[rng.random(dense.shape) < 0.4] = 0.0  # and zeros, as in a pruned file
    model.get_layer("dense").kernel.assign(dense)
    return model


@pytest.mark.parametrize("block_size", [7, 50])
@pytest.mark.parametrize("granularity,scope", CASES)
def test_block_by_block_equals_select_np_on_arrays(tmp_path, monkeypatch, block_size,
                                                   granularity, scope):
    """Tensors cut into many blocks (rows split, tie runs split across blocks) give
    exactly the masks `select_np` gives on the whole arrays, in every mode."""
    monkeypatch.setattr(masks, "BLOCK_SIZE", block_size)
    model = _blocky_model()
    want = spec_expected(model, granularity, scope)
    unchanged = {v.path: v.numpy() for v in model.weights}
    path = str(tmp_path / "b.weights.h5")
    model.save_weights(path)
    dry = h5prune.prune_weights_file(path, 0.5, granularity=granularity, scope=scope,
                                     dry_run=True)
    report = h5prune.prune_weights_file(path, 0.5, granularity=granularity, scope=scope)
    model.load_weights(path)
    for key, w in want.items():
        np.testing.assert_array_equal(weight_of(model, key), w, err_msg=key)
        layer_name, attr = key.split(".", 1)
        unchanged.pop(registry.LayerSpec(()).get(model.get_layer(layer_name), attr).path)
    for v in model.weights:
        if v.path in unchanged:
            np.testing.assert_array_equal(v.numpy(), unchanged[v.path], err_msg=v.path)
    assert [r.to_dict() for r in dry.rows] == [r.to_dict() for r in report.rows]
    assert sum(r.zeros_after for r in report.rows) == sum(int(np.sum(w == 0)) for w in want.values())


# ----------------------------------------------------------------------------- non-finite


def _poisoned(tmp_path, suffix, where, values):
    """A saved model whose `where` weight holds `values` at its first entries."""
    model = keras.Sequential([keras.Input((6,)), L.Dense(8, name="hidden"),
                              L.Dense(5, name="middle"), L.Dense(2, name="out")])
    randomize(model, 0)
    layer_name, weight = where
    var = getattr(model.get_layer(layer_name), weight)
    w = var.numpy().reshape(-1)
    w[: len(values)] = values
    var.assign(w.reshape(var.shape))
    path = str(tmp_path / f"m{suffix}")
    (model.save if suffix == ".keras" else model.save_weights)(path)
    return path


NON_FINITE = [
    *[pytest.param(".weights.h5", [np.nan], "1 of 48", g, s, id=f"one-nan-{g}-{s}")
      for g in ("weight", "unit") for s in ("layer", "global")],
    pytest.param(".keras", [np.inf, -np.inf, np.nan], "3 of 48", "weight", "layer",
                 id="inf-and-nan-archive"),
]


@pytest.mark.parametrize("dry_run", [False, True], ids=["write", "dry-run"])
@pytest.mark.parametrize("suffix,values,count,granularity,scope", NON_FINITE)
def test_non_finite_weights_are_an_error_naming_layer_tensor_and_count(
        tmp_path, suffix, values, count, granularity, scope, dry_run):
    path = _poisoned(tmp_path, suffix, ("hidden", "kernel"), values)
    digest = sha256(path)
    with pytest.raises(ValueError, match=r"must hold finite weights") as e:
        h5prune.prune_weights_file(path, 0.5, granularity=granularity, scope=scope,
                                   dry_run=dry_run)
    text = str(e.value)
    assert f"path={path!r}" in text and "layer 'hidden', weight 'kernel'" in text
    assert f"{count} values are NaN or inf" in text
    assert sha256(path) == digest and temps(os.path.dirname(path)) == []


@pytest.mark.parametrize(
    "where,kwargs",
    [
        pytest.param(("out", "kernel"), {}, id="output-layer-kept"),
        pytest.param(("middle", "kernel"), dict(exclude="middle"), id="excluded-layer"),
        pytest.param(("hidden", "bias"), dict(granularity="unit"), id="bias-zeroed-not-ranked"),
    ],
)
def test_non_finite_values_outside_the_ranked_tensors_are_left_as_they_are(tmp_path, where,
                                                                           kwargs):
    """The rule is about ranking: a tensor not ranked may hold anything; it is
    copied as it is (a unit's bias entry is zeroed with its unit, NaN or not)."""
    path = _poisoned(tmp_path, ".weights.h5", where, [np.nan])
    report = h5prune.prune_weights_file(path, 0.5, **kwargs)
    assert report.rows
