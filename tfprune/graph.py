"""Which units of a Keras model are tied together, and where each channel goes.

Unit pruning (`prune_low_magnitude(granularity="unit")`) and `shrink` share one
analysis: `trace(model)` walks a Sequential or functional model (nested models
included) and gives every last-axis position of every tensor a *unit id*. Ids are
merged (union-find) where positions must be removed together:

- a unit-prunable layer (Dense, Conv*, Conv*Transpose, SeparableConv*, Embedding)
  creates new ids for its output units; its input rows are free;
- channel-wise layers (BatchNormalization, activations, Dropout, pooling,
  global pooling, ZeroPadding, Cropping, UpSampling) pass ids through;
  DepthwiseConv repeats each input id `depth_multiplier` times;
- Add / Subtract / Multiply / Maximum / Minimum / Average merge the ids of their
  inputs position by position (a residual block is one group);
- Concatenate on the last axis concatenates ids (offsets are kept);
- Flatten / Reshape keep ids when channels stay on the last axis
  (`(h, w, c) -> (h*w*c,)` tiles the ids: position `p` is channel `p % c`);
- a layer called several times keeps one layout: its inputs are merged.

Some ids are *blocked*, with a reason: the model's inputs and outputs ("the output
layer keeps its units"), and everything that enters or leaves a layer whose
channels cannot be followed (Lambda, custom layers, a Reshape that moves the
channel axis, softmax across units, grouped or channels_first convolutions).

Example (runs as is):

>>> import keras
>>> x = keras.Input((8, 8, 3))
>>> a = keras.layers.Conv2D(4, 3, padding="same", name="a")(x)
>>> b = keras.layers.Conv2D(4, 3, padding="same", name="b")(a)
>>> y = keras.layers.Add()([a, b])
>>> pooled = keras.layers.GlobalAveragePooling2D()(y)
>>> out = keras.layers.Dense(2, name="out")(pooled)
>>> groups, excluded = tfprune.graph.unit_groups(keras.Model(x, out))
>>> [[l.name for l in g] for g in groups]
[['a', 'b'], ['out']]
>>> excluded
{'out': 'model output: the output layer keeps its units'}

`batchnorm_followers(model)` lists the BatchNormalization layers that normalize a
unit-prunable layer's units (unit pruning masks their gamma and beta with the
layer's units).
"""

import dataclasses

import keras
import numpy as np

from tfprune import _compat
from tfprune import registry

__all__ = [
    "unit_groups",
    "batchnorm_followers",
    "trace",
    "classify",
    "ChannelGraph",
    "Channels",
    "Step",
    "unwrap",
    "is_wrapper",
    "functional_of",
    "graph_nodes",
    "leaf_layers",
    "unit_prunable",
    "layer_label",
]

OUTPUT_REASON = "model output: the output layer keeps its units"
INPUT_REASON = "tied to the model input, which keeps its channels"
MISALIGNED_REASON = (
    "units are tied to other units at different positions (Concatenate offsets on a "
    "merged path), so they cannot share one unit mask"
)
DEPTHWISE_REASON = (
    "its units follow the units of several layers (after a Concatenate or with "
    "depth_multiplier > 1): prune those layers instead"
)

_L = keras.layers
_DEPTHWISE = (_L.DepthwiseConv1D, _L.DepthwiseConv2D)
_ELEMENTWISE = (
    _L.ReLU,
    _L.LeakyReLU,
    _L.ELU,
    _L.Dropout,
    _L.SpatialDropout1D,
    _L.SpatialDropout2D,
    _L.SpatialDropout3D,
    _L.GaussianNoise,
    _L.GaussianDropout,
    _L.AlphaDropout,
    _L.ActivityRegularization,
    _L.Identity,
)
_SPATIAL = (
    _L.MaxPooling1D,
    _L.MaxPooling2D,
    _L.MaxPooling3D,
    _L.AveragePooling1D,
    _L.AveragePooling2D,
    _L.AveragePooling3D,
    _L.GlobalAveragePooling1D,
    _L.GlobalAveragePooling2D,
    _L.GlobalAveragePooling3D,
    _L.GlobalMaxPooling1D,
    _L.GlobalMaxPooling2D,
    _L.GlobalMaxPooling3D,
    _L.ZeroPadding1D,
    _L.ZeroPadding2D,
    _L.ZeroPadding3D,
    _L.Cropping1D,
    _L.Cropping2D,
    _L.Cropping3D,
    _L.UpSampling1D,
    _L.UpSampling2D,
    _L.UpSampling3D,
)
_MERGES = (_L.Add, _L.Subtract, _L.Multiply, _L.Maximum, _L.Minimum, _L.Average)
_MIXING_ACTIVATIONS = ("softmax", "log_softmax")


