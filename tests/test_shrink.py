"""tfprune.shrink: dead units are removed for real and the function is unchanged."""

import importlib
import os
import pathlib
import warnings

import keras
import numpy as np
import pytest

from tfprune import masks, registry
from tfprune.shrink import shrink

# The module, even once `tfprune.shrink` names the function.
shrink_lib = importlib.import_module("tfprune.shrink")
L = keras.layers
TOL = 1e-5


# --------------------------------------------------------------------------- helpers


def kill_units(layer, sparsity, rng, bias="random"):
    """Zero the lowest-norm units of `layer` (registry unit layout, masks.select_np).

    bias: "random" gives dead units a nonzero bias (so their output is a nonzero
    constant and folding matters), "zero" zeroes it like unit pruning does.
    Returns the keep mask.
    """
    _, kernel, targets = registry.get_spec(layer).unit_targets(layer)
    shape = targets[0][2]
    keep = masks.select_np([masks.unit_scores_np(kernel.numpy(), shape)], sparsity)[0]
    return set_dead(layer, ~keep, rng, bias)


def set_dead(layer, dead, rng, bias="random"):
    """Zero the units `dead` (bool per unit) of `layer`'s unit kernel."""
    _, kernel, targets = registry.get_spec(layer).unit_targets(layer)
    shape = targets[0][2]
    kernel.assign(kernel.numpy() * (~dead).reshape(shape))
    if getattr(layer, "bias", None) is not None:
        b = layer.bias.numpy()
        new = rng.normal(size=b.shape) if bias == "random" else np.zeros_like(b)
        layer.bias.assign(np.where(dead, new, b).astype(np.float32))
    return ~dead


def randomize_bn(model, rng, beta=None):
    """Non-trivial BatchNormalization statistics everywhere."""
    for layer in model._flatten_layers():
        if isinstance(layer, L.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, n),
                    rng.normal(size=n) if beta is None else np.full(n, beta),
                    rng.normal(size=n) * 0.1,
                    rng.uniform(0.5, 1.5, n),
                ]
            )


def max_diff(a, b, x):
    ya, yb = a(x, training=False), b(x, training=False)
    return float(np.max(np.abs(np.asarray(ya, np.float64) - np.asarray(yb, np.float64))))


def batch(model, rng, n=4):
    return rng.normal(size=(n,) + tuple(model.inputs[0].shape[1:])).astype(np.float32)


def shrunk_and_checked(model, rng, **kw):
    """Shrink with a report; assert fewer params and equal outputs."""
    small, report = shrink(model, return_report=True, **kw)
    assert small.count_params() < model.count_params()
    assert report.params_after == small.count_params()
    assert max_diff(model, small, batch(model, rng)) <= TOL
    return small, report


def weights_of(model):
    return [w.copy() for w in model.get_weights()]


# --------------------------------------------------------------------------- graph patterns


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"], ids=lambda a: f"act-{a}")
def test_dense_chain_folds_constant_outputs_into_next_bias(rng, activation):
    model = keras.Sequential(
        [
            keras.Input((20,)),
            L.Dense(16, activation=activation, name="d1"),
            L.Dropout(0.3),
            L.Dense(12, name="d2"),
            L.Activation(activation),
            L.Dense(3, name="out"),
        ]
    )
    kill_units(model.get_layer("d1"), 0.5, rng)
    kill_units(model.get_layer("d2"), 0.25, rng)
    small, report = shrunk_and_checked(model, rng)
    assert [small.get_layer(n).units for n in ("d1", "d2", "out")] == [8, 9, 3]
    assert report.skipped == {}


def _digits(rng, n=64):
    """`n` MNIST test digits (784 floats in [0, 1]) from `$TFPRUNE_DATA_DIR` or
    `../shared/data`; without them, labelled stand-ins with the same statistics
    that matter here (80% exact zeros, the rest in (0, 1])."""
    for folder in (os.environ.get("TFPRUNE_DATA_DIR"),
                   pathlib.Path(__file__).resolve().parents[2] / "shared/data"):
        path = pathlib.Path(folder or "missing") / "mnist.npz"
        if path.exists():
            with np.load(path) as data:
                return data["x_test"][:n].reshape(n, 784).astype(np.float32) / 255.0, "mnist"
    x = rng.uniform(0.0, 1.0, (n, 784)).astype(np.float32)
    x[rng.random(x.shape) < 0.8] = 0.0
    return x, "stand-in digits (no mnist.npz on this machine)"


