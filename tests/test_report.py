import json

import keras
import numpy as np

import tfprune
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
