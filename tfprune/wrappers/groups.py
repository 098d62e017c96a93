"""Pruning groups and the in-step mask update.

A *group* (`Link`) is the set of wrappers ranked together: one wrapper in
`scope="layer"`, all wrappers in `scope="global"`, or the layers whose units are
coupled (a residual `Add`) with `granularity="unit"`. `link_groups` forms them from
the wrappers' `group` / `unit_group` names (so a model loaded from a file links the
same way) and picks, per schedule, one pruned variable as its `Driver`.

The driver's constraint runs once per optimizer step (however many times its layer
is called in the step). It counts the step of every wrapper on its schedule and,
at an update step, recomputes the masks of every group on the schedule in one
conditional: scores of the weights as masked so far (`tfprune.masks`), the new
masks, and the weights multiplied by them. The driver is the last pruned variable
of its schedule in `model.trainable_variables`, whose constraint the optimizer
applies after the others', though any order gives the same result.
"""

import keras
import numpy as np
from keras import ops

from tfprune import _compat
from tfprune import masks as masks_lib
from tfprune import schedules
from tfprune.masks import ops_kernel, policy
from tfprune.wrappers.layer import MaskConstraint, PruneLowMagnitude, apply_mask, torch_eager
from tfprune.wrappers.state import apply_if

__all__ = ["Link", "Driver", "link_groups", "collect_wrappers", "set_drivers"]


def _follower_variables(bn):
    return [v for v in (getattr(bn, "gamma", None), getattr(bn, "beta", None)) if v is not None]


def _nonfinite(x):
    """How many NaN/Inf values `x` holds. Counted only when the plain sum of `x` is
    not finite (a NaN/Inf anywhere makes it so; an overflowing sum just counts 0),
    so the usual step adds no temporary as large as `x`."""
    return ops.cond(
        ops.isfinite(ops.sum(ops.cast(x, "float32"))),
        lambda: ops.convert_to_tensor(0, "int32"),
        lambda: ops.sum(ops.cast(ops.logical_not(ops.isfinite(x)), "int32")),
    )


class Link:
    """A pruning group: `members` (wrappers, model order) and `unit_sets` (lists
    of members sharing one unit mask)."""

    def __init__(self, members, unit_sets):
        self.members = members
        self.unit_sets = unit_sets

    @property
    def leader(self):
        return self.members[0]

    def update(self, sparsity, step, current):
        """New values `{id(variable): value}` of an update at `step`: masks, the weights
        masked by them, and each wrapper's threshold / last update / non-finite
        count. `current(target)` is a target's weight as masked so far."""
        lead = self.leader
        out = {}
        if lead.sparsity_m_by_n is not None:
            for w in self.members:
                for t in w._targets:
                    value = current(t)
                    keep = t.granularity.mask(policy.OPS, value)
                    self._write(out, t, value, keep)
                self._record(out, w, step, 0.0, [current(t) for t in w._targets])
            return out
        if lead.granularity == "weight":
            targets = [t for w in self.members for t in w._targets]
            values = [current(t) for t in targets]
            scores = [t.granularity.scores(policy.OPS, v) for t, v in zip(targets, values)]
            keeps = policy.select(policy.OPS, scores, sparsity, lead.scope, min_keep=1)
            smallest = {}
            for t, v, s, keep in zip(targets, values, scores, keeps):
                self._write(out, t, v, t.granularity.expand(policy.OPS, keep, tuple(v.shape)))
                smallest.setdefault(id(t), (s, keep))
            for w in self.members:
                kept = [smallest[id(t)] for t in w._targets]
                self._record(out, w, step, _min_kept(kept), [current(t) for t in w._targets])
            return out
        normalize = lead.scope == "global"
        set_scores = []
        for unit_set in self.unit_sets:
            total, fan_in = None, 0
            for w in unit_set:
                kernel = w._targets[0]
                s = kernel.granularity.scores(policy.OPS, current(kernel))
                total = s if total is None else total + s
                fan_in += kernel.granularity.fan_in(tuple(kernel.variable.shape))
            set_scores.append(total / float(fan_in) if normalize else total)
        keeps = policy.select(policy.OPS, set_scores, sparsity, lead.scope,
                              round_to=lead.round_to, min_keep=1)
        for unit_set, s, keep in zip(self.unit_sets, set_scores, keeps):
            for w in unit_set:
                for t in w._targets:
                    self._write(out, t, current(t), ops.reshape(keep, t.unit_shape))
                for bn in w._followers.layers:
                    for v in _follower_variables(bn):
                        old = ops.reshape(w._targets[0].mask, (-1,))
                        out[id(v)] = apply_mask(v, ops.logical_and(old, keep))
                self._record(out, w, step, _min_kept([(s, keep)]),
                             [current(w._targets[0])])
        return out

    @staticmethod
    def _write(out, target, value, keep):
        mask = ops.cast(keep, "bool")
        out[id(target.mask)] = mask
        out[id(target.variable)] = apply_mask(value, mask)

    @staticmethod
    def _record(out, wrapper, step, threshold, values):
        state = wrapper._state
        out[id(state.last_update_step)] = step
        out[id(state.threshold)] = threshold
        bad = None
        for v in values:
            n = _nonfinite(v)
            bad = n if bad is None else bad + n
        out[id(state.nonfinite)] = bad


