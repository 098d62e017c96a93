"""`sparsity_report`: per-layer sparsity of prunable weights, and params / FLOPs.

Sparsity rows count the zeros of every prunable weight (masked weights count as
zero). Cost rows give each layer's parameters (all weights), its nonzero
parameters, and two FLOP counts (2 per multiply-accumulate, batch 1;
`tfprune.flops`):

- dense FLOPs: what the layer costs as it runs: stored dense, zeros are
  multiplied too. Masks alone do not remove them; `tfprune.shrink` does.
- sparse FLOPs: what a kernel that skips zero weights would need,
  `dense_flops · nnz(kernels) / size(kernels)` (the kernels being the weights the
  FLOPs count: `kernel`, or `depthwise_kernel` + `pointwise_kernel`). It is a
  bound, not a speed: TFLite runs unstructured sparsity dense (ANCHORS), and only
  block-sparse fully-connected kernels come near it.

With `reference=` (the same model before pruning or shrinking: same layer names
and classes), params and dense FLOPs are shown as `before -> after`.
"""

import dataclasses
import json

import keras
import numpy as np

from tfprune import _compat
from tfprune import registry
from tfprune.wrappers import PruneLowMagnitude

__all__ = ["sparsity_report", "SparsityReport", "LayerSparsity"]


@dataclasses.dataclass
class LayerSparsity:
    layer: str
    weight: str
    shape: tuple
    total: int
    zeros: int

    @property
    def sparsity(self):
        return self.zeros / self.total if self.total else 0.0


@dataclasses.dataclass
class LayerCost:
    layer: str
    params: int
    nonzero: int
    flops: int  # dense FLOPs; None where not countable (RNNs, attention, unknown size)
    params_before: int = None
    flops_before: int = None
    sparse_flops: int = None  # FLOPs of a zero-skipping kernel; None where flops is


SPARSITY_TITLE = "Sparsity of the prunable weights (masked weights count as zero)"
COST_TITLE = ("Cost per layer (params: all weights; FLOPs per example, 2 per multiply-add: "
              "dense as run, sparse if zero weights were skipped)")


@dataclasses.dataclass
class SparsityReport:
    """Rows of `LayerSparsity` and `LayerCost`; `str(report)` is a table,
    `to_dict()` is JSON-able."""

    rows: list
    costs: list = dataclasses.field(default_factory=list)

    @property
    def params(self):
        return sum(c.params for c in self.costs)

    @property
    def flops(self):
        """Dense FLOPs: what the model costs as stored and run."""
        return sum(c.flops or 0 for c in self.costs)

    @property
    def sparse_flops(self):
        """FLOPs a kernel that skips zero weights would need."""
        return sum(c.sparse_flops or 0 for c in self.costs)

    @property
    def total(self):
        return sum(r.total for r in self.rows)

    @property
    def zeros(self):
        return sum(r.zeros for r in self.rows)

    @property
    def sparsity(self):
        return self.zeros / self.total if self.total else 0.0

    def __getitem__(self, layer):
        """The rows of one layer."""
        rows = [r for r in self.rows if r.layer == layer]
        if not rows:
            raise KeyError(layer)
        return rows

    def to_dict(self):
        return {
            "layers": [
                {**dataclasses.asdict(r), "shape": list(r.shape), "sparsity": r.sparsity}
                for r in self.rows
            ],
            "total": self.total,
            "zeros": self.zeros,
            "sparsity": self.sparsity,
            "costs": [dataclasses.asdict(c) for c in self.costs],
            "params": self.params,
            "flops": self.flops,
            "sparse_flops": self.sparse_flops,
        }

    def to_json(self, **kwargs):
        return json.dumps(self.to_dict(), **kwargs)

    def __str__(self):
        lines = [
            (r.layer, r.weight, "x".join(map(str, r.shape)), str(r.total), str(r.zeros),
             f"{r.sparsity:.2%}")
            for r in self.rows
        ]
        lines.append(("TOTAL", "", "", str(self.total), str(self.zeros), f"{self.sparsity:.2%}"))
        out = SPARSITY_TITLE + "\n" + _table(
            ("layer", "weight", "shape", "total", "zeros", "sparsity"), lines, 3)
        if self.costs:
            has_ref = any(c.params_before is not None for c in self.costs)
            cost_lines = [
                (c.layer, _arrow(c.params_before, c.params, has_ref), str(c.nonzero),
                 _arrow(c.flops_before, c.flops, has_ref), _arrow(None, c.sparse_flops, False))
                for c in self.costs
            ]
            total_before = sum(c.params_before or 0 for c in self.costs)
            flops_before = sum(c.flops_before or 0 for c in self.costs)
            cost_lines.append(("TOTAL", _arrow(total_before, self.params, has_ref),
                               str(sum(c.nonzero for c in self.costs)),
                               _arrow(flops_before, self.flops, has_ref),
                               str(self.sparse_flops)))
            header = ("layer", "params", "nonzero", "dense FLOPs", "sparse FLOPs")
            title = COST_TITLE + ("\nbefore -> after: reference model -> this model"
                                  if has_ref else "")
            out += "\n\n" + title + "\n" + _table(header, cost_lines, 1)
        return out


def _arrow(before, after, has_ref):
    after = "-" if after is None else str(after)
    if not has_ref:
        return after
    return f"{'-' if before is None else before} -> {after}"


def _table(header, lines, left):
    widths = [max(len(h), *(len(l[i]) for l in lines)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" if i < left else f"{{:>{w}}}" for i, w in enumerate(widths))
    out = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*l) for l in lines]
    return "\n".join(out)


