import re

import keras
import numpy as np
import pytest

import tfprune
from tests.helpers import every_step, fit
from tfprune import masks

L = keras.layers


def sequential():
    return keras.Sequential([keras.Input((12,)), L.Dense(16, activation="relu"), L.Dropout(0.1),
                             L.Dense(8, activation="relu"), L.Dense(3)])


def functional():
    inputs = keras.Input((12,))
    a = L.Dense(16, activation="relu")(inputs)
    b = L.Dense(16, activation="relu")(inputs)
    x = L.Add()([a, b])
    x = L.BatchNormalization()(x)
    return keras.Model(inputs, L.Dense(3)(x))


def nested():
    inner = keras.Sequential([keras.Input((16,)), L.Dense(8, activation="relu"), L.Dense(8)], name="inner")
    inputs = keras.Input((12,))
    x = L.Dense(16, activation="relu")(inputs)
    return keras.Model(inputs, L.Dense(3)(inner(x)))


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.d1 = L.Dense(16, activation="relu")
        self.blocks = [L.Dense(8, activation="relu"), L.Dense(8)]
        self.norm = L.LayerNormalization()
        self.out = L.Dense(3)

    def call(self, x, training=None):
        # Keras only propagates `training` through a call() that declares it.
        x = self.d1(x)
        for b in self.blocks:
            x = b(x)
        return self.out(self.norm(x))


def subclassed():
    model = Subclassed()
    model(np.zeros((1, 12), "float32"))
    return model


MODELS = [sequential, functional, nested, subclassed]
X = np.random.default_rng(0).standard_normal((32, 12)).astype("float32")
Y = np.random.default_rng(1).standard_normal((32, 3)).astype("float32")


def kernels(model):
    return [(l.name, l.kernel) for l in model._flatten_layers(include_self=False) if isinstance(l, L.Dense)]


@pytest.mark.parametrize("make", MODELS, ids=[m.__name__ for m in MODELS])
def test_every_model_kind_is_pruned_exactly(make):
    model = make()
    pruned = tfprune.prune_low_magnitude(model, every_step(0.75))
    wrappers = [l for l in pruned._flatten_layers(include_self=False) if isinstance(l, tfprune.PruneLowMagnitude)]
    assert len(wrappers) == len(kernels(model))
    fit(pruned, X, Y, steps=3)
    for w in wrappers:
        k = w.layer.kernel.numpy()
        assert (k == 0).sum() == k.size - masks.keep_count(k.size, 0.75), w.name


@pytest.mark.parametrize("make", MODELS, ids=[m.__name__ for m in MODELS])
def test_strip_pruning_gives_plain_model_with_equal_predictions(make):
    pruned = tfprune.prune_low_magnitude(make(), every_step(0.6))
    fit(pruned, X, Y, steps=2)
    expected = pruned.predict(X, verbose=0)
    stripped = tfprune.strip_pruning(pruned)
    assert not [l for l in stripped._flatten_layers() if isinstance(l, tfprune.PruneLowMagnitude)]
    np.testing.assert_array_equal(stripped.predict(X, verbose=0), expected)
    for name, kernel in kernels(stripped):
        k = kernel.numpy()
        assert (k == 0).sum() == k.size - masks.keep_count(k.size, 0.6), name


@pytest.mark.parametrize("make", [sequential, functional, nested], ids=["sequential", "functional", "nested"])
def test_graph_models_are_cloned_and_input_left_untouched(make):
    model = make()
    before = [w.copy() for w in model.get_weights()]
    pruned = tfprune.prune_low_magnitude(model, every_step(0.9))
    fit(pruned, X, Y, steps=2)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(
        tfprune.strip_pruning(tfprune.prune_low_magnitude(model, every_step(0.0))).predict(X, verbose=0),
        model.predict(X, verbose=0), rtol=1e-6, atol=1e-6)


