"""tfmot pruning code runs on tfprune with only the import changed.

Ports of tensorflow-model-optimization's own pruning unit tests
(`tensorflow_model_optimization/python/core/sparsity/keras/*_test.py`, tfmot 0.8.1)
and of its pruning tutorials (`g3doc/guide/pruning/*.ipynb`), written the way tfmot
users write them: `import tfprune as tfmot`, then `tfmot.sparsity.keras.X` with
tfmot's names, argument spellings and call patterns. `import tf_keras as keras`
becomes `import keras` (Keras 3). Where Keras 3 itself differs from tf_keras
(`.weights.h5` suffix for `save_weights`, no dataset download here) or where tfprune
differs on purpose (README, "Migrating from tfmot"), the test says so.

Data are tiny and step counts few: these tests check that the code paths run and
mean the same thing (exact sparsity, masks applied, outputs equal), not accuracy.

Tests marked `xfail(strict=True, reason="lead: ...")` are the exact specification of
what the modules owned by the lead do not do yet: they fail today and must pass when
the item is done (strict: the suite reports the day they pass, so the marker goes).
"""

import gzip
import json
import os
import pathlib
import re
import tempfile
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfprune as tfmot  # was: import tensorflow_model_optimization as tfmot

layers = keras.layers

# The public names of tfmot 0.8.1's `tfmot.sparsity.keras`
# (tensorflow_model_optimization/python/core/api/sparsity/keras/__init__.py).
TFMOT_SPARSITY_KERAS = (
    "prune_low_magnitude", "prune_scope", "strip_pruning", "UpdatePruningStep",
    "PruningSummaries", "PruningSchedule", "ConstantSparsity", "PolynomialDecay",
    "PrunableLayer", "PruningPolicy", "PruneForLatencyOnXNNPack",
)
# Those tfprune does not provide yet; looked up on `tfprune` when used.
LATER = ("PruningPolicy", "PruneForLatencyOnXNNPack")


def lead(item):
    return pytest.mark.xfail(strict=True, reason=f"lead: {item}")


def sparsity_of(value):
    value = np.asarray(value)
    return float(np.mean(value == 0))


def exact_zeros(n, sparsity):
    """Zeros that tfprune's exact count gives: n - max(round(n * (1 - s)), 1)."""
    return n - max(int(np.round(n * (1.0 - sparsity))), 1)


def update_step():
    return tfmot.sparsity.keras.UpdatePruningStep()


# ---------------------------------------------------------------------------
# The namespace
# ---------------------------------------------------------------------------


def _installed_tfmot_names():
    """Names imported by the installed tfmot's api module (read as text: importing
    tfmot would load tf_keras into this process)."""
    import importlib.util

    spec = importlib.util.find_spec("tensorflow_model_optimization")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = pathlib.Path(list(spec.submodule_search_locations)[0])
    api = root / "python/core/api/sparsity/keras/__init__.py"
    return re.findall(r"^from \S+ import (\w+)", api.read_text(), re.M)


def test_our_list_of_tfmot_names_is_the_installed_tfmots():
    names = _installed_tfmot_names()
    if names is None:
        pytest.skip("tensorflow-model-optimization is not installed (extra `bench`)")
    assert sorted(names) == sorted(TFMOT_SPARSITY_KERAS)


@pytest.mark.parametrize("name", [n for n in TFMOT_SPARSITY_KERAS if n not in LATER])
def test_every_supported_tfmot_name_is_the_tfprune_object(name):
    value = getattr(tfmot.sparsity.keras, name)
    if hasattr(tfmot, name):
        assert value is getattr(tfmot, name)
    elif name in ("UpdatePruningStep", "PruningSummaries"):
        assert value is getattr(tfmot.callbacks, name)
    assert name in dir(tfmot.sparsity.keras) and name in tfmot.sparsity.keras.__all__


@pytest.mark.parametrize("name", LATER + ("collect_prunable_layers",))
def test_names_tfprune_lacks_are_clear_errors_and_appear_once_provided(name, monkeypatch):
    if hasattr(tfmot, name):
        assert getattr(tfmot.sparsity.keras, name) is getattr(tfmot, name)
    else:
        with pytest.raises(AttributeError, match=rf"tfprune\.sparsity\.keras\.{name}.*not provided"):
            getattr(tfmot.sparsity.keras, name)
        assert not hasattr(tfmot.sparsity.keras, name)
        sentinel = object()
        monkeypatch.setattr(tfmot, name, sentinel, raising=False)
    assert getattr(tfmot.sparsity.keras, name) is getattr(tfmot, name)
    assert name in dir(tfmot.sparsity.keras)


def test_unknown_names_are_plain_attribute_errors():
    with pytest.raises(AttributeError, match="no attribute 'prune_lowmagnitude'"):
        tfmot.sparsity.keras.prune_lowmagnitude


def test_the_old_tfmot_import_spellings_work():
    # tfmot tutorials use both `tfmot.sparsity.keras.X` and these.
    from tfprune.sparsity import keras as sparsity
    from tfprune.sparsity.keras import ConstantSparsity, prune_low_magnitude

    assert sparsity is tfmot.sparsity.keras
    assert prune_low_magnitude is tfmot.prune_low_magnitude
    assert ConstantSparsity is tfmot.ConstantSparsity


def _simple_dense_model():
    # tfmot's keras_test_utils.build_simple_dense_model()
    return keras.Sequential([
        layers.Dense(8, activation="relu", input_shape=(10,)),
        layers.Dense(5, activation="softmax"),
    ])


def test_prune_scope_is_a_harmless_context_manager(tmp_path):
    # tfmot: testPruneScope_NeededForKerasModel (here the scope is not needed).
    pruned_model = tfmot.sparsity.keras.prune_low_magnitude(_simple_dense_model())
    path = str(tmp_path / "pruned.keras")
    pruned_model.save(path)
    with tfmot.sparsity.keras.prune_scope():
        inside = keras.models.load_model(path)
    outside = keras.models.load_model(path)
    for loaded in (inside, outside):
        assert [type(l).__name__ for l in loaded.layers] == ["PruneLowMagnitude"] * 2
        assert loaded.layers[0].pruning_schedule == pruned_model.layers[0].pruning_schedule
    # tfmot also resolves bare class names inside the scope.
    with tfmot.sparsity.keras.prune_scope():
        cls = keras.saving.get_registered_object("PruneLowMagnitude")
    assert cls is tfmot.PruneLowMagnitude


def test_prune_scope_model_from_config_keeps_built_state():
    # tfmot: testPruneSequentialModelPreservesBuiltState (with InputLayer).
    model = keras.Sequential([layers.Dense(10, input_shape=(10,)), layers.Dense(10)])
    assert model.built
    pruned_model = tfmot.sparsity.keras.prune_low_magnitude(model)
    with tfmot.sparsity.keras.prune_scope():
        loaded_model = keras.models.model_from_json(pruned_model.to_json())
    assert loaded_model.built
    assert [type(l).__name__ for l in loaded_model.layers] == ["PruneLowMagnitude"] * 2


# ---------------------------------------------------------------------------
# prune_test.py
# ---------------------------------------------------------------------------


class CustomPrunableLayer(layers.Dense, tfmot.sparsity.keras.PrunableLayer):
    def get_prunable_weights(self):
        return [self.kernel]


class CustomNonPrunableLayer(layers.Dense):
    pass


PARAMS = {"pruning_schedule": tfmot.sparsity.keras.ConstantSparsity(0.5, 0)}


def _count_pruned_layers(model):
    count = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            count += _count_pruned_layers(layer)
        elif isinstance(layer, tfmot.PruneLowMagnitude):
            count += 1
    return count


def test_prune_keras_prunable_layer():
    layer = layers.Dense(10)
    wrapped_layer = tfmot.sparsity.keras.prune_low_magnitude(layer, **PARAMS)
    model = keras.Sequential()
    model.add(wrapped_layer)
    model.build(input_shape=(10, 1))
    assert isinstance(wrapped_layer, tfmot.PruneLowMagnitude)
    assert wrapped_layer.layer is layer
    assert wrapped_layer.pruning_schedule == PARAMS["pruning_schedule"]