def _values(layer):
    """`{id(variable): numpy value}` of a layer's weights, masks applied for wrappers."""
    if isinstance(layer, PruneLowMagnitude):
        return {id(v): value for v, value in layer.masked_values()}
    return {id(v): keras.ops.convert_to_numpy(v) for v in layer.weights}


def _weight_rows(layer, name):
    inner = layer.layer if isinstance(layer, PruneLowMagnitude) else layer
    spec = registry.get_spec(inner)
    if spec is None or not inner.built:
        return []
    values = _values(layer)
    rows = []
    for path, v in spec.weight_targets(inner):
        value = values[id(v)]
        rows.append(LayerSparsity(name, path, tuple(value.shape), int(value.size),
                                  int(np.count_nonzero(value == 0))))
    return rows


def _layer_costs(model):
    from tfprune import flops

    if isinstance(model, PruneLowMagnitude) or not isinstance(model, keras.Model):
        return {}
    return flops.layer_costs(model)


def _nonzero(layer):
    return sum(int(np.count_nonzero(value)) for value in _values(layer).values())


def _sparse_flops(layer, flops):
    """`flops · nnz(kernels) / size(kernels)`: the FLOPs of a kernel that skips
    zero weights (`flops` counts the products with the `*kernel` weights)."""
    if layer is None or not flops:
        return flops
    inner = layer.layer if isinstance(layer, PruneLowMagnitude) else layer
    values = _values(layer)
    kernels = [values[id(v)] for v in inner.weights
               if v.name.endswith("kernel") and "recurrent" not in v.name]
    size = sum(k.size for k in kernels)
    if not size:
        return flops
    nnz = sum(int(np.count_nonzero(k)) for k in kernels)
    return int(round(flops * nnz / size))


def _check_model(name, value):
    if not isinstance(value, keras.layers.Layer):
        raise TypeError(
            f"Argument `{name}` must be a Keras model or layer (pruned or not). "
            f"Received: {name}={value!r} (of type {type(value).__name__})"
        )


def _check_reference(model_costs, reference_costs, model_layers, reference):
    """The reference must be the same model at another stage (before pruning,
    stripping or shrinking): the same layer names, of the same classes."""
    ours, theirs = set(model_costs), set(reference_costs)
    if ours != theirs:
        missing = sorted(theirs - ours)[:3]
        extra = sorted(ours - theirs)[:3]
        raise ValueError(
            "Argument `reference` must be the same model before pruning or shrinking "
            "(the same layer names), but its layers differ: "
            f"only in reference: {missing or 'none'}, only in model: {extra or 'none'}. "
            f"Received: reference={getattr(reference, 'name', reference)!r}"
        )
    ref_layers = {_name(l): l for l in _layers(reference)}
    for name, layer in model_layers.items():
        other = ref_layers.get(name)
        a = type(layer.layer if isinstance(layer, PruneLowMagnitude) else layer)
        b = type(other.layer if isinstance(other, PruneLowMagnitude) else other)
        if other is not None and a is not b:
            raise ValueError(
                "Argument `reference` must be the same model before pruning or "
                f"shrinking, but its layer {name!r} is a {b.__name__}, not a "
                f"{a.__name__}. Received: reference={reference.name!r}"
            )


def sparsity_report(model, reference=None):
    """Per-layer sparsity of every prunable weight, and params / FLOPs per layer.

    Works on pruned (wrapped) and plain models, nested ones included; masked
    weights count as zero. `print(report)` shows two titled tables: the sparsity
    of the prunable weights, and the cost per layer (params, nonzero params,
    dense FLOPs as the layer runs, sparse FLOPs a zero-skipping kernel would
    need; see the module doc). With `reference` (the same model at another
    stage, e.g. before `shrink`: same layer names and classes), params and dense
    FLOPs are shown as `before -> after`.

    Raises:
        TypeError: `model` or `reference` is not a Keras model/layer.
        ValueError: `reference` has other layers than `model`.

    Example:

    >>> import keras, tfprune
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> report = tfprune.sparsity_report(model)
    >>> report.total, report.params, report.flops, report.sparse_flops
    (8, 10, 16, 16)
    """
    _check_model("model", model)
    if reference is not None:
        _check_model("reference", reference)
    layers = _layers(model)
    rows = []
    for layer in layers:
        rows.extend(_weight_rows(layer, _name(layer)))
    costs = _layer_costs(model)
    by_name = {_name(l): l for l in layers}
    before = {}
    if reference is not None:
        before = _layer_costs(reference)
        _check_reference(costs, before, by_name, reference)
    cost_rows = []
    for name, (params, flops) in costs.items():
        layer = by_name.get(name)
        ref = before.get(name, (None, None))
        nonzero = _nonzero(layer) if layer is not None else params
        cost_rows.append(LayerCost(name, params, nonzero, flops, ref[0], ref[1],
                                   _sparse_flops(layer, flops)))
    return SparsityReport(rows, cost_rows)


def _name(layer):
    return layer.layer.name if isinstance(layer, PruneLowMagnitude) else layer.name


def _layers(model):
    """Leaf layers of `model` (wrappers stand for their inner layer)."""
    if isinstance(model, PruneLowMagnitude) or not isinstance(model, keras.layers.Layer):
        return [model]
    layers = _compat.flatten_layers(model)
    inner_of_wrappers = {id(l.layer) for l in layers if isinstance(l, PruneLowMagnitude)}
    return [l for l in layers if id(l) not in inner_of_wrappers and not isinstance(l, keras.Model)]
