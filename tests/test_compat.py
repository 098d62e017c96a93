"""tfprune/_compat.py: each private Keras API tfprune relies on still exists in the
installed Keras and means what tfprune assumes (a Keras upgrade that breaks one
fails here, by name, rather than deep inside pruning)."""

import keras
import numpy as np
from keras import layers as L

from tfprune import _compat


def _functional():
    x = keras.Input((4,), name="x")
    h = L.Dense(3, name="h")(x)
    inner = keras.Sequential([keras.Input((3,)), L.Dense(2, name="inner_d")], name="inner")
    return keras.Model(x, inner(h), name="outer")


def test_flatten_layers_walks_nested_models_recursively():
    names = [l.name for l in _compat.flatten_layers(_functional())]
    assert {"h", "inner", "inner_d"} <= set(names)
    assert "outer" not in names


def test_child_layers_is_the_models_own_list():
    model = keras.Sequential([keras.Input((3,)), L.Dense(2, name="d")])
    assert [l.name for l in _compat.child_layers(model)][-1] == "d"


def test_producer_and_nodes_follow_the_functional_graph():
    model = _functional()
    out = _compat.producer(model.outputs[0])
    assert out.name == "inner"
    assert _compat.producer_name(model.inputs[0]) == "x"
    h = model.get_layer("h")
    assert [_compat.producer(t).name for n in _compat.inbound_nodes(h) for t in n.input_tensors] == ["x"]
    assert _compat.outbound_nodes(h)
    assert _compat.inbound_nodes(object()) == [] == _compat.outbound_nodes(object())


def test_graph_of_sequential_and_functional_models():
    seq = keras.Sequential([L.Dense(2)])
    assert _compat.sequential_graph(seq) is None  # not built
    seq.build((None, 3))
    fn = _compat.sequential_graph(seq)
    assert _compat.has_graph(fn) and _compat.has_graph(_functional())
    depths = _compat.nodes_by_depth(fn)
    assert sorted(depths) == list(range(len(depths)))
    assert keras.tree.flatten(_compat.inputs_struct(fn))[0] is fn.inputs[0]
    assert keras.tree.flatten(_compat.outputs_struct(fn))[0] is fn.outputs[0]

    class Sub(keras.Model):
        def call(self, x):
            return x

    assert not _compat.has_graph(Sub())


def test_input_shape_arg_is_what_the_layer_was_given():
    assert tuple(_compat.input_shape_arg(L.Dense(2, input_shape=(5,)))) == (5,)
    assert _compat.input_shape_arg(L.Dense(2)) is None


def test_optimizer_variables_is_the_list_the_optimizer_steps():
    opt = keras.optimizers.Adam()
    v = keras.Variable(np.zeros((2,), "float32"))
    opt.build([v])
    variables = _compat.optimizer_variables(opt)
    assert isinstance(variables, list)
    assert {id(x) for x in opt.variables} == {id(x) for x in variables}


def test_mha_projections_are_the_layers_kernels():
    mha = L.MultiHeadAttention(2, 4)
    x = np.zeros((1, 3, 8), "float32")
    mha(x, x)
    for name in _compat.MHA_PROJECTIONS:
        assert getattr(mha, name).kernel.shape[0] > 0


def test_builtin_layers_live_where_compat_says():
    assert type(L.Dense(2)).__module__.startswith(_compat.KERAS_LAYERS_MODULE + ".")
    assert _compat.to_snake_case("MyLayer") == "my_layer"
    assert callable(_compat.serialization_lib.serialize_keras_object)
    assert hasattr(_compat.saving_lib, "save_model")
    assert hasattr(_compat.global_state, "get_global_attribute")


def test_new_train_function_traces_the_given_step_and_keeps_the_models_own():
    model = keras.Sequential([keras.Input((3,)), L.Dense(2)])
    model.compile("sgd", "mse")
    model.make_train_function()
    own = model.train_function
    seen = []

    def step(*args, **kwargs):
        seen.append(True)
        return type(model).train_step(model, *args, **kwargs)

    fn = _compat.new_train_function(model, step)
    assert model.train_function is own and fn is not own
    assert "train_step" not in vars(model)  # the method is the class's again
    model.train_function = fn
    model.train_on_batch(np.ones((4, 3), "float32"), np.ones((4, 2), "float32"))
    assert seen  # traced (or, eagerly, run) through `step`


def test_called_by_fit_sees_fits_frame_and_not_train_on_batch():
    model = keras.Sequential([keras.Input((3,)), L.Dense(2)])
    model.compile("sgd", "mse")
    model.make_train_function()
    own, callers = model.train_function, []

    def spy(*args, **kwargs):
        callers.append(_compat.called_by_fit())
        return own(*args, **kwargs)

    x, y = np.ones((4, 3), "float32"), np.ones((4, 2), "float32")
    model.train_function = spy
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    model.train_on_batch(x, y)
    if keras.backend.backend() in ("tensorflow", "jax"):
        assert callers == [True, False]
    assert not _compat.in_stateless_scope()


class _Doubling(L.Layer):
    """`x * 2` in training, `x` otherwise."""

    def call(self, x, training=None):
        return x * 2.0 if training else x


class _Outer(L.Layer):
    """Runs its inner layer through `direct_call`, as the pruning wrapper does."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def call(self, x, **kwargs):
        return _compat.direct_call(self.inner, x, kwargs.get("training"))


def test_direct_call_takes_training_from_the_outer_call_context():
    x = np.ones((2, 3), "float32")
    outer = _Outer(_Doubling())
    assert outer.inner._call_has_training_arg
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(outer(x, training=True)), 2 * x)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(outer(x, training=False)), x)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(outer(x)), x)
    model = keras.Sequential([keras.Input((3,)), _Outer(_Doubling())])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(x, training=True)), 2 * x)


def test_plain_call_layer_and_keras_mask():
    dense = L.Dense(2)
    assert not _compat.plain_call_layer(dense)  # not built
    dense.build((None, 3))
    assert _compat.plain_call_layer(dense)
    regularized = L.Dense(2, activity_regularizer="l2")
    regularized.build((None, 3))
    assert not _compat.plain_call_layer(regularized)
    assert not _compat.plain_call_layer(L.BatchNormalization())

    class MyDense(L.Dense):
        pass

    mine = MyDense(2)
    mine.build((None, 3))
    assert not _compat.plain_call_layer(mine)  # a subclass may override __call__
    embedded = L.Embedding(5, 2, mask_zero=True)(np.array([[0, 1, 2]]))
    assert _compat.keras_mask(embedded) is not None
    assert _compat.keras_mask(keras.ops.ones((2,))) is None


def test_tf_xla_tracing_is_true_only_inside_functions_xla_compiles():
    import pytest

    if keras.backend.backend() != "tensorflow":
        pytest.skip("TensorFlow's XLA context")
    import tensorflow as tf

    seen = {}

    def probe(name):
        def fn(x):
            seen[name] = _compat.tf_xla_tracing()
            inner = tf.cond(x > 0, lambda: tf.constant(_compat.tf_xla_tracing()),
                            lambda: tf.constant(False))
            return x, inner
        return fn

    _, in_branch = tf.function(probe("xla"), jit_compile=True)(tf.constant(1.0))
    tf.function(probe("graph"), jit_compile=False)(tf.constant(1.0))
    assert seen == {"xla": True, "graph": False}
    assert bool(in_branch) and not _compat.tf_xla_tracing()
