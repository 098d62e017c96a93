"""`tfprune.h5.formats`: the four layouts read right, bad files refused naming the
user's file, and a `.keras` whose config does not describe its weights refused."""

import json
import os
import re
import zipfile

import h5py
import keras
import numpy as np
import pytest
import tf_keras

from h5_files import (  # noqa: F401  (fixtures)
    H5_WARNING, conv_model, file_bytes, fresh, randomize, replace_member, saved, seq_model,
    sha256, spec_expected, temps, weight_of,
)
from tfprune import h5 as h5prune
from tfprune.h5 import formats

pytestmark = H5_WARNING
L = keras.layers


# ----------------------------------------------------------------------------- layouts


@pytest.mark.parametrize("granularity", ["weight", "unit"])
@pytest.mark.parametrize("builder", [conv_model, seq_model], ids=["conv", "seq"])
def test_layer_classes_pruned_as_in_training_in_keras3_and_tf_keras(tmp_path, builder, granularity):
    k3 = builder(keras)
    randomize(k3, 1)
    tk = builder(tf_keras)
    tk.set_weights(k3.get_weights())  # same arrays, same order for these layers
    want = spec_expected(k3, granularity)
    k3_path, tk_path = str(tmp_path / "m.weights.h5"), str(tmp_path / "m.h5")
    k3.save_weights(k3_path)
    tk.save(tk_path)

    h5prune.prune_weights_file(k3_path, 0.5, granularity=granularity)
    h5prune.prune_weights_file(tk_path, 0.5, granularity=granularity)

    k3.load_weights(k3_path)
    tk = tf_keras.models.load_model(tk_path)
    for key, w in want.items():
        np.testing.assert_array_equal(weight_of(k3, key), w, err_msg=key)
    for a, b in zip(k3.get_weights(), tk.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert want  # something was pruned


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


def test_read_layers_names_nested_layers_by_path(fresh):
    path = fresh("keras3-weights")
    with formats.open_h5(path, "r", path) as f:
        fmt, layers, _ = formats.read_layers(f, None, path)
    assert fmt == "keras3-weights-h5"
    assert [(layer.name, layer.cls) for layer in layers] == [
        ("d1", "Dense"), ("inner/d_in", "Dense"), ("inner/d_in2", "Dense"),
        ("c1", "Conv1D"), ("out", "Dense")]


def test_symlink_target_is_pruned_and_link_kept(fresh, tmp_path):
    target = fresh("keras3-weights")
    link = str(tmp_path / "link.weights.h5")
    os.symlink(target, link)
    original = file_bytes(target)
    h5prune.prune_weights_file(link, 0.5)
    assert os.path.islink(link) and os.readlink(link) == target
    assert file_bytes(target) != original


# ----------------------------------------------------------------------------- bad files


def _truncate(path):
    data = file_bytes(path)
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])


def _text_file(path):
    with open(path, "w") as f:
        f.write("not a model\n")


def _empty(path):
    open(path, "wb").close()


def _other_hdf5(path):
    os.unlink(path)
    with h5py.File(path, "w") as f:
        f["data"] = np.ones(3)


def _zip_without_weights(path):
    os.unlink(path)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", "{}")


def _not_a_zip_member(path):
    replace_member(path, "model.weights.h5", b"these are not weights")


BAD_FILES = [
    pytest.param("tfkeras-weights-h5", _truncate, r"truncated", id="truncated-hdf5"),
    pytest.param("tfkeras-weights-h5", _text_file, r"neither HDF5 nor a zip", id="not-hdf5"),
    pytest.param("keras3-weights", _empty, r"neither HDF5 nor a zip", id="empty-file"),
    pytest.param("keras3-weights", _other_hdf5, r"HDF5 file of another layout", id="other-hdf5"),
    pytest.param("keras3-archive", _truncate, r"truncated or corrupt zip", id="truncated-archive"),
    pytest.param("keras3-archive", _zip_without_weights,
                 r"model\.weights\.h5.*members: config\.json", id="archive-without-weights"),
    pytest.param("keras3-archive", _not_a_zip_member,
                 r"its `model\.weights\.h5` is not a readable HDF5 file", id="weights-not-hdf5"),
]


@pytest.mark.parametrize("dry_run", [False, True], ids=["write", "dry-run"])
@pytest.mark.parametrize("fmt,damage,message", BAD_FILES)
def test_bad_file_raises_naming_the_users_file_and_leaves_it_untouched(fresh, fmt, damage,
                                                                       message, dry_run):
    path = fresh(fmt)
    damage(path)
    digest = sha256(path)
    with pytest.raises(ValueError, match=message) as info:
        h5prune.prune_weights_file(path, 0.5, dry_run=dry_run)
    text = str(info.value)
    assert f"path={path!r}" in text  # the user's file ...
    assert ".tfprune-" not in text and "path='model.weights.h5'" not in text  # ... only
    assert sha256(path) == digest and temps(os.path.dirname(path)) == []


# ----------------------------------------------------------------------------- config vs weights


