"""Pruning policies: which layers of a model `prune_low_magnitude` wraps, and
which model structures it accepts (tfmot's `pruning_policy`).

`PruneForLatencyOnXNNPack` prunes only the 1x1 convolutions that XNNPACK's sparse
inference can run, and checks that the model has the structure that inference
needs: a 3x3 stride-2 `Conv2D` stem on 3 input channels after a `ZeroPadding2D(1)`,
then only XNNPACK-supported layers, ending in `GlobalAveragePooling2D(keepdims=True)`
on every branch (as tfmot's policy, after Elsen et al. 2019, "Fast Sparse ConvNets").
That sparse path runs on ARM phones; XNNPACK never takes it on x86 with AVX, where
the sparse 1x1 convolutions run dense (see `tfprune.export.check`).

Example:

>>> import keras, tfprune
>>> policy = tfprune.PruneForLatencyOnXNNPack()
>>> policy.allow_pruning(keras.layers.Conv2D(8, 1)), policy.allow_pruning(keras.layers.Dense(4))
(True, False)
"""

import abc

import keras

from tfprune import _compat

__all__ = ["PruningPolicy", "PruneForLatencyOnXNNPack"]

_L = keras.layers


class PruningPolicy(abc.ABC):
    """Controls, per layer, whether `prune_low_magnitude` wraps it
    (`allow_pruning`) and checks a model before pruning
    (`ensure_model_supports_pruning`, raising ValueError). Subclass it for a policy
    of your own."""

    @abc.abstractmethod
    def allow_pruning(self, layer):
        """Whether `layer` gets a pruning wrapper."""

    @abc.abstractmethod
    def ensure_model_supports_pruning(self, model):
        """Raise ValueError if `model` cannot be pruned under this policy."""


def _producers(layer):
    out = []
    for node in _compat.inbound_nodes(layer):
        for t in node.input_tensors:
            op = _compat.producer(t)
            if op not in out:
                out.append(op)
    return out


def _unpack(layer):
    while isinstance(layer, keras.Sequential) and layer.layers:
        layer = layer.layers[0]
    return layer


def _consumers(layer):
    out = []
    for node in _compat.outbound_nodes(layer):
        op = _unpack(node.operation)
        if op not in out:
            out.append(op)
    return out


def _lookup(sources, stop, step):
    """The layers where `stop` holds, searching from `sources` along `step`;
    empty if some path ends before reaching one."""
    to_visit, seen, found = list(sources), {id(s) for s in sources}, []
    while to_visit:
        layer = to_visit.pop()
        if stop(layer):
            found.append(layer)
            continue
        following = step(layer)
        if not following:
            return []
        for nxt in following:
            if id(nxt) not in seen:
                seen.add(id(nxt))
                to_visit.append(nxt)
    return found


def _activation_name(fn):
    name = getattr(fn, "__name__", str(fn))
    return name


