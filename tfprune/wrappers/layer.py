"""`PruneLowMagnitude`: the layer wrapper that holds a layer's masks."""

import re

import keras
import numpy as np
from keras import ops

from tfprune import _compat
from tfprune import masks as masks_lib
from tfprune.masks import ops_kernel
from tfprune.masks.ops_kernel import torch_eager
from tfprune import registry
from tfprune import schedules
from tfprune.wrappers.state import PruneState

__all__ = ["PruneLowMagnitude", "GRANULARITIES", "check_granularity", "MISSING_CALLBACK",
           "apply_mask", "torch_eager"]

GRANULARITIES = ("weight", "unit")

MISSING_CALLBACK = (
    "Layer `{name}` is being trained but its pruning step is not tracked. Pass "
    "`tfprune.callbacks.UpdatePruningStep()` to `model.fit(..., callbacks=[...])`. In a "
    "custom training loop, call `cb = tfprune.callbacks.UpdatePruningStep(); "
    "cb.set_model(model); cb.on_train_begin()` before the first step."
)


def check_granularity(granularity):
    if not isinstance(granularity, str):
        raise TypeError(
            f"Argument `granularity` must be one of {GRANULARITIES}. "
            f"Received: granularity={granularity!r}"
        )
    if granularity not in GRANULARITIES:
        raise ValueError(
            f"Argument `granularity` must be one of {GRANULARITIES}. "
            f"Received: granularity={granularity!r}"
        )
    return granularity


class MaskConstraint:
    """A pruned variable's constraint: the layer's own constraint (if any), then
    the mask (reshaped to `shape` when given): masked entries become exactly 0.
    The optimizer applies it right after every update. The variable that drives
    its schedule (`drive`) also counts the step and, on update steps, recomputes
    the masks first."""

    def __init__(self, owner, mask, inner=None, shape=None):
        self.owner = owner
        self.mask = mask
        self.inner = inner
        self.shape = shape
        self.drive = None
        self._widened = None  # eager torch: the mask widened for the kernel (built on use)

    def _mask(self):
        return self.mask if self.shape is None else ops.reshape(self.mask, self.shape)

    def __call__(self, w):
        if not self.owner._step_tracked:
            raise RuntimeError(MISSING_CALLBACK.format(name=self.owner.name))
        if self.inner is not None:
            w = self.inner(w)
        if self._widened is None and self.shape is None and torch_eager():
            self._widened = ops_kernel.WidenedMask()
        masked = apply_mask(w, self._mask(), in_place=True, widened=self._widened)
        if self.drive is not None:
            self.drive(self, masked)
            masked = apply_mask(masked, self._mask(), in_place=True,  # a new mask
                                widened=self._widened)
        return masked


def apply_mask(w, mask, in_place=False, widened=None):
    """`w` where the bool `mask` (broadcast to it) holds, +0.0 elsewhere (NaN
    included).

    Compiled backends fuse it into the optimizer's update. On torch it selects by
    the bit patterns (`masks.ops_kernel.where_kept`), and `in_place` (the
    constraint's, eagerly: `ops_kernel.torch_mask_`) writes into the variable's
    own tensor (or the temporary an inner constraint returned): the optimizer's
    `assign` of it to itself copies nothing. (torch still widens the mask's
    bytes to the kernel's integer width in a temporary of the kernel's size, unless
    the constraint's `widened` (an `ops_kernel.WidenedMask`) keeps the widened
    mask.) On TensorFlow `in_place` (the constraint's, no gradient through it) also
    selects by bit patterns, in graphs and under XLA: same bits as `where`."""
    if in_place and torch_eager():
        value = w.value if isinstance(w, keras.Variable) else w
        keep = mask.value if isinstance(mask, keras.Variable) else mask
        return (widened or ops_kernel.torch_mask_)(value, keep)
    return ops_kernel.where_kept(mask, w, untracked=in_place)


class _Followers:
    """BatchNormalization layers normalizing a unit-pruned layer's units (held
    outside Keras's layer tracking)."""

    def __init__(self):
        self.layers = []


class Target:
    """A pruned weight: its attribute path, variable, mask and granularity."""

    def __init__(self, path, variable, mask, granularity):
        self.path = path
        self.variable = variable
        self.mask = mask
        self.granularity = granularity

    @property
    def unit_shape(self):
        return getattr(self.granularity, "unit_shape", None)


def _granularity_of(wrapper, variable, unit_shape):
    if unit_shape is not None:
        return masks_lib.Unit(unit_shape)
    if wrapper.sparsity_m_by_n is not None:
        return masks_lib.MByN(*wrapper.sparsity_m_by_n)
    if tuple(wrapper.block_size) != (1, 1):
        return masks_lib.Block(wrapper.block_size, wrapper.block_pooling_type)
    return masks_lib.Weight()