# --------------------------------------------------------------------------- model walking


def is_wrapper(op):
    """True for a `PruneLowMagnitude` wrapper (checked by class name, no import)."""
    return type(op).__name__ == "PruneLowMagnitude"


def unwrap(op):
    """The layer inside a `PruneLowMagnitude` wrapper, or `op` itself."""
    return op.layer if is_wrapper(op) else op


def functional_of(model):
    """The functional graph of a Sequential or functional model; None otherwise.

    Raises `ValueError` for a Sequential model that was never built.
    """
    if isinstance(model, keras.Sequential):
        if _compat.sequential_graph(model) is None:
            raise ValueError(
                f"Sequential model '{model.name}' is not built: give it an `Input` "
                "or call `model.build(input_shape)` first."
            )
        return _compat.sequential_graph(model)
    if isinstance(model, keras.Model) and _compat.has_graph(model):
        return model
    return None


def graph_nodes(fn):
    """Call nodes of a functional graph in topological order (inputs skipped)."""
    by_depth = _compat.nodes_by_depth(fn)
    for depth in sorted(by_depth, reverse=True):
        for node in by_depth[depth]:
            if node.operation is not None and not node.is_input:
                yield node


def leaf_layers(model):
    """Every non-model, non-input layer of `model`, nested models flattened and
    pruning wrappers unwrapped, in `model.layers` order, each once."""
    out, seen = [], set()
    for layer in model.layers:
        found = leaf_layers(layer) if isinstance(layer, keras.Model) else [unwrap(layer)]
        for leaf in found:
            if id(leaf) not in seen and not isinstance(leaf, _L.InputLayer):
                seen.add(id(leaf))
                out.append(leaf)
    return out


def unit_prunable(layer):
    """True if the registry gives `layer` a unit kernel (`granularity="unit"`)."""
    spec = registry.get_spec(layer)
    return spec is not None and spec.unit_targets(layer) is not None


def _width(tensor):
    """Length of the last (channel) axis, None if unknown or there is none."""
    shape = tensor.shape
    return shape[-1] if len(shape) >= 2 else None


def _channels_last(layer):
    return getattr(layer, "data_format", "channels_last") in (None, "channels_last")


def _activation_name(layer):
    return getattr(getattr(layer, "activation", None), "__name__", "")


def layer_label(layer):
    """`"Dense 'dense_1'"`: a layer's class and name, for messages."""
    return f"{type(layer).__name__} '{layer.name}'"


# --------------------------------------------------------------------------- records


@dataclasses.dataclass(eq=False)
class Channels:
    """Unit ids of the last-axis positions of one tensor.

    tensor: the model's KerasTensor (for its shape and dtype).
    ids: int array, one id per last-axis position; None when the width is unknown.
    """

    tensor: object
    ids: object


@dataclasses.dataclass(eq=False)
class Step:
    """One layer call in the traced graph.

    kind: "producer", "channelwise", "depthwise", "merge", "concat", "reshape" or
        "opaque" (see `classify`).
    op: the graph's operation (possibly a pruning wrapper); layer: `unwrap(op)`.
    node: the Keras call node (arguments, output tensors).
    inputs / outputs: `Channels` of the call's input and output tensors.
    """

    kind: str
    op: object
    layer: object
    node: object
    inputs: list
    outputs: list


