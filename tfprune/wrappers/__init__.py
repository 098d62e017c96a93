"""`PruneLowMagnitude` and how pruning runs inside `model.fit`.

No per-batch Python callback and no pruning work in the forward pass:

- Each pruned weight has a mask (bool: a byte per entry), installed as the
  variable's Keras constraint, which every optimizer applies right after its
  update. So the weights are exactly zero where masked after every step: a
  checkpoint saved at any time is as sparse as its masks (tfmot leaves masked
  weights drifting between updates, tfmot #206), and evaluation and prediction
  cost nothing extra.
- One optimizer step is one pruning step (the first is step 1, as in tfmot). Per
  schedule, one pruned variable's constraint (`groups.Driver`) counts the steps of
  every wrapper on that schedule and, at an update step, recomputes the masks of
  every group on it (`tfprune.masks`), in one conditional inside the compiled step.
  Counting in the optimizer needs no `training` flag from the model (a subclassed
  model whose `call()` has no `training` argument is pruned too), and a layer
  called several times in a step still counts one step.
- The masks of update step `s` are computed right after step `s`'s optimizer
  update, from the weights as masked so far (tfmot computes them before step `s`'s
  forward pass, one optimizer update earlier), so the final model's masks come
  from its final weights.
- `state.PruneState` holds masks and steps outside Keras's variable tracking; the
  wrapper saves and loads them itself, and on JAX they ride with the optimizer's
  variables through the stateless train step (`state.attach`).

Groups are (re)linked by `tfprune.callbacks.UpdatePruningStep` at the start of
training, so a model loaded from a `.keras` file resumes exactly.
"""

from tfprune.wrappers.groups import Driver, Link, collect_wrappers, link_groups, set_drivers
from tfprune.wrappers.layer import (
    GRANULARITIES,
    MISSING_CALLBACK,
    MaskConstraint,
    PruneLowMagnitude,
    Target,
    apply_mask,
    check_granularity,
)

__all__ = [
    "PruneLowMagnitude", "GRANULARITIES", "check_granularity", "collect_wrappers",
    "link_groups", "set_drivers", "Link", "Driver", "MaskConstraint", "Target",
    "MISSING_CALLBACK", "apply_mask",
]
