"""tfprune.graph.unit_groups: coupled units share a group, unmappable ones are excluded."""

import keras
import pytest

from tfprune import graph

L = keras.layers


def names(groups):
    return [[layer.name for layer in group] for group in groups]


def residual_model():
    x = keras.Input((8, 8, 3))
    s = L.Conv2D(8, 3, padding="same", name="stem")(x)
    h = L.Conv2D(6, 3, padding="same", name="c1")(s)
    h = L.ReLU()(L.BatchNormalization()(h))
    h = L.Conv2D(8, 3, padding="same", name="c2")(h)
    y = L.ReLU()(L.Add()([s, L.BatchNormalization()(h)]))
    y = L.Conv2D(8, 1, name="c3")(y)
    z = L.Add()([y, s])
    return keras.Model(x, L.Dense(3, name="out")(L.GlobalAveragePooling2D()(z)))


def test_residual_members_form_one_group_and_output_is_excluded():
    groups, excluded = graph.unit_groups(residual_model())
    assert names(groups) == [["stem", "c2", "c3"], ["c1"], ["out"]]
    assert excluded == {"out": graph.OUTPUT_REASON}


def test_every_unit_prunable_layer_is_in_exactly_one_group():
    model = residual_model()
    groups, _ = graph.unit_groups(model)
    flat = [layer for group in groups for layer in group]
    expected = [l for l in graph.leaf_layers(model) if graph.unit_prunable(l)]
    assert sorted(id(l) for l in flat) == sorted(id(l) for l in expected)
    assert len(flat) == len({id(l) for l in flat})


def test_concatenate_keeps_branches_apart():
    x = keras.Input((6, 6, 3))
    a = L.Conv2D(4, 3, name="a")(x)
    b = L.Conv2D(5, 3, name="b")(x)
    h = L.Conv2D(3, 1, name="mix")(L.Concatenate()([a, b]))
    model = keras.Model(x, L.Dense(2, name="out")(L.Flatten()(h)))
    groups, excluded = graph.unit_groups(model)
    assert names(groups) == [["a"], ["b"], ["mix"], ["out"]]
    assert list(excluded) == ["out"]


def test_concatenate_offsets_on_a_merged_path_are_excluded():
    x = keras.Input((6,))
    a = L.Dense(2, name="a")(x)
    b = L.Dense(3, name="b")(x)
    c = L.Dense(5, name="c")(x)
    h = L.Add()([L.Concatenate()([a, b]), c])
    groups, excluded = graph.unit_groups(keras.Model(x, L.Dense(1, name="out")(h)))
    assert names(groups) == [["a", "b", "c"], ["out"]]
    assert excluded["a"] == excluded["c"] == graph.MISALIGNED_REASON


@pytest.mark.parametrize(
    "consumer, detail",
    [
        (lambda: L.Lambda(lambda t: t * 2, name="lam"), "Lambda 'lam'"),
        (lambda: L.Reshape((2, 3), name="mixing_reshape"), "channels do not stay on the last axis"),
        (lambda: L.Activation("softmax", name="sm"), "softmax mixes channels"),
        (lambda: L.LayerNormalization(name="ln"), "LayerNormalization 'ln'"),
    ],
    ids=["lambda", "reshape-mixing-channels", "softmax", "layer-norm"],
)
def test_units_feeding_an_unmappable_layer_are_excluded(consumer, detail):
    x = keras.Input((4,))
    h = L.Dense(6, name="d")(x)
    h = L.Flatten()(consumer()(h))
    _, excluded = graph.unit_groups(keras.Model(x, L.Dense(2, name="out")(h)))
    assert detail in excluded["d"]


def test_units_tied_to_the_model_input_are_excluded():
    x = keras.Input((4,))
    h = L.Add()([x, L.Dense(4, name="d")(x)])
    _, excluded = graph.unit_groups(keras.Model(x, L.Dense(2, name="out")(h)))
    assert excluded["d"] == graph.INPUT_REASON


def test_output_through_activation_and_dropout_is_excluded():
    model = keras.Sequential(
        [keras.Input((4,)), L.Dense(5, name="d"), L.Dense(3, name="last"), L.ReLU(), L.Dropout(0.1)]
    )
    groups, excluded = graph.unit_groups(model)
    assert names(groups) == [["d"], ["last"]]
    assert excluded == {"last": graph.OUTPUT_REASON}