class ChannelGraph:
    """Unit ids of every traced tensor, merged with a union-find.

    steps: the traced layer calls, in topological order (nested models inlined).
    inputs / outputs: `Channels` of the model's inputs and outputs.
    unit_layers: unit-prunable layers reached, in order; `unit_ids[id(layer)]` the
        ids of their units (a depthwise layer: its output positions).
    tensors: `id(KerasTensor) -> Channels` (first call of a shared model).
    first_step: `id(layer) -> Step` of the layer's first call.
    owner[i]: `(layer, unit index)` of a producer's unit id, else None.
    """

    def __init__(self):
        self._parent = []
        self._reason = {}
        self._first_inputs = {}
        self.owner = []
        self.steps = []
        self.inputs = []
        self.outputs = []
        self.unit_layers = []
        self.unit_ids = {}
        self.tensors = {}
        self.first_step = {}

    # ----------------------------------------------------------- union-find

    def new_ids(self, n, owner=None, reason=None):
        """`n` fresh ids (None if `n` is None), optionally owned or blocked."""
        if n is None:
            return None
        start = len(self._parent)
        ids = np.arange(start, start + n, dtype=np.int64)
        self._parent.extend(ids.tolist())
        self.owner.extend([None] * n if owner is None else [(owner, i) for i in range(n)])
        self.block(ids, reason)
        return ids

    def find(self, i):
        parent = self._parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def roots(self, ids):
        """Class representative of each id (int array)."""
        return np.fromiter((self.find(int(i)) for i in ids), dtype=np.int64, count=len(ids))

    def union(self, a, b):
        for x, y in zip(a, b):
            rx, ry = self.find(int(x)), self.find(int(y))
            if rx != ry:
                self._parent[ry] = rx

    def block(self, ids, reason):
        """Forbid removing `ids` (the first reason recorded wins)."""
        if ids is None or not reason:
            return
        for i in ids:
            self._reason.setdefault(int(i), reason)

    def reasons(self):
        """`root -> reason` for every blocked class."""
        out = {}
        for i, why in self._reason.items():
            out.setdefault(self.find(i), why)
        return out

    def tie(self, chans, what):
        """Merge the ids of `chans` position by position; block them all and
        return False when their layouts differ or one is unknown."""
        known = [c.ids for c in chans if c.ids is not None]
        if len(known) < len(chans) or len({len(k) for k in known}) > 1:
            for ids in known:
                self.block(ids, f"{what} combines tensors whose channels cannot be matched")
            return False
        for ids in known[1:]:
            self.union(known[0], ids)
        return True

    # ----------------------------------------------------------- tracing

    def trace_model(self, model, ins):
        """Trace one call of a functional/Sequential `model` on input `Channels`."""
        fn = functional_of(model)
        values = {}
        for t, c in zip(fn.inputs, ins):
            values[id(t)] = c
            self.tensors.setdefault(id(t), c)
        for node in graph_nodes(fn):
            args = [values[id(t)] for t in node.input_tensors]
            op = node.operation
            if isinstance(op, keras.Model) and functional_of(op) is not None:
                outs = self.trace_model(op, args)
            else:
                outs = self._trace_layer(op, node, args)
            for t, c in zip(node.outputs, outs):
                values[id(t)] = c
                self.tensors.setdefault(id(t), c)
        return [values[id(t)] for t in fn.outputs]

    def _trace_layer(self, op, node, ins):
        layer = unwrap(op)
        self._tie_calls(layer, ins)
        kind, detail = classify(layer, node)
        out_ids = _RULES[kind](self, layer, node, ins) if kind != "opaque" else None
        if isinstance(out_ids, str):
            detail, out_ids = out_ids, None
        if out_ids is None:
            kind, out_ids = "opaque", self._opaque(layer, node, ins, detail)
        outs = [Channels(t, ids) for t, ids in zip(node.outputs, out_ids)]
        step = Step(kind, op, layer, node, ins, outs)
        self.steps.append(step)
        self.first_step.setdefault(id(layer), step)
        return outs

    def _tie_calls(self, layer, ins):
        """A layer called several times keeps one channel layout for all calls."""
        first = self._first_inputs.setdefault(id(layer), ins)
        if first is not ins:
            for a, b in zip(first, ins):
                self.tie([a, b], f"{layer_label(layer)} (called several times)")

    def _opaque(self, layer, node, ins, detail):
        for c in ins:
            self.block(c.ids, f"feeds {layer_label(layer)}, which shrink cannot map ({detail})")
        why = f"output of {layer_label(layer)} ({detail})"
        return [self.new_ids(_width(t), reason=why) for t in node.outputs]

    def add_unit_layer(self, layer, ids):
        """Record the unit ids of a unit-prunable layer (first call wins)."""
        if id(layer) not in self.unit_ids:
            self.unit_ids[id(layer)] = ids
            self.unit_layers.append(layer)


# --------------------------------------------------------------------------- rules