def test_mlp_without_bias_on_real_mnist_digits(rng):
    """The seed MLP layout (use_bias=False, relu), checked on real inputs (or
    stand-ins with their sparsity where MNIST is missing: never skipped)."""
    x, source = _digits(rng)
    model = keras.Sequential(
        [keras.Input((784,))]
        + [L.Dense(n, activation="relu", use_bias=False) for n in (64, 32)]
        + [L.Dense(10, use_bias=False)]
    )
    for layer in model.layers[:-1]:
        kill_units(layer, 0.75, rng)
    small = shrink(model)
    assert [l.units for l in small.layers] == [16, 8, 10]
    assert max_diff(model, small, x) <= TOL, source


def conv_bn_pool_conv(padding):
    x = keras.Input((12, 12, 3))
    h = L.Conv2D(8, 3, name="c1")(x)
    h = L.BatchNormalization(name="bn1")(h)
    h = L.ReLU()(h)
    h = L.MaxPooling2D()(h)
    h = L.Conv2D(6, 3, padding=padding, activation="elu", name="c2")(h)
    h = L.GlobalAveragePooling2D()(h)
    return keras.Model(x, L.Dense(4, name="out")(h))


def test_conv_bn_relu_pool_conv_valid_removes_filters_and_bn_channels(rng):
    model = conv_bn_pool_conv("valid")
    randomize_bn(model, rng)
    kill_units(model.get_layer("c1"), 0.5, rng)
    kill_units(model.get_layer("c2"), 0.5, rng)
    small, report = shrunk_and_checked(model, rng)
    assert small.get_layer("c1").filters == 4
    assert small.get_layer("bn1").gamma.shape == (4,)
    assert small.get_layer("c2").filters == 3
    assert small.get_layer("c2").kernel.shape == (3, 3, 4, 3)
    assert report.flops_after < report.flops_before


@pytest.mark.parametrize(
    "beta, removed", [(-5.0, True), (5.0, False)], ids=["const-zero", "const-nonzero"]
)
def test_same_padding_removes_only_zero_constants(rng, beta, removed):
    """relu(BN(dead)) is 0 for a very negative beta (removable through a 'same'
    conv) and > 0 for a positive one (kept: not constant at the padded borders)."""
    model = conv_bn_pool_conv("same")
    randomize_bn(model, rng, beta=beta)
    kill_units(model.get_layer("c1"), 0.5, rng)
    kill_units(model.get_layer("c2"), 0.5, rng)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        small, report = shrink(model, return_report=True)
    assert any("c1:" in str(w.message) for w in caught) is not removed
    assert small.get_layer("c1").filters == (4 if removed else 8)
    assert small.get_layer("c2").filters == 3
    assert max_diff(model, small, batch(model, rng)) <= TOL
    if not removed:
        assert "padding='same'" in report.skipped["c1"]
        assert report.skipped["c1"].startswith("4 of 4 dead units kept")


@pytest.mark.parametrize("activation", ["relu", "sigmoid"], ids=lambda a: f"act-{a}")
def test_conv_flatten_dense_maps_channels_to_flat_positions(rng, activation):
    model = keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            L.Conv2D(5, 3, activation=activation, name="conv"),
            L.Flatten(),
            L.Dense(7, name="fc"),
            L.Dense(2, name="out"),
        ]
    )
    kill_units(model.get_layer("conv"), 0.4, rng)
    small, _ = shrunk_and_checked(model, rng)
    assert small.get_layer("conv").filters == 3
    assert small.get_layer("fc").kernel.shape == (4 * 4 * 3, 7)


def test_reshape_keeping_channels_last_and_zero_padding(rng):
    x = keras.Input((6, 6, 2))
    h = L.Conv2D(6, 1, activation="relu", name="conv")(x)
    h = L.ZeroPadding2D(1)(h)
    h = L.Conv2D(4, 3, name="conv2")(h)
    h = L.Reshape((36, 4))(h)
    h = L.Reshape((144,))(h)
    out = L.Dense(3, name="out")(L.Dense(5, name="fc")(h))
    model = keras.Model(x, out)
    set_dead(model.get_layer("conv"), np.arange(6) % 2 == 0, rng, bias="zero")
    kill_units(model.get_layer("conv2"), 0.5, rng)
    small, _ = shrunk_and_checked(model, rng)
    assert small.get_layer("conv").filters == 3
    assert small.get_layer("conv2").filters == 2
    assert small.get_layer("fc").kernel.shape == (72, 5)


