"""tfprune: magnitude pruning for Keras 3 on TensorFlow."""

__version__ = "0.1.0"

from tfprune import callbacks  # noqa: E402
from tfprune import datasets  # noqa: E402
from tfprune import flops  # noqa: E402
from tfprune import graph  # noqa: E402
from tfprune import h5  # noqa: E402
from tfprune import masks  # noqa: E402
from tfprune.prune import prune_low_magnitude, strip_pruning  # noqa: E402
from tfprune.registry import PrunableLayer  # noqa: E402
from tfprune.report import sparsity_report  # noqa: E402
from tfprune.shrink import ShrinkReport, shrink  # noqa: E402
from tfprune.schedules import (  # noqa: E402
    ConstantSparsity,
    PolynomialDecay,
    PruningSchedule,
)
from tfprune.wrappers import PruneLowMagnitude  # noqa: E402
from tfprune import sparsity  # noqa: E402  (tfmot-shaped namespace)

__all__ = [
    "ConstantSparsity",
    "PolynomialDecay",
    "PrunableLayer",
    "PruneLowMagnitude",
    "PruningSchedule",
    "ShrinkReport",
    "callbacks",
    "datasets",
    "flops",
    "graph",
    "h5",
    "masks",
    "prune_low_magnitude",
    "shrink",
    "sparsity",
    "sparsity_report",
    "strip_pruning",
]
