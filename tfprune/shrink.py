"""Shrink: remove pruned units for real, so the model gets smaller and faster.

Masks alone change nothing at inference: a zeroed column costs as much as any
other. `shrink(model)` returns a new, narrower model in which every *dead* unit
(all incoming weights zero: a zero Dense column, a zero convolution filter) is
removed, together with the input rows / channels of the layers that read it.

How it stays exact:

- A dead unit still outputs a constant `c = activation(bias)`. Channel-wise
  layers after it (BatchNormalization, activations, pooling, ...) turn it into
  other constants, computed by running those layers on constant inputs.
- The consumer folds the constant into its bias: Dense `b' = b + c @ W_rows`;
  Conv / SeparableConv with `padding="valid"`: `c` times the kernel summed over
  its taps. With `padding="same"` (or "causal", or a transposed convolution) a
  constant input is not constant at the padded borders, so a unit whose
  constant is not 0 there is kept, and reported.
- Units tied by a residual Add / Multiply / ... are removed only where they are
  dead in every member; Concatenate offsets and Flatten positions are mapped
  (`tfprune.graph` does the channel bookkeeping).
- The output layer keeps its units; so do units that feed a layer shrink cannot
  follow (Lambda, custom layers, a Reshape that moves the channel axis).
- At the end, the shrunk model is run on a batch next to the input model and
  `shrink` raises if `max|out - ref| > 1e-4 · max(1, max|ref|)`.

Example (runs as is):

>>> import keras
>>> model = keras.Sequential([
...     keras.Input((784,)),
...     keras.layers.Dense(300, activation="relu", name="hidden"),
...     keras.layers.Dense(10, name="out"),
... ])
>>> kernel, bias = model.get_layer("hidden").get_weights()
>>> keep = tfprune.masks.select_np([tfprune.masks.unit_scores_np(kernel, (300,))], 0.5)[0]
>>> model.get_layer("hidden").set_weights([kernel * keep, bias * keep])  # half the units dead
>>> small, report = tfprune.shrink(model, round_to=8, return_report=True)
>>> small.get_layer("hidden").units                                      # 150 rounded up to 8
152
>>> report.params_before, report.params_after
(238510, 120850)

Refused: a non-model (`TypeError`), and NaN or inf in any weight (`ValueError`
naming the layer, the weight and how many values): dead units are told by their
zeros and constants folded by arithmetic, which a NaN does not survive.
"""

import dataclasses
import warnings

import keras
import numpy as np

from tfprune import _compat
from tfprune import flops, graph, masks, registry

__all__ = ["shrink", "ShrinkReport", "ShrinkRow"]

VERIFY_TOLERANCE = 1e-4
_UNIFORM_RTOL = 1e-6  # a channel is constant if max - min <= 1e-6 * max(1, |value|)
_UNKNOWN_DIM = 32  # stands for unknown (None) spatial dims when running layers
_L = keras.layers
_CONV = (_L.Conv1D, _L.Conv2D, _L.Conv3D)
_CONV_T = (_L.Conv1DTranspose, _L.Conv2DTranspose, _L.Conv3DTranspose)
_SEPARABLE = (_L.SeparableConv1D, _L.SeparableConv2D)
_DEPTHWISE = (_L.DepthwiseConv1D, _L.DepthwiseConv2D)
_BN_WEIGHTS = ("gamma", "beta", "moving_mean", "moving_variance")


# --------------------------------------------------------------------------- report


@dataclasses.dataclass(frozen=True)
class ShrinkRow:
    """One layer with weights: output units and cost before and after.

    flops are `tfprune.flops.layer_costs` FLOPs (None where not counted).
    """

    layer: str
    units_before: int
    units_after: int
    params_before: int
    params_after: int
    flops_before: object
    flops_after: object


def _total(values):
    values = list(values)
    return None if any(v is None for v in values) else sum(values)


