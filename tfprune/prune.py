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

from tfprune import _compat
from tfprune import graph
from tfprune import masks as masks_lib
from tfprune import registry
from tfprune import schedules
from tfprune.wrappers import (
    PruneLowMagnitude,
    apply_mask,
    check_granularity,
    collect_wrappers,
    link_groups,
)

__all__ = ["prune_low_magnitude", "strip_pruning", "collect_prunable_layers"]

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
    _keep_input_names(model, clone)
    return clone


def _input_layers(model):
    return [layer for layer in _compat.flatten_layers(model)
            if isinstance(layer, keras.layers.InputLayer)]


def _keep_input_names(model, clone):
    """Give the clone's input layers the original's names (`keras.models.clone_model`
    names them after their tensors, `keras_tensor_3`), so a pruned and then stripped
    model has the original's config, as in tfmot."""
    for old, new in zip(_input_layers(model), _input_layers(clone)):
        new.name = old.name
        if getattr(new, "output", None) is not None and getattr(old, "output", None) is not None:
            new.output.name = old.output.name


def _copy_from(layer):
    def copy(new):
        if layer.weights:
            new.set_weights(layer.get_weights())
        if isinstance(layer, PruneLowMagnitude):  # masks and steps are not weights
            for mine, theirs in zip(new.pruning_variables, layer.pruning_variables):
                mine.assign(theirs)

    return copy


def _output_layers(model):
    """Names of the prunable layers that produce a model output (possibly through
    layers without weights, e.g. an Activation or Dropout)."""
    names = set()
    stack = [_compat.producer(t) for t in model.outputs]
    while stack:
        op = stack.pop()
        if registry.get_spec(op) is not None or isinstance(op, keras.Model):
            names.add(op.name)
            continue
        for node in _compat.inbound_nodes(op):
            stack.extend(_compat.producer(t) for t in node.input_tensors)
    return names