def test_zero_padding_keeps_nonzero_constants_and_reports(rng):
    model = keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            L.Conv2D(4, 1, activation="sigmoid", name="conv"),
            L.ZeroPadding2D(1),
            L.Conv2D(3, 3, name="conv2"),
            L.GlobalMaxPooling2D(),
            L.Dense(2, name="out"),
        ]
    )
    kill_units(model.get_layer("conv"), 0.5, rng)
    with pytest.warns(UserWarning, match="ZeroPadding2D"):
        small, report = shrink(model, return_report=True)
    assert small.get_layer("conv").filters == 4
    assert "not constant after ZeroPadding2D" in report.skipped["conv"]
    assert max_diff(model, small, batch(model, rng)) <= TOL


def test_global_pooling_to_dense(rng):
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            L.Conv2D(10, 3, padding="same", activation="sigmoid", name="conv"),
            L.GlobalAveragePooling2D(),
            L.Dense(4, name="out"),
        ]
    )
    kill_units(model.get_layer("conv"), 0.7, rng)
    small, _ = shrunk_and_checked(model, rng)
    assert small.get_layer("conv").filters == 3


def test_depthwise_and_separable_follow_removed_input_channels(rng):
    model = keras.Sequential(
        [
            keras.Input((10, 10, 3)),
            L.Conv2D(8, 1, activation="relu6", name="expand"),
            L.DepthwiseConv2D(3, name="dw"),
            L.BatchNormalization(name="bn"),
            L.ReLU(),
            L.SeparableConv2D(6, 3, depth_multiplier=2, activation="sigmoid", name="sep"),
            L.Conv2D(5, 1, name="project"),
            L.GlobalAveragePooling2D(),
            L.Dense(2, name="out"),
        ]
    )
    randomize_bn(model, rng)
    kill_units(model.get_layer("expand"), 0.5, rng)
    kill_units(model.get_layer("sep"), 0.5, rng)
    small, report = shrunk_and_checked(model, rng)
    assert small.get_layer("dw").kernel.shape == (3, 3, 4, 1)
    assert small.get_layer("sep").depthwise_kernel.shape == (3, 3, 4, 2)
    assert small.get_layer("sep").pointwise_kernel.shape == (1, 1, 8, 3)
    assert small.get_layer("project").kernel.shape == (1, 1, 3, 5)
    assert report.skipped == {}


def resnet_block():
    x = keras.Input((8, 8, 3))
    s = L.ReLU()(L.Conv2D(8, 3, padding="same", name="stem")(x))
    h = L.Conv2D(6, 3, padding="same", name="c1")(s)
    h = L.ReLU()(L.BatchNormalization(name="bn1")(h))
    h = L.Conv2D(8, 3, padding="same", name="c2")(h)
    h = L.BatchNormalization(name="bn2")(h)
    y = L.ReLU()(L.Add()([s, h]))
    y = L.GlobalAveragePooling2D()(y)
    return keras.Model(x, L.Dense(3, name="out")(y))


def test_resnet_block_removes_units_dead_in_every_member(rng):
    model = resnet_block()
    randomize_bn(model, rng)
    bn1 = model.get_layer("bn1")
    bn1.beta.assign(np.full(6, -9.0, np.float32))  # relu(bn1(dead c1 unit)) == 0
    dead = np.array([1, 0, 1, 0, 0, 1, 0, 0], bool)
    set_dead(model.get_layer("stem"), dead, rng, bias="zero")
    set_dead(model.get_layer("c2"), dead, rng)  # nonzero constant, folded into `out`
    kill_units(model.get_layer("c1"), 0.5, rng)
    small, report = shrunk_and_checked(model, rng)
    assert [small.get_layer(n).filters for n in ("stem", "c1", "c2")] == [5, 3, 5]
    assert small.get_layer("bn2").gamma.shape == (5,)
    assert small.get_layer("out").kernel.shape == (5, 3)
    assert report.skipped == {}


