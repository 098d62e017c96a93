"""Tests of `tfprune.h5`: pruning saved Keras files in place.

Every file here is written by a real Keras save (Keras 3 `.keras` / `.weights.h5`,
tf_keras full-model `.h5` / `save_weights` `.h5`) and read back by the Keras that
wrote it. Expected weights are computed independently from the live model's
arrays with `tfprune.masks.select_np`, never from the file parser under test.
"""

import glob
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
import zipfile

import h5py
import keras
import numpy as np
import pytest
import tf_keras

from tfprune import cli
from tfprune import h5 as h5prune
from tfprune import masks
from tfprune import registry

pytestmark = pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file")

PY = sys.executable
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FORMATS = ["keras3-archive", "keras3-weights", "tfkeras-model-h5", "tfkeras-weights-h5"]
SUFFIX = {
    "keras3-archive": ".keras",
    "keras3-weights": ".weights.h5",
    "tfkeras-model-h5": ".h5",
    "tfkeras-weights-h5": ".h5",
}
PRUNABLE = ["d1", "d_in", "d_in2", "c1", "out"]  # "out" is the output layer


# ----------------------------------------------------------------------------- models


def _build(lib):
    """Functional model with a nested Sequential, a Conv1D and an output Dense."""
    L = lib.layers
    inner = lib.Sequential([L.Dense(12, name="d_in"), L.Dense(10, name="d_in2")], name="inner")
    inp = lib.Input((6,))
    x = L.Dense(16, name="d1")(inp)
    x = inner(x)
    x = L.Reshape((10, 1))(x)
    x = L.Conv1D(4, 3, name="c1")(x)
    x = L.Flatten()(x)
    out = L.Dense(3, name="out")(x)
    return lib.Model(inp, out)


def _randomize(model, seed):
    """Random normal weights (no zeros, no ties) so every count is exact."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.standard_normal(w.shape).astype("float32") for w in model.get_weights()])


def _layers(model):
    """`{name: layer}` of the prunable layers, nested models flattened."""
    out = {}
    for layer in model.layers:
        if hasattr(layer, "layers"):
            out.update(_layers(layer))
        elif layer.name in PRUNABLE:
            out[layer.name] = layer
    return out


def _lib(fmt):
    return keras if fmt.startswith("keras3") else tf_keras


def _save(fmt, path, seed=0):
    lib = _lib(fmt)
    model = _build(lib)
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.ones((4, 6), "float32"), np.ones((4, 3), "float32"), verbose=0)
    _randomize(model, seed)
    if fmt == "tfkeras-weights-h5":
        model.save_weights(path)
    elif fmt == "keras3-weights":
        model.save_weights(path)
    else:
        model.save(path)


def _load(fmt, path):
    """The model saved at `path`, loaded by the Keras that wrote it."""
    lib = _lib(fmt)
    if fmt in ("keras3-archive", "tfkeras-model-h5"):
        return lib.models.load_model(path)
    model = _build(lib)
    model.load_weights(path)
    return model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One saved file per format (copied by `fresh` before each use)."""
    root = tmp_path_factory.mktemp("saved")
    paths = {}
    for fmt in FORMATS:
        paths[fmt] = str(root / f"{fmt}{SUFFIX[fmt]}")
        _save(fmt, paths[fmt])
    return paths


@pytest.fixture
def fresh(saved, tmp_path):
    def make(fmt, name=None):
        dst = str(tmp_path / (name or f"m{SUFFIX[fmt]}"))
        shutil.copyfile(saved[fmt], dst)
        return dst

    return make


def _bytes(path):
    with open(path, "rb") as f:
        return f.read()


def _h5_arrays(path):
    """`{dataset path: array}` of an h5 file or of a .keras archive's weights."""
    out = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            out[name] = obj[()]

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z, z.open("model.weights.h5") as m, h5py.File(m) as f:
            f.visititems(visit)
    else:
        with h5py.File(path, "r") as f:
            f.visititems(visit)
    return out


def _temps(folder):
    return glob.glob(os.path.join(str(folder), ".*.tfprune-*"))


# ----------------------------------------------------------------------------- expected


def _kernel_bias(layer):
    return layer.kernel.numpy(), (layer.bias.numpy() if layer.bias is not None else None)