def test_strip_re_applies_masks_even_if_weights_were_edited():
    pruned = tfprune.prune_low_magnitude(sequential(), every_step(0.5))
    fit(pruned, X, Y, steps=1)
    wrapper = pruned.layers[0]
    wrapper.layer.kernel.assign(np.ones(wrapper.layer.kernel.shape, "float32"))
    stripped = tfprune.strip_pruning(pruned)
    assert (stripped.layers[0].kernel.numpy() == 0).sum() == 12 * 16 // 2


def test_strip_single_wrapper_returns_masked_layer_copy():
    inputs = keras.Input((12,))
    wrapper = tfprune.prune_low_magnitude(L.Dense(4), every_step(0.5))
    model = keras.Model(inputs, wrapper(inputs))
    fit(model, X, np.ones((32, 4), "float32"), steps=1)
    layer = tfprune.strip_pruning(wrapper)
    assert isinstance(layer, L.Dense) and (layer.kernel.numpy() == 0).sum() == 24


def test_list_of_layers_wraps_only_prunable_ones():
    layers = [L.Dense(4), L.ReLU(), L.Conv2D(2, 3)]
    out = tfprune.prune_low_magnitude(layers)
    assert [type(l).__name__ for l in out] == ["PruneLowMagnitude", "ReLU", "PruneLowMagnitude"]


def test_unsupported_layers_are_left_unpruned():
    inputs = keras.Input((6, 6, 3))
    x = L.Conv2D(4, 3)(inputs)
    x = L.BatchNormalization()(x)
    x = L.Flatten()(x)
    model = keras.Model(inputs, L.Dense(2)(x))
    pruned = tfprune.prune_low_magnitude(model)
    names = [type(l).__name__ for l in pruned.layers]
    assert names.count("PruneLowMagnitude") == 2 and "BatchNormalization" in names


@pytest.mark.parametrize(
    "to_prune",
    [lambda: keras.Sequential([keras.Input((4,)), L.ReLU(), L.BatchNormalization()]), lambda: [L.ReLU()]],
    ids=["model", "list"],
)
def test_nothing_prunable_is_a_clear_error(to_prune):
    with pytest.raises(ValueError, match="Nothing to prune"):
        tfprune.prune_low_magnitude(to_prune())


def test_bad_to_prune_is_a_clear_error():
    with pytest.raises(TypeError, match="Received: to_prune=42"):
        tfprune.prune_low_magnitude(42)


