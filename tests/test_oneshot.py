"""tfprune.oneshot: in-place one-shot masks from the dense values, by the training ranking."""

import doctest

import keras
import numpy as np
import pytest

import tfprune
from tfprune import masks, oneshot
from tfprune.shrink import shrink


def mlp(widths=(12, 10), inputs=8, classes=3):
    layers = [keras.Input((inputs,))]
    layers += [keras.layers.Dense(w, activation="relu") for w in widths]
    layers.append(keras.layers.Dense(classes))
    return keras.Sequential(layers)


def residual():
    """Two Dense layers joined by an Add (one coupled unit group), BN after the Add."""
    x = keras.Input((6,))
    a = keras.layers.Dense(8, name="a")(x)
    b = keras.layers.Dense(8, name="b")(keras.layers.ReLU()(a))
    s = keras.layers.Add(name="add")([a, b])
    h = keras.layers.BatchNormalization(name="bn")(s)
    c = keras.layers.Dense(5, activation="relu", name="c")(h)
    return keras.Model(x, keras.layers.Dense(2, name="out")(c))


def values(model):
    return [w.copy() for w in model.get_weights()]


def zeros(a):
    return int(np.count_nonzero(np.asarray(a) == 0))


@pytest.mark.parametrize("sparsity", [0.25, 0.5, 0.9, 0.97])
def test_weight_masks_prune_the_exact_count_of_every_tensor(sparsity):
    model = mlp()
    with oneshot.apply_masks(model, sparsity):
        for layer in model.layers[:-1]:
            n = int(np.prod(layer.kernel.shape))
            assert zeros(layer.kernel.numpy()) == n - masks.keep_count(n, sparsity)
        assert zeros(model.layers[-1].kernel.numpy()) == 0  # output layer kept


def test_ties_are_pruned_to_the_exact_count_lowest_index_first():
    model = mlp(widths=(10,))
    layer = model.layers[0]
    layer.kernel.assign(np.ones(layer.kernel.shape, "float32"))  # all tied
    with oneshot.apply_masks(model, 0.5):
        flat = layer.kernel.numpy().reshape(-1)
        assert zeros(flat) == 40
        assert (flat[:40] != 0).all() and (flat[40:] == 0).all()


def test_masks_are_those_of_select_np_on_the_dense_scores():
    model = mlp()
    dense = values(model)
    with oneshot.apply_masks(model, 0.6, skip_output_layer=False):
        got = [l.kernel.numpy() != 0 for l in model.layers]
    kernels = dense[0::2]
    want = masks.select_np([masks.weight_scores_np(k).reshape(-1) for k in kernels], 0.6)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.reshape(-1), w)


