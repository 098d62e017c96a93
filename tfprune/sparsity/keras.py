"""`tfprune.sparsity.keras`: tfmot's `tfmot.sparsity.keras` names, on Keras 3.

tfmot code keeps working with only the import changed::

    import tfprune as tfmot                      # or:
    from tfprune.sparsity import keras as sparsity

    pruned = tfmot.sparsity.keras.prune_low_magnitude(
        model, pruning_schedule=tfmot.sparsity.keras.PolynomialDecay(0.0, 0.8, 0, 1000))
    pruned.fit(x, y, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])

Every name here is the tfprune object itself (`tfprune.sparsity.keras.ConstantSparsity
is tfprune.ConstantSparsity`), so tfprune's extra arguments (`granularity`, `scope`,
`round_to`) work through this namespace too.

`prune_scope()` is kept for tfmot code (`with prune_scope(): load_model(...)`); it
is not needed, because `import tfprune` registers every tfprune object with Keras.

Names tfmot has but this version of tfprune may not (`PruningPolicy`,
`PruneForLatencyOnXNNPack`, `collect_prunable_layers`, ...) are looked up in the
`tfprune` package when used: they appear here as soon as tfprune provides them, and
until then using one raises an AttributeError naming it.

Example:

>>> import keras
>>> import tfprune as tfmot
>>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
>>> pruned = tfmot.sparsity.keras.prune_low_magnitude(model)
>>> with tfmot.sparsity.keras.prune_scope():
...     type(pruned.layers[0]).__name__
'PruneLowMagnitude'
"""

import keras as _keras

from tfprune.callbacks import PruningSummaries, UpdatePruningStep
from tfprune.prune import prune_low_magnitude, strip_pruning
from tfprune.registry import PrunableLayer
from tfprune.schedules import ConstantSparsity, PolynomialDecay, PruningSchedule
from tfprune.wrappers import PruneLowMagnitude as _PruneLowMagnitude

# tfmot.sparsity.keras names that tfprune may provide later: taken from the
# `tfprune` package at attribute-access time (PEP 562), never copied here.
_FROM_TFPRUNE = (
    "PruningPolicy",
    "PruneForLatencyOnXNNPack",
    "collect_prunable_layers",
    "check_m_by_n",
    "is_pruned_m_by_n",
)

_PROVIDED = [
    "ConstantSparsity",
    "PolynomialDecay",
    "PrunableLayer",
    "PruningSchedule",
    "PruningSummaries",
    "UpdatePruningStep",
    "prune_low_magnitude",
    "prune_scope",
    "strip_pruning",
]


def prune_scope():
    """A context manager kept for tfmot code; tfprune does not need it.

    tfmot needs `with prune_scope(): keras.models.load_model(path)` to load a
    pruned model. tfprune registers its objects with Keras on `import tfprune`, so
    loading works with or without this scope. Inside it, tfprune's objects are
    also known by their bare class names (`"PruneLowMagnitude"`,
    `"ConstantSparsity"`, ...), as tfmot's scope provides them.

    Returns:
        A `keras.saving.CustomObjectScope`.
    """
    return _keras.saving.CustomObjectScope({
        "PruneLowMagnitude": _PruneLowMagnitude,
        "ConstantSparsity": ConstantSparsity,
        "PolynomialDecay": PolynomialDecay,
    })


def __getattr__(name):
    if name in _FROM_TFPRUNE:
        import tfprune

        try:
            return getattr(tfprune, name)
        except AttributeError:
            raise AttributeError(
                f"`tfprune.sparsity.keras.{name}` (tfmot's `tfmot.sparsity.keras.{name}`) "
                "is not provided by this version of tfprune. See the README's "
                "'Migrating from tfmot' section for what tfprune offers instead."
            ) from None
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _available_later():
    import tfprune

    return [n for n in _FROM_TFPRUNE if hasattr(tfprune, n)]


def __dir__():
    return sorted(set(globals()) | set(_available_later()))


__all__ = list(_PROVIDED)