@dataclasses.dataclass
class ShrinkReport:
    """What `shrink` did.

    rows: a `ShrinkRow` per layer with weights, in model order.
    skipped: `{layer name: reason}` for layers that keep some dead units.
    round_to: the multiple unit counts were rounded up to.
    max_abs_diff: max |shrunk - input model| on the verification batch (None if
        `verify=False`).
    """

    rows: list
    skipped: dict
    round_to: int
    max_abs_diff: object

    @property
    def params_before(self):
        return sum(r.params_before for r in self.rows)

    @property
    def params_after(self):
        return sum(r.params_after for r in self.rows)

    @property
    def flops_before(self):
        return _total(r.flops_before for r in self.rows)

    @property
    def flops_after(self):
        return _total(r.flops_after for r in self.rows)

    def __str__(self):
        head = f"{'layer':<24} {'units':>12} {'params':>22} {'FLOPs':>26}"
        lines = [head, "-" * len(head)]
        for r in self.rows:
            lines.append(
                f"{r.layer:<24} {_arrow(r.units_before, r.units_after):>12} "
                f"{_arrow(r.params_before, r.params_after):>22} "
                f"{_arrow(r.flops_before, r.flops_after):>26}"
            )
        lines.append(
            f"{'total':<24} {'':>12} {_arrow(self.params_before, self.params_after):>22} "
            f"{_arrow(self.flops_before, self.flops_after):>26}"
        )
        lines += [f"kept {name}: {why}" for name, why in self.skipped.items()]
        return "\n".join(lines)


def _arrow(before, after):
    return f"{_fmt(before)} -> {_fmt(after)}"


def _fmt(value):
    return "?" if value is None else str(value)


# --------------------------------------------------------------------------- constants


def _unit_scores(layer):
    """Per-unit sum of squares of the layer's unit kernel (registry layout)."""
    _, kernel, targets = registry.get_spec(layer).unit_targets(layer)
    return masks.unit_scores_np(kernel.numpy(), targets[0][2])


def _dead_output(layer, n):
    """What each unit outputs when its incoming weights are zero: act(bias)."""
    bias = getattr(layer, "bias", None)
    bias = np.zeros(n, np.float32) if bias is None else bias.numpy()
    activation = getattr(layer, "activation", None) or keras.activations.linear
    return keras.ops.convert_to_numpy(activation(bias[None]))[0].astype(np.float64)


def _producer_const(g, step, const, notes):
    scores = _unit_scores(step.layer)
    c = np.full(scores.shape, np.nan)
    dead = scores == 0
    if dead.any():
        c[dead] = _dead_output(step.layer, len(scores))[dead]
    return [c]


def _constant_batch(tensor, c):
    """A batch of one with every last-axis position filled with its constant."""
    shape = [1] + [_UNKNOWN_DIM if d is None else d for d in tensor.shape[1:]]
    fill = np.where(np.isnan(c), 0.0, c)
    return np.broadcast_to(fill, shape).astype(tensor.dtype)


def _output_const(g, step, ch, y, live_roots, notes):
    """Constant of each output position (NaN: not constant), from a layer run."""
    if ch.ids is None:
        return None
    y = keras.ops.convert_to_numpy(y).astype(np.float64).reshape(-1, len(ch.ids))
    lo, hi = y.min(axis=0), y.max(axis=0)
    uniform = hi - lo <= _UNIFORM_RTOL * np.maximum(1.0, np.abs(lo))
    live = np.isin(g.roots(ch.ids), live_roots)
    label = graph.layer_label(step.layer)
    why = f"its constant output is not constant after {label} (padded borders)"
    for i in np.flatnonzero(~uniform & ~live):
        notes.setdefault(int(ch.ids[i]), why)
    return np.where(uniform & ~live, y[0], np.nan)