def _min_kept(scored):
    """The smallest kept score over `[(scores, keep)]`, as float32."""
    smallest = None
    for s, keep in scored:
        m = ops_kernel.masked_min(ops.cast(ops.reshape(s, (-1,)), "float32"),
                                  ops.reshape(keep, (-1,)))
        smallest = m if smallest is None else ops.minimum(smallest, m)
    return smallest


class Driver:
    """Counts the steps of the wrappers on one schedule and updates their groups'
    masks at update steps; called by one pruned variable's constraint."""

    def __init__(self, schedule, links, wrappers, target):
        self.schedule = schedule
        self.links = links
        self.wrappers = wrappers
        self.target = target  # the driving variable's target (its value arrives masked)
        # True while a train step known (on the host) to update no mask is traced:
        # that step only counts (see `tfprune.callbacks.UpdatePruningStep`).
        self.lean = False

    @property
    def known_on_host(self):
        """Whether the update steps are known on the host (built-in schedules, m:n)."""
        return (self.links[0].leader.sparsity_m_by_n is not None
                or schedules.update_step_known(self.schedule, 1) is not None)

    def due(self, step):
        """Whether the training step `step` (a Python int, counting from 1) may
        update masks, decided on the host: False only when it certainly does not
        (built-in schedules and m:n, whose update steps are known); True otherwise."""
        if self.links[0].leader.sparsity_m_by_n is not None:
            return step == 1
        return schedules.update_step_known(self.schedule, step) is not False

    def decision(self, step):
        """`(should_update, sparsity)` at `step`: a sparsity tensor, or the exact
        keep counts (`policy.KeepCounts`) of a built-in schedule."""
        if self.links[0].leader.sparsity_m_by_n is not None:
            return ops.equal(step, 1), None
        return schedules.decide(self.schedule, step)

    def __call__(self, constraint, masked):
        if torch_eager():
            step = self._count_on_host()
            if self.lean or not self.due(step):
                return
            step = ops.convert_to_tensor(step, "int32")
        else:
            step = ops.cast(self.wrappers[0]._state.pruning_step, "int32") + 1
            for w in self.wrappers:
                w._state.pruning_step.assign(step)
            if self.lean:
                return
        should, sparsity = self.decision(step)

        def compute():
            cache = {id(self.target): masked}

            def current(t):
                if id(t) not in cache:
                    cache[id(t)] = apply_mask(t.variable, t.mask)
                return cache[id(t)]

            new = {}
            for link in self.links:
                new.update(link.update(sparsity, step, current))
            return [new[id(v)] for v in variables]

        variables = self._variables()
        apply_if(should, compute, variables)

    def _count_on_host(self):
        """Eager torch: count the step in place, decided on the host (a step that
        certainly updates no mask then costs no ops: 0.39 -> 0.06 ms a step of the
        seed MLP). Returns the step as a Python int."""
        import torch

        with torch.no_grad():
            step = int(self.wrappers[0]._state.pruning_step.value) + 1
            for w in self.wrappers:
                w._state.pruning_step.value.fill_(step)
        return step

    def _variables(self):
        """The variables an update writes, in a fixed order."""
        out = []
        for link in self.links:
            for w in link.members:
                for t in w._targets:
                    out.append(t.mask)
                    if t is not self.target:
                        out.append(t.variable)
                for bn in w._followers.layers if link.leader.granularity == "unit" else ():
                    out.extend(_follower_variables(bn))
                state = w._state
                out.extend([state.last_update_step, state.threshold, state.nonfinite])
        seen, unique = set(), []
        for v in out:
            if id(v) not in seen:
                seen.add(id(v))
                unique.append(v)
        return unique


