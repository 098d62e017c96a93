"""Which layers are prunable, which of their weights, and where their units are.

Layers are matched with `isinstance`, so subclasses of `Dense`, `Conv2D`, ... are
prunable too (tfmot matches exact classes). A custom layer opts in by implementing
the `PrunableLayer` protocol (`get_prunable_weights()`).

A *unit* is an output neuron (Dense) or output channel (convolutions). Its unit
shape says how a per-unit mask broadcasts against a weight, aligned to the
weight's last axes (see `masks.unit_scores`):

- `last`:        kernel `(..., units)` -> `(units,)`         Dense, Conv, Embedding, pointwise
- `second_last`: kernel `(..., filters, in)` -> `(filters, 1)` Conv*Transpose
- `last_two`:    kernel `(..., in, mult)` -> `(in, mult)`      DepthwiseConv (unit = in*mult)
"""

import dataclasses

import keras

from tfprune import _compat

__all__ = ["PrunableLayer", "LayerSpec", "get_spec", "SPECS_BY_CLASS_NAME", "unit_shape"]


class PrunableLayer:
    """Protocol for custom layers: return the weights to prune.

    Example:

    ```python
    class MyLayer(keras.layers.Layer, tfprune.PrunableLayer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1], 8))

        def call(self, x):
            return x @ self.w

        def get_prunable_weights(self):
            return [self.w]
    ```

    Custom layers are pruned by weight only (`granularity="weight"`).
    """

    def get_prunable_weights(self):
        raise NotImplementedError


def unit_shape(kind, shape):
    """The unit-mask broadcast shape for a weight of `shape` (see module doc)."""
    shape = tuple(int(d) for d in shape)
    if kind == "last":
        return (shape[-1],)
    if kind == "second_last":
        return (shape[-2], 1)
    if kind == "last_two":
        return (shape[-2], shape[-1])
    if kind == "flat":  # a bias of a depthwise layer: (in * mult,)
        return (shape[-1],)
    raise ValueError(f"Unknown unit kind {kind!r}")


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """Prunable weights of a layer class, by attribute path.

    weights: attribute paths pruned with `granularity="weight"` (e.g. "kernel",
        "cell.recurrent_kernel", "_query_dense.kernel").
    unit_kernel: attribute path of the kernel whose output units are ranked with
        `granularity="unit"`; None if the layer has no unit structure.
    unit_kind: how that kernel's units lie (see `unit_shape`).
    unit_bias: attribute path of the bias zeroed with a pruned unit (or None).
    """

    weights: tuple
    unit_kernel: str = None
    unit_kind: str = "last"
    unit_bias: str = "bias"

    def get(self, layer, path):
        obj = layer
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                return None
        return obj

    def weight_targets(self, layer):
        """`[(path, variable)]` pruned by weight."""
        out = []
        for path in self.weights:
            v = self.get(layer, path)
            if v is not None:
                out.append((path, v))
        return out

    def unit_targets(self, layer):
        """`(kernel_path, kernel, [(path, variable, unit_shape)])` or None.

        The list holds the kernel and its bias with the mask shape for each.
        """
        if self.unit_kernel is None:
            return None
        kernel = self.get(layer, self.unit_kernel)
        if kernel is None:
            return None
        ushape = unit_shape(self.unit_kind, kernel.shape)
        targets = [(self.unit_kernel, kernel, ushape)]
        bias = self.get(layer, self.unit_bias) if self.unit_bias else None
        if bias is not None:
            targets.append((self.unit_bias, bias, (int(bias.shape[-1]),)))
        return self.unit_kernel, kernel, targets


_L = keras.layers
_DENSE = LayerSpec(("kernel",), "kernel", "last")
_CONV = LayerSpec(("kernel",), "kernel", "last")
_CONV_T = LayerSpec(("kernel",), "kernel", "second_last")
_DEPTHWISE = LayerSpec(("kernel",), "kernel", "last_two")
_SEPARABLE = LayerSpec(("pointwise_kernel",), "pointwise_kernel", "last")
_EMBEDDING = LayerSpec(("embeddings",), "embeddings", "last", unit_bias=None)
_EINSUM = LayerSpec(("kernel",))
_RNN = LayerSpec(("cell.kernel", "cell.recurrent_kernel"))
_MHA = LayerSpec(tuple(f"{name}.kernel" for name in _compat.MHA_PROJECTIONS))

class _GenericRNNSpec(LayerSpec):
    """`keras.layers.RNN(cell)`: the cell's kernel and recurrent kernel; each cell of
    a `StackedRNNCells` (paths `cell.cells.<i>.kernel`); a cell that implements
    `PrunableLayer` gives its own weights."""

    def weight_targets(self, layer):
        cell = getattr(layer, "cell", None)
        stacked = isinstance(cell, _L.StackedRNNCells)
        cells = list(cell.cells) if stacked else [cell]
        out = []
        for i, c in enumerate(cells):
            prefix = f"cell.cells.{i}." if stacked else "cell."
            if _is_custom(c):
                out += [(prefix + path, v) for path, v in _named(c.get_prunable_weights())]
                continue
            for name in ("kernel", "recurrent_kernel"):
                v = getattr(c, name, None)
                if v is not None:
                    out.append((prefix + name, v))
        return out


_GENERIC_RNN = _GenericRNNSpec(())

# Order matters: the first isinstance match wins (transposes subclass nothing
# here, but keep specific classes before general ones).
_SPECS = [
    (_L.Conv1DTranspose, _CONV_T),
    (_L.Conv2DTranspose, _CONV_T),
    (_L.Conv3DTranspose, _CONV_T),
    (_L.SeparableConv1D, _SEPARABLE),
    (_L.SeparableConv2D, _SEPARABLE),
    (_L.DepthwiseConv1D, _DEPTHWISE),
    (_L.DepthwiseConv2D, _DEPTHWISE),
    (_L.Conv1D, _CONV),
    (_L.Conv2D, _CONV),
    (_L.Conv3D, _CONV),
    (_L.Dense, _DENSE),
    (_L.EinsumDense, _EINSUM),
    (_L.Embedding, _EMBEDDING),
    (_L.SimpleRNN, _RNN),
    (_L.LSTM, _RNN),
    (_L.GRU, _RNN),
    (_L.MultiHeadAttention, _MHA),
    (_L.RNN, _GENERIC_RNN),
]

# For files on disk, where only class names are known (h5 post-processor).
SPECS_BY_CLASS_NAME = {cls.__name__: spec for cls, spec in _SPECS if spec is not _GENERIC_RNN}
SPECS_BY_CLASS_NAME.update(
    {"Convolution1D": _CONV, "Convolution2D": _CONV, "Convolution3D": _CONV}
)


def _named(weights):
    """`[(name, variable)]`: each variable by its name, `name_<i>` only for a repeat."""
    out, seen = [], set()
    for i, v in enumerate(weights):
        name = v.name if v.name not in seen else f"{v.name}_{i}"
        seen.add(name)
        out.append((name, v))
    return out


def _is_custom(layer):
    return isinstance(layer, PrunableLayer) or (
        hasattr(layer, "get_prunable_weights") and callable(layer.get_prunable_weights)
    )


class _CustomSpec(LayerSpec):
    def weight_targets(self, layer):
        return _named(layer.get_prunable_weights())


def get_spec(layer):
    """The `LayerSpec` of a layer, or None if it is not prunable."""
    if _is_custom(layer):
        return _CustomSpec(weights=())
    for cls, spec in _SPECS:
        if isinstance(layer, cls):
            return spec
    return None
