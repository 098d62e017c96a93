"""Model surgery: wrap prunable layers (`prune_low_magnitude`) and unwrap them
(`strip_pruning`).

Sequential and functional models (nested ones included) are cloned: the result has
fresh layers holding copies of the weights, and the input model is left untouched.
Subclassed models cannot be cloned by Keras, so their layers are wrapped (and
later unwrapped) in place and the same model object is returned.
"""

import logging
import warnings

import keras

from tfprune import masks as masks_lib
from tfprune import registry
from tfprune import schedules
from tfprune.wrappers import (
    PruneLowMagnitude,
    check_granularity,
    collect_wrappers,
    link_groups,
)

__all__ = ["prune_low_magnitude", "strip_pruning"]

logger = logging.getLogger("tfprune")

GLOBAL_GROUP = "global"


def _is_graph_model(model):
    return isinstance(model, keras.Sequential) or (
        isinstance(model, keras.Model) and getattr(model, "_is_graph_network", False)
    ) or type(model).__name__ == "Functional"


def _fresh_copy(layer):
    return layer.__class__.from_config(layer.get_config())


def _clone_graph_model(model, clone_layer):
    """Clone a Sequential/functional model (recursively), mapping each layer with
    `clone_layer(layer) -> (new_layer, copy_weights(new_layer))`."""
    pending = []

    def clone_function(layer):
        new, copy_weights = clone_layer(layer)
        pending.append((new, copy_weights))
        return new

    # Like tfmot, return an uncompiled model: keras's clone_model would compile the
    # clone with a fresh optimizer, which a stripped model then saves for nothing.
    compiled = getattr(model, "compiled", False)
    model.compiled = False
    try:
        clone = keras.models.clone_model(
            model, clone_function=clone_function, recursive=True
        )
    finally:
        model.compiled = compiled
    for new, copy_weights in pending:
        copy_weights(new)
    return clone


def _copy_from(layer):
    def copy(new):
        if layer.weights:
            new.set_weights(layer.get_weights())

    return copy


def _output_layers(model):
    """Names of the prunable layers that produce a model output (possibly through
    layers without weights, e.g. an Activation or Dropout)."""
    names = set()
    stack = [t._keras_history.operation for t in model.outputs]
    while stack:
        op = stack.pop()
        if registry.get_spec(op) is not None or isinstance(op, keras.Model):
            names.add(op.name)
            continue
        for node in op._inbound_nodes:
            stack.extend(t._keras_history.operation for t in node.input_tensors)
    return names


_PASS_THROUGH = (
    keras.layers.ReLU, keras.layers.Activation, keras.layers.Dropout,
    keras.layers.SpatialDropout1D, keras.layers.SpatialDropout2D, keras.layers.SpatialDropout3D,
    keras.layers.GaussianNoise, keras.layers.Identity,
)


def _batchnorm_followers(model):
    """`{layer name: [BatchNormalization names]}`: BNs over a unit-prunable layer's
    units (its output, possibly through activations/dropout), on the last axis.

    Unit pruning masks their gamma and beta with the layer's units, like
    Torch-Pruning removes a BN channel with its conv filter.
    """
    followers = {}
    for layer in model._flatten_layers(include_self=False, recursive=True):
        spec = registry.get_spec(layer)
        if spec is None or spec.unit_kernel is None or len(layer._inbound_nodes) != 1:
            continue
        names, frontier = [], [layer]
        while frontier:
            op = frontier.pop()
            for node in op._outbound_nodes:
                nxt = node.operation
                if len(nxt._inbound_nodes) != 1:
                    continue
                if isinstance(nxt, keras.layers.BatchNormalization) and _last_axis(nxt):
                    names.append(nxt.name)
                elif isinstance(nxt, _PASS_THROUGH) and getattr(nxt, "activation", None) not in (
                        "softmax", "log_softmax"):
                    frontier.append(nxt)
        if names:
            followers[layer.name] = names
    return followers


def _last_axis(bn):
    axis = bn.axis[0] if isinstance(bn.axis, (list, tuple)) else bn.axis
    rank = len(bn.input.shape) if hasattr(bn, "input") else None
    return axis == -1 or (rank is not None and axis == rank - 1)


def _unit_plan(model):
    """For unit pruning of a graph model: (excluded {name: reason}, unit_group by name).

    Uses `tfprune.graph.unit_groups` (coupled units share a mask) when available,
    else only keeps the output layers' units.
    """
    try:
        from tfprune import graph
    except ImportError:
        excluded = {n: "produces a model output" for n in _output_layers(model)}
        return excluded, {}
    groups, excluded = graph.unit_groups(model)
    unit_group = {}
    for members in groups:
        names = [m.name for m in members]
        if len(names) > 1:
            for n in names:
                unit_group[n] = "units:" + "+".join(names)
    return excluded, unit_group