def test_prune_custom_prunable_layer_prunes_only_its_prunable_weights():
    wrapped_layer = tfmot.sparsity.keras.prune_low_magnitude(CustomPrunableLayer(10), **PARAMS)
    model = keras.Sequential([keras.Input((4,)), wrapped_layer])
    assert wrapped_layer.layer.get_prunable_weights() == [wrapped_layer.layer.kernel]
    report = tfmot.sparsity_report(model)
    assert [(r.layer, r.weight) for r in report.rows] == [(wrapped_layer.layer.name, "kernel")]


def test_prune_unsupported_layer_with_weights_raises_value_error():
    # tfmot: testPruneKerasUnsupportedLayer uses ConvLSTM2D, which tfprune prunes on
    # purpose (an RNN subclass: its cell's kernels, matched with isinstance); a layer
    # with weights tfprune knows nothing about is still an error.
    class Scale(keras.layers.Layer):
        def build(self, shape):
            self.w = self.add_weight(shape=shape[-1:])

        def call(self, x):
            return x * self.w

    with pytest.raises(ValueError, match="PrunableLayer"):
        tfmot.sparsity.keras.prune_low_magnitude(Scale(), **PARAMS)
    conv_lstm = tfmot.sparsity.keras.prune_low_magnitude(layers.ConvLSTM2D(2, (5, 5)), **PARAMS)
    conv_lstm.build((None, 3, 12, 12, 1))
    assert [t.path for t in conv_lstm.targets] == ["cell.kernel", "cell.recurrent_kernel"]


def test_dense_subclass_is_pruned_unlike_tfmot():
    # tfmot: testPruneCustomNonPrunableLayer raises (exact class match). tfprune
    # matches with isinstance on purpose (README, migration).
    wrapped = tfmot.sparsity.keras.prune_low_magnitude(CustomNonPrunableLayer(10), **PARAMS)
    assert isinstance(wrapped, tfmot.PruneLowMagnitude)


def test_prune_valid_layers_list():
    # tfmot: testPruneValidLayersListSuccessful (tfprune leaves Dropout unwrapped).
    model_layers = [layers.Dense(10), layers.Dropout(0.4), CustomPrunableLayer(10)]
    pruned_layers = tfmot.sparsity.keras.prune_low_magnitude(model_layers, **PARAMS)
    assert len(pruned_layers) == 3
    assert pruned_layers[0].layer is model_layers[0]
    assert pruned_layers[1] is model_layers[1]
    assert pruned_layers[2].layer is model_layers[2]


def test_wrapping_layers_without_weights_is_a_no_op_like_tfmot():
    # tfmot: testPruneKerasNonPrunableLayer and pruning_wrapper_test.testPruneModel
    # wrap every layer of a Sequential, pooling and dropout included.
    Prune = tfmot.sparsity.keras.prune_low_magnitude
    model = keras.Sequential()
    model.add(Prune(layers.Conv2D(4, 5), **PARAMS))
    model.add(Prune(layers.MaxPooling2D((2, 2), (2, 2)), **PARAMS))
    model.add(Prune(layers.Flatten(), **PARAMS))
    model.add(Prune(layers.Dense(16), **PARAMS))
    model.add(Prune(layers.Dropout(0.4), **PARAMS))
    model.add(Prune(layers.Dense(3), **PARAMS))
    model.build(input_shape=(1, 12, 12, 1))
    report = tfmot.sparsity_report(model)
    assert len(report.rows) == 3  # Conv2D, Dense, Dense kernels
    model.compile("sgd", "mse")
    model.fit(np.ones((4, 12, 12, 1), "float32"), np.ones((4, 3), "float32"), verbose=0,
              callbacks=[update_step()])


def test_prune_model_does_not_wrap_an_already_wrapped_layer_twice():
    # tfmot: testPruneModelDoesNotWrapAlreadyWrappedLayer (same parameters).
    model = keras.Sequential([
        keras.Input((10,)), layers.Dense(10),
        tfmot.sparsity.keras.prune_low_magnitude(layers.Dense(10), **PARAMS)])
    pruned_model = tfmot.sparsity.keras.prune_low_magnitude(model, **PARAMS)
    assert len(pruned_model.layers) == 2
    assert all(isinstance(l, tfmot.PruneLowMagnitude) for l in pruned_model.layers)
    assert not isinstance(pruned_model.layers[1].layer, tfmot.PruneLowMagnitude)


def test_pruned_model_inference_needs_no_step_callback():
    # tfmot: testPruneInferenceWorks_PruningStepCallbackNotRequired.
    model = tfmot.sparsity.keras.prune_low_magnitude(
        keras.Sequential([
            layers.Dense(10, activation="relu", input_shape=(100,)),
            layers.Dense(2, activation="sigmoid"),
        ]), **PARAMS)
    model.compile(loss=keras.losses.categorical_crossentropy,
                  optimizer=keras.optimizers.SGD(), metrics=["accuracy"])
    before = int(model.layers[0].pruning_step.numpy())
    model.predict(np.random.rand(64, 100), verbose=0)
    model.evaluate(np.random.rand(64, 100),
                   keras.utils.to_categorical(np.random.randint(2, size=(64, 1))), verbose=0)
    assert int(model.layers[0].pruning_step.numpy()) == before


def test_prune_sequential_model_with_and_without_input_layer():
    # tfmot: testPruneSequentialModel.
    model = keras.Sequential([layers.Dense(10), layers.Dense(10)])
    assert _count_pruned_layers(tfmot.sparsity.keras.prune_low_magnitude(model, **PARAMS)) == 2
    model = keras.Sequential([layers.Dense(10, input_shape=(10,)), layers.Dense(10)])
    assert _count_pruned_layers(tfmot.sparsity.keras.prune_low_magnitude(model, **PARAMS)) == 2


def test_prune_sequential_model_preserves_unbuilt_state():
    # tfmot: testPruneSequentialModelPreservesBuiltState (no InputLayer).
    model = keras.Sequential([layers.Dense(10), layers.Dense(10)])
    pruned_model = tfmot.sparsity.keras.prune_low_magnitude(model, **PARAMS)
    assert model.built is False and pruned_model.built is False
    with tfmot.sparsity.keras.prune_scope():
        loaded_model = keras.models.model_from_json(pruned_model.to_json())
    assert loaded_model.built is False


def test_prune_functional_model_and_reused_layer():
    # tfmot: testPruneFunctionalModel, testPruneFunctionalModelWithLayerReused,
    # testPruneFunctionalModelPreservesBuiltState (tfmot also wraps the Add).
    i1, i2 = keras.Input(shape=(10,)), keras.Input(shape=(10,))
    outputs = layers.Add()([layers.Dense(10)(i1), layers.Dense(10)(i2)])
    model = keras.Model(inputs=[i1, i2], outputs=outputs)
    pruned_model = tfmot.sparsity.keras.prune_low_magnitude(model, **PARAMS)
    assert _count_pruned_layers(pruned_model) == 2 and model.built and pruned_model.built
    with tfmot.sparsity.keras.prune_scope():
        loaded_model = keras.models.model_from_json(pruned_model.to_json())
    assert loaded_model.built and _count_pruned_layers(loaded_model) == 2

    inp = keras.Input(shape=(10,))
    dense_layer = layers.Dense(10)
    x = dense_layer(dense_layer(inp))
    pruned = tfmot.sparsity.keras.prune_low_magnitude(keras.Model(inp, x), **PARAMS)
    assert _count_pruned_layers(pruned) == 1


def test_prune_model_recursively():
    # tfmot: testPruneModelRecursively.
    internal_model = keras.Sequential([layers.Dense(10, input_shape=(10,))])
    original_model = keras.Sequential([internal_model, layers.Dense(10)])
    pruned_model = tfmot.sparsity.keras.prune_low_magnitude(original_model, **PARAMS)
    assert _count_pruned_layers(pruned_model) == 2


