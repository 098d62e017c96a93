"""One-shot masking of a trained Keras model, in place and reversible.

`apply_masks(model, sparsity, ...)` zeroes the weights (or units) that pruning at
`sparsity` would remove, directly in the model's variables, without wrappers or
training; `restore()` (or leaving the `with` block) puts the dense values back.
This is the seed article's method (prune the trained weights, evaluate) and the
building block of `tfprune.sweep`: a `OneShot` saves the dense values once, and
each level is masked from them, so levels are independent, the model is never
cloned or re-traced, and a compiled `evaluate` keeps its traced function.

The ranking is `tfprune.masks` (`select_np`, `weight_scores_np`,
`unit_scores_np`), the one used in training and in files, on the layers and
weights `tfprune.registry` lists:

- `granularity="weight"`: every pruned weight tensor (`spec.weight_targets`)
  keeps `k = max(round(n · (1 − s)), 1)` of its `n` weights, by `|w|`
  (`scope="layer"`), or all pruned tensors are ranked together (`"global"`).
- `granularity="unit"`: output units (Dense columns, conv filters) ranked by the
  sum of squares of their incoming weights, `||w_u||²`; a pruned unit loses its
  kernel column, its bias entry and the gamma/beta of a BatchNormalization over
  it, so it outputs exactly 0 and `tfprune.shrink` removes it. Units coupled by a
  residual `Add` (or a `Multiply`, a depthwise conv, ...;
  `tfprune.graph.unit_groups`) are one group: one score per unit, the sum of the
  members' scores, one mask for all members, as in training. Global scope
  compares units by `||w_u||² / fan_in` (summed over a group's members). Output
  layers and layers `unit_groups` excludes keep their units.
- `method="random"`: the same counts, granularity and scope, but every item gets a
  random score (`numpy.random.default_rng(seed).random`, float64, drawn once per
  seed, so a level's random mask contains the next level's): the baseline
  magnitude ranking has to beat (Blalock et al. 2020).
- `skip_output_layer=True` (weight granularity): the prunable layers that produce
  a model output (possibly through weightless layers) are not pruned, as in the
  seed script. Units of output layers are never pruned.

Example:

>>> import keras, tfprune
>>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(6),
...                           keras.layers.Dense(2)])
>>> with tfprune.oneshot.apply_masks(model, 0.5) as pruned:
...     print(pruned.measured_sparsity(), int((model.layers[0].kernel.numpy() == 0).sum()))
0.5 24
>>> int((model.layers[0].kernel.numpy() == 0).sum())      # dense again
0
"""

import dataclasses

import keras
import numpy as np

from tfprune import graph, masks, registry

__all__ = ["apply_masks", "OneShot", "MaskGroup", "MaskTarget", "output_layers",
           "GRANULARITIES", "METHODS", "SCOPES"]

GRANULARITIES = ("weight", "unit")
METHODS = ("magnitude", "random")
SCOPES = ("layer", "global")


def check_choice(name, value, choices):
    """`value` if it is one of `choices`, else a Keras-style error (TypeError for a
    non-string, ValueError for another string)."""
    if not isinstance(value, str) or value not in choices:
        error = ValueError if isinstance(value, str) else TypeError
        raise error(f"Argument `{name}` must be one of {choices}. Received: {name}={value!r}")
    return value


def check_sparsity(sparsity, name="sparsity"):
    """`sparsity` as a float in [0, 1) (TypeError for a non-number)."""
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float, np.integer, np.floating)):
        raise TypeError(f"Argument `{name}` must be a number in [0, 1). Received: {name}={sparsity!r}")
    if not 0.0 <= float(sparsity) < 1.0:
        raise ValueError(f"Argument `{name}` must be in [0, 1). Received: {name}={sparsity}")
    return float(sparsity)


