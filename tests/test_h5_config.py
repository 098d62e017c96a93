"""`tfprune.h5.config`: what a saved model config says (classes, outputs, file keys,
variables), checked against files Keras wrote."""

import json
import zipfile

import h5py
import keras
import pytest
import tf_keras

from h5_files import H5_WARNING, build, conv_model, seq_model
from tfprune import h5 as h5prune
from tfprune.h5 import config

pytestmark = H5_WARNING


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


def _saved(model, tmp_path):
    path = str(tmp_path / "m.keras")
    model.save(path)
    with zipfile.ZipFile(path) as z, z.open("model.weights.h5") as m, h5py.File(m) as f:
        shapes = {}
        f.visititems(lambda n, o: shapes.__setitem__(n, o.shape) if isinstance(o, h5py.Dataset)
                     else None)
        return json.loads(z.read("config.json")), shapes


def test_outline_keys_are_the_keys_keras_writes(tmp_path):
    cfg, shapes = _saved(build(keras), tmp_path)
    found = config.outline(cfg)
    groups = {p.rsplit("/vars/", 1)[0] for p in shapes}
    assert {found.keys[g][-1] for g in groups} == {"d1", "d_in", "d_in2", "c1", "out"}
    assert found.keys["layers/sequential/layers/dense_1"] == ("inner", "d_in2")
    assert found.outputs == [("out",)]
    assert found.classes[("inner",)] == "Sequential" and found.classes[("c1",)] == "Conv1D"


@pytest.mark.parametrize("builder", [build, conv_model, seq_model], ids=["nested", "conv", "seq"])
def test_expected_variables_are_the_saved_files_variables(tmp_path, builder):
    cfg, shapes = _saved(builder(keras), tmp_path)
    assert config.expected_variables(cfg) == shapes


def test_expected_variables_leave_no_pending_variables_and_keep_the_config():
    from keras.src.backend.common import global_state

    vgg_like = keras.Sequential([keras.Input((4096,)), keras.layers.Dense(4096),
                                 keras.layers.Dense(4096)])  # 2 x 64 MB of float32
    cfg = keras.saving.serialize_keras_object(vgg_like)
    before = list(global_state.get_global_attribute("uninitialized_variables", []))
    shapes = config.expected_variables(cfg)
    assert shapes["layers/dense_1/vars/0"] == (4096, 4096)
    assert global_state.get_global_attribute("uninitialized_variables", []) == before
    assert cfg == keras.saving.serialize_keras_object(vgg_like)  # the config is not consumed