def _mapped_const(g, step, const, notes):
    """Run a channel-mapping layer on constant inputs (inference mode)."""
    ins = [const[id(c)] for c in step.inputs]
    if any(c is None for c in ins):
        return [None] * len(step.outputs)
    values = {id(t): _constant_batch(t, c) for t, c in zip(step.node.input_tensors, ins)}
    args, kwargs = step.node.arguments.fill_in(values)
    outs = keras.tree.flatten(step.layer(*args, **{"training": False, **kwargs}))
    live = np.concatenate([g.roots(ch.ids[np.isnan(c)]) for ch, c in zip(step.inputs, ins)])
    return [_output_const(g, step, ch, y, live, notes) for ch, y in zip(step.outputs, outs)]


def _varying(ch):
    """All positions of `ch` vary (None if its width is unknown)."""
    return None if ch.ids is None else np.full(len(ch.ids), np.nan)


def _opaque_const(g, step, const, notes):
    return [_varying(ch) for ch in step.outputs]


_CONST_RULES = {"producer": _producer_const, "opaque": _opaque_const}


def _constants(g):
    """`(const, notes)`: `const[id(Channels)]` = per-position constant (NaN where
    the value varies, None where the width is unknown); `notes` = `{id: reason}`
    where a constant stops being constant (padding)."""
    const = {id(c): _varying(c) for c in g.inputs}
    notes = {}
    for step in g.steps:
        rule = _CONST_RULES.get(step.kind, _mapped_const)
        for ch, c in zip(step.outputs, rule(g, step, const, notes)):
            const[id(ch)] = c
    return const, notes


# --------------------------------------------------------------------------- what to remove


def _absorb_block(layer):
    """Why `layer` cannot fold a nonzero constant input (None if it can)."""
    if isinstance(layer, _CONV_T):
        return f"{graph.layer_label(layer)}, a transposed convolution (not constant at the borders)"
    if isinstance(layer, _CONV + _SEPARABLE) and layer.padding != "valid":
        return (
            f"{graph.layer_label(layer)} with padding='{layer.padding}', where a constant "
            "channel is not constant at the padded borders"
        )
    return None


def _check_consumers(g, const, reasons):
    """Block constants that a consumer cannot fold into its bias."""
    first = {}
    for step in g.steps:
        if step.kind != "producer" or not step.inputs or step.inputs[0].ids is None:
            continue
        ch = step.inputs[0]
        c, roots = const[id(ch)], g.roots(ch.ids)
        why = _absorb_block(step.layer)
        if why:
            for i in np.flatnonzero(np.isfinite(c) & (c != 0)):
                reasons.setdefault(int(roots[i]), f"its nonzero constant output enters {why}")
        seen = first.setdefault(id(step.layer), c)
        for i in np.flatnonzero(np.isfinite(c) & np.isfinite(seen) & (c != seen)):
            why = f"{graph.layer_label(step.layer)} is called with different constant inputs"
            reasons.setdefault(int(roots[i]), why)


def _check_live(g, const, reasons):
    """Block every class with a position whose value varies."""
    for producers in (True, False):
        for step in g.steps:
            if (step.kind == "producer") != producers:
                continue
            for ch in step.outputs:
                c = const[id(ch)]
                if c is None:
                    continue
                for i in np.flatnonzero(np.isnan(c)):
                    reasons.setdefault(g.find(int(ch.ids[i])), _live_reason(g, int(ch.ids[i])))


def _live_reason(g, i):
    owner = g.owner[i]
    if owner is None:
        return "its output is not constant"
    return f"the coupled unit of '{owner[0].name}' is not dead"


def _dead_roots(g, layer):
    """Classes of the dead units of a unit-prunable layer (one per unit)."""
    return g.roots(g.unit_ids[id(layer)])[_unit_scores(layer) == 0]


