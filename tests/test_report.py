import json

import keras
import numpy as np
import pytest

import tfprune
from tfprune import report as report_lib
from tests.helpers import every_step, fit

L = keras.layers


def test_report_counts_masked_zeros_per_layer():
    model = keras.Sequential([keras.Input((10,)), L.Dense(20), L.ReLU(), L.Dense(5)])
    pruned = tfprune.prune_low_magnitude(model, every_step(0.9))
    x = np.random.default_rng(0).standard_normal((16, 10)).astype("float32")
    fit(pruned, x, np.zeros((16, 5), "float32"), steps=1)
    report = tfprune.sparsity_report(pruned)
    assert [(r.layer, r.weight, r.total, r.zeros) for r in report.rows] == [
        ("dense", "kernel", 200, 180), ("dense_1", "kernel", 100, 90)]
    assert report.sparsity == 0.9
    assert report["dense"][0].sparsity == 0.9
    stripped = tfprune.sparsity_report(tfprune.strip_pruning(pruned))
    assert stripped.to_dict() == report.to_dict()


def test_report_of_plain_model_and_table_and_json():
    model = keras.Sequential([keras.Input((4,)), L.Dense(3), L.Dense(2)])
    model.layers[0].kernel.assign(np.zeros((4, 3), "float32"))
    report = tfprune.sparsity_report(model)
    text = str(report)
    assert "dense" in text and "100.00%" in text and "TOTAL" in text
    data = json.loads(report.to_json())
    assert data["total"] == 18 and data["zeros"] == 12
    assert data["layers"][0]["shape"] == [4, 3]


def test_report_includes_nested_models():
    inner = keras.Sequential([keras.Input((4,)), L.Dense(4)], name="inner")
    inputs = keras.Input((4,))
    model = keras.Model(inputs, L.Dense(2)(inner(inputs)))
    assert {r.layer for r in tfprune.sparsity_report(model).rows} == {inner.layers[0].name, model.layers[-1].name}


def test_costs_show_masks_keep_flops_and_shrink_removes_them():
    model = keras.Sequential([keras.Input((20,)), L.Dense(32, activation="relu"), L.Dense(3)])
    pruned = tfprune.prune_low_magnitude(model, every_step(0.5), granularity="unit")
    x = np.random.default_rng(0).standard_normal((16, 20)).astype("float32")
    fit(pruned, x, np.zeros((16, 3), "float32"), steps=1)
    masked = tfprune.sparsity_report(pruned)
    dense = tfprune.sparsity_report(model)
    assert masked.flops == dense.flops == 2 * (20 * 32 + 32 * 3)
    assert masked.params == dense.params
    assert sum(c.nonzero for c in masked.costs) < masked.params
    shrunk = tfprune.sparsity_report(tfprune.shrink(pruned), reference=model)
    first = shrunk.costs[0]
    assert (first.params_before, first.params) == (20 * 32 + 32, 20 * 16 + 16)
    assert (first.flops_before, first.flops) == (2 * 20 * 32, 2 * 20 * 16)
    assert "672 -> 336" in str(shrunk)
    assert shrunk.to_dict()["costs"][0]["flops_before"] == 1280


def test_both_tables_are_titled_and_the_reference_is_explained():
    model = keras.Sequential([keras.Input((4,)), L.Dense(3), L.Dense(2)])
    text = str(tfprune.sparsity_report(model))
    sparsity_title, cost_title = report_lib.SPARSITY_TITLE, report_lib.COST_TITLE
    assert text.startswith(sparsity_title + "\n")
    assert "\n\n" + cost_title + "\nlayer " in text
    assert "dense FLOPs" in text and "sparse FLOPs" in text
    with_ref = str(tfprune.sparsity_report(model, reference=model))
    assert "before -> after: reference model -> this model" in with_ref