class PruneForLatencyOnXNNPack(PruningPolicy):
    """Prune only the 1x1 `Conv2D` layers XNNPACK's sparse inference can use.

    `ensure_model_supports_pruning` raises ValueError for subclassed or unbuilt
    models, and for models without the stem / supported body /
    `GlobalAveragePooling2D(keepdims=True)` structure described in the module doc.
    """

    def allow_pruning(self, layer):
        return (isinstance(layer, _L.Conv2D) and not isinstance(layer, _L.Conv2DTranspose)
                and tuple(layer.kernel_size) == (1, 1))

    def _is_stem(self, layer):
        if not isinstance(layer, _L.Conv2D) or not getattr(layer, "built", False):
            return False
        producers = _producers(layer)
        return (tuple(layer.kernel.shape[:3]) == (3, 3, 3) and tuple(layer.strides) == (2, 2)
                and layer.padding.lower() == "valid" and len(producers) == 1
                and isinstance(producers[0], _L.ZeroPadding2D)
                and tuple(map(tuple, producers[0].padding)) == ((1, 1), (1, 1)))

    @staticmethod
    def _is_end(layer):
        return isinstance(layer, _L.GlobalAveragePooling2D)

    def _supported(self, layer):
        """XNNPACK's sparse-subgraph rules, as tfmot mirrors them."""
        if isinstance(layer, (_L.Add, _L.Multiply, _L.ZeroPadding2D, _L.ReLU, _L.LeakyReLU,
                              _L.ELU, _L.Dropout)):
            return True
        if isinstance(layer, _L.DepthwiseConv2D):
            padding = layer.padding.lower()
            producers = _producers(layer)
            zp = producers[0] if len(producers) == 1 and isinstance(
                producers[0], _L.ZeroPadding2D) else None
            zp_pad = tuple(map(tuple, zp.padding)) if zp is not None else None
            k, s = tuple(layer.kernel_size), tuple(layer.strides)
            cases = [
                k == (3, 3) and s == (1, 1) and padding == "same",
                k == (3, 3) and s in ((1, 1), (2, 2)) and padding == "valid"
                and zp_pad == ((1, 1), (1, 1)),
                k == (5, 5) and s == (1, 1) and padding == "same",
                k == (5, 5) and s in ((1, 1), (2, 2)) and padding == "valid"
                and zp_pad == ((2, 2), (2, 2)),
            ]
            return (layer.depth_multiplier == 1 and tuple(layer.dilation_rate) == (1, 1)
                    and any(cases))
        if isinstance(layer, _L.Conv2D):
            return (layer.groups == 1 and tuple(layer.dilation_rate) == (1, 1)
                    and tuple(layer.kernel_size) == (1, 1) and tuple(layer.strides) == (1, 1))
        if isinstance(layer, _L.GlobalAveragePooling2D):
            return bool(layer.keepdims)
        if isinstance(layer, _L.BatchNormalization):
            axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
            return list(axis) in ([3], [-1])
        if isinstance(layer, _L.UpSampling2D):
            return layer.interpolation == "bilinear"
        if isinstance(layer, _L.Activation):
            return _activation_name(layer.activation) in (
                "relu", "relu6", "leaky_relu", "elu", "sigmoid")
        inner = getattr(layer, "layer", None)  # a pruning wrapper
        if inner is not None and type(layer).__name__ == "PruneLowMagnitude":
            return self._supported(inner)
        return False

    def ensure_model_supports_pruning(self, model):
        if not (isinstance(model, keras.Sequential) or getattr(model, "_is_graph_network", False)
                or type(model).__name__ == "Functional"):
            raise ValueError(
                "PruneForLatencyOnXNNPack supports Sequential and functional models only. "
                f"Received: model={type(model).__name__}")
        if not model.built:
            raise ValueError("PruneForLatencyOnXNNPack needs a built model (give it an Input).")
        inputs = [_compat.producer(t) for t in model.inputs]
        starts = _lookup(inputs, self._is_stem, _consumers)
        if not starts:
            raise ValueError(
                "PruneForLatencyOnXNNPack: no `Conv2D` 3x3 stem with strides 2x2, 3 input "
                "channels and `valid` padding after a `ZeroPadding2D(padding=1)` on every "
                "input branch of the model (XNNPACK's sparse inference starts there).")
        outputs = [_compat.producer(t) for t in model.outputs]
        ends = _lookup(outputs, self._is_end, _producers)
        if not ends:
            raise ValueError(
                "PruneForLatencyOnXNNPack: no `GlobalAveragePooling2D` on every output "
                "branch of the model (XNNPACK's sparse inference ends there).")
        end_ids = {id(e) for e in ends}

        def visit(layer):
            if id(layer) not in end_ids and not self._supported(layer):
                detail = ""
                if isinstance(layer, _L.GlobalAveragePooling2D):
                    detail = " (it needs keepdims=True)"
                raise ValueError(
                    f"Layer `{layer.name}` ({type(layer).__name__}) is not supported by the "
                    f"PruneForLatencyOnXNNPack pruning policy{detail}.")
            return id(layer) in end_ids

        _lookup([c for s in starts for c in _consumers(s)], visit, _consumers)
        for end in ends:
            if not end.keepdims:
                raise ValueError(
                    f"Layer `{end.name}` (GlobalAveragePooling2D) must have keepdims=True for "
                    "the PruneForLatencyOnXNNPack pruning policy.")

    def get_config(self):
        return {}