def _unit_plan(model):
    """For unit pruning of a graph model: (excluded {name: reason}, unit_group by name).

    Coupled units share a mask (`tfprune.graph.unit_groups`).
    """
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
    block_size=(1, 1),
    block_pooling_type="AVG",
    pruning_policy=None,
    sparsity_m_by_n=None,
    *,
    granularity="weight",
    scope="layer",
    round_to=1,
    **kwargs,
):
    """Wrap the prunable layers of a layer, list of layers or model for pruning.

    The first six arguments are tfmot's, in tfmot's order and meaning, so tfmot code
    runs with only the import changed.

    Args:
        to_prune: a Keras layer, a list of layers, or a model (Sequential,
            functional, nested, or subclassed).
        pruning_schedule: `tfprune.ConstantSparsity`, `tfprune.PolynomialDecay` or
            a `PruningSchedule` subclass; default `ConstantSparsity(0.5, begin_step=0)`
            as in tfmot.
        block_size: `(rows, cols)` of the blocks a rank-2 kernel (Dense) is pruned
            in, whole blocks kept or zeroed (tfmot's meaning: rows and columns of
            the Keras kernel `(in, out)`). `(1, 1)`: single weights.
        block_pooling_type: "AVG" or "MAX": how a block is scored from its |w|.
        pruning_policy: a `tfprune.PruningPolicy` (e.g.
            `tfprune.PruneForLatencyOnXNNPack()`) choosing which layers to wrap and
            checking the model first.
        sparsity_m_by_n: `(m, n)`: at least `m` zeros in every `n` consecutive
            weights along each kernel's input axis (tfmot's meaning; (2, 4) is the
            2:4 pattern). The mask is set at training step 1 and kept; the schedule
            is not used.
        granularity: "weight" ranks single weights (or blocks) by |w|; "unit" ranks
            output units (Dense columns, conv filters) by the L2 norm of their
            incoming weights and zeroes whole units, biases included.
        scope: "layer" ranks each weight tensor (or layer's units) on its own;
            "global" ranks all pruned layers together (units are compared by the
            mean square of their incoming weights, so different fan-ins compare
            fairly; every layer keeps at least one weight / `round_to` units).
        round_to: with `granularity="unit"`, keep unit counts a multiple of this.
        **kwargs: passed to the wrapper when `to_prune` is a layer (`input_shape=`,
            `name=`, ...), as in tfmot.

    Returns:
        A wrapper, list, or pruned model. Layers that cannot be pruned are left as
        they are (a built-in layer without prunable weights, such as `Dropout`,
        is returned unchanged, as tfmot wraps it as a no-op); a model with
        nothing to prune is an error. With `granularity="unit"`, the model's
        output layers keep their units, coupled layers (a residual `Add`) share
        one unit mask, and layers whose units cannot be removed are left unpruned
        (see `tfprune.graph.unit_groups`). An already-pruned model is an error
        (strip it first).

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
    explicit_schedule = pruning_schedule is not None
    if pruning_schedule is None:
        pruning_schedule = schedules.ConstantSparsity(0.5, begin_step=0)
    schedules.check_schedule(pruning_schedule)
    check_granularity(granularity)
    masks_lib.check_scope(scope)
    masks_lib.check_round_to(round_to)
    block_size = masks_lib.check_pair(block_size, "block_size")
    if block_size != (1, 1):
        masks_lib.Block(block_size, block_pooling_type)
    if sparsity_m_by_n is not None:
        pattern = masks_lib.MByN(*masks_lib.check_pair(sparsity_m_by_n, "sparsity_m_by_n"))
        sparsity_m_by_n = (pattern.m, pattern.n)
    masks_lib.check_combination(granularity, round_to, block_size, sparsity_m_by_n)
    if sparsity_m_by_n is not None and explicit_schedule:
        warnings.warn(
            f"tfprune: with sparsity_m_by_n={sparsity_m_by_n} the m:n mask is set at step 1 "
            "and kept (as in tfmot); the pruning_schedule's sparsity is not used.", stacklevel=2)
    if pruning_policy is not None and not callable(getattr(pruning_policy, "allow_pruning", None)):
        raise TypeError(
            "Argument `pruning_policy` must be a `tfprune.PruningPolicy` (e.g. "
            f"PruneForLatencyOnXNNPack()). Received: pruning_policy={pruning_policy!r}")
    options = dict(
        pruning_schedule=pruning_schedule,
        granularity=granularity,
        scope=scope,
        round_to=round_to,
        group=GLOBAL_GROUP if scope == "global" else None,
        block_size=block_size,
        block_pooling_type=block_pooling_type,
        sparsity_m_by_n=sparsity_m_by_n,
        policy=pruning_policy,
    )

    if isinstance(to_prune, (list, tuple)):
        for i, item in enumerate(to_prune):
            if not isinstance(item, keras.layers.Layer):
                raise TypeError(
                    "Argument `to_prune` must be a Keras layer, a list of Keras layers or a "
                    f"model. Received: to_prune[{i}]={item!r}")
        _refuse_pruned(to_prune, options)
        out = [
            _wrap(layer, options, {}) if _prunable(layer, options) else layer
            for layer in to_prune
        ]
        _require_some(out, to_prune)
        link_groups([w for w in out if isinstance(w, PruneLowMagnitude)])
        return out
    if isinstance(to_prune, keras.Model):
        _refuse_pruned(to_prune, options)
        if pruning_policy is not None:
            pruning_policy.ensure_model_supports_pruning(to_prune)
        if _is_graph_model(to_prune):
            pruned = _prune_graph_model(to_prune, options)
        else:
            pruned = _prune_subclassed(to_prune, options)
        wrappers = collect_wrappers(pruned)
        _require_some(wrappers, to_prune)
        link_groups(wrappers, pruned)
        return pruned
    if isinstance(to_prune, keras.layers.Layer):
        _refuse_pruned(to_prune, options)
        if isinstance(to_prune, PruneLowMagnitude):
            return to_prune
        if registry.get_spec(to_prune) is None and _is_builtin(to_prune):
            logger.info("tfprune: layer %s has no prunable weights; left as it is",
                        to_prune.name)
            return to_prune
        if pruning_policy is not None and not pruning_policy.allow_pruning(to_prune):
            return to_prune
        wrapper = _wrap(to_prune, options, {}, **kwargs)
        link_groups([wrapper])
        return wrapper
    raise TypeError(
        "Argument `to_prune` must be a Keras layer, a list of layers or a Keras "
        f"model. Received: to_prune={to_prune!r}"
    )


def collect_prunable_layers(model):
    """Every `PruneLowMagnitude` layer of `model` (nested models included), in
    model order (tfmot's `collect_prunable_layers`)."""
    return collect_wrappers(model)


# Keras modules whose layers never hold prunable weights (pooling, dropout, reshaping,
# activations, normalization, merging, ...): wrapping one is a no-op, as in tfmot.
_NO_PRUNABLE_WEIGHTS = tuple(f"{_compat.KERAS_LAYERS_MODULE}.{m}." for m in (
    "pooling", "regularization", "reshaping", "activations", "normalization", "merging",
    "preprocessing", "core.identity", "core.input_layer", "core.masking"))


def _is_builtin(layer):
    return type(layer).__module__.startswith(_NO_PRUNABLE_WEIGHTS)


_SETTINGS = ("pruning_schedule", "granularity", "scope", "round_to", "block_size",
             "block_pooling_type", "sparsity_m_by_n")


def _refuse_pruned(to_prune, options):
    """Raise if `to_prune` holds pruning wrappers with other settings than
    `options` (re-wrapping would keep theirs silently); wrappers with the same
    settings are kept as they are, as in tfmot."""
    items = to_prune if isinstance(to_prune, (list, tuple)) else [to_prune]
    found = [w for item in items for w in collect_wrappers(item)
             if any(getattr(w, k) != options[k] for k in _SETTINGS)]
    if found:
        names = [w.name for w in found]
        differ = [k for k in _SETTINGS if getattr(found[0], k) != options[k]]
        raise ValueError(
            f"Layers {names[:5]}{' ...' if len(names) > 5 else ''} are already pruned with "
            f"other settings ({', '.join(differ)}), which would be kept silently. Call "
            "`tfprune.strip_pruning(model)` first (the stripped weights keep their zeros), "
            "then prune again with the new settings."
        )


def _prunable(layer, options):
    if isinstance(layer, PruneLowMagnitude):
        return False
    spec = registry.get_spec(layer)
    if spec is None:
        return False
    policy = options.get("policy")
    if policy is not None and not policy.allow_pruning(layer):
        return False
    return options["granularity"] == "weight" or spec.unit_kernel is not None


def _wrap(layer, options, unit_group, copy=False, **kwargs):
    opts = {k: v for k, v in options.items() if k != "policy"}
    opts.update(unit_group=unit_group.get(layer.name), **kwargs)
    inner = _fresh_copy(layer) if copy else layer
    return PruneLowMagnitude(inner, **opts)


def _require_some(result, original):
    wrapped = [w for w in (result if isinstance(result, list) else [result])
               if isinstance(w, PruneLowMagnitude)]
    if not wrapped:
        raise ValueError(
            "Nothing to prune: no layer of the input is prunable with these settings "
            "(prunable: Dense, EinsumDense, Conv*, SeparableConv*, DepthwiseConv*, "
            "Embedding, SimpleRNN/LSTM/GRU/RNN, MultiHeadAttention, tfprune.PrunableLayer; "
            "granularity='unit' needs layers with output units; a pruning_policy may "
            "exclude layers). "
            f"Received: to_prune={getattr(original, 'name', original)!r}"
        )


def _prune_graph_model(model, options):
    excluded, unit_group, followers = {}, {}, {}
    if options["granularity"] == "unit":
        excluded, unit_group = _unit_plan(model)
        followers = graph.batchnorm_followers(model)
        for name, reason in excluded.items():
            logger.info("tfprune: layer %s keeps its units: %s", name, reason)
    skipped = []

    def clone_layer(layer):
        if _prunable(layer, options) and layer.name not in excluded:
            inner = _fresh_copy(layer)
            coupled = unit_group.get(layer.name)
            opts = {k: v for k, v in options.items() if k != "policy"}
            wrapper = PruneLowMagnitude(
                inner,
                **dict(opts, unit_group=coupled, group=options["group"] or coupled,
                       followers=followers.get(layer.name)),
            )
            return wrapper, lambda new: _copy_from(layer)(new.layer)
        if (registry.get_spec(layer) is not None and not isinstance(layer, PruneLowMagnitude)
                and (options["policy"] is None or options["policy"].allow_pruning(layer))):
            skipped.append(layer.name)
        return _fresh_copy(layer), _copy_from(layer)

    pruned = _clone_graph_model(model, clone_layer)
    # The output layers keep their units by design; say so only for the others.
    surprising = [n for n in skipped if n not in _output_layers(model)]
    if surprising and options["granularity"] == "unit":
        reasons = "; ".join(f"{n}: {excluded.get(n, 'no output units')}" for n in surprising)
        warnings.warn(f"tfprune: these layers are not unit-pruned: {reasons}", stacklevel=3)
    return pruned


def _swap_tracked(parent, old, new):
    """Put `new` where `old` is in the parent's tracked sublayers (order kept)."""
    layers = _compat.child_layers(parent)
    for i, layer in enumerate(layers):
        if layer is old:
            layers[i] = new


def _map_sublayers(parent, fn, seen):
    """Apply `fn(layer) -> new or None` to the sublayers that a subclassed model or
    layer holds in public attributes (directly or in lists), recursively, in place."""

    # On the torch backend a layer is a torch.nn.Module, which keeps sublayers in
    # `_modules` rather than in the instance dict.
    modules = getattr(parent, "_modules", None)
    modules = modules if isinstance(modules, dict) else {}

    def set_attr(name, old):
        def setter(new):
            if name in modules:
                modules[name] = new
            else:
                object.__setattr__(parent, name, new)  # bypass tracking: swapped below
            _swap_tracked(parent, old, new)
        return setter

    def set_item(lst, index, old):
        def setter(new):
            lst[index] = new
            _swap_tracked(parent, old, new)
        return setter

    for name, value in [*vars(parent).items(), *modules.items()]:
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
        if _prunable(layer, options):
            return _wrap(layer, options, {})
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
        raise TypeError(
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
                    t.variable.assign(apply_mask(t.variable, t.mask))
            return inner
        if _is_graph_model(layer):
            return _strip_graph_model(layer)
        return None

    _map_sublayers(model, fn, set())
    return model