def test_subclassed_model_is_pruned_unlike_tfmot():
    # tfmot: testPruneSubclassModel raises; tfprune prunes subclassed models in place.
    class TestSubclassedModel(keras.Model):
        def __init__(self):
            super().__init__(name="test_model")
            self.layer1 = layers.Dense(10, activation="relu")

        def call(self, inputs, training=None):
            return self.layer1(inputs)

    model = tfmot.sparsity.keras.prune_low_magnitude(TestSubclassedModel(), **PARAMS)
    assert isinstance(model.layer1, tfmot.PruneLowMagnitude)


def test_prune_misc_object_is_an_error():
    # tfmot: testPruneMiscObject (ValueError there).
    with pytest.raises((TypeError, ValueError), match="object"):
        tfmot.sparsity.keras.prune_low_magnitude(object(), **PARAMS)


def test_strip_pruning_functional_model_gives_the_original_config():
    # tfmot: testStripPruningFunctionalModel.
    i1, i2 = keras.Input(shape=(10,)), keras.Input(shape=(10,))
    outputs = layers.Add()([layers.Dense(10)(i1), layers.Dense(10)(i2)])
    model = keras.Model(inputs=[i1, i2], outputs=outputs)
    pruned_model = tfmot.sparsity.keras.prune_low_magnitude(model, **PARAMS)
    stripped_model = tfmot.sparsity.keras.strip_pruning(pruned_model)
    assert _count_pruned_layers(stripped_model) == 0
    assert model.get_config() == stripped_model.get_config()


def test_strip_pruning_of_a_never_built_sequential_model():
    # tfmot: testStripPruningSequentialModel.
    model = keras.Sequential([layers.Dense(10), layers.Dense(10)])
    pruned_model = tfmot.sparsity.keras.prune_low_magnitude(model, **PARAMS)
    stripped_model = tfmot.sparsity.keras.strip_pruning(pruned_model)
    assert _count_pruned_layers(stripped_model) == 0
    assert stripped_model.built is False
    assert model.get_config() == stripped_model.get_config()


def test_pruned_weights_checkpoint_loads_into_the_same_architecture(tmp_path):
    # tfmot: testPruneScope_NotNeededForKerasCheckpoint (Keras 3: `.weights.h5`).
    pruned_model = tfmot.sparsity.keras.prune_low_magnitude(_simple_dense_model())
    x = np.random.rand(8, 10).astype("float32")
    pruned_model.layers[0].layer.kernel.assign(np.random.rand(10, 8).astype("float32"))
    path = str(tmp_path / "pruned.weights.h5")
    pruned_model.save_weights(path)
    same_architecture_model = tfmot.sparsity.keras.prune_low_magnitude(_simple_dense_model())
    same_architecture_model.load_weights(path)
    np.testing.assert_array_equal(same_architecture_model.predict(x, verbose=0),
                                  pruned_model.predict(x, verbose=0))


