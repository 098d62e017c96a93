"""The arguments of `prune_weights_file`, checked once, before any file is opened."""

import dataclasses
import os
import re

from tfprune import masks
from tfprune.wrappers import check_granularity

__all__ = ["Options", "check_options", "check_path"]


@dataclasses.dataclass(frozen=True)
class Options:
    """How to prune: the checked arguments of `prune_weights_file`.

    Example:

    >>> options = check_options(0.5, granularity="unit", include="^dense")
    >>> options.sparsity, options.granularity, options.include.pattern
    (0.5, 'unit', '^dense')
    """

    sparsity: float
    granularity: str = "weight"
    scope: str = "layer"
    round_to: int = 1
    include: re.Pattern = None
    exclude: re.Pattern = None
    skip_output_layer: bool = True
    block_size: tuple = (1, 1)
    block_pooling_type: str = "AVG"
    sparsity_m_by_n: tuple = None

    @property
    def pattern(self):
        """The weight granularity's `tfprune.masks` object when it is not single
        weights: a `Block` or an `MByN` (else None)."""
        if self.sparsity_m_by_n is not None:
            return masks.MByN(*self.sparsity_m_by_n)
        if self.block_size != (1, 1):
            return masks.Block(self.block_size, self.block_pooling_type)
        return None


def _compile(name, pattern):
    if pattern is None:
        return None
    if not isinstance(pattern, str):
        raise TypeError(
            f"Argument `{name}` must be a regular expression string. "
            f"Received: {name}={pattern!r}"
        )
    try:
        return re.compile(pattern)
    except re.error as e:
        raise ValueError(
            f"Argument `{name}` must be a valid regular expression. "
            f"Received: {name}={pattern!r} ({e})"
        ) from None


def check_options(sparsity, granularity="weight", scope="layer", round_to=1, include=None,
                  exclude=None, skip_output_layer=True, block_size=(1, 1),
                  block_pooling_type="AVG", sparsity_m_by_n=None):
    """The `Options` of these arguments; a Keras-form `ValueError` for a bad one."""
    check_granularity(granularity)
    masks.check_scope(scope)
    block_size = masks.check_pair(block_size, "block_size")
    if sparsity_m_by_n is not None:
        sparsity_m_by_n = masks.check_pair(sparsity_m_by_n, "sparsity_m_by_n")
        masks.MByN(*sparsity_m_by_n)
        # the pattern fixes the sparsity; `sparsity` is not used (any value passes)
        sparsity = masks.check_sparsity(sparsity) if sparsity is not None else 0.0
    else:
        sparsity = masks.check_sparsity(sparsity)
    if block_size != (1, 1):
        block_pooling_type = masks.Block(block_size, block_pooling_type).pooling
    round_to = masks.check_round_to(round_to)
    masks.check_combination(granularity, round_to, block_size, sparsity_m_by_n)
    return Options(sparsity, granularity, scope, round_to,
                   _compile("include", include), _compile("exclude", exclude),
                   bool(skip_output_layer), block_size, str(block_pooling_type).upper(),
                   sparsity_m_by_n)


def check_path(path):
    """`path` as a string, if it names an existing readable file."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"Argument `path` must be a file path (str or os.PathLike). Received: path={path!r}")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"Argument `path` must be an existing file. Received: path={path!r} "
            "(no such file)"
        )
    if not os.path.isfile(path):
        raise ValueError(f"Argument `path` must be a file. Received: path={path!r}")
    if not os.access(path, os.R_OK):
        raise PermissionError(
            f"Argument `path` must be readable. Received: path={path!r} (permission denied)"
        )
    return path