@pytest.mark.parametrize("kwargs,error,message", [
    ({"block_size": 4}, TypeError, "Received: block_size=4"),
    ({"block_size": (1, 4), "granularity": "unit"}, ValueError, "granularity='weight'"),
    ({"sparsity_m_by_n": (2, 4), "block_size": (1, 4)}, ValueError, "cannot be combined"),
    ({"sparsity_m_by_n": 2}, TypeError, "Received: sparsity_m_by_n=2"),
    ({"round_to": 8}, ValueError, "Received: round_to=8, granularity='weight'"),
    ({"pruning_policy": "xnnpack"}, TypeError, "Received: pruning_policy='xnnpack'"),
], ids=["block-type", "block-unit", "block-m_by_n", "m_by_n-type", "round_to-weight", "policy"])
def test_bad_structured_options_are_clear_errors(kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        tfprune.prune_low_magnitude(sequential(), **kwargs)


def test_re_pruning_with_other_settings_raises_and_same_settings_keep_the_wrappers():
    pruned = tfprune.prune_low_magnitude(sequential(), every_step(0.5))
    with pytest.raises(ValueError, match="strip_pruning"):
        tfprune.prune_low_magnitude(pruned, every_step(0.9))
    with pytest.raises(ValueError, match="granularity"):
        tfprune.prune_low_magnitude(pruned, every_step(0.5), granularity="unit")
    again = tfprune.prune_low_magnitude(pruned, every_step(0.5))
    assert not any(isinstance(w.layer, tfprune.PruneLowMagnitude)
                   for w in again.layers if isinstance(w, tfprune.PruneLowMagnitude))


def test_global_scope_ranks_all_layers_together():
    inputs = keras.Input((12,))
    x = L.Dense(64, kernel_initializer=keras.initializers.RandomNormal(stddev=1.0))(inputs)
    model = keras.Model(inputs, L.Dense(3, kernel_initializer=keras.initializers.RandomNormal(stddev=0.01))(x))
    pruned = tfprune.prune_low_magnitude(model, every_step(0.5), scope="global")
    fit(pruned, X, Y, steps=1, optimizer=keras.optimizers.SGD(0.0))
    k1, k2 = pruned.layers[1].layer.kernel.numpy(), pruned.layers[2].layer.kernel.numpy()
    total = k1.size + k2.size
    assert (k1 == 0).sum() + (k2 == 0).sum() == total - masks.keep_count(total, 0.5)
    # The small-magnitude layer is pruned far harder, but keeps at least one weight.
    assert (k2 != 0).sum() >= 1 and (k2 == 0).mean() > (k1 == 0).mean()
    expected = masks.select_np([np.abs(model.layers[1].kernel.numpy()), np.abs(model.layers[2].kernel.numpy())],
                               0.5, "global")
    np.testing.assert_array_equal(k1 != 0, expected[0].reshape(k1.shape))


def test_unit_pruning_of_a_model_keeps_output_units():
    pruned = tfprune.prune_low_magnitude(sequential(), every_step(0.5), granularity="unit")
    fit(pruned, X, Y, steps=2)
    stripped = tfprune.strip_pruning(pruned)
    out_kernel = stripped.layers[-1].kernel.numpy()
    assert (np.abs(out_kernel).sum(axis=0) > 0).all()
    first = stripped.layers[0].kernel.numpy()
    assert (np.abs(first).sum(axis=0) == 0).sum() == 8


def test_unit_round_to_keeps_multiples_during_training():
    model = keras.Sequential([keras.Input((12,)), L.Dense(30), L.Dense(3)])
    pruned = tfprune.prune_low_magnitude(model, every_step(0.7), granularity="unit", round_to=4)
    fit(pruned, X, Y, steps=1)
    kept = int(pruned.layers[0].targets[0].mask.numpy().sum())
    assert kept % 4 == 0 and kept == masks.round_keep_count(masks.keep_count(30, 0.7), 30, 4)


def test_same_results_as_h5_math_for_weight_pruning():
    model = sequential()
    originals = [np.abs(k.numpy()) for _, k in kernels(model)]
    pruned = tfprune.prune_low_magnitude(model, every_step(0.8))
    fit(pruned, X, Y, steps=1, optimizer=keras.optimizers.SGD(0.0))
    for (name, kernel), original in zip(kernels(tfprune.strip_pruning(pruned)), originals):
        expected = masks.select_np([original], 0.8)[0].reshape(original.shape)
        np.testing.assert_array_equal(kernel.numpy() != 0, expected, err_msg=name)


def residual_model():
    inputs = keras.Input((8, 8, 3))
    a = L.Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = L.BatchNormalization()(a)
    x = L.ReLU()(x)
    b = L.Conv2D(8, 3, padding="same", name="branch")(x)
    x = L.Add()([a, b])
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(2, name="head")(x))


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_residual_layers_share_one_unit_mask_chosen_by_group_score(scope):
    model = residual_model()
    kernels = {n: model.get_layer(n).kernel.numpy() for n in ("stem", "branch")}
    pruned = tfprune.prune_low_magnitude(model, every_step(0.5), granularity="unit", scope=scope)
    x = np.random.default_rng(0).standard_normal((8, 8, 8, 3)).astype("float32")
    fit(pruned, x, np.zeros((8, 2), "float32"), steps=1, optimizer=keras.optimizers.SGD(0.0))
    by_name = {w.layer.name: w for w in pruned.layers if isinstance(w, tfprune.PruneLowMagnitude)}
    assert set(by_name) == {"stem", "branch"}  # the head keeps its units
    stem, branch = (by_name[n].targets[0].mask.numpy() for n in ("stem", "branch"))
    np.testing.assert_array_equal(stem, branch)
    # One ranking by the group score: the summed sums of squares of both filters.
    score = sum(masks.unit_scores_np(k, (8,)) for k in kernels.values())
    np.testing.assert_array_equal(stem.astype(bool), masks.select_np([score], 0.5)[0])