def _base():
    return keras.Sequential([keras.Input((6,)), L.Dense(16, name="d1"), L.Dense(3, name="out")])


MISMATCHES = [
    pytest.param(lambda: keras.Sequential([keras.Input((6,)), L.Dense(16), L.Dense(16),
                                           L.Dense(3)]),
                 r"the config has layers/dense_2, the weights do not",
                 id="more-layers"),
    pytest.param(lambda: keras.Sequential([keras.Input((6,)), L.Dense(20), L.Dense(3)]),
                 r"layers/dense/vars/0 is \(6, 16\) in the weights, \(6, 20\) in the config",
                 id="other-width"),
    pytest.param(lambda: keras.Sequential([keras.Input((7,)), L.Dense(16), L.Dense(3)]),
                 r"layers/dense/vars/0 is \(6, 16\) in the weights, \(7, 16\)", id="other-input"),
    pytest.param(lambda: keras.Sequential([keras.Input((6,)), L.EinsumDense("ab,bc->ac", 16,
                                                                            bias_axes="c"),
                                           L.Dense(3)]),
                 r"the weights have layers/dense_1, the config does not; the config has "
                 r"layers/einsum_dense, the weights do not", id="other-layer-class"),
]


def _swap_config(path, model):
    replace_member(path, "config.json",
                   json.dumps(keras.saving.serialize_keras_object(model)).encode())


@pytest.mark.parametrize("dry_run", [False, True], ids=["write", "dry-run"])
@pytest.mark.parametrize("other,message", MISMATCHES)
def test_archive_whose_config_does_not_match_its_weights_is_refused(tmp_path, other, message,
                                                                    dry_run):
    path = str(tmp_path / "m.keras")
    _base().save(path)
    _swap_config(path, other())
    digest = sha256(path)
    with pytest.raises(ValueError, match=r"config\.json does not match model\.weights\.h5") as e:
        h5prune.prune_weights_file(path, 0.5, dry_run=dry_run)
    assert f"path={path!r}" in str(e.value)
    assert re.search(message, str(e.value)), str(e.value)  # the difference is named
    assert sha256(path) == digest and os.listdir(tmp_path) == ["m.keras"]


def test_config_keras_cannot_build_is_compared_by_its_layers(tmp_path):
    """An unknown class (a custom layer not imported here) cannot be built: the
    model's own layers are compared instead, still catching a missing layer."""
    path = str(tmp_path / "m.keras")
    _base().save(path)
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(_base())))
    config["config"]["layers"].append({"class_name": "NotAKerasClass", "module": "nowhere",
                                       "config": {"name": "mystery"}})
    replace_member(path, "config.json", json.dumps(config).encode())
    report = h5prune.prune_weights_file(path, 0.5, dry_run=True)  # layers agree: pruned
    assert [r.layer for r in report.rows] == ["d1"]
    config["config"]["layers"].insert(1, {"class_name": "Dense", "config": {"name": "ghost",
                                                                            "units": 4}})
    replace_member(path, "config.json", json.dumps(config).encode())
    with pytest.raises(ValueError, match=r"the config has layers/dense_2, the weights do not"):
        h5prune.prune_weights_file(path, 0.5)


def _model_with_extras():
    x = keras.Input((6,))
    h = L.BatchNormalization()(L.Dropout(0.2)(L.Dense(8, name="d")(x)))
    y = L.Dense(3, name="out")(L.GRU(4)(L.Reshape((2, 4))(h)))
    model = keras.Model(x, y)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(np.ones((4, 6)), np.zeros(4), verbose=0)
    return model


def _pruned_checkpoint():
    import tfprune

    model = tfprune.prune_low_magnitude(_base(), tfprune.ConstantSparsity(0.5, 0, frequency=1))
    model.compile("adam", "mse")
    model.fit(np.ones((4, 6)), np.zeros((4, 3)), verbose=0,
              callbacks=[tfprune.callbacks.UpdatePruningStep()])
    return model


def test_a_model_still_wrapped_for_pruning_is_refused_and_left_untouched(tmp_path):
    path = str(tmp_path / "m.keras")
    _pruned_checkpoint().save(path)
    with zipfile.ZipFile(path) as z, z.open("model.weights.h5") as m, h5py.File(m) as f:
        formats.check_config_matches(f, json.loads(z.read("config.json")), path)  # no error
    before = open(path, "rb").read()
    with pytest.raises(ValueError, match=r"still wrapped for pruning.*prune_low_magnitude_d1"):
        h5prune.prune_weights_file(path, 0.5, skip_output_layer=False)
    assert open(path, "rb").read() == before


@pytest.mark.parametrize("make", [_model_with_extras], ids=["dropout-bn-gru-metrics"])
def test_matching_config_is_accepted(tmp_path, make):
    path = str(tmp_path / "m.keras")
    make().save(path)
    with zipfile.ZipFile(path) as z, z.open("model.weights.h5") as m, h5py.File(m) as f:
        formats.check_config_matches(f, json.loads(z.read("config.json")), path)  # no error
    assert h5prune.prune_weights_file(path, 0.5, skip_output_layer=False).rows