def _decide(g, const, notes):
    """`(removed roots, reasons)`: classes to remove, and why the others stay."""
    reasons = g.reasons()
    for i, why in notes.items():
        reasons.setdefault(g.find(i), why)
    _check_consumers(g, const, reasons)
    _check_live(g, const, reasons)
    removed = set()
    for layer in g.unit_layers:
        if not isinstance(layer, _DEPTHWISE):
            removed.update(r for r in _dead_roots(g, layer).tolist() if r not in reasons)
    return removed, reasons


def _round(g, removed, round_to):
    """Give back removed units (best unit score first, ties by lowest index)
    until every unit-prunable layer's count is a multiple of `round_to` (or full)."""
    changed = round_to > 1
    while changed:
        changed = False
        for layer in g.unit_layers:
            roots = g.roots(g.unit_ids[id(layer)])
            gone = np.isin(roots, list(removed))
            n, kept = len(roots), int((~gone).sum())
            target = masks.round_keep_count(kept, n, round_to)
            if target > kept:
                scores = np.where(gone, _unit_scores(layer), np.inf)
                back = masks.topk_keep_np(scores, target) & gone
                removed -= set(roots[back].tolist())
                changed = True
    return removed


def _skipped(g, removed, reasons):
    """`{layer name: reason}` for layers that keep dead units."""
    out = {}
    for layer in g.unit_layers:
        kept = [r for r in _dead_roots(g, layer).tolist() if r not in removed and r in reasons]
        if kept:
            whys = list(dict.fromkeys(reasons[r] for r in kept))
            dead = int((_unit_scores(layer) == 0).sum())
            out[layer.name] = f"{len(kept)} of {dead} dead units kept: " + "; ".join(whys[:3])
    return out


# --------------------------------------------------------------------------- new layers


class _Plan:
    """Which positions of each traced tensor stay, and their constants."""

    def __init__(self, g, const, removed):
        self.g, self.const = g, const
        self._removed = np.array(sorted(removed), dtype=np.int64)
        self._keep = {}

    def keep(self, ch):
        """Bool array over `ch`'s positions (None if unknown width)."""
        if ch is None or ch.ids is None:
            return None
        if id(ch) not in self._keep:
            self._keep[id(ch)] = ~np.isin(self.g.roots(ch.ids), self._removed)
        return self._keep[id(ch)]


def _slices(layer):
    """`[(weight name, axis, which)]`: how weights follow kept positions
    (`which`: "in" input positions, "out" output positions, "in_mult" input
    positions repeated `depth_multiplier` times)."""
    if isinstance(layer, _L.Dense):
        return [("kernel", 0, "in"), ("kernel", 1, "out"), ("bias", 0, "out")]
    if isinstance(layer, _CONV_T):
        return [("kernel", -1, "in"), ("kernel", -2, "out"), ("bias", 0, "out")]
    if isinstance(layer, _SEPARABLE):
        return [
            ("depthwise_kernel", -2, "in"),
            ("pointwise_kernel", -2, "in_mult"),
            ("pointwise_kernel", -1, "out"),
            ("bias", 0, "out"),
        ]
    if isinstance(layer, _DEPTHWISE):
        return [("kernel", -2, "in"), ("bias", 0, "out")]
    if isinstance(layer, _CONV):
        return [("kernel", -2, "in"), ("kernel", -1, "out"), ("bias", 0, "out")]
    if isinstance(layer, _L.Embedding):
        return [("embeddings", -1, "out")]
    if isinstance(layer, _L.BatchNormalization):
        return [(name, 0, "out") for name in _BN_WEIGHTS]
    return []


def _width_key(layer):
    if isinstance(layer, _L.Dense):
        return "units"
    return "output_dim" if isinstance(layer, _L.Embedding) else "filters"


def _input_matrix(layer):
    """`(in, out)`: change of each output for a unit constant on each input."""
    w = {v.name: v.numpy().astype(np.float64) for v in layer.weights}
    if isinstance(layer, _L.Dense):
        return w["kernel"]
    if isinstance(layer, _SEPARABLE):
        dw = w["depthwise_kernel"]
        taps = dw.sum(axis=tuple(range(dw.ndim - 2)))
        pw = w["pointwise_kernel"].reshape(taps.shape + (-1,))
        return np.einsum("im,imo->io", taps, pw)
    k = w["kernel"]
    return k.sum(axis=tuple(range(k.ndim - 2)))


