"""`sparsity_report`: per-layer sparsity of prunable weights, and params / FLOPs.

Sparsity rows count the zeros of every prunable weight (masked weights count as
zero). Cost rows give each layer's parameters (all weights), its nonzero
parameters, and FLOPs (2 per multiply-accumulate, batch 1; `tfprune.flops`) as
the layer runs: masks alone do not remove FLOPs, only `tfprune.shrink` does. With
`reference=` (e.g. the model before pruning/shrinking), before and after are
shown side by side.
"""

import dataclasses
import json

import keras
import numpy as np

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
    flops: int  # None where not countable (RNNs, attention, unknown spatial size)
    params_before: int = None
    flops_before: int = None


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
        return sum(c.flops or 0 for c in self.costs)

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
        out = _table(("layer", "weight", "shape", "total", "zeros", "sparsity"), lines, 3)
        if self.costs:
            has_ref = any(c.params_before is not None for c in self.costs)
            cost_lines = [
                (c.layer, _arrow(c.params_before, c.params, has_ref), str(c.nonzero),
                 _arrow(c.flops_before, c.flops, has_ref))
                for c in self.costs
            ]
            total_before = sum(c.params_before or 0 for c in self.costs)
            flops_before = sum(c.flops_before or 0 for c in self.costs)
            cost_lines.append(("TOTAL", _arrow(total_before, self.params, has_ref),
                               str(sum(c.nonzero for c in self.costs)),
                               _arrow(flops_before, self.flops, has_ref)))
            out += "\n\n" + _table(("layer", "params", "nonzero", "FLOPs"), cost_lines, 1)
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


def sparsity_report(model, reference=None):
    """Per-layer sparsity of every prunable weight, and params / FLOPs per layer.

    Works on pruned (wrapped) and plain models, nested ones included; masked
    weights count as zero. `print(report)` shows two tables: sparsity, and
    params / nonzero params / FLOPs (with `reference`, a model with the same layer
    names such as the one before `shrink`, as `before -> after`).

    Example:

    >>> import keras, tfprune
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> report = tfprune.sparsity_report(model)
    >>> report.total, report.params, report.flops
    (8, 10, 16)
    """
    layers = _layers(model)
    rows = []
    for layer in layers:
        rows.extend(_weight_rows(layer, _name(layer)))
    costs = _layer_costs(model)
    before = _layer_costs(reference) if reference is not None else {}
    by_name = {_name(l): l for l in layers}
    cost_rows = []
    for name, (params, flops) in costs.items():
        layer = by_name.get(name)
        ref = before.get(name, (None, None))
        cost_rows.append(LayerCost(name, params, _nonzero(layer) if layer is not None else params,
                                   flops, ref[0], ref[1]))
    return SparsityReport(rows, cost_rows)


def _name(layer):
    return layer.layer.name if isinstance(layer, PruneLowMagnitude) else layer.name


def _layers(model):
    """Leaf layers of `model` (wrappers stand for their inner layer)."""
    if isinstance(model, PruneLowMagnitude) or not hasattr(model, "_flatten_layers"):
        return [model]
    layers = list(model._flatten_layers(include_self=False, recursive=True))
    inner_of_wrappers = {id(l.layer) for l in layers if isinstance(l, PruneLowMagnitude)}
    return [l for l in layers if id(l) not in inner_of_wrappers and not isinstance(l, keras.Model)]