def _expected(model, names, sparsity, granularity, scope, round_to=1):
    """`{layer: (kernel, bias)}` after pruning `names`, from the live arrays."""
    arrays = {n: _kernel_bias(_layers(model)[n]) for n in names}
    if granularity == "weight":
        scores = [masks.weight_scores_np(k) for k, _ in arrays.values()]
        keeps = masks.select_np(scores, sparsity, scope)
        return {
            n: (np.where(keep.reshape(k.shape), k, 0), b)
            for (n, (k, b)), keep in zip(arrays.items(), keeps)
        }
    shapes = {n: registry.unit_shape("last", k.shape) for n, (k, _) in arrays.items()}
    scores = [
        masks.unit_scores_np(k, shapes[n], normalize=(scope == "global"))
        for n, (k, _) in arrays.items()
    ]
    keeps = masks.select_np(scores, sparsity, scope, round_to=round_to)
    return {
        n: (k * keep.reshape(shapes[n]), b * keep)
        for (n, (k, b)), keep in zip(arrays.items(), keeps)
    }


def _assert_pruned(model, expected, untouched):
    got = _layers(model)
    for name, (k, b) in expected.items():
        gk, gb = _kernel_bias(got[name])
        np.testing.assert_array_equal(gk, k, err_msg=name)
        np.testing.assert_array_equal(gb, b, err_msg=name)
    for name, (k, b) in untouched.items():
        gk, gb = _kernel_bias(got[name])
        np.testing.assert_array_equal(gk, k, err_msg=name)
        np.testing.assert_array_equal(gb, b, err_msg=name)


def _predicts(model):
    y = np.asarray(model.predict(np.ones((2, 6), "float32"), verbose=0))
    assert y.shape == (2, 3) and np.all(np.isfinite(y))


# ----------------------------------------------------------------------------- blocks


@pytest.mark.parametrize("shape", [(5,), (7, 3), (3, 3, 4, 5), (2, 9, 1), (1, 1000)], ids=str)
@pytest.mark.parametrize("budget", [1, 4, 10, 10_000])
def test_blocks_are_consecutive_c_order_runs_within_budget(shape, budget, monkeypatch):
    monkeypatch.setattr(masks, "BLOCK_SIZE", budget)
    a = np.arange(int(np.prod(shape))).reshape(shape)
    for lead in range(len(shape) + 1):
        slab = int(np.prod(shape[lead:]))
        pieces = []
        for sel, block_shape in h5prune._blocks(shape, lead):
            piece = a[sel]
            assert piece.shape == block_shape and piece.size <= max(budget, slab)
            pieces.append(piece.reshape(-1))
        np.testing.assert_array_equal(np.concatenate(pieces), a.reshape(-1))


# ----------------------------------------------------------------------------- pruning


CASES = [
    pytest.param("weight", "layer", id="weight-layer"),
    pytest.param("unit", "layer", id="unit-layer"),
    pytest.param("weight", "global", id="weight-global"),
    pytest.param("unit", "global", id="unit-global"),
]


@pytest.mark.parametrize("granularity,scope", CASES)
@pytest.mark.parametrize("fmt", FORMATS)
def test_prune_matches_select_np_and_loads(fresh, fmt, granularity, scope):
    path = fresh(fmt)
    before = _load(fmt, path)
    pruned_names = ["d1", "d_in", "d_in2", "c1"]
    expected = _expected(before, pruned_names, 0.6, granularity, scope)
    untouched = {"out": _kernel_bias(_layers(before)["out"])}

    report = h5prune.prune_weights_file(path, 0.6, granularity=granularity, scope=scope)

    after = _load(fmt, path)
    _assert_pruned(after, expected, untouched)
    _predicts(after)
    kernels = {r.layer.split("/")[-1]: r for r in report.rows if r.weight.endswith("kernel")}
    assert sorted(kernels) == sorted(pruned_names)
    for name, row in kernels.items():
        assert row.zeros_after == int(np.sum(expected[name][0] == 0))
        assert row.zeros_before == 0
        if scope == "layer":
            n_items = row.total if granularity == "weight" else row.shape[-1]
            pruned_items = n_items - masks.keep_count(n_items, 0.6)
            assert row.zeros_after == pruned_items * row.total // n_items
    if granularity == "unit":
        biases = [r for r in report.rows if r.weight == "bias"]
        assert len(biases) == 4 and all(r.zeros_after > 0 for r in biases)
    assert report.kept == [("out", "output layer (skip_output_layer=True)")]


