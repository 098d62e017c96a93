"""tfprune.flops.layer_costs: params and FLOPs (2 per multiply-accumulate)."""

import keras
import pytest

from tfprune import flops

L = keras.layers


@pytest.mark.parametrize(
    "layer, input_shape, params, flops_",
    [
        (L.Dense(10), (784,), 7850, 2 * 784 * 10),
        (L.Dense(4, use_bias=False), (5, 3), 12, 2 * 5 * 3 * 4),
        (L.Conv2D(4, 3), (8, 8, 3), 112, 2 * 6 * 6 * 3 * 3 * 3 * 4),
        (L.Conv1D(2, 3, padding="same"), (10, 4), 26, 2 * 10 * 3 * 4 * 2),
        (L.DepthwiseConv2D(3, depth_multiplier=2), (6, 6, 3), 60, 2 * 4 * 4 * 3 * 3 * 3 * 2),
        (L.SeparableConv2D(5, 3, depth_multiplier=2), (6, 6, 4), 117, 2 * 4 * 4 * (72 + 40)),
        (L.Conv2DTranspose(2, 3, strides=2), (4, 4, 3), 56, 2 * 4 * 4 * 3 * 3 * 2 * 3),
        (L.BatchNormalization(), (6, 6, 3), 12, 0),
        (L.MaxPooling2D(), (6, 6, 3), 0, 0),
        (L.Embedding(100, 8), (5,), 800, 0),
        (L.LSTM(4), (5, 3), 128, None),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, L.Layer) else None,
)
def test_single_layer_costs(layer, input_shape, params, flops_):
    model = keras.Sequential([keras.Input(input_shape), layer])
    assert flops.layer_costs(model) == {layer.name: (params, flops_)}


def test_unknown_spatial_size_gives_none():
    model = keras.Sequential(
        [keras.Input((None, None, 3)), L.Conv2D(4, 3), L.GlobalAveragePooling2D(), L.Dense(2)]
    )
    costs = flops.layer_costs(model)
    assert costs[model.layers[0].name] == (112, None)
    assert costs[model.layers[-1].name] == (10, 16)


def test_nested_models_are_flattened_and_shared_layers_counted_per_call():
    inner = keras.Sequential([keras.Input((4,)), L.Dense(3, name="inner_dense")], name="inner")
    shared = L.Dense(4, name="shared")
    x = keras.Input((4,))
    y = inner(shared(shared(x)))
    costs = flops.layer_costs(keras.Model(x, y))
    assert costs == {"shared": (20, 2 * 2 * 16), "inner_dense": (15, 24)}


class PruneLowMagnitude(keras.layers.Wrapper):
    """Stand-in with the real wrapper's class name and an extra mask variable."""

    def build(self, input_shape):
        super().build(input_shape)
        self.mask = self.add_weight(shape=self.layer.kernel.shape, initializer="ones")

    def call(self, x):
        return self.layer(x)


def test_wrapped_layers_are_keyed_by_the_inner_name_without_masks():
    x = keras.Input((6,))
    y = PruneLowMagnitude(L.Dense(5, name="dense"), name="prune_dense")(x)
    assert flops.layer_costs(keras.Model(x, y)) == {"dense": (35, 60)}


def test_subclassed_model_has_params_and_unknown_flops():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = L.Dense(2, name="d")

        def call(self, x):
            return self.d(x)

    net = Net()
    net(keras.ops.zeros((1, 3)))
    assert flops.layer_costs(net) == {"d": (8, None)}