def test_depthwise_joins_the_group_of_the_layer_it_follows():
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            L.Conv2D(6, 1, name="expand"),
            L.DepthwiseConv2D(3, name="dw"),
            L.DepthwiseConv2D(3, depth_multiplier=2, name="dw2"),
            L.Conv2D(4, 1, name="project"),
            L.GlobalAveragePooling2D(),
            L.Dense(2, name="out"),
        ]
    )
    groups, excluded = graph.unit_groups(model)
    assert names(groups) == [["expand", "dw"], ["dw2"], ["project"], ["out"]]
    assert excluded["dw2"] == graph.DEPTHWISE_REASON
    assert "expand" not in excluded


def test_squeeze_excite_multiply_ties_the_gate_to_the_features():
    x = keras.Input((8, 8, 3))
    f = L.Conv2D(6, 3, name="features")(x)
    s = L.Dense(2, activation="relu", name="squeeze")(L.GlobalAveragePooling2D()(f))
    e = L.Reshape((1, 1, 6))(L.Dense(6, activation="sigmoid", name="excite")(s))
    y = L.Multiply()([f, e])
    model = keras.Model(x, L.Dense(2, name="out")(L.GlobalAveragePooling2D()(y)))
    groups, excluded = graph.unit_groups(model)
    assert names(groups) == [["features", "excite"], ["squeeze"], ["out"]]
    assert list(excluded) == ["out"]


def test_nested_sequential_layers_are_traced():
    inner = keras.Sequential([keras.Input((5,)), L.Dense(4, name="i1"), L.Dense(3, name="i2")])
    x = keras.Input((6,))
    h = inner(L.Dense(5, name="o1")(x))
    groups, excluded = graph.unit_groups(keras.Model(x, L.Dense(2, name="out")(h)))
    assert names(groups) == [["o1"], ["i1"], ["i2"], ["out"]]
    assert list(excluded) == ["out"]


class PruneLowMagnitude(keras.layers.Wrapper):
    """Stand-in with the real wrapper's class name: graph unwraps by name."""

    def call(self, x):
        return self.layer(x)


def test_wrappers_are_unwrapped():
    inner = L.Dense(5, name="d")
    x = keras.Input((4,))
    model = keras.Model(x, L.Dense(2, name="out")(PruneLowMagnitude(inner, name="wrap")(x)))
    groups, excluded = graph.unit_groups(model)
    assert groups[0] == [inner]
    assert names(groups) == [["d"], ["out"]]


def test_shared_layer_ties_its_calls():
    shared = L.Dense(4, name="shared")
    x = keras.Input((3,))
    a, b = L.Dense(3, name="a")(x), L.Dense(3, name="b")(x)
    h = L.Concatenate()([shared(a), shared(b)])
    groups, _ = graph.unit_groups(keras.Model(x, L.Dense(2, name="out")(h)))
    assert sorted(sorted(group) for group in names(groups)) == [["a", "b"], ["out"], ["shared"]]


def test_subclassed_and_unbuilt_models_raise():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = L.Dense(2)

        def call(self, x):
            return self.d(x)

    with pytest.raises(ValueError, match="Sequential or functional"):
        graph.unit_groups(Net())
    with pytest.raises(ValueError, match="is not built"):
        graph.unit_groups(keras.Sequential([L.Dense(2)]))