def test_report_is_printable_and_json_able(fresh):
    report = h5prune.prune_weights_file(fresh("keras3-weights"), 0.5)
    d = json.loads(json.dumps(report.to_dict()))
    assert d["format"] == "keras3-weights-h5" and d["granularity"] == "weight"
    assert {r["layer"] for r in d["rows"]} == {"d1", "inner/d_in", "inner/d_in2", "c1"}
    row = d["rows"][0]
    assert set(row) >= {"layer", "weight", "shape", "total", "zeros_before", "zeros_after",
                        "sparsity_before", "sparsity_after"}
    assert row["sparsity_after"] == pytest.approx(row["zeros_after"] / row["total"])
    text = str(report)
    assert "inner/d_in2" in text and "sparsity after" in text and "kept out" in text


@pytest.mark.parametrize("fmt", FORMATS)
def test_prune_output_layer_when_asked(fresh, fmt):
    path = fresh(fmt)
    before = _load(fmt, path)
    expected = _expected(before, PRUNABLE, 0.5, "weight", "layer")
    report = h5prune.prune_weights_file(path, 0.5, skip_output_layer=False)
    _assert_pruned(_load(fmt, path), expected, {})
    assert report.kept == []


@pytest.mark.parametrize(
    "include,exclude,pruned",
    [
        pytest.param("^d1$", None, ["d1"], id="include-one"),
        pytest.param("d_in", None, ["d_in", "d_in2"], id="include-nested-name"),
        pytest.param(None, "^inner/", ["d1", "c1"], id="exclude-nested-model"),
        pytest.param("d", "d_in2", ["d1", "d_in"], id="include-and-exclude"),
    ],
)
def test_include_exclude_select_layers_by_name(fresh, include, exclude, pruned):
    fmt = "keras3-archive"
    path = fresh(fmt)
    before = _load(fmt, path)
    expected = _expected(before, pruned, 0.5, "weight", "layer")
    untouched = {n: _kernel_bias(_layers(before)[n]) for n in PRUNABLE if n not in pruned}
    h5prune.prune_weights_file(path, 0.5, include=include, exclude=exclude)
    _assert_pruned(_load(fmt, path), expected, untouched)


@pytest.mark.parametrize("fmt", ["keras3-archive", "keras3-weights", "tfkeras-model-h5"])
def test_optimizer_state_is_left_untouched(fresh, fmt):
    path = fresh(fmt)
    before = _h5_arrays(path)
    h5prune.prune_weights_file(path, 0.7)
    after = _h5_arrays(path)
    opt = [k for k in before if k.startswith(("optimizer/", "optimizer_weights/"))]
    assert opt, "the saved file should hold optimizer state"
    for k in opt:
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)
    if fmt != "keras3-weights":  # full models: the optimizer state loads back
        model = _load(fmt, path)
        assert model.optimizer is not None
        _predicts(model)


def test_round_to_keeps_unit_counts_multiple(fresh):
    path = fresh("keras3-weights")
    before = _load("keras3-weights", path)
    expected = _expected(before, ["d1", "d_in", "d_in2", "c1"], 0.6, "unit", "layer", round_to=4)
    h5prune.prune_weights_file(path, 0.6, granularity="unit", round_to=4)
    _assert_pruned(_load("keras3-weights", path), expected, {})
    kept_units = np.count_nonzero(np.any(expected["d1"][0] != 0, axis=0))
    assert kept_units % 4 == 0


def test_ties_prune_exact_count_lowest_index_kept(tmp_path):
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, name="d"),
                              keras.layers.Dense(2, name="o")])
    model.layers[0].kernel.assign(np.ones((8, 8), "float32"))
    path = str(tmp_path / "ties.weights.h5")
    model.save_weights(path)
    h5prune.prune_weights_file(path, 0.75)
    model.load_weights(path)
    flat = model.layers[0].kernel.numpy().reshape(-1)
    k = masks.keep_count(64, 0.75)
    assert np.count_nonzero(flat) == k  # tfmot would keep all 64 tied weights
    assert np.all(flat[:k] == 1) and np.all(flat[k:] == 0)


