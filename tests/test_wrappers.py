import keras
import numpy as np
import pytest

import tfprune
from tests.helpers import every_step, fit
from tfprune import masks

L = keras.layers

# (name, layer factory, input shape, dtype)
LAYERS = [
    ("dense", lambda: L.Dense(16), (12,), "float32"),
    ("einsum_dense", lambda: L.EinsumDense("ab,bc->ac", output_shape=16, bias_axes="c"), (12,), "float32"),
    ("conv1d", lambda: L.Conv1D(8, 3), (10, 4), "float32"),
    ("conv2d", lambda: L.Conv2D(8, 3), (8, 8, 3), "float32"),
    ("conv3d", lambda: L.Conv3D(4, 2), (4, 4, 4, 2), "float32"),
    ("conv1d_transpose", lambda: L.Conv1DTranspose(6, 3), (8, 4), "float32"),
    ("conv2d_transpose", lambda: L.Conv2DTranspose(6, 3), (6, 6, 4), "float32"),
    ("conv3d_transpose", lambda: L.Conv3DTranspose(3, 2), (3, 3, 3, 2), "float32"),
    ("separable_conv1d", lambda: L.SeparableConv1D(8, 3), (10, 4), "float32"),
    ("separable_conv2d", lambda: L.SeparableConv2D(8, 3), (8, 8, 4), "float32"),
    ("depthwise_conv1d", lambda: L.DepthwiseConv1D(3, depth_multiplier=2), (10, 4), "float32"),
    ("depthwise_conv2d", lambda: L.DepthwiseConv2D(3, depth_multiplier=2), (8, 8, 4), "float32"),
    ("embedding", lambda: L.Embedding(50, 8), (5,), "int32"),
    ("simple_rnn", lambda: L.SimpleRNN(8), (5, 4), "float32"),
    ("lstm", lambda: L.LSTM(8), (5, 4), "float32"),
    ("gru", lambda: L.GRU(8), (5, 4), "float32"),
]


def _data(shape, dtype, n=16):
    rng = np.random.default_rng(0)
    if dtype == "int32":
        return rng.integers(0, 50, size=(n,) + shape).astype("int32")
    return rng.standard_normal((n,) + shape).astype("float32")


def _train_single(factory, shape, dtype, schedule, granularity="weight", steps=3):
    inputs = keras.Input(shape, dtype=dtype)
    wrapper = tfprune.prune_low_magnitude(factory(), schedule, granularity=granularity)
    out = L.Flatten()(wrapper(inputs))
    model = keras.Model(inputs, L.Dense(1)(out))
    x = _data(shape, dtype)
    fit(model, x, np.ones((len(x), 1), "float32"), steps=steps)
    return wrapper


@pytest.mark.parametrize("name,factory,shape,dtype", LAYERS, ids=[l[0] for l in LAYERS])
def test_every_prunable_layer_gets_exact_weight_sparsity(name, factory, shape, dtype):
    wrapper = _train_single(factory, shape, dtype, every_step(0.75))
    assert wrapper.targets
    for t in wrapper.targets:
        w = keras.ops.convert_to_numpy(t.variable)
        k = masks.keep_count(w.size, 0.75)
        assert (w == 0).sum() == w.size - k, t.path
        np.testing.assert_array_equal(w == 0, t.mask.numpy() == 0)


def test_multi_head_attention_projections_are_pruned():
    q = keras.Input((4, 8))
    wrapper = tfprune.prune_low_magnitude(L.MultiHeadAttention(2, 4), every_step(0.5))
    out = L.Flatten()(wrapper(q, q))
    model = keras.Model(q, L.Dense(1)(out))
    x = _data((4, 8), "float32")
    fit(model, x, np.ones((16, 1), "float32"), steps=2)
    assert len(wrapper.targets) == 4
    for t in wrapper.targets:
        w = keras.ops.convert_to_numpy(t.variable)
        assert (w == 0).sum() == w.size - masks.keep_count(w.size, 0.5)


UNIT_LAYERS = [l for l in LAYERS if l[0] in (
    "dense", "conv1d", "conv2d", "conv2d_transpose", "separable_conv2d", "depthwise_conv2d", "embedding")]


@pytest.mark.parametrize("name,factory,shape,dtype", UNIT_LAYERS, ids=[l[0] for l in UNIT_LAYERS])
def test_unit_pruning_zeroes_whole_units_and_their_bias(name, factory, shape, dtype):
    wrapper = _train_single(factory, shape, dtype, every_step(0.5), granularity="unit")
    kernel_t = wrapper.targets[0]
    unit_mask = kernel_t.mask.numpy().reshape(-1)
    units = unit_mask.size
    assert (unit_mask == 0).sum() == units - masks.keep_count(units, 0.5)
    kernel = keras.ops.convert_to_numpy(kernel_t.variable)
    # Every weight of a pruned unit is zero; kept units keep nonzero weights.
    norms = masks.unit_scores_np(kernel, kernel_t.unit_shape)
    assert (norms[unit_mask == 0] == 0).all() and (norms[unit_mask == 1] > 0).all()
    if len(wrapper.targets) > 1:
        bias = keras.ops.convert_to_numpy(wrapper.targets[1].variable)
        assert (bias[unit_mask == 0] == 0).all()


