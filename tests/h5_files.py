"""Saved Keras files and independent expectations for the `tfprune.h5` tests.

Every file is written by a real Keras save (Keras 3 `.keras` / `.weights.h5`,
tf_keras full-model `.h5` / `save_weights` `.h5`) and read back by the Keras that
wrote it. Expected weights are computed from the live model's arrays with
`tfprune.masks.select_np`, never from the file parser under test.

Fixtures (import them into a test module): `saved` (one file per format, per
session) and `fresh` (a copy of one, per test).
"""

import glob
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile

import h5py
import keras
import numpy as np
import pytest
import tf_keras

from tfprune import masks
from tfprune import registry

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
HIDDEN = ["d1", "d_in", "d_in2", "c1"]
CASES = [
    pytest.param("weight", "layer", id="weight-layer"),
    pytest.param("unit", "layer", id="unit-layer"),
    pytest.param("weight", "global", id="weight-global"),
    pytest.param("unit", "global", id="unit-global"),
]
# tf_keras warns on every h5 save
H5_WARNING = pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file")


# ----------------------------------------------------------------------------- models


def build(lib):
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


def randomize(model, seed):
    """Random normal weights (no zeros, no ties) so every count is exact."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.standard_normal(w.shape).astype("float32") for w in model.get_weights()])


def prunable_layers(model):
    """`{name: layer}` of the prunable layers, nested models flattened."""
    out = {}
    for layer in model.layers:
        if hasattr(layer, "layers"):
            out.update(prunable_layers(layer))
        elif layer.name in PRUNABLE:
            out[layer.name] = layer
    return out


def lib_of(fmt):
    return keras if fmt.startswith("keras3") else tf_keras


def save(fmt, path, seed=0):
    lib = lib_of(fmt)
    model = build(lib)
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.ones((4, 6), "float32"), np.ones((4, 3), "float32"), verbose=0)
    randomize(model, seed)
    if fmt in ("tfkeras-weights-h5", "keras3-weights"):
        model.save_weights(path)
    else:
        model.save(path)


def load(fmt, path):
    """The model saved at `path`, loaded by the Keras that wrote it."""
    lib = lib_of(fmt)
    if fmt in ("keras3-archive", "tfkeras-model-h5"):
        return lib.models.load_model(path)
    model = build(lib)
    model.load_weights(path)
    return model


def conv_model(lib):
    L = lib.layers
    inp = lib.Input((6, 6, 3))
    x = L.Conv2D(4, 3, padding="same", name="conv")(inp)
    x = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw")(x)
    x = L.SeparableConv2D(5, 3, padding="same", name="sep")(x)
    x = L.Conv2DTranspose(3, 3, padding="same", name="convt")(x)
    x = L.Flatten()(x)
    return lib.Model(inp, L.Dense(2, name="head")(x))


def seq_model(lib):
    L = lib.layers
    inp = lib.Input((7,), dtype="int32")
    x = L.Embedding(20, 6, name="emb")(inp)
    x = L.LSTM(5, return_sequences=True, name="lstm")(x)
    x = L.MultiHeadAttention(2, 3, name="mha")(x, x)
    x = L.Flatten()(x)
    return lib.Model(inp, L.Dense(2, name="head")(x))


# ----------------------------------------------------------------------------- fixtures


class _Saved(dict):
    """`{format: path}` of saved files, each written on first use."""

    def __init__(self, root):
        super().__init__()
        self.root = root

    def __missing__(self, fmt):
        self[fmt] = path = str(self.root / f"{fmt}{SUFFIX[fmt]}")
        save(fmt, path)
        return path


@pytest.fixture(scope="session")
def saved(tmp_path_factory):
    """One saved file per format, written once per test session, on first use
    (`fresh` copies it before each use)."""
    return _Saved(tmp_path_factory.mktemp("saved"))


@pytest.fixture
def fresh(saved, tmp_path):
    def make(fmt, name=None):
        dst = str(tmp_path / (name or f"m{SUFFIX[fmt]}"))
        shutil.copyfile(saved[fmt], dst)
        return dst

    return make


# ----------------------------------------------------------------------------- files


def file_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def sha256(path):
    return hashlib.sha256(file_bytes(path)).hexdigest()


def h5_arrays(path):
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


def same_arrays(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def temps(folder):
    """tfprune's temp and lock files in `folder`."""
    return glob.glob(os.path.join(str(folder), ".*.tfprune[-.]*"))


def replace_member(path, name, data):
    """Rewrite the zip archive `path` with member `name` holding `data`."""
    with zipfile.ZipFile(path) as z:
        members = {i.filename: z.read(i) for i in z.infolist()}
    members[name] = data
    os.unlink(path)
    with zipfile.ZipFile(path, "w") as z:
        for n, d in members.items():
            z.writestr(n, d)


def big_file(path):
    """A ~5 MB Keras 3 weights file with 32 Dense layers."""
    layers = [keras.Input((200,))] + [keras.layers.Dense(200) for _ in range(32)]
    keras.Sequential(layers).save_weights(path)


def cli(*args, **kwargs):
    """`python -m tfprune.cli prune-h5 ARGS` in a subprocess."""
    return subprocess.run(
        [PY, "-m", "tfprune.cli", "prune-h5", *args], capture_output=True, text=True,
        cwd=REPO, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), **kwargs,
    )


# ----------------------------------------------------------------------------- expected


def kernel_bias(layer):
    return layer.kernel.numpy(), (layer.bias.numpy() if layer.bias is not None else None)


def expected(model, names, sparsity, granularity, scope, round_to=1):
    """`{layer: (kernel, bias)}` after pruning `names`, from the live arrays."""
    arrays = {n: kernel_bias(prunable_layers(model)[n]) for n in names}
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


def untouched(model, names):
    return {n: kernel_bias(prunable_layers(model)[n]) for n in names}


def assert_pruned(model, want, unchanged):
    got = prunable_layers(model)
    for name, (k, b) in {**want, **unchanged}.items():
        gk, gb = kernel_bias(got[name])
        np.testing.assert_array_equal(gk, k, err_msg=name)
        np.testing.assert_array_equal(gb, b, err_msg=name)


def predicts(model):
    y = np.asarray(model.predict(np.ones((2, 6), "float32"), verbose=0))
    assert y.shape == (2, 3) and np.all(np.isfinite(y))


def spec_expected(model, granularity, scope="layer", sparsity=0.5):
    """`{"layer.weight path": pruned array}` of a Keras 3 model, straight from the
    registry and `masks.select_np` on the live arrays (all layers but "head")."""
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
    for (layer, targets), keep in zip(items, masks.select_np(scores, sparsity, scope)):
        for path, w, ushape in targets:
            keep_w = keep.reshape(w.shape if ushape is None else ushape)
            out[f"{layer.name}.{path}"] = np.where(keep_w, w, np.zeros((), w.dtype))
    return out


def weight_of(model, key):
    """The array of `"layer.weight path"` (a `spec_expected` key) in `model`."""
    layer_name, attr = key.split(".", 1)
    return registry.LayerSpec(()).get(model.get_layer(layer_name), attr).numpy()