def _fold_into_bias(layer, step, plan, in_keep, weights, config):
    """Add to the bias what the removed nonzero constant inputs contributed."""
    c = plan.const[id(step.inputs[0])]
    gone = ~in_keep & np.isfinite(c) & (c != 0)
    if not gone.any():
        return
    delta = c[gone] @ _input_matrix(layer)[gone]
    bias = weights.get("bias")
    bias = np.zeros(len(delta), np.float32) if bias is None else bias
    weights["bias"] = (bias + delta).astype(bias.dtype)
    config["use_bias"] = True


def _cut(keep):
    """`keep`, or None when it keeps everything (nothing to cut)."""
    return None if keep is None or keep.all() else keep


def _shrunk_weights(layer, step, plan, config):
    """The layer's weights by name with removed positions cut (None: unchanged);
    updates `config` (width, use_bias)."""
    slices = _slices(layer)
    if step is None or step.kind == "opaque" or not slices:
        return None
    in_keep = _cut(plan.keep(step.inputs[0]) if step.inputs else None)
    out_keep = plan.keep(step.outputs[0])
    weights = {v.name: v.numpy() for v in layer.weights}
    if step.kind == "producer":
        config[_width_key(layer)] = int(out_keep.sum())
        if in_keep is not None:
            _fold_into_bias(layer, step, plan, in_keep, weights, config)
    which = {"in": in_keep, "out": _cut(out_keep)}
    if in_keep is not None and isinstance(layer, _SEPARABLE):
        which["in_mult"] = np.repeat(in_keep, layer.depth_multiplier)
    for name, axis, key in slices:
        if name in weights and which.get(key) is not None:
            weights[name] = np.compress(which[key], weights[name], axis=axis)
    return weights


def _target_shape(config, step, plan):
    target = list(config["target_shape"])
    if target[-1] != -1:
        target[-1] = int(plan.keep(step.outputs[0]).sum())
    return tuple(target)


def _clone(layer, config):
    """A new layer from `config` (the input layer itself if it cannot be rebuilt)."""
    try:
        with _compat.serialization_lib.SafeModeScope(False):
            return type(layer).from_config(config)
    except (NotImplementedError, TypeError, ValueError) as e:
        warnings.warn(
            f"shrink: {graph.layer_label(layer)} cannot be rebuilt from its config ({e}); "
            "the shrunk model shares it with the input model.",
            stacklevel=4,
        )
        return layer


