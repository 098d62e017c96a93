"""Parameters and FLOPs per layer, for plain and pruning-wrapped models.

FLOPs are counted as 2 per multiply-accumulate (one multiply, one add) of a
layer's kernel product, for one example (batch size 1), summed over every call of
the layer in the graph:

- Dense: `2 · in · units` per position (`positions` = the output's non-batch,
  non-last dims, 1 for a flat input);
- Conv1D/2D/3D and DepthwiseConv1D/2D: `2 · kernel.size · output pixels`;
- SeparableConv1D/2D: `2 · (depthwise_kernel.size + pointwise_kernel.size) ·
  output pixels`;
- Conv*Transpose: `2 · kernel.size · input pixels`.

Bias adds, activations, pooling, merges, BatchNormalization (folded into the
convolution by TFLite), other normalization layers and Embedding lookups count 0.
Layers with weights that are not listed (RNNs, attention, EinsumDense, custom
layers) and layers whose spatial size is unknown (`Input((None, None, 3))`) get
`flops=None`: not counted, rather than a wrong number. Parameters count every
weight of the layer (trainable or not, e.g. BatchNormalization's moving
statistics); a pruning wrapper's own variables (masks, step) are not counted.

Example:

```python
model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(10)])
tfprune.flops.layer_costs(model)   # {'dense': (7850, 15680)}
```
"""

import math

import keras

from tfprune import graph

__all__ = ["layer_costs"]

_L = keras.layers
_CONV_T = (_L.Conv1DTranspose, _L.Conv2DTranspose, _L.Conv3DTranspose)
_SEPARABLE = (_L.SeparableConv1D, _L.SeparableConv2D)
_CONV = (_L.Conv1D, _L.Conv2D, _L.Conv3D, _L.DepthwiseConv1D, _L.DepthwiseConv2D)
_FREE = (
    _L.BatchNormalization,
    _L.LayerNormalization,
    _L.GroupNormalization,
    _L.Embedding,
)


def _prod(dims):
    """Product of `dims`, None if one is unknown."""
    return None if any(d is None for d in dims) else math.prod(dims)


def _pixels(layer, shape):
    """Product of the spatial dims of `shape` (None if one is unknown)."""
    first = getattr(layer, "data_format", "channels_last") == "channels_first"
    return _prod(shape[2:] if first else shape[1:-1])


def _size(variable):
    return math.prod(variable.shape)


def _macs(layer, node):
    """Multiply-accumulates of one call of `layer` (None: not counted)."""
    if isinstance(layer, _CONV_T):
        pixels = _pixels(layer, node.input_tensors[0].shape)
        return None if pixels is None else _size(layer.kernel) * pixels
    pixels = _pixels(layer, node.outputs[0].shape)
    if isinstance(layer, _L.Dense):
        positions = _prod(node.outputs[0].shape[1:-1])
        return None if positions is None else _size(layer.kernel) * positions
    if pixels is None and isinstance(layer, _SEPARABLE + _CONV):
        return None
    if isinstance(layer, _SEPARABLE):
        return (_size(layer.depthwise_kernel) + _size(layer.pointwise_kernel)) * pixels
    if isinstance(layer, _CONV):
        return _size(layer.kernel) * pixels
    if not layer.weights or isinstance(layer, _FREE):
        return 0
    return None


def _calls(model):
    """`(layer, node)` for every layer call of a functional graph, nested models
    inlined; a subclassed nested model yields `(model, node)`."""
    for node in graph.graph_nodes(graph.functional_of(model)):
        op = node.operation
        if isinstance(op, keras.Model) and graph.functional_of(op) is not None:
            yield from _calls(op)
        else:
            yield graph.unwrap(op), node


def _add(total, flops):
    return None if total is None or flops is None else total + flops


def layer_costs(model):
    """`{layer name: (params, flops)}` for every layer of `model`.

    Nested models are flattened (their layers are listed, not the model);
    pruning wrappers are keyed by the wrapped layer's name, so a pruned model,
    its stripped copy and its shrunk copy have the same keys. A subclassed model
    (no graph) gets `flops=None` for its layers. See the module doc for what is
    counted.

    Example:

    ```python
    before = tfprune.flops.layer_costs(model)
    after = tfprune.flops.layer_costs(tfprune.shrink(model))
    sum(p for p, _ in after.values()) / sum(p for p, _ in before.values())
    ```
    """
    params = {l.name: l.count_params() for l in graph.leaf_layers(model)}
    flops = dict.fromkeys(params, 0)
    if graph.functional_of(model) is None:
        return {name: (p, None) for name, p in params.items()}
    for layer, node in _calls(model):
        if isinstance(layer, keras.Model):
            flops.update(dict.fromkeys((l.name for l in graph.leaf_layers(layer)), None))
        elif layer.name in flops:
            macs = _macs(layer, node)
            flops[layer.name] = _add(flops[layer.name], None if macs is None else 2 * macs)
    return {name: (params[name], flops[name]) for name in params}
