"""`UpdatePruningStep`: the callback that drives pruning inside `model.fit`.

It overrides no per-batch hook, so Keras keeps its asynchronous dispatch: the
per-step work (step counting, mask updates) runs inside the compiled optimizer
step (see `tfprune.wrappers`). Under `fit` on TensorFlow and JAX, steps that update
no mask run a lean compiled step without the update (`tfprune.callbacks.lean`).
"""

import logging
import warnings

import keras
from keras import ops

from tfprune.callbacks import lean
from tfprune.wrappers import collect_wrappers, link_groups, set_drivers
from tfprune.wrappers import state as state_lib

__all__ = ["UpdatePruningStep", "require_wrappers"]

logger = logging.getLogger("tfprune")


def require_wrappers(model, who):
    wrappers = collect_wrappers(model)
    if not wrappers:
        raise ValueError(
            f"`{who}` was given a model with no pruned layers. Wrap the model with "
            f"`tfprune.prune_low_magnitude` first. Received: model={model.name!r}"
        )
    return wrappers


def _warn(message):
    logger.warning(message)
    warnings.warn(message, RuntimeWarning, stacklevel=3)


class UpdatePruningStep(keras.callbacks.Callback):
    """Tracks the pruning step of every pruned layer; required in `model.fit`.

    At the start of training it links the pruning groups (also after loading a
    saved model), picks the variable that drives each schedule and enables step
    tracking; the steps themselves are counted in the compiled optimizer step. At
    the end of each epoch it raises if a mask update met NaN/Inf weights (training
    diverged: masks of such weights mean nothing), and at the end of training it
    warns if no layer ever reached a mask update (e.g. `frequency` larger than the
    number of steps: tfmot #973 prunes nothing silently). A model without pruned
    layers is left alone (with one warning), as in tfmot.

    Custom training loops call it as tfmot's guide does: `cb.set_model(model)`,
    `cb.on_train_begin()` before the first step (on JAX, with
    `model.optimizer = optimizer` set first), `cb.on_epoch_end(batch=...)` after
    each epoch, `cb.on_train_end()` at the end.

    Example:

    >>> import keras, numpy as np, tfprune
    >>> model = tfprune.prune_low_magnitude(
    ...     keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]),
    ...     tfprune.ConstantSparsity(0.5, begin_step=0, frequency=1))
    >>> model.compile("sgd", "mse")
    >>> _ = model.fit(np.ones((4, 4)), np.ones((4, 2)), verbose=0,
    ...               callbacks=[tfprune.callbacks.UpdatePruningStep()])
    >>> int(model.layers[0].pruning_step.numpy()), int((model.layers[0].layer.kernel.numpy() == 0).sum())
    (1, 4)
    """

    def __init__(self):
        super().__init__()
        self._wrappers = []
        self._attached = None
        self._lean = None

    def on_train_begin(self, logs=None):
        self._wrappers = collect_wrappers(self.model)
        if not self._wrappers:
            _warn(
                f"UpdatePruningStep: model {getattr(self.model, 'name', self.model)!r} has "
                "no pruned layers; the callback does nothing."
            )
            return
        links = link_groups(self._wrappers, self.model)
        drivers, orphans = set_drivers(links, self.model.trainable_variables)
        for schedule in orphans:
            names = [w.name for w in self._wrappers if w.pruning_schedule == schedule]
            _warn(
                f"tfprune: no weight of the pruned layers {names} is trainable, so their "
                f"masks are never updated (the optimizer applies them): unfreeze them or "
                "prune them before freezing."
            )
        for w in self._wrappers:
            w._step_tracked = True
        if keras.backend.backend() == "jax":
            optimizer = getattr(self.model, "optimizer", None)
            if optimizer is None:
                raise RuntimeError(
                    "UpdatePruningStep on JAX needs the model's optimizer: call "
                    "`model.compile(optimizer, ...)` or set `model.optimizer = optimizer` "
                    "before `on_train_begin()` in a custom training loop."
                )
            state_lib.attach(optimizer, [v for w in self._wrappers for v in w.pruning_variables])
            self._attached = optimizer
        self._lean = lean.install(self.model, drivers)

    def on_epoch_begin(self, epoch, logs=None):
        if self._lean is not None:
            self._lean.resync()

    def on_epoch_end(self, epoch=None, logs=None, batch=None):
        # tfmot's custom-loop guide calls `on_epoch_end(batch=...)`.
        self._check_finite()
        if self._lean is not None:
            self._lean.check()

    def on_train_end(self, logs=None):
        if not self._wrappers:
            return
        try:
            self._check_finite()
            self._warn_if_nothing_pruned()
        finally:
            lean.uninstall(self.model, self._lean)
            self._lean = None
            if self._attached is not None:
                state_lib.detach(self._attached)
                self._attached = None

    def _check_finite(self):
        bad = [(w.name, int(ops.convert_to_numpy(w._state.nonfinite))) for w in self._wrappers
               if w.built]
        bad = [(name, n) for name, n in bad if n]
        if bad:
            step = int(ops.convert_to_numpy(self._wrappers[0].pruning_step))
            listed = ", ".join(f"`{name}`: {n}" for name, n in bad)
            raise RuntimeError(
                f"tfprune: a mask update met NaN/Inf weights (layer: count) {listed}, by "
                f"step {step}. Masks ranked on them mean nothing: training diverged "
                "(lower the learning rate, clip gradients, or check the inputs)."
            )

    def _warn_if_nothing_pruned(self):
        never = [w.name for w in self._wrappers
                 if w.built and int(ops.convert_to_numpy(w.last_update_step)) < 0]
        if not never:
            return
        steps = int(ops.convert_to_numpy(self._wrappers[0].pruning_step))
        schedule = self._wrappers[0].pruning_schedule
        first = getattr(schedule, "first_update_step", lambda: None)()
        _warn(
            f"tfprune: training ended after {steps} steps without any mask update "
            f"for {len(never)} pruned layer(s) ({', '.join(never[:5])}"
            f"{', ...' if len(never) > 5 else ''}): NOTHING WAS PRUNED. The schedule "
            f"{schedule!r} first updates at step {first} (steps count from 1); lower "
            "`begin_step`/`frequency` or train for more steps."
        )
