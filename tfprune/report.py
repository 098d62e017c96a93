"""`sparsity_report`: per-layer totals, zeros and sparsity of a model's prunable weights."""

import dataclasses
import json

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
class SparsityReport:
    """Rows of `LayerSparsity`; `str(report)` is a table, `to_dict()` is JSON-able."""

    rows: list

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
        }

    def to_json(self, **kwargs):
        return json.dumps(self.to_dict(), **kwargs)

    def __str__(self):
        header = ("layer", "weight", "shape", "total", "zeros", "sparsity")
        lines = [
            (r.layer, r.weight, "x".join(map(str, r.shape)), str(r.total), str(r.zeros),
             f"{r.sparsity:.2%}")
            for r in self.rows
        ]
        lines.append(("TOTAL", "", "", str(self.total), str(self.zeros), f"{self.sparsity:.2%}"))
        widths = [max(len(h), *(len(l[i]) for l in lines)) for i, h in enumerate(header)]
        fmt = "  ".join(f"{{:<{w}}}" if i < 3 else f"{{:>{w}}}" for i, w in enumerate(widths))
        out = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
        out += [fmt.format(*l) for l in lines]
        return "\n".join(out)


def _weight_rows(layer, name):
    wrapper = layer if isinstance(layer, PruneLowMagnitude) else None
    inner = wrapper.layer if wrapper else layer
    spec = registry.get_spec(inner)
    if spec is None or not inner.built:
        return []
    masks = {id(t.variable): t.mask.numpy() for t in wrapper.targets} if wrapper else {}
    rows = []
    for path, v in spec.weight_targets(inner):
        value = v.numpy()
        if id(v) in masks:
            value = value * masks[id(v)]
        rows.append(LayerSparsity(name, path, tuple(value.shape), int(value.size),
                                  int(np.count_nonzero(value == 0))))
    return rows


def sparsity_report(model):
    """Per-layer totals, zeros and sparsity of every prunable weight in `model`.

    Works on pruned (wrapped) and plain models, nested ones included; masked
    weights count as zero. `print(report)` shows a table.

    Example:

    >>> import keras, tfprune
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> report = tfprune.sparsity_report(model)
    >>> report.total
    8
    """
    layers = [model] if not hasattr(model, "_flatten_layers") else [
        l for l in model._flatten_layers(include_self=False, recursive=True)
    ]
    if isinstance(model, PruneLowMagnitude):
        layers = [model]
    inner_of_wrappers = {id(l.layer) for l in layers if isinstance(l, PruneLowMagnitude)}
    rows = []
    for layer in layers:
        if id(layer) in inner_of_wrappers:
            continue
        name = layer.layer.name if isinstance(layer, PruneLowMagnitude) else layer.name
        rows.extend(_weight_rows(layer, name))
    return SparsityReport(rows)
