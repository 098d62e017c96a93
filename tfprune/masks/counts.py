"""How many items a mask keeps, and the argument checks shared by every floor.

Pure Python integers: the same numbers in training, in files and in one-shot
masking, on every backend.

    k = max(round(n · (1 − σ)), 1)          (round half to even, in float64)

`round_to = m` rounds a kept *unit* count up to a multiple of `m`:
`min(n, ceil(k / m) · m)` (never more pruned than asked). A global ranking of
tensors of sizes `n_i` keeps `max(k(Σ n_i), Σ min(floor, n_i))`, so every tensor
can keep its `floor` best items.
"""

import operator

import numpy as np

__all__ = [
    "SCOPES",
    "keep_count",
    "round_keep_count",
    "global_keep_count",
    "check_sparsity",
    "check_scope",
    "check_round_to",
    "check_int",
]

SCOPES = ("layer", "global")


def _is_number(value):
    return not isinstance(value, (bool, np.bool_)) and isinstance(
        value, (int, float, np.integer, np.floating)
    )


def check_sparsity(sparsity, name="sparsity"):
    """`float(sparsity)` if it is a number in [0, 1): TypeError for a non-number
    (bool included), ValueError out of range or NaN."""
    if not _is_number(sparsity):
        raise TypeError(
            f"Argument `{name}` must be a number in [0, 1). Received: {name}={sparsity!r}"
        )
    value = float(sparsity)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"Argument `{name}` must be in [0, 1). Received: {name}={sparsity!r}")
    return value


def check_int(value, name, minimum=None):
    """`int(value)` for an integer (NumPy integers too, never bool); TypeError
    otherwise, ValueError below `minimum`."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"Argument `{name}` must be an integer. Received: {name}={value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(
            f"Argument `{name}` must be an integer. Received: {name}={value!r}"
        ) from None
    if minimum is not None and value < minimum:
        raise ValueError(f"Argument `{name}` must be >= {minimum}. Received: {name}={value}")
    return value


def check_scope(scope):
    if not isinstance(scope, str):
        raise TypeError(f"Argument `scope` must be one of {SCOPES}. Received: scope={scope!r}")
    if scope not in SCOPES:
        raise ValueError(f"Argument `scope` must be one of {SCOPES}. Received: scope={scope!r}")
    return scope


def check_round_to(round_to):
    return check_int(round_to, "round_to", minimum=1)


def keep_count(n, sparsity):
    """`max(round(n * (1 - sparsity)), 1)`, rounding half to even in float64."""
    return max(int(np.round(n * (1.0 - float(sparsity)))), 1)


def round_keep_count(k, n, round_to=1):
    """`min(n, ceil(k / round_to) * round_to)`: the kept count rounded up."""
    return min(n, -(-k // round_to) * round_to)


def global_keep_count(sizes, sparsity, floor=1):
    """Items kept by a global ranking of tensors of `sizes`, each keeping `floor`:
    `max(keep_count(sum(sizes), sparsity), sum(min(floor, n)))`."""
    return max(keep_count(sum(sizes), sparsity), sum(min(floor, n) for n in sizes))