def test_pruned_model_exports_a_tf2_saved_model(tmp_path):
    # tfmot: testPruneScope_NotNeededForTF2SavedModel. Keras 3 exports with
    # `model.export` (ANCHORS: `tf.saved_model.save` of a Keras 3 model is unreliable).
    pruned_model = tfmot.sparsity.keras.prune_low_magnitude(_simple_dense_model())
    x = np.random.rand(4, 10).astype("float32")
    pruned_model.export(str(tmp_path / "saved"), verbose=False)
    loaded = tf.saved_model.load(str(tmp_path / "saved"))
    np.testing.assert_allclose(loaded.serve(x).numpy(), pruned_model.predict(x, verbose=0),
                               rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------
# pruning_wrapper_test.py
# ---------------------------------------------------------------------------


def test_wrapper_on_dense_embedding_conv2d_prunes_one_kernel_each():
    Prune = tfmot.PruneLowMagnitude
    params = {"pruning_schedule": tfmot.sparsity.keras.ConstantSparsity(0.5, 0, frequency=1)}
    for layer, shape, x in (
        (layers.Dense(10), (10, 1), np.ones((4, 1), "float32")),
        (layers.Embedding(10, 10), (10, 1), np.ones((4, 1), "int32")),
        (layers.Conv2D(4, (3, 3)), (1, 16, 16, 4), np.ones((4, 16, 16, 4), "float32")),
    ):
        model = keras.Sequential()
        model.add(Prune(layer, **params))
        model.build(input_shape=shape)
        assert len(tfmot.sparsity_report(model).rows) == 1
        model.compile("sgd", "mse")
        y = model.predict(x, verbose=0)
        model.fit(x, y, verbose=0, callbacks=[update_step()])
        assert sparsity_of(layer.get_weights()[0]) == 0.5


def test_wrapper_on_custom_layers():
    # tfmot: testCustomLayerNonPrunable, testCustomLayerPrunable.
    class CustomLayer(layers.Layer):
        def __init__(self, input_dim=16, output_dim=32):
            super().__init__()
            self.weight = self.add_weight(shape=(input_dim, output_dim),
                                          initializer="random_normal", trainable=True)
            self.bias = self.add_weight(shape=(output_dim,), initializer="zeros",
                                        trainable=True)

        def call(self, inputs):
            return tf.matmul(inputs, self.weight) + self.bias

    class CustomLayerPrunable(CustomLayer):
        def get_prunable_weights(self):
            return [self.weight, self.bias]

    layer = CustomLayer(input_dim=16, output_dim=32)
    layer(keras.Input(shape=(16,)))
    with pytest.raises(ValueError):
        tfmot.PruneLowMagnitude(layer)
    layer = CustomLayerPrunable(input_dim=16, output_dim=32)
    layer(keras.Input(shape=(16,)))
    pruned_layer = tfmot.PruneLowMagnitude(layer)
    assert pruned_layer.name == "prune_low_magnitude_custom_layer_prunable"


def test_collect_prunable_layers():
    inner = keras.Sequential([keras.Input((6,)),
                              tfmot.prune_low_magnitude(layers.Dense(6), **PARAMS)])
    model = keras.Sequential([keras.Input((4,)),
                              tfmot.prune_low_magnitude(layers.Dense(6), **PARAMS),
                              layers.Dropout(0.5), inner,
                              tfmot.prune_low_magnitude(layers.Dense(3), **PARAMS)])
    found = tfmot.collect_prunable_layers(model)
    assert found == [model.layers[0], inner.layers[0], model.layers[3]]
    assert tfmot.sparsity.keras.collect_prunable_layers is tfmot.collect_prunable_layers


# ---------------------------------------------------------------------------
# pruning_callbacks_test.py
# ---------------------------------------------------------------------------

BATCH_SIZE = 20


def _pruned_model_setup(custom_training_loop=False):
    pruned_model = tfmot.sparsity.keras.prune_low_magnitude(_simple_dense_model())
    x_train = np.random.rand(BATCH_SIZE, 10)
    y_train = keras.utils.to_categorical(np.random.randint(5, size=(BATCH_SIZE, 1)), 5)
    loss = keras.losses.categorical_crossentropy
    optimizer = keras.optimizers.SGD()
    if custom_training_loop:
        return pruned_model, loss, optimizer, x_train, y_train
    pruned_model.compile(loss=loss, optimizer=optimizer, metrics=["accuracy"])
    return pruned_model, x_train, y_train


def test_update_pruning_steps_and_logs_summaries(tmp_path):
    log_dir = str(tmp_path)
    pruned_model, x_train, y_train = _pruned_model_setup()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NOTHING WAS PRUNED (frequency 100)
        pruned_model.fit(x_train, y_train, batch_size=BATCH_SIZE, epochs=3, verbose=0,
                         callbacks=[tfmot.sparsity.keras.UpdatePruningStep(),
                                    tfmot.sparsity.keras.PruningSummaries(log_dir=log_dir)])
    assert int(keras.ops.convert_to_numpy(pruned_model.layers[0].pruning_step)) == 3
    assert int(keras.ops.convert_to_numpy(pruned_model.layers[1].pruning_step)) == 3
    assert os.listdir(log_dir)


def _custom_training_loop(pruned_model, loss, optimizer, x_train, y_train, log_dir, epochs=3):
    """tfmot's testUpdatePruningStepsAndLogsSummaries_CustomTrainingLoop, as written."""
    unused_arg = -1
    step_callback = tfmot.sparsity.keras.UpdatePruningStep()
    log_callback = tfmot.sparsity.keras.PruningSummaries(log_dir=log_dir)
    step_callback.set_model(pruned_model)
    log_callback.set_model(pruned_model)
    pruned_model.optimizer = optimizer

    step_callback.on_train_begin()
    for _ in range(epochs):
        log_callback.on_epoch_begin(epoch=unused_arg)
        # only one batch given batch_size = 20 and input shape.
        step_callback.on_train_batch_begin(batch=unused_arg)
        inp = np.reshape(x_train, [BATCH_SIZE, 10])  # original shape: from [10].
        with tf.GradientTape() as tape:
            logits = pruned_model(inp, training=True)
            loss_value = loss(y_train, logits)
            grads = tape.gradient(loss_value, pruned_model.trainable_variables)
            optimizer.apply_gradients(zip(grads, pruned_model.trainable_variables))
        step_callback.on_epoch_end(batch=unused_arg)


def test_update_pruning_steps_and_logs_summaries_custom_training_loop(tmp_path):
    pruned_model, loss, optimizer, x_train, y_train = _pruned_model_setup(True)
    _custom_training_loop(pruned_model, loss, optimizer, x_train, y_train, str(tmp_path))
    assert int(keras.ops.convert_to_numpy(pruned_model.layers[0].pruning_step)) == 3
    assert int(keras.ops.convert_to_numpy(pruned_model.layers[1].pruning_step)) == 3
    assert os.listdir(str(tmp_path))


def test_inference_does_not_advance_the_pruning_step():
    # tfmot: testUpdatePruningStepsAndLogsSummaries_RunInference.
    pruned_model, _, _, x_train, _ = _pruned_model_setup(True)
    before = [int(l.pruning_step.numpy()) for l in pruned_model.layers]
    pruned_model(x_train)
    assert [int(l.pruning_step.numpy()) for l in pruned_model.layers] == before


def test_training_without_the_step_callback_is_an_error():
    # tfmot: testPruneTrainingRaisesError_PruningStepCallbackMissing (and its
    # custom-loop twin). tfmot raises InvalidArgumentError; tfprune a RuntimeError
    # that names the fix.
    pruned_model, x_train, y_train = _pruned_model_setup()
    with pytest.raises(RuntimeError, match="UpdatePruningStep"):
        pruned_model.fit(x_train, y_train, verbose=0)
    # Custom loop: tfmot raises in the forward pass; tfprune prunes in the optimizer
    # step (the masks are the weights' constraints), so it raises there.
    pruned_model, loss, optimizer, x_train, y_train = _pruned_model_setup(True)
    with pytest.raises(RuntimeError, match="UpdatePruningStep"):
        with tf.GradientTape() as tape:
            out = pruned_model(np.reshape(x_train, [BATCH_SIZE, 10]), training=True)
            value = loss(y_train, out)
        grads = tape.gradient(value, pruned_model.trainable_variables)
        optimizer.apply_gradients(zip(grads, pruned_model.trainable_variables))


def test_pruning_summaries_log_dir_must_be_a_non_empty_string():
    # tfmot: testPruningSummariesRaisesError_LogDirNotNonEmptyString.
    for bad in ("", None, object()):
        with pytest.raises(ValueError, match="log_dir"):
            tfmot.sparsity.keras.PruningSummaries(log_dir=bad)


def test_update_pruning_step_on_a_model_without_pruned_layers_is_a_no_op():
    model = _simple_dense_model()
    model.compile("sgd", "mse")
    x = np.random.rand(8, 10).astype("float32")
    y = np.random.rand(8, 5).astype("float32")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, batch_size=4, epochs=2, verbose=0,
                  callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    messages = [str(w.message) for w in caught if "prun" in str(w.message).lower()]
    assert len(messages) == 1, messages
    assert int(model.optimizer.iterations.numpy()) == 4


# ---------------------------------------------------------------------------
# pruning_schedule_test.py
# ---------------------------------------------------------------------------

SCHEDULES = {
    "constant_sparsity": lambda b, e, f=10: tfmot.sparsity.keras.ConstantSparsity(0.5, b, e, f),
    "polynomial_decay": lambda b, e, f=10: tfmot.sparsity.keras.PolynomialDecay(0.2, 0.8, b, e, 3, f),
}


@pytest.fixture(autouse=False)
def quiet_schedules():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "end_step not a multiple of frequency"
        yield


@pytest.mark.parametrize("kind", SCHEDULES)
def test_schedule_step_arguments_are_validated_like_tfmot(kind, quiet_schedules):
    make = SCHEDULES[kind]
    for begin_step in (-1, -5):
        with pytest.raises(ValueError):
            make(begin_step, 1000)
    for begin_step in (0, 1, 100):
        make(begin_step, 1000)
    with pytest.raises(ValueError):
        make(10, 5)
    make(10, 10)
    make(10, 20)
    for frequency in (0, -1, -5):
        with pytest.raises(ValueError):
            make(10, 1000, frequency)
    make(10, 1000, 1)
    make(0, 0)


def test_polynomial_decay_end_step_below_minus_one_is_rejected(quiet_schedules):
    # tfmot: testEndStepGreaterThanEqualsZero.
    with pytest.raises(ValueError, match="end_step"):
        SCHEDULES["polynomial_decay"](10, -5)


def test_constant_sparsity_end_step_below_minus_one_is_rejected(quiet_schedules):
    # tfmot: testEndStepGreaterThanEqualsZero.
    with pytest.raises(ValueError, match="end_step"):
        SCHEDULES["constant_sparsity"](10, -5)


def test_schedule_sparsity_values_are_validated_like_tfmot(quiet_schedules):
    for construct in (lambda s: tfmot.sparsity.keras.ConstantSparsity(s, 0),
                      lambda s: tfmot.sparsity.keras.PolynomialDecay(s, 0.8, 0, 10),
                      lambda s: tfmot.sparsity.keras.PolynomialDecay(0.2, s, 0, 10)):
        for bad in (-0.001, -1.0, -10.0, 1.0, 10.0):
            with pytest.raises(ValueError):
                construct(bad)
        for good in (0.0, 0.001, 0.5, 0.99):
            construct(good)


@pytest.mark.parametrize("kind", SCHEDULES)
def test_schedule_prunes_only_in_range_and_on_frequency_steps(kind, quiet_schedules):
    sparsity = SCHEDULES[kind](100, 200, 1)
    for step, expected in ((90, False), (99, False), (100, True), (110, True), (200, True),
                           (201, False), (210, False)):
        assert bool(sparsity(tf.Variable(step))[0]) is expected, step
    sparsity = SCHEDULES[kind](100, 200, 10)
    for step, expected in ((109, False), (111, False), (100, True), (110, True)):
        assert bool(sparsity(tf.Variable(step))[0]) is expected, step


def test_constant_sparsity_prunes_forever_with_end_step_minus_one():
    sparsity = tfmot.sparsity.keras.ConstantSparsity(0.5, 0, -1, 10)
    for step in (10000, 100000000):
        should_prune, value = sparsity(tf.Variable(step))
        assert bool(should_prune)
        np.testing.assert_allclose(float(value), 0.5)
    sparsity = tfmot.sparsity.keras.ConstantSparsity(0.5, 100, 200, 10)
    for step in (100, 110, 200):
        np.testing.assert_allclose(float(sparsity(tf.Variable(step))[1]), 0.5)


def test_polynomial_decay_values_are_tfmots():
    # tfmot: testPolynomialDecay_PrunesCorrectly (values from tf.polynomial_decay).
    sparsity = tfmot.sparsity.keras.PolynomialDecay(0.2, 0.8, 100, 110, 3, 2)
    for step, expected in ((100, 0.2), (102, 0.4928), (105, 0.725), (110, 0.8)):
        np.testing.assert_allclose(float(sparsity(tf.Variable(step))[1]), expected, rtol=1e-6)
    with pytest.raises(ValueError):
        tfmot.sparsity.keras.PolynomialDecay(0.4, 0.8, 10, -1)


@pytest.mark.parametrize("schedule", [
    lambda: tfmot.sparsity.keras.ConstantSparsity(0.7, 10, 20, 10),
    lambda: tfmot.sparsity.keras.PolynomialDecay(0.2, 0.6, 10, 20, 5, 10),
])
def test_schedule_serialize_deserialize_round_trip(schedule):
    sparsity = schedule()
    config = keras.saving.serialize_keras_object(sparsity)
    sparsity_deserialized = keras.saving.deserialize_keras_object(config)
    assert sparsity.__dict__ == sparsity_deserialized.__dict__


# What tfmot 0.8.1's get_config() returns (its serialized form, as saved in files).
TFMOT_CONFIGS = [
    ("ConstantSparsity", {"class_name": "ConstantSparsity", "config": {
        "target_sparsity": 0.7, "begin_step": 10, "end_step": 20, "frequency": 10}}),
    ("PolynomialDecay", {"class_name": "PolynomialDecay", "config": {
        "initial_sparsity": 0.2, "final_sparsity": 0.6, "begin_step": 10, "end_step": 20,
        "power": 5, "frequency": 10}}),
]


@pytest.mark.parametrize("name,config", TFMOT_CONFIGS)
def test_schedule_from_tfmot_serialized_config(name, config):
    cls = getattr(tfmot.sparsity.keras, name)
    schedule = cls.from_config(config)
    assert schedule == cls(**config["config"])


class _EveryOtherStep(tfmot.sparsity.keras.PruningSchedule):
    """A user schedule written tfmot's way: `__call__(step)` -> (should_prune, sparsity)."""

    def __init__(self, target=0.5):
        self.target = target

    def __call__(self, step):
        return (tf.math.equal(tf.math.floormod(step, 2), 0),
                tf.constant(self.target, dtype=tf.float32))

    def get_config(self):
        return {"target": self.target}


class _WithTfmotHelper(tfmot.sparsity.keras.PruningSchedule):
    """The other tfmot idiom: the base class's `_should_prune_in_step` helper."""

    def __init__(self, target=0.75, begin_step=2, end_step=-1, frequency=2):
        self.target, self.begin_step, self.end_step, self.frequency = (
            target, begin_step, end_step, frequency)

    def __call__(self, step):
        return (self._should_prune_in_step(step, self.begin_step, self.end_step,
                                           self.frequency),
                tf.constant(self.target, dtype=tf.float32))

    def get_config(self):
        return {"target": self.target, "begin_step": self.begin_step,
                "end_step": self.end_step, "frequency": self.frequency}


@pytest.mark.parametrize("schedule,target", [(_EveryOtherStep(0.5), 0.5),
                                             (_WithTfmotHelper(0.75), 0.75)])
def test_user_schedule_written_the_tfmot_way_drives_training(schedule, target):
    model = tfmot.sparsity.keras.prune_low_magnitude(
        keras.Sequential([keras.Input((8,)), layers.Dense(16), layers.Dense(4)]),
        pruning_schedule=schedule)
    model.compile("adam", "mse")
    x = np.random.rand(16, 8).astype("float32")
    model.fit(x, np.random.rand(16, 4).astype("float32"), batch_size=4, epochs=1, verbose=0,
              callbacks=[update_step()])
    kernel = model.layers[0].layer.kernel.numpy()
    assert int((kernel == 0).sum()) == exact_zeros(kernel.size, target)


# ---------------------------------------------------------------------------
# prune_low_magnitude(layer, **kwargs), input_shape, attention, RNN cells
# ---------------------------------------------------------------------------


def test_prune_low_magnitude_forwards_keyword_arguments_to_the_wrapper():
    # tfmot: pruning_wrapper_test.testEmbedding passes input_shape= to the wrapper.
    wrapped = tfmot.sparsity.keras.prune_low_magnitude(
        layers.Embedding(10, 10), input_shape=(10,), **PARAMS)
    model = keras.Sequential([wrapped, layers.Flatten(), layers.Dense(2)])
    assert model.built
    assert model.output_shape == (None, 2)


def test_wrapped_first_layer_keeps_its_input_shape():
    def make(wrap):
        return keras.Sequential([
            wrap(layers.Conv2D(4, 5, input_shape=(28, 28, 1))),
            layers.Flatten(),
            layers.Dense(10),
        ])
    plain = make(lambda l: l)
    model = make(lambda l: tfmot.sparsity.keras.prune_low_magnitude(
        l, pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(0.5, 0, frequency=1)))
    assert model.built and plain.built
    assert model.input_shape == plain.input_shape == (None, 28, 28, 1)
    assert model.count_params() == plain.count_params()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(np.random.rand(8, 28, 28, 1).astype("float32"), np.arange(8) % 10,
              batch_size=4, verbose=0, callbacks=[update_step()])
    assert int((model.layers[0].layer.kernel.numpy() == 0).sum()) == exact_zeros(100, 0.5)


def test_multi_head_attention_called_with_keywords_is_pruned():
    inp = keras.layers.Input(shape=(28, 28))
    x = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4, name="mha")(
        query=inp, value=inp)
    x = keras.layers.Flatten()(x)
    out = keras.layers.Dense(10)(x)
    model = keras.Model(inputs=inp, outputs=out)
    x_train = np.random.rand(8, 28, 28).astype("float32")
    expected = model.predict(x_train, verbose=0)
    pruning_params = {"pruning_schedule": tfmot.sparsity.keras.ConstantSparsity(
        0.75, begin_step=0, frequency=1)}
    model_for_pruning = tfmot.sparsity.keras.prune_low_magnitude(model, **pruning_params)
    np.testing.assert_allclose(model_for_pruning.predict(x_train, verbose=0), expected,
                               rtol=1e-5, atol=1e-5)
    model_for_pruning.compile(
        optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model_for_pruning.fit(x_train, np.arange(8) % 10, batch_size=4, verbose=0,
                          callbacks=[update_step()])
    mha = [l for l in model_for_pruning.layers if l.name.endswith("mha")][0]
    assert isinstance(mha, tfmot.PruneLowMagnitude)
    rows = [r for r in tfmot.sparsity_report(model_for_pruning).rows if r.layer == "mha"]
    assert len(rows) == 4 and all(r.zeros == exact_zeros(r.total, 0.75) for r in rows)


@keras.saving.register_keras_serializable("tfprune_tests")
class _PrunableCell(layers.Layer, tfmot.sparsity.keras.PrunableLayer):
    """A minimal RNN cell that opts in to pruning."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = units

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), name="kernel")
        self.recurrent_kernel = self.add_weight(shape=(self.units, self.units),
                                                name="recurrent_kernel")

    def call(self, inputs, states):
        h = keras.ops.tanh(inputs @ self.kernel + states[0] @ self.recurrent_kernel)
        return h, [h]

    def get_prunable_weights(self):
        return [self.kernel, self.recurrent_kernel]

    def get_config(self):
        return {**super().get_config(), "units": self.units}


RNN_CELLS = {
    "LSTMCell": lambda: layers.LSTMCell(4),
    "GRUCell": lambda: layers.GRUCell(4),
    "SimpleRNNCell": lambda: layers.SimpleRNNCell(4),
    "StackedRNNCells": lambda: layers.StackedRNNCells([layers.LSTMCell(4), layers.GRUCell(3)]),
    "PrunableLayer cell": lambda: _PrunableCell(4),
}


@pytest.mark.parametrize("cell", RNN_CELLS)
def test_generic_rnn_layer_with_cells_is_pruned(cell):
    rnn = layers.RNN(RNN_CELLS[cell](), name="rnn")
    model = keras.Sequential([keras.Input((5, 3)), rnn, layers.Dense(2)])
    pruned = tfmot.sparsity.keras.prune_low_magnitude(
        model, pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(0.5, 0, frequency=1))
    assert isinstance(pruned.layers[0], tfmot.PruneLowMagnitude)
    pruned.compile("adam", "mse")
    pruned.fit(np.random.rand(8, 5, 3).astype("float32"), np.random.rand(8, 2).astype("float32"),
               batch_size=4, verbose=0, callbacks=[update_step()])
    rows = [r for r in tfmot.sparsity_report(pruned).rows if r.layer == "rnn"]
    kernels = [r for r in rows if "kernel" in r.weight]
    expected = 4 if cell == "StackedRNNCells" else 2
    assert len(kernels) == expected
    assert all(r.zeros == exact_zeros(r.total, 0.5) for r in kernels)


# ---------------------------------------------------------------------------
# Items from the issues that tfmot users meet
# ---------------------------------------------------------------------------


def _warns_or_raises(fn, match):
    """True if fn() raises ValueError or warns, with `match` in the message."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fn()
        except ValueError as e:
            return re.search(match, str(e)) is not None
    return any(re.search(match, str(w.message)) for w in caught)


def test_round_to_with_weight_granularity_is_not_silently_ignored():
    model = keras.Sequential([keras.Input((4,)), layers.Dense(16), layers.Dense(2)])
    assert _warns_or_raises(
        lambda: tfmot.prune_low_magnitude(model, PARAMS["pruning_schedule"],
                                          granularity="weight", round_to=8),
        "round_to")


def test_re_pruning_with_new_settings_is_never_silently_ignored():
    model = keras.Sequential([keras.Input((4,)), layers.Dense(16), layers.Dense(2)])
    pruned = tfmot.sparsity.keras.prune_low_magnitude(model, **PARAMS)
    new = tfmot.sparsity.keras.ConstantSparsity(0.9, 0)
    try:
        again = tfmot.prune_low_magnitude(pruned, new, granularity="unit")
    except ValueError as e:
        assert "strip_pruning" in str(e)
        return
    wrappers = [l for l in again.layers if isinstance(l, tfmot.PruneLowMagnitude)]
    assert wrappers and all(w.pruning_schedule == new for w in wrappers)
    assert any(w.granularity == "unit" for w in wrappers)
    assert not any(isinstance(w.layer, tfmot.PruneLowMagnitude) for w in wrappers)


# ---------------------------------------------------------------------------
# Tutorial: comprehensive guide (g3doc/guide/pruning/comprehensive_guide.ipynb)
# ---------------------------------------------------------------------------

input_shape = [20]


@pytest.fixture
def guide():
    """The guide's set-up cell, as written (Keras 3: `.weights.h5` suffix)."""
    x_train = np.random.randn(1, 20).astype(np.float32)
    y_train = keras.utils.to_categorical(np.random.randint(20, size=1), num_classes=20)

    def setup_model():
        model = keras.Sequential([
            keras.layers.Dense(20, input_shape=input_shape),
            keras.layers.Flatten(),
        ])
        return model

    def setup_pretrained_weights():
        model = setup_model()
        model.compile(loss=keras.losses.categorical_crossentropy, optimizer="adam",
                      metrics=["accuracy"])
        model.fit(x_train, y_train, verbose=0)
        _, pretrained_weights = tempfile.mkstemp(".weights.h5")  # Keras 3: was '.tf'
        model.save_weights(pretrained_weights)
        return pretrained_weights

    weights = setup_pretrained_weights()
    yield setup_model, weights, x_train, y_train
    os.remove(weights)


def get_gzipped_model_size(model):
    # Returns size of gzipped model, in bytes (the guide's helper, as written).
    import zipfile

    keras_file = tempfile.mkstemp(".h5")[1]
    model.save(keras_file, include_optimizer=False)
    zipped_file = tempfile.mkstemp(".zip")[1]
    with zipfile.ZipFile(zipped_file, "w", compression=zipfile.ZIP_DEFLATED) as f:
        f.write(keras_file)
    size = os.path.getsize(zipped_file)
    os.remove(keras_file)
    os.remove(zipped_file)
    return size


def test_guide_prune_whole_model_and_clone_function(guide):
    setup_model, pretrained_weights, x_train, y_train = guide
    base_model = setup_model()
    base_model.load_weights(pretrained_weights)
    model_for_pruning = tfmot.sparsity.keras.prune_low_magnitude(base_model)
    model_for_pruning.summary(print_fn=lambda *a, **k: None)
    np.testing.assert_array_equal(model_for_pruning.predict(x_train, verbose=0),
                                  base_model.predict(x_train, verbose=0))

    def apply_pruning_to_dense(layer):
        if isinstance(layer, keras.layers.Dense):
            return tfmot.sparsity.keras.prune_low_magnitude(layer)
        return layer

    model_for_pruning = keras.models.clone_model(base_model, clone_function=apply_pruning_to_dense)
    assert [type(l).__name__ for l in model_for_pruning.layers] == ["PruneLowMagnitude", "Flatten"]
    model_for_pruning.summary(print_fn=lambda *a, **k: None)


def test_guide_functional_and_custom_prunable_layer(guide):
    i = keras.Input(shape=(20,))
    x = tfmot.sparsity.keras.prune_low_magnitude(keras.layers.Dense(10))(i)
    o = keras.layers.Flatten()(x)
    model_for_pruning = keras.Model(inputs=i, outputs=o)
    assert isinstance(model_for_pruning.layers[1], tfmot.PruneLowMagnitude)

    class MyDenseLayer(keras.layers.Dense, tfmot.sparsity.keras.PrunableLayer):
        def get_prunable_weights(self):
            # Prune bias also, though that usually harms model accuracy too much.
            return [self.kernel, self.bias]

    model = keras.Sequential([keras.Input(input_shape),
                              tfmot.sparsity.keras.prune_low_magnitude(MyDenseLayer(20)),
                              keras.layers.Flatten()])
    rows = tfmot.sparsity_report(model).rows
    assert [r.shape for r in rows] == [(20, 20), (20,)]


def test_custom_prunable_layer_weights_keep_their_names():
    class MyDenseLayer(keras.layers.Dense, tfmot.sparsity.keras.PrunableLayer):
        def get_prunable_weights(self):
            return [self.kernel, self.bias]

    model = keras.Sequential([keras.Input(input_shape),
                              tfmot.sparsity.keras.prune_low_magnitude(MyDenseLayer(20))])
    assert [r.weight for r in tfmot.sparsity_report(model).rows] == ["kernel", "bias"]


def test_guide_sequential_with_a_wrapped_first_layer_is_built(guide):
    model_for_pruning = keras.Sequential([
        tfmot.sparsity.keras.prune_low_magnitude(keras.layers.Dense(20, input_shape=input_shape)),
        keras.layers.Flatten(),
    ])
    assert model_for_pruning.built
    assert model_for_pruning.count_params() == 20 * 20 + 20


def test_guide_fit_with_pruning_summaries(guide, tmp_path):
    setup_model, pretrained_weights, x_train, y_train = guide
    base_model = setup_model()
    base_model.load_weights(pretrained_weights)
    model_for_pruning = tfmot.sparsity.keras.prune_low_magnitude(base_model)
    log_dir = str(tmp_path)
    callbacks = [
        tfmot.sparsity.keras.UpdatePruningStep(),
        # Log sparsity and other metrics in Tensorboard.
        tfmot.sparsity.keras.PruningSummaries(log_dir=log_dir),
    ]
    model_for_pruning.compile(loss=keras.losses.categorical_crossentropy, optimizer="adam",
                              metrics=["accuracy"])
    with pytest.warns(RuntimeWarning, match="NOTHING WAS PRUNED"):  # 2 steps, frequency 100
        model_for_pruning.fit(x_train, y_train, callbacks=callbacks, epochs=2, verbose=0)
    assert os.listdir(log_dir)


def test_guide_custom_training_loop_as_written(guide, tmp_path):
    setup_model, pretrained_weights, x_train, y_train = guide
    base_model = setup_model()
    base_model.load_weights(pretrained_weights)
    model_for_pruning = tfmot.sparsity.keras.prune_low_magnitude(
        base_model, pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(0.5, 0, frequency=1))

    # Boilerplate
    loss = keras.losses.categorical_crossentropy
    optimizer = keras.optimizers.Adam()
    log_dir = str(tmp_path)
    unused_arg = -1
    epochs = 2
    batches = 1  # example is hardcoded so that the number of batches cannot change.

    # Non-boilerplate.
    model_for_pruning.optimizer = optimizer
    step_callback = tfmot.sparsity.keras.UpdatePruningStep()
    step_callback.set_model(model_for_pruning)
    log_callback = tfmot.sparsity.keras.PruningSummaries(log_dir=log_dir)
    log_callback.set_model(model_for_pruning)

    step_callback.on_train_begin()  # run pruning callback
    for _ in range(epochs):
        log_callback.on_epoch_begin(epoch=unused_arg)  # run pruning callback
        for _ in range(batches):
            step_callback.on_train_batch_begin(batch=unused_arg)  # run pruning callback
            with tf.GradientTape() as tape:
                logits = model_for_pruning(x_train, training=True)
                loss_value = loss(y_train, logits)
                grads = tape.gradient(loss_value, model_for_pruning.trainable_variables)
                optimizer.apply_gradients(zip(grads, model_for_pruning.trainable_variables))
        step_callback.on_epoch_end(batch=unused_arg)  # run pruning callback

    kernel = model_for_pruning.layers[0].layer.kernel.numpy()
    assert int((kernel == 0).sum()) == exact_zeros(400, 0.5)
    assert os.listdir(log_dir)


def test_guide_checkpoint_and_deserialize_with_prune_scope(guide, tmp_path):
    setup_model, pretrained_weights, x_train, y_train = guide
    base_model = setup_model()
    base_model.load_weights(pretrained_weights)
    model_for_pruning = tfmot.sparsity.keras.prune_low_magnitude(base_model)
    for suffix in (".keras", ".h5"):  # the guide uses .h5 (legacy in Keras 3)
        keras_model_file = str(tmp_path / f"ckpt{suffix}")
        # Checkpoint: saving the optimizer is necessary (include_optimizer=True is the default).
        if suffix == ".h5":
            model_for_pruning.save(keras_model_file, include_optimizer=True)
        else:
            model_for_pruning.save(keras_model_file)
        with tfmot.sparsity.keras.prune_scope():
            loaded_model = keras.models.load_model(keras_model_file)
        loaded_model.summary(print_fn=lambda *a, **k: None)
        assert isinstance(loaded_model.layers[0], tfmot.PruneLowMagnitude)
        np.testing.assert_array_equal(loaded_model.predict(x_train, verbose=0),
                                      model_for_pruning.predict(x_train, verbose=0))


def test_guide_strip_pruning_makes_the_gzipped_model_smaller(guide):
    setup_model, pretrained_weights, x_train, y_train = guide
    base_model = setup_model()
    base_model.load_weights(pretrained_weights)
    model_for_pruning = tfmot.sparsity.keras.prune_low_magnitude(
        base_model, pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(0.8, 0, frequency=1))
    model_for_pruning.compile("adam", "categorical_crossentropy")
    model_for_pruning.fit(x_train, y_train, verbose=0, callbacks=[update_step()])
    model_for_export = tfmot.sparsity.keras.strip_pruning(model_for_pruning)
    assert [type(l).__name__ for l in model_for_export.layers] == ["Dense", "Flatten"]
    assert sparsity_of(model_for_export.layers[0].kernel.numpy()) == 0.8
    assert get_gzipped_model_size(model_for_export) < get_gzipped_model_size(model_for_pruning)


def test_guide_block_sparsity(guide):
    setup_model, _, x_train, y_train = guide
    base_model = setup_model()
    pruning_params = {"block_size": [1, 16]}
    model_for_pruning = tfmot.sparsity.keras.prune_low_magnitude(base_model, **pruning_params)
    model_for_pruning.summary(print_fn=lambda *a, **k: None)


# ---------------------------------------------------------------------------
# Tutorial: pruning with Keras (g3doc/guide/pruning/pruning_with_keras.ipynb)
# ---------------------------------------------------------------------------


def _mnist(n_train, n_test):
    """MNIST from tfprune.datasets (offline here), else a labelled synthetic stand-in
    (keras.datasets cannot download on this machine)."""
    try:
        (x, y), (xt, yt) = tfmot.datasets.load_mnist()
    except (OSError, ValueError, RuntimeError):
        rng = np.random.default_rng(0)
        y = rng.integers(0, 10, n_train + n_test).astype("uint8")
        x = rng.integers(0, 40, (n_train + n_test, 28, 28)).astype("uint8")
        x[np.arange(len(y)), y * 2, :] = 255
        return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])
    return (x[:n_train], y[:n_train]), (xt[:n_test], yt[:n_test])