def test_unit_pruning_zeroes_bias_even_when_bias_grew():
    layer = L.Dense(6, bias_initializer="ones")
    wrapper = _train_single(lambda: layer, (5,), "float32", every_step(0.5), granularity="unit")
    unit_mask = wrapper.targets[0].mask.numpy()
    bias = layer.bias.numpy()
    assert (bias[unit_mask == 0] == 0).all() and (bias[unit_mask == 1] != 0).all()


def test_dense_subclass_is_prunable():
    class MyDense(L.Dense):
        pass

    wrapper = _train_single(lambda: MyDense(8), (4,), "float32", every_step(0.5))
    assert (wrapper.layer.kernel.numpy() == 0).sum() == 16


def test_custom_layer_opts_in_with_prunable_layer_protocol():
    class Scale(L.Layer, tfprune.PrunableLayer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1], 10), initializer="glorot_uniform")

        def call(self, x):
            return x @ self.w

        def get_prunable_weights(self):
            return [self.w]

    wrapper = _train_single(lambda: Scale(), (10,), "float32", every_step(0.9))
    assert (wrapper.layer.w.numpy() == 0).sum() == 90


def test_unprunable_layer_is_a_clear_error():
    with pytest.raises(ValueError, match="Argument `layer` must be a prunable Keras layer"):
        tfprune.PruneLowMagnitude(L.BatchNormalization())


def test_unit_granularity_on_rnn_is_a_clear_error():
    with pytest.raises(ValueError, match="has no output units to prune"):
        tfprune.PruneLowMagnitude(L.LSTM(4), granularity="unit")


@pytest.mark.parametrize(
    "kwargs,error,message",
    [({"granularity": "block"}, ValueError, "Received: granularity='block'"),
     ({"granularity": 1}, TypeError, "Received: granularity=1"),
     ({"scope": "model"}, ValueError, "Received: scope='model'"),
     ({"round_to": 0}, ValueError, "Received: round_to=0"),
     ({"round_to": 2.0}, TypeError, "Received: round_to=2.0"),
     ({"block_size": (1, 0)}, ValueError, "Received: block_size=0"),
     ({"block_pooling_type": "MIN", "block_size": (1, 4)}, ValueError,
      "Received: block_pooling_type='MIN'"),
     ({"sparsity_m_by_n": (4, 4)}, ValueError, "Received: sparsity_m_by_n=(4, 4)"),
     ({"pruning_schedule": 0.5}, TypeError, "Received: pruning_schedule=0.5")],
    ids=["granularity", "granularity-type", "scope", "round_to", "round_to-type", "block",
         "pooling", "m_by_n", "schedule"],
)
def test_bad_wrapper_arguments_raise(kwargs, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        tfprune.PruneLowMagnitude(L.Dense(3), **kwargs)


def test_masks_stay_applied_between_updates_tfmot_206():
    # One update at step 1, then many Adam steps: momentum would move masked weights
    # off zero (tfmot #206); the mask constraint keeps them at exactly zero.
    inputs = keras.Input((20,))
    wrapper = tfprune.prune_low_magnitude(
        L.Dense(10), tfprune.ConstantSparsity(0.8, begin_step=1, frequency=1000))
    model = keras.Model(inputs, wrapper(inputs))
    x = np.random.default_rng(1).standard_normal((64, 20)).astype("float32")
    fit(model, x, np.ones((64, 10), "float32"), steps=25)
    kernel = wrapper.layer.kernel.numpy()
    assert int(wrapper.last_update_step.numpy()) == 1
    assert (kernel == 0).sum() == 160
    np.testing.assert_array_equal(kernel == 0, wrapper.targets[0].mask.numpy() == 0)


def test_layer_kernel_constraint_is_kept_and_composed():
    layer = L.Dense(6, kernel_constraint=keras.constraints.MaxNorm(0.1))
    wrapper = _train_single(lambda: layer, (5,), "float32", every_step(0.5), steps=5)
    kernel = layer.kernel.numpy()
    assert (np.sqrt((kernel**2).sum(axis=0)) <= 0.1 + 1e-6).all()
    assert (kernel == 0).sum() == 15
    assert layer.get_config()["kernel_constraint"] is not None


def test_wrapper_config_is_serializable_and_flat_schedule():
    wrapper = tfprune.PruneLowMagnitude(
        L.Dense(3), tfprune.PolynomialDecay(0.1, 0.5, 0, 100), granularity="unit", round_to=2)
    config = wrapper.get_config()
    restored = tfprune.PruneLowMagnitude.from_config(config)
    assert restored.pruning_schedule == wrapper.pruning_schedule
    assert (restored.granularity, restored.round_to) == ("unit", 2)
    assert keras.saving.get_registered_name(tfprune.PruneLowMagnitude) == "tfprune>PruneLowMagnitude"


def test_inference_does_not_advance_the_step():
    inputs = keras.Input((4,))
    wrapper = tfprune.prune_low_magnitude(L.Dense(2), every_step(0.5))
    model = keras.Model(inputs, wrapper(inputs))
    model.predict(np.ones((8, 4)), verbose=0)
    model(np.ones((2, 4)), training=False)
    assert int(wrapper.pruning_step.numpy()) == 0
