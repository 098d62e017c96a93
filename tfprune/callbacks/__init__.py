"""Callbacks: `UpdatePruningStep` (required while training) and `PruningSummaries`.

Neither overrides a per-batch hook, so Keras keeps its asynchronous dispatch: the
per-step work (step counting, mask updates) runs inside the compiled train step
(see `tfprune.wrappers`).
"""

from tfprune.callbacks.pruning_step import UpdatePruningStep
from tfprune.callbacks.summaries import PruningSummaries

__all__ = ["UpdatePruningStep", "PruningSummaries"]
