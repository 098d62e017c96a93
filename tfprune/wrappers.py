"""`PruneLowMagnitude`: the Keras wrapper that holds masks and updates them in-graph.

How pruning runs inside `model.fit` (no per-batch Python callback):

- Each wrapper holds a non-trainable `pruning_step` (the number of training steps it
  has seen, so the first training step is step 1, as in tfmot) and one mask
  variable per pruned weight.
- In a training call, one wrapper per schedule (the first in model order) asks the
  schedule whether this step is an update step; if so it recomputes the masks of
  every group on that schedule (by `tfprune.masks`), writes them and zeroes the
  masked weights, all in the compiled train step (one `tf.cond` per step, not one
  per layer). Every wrapper first increments its step, then the schedule is asked.
- The masks are also installed as the weights' Keras constraints, which the
  optimizer applies right after each update. So the weights are exactly zero where
  masked after every step: a checkpoint saved at any time is as sparse as its masks
  (tfmot leaves masked weights drifting between updates, tfmot #206), and the forward
  pass needs no extra multiply.

A *group* is the set of wrappers ranked together: one wrapper in `scope="layer"`,
all wrappers in `scope="global"`, or the layers whose units are coupled (residual
adds) with `granularity="unit"`. Groups are (re)linked from the wrappers' `group`
and `unit_group` names by `tfprune.callbacks.UpdatePruningStep` at the start of
training, so a model loaded from a `.keras` file resumes exactly.
"""

import re

import keras
import numpy as np
import tensorflow as tf
from keras.src.backend.common.stateless_scope import in_stateless_scope
from keras.src.backend.common.symbolic_scope import in_symbolic_scope

from tfprune import masks as masks_lib
from tfprune import registry
from tfprune import schedules

__all__ = ["PruneLowMagnitude", "GRANULARITIES", "check_granularity"]

GRANULARITIES = ("weight", "unit")

_MISSING_CALLBACK = (
    "Layer `{name}` is being trained but its pruning step is not tracked. Pass "
    "`tfprune.callbacks.UpdatePruningStep()` to `model.fit(..., callbacks=[...])`. In a "
    "custom training loop, call `cb = tfprune.callbacks.UpdatePruningStep(); "
    "cb.set_model(model); cb.on_train_begin()` before the first step."
)


def check_granularity(granularity):
    if granularity not in GRANULARITIES:
        raise ValueError(
            f"Argument `granularity` must be one of {GRANULARITIES}. "
            f"Received: granularity={granularity!r}"
        )
    return granularity


class _MaskConstraint:
    """Variable constraint: the layer's own constraint (if any), then `* mask`
    (reshaped to `shape` when given)."""

    def __init__(self, mask, inner=None, shape=None):
        self.mask = mask
        self.inner = inner
        self.shape = shape

    def __call__(self, w):
        if self.inner is not None:
            w = self.inner(w)
        mask = self.mask if self.shape is None else keras.ops.reshape(self.mask, self.shape)
        return w * keras.ops.cast(mask, w.dtype)


class _Drives:
    """The groups whose masks a wrapper updates (untracked): one wrapper per
    schedule drives every group on that schedule, so a step costs one `tf.cond`."""

    def __init__(self, links=()):
        self.links = list(links)


class _Followers:
    """BatchNormalization layers normalizing a unit-pruned layer's units (untracked)."""

    def __init__(self, layers=()):
        self.layers = list(layers)


def _follower_variables(bn):
    return [v for v in (getattr(bn, "gamma", None), getattr(bn, "beta", None)) if v is not None]


class _Link:
    """The pruning group a wrapper belongs to (not tracked by Keras)."""

    def __init__(self, members, unit_sets):
        self.members = members  # wrappers, leader first
        self.unit_sets = unit_sets  # lists of wrappers sharing one unit mask

    @property
    def leader(self):
        return self.members[0]


class _Target:
    """A pruned weight: the variable, its mask variable, and (units) its unit shape."""

    def __init__(self, path, variable, mask, unit_shape=None):
        self.path = path
        self.variable = variable
        self.mask = mask
        self.unit_shape = unit_shape