def _tflite_outputs(model_content, images):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # the tutorial's (deprecated) tf.lite.Interpreter
        Interpreter = tf.lite.Interpreter
    interpreter = Interpreter(model_content=model_content)
    interpreter.allocate_tensors()
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]
    outputs = []
    for test_image in images:
        interpreter.set_tensor(input_index, np.expand_dims(test_image, axis=0).astype(np.float32))
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(output_index)[0])
    return np.array(outputs)


def _gzip_size(path):
    return len(gzip.compress(pathlib.Path(path).read_bytes()))


@pytest.mark.slow
def test_tutorial_pruning_with_keras(tmp_path):
    (train_images, train_labels), (test_images, test_labels) = _mnist(512, 64)
    train_images = train_images / 255.0
    test_images = test_images / 255.0

    model = keras.Sequential([
        keras.layers.InputLayer(input_shape=(28, 28)),
        keras.layers.Reshape(target_shape=(28, 28, 1)),
        keras.layers.Conv2D(filters=12, kernel_size=(3, 3), activation="relu"),
        keras.layers.MaxPooling2D(pool_size=(2, 2)),
        keras.layers.Flatten(),
        keras.layers.Dense(10),
    ])
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(train_images, train_labels, epochs=1, validation_split=0.1, verbose=0)
    keras_file = str(tmp_path / "baseline.keras")  # the tutorial: '.h5'
    keras.models.save_model(model, keras_file)

    prune_low_magnitude = tfmot.sparsity.keras.prune_low_magnitude
    batch_size = 128
    epochs = 2
    validation_split = 0.1
    num_images = train_images.shape[0] * (1 - validation_split)
    end_step = np.ceil(num_images / batch_size).astype(np.int32) * epochs
    pruning_params = {
        "pruning_schedule": tfmot.sparsity.keras.PolynomialDecay(
            initial_sparsity=0.50, final_sparsity=0.80, begin_step=0, end_step=end_step,
            frequency=2),  # tiny data: the tutorial's default frequency=100 > end_step
    }
    model_for_pruning = prune_low_magnitude(model, **pruning_params)
    model_for_pruning.compile(optimizer="adam",
                              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                              metrics=["accuracy"])
    logdir = str(tmp_path / "logs")
    callbacks = [tfmot.sparsity.keras.UpdatePruningStep(),
                 tfmot.sparsity.keras.PruningSummaries(log_dir=logdir)]
    model_for_pruning.fit(train_images, train_labels, batch_size=batch_size, epochs=epochs,
                          validation_split=validation_split, callbacks=callbacks, verbose=0)
    _, accuracy = model_for_pruning.evaluate(test_images, test_labels, verbose=0)

    model_for_export = tfmot.sparsity.keras.strip_pruning(model_for_pruning)
    for layer in model_for_export.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            kernel = layer.kernel.numpy()
            assert int((kernel == 0).sum()) == exact_zeros(kernel.size, 0.8), layer.name
    pruned_keras_file = str(tmp_path / "pruned.keras")
    keras.models.save_model(model_for_export, pruned_keras_file)

    converter = tf.lite.TFLiteConverter.from_keras_model(model_for_export)
    pruned_tflite_model = converter.convert()
    pruned_tflite_file = tmp_path / "pruned.tflite"
    pruned_tflite_file.write_bytes(pruned_tflite_model)
    assert _gzip_size(pruned_keras_file) < _gzip_size(keras_file)
    assert _gzip_size(pruned_tflite_file) < _gzip_size(keras_file)
    expected = model_for_export.predict(test_images, verbose=0)
    np.testing.assert_allclose(_tflite_outputs(pruned_tflite_model, test_images), expected,
                               rtol=1e-4, atol=1e-4)

    converter = tf.lite.TFLiteConverter.from_keras_model(model_for_export)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    quantized_and_pruned_tflite_model = converter.convert()
    assert len(gzip.compress(quantized_and_pruned_tflite_model)) < _gzip_size(pruned_tflite_file)
    digits = _tflite_outputs(quantized_and_pruned_tflite_model, test_images).argmax(-1)
    assert np.mean(digits == expected.argmax(-1)) >= 0.9  # int8 weights, same predictions
    assert 0.0 <= accuracy <= 1.0