def test_sparse_flops_count_only_the_nonzero_kernel_weights(rng):
    model = keras.Sequential([
        keras.Input((8, 8, 3)),
        L.Conv2D(4, 3, padding="same"),
        L.SeparableConv2D(6, 3),
        L.Flatten(),
        L.Dense(5),
    ])
    conv, sep, _, dense = model.layers
    for layer in (conv, dense):
        k = layer.kernel.numpy()
        k.flat[: k.size // 4] = 0  # 25% zeros
        layer.kernel.assign(k)
    dw = sep.depthwise_kernel.numpy()
    dw[...] = 0
    sep.depthwise_kernel.assign(dw)
    sep.bias.assign(np.zeros(6, "float32"))  # biases do not count in FLOPs
    report = tfprune.sparsity_report(model)
    costs = {c.layer: c for c in report.costs}
    assert costs[conv.name].flops == 2 * 3 * 3 * 3 * 4 * 64
    assert costs[conv.name].sparse_flops == costs[conv.name].flops * 3 // 4
    n_dw, n_pw = sep.depthwise_kernel.numpy().size, sep.pointwise_kernel.numpy().size
    assert costs[sep.name].sparse_flops == round(costs[sep.name].flops * n_pw / (n_dw + n_pw))
    k = dense.kernel.numpy()
    assert costs[dense.name].sparse_flops == 2 * int(np.count_nonzero(k))
    assert report.sparse_flops == sum(c.sparse_flops for c in report.costs)
    assert report.to_dict()["sparse_flops"] == report.sparse_flops
    assert report.to_dict()["costs"][0]["sparse_flops"] == costs[conv.name].sparse_flops


def test_sparse_flops_of_a_pruned_model_follow_the_masks():
    model = keras.Sequential([keras.Input((10,)), L.Dense(20), L.ReLU(), L.Dense(5)])
    pruned = tfprune.prune_low_magnitude(model, every_step(0.9))
    x = np.random.default_rng(0).standard_normal((16, 10)).astype("float32")
    fit(pruned, x, np.zeros((16, 5), "float32"), steps=1)
    report = tfprune.sparsity_report(pruned)
    assert report.flops == 2 * (200 + 100)
    assert report.sparse_flops == 2 * (20 + 10)
    uncountable = tfprune.sparsity_report(
        keras.Sequential([keras.Input((3, 4)), L.LSTM(2)]))
    assert uncountable.costs[0].flops is None and uncountable.costs[0].sparse_flops is None


@pytest.mark.parametrize("bad", ["x", 3, None, np.zeros(3)])
def test_model_that_is_not_a_keras_model_is_a_type_error(bad):
    with pytest.raises(TypeError, match=r"Argument `model` must be a Keras model or layer"):
        tfprune.sparsity_report(bad)


def test_reference_must_be_the_same_model_at_another_stage():
    model = keras.Sequential([keras.Input((4,)), L.Dense(3, name="a"), L.Dense(2, name="b")])
    with pytest.raises(TypeError, match=r"`reference` must be a Keras model.*Received: reference='x'"):
        tfprune.sparsity_report(model, reference="x")
    unrelated = keras.Sequential([keras.Input((5,)), L.Dense(7, name="zzz")])
    with pytest.raises(ValueError, match=r"only in reference: \['zzz'\], only in model: \['a', 'b'\]"):
        tfprune.sparsity_report(model, reference=unrelated)
    same_names = keras.Sequential([keras.Input((4, 4, 1)), L.Conv2D(3, 2, name="a"),
                                   L.Flatten(), L.Dense(2, name="b")])
    with pytest.raises(ValueError):  # a Flatten the model lacks
        tfprune.sparsity_report(model, reference=same_names)
    other_class = keras.Sequential([keras.Input((4,)), L.Dense(3, name="a"),
                                    L.EinsumDense("ab,bc->ac", 2, name="b")])
    with pytest.raises(ValueError, match=r"layer 'b' is a EinsumDense, not a Dense"):
        tfprune.sparsity_report(model, reference=other_class)
    # The same model before pruning, stripping and shrinking is accepted.
    pruned = tfprune.prune_low_magnitude(model, every_step(0.5), granularity="unit")
    for candidate in (pruned, tfprune.strip_pruning(pruned)):
        assert tfprune.sparsity_report(candidate, reference=model).costs[0].params_before == 15