def classify(layer, node):
    """`(kind, detail)` of a layer call; `detail` explains an "opaque" kind.

    Kinds: "producer" (unit-prunable: new unit ids), "channelwise" (ids pass
    through), "depthwise" (ids repeated `depth_multiplier` times), "merge"
    (elementwise merge: inputs tied), "concat", "reshape", "opaque" (not followed).
    """
    if isinstance(layer, _DEPTHWISE):
        return ("depthwise", "") if _channels_last(layer) else ("opaque", "channels_first")
    if unit_prunable(layer):
        return "producer", ""
    if isinstance(layer, _L.Activation):
        if _activation_name(layer) in _MIXING_ACTIVATIONS:
            return "opaque", f"{_activation_name(layer)} mixes channels"
        return "channelwise", ""
    if isinstance(layer, _ELEMENTWISE):
        return "channelwise", ""
    if isinstance(layer, _SPATIAL):
        return ("channelwise", "") if _channels_last(layer) else ("opaque", "channels_first")
    if isinstance(layer, _L.BatchNormalization):
        rank = len(node.input_tensors[0].shape)
        if layer.axis in (-1, rank - 1):
            return "channelwise", ""
        return "opaque", "it normalizes an axis other than the last"
    if isinstance(layer, _MERGES):
        return "merge", ""
    if isinstance(layer, _L.Concatenate):
        return "concat", ""
    if isinstance(layer, (_L.Flatten, _L.Reshape)):
        return ("reshape", "") if _channels_last(layer) else ("opaque", "channels_first")
    return "opaque", "a layer whose channels shrink cannot follow"


def _producer_blocks(layer):
    """`(input reason, output reason)`: why a producer's rows / units must stay."""
    if isinstance(layer, _L.Embedding):
        return "its values are Embedding indices", None
    if not _channels_last(layer):
        why = f"{layer_label(layer)} is channels_first"
        return why, why
    if getattr(layer, "groups", 1) != 1:
        why = f"{layer_label(layer)} is a grouped convolution"
        return why, why
    if _activation_name(layer) in _MIXING_ACTIVATIONS:
        return None, f"its {_activation_name(layer)} activation mixes units"
    return None, None


def _rule_producer(g, layer, node, ins):
    why_in, why_out = _producer_blocks(layer)
    for c in ins:
        g.block(c.ids, why_in)
    ids = g.unit_ids.get(id(layer))
    if ids is None:
        ids = g.new_ids(_width(node.outputs[0]), owner=layer, reason=why_out)
        g.add_unit_layer(layer, ids)
    return [ids]


def _rule_channelwise(g, layer, node, ins):
    return [ins[0].ids]


def _rule_depthwise(g, layer, node, ins):
    if ins[0].ids is None:
        return "unknown channel count"
    ids = np.repeat(ins[0].ids, layer.depth_multiplier)
    g.add_unit_layer(layer, ids)
    return [ids]


def _rule_merge(g, layer, node, ins):
    if g.tie(ins, layer_label(layer)):
        return [ins[0].ids]
    return "inputs with different channel layouts"


def _rule_concat(g, layer, node, ins):
    rank = len(node.outputs[0].shape)
    if layer.axis % rank != rank - 1:
        return _rule_merge(g, layer, node, ins)
    if any(c.ids is None for c in ins):
        return "unknown channel count"
    return [np.concatenate([c.ids for c in ins])]