def test_subclassed_nested_model_layers_are_excluded():
    class Block(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = L.Dense(3, name="hidden")

        def call(self, x):
            return self.d(x)

    x = keras.Input((4,))
    h = Block()(L.Dense(4, name="before")(x))
    groups, excluded = graph.unit_groups(keras.Model(x, L.Dense(2, name="out")(h)))
    assert ["hidden"] in names(groups)
    assert "not reached" in excluded["hidden"]
    assert "shrink cannot map" in excluded["before"]


# --------------------------------------------------------------------------- batchnorm_followers


def _after_dense(*between, bn=None):
    """Dense "d" -> `between` layers -> BatchNormalization "bn" -> Dense "out"."""
    x = keras.Input((4, 4, 3))
    h = L.Dense(6, name="d")(x)
    for layer in between:
        h = layer(h)
    h = (bn or L.BatchNormalization(name="bn"))(h)
    return keras.Model(x, L.Dense(2, name="out")(L.Flatten()(h)))


PASS_THROUGH = [
    lambda: L.ReLU(), lambda: L.LeakyReLU(), lambda: L.ELU(), lambda: L.Activation("relu"),
    lambda: L.Activation("tanh"), lambda: L.Dropout(0.2), lambda: L.SpatialDropout2D(0.2),
    lambda: L.GaussianNoise(0.1), lambda: L.GaussianDropout(0.1), lambda: L.AlphaDropout(0.1),
    lambda: L.ActivityRegularization(), lambda: L.Identity(),
    lambda: L.MaxPooling2D(2, padding="same"), lambda: L.ZeroPadding2D(1),
]
PASS_IDS = ["relu", "leaky-relu", "elu", "activation-relu", "activation-tanh", "dropout",
            "spatial-dropout", "gaussian-noise", "gaussian-dropout", "alpha-dropout",
            "activity-regularization", "identity", "max-pooling", "zero-padding"]


@pytest.mark.parametrize("make", PASS_THROUGH, ids=PASS_IDS)
def test_batchnorm_after_channelwise_layers_follows_the_unit_layer(make):
    """LeakyReLU, ELU, GaussianDropout, AlphaDropout ... keep channel i at position
    i: the BatchNormalization normalizes the Dense's units."""
    assert graph.batchnorm_followers(_after_dense(make(), L.ReLU())) == {"d": ["bn"]}


@pytest.mark.parametrize("activation", ["softmax", "log_softmax"])
def test_softmax_activation_stops_the_walk(activation):
    """A softmax mixes the units: the BatchNormalization after it does not follow them."""
    assert graph.batchnorm_followers(_after_dense(L.Activation(activation))) == {}
    assert graph.batchnorm_followers(_after_dense(L.Softmax())) == {}


@pytest.mark.parametrize(
    "model",
    [
        pytest.param(lambda: _after_dense(bn=L.BatchNormalization(axis=1, name="bn")),
                     id="bn-on-another-axis"),
        pytest.param(lambda: _after_dense(L.Reshape((4, 24))), id="after-a-reshape"),
        pytest.param(lambda: _after_dense(L.Lambda(lambda t: t * 2)), id="after-a-lambda"),
    ],
)
def test_batchnorm_on_other_positions_does_not_follow(model):
    assert graph.batchnorm_followers(model()) == {}


def test_followers_in_a_bn_resnet_stop_at_merges_and_at_the_first_bn():
    x = keras.Input((8, 8, 3))
    a = L.Conv2D(8, 3, padding="same", name="stem")(x)
    a = L.BatchNormalization(name="bn_twice")(L.BatchNormalization(name="bn0")(a))
    h = L.ReLU()(L.BatchNormalization(name="bn1")(L.Conv2D(8, 3, padding="same", name="c1")(a)))
    h = L.Add()([a, L.Conv2D(8, 3, padding="same", name="c2")(h)])
    h = L.BatchNormalization(name="bn_after_add")(h)
    h = L.DepthwiseConv2D(3, padding="same", name="dw")(h)
    h = L.BatchNormalization(name="bn_dw")(L.ELU()(h))
    model = keras.Model(x, L.Dense(2, name="out")(L.GlobalAveragePooling2D()(h)))
    assert graph.batchnorm_followers(model) == {"stem": ["bn0"], "c1": ["bn1"], "dw": ["bn_dw"]}


def test_shared_batchnorm_follows_only_when_every_call_reads_the_same_layer():
    x = keras.Input((5,))
    d, e = L.Dense(4, name="d"), L.Dense(4, name="e")
    shared, same = L.BatchNormalization(name="shared"), L.BatchNormalization(name="same")
    h1, h2 = d(x), e(x)
    y = L.Concatenate()([shared(h1), shared(h2), same(L.ReLU()(h1)), same(h1)])
    model = keras.Model(x, L.Dense(2, name="out")(y))
    assert graph.batchnorm_followers(model) == {"d": ["same"]}


def test_followers_cross_nested_models_and_real_pruning_wrappers():
    import tfprune

    inner = keras.Sequential([keras.Input((6,)), L.LeakyReLU(), L.BatchNormalization(name="bn")],
                             name="inner")
    x = keras.Input((5,))
    model = keras.Model(x, L.Dense(2, name="out")(inner(L.Dense(6, name="d")(x))))
    assert graph.batchnorm_followers(model) == {"d": ["bn"]}
    pruned = tfprune.prune_low_magnitude(model, granularity="unit")
    assert any(type(l).__name__ == "PruneLowMagnitude" for l in pruned.layers)
    assert graph.batchnorm_followers(pruned) == {"d": ["bn"]}