def _heads_model(lib, case):
    L = lib.layers
    inp = lib.Input((6,))
    x = L.Dense(8, name="body")(inp)
    if case == "two-heads":
        return lib.Model(inp, [L.Dense(2, name="head_a")(x), L.Dense(3, name="head_b")(x)])
    x = L.Dense(4, name="logits")(L.BatchNormalization(name="bn")(x))
    return lib.Model(inp, L.Activation("softmax", name="probs")(x))


@pytest.mark.parametrize("lib,suffix", [(keras, ".keras"), (tf_keras, ".h5")], ids=["keras3", "tf_keras"])
@pytest.mark.parametrize(
    "case,kept",
    [
        pytest.param("two-heads", {"head_a", "head_b"}, id="every-output-kept"),
        pytest.param("softmax-output", {"logits"}, id="weightless-output-keeps-layer-before"),
    ],
)
def test_output_layers_come_from_the_config(tmp_path, lib, suffix, case, kept):
    path = str(tmp_path / f"m{suffix}")
    _heads_model(lib, case).save(path)
    report = h5prune.prune_weights_file(path, 0.5)
    assert {name for name, _ in report.kept} == kept
    assert {r.layer for r in report.rows} == {"body"}


def test_symlink_target_is_pruned_and_link_kept(fresh, tmp_path):
    target = fresh("keras3-weights")
    link = str(tmp_path / "link.weights.h5")
    os.symlink(target, link)
    original = _bytes(target)
    h5prune.prune_weights_file(link, 0.5)
    assert os.path.islink(link) and os.readlink(link) == target
    assert _bytes(target) != original


# ----------------------------------------------------------------------------- other layers


def _conv_model(lib):
    L = lib.layers
    inp = lib.Input((6, 6, 3))
    x = L.Conv2D(4, 3, padding="same", name="conv")(inp)
    x = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw")(x)
    x = L.SeparableConv2D(5, 3, padding="same", name="sep")(x)
    x = L.Conv2DTranspose(3, 3, padding="same", name="convt")(x)
    x = L.Flatten()(x)
    return lib.Model(inp, L.Dense(2, name="head")(x))


def _seq_model(lib):
    L = lib.layers
    inp = lib.Input((7,), dtype="int32")
    x = L.Embedding(20, 6, name="emb")(inp)
    x = L.LSTM(5, return_sequences=True, name="lstm")(x)
    x = L.MultiHeadAttention(2, 3, name="mha")(x, x)
    x = L.Flatten()(x)
    return lib.Model(inp, L.Dense(2, name="head")(x))


def _spec_expected(model, granularity, scope="layer"):
    """`{weight path: pruned array}` of a Keras 3 model, straight from the registry
    and `masks.select_np` on the live arrays (all layers but "head")."""
    items = []  # (layer, [(path, array, unit shape)]) per ranked tensor or layer
    for layer in model.layers:
        spec = registry.get_spec(layer)
        if spec is None or layer.name == "head":
            continue
        if granularity == "weight":
            items += [(layer, [(path, v.numpy(), None)]) for path, v in spec.weight_targets(layer)]
        elif spec.unit_targets(layer) is not None:
            items.append((layer, [(p, v.numpy(), u) for p, v, u in spec.unit_targets(layer)[2]]))
    if granularity == "weight":
        scores = [masks.weight_scores_np(targets[0][1]) for _, targets in items]
    else:
        scores = [masks.unit_scores_np(targets[0][1], targets[0][2], normalize=scope == "global")
                  for _, targets in items]
    out = {}
    for (layer, targets), keep in zip(items, masks.select_np(scores, 0.5, scope)):
        for path, w, ushape in targets:
            keep_w = keep.reshape(w.shape if ushape is None else ushape)
            out[f"{layer.name}.{path}"] = np.where(keep_w, w, np.zeros((), w.dtype))
    return out