class _Builder:
    """Builds the shrunk model: new layers, same graph, then weights."""

    def __init__(self, plan):
        self.plan = plan
        self._layers = {}
        self._models = {}

    def layer(self, old):
        if id(old) not in self._layers:
            step = self.plan.g.first_step.get(id(old))
            config = old.get_config()
            weights = _shrunk_weights(old, step, self.plan, config)
            if step is not None and step.kind == "reshape" and isinstance(old, _L.Reshape):
                config["target_shape"] = _target_shape(config, step, self.plan)
            self._layers[id(old)] = (old, _clone(old, config), weights)
        return self._layers[id(old)][1]

    def op(self, old):
        if isinstance(old, keras.Model) and graph.functional_of(old) is not None:
            return self.model(old)
        return self.layer(old)

    def input(self, t):
        shape = list(t.shape)
        keep = self.plan.keep(self.plan.g.tensors.get(id(t)))
        if keep is not None:
            shape[-1] = int(keep.sum())
        return keras.Input(batch_shape=tuple(shape), dtype=t.dtype, name=_compat.producer_name(t))

    def model(self, old):
        if id(old) not in self._models:
            self._models[id(old)] = self._build(old)
        return self._models[id(old)]

    def _build(self, old):
        fn = graph.functional_of(old)
        inputs = [self.input(t) for t in fn.inputs]
        if isinstance(old, keras.Sequential):
            new = keras.Sequential(inputs + [self.op(l) for l in old.layers], name=old.name)
        else:
            values = {id(t): x for t, x in zip(fn.inputs, inputs)}
            for node in graph.graph_nodes(fn):
                args, kwargs = node.arguments.fill_in(values)
                outs = keras.tree.flatten(self.op(node.operation)(*args, **kwargs))
                values.update({id(t): y for t, y in zip(node.outputs, outs)})
            outputs = [values[id(t)] for t in fn.outputs]
            new = keras.Model(
                keras.tree.pack_sequence_as(_compat.inputs_struct(fn), inputs),
                keras.tree.pack_sequence_as(_compat.outputs_struct(fn), outputs),
                name=old.name,
            )
        new.trainable = old.trainable
        return new

    def set_weights(self):
        for old, new, weights in self._layers.values():
            if new is old:
                continue
            if weights is None:
                new.set_weights(old.get_weights())
            else:
                new.set_weights([weights[v.name] for v in new.weights])


# --------------------------------------------------------------------------- verify and report


def _random_batch(model):
    fn = graph.functional_of(model)
    rng = np.random.default_rng(0)
    arrays = []
    for t in fn.inputs:
        shape = [2] + [_UNKNOWN_DIM if d is None else d for d in t.shape[1:]]
        if "float" in str(t.dtype):
            arrays.append(rng.standard_normal(shape).astype(t.dtype))
        else:
            arrays.append(rng.integers(0, 2, shape).astype(t.dtype))
    return keras.tree.pack_sequence_as(_compat.inputs_struct(fn), arrays)


def _outputs(model, x):
    flat = keras.tree.flatten(model(x, training=False))
    return [keras.ops.convert_to_numpy(y).astype(np.float64) for y in flat]


def _verify(ref, new, verify):
    """Max abs output difference of `new` vs `ref`; raises beyond the tolerance."""
    x = _random_batch(ref) if verify is True else verify
    a, b = (_outputs(m, x) for m in (ref, new))
    diff = max(float(np.max(np.abs(p - q))) for p, q in zip(a, b))
    scale = max(1.0, max(float(np.max(np.abs(p))) for p in a))
    if not diff <= VERIFY_TOLERANCE * scale:
        raise RuntimeError(
            f"shrink built a model whose outputs differ from the input model's by {diff:.3g} "
            f"(more than {VERIFY_TOLERANCE} x {scale:.3g}); the input model is unchanged. "
            "Please report this with the model's summary."
        )
    return diff


def _report(source, new, plan, skipped, round_to, diff):
    before, after = flops.layer_costs(source), flops.layer_costs(new)
    rows = []
    for layer in graph.leaf_layers(source):
        params, cost = before[layer.name]
        if not params:
            continue
        step = plan.g.first_step.get(id(layer))
        units = None if step is None else step.outputs[0].tensor.shape[-1]
        keep = None if step is None else plan.keep(step.outputs[0])
        rows.append(
            ShrinkRow(
                layer.name,
                units,
                units if keep is None else int(keep.sum()),
                params,
                after[layer.name][0],
                cost,
                after[layer.name][1],
            )
        )
    return ShrinkReport(rows, skipped, round_to, diff)


# --------------------------------------------------------------------------- public


def _stripped(model):
    """`model` without pruning wrappers (masks applied), or `model` itself."""
    if any(graph.is_wrapper(l) for l in _compat.flatten_layers(model)):
        from tfprune.prune import strip_pruning

        return strip_pruning(model)
    return model


