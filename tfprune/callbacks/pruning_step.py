"""`UpdatePruningStep`: the callback that drives pruning inside `model.fit`.

It overrides no per-batch hook, so Keras keeps its asynchronous dispatch: the
per-step work (step counting, mask updates) runs inside the compiled train step
(see `tfprune.wrappers`).
"""

import logging
import warnings

import keras

from tfprune.wrappers import collect_wrappers, link_groups

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


class UpdatePruningStep(keras.callbacks.Callback):
    """Tracks the pruning step of every pruned layer; required in `model.fit`.

    At the start of training it links the pruning groups (also after loading a
    saved model) and enables step tracking; the steps themselves are counted in
    the compiled train step. At the end it warns if no layer ever reached a mask
    update (e.g. `frequency` larger than the number of steps: tfmot #973 prunes
    nothing silently).

    Example:

    >>> import keras, numpy as np, tfprune
    >>> model = tfprune.prune_low_magnitude(
    ...     keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]),
    ...     tfprune.ConstantSparsity(0.5, begin_step=0, frequency=1))
    >>> model.compile("sgd", "mse")
    >>> _ = model.fit(np.ones((4, 4)), np.ones((4, 2)), verbose=0,
    ...               callbacks=[tfprune.callbacks.UpdatePruningStep()])
    """

    def on_train_begin(self, logs=None):
        self._wrappers = require_wrappers(self.model, "UpdatePruningStep")
        link_groups(self._wrappers, self.model)
        for w in self._wrappers:
            w._step_tracked = True

    def on_train_end(self, logs=None):
        never = [
            w.name
            for w in self._wrappers
            if w.built and int(w.last_update_step.numpy()) < 0
        ]
        if never:
            steps = int(self._wrappers[0].pruning_step.numpy())
            schedule = self._wrappers[0].pruning_schedule
            message = (
                f"tfprune: training ended after {steps} steps without any mask update "
                f"for {len(never)} pruned layer(s) ({', '.join(never[:5])}"
                f"{', ...' if len(never) > 5 else ''}): NOTHING WAS PRUNED. The schedule "
                f"{schedule!r} first updates at step {schedule.first_update_step()} "
                "(steps count from 1); lower `begin_step`/`frequency` or train for more "
                "steps. (A subclassed model whose call() has no `training` argument never "
                "tells its layers they are training: add `training=None` to its "
                "signature.)"
            )
            logger.warning(message)
            warnings.warn(message, RuntimeWarning, stacklevel=2)