@pytest.mark.parametrize("granularity", ["weight", "unit"])
@pytest.mark.parametrize("builder", [_conv_model, _seq_model], ids=["conv", "seq"])
def test_layer_classes_pruned_as_in_training_in_keras3_and_tf_keras(tmp_path, builder, granularity):
    k3 = builder(keras)
    _randomize(k3, 1)
    tk = builder(tf_keras)
    tk.set_weights(k3.get_weights())  # same arrays, same order for these layers
    expected = _spec_expected(k3, granularity)
    k3_path, tk_path = str(tmp_path / "m.weights.h5"), str(tmp_path / "m.h5")
    k3.save_weights(k3_path)
    tk.save(tk_path)

    h5prune.prune_weights_file(k3_path, 0.5, granularity=granularity)
    h5prune.prune_weights_file(tk_path, 0.5, granularity=granularity)

    k3.load_weights(k3_path)
    tk = tf_keras.models.load_model(tk_path)
    for key, want in expected.items():
        layer_name, path = key.split(".", 1)
        got = registry.LayerSpec(()).get(k3.get_layer(layer_name), path).numpy()
        np.testing.assert_array_equal(got, want, err_msg=key)
    for a, b in zip(k3.get_weights(), tk.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert expected  # something was pruned


def _blocky_model():
    """Conv, depthwise, transposed conv and Dense kernels with ties, zeros, NaN, inf."""
    L = keras.layers
    inp = keras.Input((6, 6, 3))
    x = L.Conv2D(8, 3, padding="same", name="conv")(inp)
    x = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw")(x)
    x = L.Conv2DTranspose(6, 3, padding="same", name="convt")(x)
    x = L.Dense(40, name="dense")(L.Flatten()(x))
    model = keras.Model(inp, L.Dense(2, name="head")(x))
    _randomize(model, 3)
    rng = np.random.default_rng(3)
    dense = np.round(model.get_layer("dense").kernel.numpy(), 1)  # long tie runs
    dense[rng.random(dense.shape) < 0.4] = 0.0  # and zeros, as in a pruned file
    model.get_layer("dense").kernel.assign(dense)
    conv = model.get_layer("conv").kernel.numpy()
    conv[0, 0, 0, :3] = [np.nan, np.inf, -np.inf]
    model.get_layer("conv").kernel.assign(conv)
    return model


@pytest.mark.parametrize("block_size", [7, 50])
@pytest.mark.parametrize("granularity,scope", CASES)
def test_block_by_block_equals_select_np_on_arrays(tmp_path, monkeypatch, block_size,
                                                   granularity, scope):
    """Tensors cut into many blocks (rows split, tie runs split across blocks) give
    exactly the masks `select_np` gives on the whole arrays, in every mode."""
    monkeypatch.setattr(masks, "BLOCK_SIZE", block_size)
    model = _blocky_model()
    expected = _spec_expected(model, granularity, scope)
    untouched = {v.path: v.numpy() for v in model.weights}
    path = str(tmp_path / "b.weights.h5")
    model.save_weights(path)
    dry = h5prune.prune_weights_file(path, 0.5, granularity=granularity, scope=scope,
                                     dry_run=True)
    report = h5prune.prune_weights_file(path, 0.5, granularity=granularity, scope=scope)
    model.load_weights(path)
    for key, want in expected.items():
        layer_name, attr = key.split(".", 1)
        v = registry.LayerSpec(()).get(model.get_layer(layer_name), attr)
        np.testing.assert_array_equal(v.numpy(), want, err_msg=key)
        untouched.pop(v.path)
    for name, want in untouched.items():
        np.testing.assert_array_equal(_weight(model, name), want, err_msg=name)
    assert [r.to_dict() for r in dry.rows] == [r.to_dict() for r in report.rows]
    assert sum(r.zeros_after for r in report.rows) == sum(
        int(np.sum(w == 0)) for w in expected.values())


def _weight(model, path):
    return next(v.numpy() for v in model.weights if v.path == path)


def test_custom_layer_kernels_found_by_ndim(tmp_path):
    class Scale(keras.layers.Layer):
        def build(self, shape):
            self.w = self.add_weight(shape=(shape[-1], 4), initializer="random_normal")
            self.s = self.add_weight(shape=(4,), initializer="ones")

        def call(self, x):
            return (x @ self.w) * self.s

    model = keras.Sequential([keras.Input((6,)), Scale(name="my"), keras.layers.Dense(2)])
    path = str(tmp_path / "c.weights.h5")
    model.save_weights(path)
    report = h5prune.prune_weights_file(path, 0.5)
    assert [(r.layer, r.weight, r.zeros_after) for r in report.rows] == [("my", "vars/0", 12)]
    with h5py.File(path) as f:
        assert np.all(f["layers/scale/vars/1"][()] == 1)


# ----------------------------------------------------------------------------- safety


@pytest.mark.parametrize("fmt", FORMATS)
def test_dry_run_writes_nothing_and_reports_the_same(fresh, fmt):
    path = fresh(fmt)
    original = _bytes(path)
    mtime = os.stat(path).st_mtime_ns
    dry = h5prune.prune_weights_file(path, 0.8, granularity="unit", dry_run=True)
    assert _bytes(path) == original and os.stat(path).st_mtime_ns == mtime
    assert os.listdir(os.path.dirname(path)) == [os.path.basename(path)]
    real = h5prune.prune_weights_file(path, 0.8, granularity="unit")
    assert [r.to_dict() for r in dry.rows] == [r.to_dict() for r in real.rows]
    assert dry.dry_run and not real.dry_run


@pytest.mark.parametrize("fmt", ["keras3-archive", "tfkeras-model-h5"])
def test_backup_keeps_original_bytes(fresh, fmt):
    path = fresh(fmt)
    original = _bytes(path)
    report = h5prune.prune_weights_file(path, 0.5, backup=True)
    assert report.backup_path == path + ".orig"
    assert _bytes(path + ".orig") == original and _bytes(path) != original
    restored = os.path.join(os.path.dirname(path), "restored" + SUFFIX[fmt])
    shutil.copyfile(path + ".orig", restored)  # Keras picks the loader by extension
    _predicts(_load(fmt, restored))
    _predicts(_load(fmt, path))


def test_backup_refuses_to_overwrite_existing_backup(fresh):
    path = fresh("keras3-weights")
    with open(path + ".orig", "wb") as f:
        f.write(b"first original")
    original = _bytes(path)
    with pytest.raises(FileExistsError, match=r"backup=True.*\.orig"):
        h5prune.prune_weights_file(path, 0.5, backup=True)
    assert _bytes(path) == original and _bytes(path + ".orig") == b"first original"


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o664], ids=oct)
def test_permissions_preserved(fresh, mode):
    path = fresh("keras3-archive")
    os.chmod(path, mode)
    h5prune.prune_weights_file(path, 0.5)
    assert stat.S_IMODE(os.stat(path).st_mode) == mode
    assert _temps(os.path.dirname(path)) == []