def bn_resnet_model():
    inputs = keras.Input((8, 8, 3))
    a = L.Conv2D(16, 3, padding="same", name="stem")(inputs)
    a = L.ReLU()(L.BatchNormalization(name="bn0", beta_initializer="ones")(a))
    x = L.Conv2D(16, 3, padding="same", name="c1")(a)
    x = L.ReLU()(L.BatchNormalization(name="bn1", beta_initializer="ones")(x))
    x = L.Conv2D(16, 3, padding="same", name="c2")(x)
    x = L.BatchNormalization(name="bn2", beta_initializer="ones")(x)
    x = L.ReLU()(L.Add()([a, x]))
    return keras.Model(inputs, L.Dense(2, name="head")(L.GlobalAveragePooling2D()(x)))


def test_unit_pruning_masks_batchnorm_so_a_bn_resnet_shrinks(tmp_path):
    pruned = tfprune.prune_low_magnitude(bn_resnet_model(), every_step(0.5), granularity="unit")
    x = np.random.default_rng(0).standard_normal((16, 8, 8, 3)).astype("float32")
    fit(pruned, x, np.zeros((16, 2), "float32"), steps=3)
    by_name = {w.layer.name: w for w in pruned.layers if isinstance(w, tfprune.PruneLowMagnitude)}
    assert by_name["stem"].followers == ["bn0"] and by_name["c1"].followers == ["bn1"]
    for conv, bn in (("stem", "bn0"), ("c1", "bn1"), ("c2", "bn2")):
        unit_mask = by_name[conv].targets[0].mask.numpy()
        layer = pruned.get_layer(bn)
        assert (layer.gamma.numpy()[unit_mask == 0] == 0).all()
        assert (layer.beta.numpy()[unit_mask == 0] == 0).all()
        assert (layer.beta.numpy()[unit_mask == 1] != 0).all()
    masked = tfprune.strip_pruning(pruned)
    small, report = tfprune.shrink(masked, return_report=True)
    assert not report.skipped or set(report.skipped) <= {"head"}
    assert small.count_params() < masked.count_params() / 3
    np.testing.assert_allclose(small.predict(x, verbose=0), masked.predict(x, verbose=0), atol=1e-5)
    # The followers survive a save/load and keep being masked when training resumes.
    pruned.save(tmp_path / "bn.keras")
    loaded = keras.models.load_model(tmp_path / "bn.keras")
    fit(loaded, x, np.zeros((16, 2), "float32"), steps=2)
    unit_mask = [w for w in loaded.layers if isinstance(w, tfprune.PruneLowMagnitude)][0].targets[0].mask.numpy()
    assert (loaded.get_layer("bn0").beta.numpy()[unit_mask == 0] == 0).all()


def test_one_variable_per_schedule_drives_the_mask_updates():
    pruned = tfprune.prune_low_magnitude(sequential(), every_step(0.5))
    cb = tfprune.callbacks.UpdatePruningStep()
    cb.set_model(pruned)
    cb.on_train_begin()
    drives = [t.variable.constraint.drive for w in pruned.layers
              if isinstance(w, tfprune.PruneLowMagnitude) for t in w.targets]
    drivers = [d for d in drives if d is not None]
    assert len(drivers) == 1 and len(drivers[0].links) == 3
    # the last pruned variable in trainable order: its constraint runs after the others'
    assert drivers[0].target.variable is [v for v in pruned.trainable_variables
                                           if v.constraint is not None][-1]


def test_global_scope_on_a_subclassed_model():
    pruned = tfprune.prune_low_magnitude(subclassed(), every_step(0.75), scope="global")
    fit(pruned, X, Y, steps=2)
    sizes = [pruned.d1.layer.kernel, pruned.blocks[0].layer.kernel, pruned.blocks[1].layer.kernel,
             pruned.out.layer.kernel]
    total = sum(int(np.prod(k.shape)) for k in sizes)
    zeros = sum(int((k.numpy() == 0).sum()) for k in sizes)
    assert zeros == total - masks.keep_count(total, 0.75)