def test_restore_puts_back_the_exact_dense_values_and_levels_are_independent():
    model = mlp()
    dense = values(model)
    masker = oneshot.OneShot(model)
    masker.apply(0.9)
    masker.apply(0.25)  # from the dense values, not from the 90% model
    assert zeros(model.layers[0].kernel.numpy()) == 96 - masks.keep_count(96, 0.25)
    masker.restore()
    for a, b in zip(dense, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    with oneshot.apply_masks(model, 0.5):
        pass
    for a, b in zip(dense, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_unit_masks_zero_whole_units_and_their_biases_and_keep_output_units():
    model = mlp(widths=(12, 10))
    with oneshot.apply_masks(model, 0.5, granularity="unit") as pruned:
        for layer in model.layers[:-1]:
            kernel, bias = layer.kernel.numpy(), layer.bias.numpy()
            dead = (kernel == 0).all(axis=0)
            assert dead.sum() == kernel.shape[1] - masks.keep_count(kernel.shape[1], 0.5)
            assert (bias[dead] == 0).all()
        assert zeros(model.layers[-1].kernel.numpy()) == 0
        assert pruned.measured_sparsity() == pytest.approx(0.5)
        assert "dense_2" in pruned.excluded  # the output layer, with its reason


def test_unit_ranking_is_the_l2_norm_of_incoming_weights():
    model = mlp(widths=(6,))
    kernel = np.tile(np.arange(1, 7, dtype="float32"), (8, 1))  # column j has norm ~ j+1
    model.layers[0].kernel.assign(kernel)
    with oneshot.apply_masks(model, 0.5, granularity="unit"):
        dead = (model.layers[0].kernel.numpy() == 0).all(axis=0)
    np.testing.assert_array_equal(dead, [True, True, True, False, False, False])


def test_coupled_units_are_pruned_as_one_group_with_summed_scores():
    model = residual()
    a, b = model.get_layer("a"), model.get_layer("b")
    ka, kb = a.kernel.numpy(), b.kernel.numpy()
    scores = masks.unit_scores_np(ka, (8,)) + masks.unit_scores_np(kb, (8,))
    want = masks.select_np([scores], 0.5)[0]
    with oneshot.apply_masks(model, 0.5, granularity="unit") as pruned:
        dead_a = (a.kernel.numpy() == 0).all(axis=0)
        dead_b = (b.kernel.numpy() == 0).all(axis=0)
        np.testing.assert_array_equal(dead_a, dead_b)
        np.testing.assert_array_equal(~dead_a, want)
        bn = model.get_layer("bn")
        assert (bn.gamma.numpy()[dead_a] == 0).all() and (bn.beta.numpy()[dead_a] == 0).all()
        assert [g.layers for g in pruned.groups] == [("a", "b"), ("c",)]


def test_coupled_units_are_dead_so_shrink_removes_them():
    model = residual()
    with oneshot.apply_masks(model, 0.5, granularity="unit"):
        small = shrink(model)
    assert small.get_layer("a").units == 4 and small.get_layer("b").units == 4


def test_one_shot_masks_equal_the_masks_training_applies():
    # lr=0: training changes nothing but the masks, computed from the same weights.
    for granularity, scope in (("weight", "layer"), ("weight", "global"), ("unit", "layer"),
                               ("unit", "global")):
        model = residual()
        model(np.zeros((1, 6), "float32"))
        pruned = tfprune.prune_low_magnitude(
            model, tfprune.ConstantSparsity(0.6, begin_step=0, frequency=1),
            granularity=granularity, scope=scope)
        pruned.compile(keras.optimizers.SGD(learning_rate=0.0), "mse")
        pruned.fit(np.zeros((4, 6), "float32"), np.zeros((4, 2), "float32"), batch_size=4,
                   verbose=0, callbacks=[tfprune.callbacks.UpdatePruningStep()])
        trained = tfprune.strip_pruning(pruned)
        with oneshot.apply_masks(model, 0.6, granularity=granularity, scope=scope,
                                 skip_output_layer=False):
            for name in ("a", "b", "c", "out"):
                np.testing.assert_array_equal(
                    model.get_layer(name).kernel.numpy() == 0,
                    trained.get_layer(name).kernel.numpy() == 0, err_msg=f"{granularity} {name}")


def test_global_scope_keeps_the_global_count():
    model = mlp()
    n = sum(int(np.prod(l.kernel.shape)) for l in model.layers[:-1])
    with oneshot.apply_masks(model, 0.8, scope="global"):
        kept = sum(int(np.count_nonzero(l.kernel.numpy())) for l in model.layers[:-1])
    assert kept == masks.keep_count(n, 0.8)


def test_random_masks_have_the_same_counts_differ_from_magnitude_and_repeat_by_seed():
    model = mlp()

    def pattern(method, seed):
        with oneshot.apply_masks(model, 0.7, method=method, seed=seed):
            return [l.kernel.numpy() == 0 for l in model.layers[:-1]]

    mag, r0, r0_again, r1 = (pattern("magnitude", 0), pattern("random", 0),
                             pattern("random", 0), pattern("random", 1))
    for m, a, b, c in zip(mag, r0, r0_again, r1):
        assert m.sum() == a.sum() == c.sum()
        np.testing.assert_array_equal(a, b)
    assert any((m != a).any() for m, a in zip(mag, r0))
    assert any((a != c).any() for a, c in zip(r0, r1))


def test_random_masks_are_nested_across_levels():
    model = mlp()
    masker = oneshot.OneShot(model)
    low, high = masker.keep_masks(0.5, "random", 3), masker.keep_masks(0.9, "random", 3)
    for lo, hi in zip(low, high):
        assert not (hi & ~lo).any()


def test_random_unit_masks_keep_the_unit_counts():
    model = residual()
    with oneshot.apply_masks(model, 0.5, granularity="unit", method="random", seed=2):
        dead = (model.get_layer("a").kernel.numpy() == 0).all(axis=0)
        assert dead.sum() == 4
        np.testing.assert_array_equal(dead, (model.get_layer("b").kernel.numpy() == 0).all(axis=0))


def test_layers_selects_layers_and_whole_coupled_groups():
    model = residual()
    with oneshot.apply_masks(model, 0.5, granularity="unit", layers=["b"]):
        assert (model.get_layer("a").kernel.numpy() == 0).any()
        assert not (model.get_layer("c").kernel.numpy() == 0).any()
    with oneshot.apply_masks(model, 0.5, layers="c") as pruned:
        assert pruned.layer_names == ["c"]
        assert not (model.get_layer("a").kernel.numpy() == 0).any()


def test_conv_filters_and_depthwise_units():
    x = keras.Input((8, 8, 3))
    y = keras.layers.Conv2D(8, 3, name="conv")(x)
    y = keras.layers.DepthwiseConv2D(3, name="dw")(y)
    y = keras.layers.GlobalAveragePooling2D()(y)
    model = keras.Model(x, keras.layers.Dense(2, name="out")(y))
    with oneshot.apply_masks(model, 0.75, granularity="unit") as pruned:
        dead = (model.get_layer("conv").kernel.numpy() == 0).all(axis=(0, 1, 2))
        assert dead.sum() == 6
        dw = model.get_layer("dw").kernel.numpy()  # (3, 3, 8, 1): unit = input channel
        np.testing.assert_array_equal((dw == 0).all(axis=(0, 1, 3)), dead)
        assert pruned.groups[0].layers == ("conv", "dw")


def test_output_layers_are_found_through_weightless_layers():
    x = keras.Input((4,))
    h = keras.layers.Dense(5, name="h")(x)
    y = keras.layers.Dense(3, name="logits")(h)
    y = keras.layers.Activation("softmax")(keras.layers.Dropout(0.1)(y))
    model = keras.Model(x, [y, keras.layers.Dense(1, name="aux")(h)])
    assert oneshot.output_layers(model) == {"logits", "aux"}


def test_bad_arguments_raise_keras_style_errors():
    model = mlp()
    with pytest.raises(ValueError, match="Argument `granularity` must be one of"):
        oneshot.OneShot(model, granularity="block")
    with pytest.raises(ValueError, match=r"must be in \[0, 1\). Received: sparsity=1.0"):
        oneshot.apply_masks(model, 1.0)
    with pytest.raises(TypeError, match="Received: sparsity='0.5'"):
        oneshot.apply_masks(model, "0.5")
    with pytest.raises(ValueError, match="Argument `method`"):
        oneshot.apply_masks(model, 0.5, method="taylor")
    with pytest.raises(ValueError, match=r"not pruned here: \['nope'\]"):
        oneshot.OneShot(model, layers=["nope"])
    with pytest.raises(TypeError, match="must be a Keras model"):
        oneshot.OneShot("model.keras")


def test_one_shot_masks_match_pruning_the_saved_weights_file(tmp_path):
    model = mlp()
    path = tmp_path / "m.weights.h5"
    for granularity in ("weight", "unit"):
        model.save_weights(path)
        tfprune.h5.prune_weights_file(path, 0.7, granularity=granularity)
        from_file = mlp()
        from_file.load_weights(path)
        with oneshot.apply_masks(model, 0.7, granularity=granularity):
            for a, b in zip(model.get_weights(), from_file.get_weights()):
                np.testing.assert_array_equal(a, b)


def test_docstring_examples_run():
    result = doctest.testmod(oneshot, extraglobs={"tfprune": tfprune})
    assert result.attempted > 0 and result.failed == 0