def test_resnet_unit_dead_in_one_branch_only_is_kept_and_reported(rng):
    model = resnet_block()
    set_dead(model.get_layer("stem"), np.arange(8) < 4, rng, bias="zero")
    with pytest.warns(UserWarning, match="stem"):
        small, report = shrink(model, return_report=True)
    assert small.get_layer("stem").filters == 8
    assert "the coupled unit of 'c2' is not dead" in report.skipped["stem"]


@pytest.mark.parametrize(
    "merge", [L.Subtract, L.Multiply, L.Maximum, L.Average], ids=lambda m: m.__name__
)
def test_merges_tie_their_inputs(rng, merge):
    x = keras.Input((10,))
    a = L.Dense(8, activation="sigmoid", name="a")(x)
    b = L.Dense(8, activation="tanh", name="b")(x)
    h = merge()([a, b])
    model = keras.Model(x, L.Dense(2, name="out")(h))
    dead = np.arange(8) % 2 == 1
    set_dead(model.get_layer("a"), dead, rng)
    set_dead(model.get_layer("b"), dead, rng)
    small, _ = shrunk_and_checked(model, rng)
    assert small.get_layer("a").units == small.get_layer("b").units == 4


def test_concatenate_maps_offsets(rng):
    x = keras.Input((9, 9, 3))
    a = L.Conv2D(4, 3, activation="sigmoid", name="a")(x)
    b = L.Conv2D(6, 3, activation="relu", name="b")(x)
    h = L.Concatenate()([a, b])
    h = L.Conv2D(5, 3, name="mix")(h)
    h = L.Concatenate()([L.GlobalAveragePooling2D()(h), L.GlobalMaxPooling2D()(a)])
    model = keras.Model(x, L.Dense(2, name="out")(h))
    set_dead(model.get_layer("a"), np.array([1, 0, 0, 1], bool), rng)
    set_dead(model.get_layer("b"), np.array([0, 1, 1, 1, 0, 0], bool), rng)
    kill_units(model.get_layer("mix"), 0.4, rng)
    small, _ = shrunk_and_checked(model, rng)
    assert small.get_layer("a").filters == 2
    assert small.get_layer("b").filters == 3
    assert small.get_layer("mix").kernel.shape == (3, 3, 5, 3)
    assert small.get_layer("out").kernel.shape == (3 + 2, 2)


def test_nested_sequential_inside_functional(rng):
    inner = keras.Sequential(
        [
            keras.Input((6,)),
            L.Dense(5, activation="sigmoid", name="inner_a"),
            L.Dense(4, name="inner_b"),
        ],
        name="inner",
    )
    x = keras.Input((10,))
    h = L.Dense(6, activation="tanh", name="outer_a")(x)
    h = inner(h)
    model = keras.Model(x, L.Dense(2, name="out")(L.ReLU()(h)))
    kill_units(model.get_layer("outer_a"), 0.5, rng)
    kill_units(inner.get_layer("inner_a"), 0.4, rng)
    kill_units(inner.get_layer("inner_b"), 0.5, rng)
    small, _ = shrunk_and_checked(model, rng)
    new_inner = small.get_layer("inner")
    assert isinstance(new_inner, keras.Sequential)
    assert new_inner.inputs[0].shape == (None, 3)
    assert [new_inner.get_layer(n).units for n in ("inner_a", "inner_b")] == [3, 2]


# --------------------------------------------------------------------------- behaviour


@pytest.mark.parametrize("round_to", [1, 4, 8], ids=lambda r: f"round_to-{r}")
def test_round_to_keeps_multiples(rng, round_to):
    model = keras.Sequential(
        [
            keras.Input((12,)),
            L.Dense(30, activation="sigmoid", name="d1"),
            L.Dense(21, activation="relu", name="d2"),
            L.Dense(3, name="out"),
        ]
    )
    kill_units(model.get_layer("d1"), 0.6, rng)
    kill_units(model.get_layer("d2"), 0.9, rng)
    small = shrink(model, round_to=round_to)
    expected = [masks.round_keep_count(k, n, round_to) for k, n in ((12, 30), (2, 21))]
    assert [small.get_layer(n).units for n in ("d1", "d2")] == expected
    assert max_diff(model, small, batch(model, rng)) <= TOL


