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
                  exclude=None, skip_output_layer=True):
    """The `Options` of these arguments; a Keras-form `ValueError` for a bad one."""
    sparsity = masks.check_sparsity(sparsity)
    check_granularity(granularity)
    masks.check_scope(scope)
    return Options(sparsity, granularity, scope, masks.check_round_to(round_to),
                   _compile("include", include), _compile("exclude", exclude),
                   bool(skip_output_layer))


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