@keras.saving.register_keras_serializable("tfprune")
class PruneLowMagnitude(keras.layers.Wrapper):
    """Wraps a prunable layer; masks its weights on a schedule during training.

    Usually created by `tfprune.prune_low_magnitude`. Arguments are those of
    `prune_low_magnitude`, plus `group` / `unit_group` (names of the pruning group
    and of the coupled-unit set) and `followers` (names of BatchNormalization layers
    that normalize this layer's units: with `granularity="unit"` their gamma and
    beta are masked with the units, so a pruned unit outputs exactly 0 after them
    and `tfprune.shrink` can remove it), all set by `prune_low_magnitude`.

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
        **kwargs,
    ):
        if isinstance(layer, PruneLowMagnitude):
            raise ValueError(
                f"Layer `{layer.name}` is already wrapped for pruning. Received: "
                f"layer={layer!r}"
            )
        spec = registry.get_spec(layer) if isinstance(layer, keras.layers.Layer) else None
        if spec is None:
            raise ValueError(
                "Argument `layer` must be a prunable Keras layer (Dense, EinsumDense, "
                "Conv*, SeparableConv*, DepthwiseConv*, Embedding, SimpleRNN/LSTM/GRU, "
                "MultiHeadAttention, or a `tfprune.PrunableLayer`). "
                f"Received: layer={layer!r}"
            )
        check_granularity(granularity)
        if granularity == "unit" and spec.unit_kernel is None:
            raise ValueError(
                f"Layer `{layer.name}` ({type(layer).__name__}) has no output units to "
                "prune; use granularity='weight'. Received: granularity='unit'"
            )
        kwargs.setdefault("name", f"prune_low_magnitude_{layer.name}")
        super().__init__(layer, **kwargs)
        if pruning_schedule is None:
            pruning_schedule = schedules.ConstantSparsity(0.5, begin_step=0)
        elif isinstance(pruning_schedule, dict):
            pruning_schedule = keras.saving.deserialize_keras_object(pruning_schedule)
        if not isinstance(pruning_schedule, schedules.PruningSchedule):
            raise ValueError(
                "Argument `pruning_schedule` must be a `tfprune.PruningSchedule` "
                f"(ConstantSparsity, PolynomialDecay). Received: "
                f"pruning_schedule={pruning_schedule!r}"
            )
        self.pruning_schedule = pruning_schedule
        self.granularity = granularity
        self.scope = masks_lib.check_scope(scope)
        self.round_to = masks_lib.check_round_to(round_to)
        self.group = group
        self.unit_group = unit_group
        self.followers = list(followers or [])
        self._followers = _Followers()
        self._spec = spec
        self._link = None
        self._drives = _Drives()
        self._step_tracked = False
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
        self._targets = []
        if self.granularity == "weight":
            found = [(p, v, None) for p, v in self._spec.weight_targets(self.layer)]
        else:
            _, _, found = self._spec.unit_targets(self.layer)
        if not found:
            raise ValueError(
                f"Layer `{self.layer.name}` has no weights to prune after build."
            )
        for path, variable, unit_shape in found:
            mask = self.add_weight(
                name=re.sub(r"[^A-Za-z0-9_]", "_", path).strip("_") + "_mask",
                shape=tuple(variable.shape) if unit_shape is None else unit_shape,
                initializer="ones",
                dtype=variable.dtype,
                trainable=False,
            )
            self._targets.append(_Target(path, variable, mask, unit_shape))
            variable.constraint = _MaskConstraint(mask, variable.constraint)
        self.pruning_step = self.add_weight(
            name="pruning_step", shape=(), dtype="int64", initializer="zeros",
            trainable=False,
        )
        self.last_update_step = self.add_weight(
            name="last_update_step", shape=(), dtype="int64",
            initializer=keras.initializers.Constant(-1), trainable=False,
        )
        self.threshold = self.add_weight(
            name="threshold", shape=(), dtype="float32", initializer="zeros",
            trainable=False,
        )
        self.built = True

    @property
    def targets(self):
        """The pruned weights, as `_Target(path, variable, mask, unit_shape)`."""
        return list(self._targets)

    def masked_values(self):
        """`[(variable, numpy value)]` for every weight of the inner layer; pruned
        weights are multiplied by their masks (what `strip_pruning` keeps)."""
        masks = {id(t.variable): t.mask.numpy() for t in self._targets}
        out = []
        for v in self.layer.weights:
            value = keras.ops.convert_to_numpy(v)
            if id(v) in masks:
                value = value * masks[id(v)]
            out.append((v, value))
        return out

    # ------------------------------------------------------------------ call

    def call(self, inputs, *args, training=None, **kwargs):
        if training and not (in_symbolic_scope() or in_stateless_scope()):
            if not self._step_tracked:
                raise RuntimeError(_MISSING_CALLBACK.format(name=self.name))
            # Like tfmot, count first: the first training step is step 1.
            self.pruning_step.assign_add(1)
            if self._drives.links:
                self._maybe_update_masks()
        return self.layer(inputs, *args, training=training, **kwargs)

    def compute_mask(self, inputs, mask=None):
        return self.layer.compute_mask(inputs, mask)

    # ------------------------------------------------------------------ masks

    def _maybe_update_masks(self):
        """One `tf.cond` per step: on update steps, every driven group's masks."""
        step = self.pruning_step
        schedule = self.pruning_schedule
        should = schedules.should_update(
            step, schedule.begin_step, schedule.end_step, schedule.frequency
        )

        def update():
            sparsity = schedule.sparsity(step)
            for link in self._drives.links:
                link.leader._update_group_masks(sparsity, step)
            return tf.constant(True)

        tf.cond(should, update, lambda: tf.constant(False))

    def _update_group_masks(self, sparsity, step):
        link = self._link
        unbuilt = [w.name for w in link.members if not w.built]
        if unbuilt:
            raise RuntimeError(
                f"Layers {unbuilt} of pruning group {self.group!r} are not built when "
                f"`{self.name}` updates the group's masks. Call the model once on a "
                "batch before training so every layer is built."
            )
        if self.granularity == "weight":
            targets = [t for w in link.members for t in w._targets]
            scores = [masks_lib.weight_scores(t.variable) for t in targets]
            keeps = masks_lib.select(scores, sparsity, self.scope, min_keep=1)
            for t, keep in zip(targets, keeps):
                self._write_mask(t, tf.reshape(keep, t.variable.shape))
            owners = [w for w in link.members for _ in w._targets]
            self._record(owners, scores, keeps, step)
            return
        normalize = self.scope == "global"
        set_scores = []
        for unit_set in link.unit_sets:
            total, fan_in = None, 0
            for w in unit_set:
                kernel = w._targets[0]
                s = masks_lib.unit_scores(kernel.variable, kernel.unit_shape)
                total = s if total is None else total + s
                fan_in += int(np.prod(kernel.variable.shape)) // int(np.prod(kernel.unit_shape))
            set_scores.append(total / float(fan_in) if normalize else total)
        keeps = masks_lib.select(
            set_scores, sparsity, self.scope, round_to=self.round_to, min_keep=1
        )
        for unit_set, keep in zip(link.unit_sets, keeps):
            for w in unit_set:
                for t in w._targets:
                    self._write_mask(t, tf.reshape(keep, t.unit_shape))
                for bn in w._followers.layers:
                    for v in _follower_variables(bn):
                        v.assign(v * tf.cast(tf.reshape(keep, [-1]), v.dtype))
        owners = [us[0] for us in link.unit_sets]
        self._record(owners, set_scores, keeps, step, per_set=link.unit_sets)

    @staticmethod
    def _write_mask(target, keep):
        m = tf.cast(keep, target.mask.dtype)
        target.mask.assign(m)
        target.variable.assign(target.variable * m)

    @staticmethod
    def _record(owners, scores, keeps, step, per_set=None):
        """Store each wrapper's threshold (its smallest kept score) and update step."""
        sets = per_set or [[o] for o in owners]
        smallest = {}
        for members, s, keep in zip(sets, scores, keeps):
            s = tf.reshape(tf.cast(s, tf.float32), [-1])
            kept = tf.where(tf.reshape(keep, [-1]), s, tf.constant(np.inf, tf.float32))
            t = tf.reduce_min(kept)
            for w in members:
                smallest[w] = t if w not in smallest else tf.minimum(smallest[w], t)
        for w, t in smallest.items():
            w.threshold.assign(t)
            w.last_update_step.assign(tf.cast(step, tf.int64))

    # ------------------------------------------------------------------ config

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "pruning_schedule": keras.saving.serialize_keras_object(
                    self.pruning_schedule
                ),
                "granularity": self.granularity,
                "scope": self.scope,
                "round_to": self.round_to,
                "group": self.group,
                "unit_group": self.unit_group,
                "followers": list(self.followers),
            }
        )
        return config