def test_lambda_consumer_is_reported_and_left_whole(rng):
    x = keras.Input((8,))
    h = L.Dense(6, activation="sigmoid", name="to_lambda")(x)
    h = L.Lambda(lambda t: t * 2.0, name="lam")(h)
    model = keras.Model(x, L.Dense(2, name="out")(L.Dense(5, name="d")(h)))
    kill_units(model.get_layer("to_lambda"), 0.5, rng)
    kill_units(model.get_layer("d"), 0.4, rng)
    with pytest.warns(UserWarning, match="to_lambda"):
        small, report = shrink(model, return_report=True)
    assert small.get_layer("to_lambda").units == 6
    assert "feeds Lambda 'lam'" in report.skipped["to_lambda"]
    assert small.get_layer("d").units == 3
    assert max_diff(model, small, batch(model, rng)) <= TOL


@pytest.mark.parametrize(
    "shape, consumer, reason",
    [
        ((6, 6, 3), lambda: L.Conv2DTranspose(3, 3, strides=2, name="next"), "transposed conv"),
        ((10, 3), lambda: L.Conv1D(3, 3, padding="causal", name="next"), "padding='causal'"),
        ((6, 6, 3), lambda: L.Conv2D(4, 1, groups=2, name="next"), "grouped convolution"),
    ],
    ids=["conv-transpose", "causal-conv1d", "grouped-conv"],
)
def test_consumers_that_cannot_fold_a_constant_keep_dead_units(rng, shape, consumer, reason):
    conv = L.Conv2D if len(shape) == 3 else L.Conv1D
    model = keras.Sequential(
        [
            keras.Input(shape),
            conv(6, 1, activation="sigmoid", name="p"),
            consumer(),
            L.Flatten(),
            L.Dense(2, name="out"),
        ]
    )
    kill_units(model.get_layer("p"), 0.5, rng)
    with pytest.warns(UserWarning, match=reason):
        small, report = shrink(model, return_report=True)
    assert small.get_layer("p").filters == 6
    assert reason in report.skipped["p"]
    assert max_diff(model, small, batch(model, rng)) <= TOL


def test_embedding_columns_are_removed(rng):
    model = keras.Sequential(
        [
            keras.Input((5,), dtype="int32"),
            L.Embedding(20, 8, name="emb"),
            L.Dense(6, activation="sigmoid", name="d"),
            L.GlobalAveragePooling1D(),
            L.Dense(2, name="out"),
        ]
    )
    kill_units(model.get_layer("emb"), 0.5, rng)
    small = shrink(model)
    assert small.get_layer("emb").output_dim == 4
    assert max_diff(model, small, rng.integers(0, 20, (3, 5))) <= TOL


def test_output_layer_keeps_its_units(rng):
    model = keras.Sequential([keras.Input((5,)), L.Dense(6, name="d"), L.Dense(4, name="out")])
    kill_units(model.get_layer("out"), 0.5, rng)
    with pytest.warns(UserWarning, match="the output layer keeps its units"):
        small, report = shrink(model, return_report=True)
    assert small.get_layer("out").units == 4
    assert small.outputs[0].shape == (None, 4)
    assert "output layer keeps its units" in report.skipped["out"]


def test_input_model_is_not_mutated(rng):
    model = resnet_block()
    randomize_bn(model, rng)
    dead = np.arange(8) >= 5
    set_dead(model.get_layer("stem"), dead, rng, bias="zero")
    set_dead(model.get_layer("c2"), dead, rng)
    before = weights_of(model)
    config = model.get_config()
    small = shrink(model)
    assert model.get_config() == config
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    small.get_layer("c2").kernel.assign(np.zeros(small.get_layer("c2").kernel.shape))
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_nothing_dead_gives_an_equal_copy(rng):
    model = conv_bn_pool_conv("same")
    small, report = shrink(model, return_report=True)
    assert small is not model
    assert small.count_params() == model.count_params()
    assert report.params_before == report.params_after
    assert max_diff(model, small, batch(model, rng)) == 0.0