# ---------------------------------------------------------------------------
# Tutorial: pruning for on-device inference with XNNPACK
# (g3doc/guide/pruning/pruning_for_on_device_inference.ipynb)
# ---------------------------------------------------------------------------


def _cifar_like_dataset(n, batch_size=32):
    """A random stand-in for tfds 'cifar10' (no download here), through the
    tutorial's tf.data pipeline."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 32, 32, 3)).astype("uint8")
    labels = rng.integers(0, 10, n).astype("int64")

    def normalize_img(image, label):
        return tf.image.convert_image_dtype(image, tf.float32), label

    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    return ds.map(normalize_img).cache().batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _xnnpack_model(keepdims):
    return keras.Sequential([
        keras.layers.InputLayer(input_shape=(32, 32, 3)),
        keras.layers.ZeroPadding2D(padding=1),
        keras.layers.Conv2D(filters=8, kernel_size=(3, 3), strides=(2, 2), padding="valid"),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(),
        keras.layers.DepthwiseConv2D(kernel_size=(3, 3), padding="same"),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(),
        keras.layers.Conv2D(filters=16, kernel_size=(1, 1)),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(),
        keras.layers.ZeroPadding2D(padding=1),
        keras.layers.DepthwiseConv2D(kernel_size=(3, 3), strides=(2, 2), padding="valid"),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(),
        keras.layers.Conv2D(filters=32, kernel_size=(1, 1)),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(),
        keras.layers.GlobalAveragePooling2D(keepdims=keepdims),
        keras.layers.Flatten(),
        keras.layers.Dense(10),
    ])


def _on_device_inference(pruning_params, tmp_path):
    ds_train, ds_val = _cifar_like_dataset(128), _cifar_like_dataset(32)
    dense_model = _xnnpack_model(keepdims=True)
    dense_model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                        optimizer="adam", metrics=["accuracy"])
    dense_model.fit(ds_train, epochs=1, validation_data=ds_val, verbose=0)
    model_for_pruning = tfmot.sparsity.keras.prune_low_magnitude(dense_model, **pruning_params)
    logdir = str(tmp_path / "logs")
    callbacks = [tfmot.sparsity.keras.UpdatePruningStep(),
                 tfmot.sparsity.keras.PruningSummaries(log_dir=logdir)]
    model_for_pruning.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                              optimizer="adam", metrics=["accuracy"])
    model_for_pruning.fit(ds_train, epochs=2, validation_data=ds_val, callbacks=callbacks,
                          verbose=0)
    model_for_export = tfmot.sparsity.keras.strip_pruning(model_for_pruning)
    converter = tf.lite.TFLiteConverter.from_keras_model(model_for_export)
    converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    pruned_tflite_model = converter.convert()
    images = np.concatenate([x.numpy() for x, _ in ds_val])[:8]
    np.testing.assert_allclose(_tflite_outputs(pruned_tflite_model, images),
                               model_for_export.predict(images, verbose=0),
                               rtol=1e-4, atol=1e-4)
    return model_for_export


@pytest.mark.slow
def test_tutorial_on_device_inference_without_the_xnnpack_policy(tmp_path):
    ds_len = 4  # batches per epoch of _cifar_like_dataset(128)
    end_step = ds_len * 1
    pruning_params = {"pruning_schedule": tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.25, final_sparsity=0.75, begin_step=0, end_step=end_step,
        frequency=1)}
    model = _on_device_inference(pruning_params, tmp_path)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D) and layer.kernel_size == (1, 1):
            kernel = layer.kernel.numpy()
            assert int((kernel == 0).sum()) == exact_zeros(kernel.size, 0.75), layer.name


@pytest.mark.slow
def test_tutorial_on_device_inference_with_the_xnnpack_policy(tmp_path):
    pruning_params = {
        "pruning_schedule": tfmot.sparsity.keras.PolynomialDecay(
            initial_sparsity=0.25, final_sparsity=0.75, begin_step=0, end_step=4,
            frequency=1),
        "pruning_policy": tfmot.sparsity.keras.PruneForLatencyOnXNNPack(),
    }
    with pytest.raises(ValueError):
        tfmot.sparsity.keras.prune_low_magnitude(_xnnpack_model(keepdims=False),
                                                 **pruning_params)
    model = _on_device_inference(pruning_params, tmp_path)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D) and layer.kernel_size == (1, 1):
            assert sparsity_of(layer.kernel.numpy()) >= 0.74
        elif hasattr(layer, "kernel") and not isinstance(layer, keras.layers.DepthwiseConv2D):
            assert sparsity_of(layer.kernel.numpy()) == 0.0, layer.name


# ---------------------------------------------------------------------------
# Tutorial: 2:4 sparsity (g3doc/guide/pruning/pruning_with_sparsity_2_by_4.ipynb)
# ---------------------------------------------------------------------------


def test_tutorial_sparsity_2_by_4():
    prune_low_magnitude = tfmot.sparsity.keras.prune_low_magnitude
    pruning_params_2_by_4 = {"sparsity_m_by_n": (2, 4)}
    pruning_params_sparsity_0_5 = {"pruning_schedule": tfmot.sparsity.keras.ConstantSparsity(
        target_sparsity=0.5, begin_step=0, frequency=1)}
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        prune_low_magnitude(keras.layers.Conv2D(8, 5, padding="same", activation="relu",
                                                name="pruning_sparsity_0_5"),
                            **pruning_params_sparsity_0_5),
        keras.layers.MaxPooling2D((2, 2), (2, 2), padding="same"),
        prune_low_magnitude(keras.layers.Conv2D(8, 5, padding="same", name="structural_pruning"),
                            **pruning_params_2_by_4),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(),
        keras.layers.MaxPooling2D((2, 2), (2, 2), padding="same"),
        keras.layers.Flatten(),
        prune_low_magnitude(keras.layers.Dense(32, activation="relu",
                                               name="structural_pruning_dense"),
                            **pruning_params_2_by_4),
        keras.layers.Dropout(0.4),
        keras.layers.Dense(10),
    ])
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(np.random.rand(16, 28, 28, 1).astype("float32"), np.arange(16) % 10,
              batch_size=8, epochs=1, verbose=0,
              callbacks=tfmot.sparsity.keras.UpdatePruningStep())
    model = tfmot.sparsity.keras.strip_pruning(model)
    dense = model.get_layer("structural_pruning_dense").kernel.numpy()  # (in, out)
    groups = dense.T.reshape(dense.shape[1], -1, 4)
    assert ((groups != 0).sum(-1) <= 2).all()


# ---------------------------------------------------------------------------
# tfmot's examples/sparsity/keras/imdb/imdb_lstm.py: LSTM pruning
# ---------------------------------------------------------------------------


def test_example_imdb_lstm_prunes_kernel_and_recurrent_kernel():
    model = keras.Sequential([
        keras.Input((20,)),
        keras.layers.Embedding(100, 16),
        keras.layers.LSTM(8, dropout=0.2, recurrent_dropout=0.2),
        keras.layers.Dense(1, activation="sigmoid"),
    ])
    model = tfmot.sparsity.keras.prune_low_magnitude(
        model, tfmot.sparsity.keras.PolynomialDecay(
            initial_sparsity=0.3, final_sparsity=0.7, begin_step=2, end_step=4, frequency=1))
    model.compile(loss="binary_crossentropy", optimizer="adam", metrics=["accuracy"])
    x = np.random.default_rng(0).integers(0, 100, (32, 20))
    model.fit(x, np.arange(32) % 2, batch_size=8, epochs=1, verbose=0,
              callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    rows = {(r.layer, r.weight): r for r in tfmot.sparsity_report(model).rows}
    lstm = model.layers[1].layer.name
    for weight in ("cell/kernel", "cell/recurrent_kernel"):
        key = next(k for k in rows if k[0] == lstm and k[1].endswith(weight.split("/")[-1])
                   and ("recurrent" in k[1]) == ("recurrent" in weight))
        assert rows[key].zeros == exact_zeros(rows[key].total, 0.7)
