"""Every use of private Keras API in tfprune, behind one module.

tfprune needs a few things Keras 3 does not expose publicly: the layers of a model
walked recursively, the functional graph (nodes, the layer that produced a
symbolic tensor), a layer's `input_shape=` argument, the optimizer's variable
list (JAX's stateless step), and some `keras.src` helpers for reading and writing
saved models. They are all here, so a Keras upgrade that renames one is a fix in
this file alone (tests/test_compat.py checks each against the installed Keras).
"""

import sys

import keras
from keras.src.backend.common import global_state  # noqa: F401  (re-exported)
from keras.src.backend.common.stateless_scope import in_stateless_scope  # noqa: F401
from keras.src.saving import saving_lib  # noqa: F401
from keras.src.saving import serialization_lib  # noqa: F401
from keras.src.utils.naming import to_snake_case  # noqa: F401

__all__ = [
    "KERAS_LAYERS_MODULE", "MHA_PROJECTIONS", "flatten_layers", "child_layers", "producer", "producer_name",
    "inbound_nodes", "outbound_nodes", "sequential_graph", "has_graph", "nodes_by_depth",
    "inputs_struct", "outputs_struct", "input_shape_arg", "optimizer_variables",
    "new_train_function", "called_by_fit", "in_stateless_scope", "direct_call",
    "plain_call_layer", "keras_mask", "tf_xla_tracing",
    "global_state", "saving_lib", "serialization_lib", "to_snake_case",
]

KERAS_LAYERS_MODULE = "keras.src.layers"  # where Keras's built-in layer classes live

# MultiHeadAttention's projection sublayers (private attributes), in weight order.
MHA_PROJECTIONS = ("_query_dense", "_key_dense", "_value_dense", "_output_dense")


_PLAIN_CALL = frozenset((
    keras.layers.Dense, keras.layers.EinsumDense, keras.layers.Conv1D, keras.layers.Conv2D,
    keras.layers.Conv3D, keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose, keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv1D, keras.layers.SeparableConv2D,
))


def plain_call_layer(layer):
    """Whether `layer.__call__` does nothing for `layer` beyond what an outer
    layer's `__call__` with the same dtype policy already did (convert and
    autocast the inputs, resolve `training`): a built-in Dense / EinsumDense /
    convolution with no activity regularizer, quantization or rematerialization.
    Then `direct_call` may run its `call` (as Keras's `TimeDistributed` does)."""
    return (type(layer) in _PLAIN_CALL and layer.built
            and getattr(layer, "activity_regularizer", None) is None
            and layer.dtype_policy.quantization_mode is None
            and getattr(layer, "_remat_mode", None) is None)


def keras_mask(x):
    """The Keras mask attached to tensor `x` (None without one)."""
    from keras.src.backend import get_keras_mask

    return get_keras_mask(x)


def direct_call(layer, x, training=None):
    """`layer.call(x)` with `training` given, else inherited from the call
    context an outer layer's `__call__` opened (see `plain_call_layer`)."""
    if not layer._call_has_training_arg:
        return layer.call(x)
    if training is None:
        ctx = global_state.get_global_attribute("current_call_ctx")
        training = None if ctx is None else ctx.get_value("training")
    return layer.call(x) if training is None else layer.call(x, training=training)


def tf_xla_tracing():
    """Whether TensorFlow is tracing a function that XLA compiles
    (`tf.function(jit_compile=True)`, a Keras step with `jit_compile=True`),
    branches and loop bodies inside one included (as tf_keras checks it)."""
    import tensorflow as tf
    from tensorflow.python.ops import control_flow_util

    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


def flatten_layers(model, include_self=False, recursive=True):
    """Every layer inside `model` (nested models' layers too when `recursive`),
    in tracking order."""
    return list(model._flatten_layers(include_self=include_self, recursive=recursive))


def child_layers(parent):
    """The list of layers `parent` (a model or layer) tracks directly (mutable)."""
    return parent._layers


def producer(tensor):
    """The layer (operation) that produced a symbolic Keras tensor."""
    return tensor._keras_history.operation


def producer_name(tensor):
    return tensor._keras_history[0].name


def inbound_nodes(layer):
    """The functional-graph nodes where `layer` was called."""
    return getattr(layer, "_inbound_nodes", [])


def outbound_nodes(layer):
    """The nodes that consume `layer`'s outputs."""
    return getattr(layer, "_outbound_nodes", [])


def sequential_graph(model):
    """The `Functional` graph inside a Sequential model (None before it is built)."""
    return model._functional


def has_graph(model):
    """Whether `model` is itself a functional graph (not subclassed)."""
    return hasattr(model, "_nodes_by_depth")


def nodes_by_depth(fn):
    """`{depth: [node, ...]}` of a functional graph (depth 0: the outputs)."""
    return fn._nodes_by_depth


def inputs_struct(fn):
    return fn._inputs_struct


def outputs_struct(fn):
    return fn._outputs_struct


def input_shape_arg(layer):
    """The `input_shape=` a layer was constructed with (None if none)."""
    return getattr(layer, "_input_shape_arg", None)


def optimizer_variables(optimizer):
    """The optimizer's own variable list (mutable: JAX's stateless train step
    passes exactly these through the step)."""
    return optimizer._variables


def new_train_function(model, train_step):
    """A second compiled train function of `model`, built as Keras builds its own
    (`make_train_function`, which reads `model.train_step`) but around
    `train_step`, a distinct function the backend traces apart from the model's
    own. `model.train_function` is left as it was."""
    own = model.train_function
    missing = object()
    instance_step = vars(model).get("train_step", missing)
    model.train_step = train_step  # an instance attribute shadows the method
    try:
        model.make_train_function(force=True)
        return model.train_function
    finally:
        if instance_step is missing:
            del model.train_step
        else:
            model.train_step = instance_step
        model.train_function = own


def called_by_fit(depth=2):
    """Whether the caller's caller (`depth` frames above this function) is Keras's
    `fit` loop: TensorFlow and JAX call `model.train_function` from `fit` itself,
    `train_on_batch` from its own frame."""
    code = sys._getframe(depth).f_code
    return code.co_name == "fit" and "keras" in code.co_filename