def _check_args(model, verify):
    if not isinstance(model, keras.Model):
        raise TypeError(f"Argument `model` must be a Keras model. Received: model={model!r}")
    if verify is True or verify is False:
        return
    if isinstance(verify, (np.ndarray, list, tuple, dict)):
        arrays = [np.asarray(a) for a in keras.tree.flatten(verify)]
        bad = sum(a.size - int(np.count_nonzero(np.isfinite(a))) for a in arrays
                  if np.issubdtype(a.dtype, np.floating))
        if bad:  # outputs compared on NaN inputs can never agree
            raise ValueError(f"Argument `verify` must be a batch of finite inputs. Received: "
                             f"verify with {bad} NaN or inf values")
        return
    raise TypeError(
        "Argument `verify` must be True, False or a batch of model inputs. "
        f"Received: verify={verify!r}"
    )


def _check_finite(model, source):
    """Refuse NaN / inf in any weight: a dead unit is told by zeros, a constant is
    folded by arithmetic and outputs are compared, none of which a NaN survives."""
    for layer in graph.leaf_layers(source):
        for v in layer.weights:
            w = keras.ops.convert_to_numpy(v.value)
            if not np.issubdtype(w.dtype, np.floating):
                continue
            bad = w.size - int(np.count_nonzero(np.isfinite(w)))
            if bad:
                raise ValueError(
                    "Argument `model` must have finite weights to be shrunk. Received: "
                    f"model={model.name!r} (layer {layer.name!r}, weight {v.name!r}: {bad} "
                    f"of {w.size} values are NaN or inf)"
                )


def shrink(model, round_to=1, return_report=False, verify=True):
    """A new, narrower model with every dead unit removed; outputs unchanged.

    Args:
        model: a built Sequential or functional Keras model (nested models are
            followed), plain/stripped or with `PruneLowMagnitude` wrappers (stripped
            first, masks applied). Never modified.
        round_to: keep every unit-prunable layer's unit count a multiple of this
            (rounded up, capped at the full width, as `masks.round_keep_count`):
            removed units are given back, best unit score first (removed units
            all have zero weights, so by lowest index).
        return_report: also return a `ShrinkReport` (units, params and FLOPs per
            layer, and `skipped`: the layers that keep dead units, and why).
        verify: True runs a random batch (batch 2, unknown dims 32, integer
            inputs in {0, 1}) through both models; a batch of inputs uses those;
            False skips the check. Raises `RuntimeError` if
            `max|out - ref| > 1e-4 * max(1, max|ref|)`.

    Returns:
        The shrunk model (uncompiled; layer names unchanged), or
        `(model, ShrinkReport)` with `return_report=True`. Layers that keep dead
        units are also reported with a `UserWarning`.

    Raises:
        TypeError: `model` is not a Keras model, `verify` not a bool or a batch.
        ValueError: a bad `round_to`; NaN or inf in a weight of the model (the
            message names the layer, the weight and the count).
        RuntimeError: the verification failed (outputs differ).

    Example:

    ```python
    small, report = tfprune.shrink(tfprune.strip_pruning(pruned), return_report=True)
    print(report)   # units, params and FLOPs before -> after; what was kept and why
    small.save("small.keras")
    ```
    """
    round_to = masks.check_round_to(round_to)
    _check_args(model, verify)
    source = _stripped(model)
    _check_finite(model, source)
    g = graph.trace(source)
    const, notes = _constants(g)
    removed, reasons = _decide(g, const, notes)
    removed = _round(g, removed, round_to)
    plan = _Plan(g, const, removed)
    builder = _Builder(plan)
    new = builder.model(source)
    builder.set_weights()
    diff = None if verify is False else _verify(source, new, verify)
    skipped = _skipped(g, removed, reasons)
    if skipped:
        lines = "; ".join(f"{name}: {why}" for name, why in skipped.items())
        warnings.warn(f"shrink kept dead units in {len(skipped)} layer(s): {lines}", stacklevel=2)
    if not return_report:
        return new
    return new, _report(source, new, plan, skipped, round_to, diff)