def test_report_rows_and_text(rng):
    model = keras.Sequential([keras.Input((10,)), L.Dense(8, name="d"), L.Dense(2, name="out")])
    kill_units(model.get_layer("d"), 0.5, rng)
    _, report = shrink(model, return_report=True)
    row = report.rows[0]
    assert (row.layer, row.units_before, row.units_after) == ("d", 8, 4)
    assert (row.params_before, row.params_after) == (88, 44)
    assert (row.flops_before, row.flops_after) == (160, 80)
    assert report.round_to == 1 and report.max_abs_diff <= TOL
    assert "d " in str(report) and "88 -> 44" in str(report)


def test_verification_raises_on_a_wrong_fold(rng, monkeypatch):
    model = keras.Sequential(
        [keras.Input((6,)), L.Dense(6, activation="sigmoid", name="d"), L.Dense(2, name="out")]
    )
    kill_units(model.get_layer("d"), 0.5, rng)
    monkeypatch.setattr(shrink_lib, "_input_matrix", lambda layer: np.zeros((6, 2)))
    with pytest.raises(RuntimeError, match="differ from the input model"):
        shrink(model)
    assert shrink(model, verify=False).get_layer("d").units == 3


def test_verify_accepts_real_inputs(rng):
    model = keras.Sequential([keras.Input((6,)), L.Dense(6, name="d"), L.Dense(2, name="out")])
    kill_units(model.get_layer("d"), 0.5, rng)
    _, report = shrink(model, return_report=True, verify=rng.normal(size=(3, 6)).astype("float32"))
    assert report.max_abs_diff <= TOL


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"round_to": 0}, ValueError, "Argument `round_to` must be >= 1. Received: round_to=0"),
        ({"round_to": 2.0}, TypeError, "Argument `round_to` must be an integer. Received: round_to=2.0"),
        ({"verify": "yes"}, TypeError, "Argument `verify` must be True, False or a batch"),
    ],
    ids=["round_to-0", "round_to-float", "verify-str"],
)
def test_bad_arguments_raise(kwargs, error, message):
    model = keras.Sequential([keras.Input((3,)), L.Dense(2)])
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        shrink(model, **kwargs)


def test_a_non_model_is_a_type_error():
    with pytest.raises(TypeError, match=r"Argument `model` must be a Keras model. Received: model='x'"):
        shrink("x")


@pytest.mark.parametrize(
    "layer_name, weight, values, count",
    [
        ("d", "kernel", [np.nan], "1 of 48"),
        ("d", "bias", [np.inf, -np.inf], "2 of 8"),
        ("bn", "moving_variance", [np.nan], "1 of 8"),
    ],
    ids=["nan-kernel", "inf-bias", "nan-bn-statistic"],
)
def test_non_finite_weights_are_an_error_naming_layer_weight_and_count(rng, layer_name, weight,
                                                                       values, count):
    """Not "outputs differ by nan ... please report this": a clear refusal first."""
    model = keras.Sequential([keras.Input((6,)), L.Dense(8, name="d"),
                              L.BatchNormalization(name="bn"), L.Dense(2, name="out")])
    kill_units(model.get_layer("d"), 0.5, rng)
    var = next(v for v in model.get_layer(layer_name).weights if v.name == weight)
    w = var.numpy().reshape(-1)
    w[: len(values)] = values
    var.assign(w.reshape(var.shape))
    with pytest.raises(ValueError, match=rf"must have finite weights to be shrunk. Received: "
                                         rf"model='{model.name}' \(layer '{layer_name}', weight "
                                         rf"'{weight}': {count} values are NaN or inf\)"):
        shrink(model)


def test_pruned_wrapped_model_is_stripped_then_shrunk(rng):
    import tfprune

    model = keras.Sequential(
        [keras.Input((12,)), L.Dense(16, activation="relu", name="d1"), L.Dense(3, name="out")]
    )
    pruned = tfprune.prune_low_magnitude(
        model, tfprune.ConstantSparsity(0.5, begin_step=0, frequency=1), granularity="unit"
    )
    x = rng.normal(size=(16, 12)).astype(np.float32)
    pruned.compile("sgd", "mse")
    pruned.fit(x, rng.normal(size=(16, 3)), epochs=1, batch_size=8, verbose=0,
               callbacks=[tfprune.callbacks.UpdatePruningStep()])
    small = shrink(pruned)
    assert small.get_layer("d1").units == 8
    assert max_diff(tfprune.strip_pruning(pruned), small, x) <= TOL