def _truncate(path):
    data = _bytes(path)
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])


def _zip_without_weights(path):
    os.unlink(path)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", "{}")


def _text_file(path):
    with open(path, "w") as f:
        f.write("not a model\n")


BAD = [
    pytest.param(dict(sparsity=1.5), None, ValueError, r"sparsity=1\.5", id="sparsity-too-big"),
    pytest.param(dict(sparsity=-0.1), None, ValueError, r"sparsity=-0\.1", id="sparsity-negative"),
    pytest.param(dict(sparsity="half"), None, ValueError, r"sparsity='half'", id="sparsity-not-number"),
    pytest.param(dict(granularity="units"), None, ValueError, r"granularity='units'", id="granularity"),
    pytest.param(dict(scope="net"), None, ValueError, r"scope='net'", id="scope"),
    pytest.param(dict(round_to=0), None, ValueError, r"round_to=0", id="round-to"),
    pytest.param(dict(include="("), None, ValueError, r"include='\('", id="bad-regex"),
    pytest.param(dict(include="zzz"), None, ValueError, r"matched no prunable layer. Received: include='zzz'", id="include-matches-nothing"),
    pytest.param(dict(exclude="."), None, ValueError, r"exclude='\.'", id="exclude-everything"),
    pytest.param({}, _truncate, ValueError, r"truncated", id="truncated-hdf5"),
    pytest.param({}, _text_file, ValueError, r"neither HDF5 nor a zip", id="not-hdf5"),
]


@pytest.mark.parametrize("kwargs,damage,exc,message", BAD)
def test_bad_input_raises_naming_the_value_and_leaves_file_untouched(
    fresh, kwargs, damage, exc, message
):
    path = fresh("tfkeras-weights-h5")
    if damage is not None:
        damage(path)
    original = _bytes(path)
    kwargs = dict(dict(sparsity=0.5), **kwargs)
    with pytest.raises(exc, match=message):
        h5prune.prune_weights_file(path, **kwargs)
    assert _bytes(path) == original
    assert _temps(os.path.dirname(path)) == []