def prune_low_magnitude(
    to_prune,
    pruning_schedule=None,
    granularity="weight",
    scope="layer",
    round_to=1,
):
    """Wrap the prunable layers of a layer, list of layers or model for pruning.

    Args:
        to_prune: a Keras layer, a list of layers, or a model (Sequential,
            functional, nested, or subclassed).
        pruning_schedule: `tfprune.ConstantSparsity` or `tfprune.PolynomialDecay`;
            default `ConstantSparsity(0.5, begin_step=0)` as in tfmot.
        granularity: "weight" ranks single weights by |w|; "unit" ranks output units
            (Dense columns, conv filters) by the L2 norm of their incoming weights
            and zeroes whole units, biases included.
        scope: "layer" ranks each weight tensor (or layer's units) on its own;
            "global" ranks all pruned layers together (units are compared by the
            mean square of their incoming weights, so different fan-ins compare
            fairly; every layer keeps at least one weight / `round_to` units).
        round_to: with `granularity="unit"`, keep unit counts a multiple of this.

    Returns:
        A wrapper, list, or pruned model. Unsupported layers are left as they are;
        a model with nothing to prune is an error. With `granularity="unit"`,
        the model's output layers keep their units, coupled layers (a residual
        `Add`) share one unit mask, and layers whose units cannot be removed are
        left unpruned (see `tfprune.graph.unit_groups`).

    Train with `tfprune.callbacks.UpdatePruningStep()` in the callbacks.

    Example:

    >>> import keras, tfprune
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4),
    ...                           keras.layers.Dense(2)])
    >>> pruned = tfprune.prune_low_magnitude(
    ...     model, tfprune.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=100))
    >>> [type(l).__name__ for l in pruned.layers]
    ['PruneLowMagnitude', 'PruneLowMagnitude']
    """
    if pruning_schedule is None:
        pruning_schedule = schedules.ConstantSparsity(0.5, begin_step=0)
    schedules.check_schedule(pruning_schedule)
    check_granularity(granularity)
    masks_lib.check_scope(scope)
    masks_lib.check_round_to(round_to)
    options = dict(
        pruning_schedule=pruning_schedule,
        granularity=granularity,
        scope=scope,
        round_to=round_to,
        group=GLOBAL_GROUP if scope == "global" else None,
    )

    if isinstance(to_prune, (list, tuple)):
        out = [
            _wrap(layer, options, {}) if _prunable(layer, granularity) else layer
            for layer in to_prune
        ]
        _require_some(out, to_prune)
        link_groups([w for w in out if isinstance(w, PruneLowMagnitude)])
        return out
    if isinstance(to_prune, keras.Model):
        if _is_graph_model(to_prune):
            pruned = _prune_graph_model(to_prune, options)
        else:
            pruned = _prune_subclassed(to_prune, options)
        wrappers = collect_wrappers(pruned)
        _require_some(wrappers, to_prune)
        link_groups(wrappers, pruned)
        return pruned
    if isinstance(to_prune, keras.layers.Layer):
        wrapper = _wrap(to_prune, options, {})
        link_groups([wrapper])
        return wrapper
    raise ValueError(
        "Argument `to_prune` must be a Keras layer, a list of layers or a Keras "
        f"model. Received: to_prune={to_prune!r}"
    )


def _prunable(layer, granularity):
    if isinstance(layer, PruneLowMagnitude):
        return False
    spec = registry.get_spec(layer)
    if spec is None:
        return False
    return granularity == "weight" or spec.unit_kernel is not None


def _wrap(layer, options, unit_group, copy=False):
    opts = dict(options, unit_group=unit_group.get(layer.name))
    inner = _fresh_copy(layer) if copy else layer
    return PruneLowMagnitude(inner, **opts)


def _require_some(result, original):
    wrapped = [w for w in (result if isinstance(result, list) else [result])
               if isinstance(w, PruneLowMagnitude)]
    if not wrapped:
        raise ValueError(
            "Nothing to prune: no layer of the input is prunable with these settings "
            "(prunable: Dense, EinsumDense, Conv*, SeparableConv*, DepthwiseConv*, "
            "Embedding, SimpleRNN/LSTM/GRU, MultiHeadAttention, tfprune.PrunableLayer; "
            "granularity='unit' needs layers with output units). "
            f"Received: to_prune={getattr(original, 'name', original)!r}"
        )