def link_groups(wrappers, model=None):
    """Link wrappers into pruning groups from their `group` / `unit_group` names.

    `wrappers` is in model order; the first wrapper of each group leads it (it
    updates the whole group's masks). Wrappers without a group rank alone.
    With `model`, unit-pruned wrappers' `followers` are resolved to its layers and
    their gamma/beta masked. Returns the list of groups (`_Link` objects).
    """
    for w in wrappers:
        if not w.built and w.layer.built:
            w.build()  # masks need only the inner layer's variables
    if model is not None:
        _link_followers(wrappers, model)
    links = []
    for members in _grouped(wrappers, "group"):
        link = _Link(members, _grouped(members, "unit_group"))
        _check_group(link)
        for w in members:
            w._link = link
            w._drives = _Drives()
        links.append(link)
    by_schedule = {}
    for link in links:
        if all(w.built for w in link.members):
            by_schedule.setdefault(link.leader.pruning_schedule, []).append(link)
        else:  # built lazily in the first step: each leader drives its own group
            link.leader._drives = _Drives([link])
    for driven in by_schedule.values():
        driven[0].leader._drives = _Drives(driven)
    return links


def _grouped(wrappers, attr):
    """Wrappers grouped by the name in `attr` (None: alone), in first-seen order."""
    groups = {}
    for w in wrappers:
        name = getattr(w, attr)
        groups.setdefault(("named", name) if name is not None else ("alone", id(w)), []).append(w)
    return list(groups.values())