@pytest.mark.parametrize(
    "damage,message",
    [
        pytest.param(_truncate, r"truncated or corrupt zip", id="truncated-archive"),
        pytest.param(_zip_without_weights, r"model\.weights\.h5.*members: config\.json", id="archive-without-weights"),
    ],
)
def test_bad_archive_raises_and_leaves_file_untouched(fresh, damage, message):
    path = fresh("keras3-archive")
    damage(path)
    original = _bytes(path)
    with pytest.raises(ValueError, match=message):
        h5prune.prune_weights_file(path, 0.5)
    assert _bytes(path) == original and _temps(os.path.dirname(path)) == []


def test_missing_path_raises_file_not_found(tmp_path):
    missing = str(tmp_path / "nope.h5")
    with pytest.raises(FileNotFoundError, match=r"path='.*nope\.h5'"):
        h5prune.prune_weights_file(missing, 0.5)
    assert os.listdir(tmp_path) == []


def _chattr(path, flag):
    return subprocess.run(["chattr", flag, path], capture_output=True).returncode == 0


@pytest.mark.parametrize("target", ["file", "folder"])
@pytest.mark.parametrize("how", ["chmod", "chattr"])
def test_read_only_file_or_folder_is_refused_before_writing(fresh, target, how):
    """chmod: our rule (no write bit at all means read-only, also for root).
    chattr +i: the kernel really refuses writes, even to root (`os.access` says so);
    skipped where the file system or container does not allow it."""
    path = fresh("keras3-weights")
    victim = path if target == "file" else os.path.dirname(path)
    original, mode = _bytes(path), os.stat(victim).st_mode
    if how == "chmod":
        os.chmod(victim, 0o444 if target == "file" else 0o555)
    elif not _chattr(victim, "+i"):
        pytest.skip("chattr +i not permitted here")
    try:
        with pytest.raises(PermissionError, match=r"read-only"):
            h5prune.prune_weights_file(path, 0.5)
    finally:
        if how == "chattr":
            _chattr(victim, "-i")
        os.chmod(victim, mode)
    assert _bytes(path) == original and _temps(os.path.dirname(path)) == []


def test_error_mid_write_removes_temp_and_keeps_original(fresh, monkeypatch):
    path = fresh("keras3-archive")
    original = _bytes(path)

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(h5prune, "_copy_member", boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        h5prune.prune_weights_file(path, 0.5)
    assert _bytes(path) == original
    assert os.listdir(os.path.dirname(path)) == [os.path.basename(path)]


# ----------------------------------------------------------------------------- CLI


def _cli(*args, **kwargs):
    return subprocess.run(
        [PY, "-m", "tfprune.cli", "prune-h5", *args], capture_output=True, text=True,
        cwd=REPO, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), **kwargs,
    )


def test_cli_subprocess_prunes_and_prints_json(fresh):
    path = fresh("tfkeras-model-h5")
    before = _load("tfkeras-model-h5", path)
    expected = _expected(before, ["d1", "d_in", "d_in2", "c1"], 0.9, "unit", "global")
    proc = _cli(path, "--sparsity", "0.9", "--granularity", "unit", "--scope", "global",
                "--backup", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["granularity"] == "unit" and report["backup_path"] == path + ".orig"
    _assert_pruned(_load("tfkeras-model-h5", path), expected, {})


def test_cli_subprocess_bad_value_exits_nonzero_with_one_line(fresh):
    path = fresh("keras3-weights")
    original = _bytes(path)
    proc = _cli(path, "--sparsity", "1.5")
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.startswith("tfprune")]
    assert lines == ["tfprune prune-h5: error: Argument `sparsity` must be in [0, 1). "
                     "Received: sparsity=1.5"]
    assert "Traceback" not in proc.stderr and _bytes(path) == original