def _grouped(wrappers, attr):
    """Wrappers grouped by the name in `attr` (None: alone), in first-seen order."""
    groups = {}
    for w in wrappers:
        name = getattr(w, attr)
        groups.setdefault(("named", name) if name is not None else ("alone", id(w)), []).append(w)
    return list(groups.values())


def _check_group(link):
    leader = link.leader
    for w in link.members[1:]:
        for attr in ("granularity", "scope", "round_to", "pruning_schedule", "block_size",
                     "block_pooling_type", "sparsity_m_by_n"):
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


def _link_followers(wrappers, model):
    wanted = {name for w in wrappers if w.granularity == "unit" for name in w.followers}
    if not wanted:
        return
    by_name = {
        layer.name: layer
        for layer in _compat.flatten_layers(model)
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
                if isinstance(c, MaskConstraint) and c.mask is mask:
                    continue
                v.constraint = MaskConstraint(w, mask, c, shape=(-1,))


def link_groups(wrappers, model=None):
    """Link wrappers into pruning groups from their `group` / `unit_group` names.

    `wrappers` is in model order. Built wrappers of built layers are built first
    (masks need only the inner layer's variables). With `model`, unit-pruned
    wrappers' `followers` are resolved to its layers and their gamma/beta masked.
    Returns the groups (`Link` objects).
    """
    for w in wrappers:
        if not w.built and w.layer.built:
            w.build()
    if model is not None:
        _link_followers(wrappers, model)
    links = []
    for members in _grouped(wrappers, "group"):
        link = Link(members, _grouped(members, "unit_group"))
        if all(w.built for w in members):
            _check_group(link)
        for w in members:
            w._link = link
        links.append(link)
    return links


def set_drivers(links, trainable_variables):
    """Give each schedule a driver: the last of its built, trainable pruned
    variables in `trainable_variables` order. Returns `(drivers, orphans)`: the
    `Driver`s, and the schedules left without one (no trainable pruned weight:
    their masks are never updated)."""
    order = {id(v): i for i, v in enumerate(trainable_variables)}
    by_schedule = {}
    for link in links:
        for w in link.members:
            for t in w._targets:
                t.variable.constraint.drive = None
        by_schedule.setdefault(link.leader.pruning_schedule, []).append(link)
    drivers, orphans = [], []
    for schedule, group in by_schedule.items():
        unbuilt = [w.name for link in group for w in link.members if not w.built]
        if unbuilt:
            raise RuntimeError(
                f"Pruned layers {unbuilt} are not built when training starts. Call the "
                "model once on a batch before training so every layer is built."
            )
        targets = [t for link in group for w in link.members for t in w._targets
                   if id(t.variable) in order]
        if not targets:
            orphans.append(schedule)
            continue
        target = max(targets, key=lambda t: order[id(t.variable)])
        wrappers = [w for link in group for w in link.members]
        target.variable.constraint.drive = Driver(schedule, group, wrappers, target)
        drivers.append(target.variable.constraint.drive)
    return drivers, orphans


def collect_wrappers(model):
    """Every `PruneLowMagnitude` in `model` (nested models included), in order."""
    if isinstance(model, PruneLowMagnitude):
        return [model]
    if isinstance(model, (list, tuple)):
        return [w for m in model for w in collect_wrappers(m)]
    if not isinstance(model, keras.layers.Layer):
        return []
    return [
        layer
        for layer in _compat.flatten_layers(model)
        if isinstance(layer, PruneLowMagnitude)
    ]