def _prune_graph_model(model, options):
    excluded, unit_group, followers = {}, {}, {}
    if options["granularity"] == "unit":
        excluded, unit_group = _unit_plan(model)
        followers = _batchnorm_followers(model)
        for name, reason in excluded.items():
            logger.info("tfprune: layer %s keeps its units: %s", name, reason)
    skipped = []

    def clone_layer(layer):
        if _prunable(layer, options["granularity"]) and layer.name not in excluded:
            inner = _fresh_copy(layer)
            coupled = unit_group.get(layer.name)
            wrapper = PruneLowMagnitude(
                inner,
                **dict(options, unit_group=coupled, group=options["group"] or coupled,
                       followers=followers.get(layer.name)),
            )
            return wrapper, lambda new: _copy_from(layer)(new.layer)
        if registry.get_spec(layer) is not None and not isinstance(layer, PruneLowMagnitude):
            skipped.append(layer.name)
        return _fresh_copy(layer), _copy_from(layer)

    pruned = _clone_graph_model(model, clone_layer)
    # The output layers keep their units by design; say so only for the others.
    surprising = [n for n in skipped if n not in _output_layers(model)]
    if surprising:
        reasons = "; ".join(f"{n}: {excluded.get(n, 'no output units')}" for n in surprising)
        warnings.warn(f"tfprune: these layers are not unit-pruned: {reasons}", stacklevel=3)
    return pruned


def _swap_tracked(parent, old, new):
    """Put `new` where `old` is in the parent's tracked sublayers (order kept)."""
    layers = parent._layers
    for i, layer in enumerate(layers):
        if layer is old:
            layers[i] = new


def _map_sublayers(parent, fn, seen):
    """Apply `fn(layer) -> new or None` to the sublayers that a subclassed model or
    layer holds in public attributes (directly or in lists), recursively, in place."""

    def set_attr(name, old):
        def setter(new):
            object.__setattr__(parent, name, new)  # bypass tracking: swapped below
            _swap_tracked(parent, old, new)
        return setter

    def set_item(lst, index, old):
        def setter(new):
            lst[index] = new
            _swap_tracked(parent, old, new)
        return setter

    for name, value in list(vars(parent).items()):
        if name.startswith("_"):
            continue
        if isinstance(value, keras.layers.Layer):
            _visit(value, fn, seen, set_attr(name, value))
        elif isinstance(value, list):
            for i, item in enumerate(list(value)):
                if isinstance(item, keras.layers.Layer):
                    _visit(item, fn, seen, set_item(value, i, item))


def _visit(layer, fn, seen, setter):
    if id(layer) in seen:
        return
    seen.add(id(layer))
    new = fn(layer)
    if new is not None:
        setter(new)
    elif not _is_graph_model(layer):
        _map_sublayers(layer, fn, seen)


def _prune_subclassed(model, options):
    def fn(layer):
        if _is_graph_model(layer):
            return _prune_graph_model(layer, options)
        if _prunable(layer, options["granularity"]):
            return PruneLowMagnitude(layer, **dict(options, unit_group=None))
        return None

    _map_sublayers(model, fn, set())
    return model


def _inner_with_masks(wrapper, new_inner):
    """Copy a wrapper's inner weights into `new_inner`, multiplied by the masks."""
    new_inner.set_weights([value for _, value in wrapper.masked_values()])


def strip_pruning(model):
    """Remove pruning wrappers: a plain Keras model with masks applied.

    Every masked weight is exactly zero (masks are applied again when stripping)
    and predictions equal the pruned model's. Sequential/functional models are
    cloned (the pruned model is untouched) and returned uncompiled, ready to save
    or convert; subclassed models are unwrapped in place and returned. A single wrapper gives back a fresh copy of its layer.

    Example:

    >>> import keras, tfprune
    >>> pruned = tfprune.prune_low_magnitude(
    ...     keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)]))
    >>> [type(l).__name__ for l in tfprune.strip_pruning(pruned).layers]
    ['Dense']
    """
    if isinstance(model, PruneLowMagnitude):
        new = _fresh_copy(model.layer)
        if model.layer.built:
            new.build(_input_shape_of(model.layer))
            _inner_with_masks(model, new)
        return new
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"Argument `model` must be a Keras model or a PruneLowMagnitude layer. "
            f"Received: model={model!r}"
        )
    if _is_graph_model(model):
        return _strip_graph_model(model)
    return _strip_subclassed(model)


def _input_shape_of(layer):
    config = layer.get_build_config() if hasattr(layer, "get_build_config") else None
    if config and "input_shape" in config:
        return config["input_shape"]
    raise ValueError(f"Cannot rebuild layer `{layer.name}`: unknown input shape.")


def _strip_graph_model(model):
    def clone_layer(layer):
        if isinstance(layer, PruneLowMagnitude):
            inner = _fresh_copy(layer.layer)
            return inner, lambda new, w=layer: _inner_with_masks(w, new)
        return _fresh_copy(layer), _copy_from(layer)

    return _clone_graph_model(model, clone_layer)


def _strip_subclassed(model):
    def fn(layer):
        if isinstance(layer, PruneLowMagnitude):
            inner = layer.layer
            if inner.built:
                for t in layer.targets:
                    constraint = t.variable.constraint
                    t.variable.constraint = getattr(constraint, "inner", None)
                    t.variable.assign(t.variable * t.mask)
            return inner
        if _is_graph_model(layer):
            return _strip_graph_model(layer)
        return None

    _map_sublayers(model, fn, set())
    return model