@keras.saving.register_keras_serializable("tfprune")
class PruneLowMagnitude(keras.layers.Wrapper):
    """Wraps a prunable layer; masks its weights on a schedule during training.

    Usually created by `tfprune.prune_low_magnitude`. Arguments are those of
    `prune_low_magnitude`, plus `group` / `unit_group` (names of the pruning group
    and of the coupled-unit set) and `followers` (names of BatchNormalization layers
    that normalize this layer's units: with `granularity="unit"` their gamma and
    beta are masked with the units, so a pruned unit outputs exactly 0 after them
    and `tfprune.shrink` can remove it), all set by `prune_low_magnitude`. Other
    keyword arguments (`name`, `input_shape`, ...) go to `keras.layers.Layer`.

    Example:

    >>> import keras, numpy as np, tfprune
    >>> layer = tfprune.PruneLowMagnitude(
    ...     keras.layers.Dense(4), tfprune.ConstantSparsity(0.5, begin_step=0, frequency=1))
    >>> model = keras.Sequential([keras.Input((3,)), layer])
    >>> model.compile("sgd", "mse")
    >>> _ = model.fit(np.ones((8, 3)), np.ones((8, 4)), verbose=0,
    ...               callbacks=[tfprune.callbacks.UpdatePruningStep()])
    >>> int((layer.layer.kernel.numpy() == 0).sum())
    6
    """

    def __init__(
        self,
        layer,
        pruning_schedule=None,
        granularity="weight",
        scope="layer",
        round_to=1,
        group=None,
        unit_group=None,
        followers=None,
        block_size=(1, 1),
        block_pooling_type="AVG",
        sparsity_m_by_n=None,
        **kwargs,
    ):
        if isinstance(layer, PruneLowMagnitude):
            raise ValueError(
                f"Layer `{layer.name}` is already wrapped for pruning; strip it first "
                f"(`tfprune.strip_pruning`). Received: layer={layer!r}"
            )
        if not isinstance(layer, keras.layers.Layer):
            raise TypeError(f"Argument `layer` must be a Keras layer. Received: layer={layer!r}")
        spec = registry.get_spec(layer)
        if spec is None:
            raise ValueError(
                "Argument `layer` must be a prunable Keras layer (Dense, EinsumDense, "
                "Conv*, SeparableConv*, DepthwiseConv*, Embedding, SimpleRNN/LSTM/GRU/RNN, "
                "MultiHeadAttention, or a `tfprune.PrunableLayer`). "
                f"Received: layer={layer!r}"
            )
        check_granularity(granularity)
        if granularity == "unit" and spec.unit_kernel is None:
            raise ValueError(
                f"Layer `{layer.name}` ({type(layer).__name__}) has no output units to "
                "prune; use granularity='weight'. Received: granularity='unit'"
            )
        if _compat.input_shape_arg(layer) is not None:
            kwargs.setdefault("input_shape", _compat.input_shape_arg(layer))
        kwargs.setdefault("name", f"prune_low_magnitude_{layer.name}")
        super().__init__(layer, **kwargs)
        if pruning_schedule is None:
            pruning_schedule = schedules.ConstantSparsity(0.5, begin_step=0)
        elif isinstance(pruning_schedule, dict):
            pruning_schedule = schedules.deserialize(pruning_schedule)
        self.pruning_schedule = schedules.check_schedule(pruning_schedule)
        self.granularity = granularity
        self.scope = masks_lib.check_scope(scope)
        self.round_to = masks_lib.check_round_to(round_to)
        self.block_size = tuple(block_size)
        self.block_pooling_type = block_pooling_type
        self.sparsity_m_by_n = None if sparsity_m_by_n is None else tuple(sparsity_m_by_n)
        if tuple(self.block_size) != (1, 1):
            masks_lib.Block(self.block_size, block_pooling_type)  # validates
        if self.sparsity_m_by_n is not None:
            masks_lib.MByN(*self.sparsity_m_by_n)
        self.group = group
        self.unit_group = unit_group
        self.followers = list(followers or [])
        self._followers = _Followers()
        self._spec = spec
        self._link = None
        self._step_tracked = False
        self._state = None
        self._targets = []
        self.supports_masking = getattr(layer, "supports_masking", False)

    # ------------------------------------------------------------------ state

    def __call__(self, *args, **kwargs):
        if not self.layer.built:
            # Let the inner layer build itself from all its call arguments (a
            # MultiHeadAttention needs query and value shapes, not just the first).
            inner_kwargs = {k: v for k, v in kwargs.items() if k != "training"}
            self.layer(*args, **inner_kwargs)
        return super().__call__(*args, **kwargs)

    def build(self, input_shape=None):
        super().build(input_shape)
        if self.granularity == "weight":
            found = [(p, v, None) for p, v in self._spec.weight_targets(self.layer)]
        else:
            _, _, found = self._spec.unit_targets(self.layer)
        if not found:
            raise ValueError(f"Layer `{self.layer.name}` has no weights to prune after build.")
        granularities = [_granularity_of(self, v, u) for _, v, u in found]
        for (path, variable, _), g in zip(found, granularities):
            g.check(tuple(variable.shape), f"{self.layer.name}.{path}")
        specs = [
            (re.sub(r"[^A-Za-z0-9_]", "_", path).strip("_") + "_mask",
             g.mask_shape(tuple(variable.shape)))
            for (path, variable, _), g in zip(found, granularities)
        ]
        self._state = PruneState(specs)
        self._targets = []
        for (path, variable, _), g, mask in zip(found, granularities, self._state.masks):
            self._targets.append(Target(path, variable, mask, g))
            variable.constraint = MaskConstraint(self, mask, variable.constraint)
        self.built = True

    @property
    def targets(self):
        """The pruned weights (`Target`: path, variable, mask, granularity)."""
        return list(self._targets)

    @property
    def pruning_step(self):
        return self._state.pruning_step

    @property
    def last_update_step(self):
        return self._state.last_update_step

    @property
    def threshold(self):
        return self._state.threshold

    @property
    def pruning_variables(self):
        """Every state variable (masks, steps, threshold), in saving order."""
        return [] if self._state is None else self._state.variables

    def save_own_variables(self, store):
        for i, v in enumerate(self.pruning_variables):
            store[str(i)] = ops.convert_to_numpy(v)

    def load_own_variables(self, store):
        variables = self.pruning_variables
        if not variables:
            return
        if not self._state.required <= len(store.keys()) <= len(variables):
            raise ValueError(
                f"Layer `{self.name}` expected {self._state.required} to {len(variables)} "
                f"pruning variables (masks, step, last update step, threshold) but the "
                f"saved layer has {len(store.keys())}."
            )
        masks = len(self._state.masks)
        for i, v in enumerate(variables[: len(store.keys())]):
            value = np.asarray(store[str(i)])
            v.assign(value != 0 if i < masks else value)  # older files: float masks

    def masked_values(self):
        """`[(variable, numpy value)]` for every weight of the inner layer; pruned
        weights are multiplied by their masks (what `strip_pruning` keeps)."""
        masks = {}
        for t in self._targets:
            m = ops.convert_to_numpy(t.mask)
            masks[id(t.variable)] = m
        out = []
        for v in self.layer.weights:
            value = ops.convert_to_numpy(v)
            if id(v) in masks:
                value = np.where(masks[id(v)], value, np.zeros((), value.dtype))
            out.append((v, value))
        return out

    # ------------------------------------------------------------------ call

    def call(self, *args, **kwargs):
        # No pruning work here: masks are applied and updated in the optimizer step.
        # Eager torch runs the Python of every call: a plain inner layer of the
        # wrapper's dtype policy skips its own `__call__` (70 us, 1.5% of a seed
        # MLP step), unless its input carries a Keras mask.
        if (len(args) == 1 and set(kwargs) <= {"training"} and self._direct_call()
                and _compat.keras_mask(args[0]) is None):
            return _compat.direct_call(self.layer, args[0], kwargs.get("training"))
        return self.layer(*args, **kwargs)

    def _direct_call(self):
        return (torch_eager() and _compat.plain_call_layer(self.layer)
                and self.layer.dtype_policy.name == self.dtype_policy.name
                and self.layer.autocast == self.autocast)

    def compute_mask(self, inputs, mask=None):
        return self.layer.compute_mask(inputs, mask)

    # ------------------------------------------------------------------ config

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "pruning_schedule": keras.saving.serialize_keras_object(self.pruning_schedule),
                "granularity": self.granularity,
                "scope": self.scope,
                "round_to": self.round_to,
                "group": self.group,
                "unit_group": self.unit_group,
                "followers": list(self.followers),
                "block_size": list(self.block_size),
                "block_pooling_type": self.block_pooling_type,
                "sparsity_m_by_n": None if self.sparsity_m_by_n is None
                else list(self.sparsity_m_by_n),
            }
        )
        return config