@pytest.mark.parametrize(
    "args,check",
    [
        pytest.param(["--prune-output-layer"], lambda r: "out" in {x.split("/")[-1] for x in r}, id="prune-output"),
        pytest.param(["--keep-output-layer"], lambda r: "out" not in r, id="keep-output"),
        pytest.param(["--include", "^c1$"], lambda r: set(r) == {"c1"}, id="include"),
        pytest.param(["--exclude", "inner", "--dry-run"], lambda r: set(r) == {"d1", "c1"}, id="exclude-dry-run"),
    ],
)
def test_cli_options(fresh, capsys, args, check):
    path = fresh("keras3-archive")
    assert cli.main(["prune-h5", path, "--sparsity", "0.5", "--json", *args]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert check({r["layer"] for r in rows})


@pytest.mark.parametrize(
    "args,message",
    [
        pytest.param(["--granularity", "units"], "granularity='units'", id="granularity"),
        pytest.param(["--include", "["], "include='['", id="regex"),
        pytest.param(["--round-to", "0", "--granularity", "unit"], "round_to=0", id="round-to"),
    ],
)
def test_cli_user_errors_return_2_with_message(fresh, capsys, args, message):
    path = fresh("keras3-archive")
    assert cli.main(["prune-h5", path, "--sparsity", "0.5", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_cli_missing_file_returns_2(tmp_path, capsys):
    assert cli.main(["prune-h5", str(tmp_path / "x.h5"), "--sparsity", "0.5"]) == 2
    assert "x.h5" in capsys.readouterr().err


# ----------------------------------------------------------------------------- kill


def _big_file(path):
    """A ~5 MB Keras 3 weights file with 32 Dense layers."""
    layers = [keras.Input((200,))] + [keras.layers.Dense(200) for _ in range(32)]
    keras.Sequential(layers).save_weights(path)


def _same(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def _fork_prune(path, delay):
    """Run the CLI in a forked child; SIGKILL it after `delay` s (None: let it end)."""
    pid = os.fork()
    if pid == 0:  # child: no pytest, no atexit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os._exit(cli.main(["prune-h5", path, "--sparsity", "0.5"]))
    start = time.perf_counter()
    if delay is not None:
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    return time.perf_counter() - start, status


def test_killed_at_any_instant_leaves_original_or_pruned(tmp_path):
    """SIGKILL at 18 delays spread over a whole run (forked children of this process,
    so the delays hit the pruning itself, not the TF import), then twice in a real
    `python -m tfprune.h5` subprocess. After each kill the path must hold exactly
    the original or the fully pruned arrays; stray temp files are only ours and the
    next run removes them."""
    path, orig_path = str(tmp_path / "big.weights.h5"), str(tmp_path / "orig.bin")
    _big_file(path)
    shutil.copyfile(path, orig_path)
    original = _h5_arrays(path)
    runs = []
    for _ in range(3):
        shutil.copyfile(orig_path, path)
        duration, status = _fork_prune(path, None)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        runs.append(duration)
    duration = float(np.median(runs))
    pruned = _h5_arrays(path)
    assert not _same(pruned, original)

    outcomes = []  # uniform over the run, then dense near its end (the rename)
    delays = [*np.linspace(0.0, 1.1 * duration, 10), *np.linspace(0.8, 1.05, 8) * duration]
    for delay in delays:
        shutil.copyfile(orig_path, path)
        _, status = _fork_prune(path, float(delay))
        now = _h5_arrays(path)  # loads: a valid HDF5 file with every dataset
        assert _same(now, original) or _same(now, pruned), f"broken at {delay:.3f}s"
        outcomes.append(("pruned" if _same(now, pruned) else "original",
                         os.WIFSIGNALED(status)))
        assert len(_temps(tmp_path)) <= 1
        assert all(".big.weights.h5.tfprune-" in t for t in _temps(tmp_path))
    killed = [o for o, sig in outcomes if sig]
    assert "original" in killed, outcomes  # the kills did land during runs

    for fraction in (0.5, 0.95):  # real CLI processes, killed after their import
        shutil.copyfile(orig_path, path)
        code = ("import sys, tfprune.h5 as h; print('ready', flush=True); "
                "sys.stdin.readline(); sys.exit(h.main(sys.argv[1:]))")
        proc = subprocess.Popen(
            [PY, "-c", code, "prune-h5", path, "--sparsity", "0.5"], cwd=REPO,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        )
        assert proc.stdout.readline().strip() == "ready"
        proc.stdin.write("\n")
        proc.stdin.flush()
        time.sleep(fraction * duration)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        now = _h5_arrays(path)
        assert _same(now, original) or _same(now, pruned)

    shutil.copyfile(orig_path, path)
    h5prune.prune_weights_file(path, 0.5)  # a clean run sweeps dead runs' temps
    assert _same(_h5_arrays(path), pruned) and _temps(tmp_path) == []
    model = keras.Sequential([keras.Input((200,))] + [keras.layers.Dense(200) for _ in range(32)])
    model.load_weights(path)