def _link_followers(wrappers, model):
    wanted = {name for w in wrappers if w.granularity == "unit" for name in w.followers}
    if not wanted:
        return
    by_name = {
        layer.name: layer
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if layer.name in wanted
    }
    for w in wrappers:
        if w.granularity != "unit" or not w.built:
            continue
        w._followers.layers = [by_name[n] for n in w.followers if n in by_name]
        mask = w._targets[0].mask
        for bn in w._followers.layers:
            for v in _follower_variables(bn):
                c = v.constraint
                if isinstance(c, _MaskConstraint) and c.mask is mask:
                    continue
                v.constraint = _MaskConstraint(mask, c, shape=(-1,))


def _check_group(link):
    leader = link.leader
    for w in link.members[1:]:
        for attr in ("granularity", "scope", "round_to", "pruning_schedule"):
            if getattr(w, attr) != getattr(leader, attr):
                raise ValueError(
                    f"Layers `{leader.name}` and `{w.name}` are in pruning group "
                    f"{leader.group!r} but differ in `{attr}`: "
                    f"{getattr(leader, attr)!r} vs {getattr(w, attr)!r}"
                )
    if leader.granularity != "unit":
        return
    for unit_set in link.unit_sets:
        sizes = {int(np.prod(w._targets[0].unit_shape)) for w in unit_set if w.built}
        if len(sizes) > 1:
            raise ValueError(
                f"Coupled layers {[w.name for w in unit_set]} have different unit "
                f"counts {sorted(sizes)}; they cannot share one unit mask."
            )


def collect_wrappers(model):
    """Every `PruneLowMagnitude` in `model` (nested models included), in order."""
    if isinstance(model, PruneLowMagnitude):
        return [model]
    return [
        layer
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if isinstance(layer, PruneLowMagnitude)
    ]
