"""A wrapper's pruning state, and how it travels through each backend's train step.

The state (one mask per pruned weight, the step counters, the last threshold) is
read and written only inside the optimizer's update (the masks are the weights'
constraints, see `tfprune.wrappers`), never in the forward pass. So it is held
outside Keras's variable tracking (`PruneState`): the wrapper saves and loads it
itself, in the order older files use.

Backends differ in how state leaves a compiled optimizer step:

- TensorFlow (graph or XLA) and torch assign variables directly;
  `apply_if(pred, compute, variables)` assigns inside a `cond` branch, so a step
  without a mask update writes nothing.
- JAX runs the optimizer statelessly and carries only the trainable and the
  optimizer variables out of the step. `attach(optimizer, variables)` makes the
  state optimizer variables for the duration of training (it is then not a layer
  weight, so no value is carried twice), and keeps it out of the optimizer's own
  saved variables, so checkpoints load into a fresh optimizer; `detach` undoes it.
  `apply_if` selects the new values with `ops.cond` and assigns them once.
"""

import keras
from keras import ops

from tfprune import _compat

__all__ = ["PruneState", "apply_if", "attach", "detach", "innermost_optimizer"]


def _variable(shape, dtype, initializer, name):
    return keras.Variable(
        initializer=initializer, shape=shape, dtype=dtype,
        trainable=False, name=name, aggregation="only_first_replica",
    )


class PruneState:
    """The untracked state variables of one wrapper.

    `masks[i]` masks target i (bool, True where kept, shaped by its granularity:
    a byte per entry, a quarter of a float32 mask's memory and of what every
    step reads; files store them so too, and float masks of older files load);
    `pruning_step`: training steps seen (the first is step 1, as in tfmot);
    `last_update_step`: the step of the last mask update (-1: none yet);
    `threshold`: the smallest score kept at that update; `nonfinite`: how many
    NaN/Inf weights the update saw (an error, raised by the step callback).
    """

    def __init__(self, mask_specs):
        """`mask_specs`: `(name, shape)` of each mask."""
        constant = keras.initializers.Constant
        self.masks = [_variable(shape, "bool", "ones", name) for name, shape in mask_specs]
        self.pruning_step = _variable((), "int32", constant(0), "pruning_step")
        self.last_update_step = _variable((), "int32", constant(-1), "last_update_step")
        self.threshold = _variable((), "float32", constant(0.0), "threshold")
        self.nonfinite = _variable((), "int32", constant(0), "nonfinite")

    @property
    def variables(self):
        """In saving order: masks, pruning_step, last_update_step, threshold,
        nonfinite (files written before `nonfinite` existed lack the last one)."""
        return [*self.masks, self.pruning_step, self.last_update_step, self.threshold,
                self.nonfinite]

    @property
    def required(self):
        """How many variables a saved state must hold (all but `nonfinite`)."""
        return len(self.masks) + 3


def apply_if(pred, compute, variables):
    """Assign `compute()` (new values, one per variable, same order) to `variables`
    when the boolean scalar `pred` holds; otherwise leave them as they are."""
    if keras.backend.backend() == "jax" or _in_tf_replica():
        def current():
            return tuple(v.value for v in variables)

        def new():
            return tuple(ops.cast(x, v.dtype) for v, x in zip(variables, compute()))

        for v, x in zip(variables, ops.cond(pred, new, current)):
            v.assign(x)
        return

    def update():
        for v, x in zip(variables, compute()):
            v.assign(ops.cast(x, v.dtype))
        return ops.convert_to_tensor(True)

    ops.cond(pred, update, lambda: ops.convert_to_tensor(False))


def _in_tf_replica():  # tf.distribute replica: no assignment inside a cond (merge_call)
    import tensorflow as tf
    return tf.distribute.has_strategy() and not tf.distribute.in_cross_replica_context()


def innermost_optimizer(optimizer):
    """The optimizer that runs the update and the constraints (a
    `LossScaleOptimizer` delegates to its `inner_optimizer`)."""
    while getattr(optimizer, "inner_optimizer", None) is not None:
        optimizer = optimizer.inner_optimizer
    return optimizer


def _chain(optimizer):
    out = [optimizer]
    while getattr(out[-1], "inner_optimizer", None) is not None:
        out.append(out[-1].inner_optimizer)
    return out


def _own(optimizer, variables):
    return [v for v in variables if not getattr(v, "_tfprune_state", False)]


def _patch_saving(optimizer):
    """Save/load an optimizer's variables without the attached pruning state."""
    if getattr(optimizer, "_tfprune_patched", False):
        return
    cls = type(optimizer)

    def save_own_variables(store):
        for i, v in enumerate(_own(optimizer, optimizer.variables)):
            store[str(i)] = ops.convert_to_numpy(v)

    def load_own_variables(store):
        own = _own(optimizer, optimizer.variables)
        if len(store.keys()) != len(own):
            return cls.load_own_variables(optimizer, store)  # Keras's warning and skip
        for i, v in enumerate(own):
            v.assign(store[str(i)])

    optimizer.save_own_variables = save_own_variables
    optimizer.load_own_variables = load_own_variables
    optimizer._tfprune_patched = True


def attach(optimizer, variables):
    """Make `variables` optimizer variables of `optimizer` (JAX; see module doc)."""
    for opt in _chain(optimizer):
        _patch_saving(opt)
    inner = innermost_optimizer(optimizer)
    present = {id(v) for v in _compat.optimizer_variables(inner)}
    for v in variables:
        v._tfprune_state = True
        if id(v) not in present:
            _compat.optimizer_variables(inner).append(v)


def detach(optimizer):
    """Remove the pruning state attached by `attach`."""
    inner = innermost_optimizer(optimizer)
    variables = _compat.optimizer_variables(inner)
    variables[:] = _own(inner, variables)