def _rule_reshape(g, layer, node, ins):
    """Channels stay last when the new last axis is a multiple of the old one
    (ids tiled) or a period of the old ids (ids cut)."""
    ids, width = ins[0].ids, _width(node.outputs[0])
    if ids is None or width is None:
        return "unknown channel count"
    if width % len(ids) == 0:
        return [np.tile(ids, width // len(ids))]
    if len(ids) % width == 0:
        rows = g.roots(ids).reshape(-1, width)
        if (rows == rows[0]).all():
            return [ids[:width]]
    return "channels do not stay on the last axis"


_RULES = {
    "producer": _rule_producer,
    "channelwise": _rule_channelwise,
    "depthwise": _rule_depthwise,
    "merge": _rule_merge,
    "concat": _rule_concat,
    "reshape": _rule_reshape,
}


# --------------------------------------------------------------------------- groups


def _components(g, layers):
    """Connected components of `layers` (lists, in order) by shared unit classes."""
    comp = list(range(len(layers)))

    def top(i):
        while comp[i] != i:
            i = comp[i]
        return i

    first_of_root = {}
    for i, layer in enumerate(layers):
        for r in set(g.roots(g.unit_ids[id(layer)]).tolist()):
            comp[top(i)] = top(first_of_root.setdefault(r, i))
    groups = {}
    for i, layer in enumerate(layers):
        groups.setdefault(top(i), []).append(layer)
    return list(groups.values())


def _blocked_reason(g, layer, reasons):
    """The first block reason among `layer`'s unit classes, or None."""
    for r in g.roots(g.unit_ids[id(layer)]).tolist():
        if r in reasons:
            return reasons[r]
    return None


def _group_reason(g, members, reasons):
    """Why a group's units must not be pruned (None if they may be)."""
    roots = [g.roots(g.unit_ids[id(layer)]) for layer in members]
    first = roots[0]
    aligned = all(len(r) == len(first) and (r == first).all() for r in roots)
    if not aligned or len(set(first.tolist())) != len(first):
        return MISALIGNED_REASON
    return _blocked_reason(g, members[0], reasons)


def _attach_depthwise(g, groups, layer):
    """Put a depthwise layer in the group whose units its units follow one to
    one; False if there is none."""
    roots = g.roots(g.unit_ids[id(layer)])
    for members in groups:
        other = g.roots(g.unit_ids[id(members[0])])
        if len(other) == len(roots) and (other == roots).all():
            members.append(layer)
            return True
    return False


def _traced_groups(g):
    """`(groups, excluded)` over the traced unit-prunable layers."""
    reasons = g.reasons()
    producers = [l for l in g.unit_layers if not isinstance(l, _DEPTHWISE)]
    groups = _components(g, producers)
    loose = [
        l
        for l in g.unit_layers
        if isinstance(l, _DEPTHWISE) and not _attach_depthwise(g, groups, l)
    ]
    excluded = {}
    for members in groups:
        why = _group_reason(g, members, reasons)
        if why:
            excluded.update({layer.name: why for layer in members})
    for layer in loose:
        groups.append([layer])
        excluded[layer.name] = _blocked_reason(g, layer, reasons) or DEPTHWISE_REASON
    order = {id(l): i for i, l in enumerate(g.unit_layers)}
    groups = [sorted(m, key=lambda l: order[id(l)]) for m in groups]
    return sorted(groups, key=lambda m: order[id(m[0])]), excluded


# --------------------------------------------------------------------------- public


def trace(model):
    """Trace a Sequential or functional `model` into a `ChannelGraph`.

    Pruning wrappers are looked through (their inner layers are traced). Raises
    `ValueError` for a subclassed model (it has no graph to follow).

    Example:

    ```python
    g = tfprune.graph.trace(model)
    dense = model.get_layer("dense")
    g.roots(g.unit_ids[id(dense)])   # the class of each unit of `dense`
    g.reasons()                      # {class: why its units must stay}
    ```
    """
    fn = functional_of(model)
    if fn is None:
        raise ValueError(
            "Argument `model` must be a Sequential or functional Keras model "
            f"(a subclassed model has no graph to trace). Received: model={model!r}"
        )
    g = ChannelGraph()
    g.inputs = [Channels(t, g.new_ids(_width(t), reason=INPUT_REASON)) for t in fn.inputs]
    g.outputs = g.trace_model(model, g.inputs)
    for c in g.outputs:
        g.block(c.ids, OUTPUT_REASON)
    return g


def unit_groups(model):
    """Unit-prunable layers whose units must share one mask, and those to skip.

    Contract (stable; `prune_low_magnitude(granularity="unit")` relies on it):

    - `model`: a built Sequential or functional Keras model, plain or with
      `PruneLowMagnitude` wrappers (looked through); nested models are followed.
      Raises `ValueError` for a subclassed model. Depends on the graph only,
      never on weight values.
    - Returns `(groups, excluded)`.
    - `groups`: list of lists of layers (the unwrapped layers, never wrappers). Every
      unit-prunable layer of the model (`registry.get_spec(layer)` has a unit kernel:
      Dense, Conv*, Conv*Transpose, SeparableConv*, DepthwiseConv*, Embedding) is in
      exactly one group; singletons included. Members of a group have the same
      number of units and unit `i` of each member is tied to unit `i` of the
      others (both branches of a residual `Add`, a DepthwiseConv with
      `depth_multiplier=1` and the layer feeding it, a squeeze-and-excitation
      `Multiply`): choose one mask per group, e.g. from the sum of the members'
      unit scores. Groups and members are in graph order.
    - `excluded`: `{layer.name: reason}` for unit-prunable layers whose units must
      not be pruned: the model's output layers ("model output: the output layer
      keeps its units"), layers tied to the model input, layers whose outputs feed
      something shrink cannot map (Lambda, custom layers, a channel-mixing Reshape
      or softmax, grouped / channels_first convolutions), units tied at different
      positions (Concatenate offsets on a merged path), depthwise layers whose units
      follow several layers, and layers the trace does not reach (inside a
      subclassed model). When one member of a group is excluded, all members are.

    Example:

    ```python
    groups, excluded = tfprune.graph.unit_groups(model)
    for group in groups:
        if group[0].name not in excluded:
            ...  # one unit mask for all layers of `group`
    ```
    """
    g = trace(model)
    groups, excluded = _traced_groups(g)
    for layer in leaf_layers(model):
        if unit_prunable(layer) and id(layer) not in g.unit_ids:
            groups.append([layer])
            excluded[layer.name] = (
                "not reached when tracing the graph (e.g. inside a subclassed model)"
            )
    return groups, excluded


def _unit_source(producer_of, ch):
    """The unit layer whose units `ch`'s positions are, one to one, through
    channel-wise layers (not through another BatchNormalization); else None."""
    step = producer_of.get(id(ch))
    while step is not None and step.kind == "channelwise" and not isinstance(
            step.layer, _L.BatchNormalization):
        step = producer_of.get(id(step.inputs[0]))
    if step is None or step.kind not in ("producer", "depthwise"):
        return None
    return step.layer


def batchnorm_followers(model):
    """BatchNormalization layers that normalize a unit-prunable layer's units.

    Unit pruning masks their gamma and beta with the layer's units (like
    Torch-Pruning removes a BN channel with its conv filter), so a pruned unit
    then outputs exactly 0 and `shrink` removes it.

    A BatchNormalization `bn` follows layer `p` when `bn` normalizes the last axis
    and, in every call of `bn`, its input is `p`'s output (any call of `p`: one
    layer, one unit mask) through channel-wise layers only, as `trace` classifies
    them: activations other than softmax / log_softmax (`ReLU`, `LeakyReLU`,
    `ELU`, `Activation("relu")`, ...), dropout and noise (`Dropout`,
    `SpatialDropout*`, `GaussianNoise`, `GaussianDropout`, `AlphaDropout`),
    `ActivityRegularization`, `Identity`, pooling, padding, cropping and
    upsampling. The walk stops at a layer that mixes channels (a softmax, a
    Concatenate, an Add, a Reshape, ...) and at another BatchNormalization. `p`
    is a unit-prunable layer (`unit_prunable`: Dense, Conv*, DepthwiseConv*,
    Embedding, ...).

    Args:
        model: a built Sequential or functional Keras model (nested models are
            followed; pruning wrappers are looked through). Raises `ValueError`
            for a subclassed model, as `trace`.

    Returns:
        `{layer name: [BatchNormalization layer names]}`, layers and followers in
        graph order; layers without a follower are not listed.

    Example (runs as is):

    >>> import keras
    >>> model = keras.Sequential([
    ...     keras.Input((8, 8, 3)),
    ...     keras.layers.Conv2D(4, 3, name="conv"),
    ...     keras.layers.LeakyReLU(),
    ...     keras.layers.BatchNormalization(name="bn"),
    ...     keras.layers.Dense(6, activation="relu", name="dense"),
    ...     keras.layers.Activation("softmax"),
    ...     keras.layers.BatchNormalization(name="bn_after_softmax"),
    ... ])
    >>> tfprune.graph.batchnorm_followers(model)
    {'conv': ['bn']}
    """
    g = trace(model)
    producer_of = {id(ch): step for step in g.steps for ch in step.outputs}
    sources = {}  # id(bn) -> (bn, {id(source): source or None})
    for step in g.steps:
        if isinstance(step.layer, _L.BatchNormalization):
            bn, found = sources.setdefault(id(step.layer), (step.layer, {}))
            source = (_unit_source(producer_of, step.inputs[0])
                      if step.kind == "channelwise" else None)
            found[id(source)] = source
    by_source = {}
    for bn, found in sources.values():
        if len(found) == 1 and None not in found.values():
            (source,) = found.values()
            by_source.setdefault(id(source), (source, []))[1].append(bn.name)
    order = {id(step.layer): i for i, step in reversed(list(enumerate(g.steps)))}
    ranked = sorted(by_source.values(), key=lambda item: order[id(item[0])])
    return {source.name: names for source, names in ranked}