def check_int(value, name, minimum):
    """`int(value)`: TypeError for a non-integer (bool included), ValueError below
    `minimum`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"Argument `{name}` must be an integer >= {minimum}. Received: {name}={value!r}")
    if value < minimum:
        raise ValueError(f"Argument `{name}` must be an integer >= {minimum}. Received: {name}={value!r}")
    return int(value)


def check_round_to(round_to):
    return check_int(round_to, "round_to", 1)


def check_seed(seed):
    return check_int(seed, "seed", 0)


@dataclasses.dataclass(eq=False)
class MaskTarget:
    """One masked variable: `layer` name, attribute `path`, the `variable`, its
    `dense` values (saved at construction) and, for units, the broadcast shape of a
    unit mask against it (`unit_shape`, aligned to its last axes; None by weight)."""

    layer: str
    path: str
    variable: object
    dense: np.ndarray
    unit_shape: tuple = None

    def masked(self, keep):
        """The dense values with `keep` (flat bool, one per item) applied."""
        shape = self.dense.shape if self.unit_shape is None else self.unit_shape
        return self.dense * keep.reshape(shape).astype(self.dense.dtype)


@dataclasses.dataclass(eq=False)
class MaskGroup:
    """Items ranked as one score vector and masked by one keep vector.

    name: `"dense_1/kernel"` (a weight tensor) or `"a+b"` (a unit group's layers).
    layers: names of the layers the group prunes.
    scored: `(target, fan_in)` pairs whose dense values give the scores.
    targets: every variable the keep vector masks (for units: kernels, biases,
        BatchNormalization gamma/beta).
    size: number of items (weights or units).
    """

    name: str
    layers: tuple
    scored: list
    targets: list
    size: int


class OneShot:
    """Masks a model in place from its saved dense values; `restore()` undoes it.

    Args:
        model: a built Keras model (Sequential, functional, nested; subclassed
            models work for `granularity="weight"`). It is changed in place by
            `apply` and put back by `restore`.
        granularity: "weight" or "unit" (see the module doc).
        scope: "layer" (each tensor / unit group ranked on its own) or "global".
        skip_output_layer: keep the layers producing a model output unpruned
            (weight granularity; output units are always kept).
        layers: None (every prunable layer) or names of the layers to prune; with
            units, a name selects its whole coupled group.
        round_to: with units, kept counts are rounded up to a multiple of this.

    Example:

    ```python
    masker = tfprune.oneshot.OneShot(model, granularity="unit")
    for s in (0.5, 0.9):
        masker.apply(s)                   # from the dense values, every time
        print(s, model.evaluate(x, y, verbose=0))
    masker.restore()
    ```
    """

    def __init__(self, model, granularity="weight", scope="layer", skip_output_layer=True,
                 layers=None, round_to=1):
        self.applied = None  # (sparsity, method, seed) currently applied
        if not isinstance(model, keras.Model):
            raise TypeError(f"Argument `model` must be a Keras model. Received: model={model!r}")
        if not model.built:
            raise ValueError(f"Model '{model.name}' is not built: call it on a batch or "
                             "give it an `Input` first.")
        self.model = model
        self.granularity = check_choice("granularity", granularity, GRANULARITIES)
        self.scope = check_choice("scope", scope, SCOPES)
        self.round_to = check_round_to(round_to)
        self.skip_output_layer = bool(skip_output_layer)
        self.excluded = {}
        if self.granularity == "weight":
            groups = _weight_groups(model, self.skip_output_layer)
        else:
            groups, self.excluded = _unit_groups(model)
        self.groups = _select_layers(groups, layers)
        if not self.groups:
            raise ValueError(
                f"Nothing to prune in model '{model.name}' with granularity="
                f"{granularity!r}, skip_output_layer={skip_output_layer}, layers={layers!r}"
                + (f" (kept: {self.excluded})" if self.excluded else "")
            )
        self.targets = [t for g in self.groups for t in g.targets]
        self._scores = {}

    # ------------------------------------------------------------------ masks

    def scores(self, method="magnitude", seed=0):
        """One flat score vector per group (cached; random scores drawn once per seed)."""
        check_choice("method", method, METHODS)
        key = (method, None if method == "magnitude" else check_seed(seed))
        if key not in self._scores:
            if method == "magnitude":
                self._scores[key] = [self._magnitude(g) for g in self.groups]
            else:
                rng = np.random.default_rng(key[1])
                self._scores[key] = [rng.random(g.size) for g in self.groups]
        return self._scores[key]

    def _magnitude(self, group):
        if self.granularity == "weight":
            return masks.weight_scores_np(group.scored[0][0].dense).reshape(-1)
        total = sum(masks.unit_scores_np(t.dense, t.unit_shape) for t, _ in group.scored)
        if self.scope == "global":
            total = total / float(sum(fan_in for _, fan_in in group.scored))
        return total

    def keep_masks(self, sparsity, method="magnitude", seed=0):
        """Flat bool keep vectors, one per group (`tfprune.masks.select_np`)."""
        sparsity = check_sparsity(sparsity)
        round_to = self.round_to if self.granularity == "unit" else 1
        return masks.select_np(self.scores(method, seed), sparsity, self.scope,
                               round_to=round_to, min_keep=1)

    # ------------------------------------------------------------------ in place

    def apply(self, sparsity, method="magnitude", seed=0):
        """Mask the model in place at `sparsity` (from the dense values); returns self."""
        keeps = self.keep_masks(sparsity, method, seed)
        for group, keep in zip(self.groups, keeps):
            for t in group.targets:
                t.variable.assign(t.masked(keep))
        self.applied = (float(sparsity), method, seed)
        return self

    def restore(self):
        """Put every masked variable back to its dense value."""
        for t in self.targets:
            t.variable.assign(t.dense)
        self.applied = None

    def measured_sparsity(self):
        """Zeros / size of the ranked weights (the pruned kernels: biases and
        BatchNormalization parameters are left out), counted from their current
        values."""
        ranked = [t for g in self.groups for t, _ in g.scored]
        total = sum(t.dense.size for t in ranked)
        zeros = sum(t.dense.size - int(np.count_nonzero(keras.ops.convert_to_numpy(t.variable)))
                    for t in ranked)
        return zeros / total if total else 0.0

    @property
    def layer_names(self):
        return [name for g in self.groups for name in g.layers]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.restore()
        return False

    def __repr__(self):
        return (f"OneShot(model={self.model.name!r}, granularity={self.granularity!r}, "
                f"scope={self.scope!r}, groups={len(getattr(self, 'groups', ()))}, "
                f"applied={self.applied})")


def apply_masks(model, sparsity, granularity="weight", scope="layer", method="magnitude",
                seed=0, skip_output_layer=True, layers=None, round_to=1):
    """Mask `model` in place at `sparsity`; returns the `OneShot` (a context manager
    that restores the dense values on exit).

    Example:

    ```python
    with tfprune.oneshot.apply_masks(model, 0.9, granularity="unit") as pruned:
        small = tfprune.shrink(model)       # the dead units removed for real
    ```
    """
    return OneShot(model, granularity, scope, skip_output_layer, layers, round_to).apply(
        sparsity, method, seed)


# --------------------------------------------------------------------------- which tensors


def _numpy(variable):
    return np.array(keras.ops.convert_to_numpy(variable))


def output_layers(model):
    """Names of the prunable layers that produce a model output, possibly through
    layers that are not prunable (Activation, Dropout, BatchNormalization...).

    For a subclassed model (no graph), the last prunable layer.
    """
    prunable = [l for l in graph.leaf_layers(model) if registry.get_spec(l) is not None]
    if graph.functional_of(model) is None:
        return {prunable[-1].name} if prunable else set()
    g = graph.trace(model)
    producer = {id(t): step for step in g.steps for t in step.node.outputs}
    names, seen = set(), set()
    stack = [c.tensor for c in g.outputs]
    while stack:
        t = stack.pop()
        t = g.tensors[id(t)].tensor if id(t) in g.tensors else t
        if id(t) in seen:
            continue
        seen.add(id(t))
        step = producer.get(id(t))
        if step is None:
            continue
        if registry.get_spec(step.layer) is not None:
            names.add(step.layer.name)
        else:
            stack.extend(step.node.input_tensors)
    return names


def _weight_groups(model, skip_output_layer):
    skip = output_layers(model) if skip_output_layer else set()
    groups = []
    for layer in graph.leaf_layers(model):
        spec = registry.get_spec(layer)
        if spec is None or layer.name in skip:
            continue
        for path, v in spec.weight_targets(layer):
            t = MaskTarget(layer.name, path, v, _numpy(v))
            groups.append(MaskGroup(f"{layer.name}/{path}", (layer.name,), [(t, 0)], [t],
                                    t.dense.size))
    return groups


def _bn_followers(g, members):
    """BatchNormalization layers whose channels are exactly the group's units."""
    roots = g.roots(g.unit_ids[id(members[0])])
    found = []
    for step in g.steps:
        if not isinstance(step.layer, keras.layers.BatchNormalization) or step.kind != "channelwise":
            continue
        ids = step.inputs[0].ids
        if ids is not None and len(ids) == len(roots) and (g.roots(ids) == roots).all():
            if all(step.layer is not f for f in found):
                found.append(step.layer)
    return found


def _unit_groups(model):
    if graph.functional_of(model) is None:
        raise ValueError(
            "Argument `granularity='unit'` needs a Sequential or functional model (its "
            f"coupled units come from the graph). Received: model={model.name!r} (subclassed)"
        )
    groups, excluded = graph.unit_groups(model)
    g = graph.trace(model)
    out = []
    for members in groups:
        if any(m.name in excluded for m in members):
            continue
        scored, targets = [], []
        for layer in members:
            _, kernel, unit_targets = registry.get_spec(layer).unit_targets(layer)
            for i, (path, v, ushape) in enumerate(unit_targets):
                t = MaskTarget(layer.name, path, v, _numpy(v), tuple(ushape))
                targets.append(t)
                if i == 0:
                    scored.append((t, t.dense.size // int(np.prod(ushape))))
        for bn in _bn_followers(g, members):
            for path in ("gamma", "beta"):
                v = getattr(bn, path, None)
                if v is not None:
                    targets.append(MaskTarget(bn.name, path, v, _numpy(v), (int(v.shape[-1]),)))
        size = int(np.prod(scored[0][0].unit_shape))
        out.append(MaskGroup("+".join(m.name for m in members),
                             tuple(m.name for m in members), scored, targets, size))
    return out, excluded


def check_layers(layers):
    """`layers` as a list of layer names (None stays None; a string is one name);
    TypeError for anything else (a number, a list holding a non-string)."""
    if layers is None:
        return None
    if isinstance(layers, str):
        return [layers]
    if not hasattr(layers, "__iter__") or isinstance(layers, (bytes, dict)):
        raise TypeError(f"Argument `layers` must be None or a list of layer names. "
                        f"Received: layers={layers!r}")
    wanted = list(layers)
    bad = [n for n in wanted if not isinstance(n, str)]
    if bad:
        raise TypeError(f"Argument `layers` must be a list of layer names (strings); it holds "
                        f"{bad[0]!r}. Received: layers={wanted!r}")
    return wanted


def _select_layers(groups, layers):
    wanted = check_layers(layers)
    if wanted is None:
        return groups
    known = {name for grp in groups for name in grp.layers}
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise ValueError(
            f"Argument `layers` names layers that are not pruned here: {unknown} "
            f"(prunable: {sorted(known)}). Received: layers={wanted!r}"
        )
    return [grp for grp in groups if any(n in grp.layers for n in wanted)]
