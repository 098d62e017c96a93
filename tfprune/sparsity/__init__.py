"""A tfmot-shaped namespace, so tfmot code runs with only the import changed.

>>> import tfprune as tfmot       # was: import tensorflow_model_optimization as tfmot
>>> schedule = tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=0)

`tfprune.sparsity.keras` holds every public name of `tfmot.sparsity.keras` that
tfprune supports (see its docstring); the same objects as `tfprune.*`.
"""

from tfprune.sparsity import keras

__all__ = ["keras"]
