"""Granularities: how a weight tensor is scored, viewed, selected and expanded.

Each is a small class whose methods take the kernel interface (`policy.NUMPY` or
`policy.OPS`) as `K`, so training, files and one-shot masking share one definition:

- `Weight()`: one item per weight, scored by `|w|` (float32).
- `Unit(unit_shape)`: one item per output unit, scored by the sum of squares of its
  incoming weights (`||w_u||²`, float64; ranking by it is ranking by the L2 norm);
  the mask is `unit_shape`, broadcast against the kernel (see `tfprune.registry`).
- `Block(block_size, pooling)`: a rank-2 kernel cut into `(bh, bw)` blocks aligned
  at row/column 0 (edge blocks may be partial), one item per block, scored by the
  `"AVG"` (mean over the block's weights) or `"MAX"` of `|w|` — tfmot's
  `block_size` / `block_pooling_type`. Whole blocks are kept or zeroed; the kept
  block count is exact.
- `MByN(m, n)`: tfmot's `sparsity_m_by_n`: in every group of `n` consecutive
  weights along the kernel's input axis (the last axis of the TFLite layout,
  `(out, ..., in)`), the `m` smallest `|w|` are zeroed (ties: the later index is
  zeroed). A fixed pattern: no count, no ranking across groups.

Scores are computed in a fixed operation order (the block sums too), so NumPy and
every backend give identical scores, hence identical masks.
"""

import math

import numpy as np

from tfprune.masks import counts

__all__ = ["Granularity", "Weight", "Unit", "Block", "MByN", "check_m_by_n", "check_pair",
           "check_combination", "POOLING_TYPES"]

POOLING_TYPES = ("AVG", "MAX")


class Granularity:
    """Base class. `fixed` granularities (m:n) give their mask directly (`mask`)."""

    name = None
    fixed = False

    def mask_shape(self, shape):
        """Shape of the stored mask of a kernel of `shape`."""
        return tuple(shape)

    def num_items(self, shape):
        return math.prod(shape)

    def fan_in(self, shape):
        """Weights per item (global unit ranking divides scores by it)."""
        return 1

    def check(self, shape, name="kernel"):
        """Raise ValueError if a kernel of `shape` cannot be pruned this way."""

    def scores(self, K, kernel):
        raise NotImplementedError

    def expand(self, K, keep, shape):
        """The mask (bool, `mask_shape(shape)`) of a flat keep vector."""
        return K.reshape(keep, self.mask_shape(shape))

    def __eq__(self, other):
        return type(self) is type(other) and vars(self) == vars(other)

    def __hash__(self):
        return hash((type(self).__name__, tuple(sorted(vars(self).items()))))

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class Weight(Granularity):
    name = "weight"

    def scores(self, K, kernel):
        return K.flat(K.abs(K.cast(kernel, "float32")))


class Unit(Granularity):
    name = "unit"

    def __init__(self, unit_shape):
        self.unit_shape = tuple(int(d) for d in unit_shape)

    def mask_shape(self, shape):
        return self.unit_shape

    def num_items(self, shape):
        return math.prod(self.unit_shape)

    def fan_in(self, shape):
        return math.prod(shape) // math.prod(self.unit_shape)

    def scores(self, K, kernel):
        return K.unit_scores(kernel, self.unit_shape)


def check_pair(value, name, minimum=1):
    """`value` as a tuple of 2 integers >= `minimum` (`block_size`, `sparsity_m_by_n`)."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(
            f"Argument `{name}` must be a tuple of 2 integers. Received: {name}={value!r}"
        )
    return tuple(counts.check_int(v, name, minimum) for v in value)


def check_combination(granularity, round_to=1, block_size=(1, 1), sparsity_m_by_n=None):
    """The option combinations that have no meaning, as Keras-form ValueErrors (the
    options themselves already checked): `round_to` needs unit granularity, blocks
    and m:n patterns need weight granularity and exclude each other."""
    if round_to != 1 and granularity != "unit":
        raise ValueError(
            "Argument `round_to` rounds unit counts and needs granularity='unit'. "
            f"Received: round_to={round_to}, granularity={granularity!r}")
    if (tuple(block_size) != (1, 1) or sparsity_m_by_n is not None) and granularity != "weight":
        raise ValueError(
            "Arguments `block_size` / `sparsity_m_by_n` shape weight masks and need "
            f"granularity='weight'. Received: granularity={granularity!r}")
    if tuple(block_size) != (1, 1) and sparsity_m_by_n is not None:
        raise ValueError(
            "Arguments `block_size` and `sparsity_m_by_n` cannot be combined. "
            f"Received: block_size={block_size}, sparsity_m_by_n={sparsity_m_by_n}")


class Block(Granularity):
    name = "block"

    def __init__(self, block_size=(1, 4), pooling="AVG"):
        self.block_size = check_pair(block_size, "block_size")
        if not isinstance(pooling, str) or pooling.upper() not in POOLING_TYPES:
            raise (ValueError if isinstance(pooling, str) else TypeError)(
                f"Argument `block_pooling_type` must be one of {POOLING_TYPES}. "
                f"Received: block_pooling_type={pooling!r}"
            )
        self.pooling = pooling.upper()

    def check(self, shape, name="kernel"):
        if len(shape) != 2:
            raise ValueError(
                f"Block sparsity needs a 2-D weight; `{name}` has shape {tuple(shape)}. "
                f"Received: block_size={self.block_size}"
            )

    def _grid(self, shape):
        (r, c), (bh, bw) = shape, self.block_size
        return -(-r // bh), -(-c // bw)

    def num_items(self, shape):
        return math.prod(self._grid(shape))

    def fan_in(self, shape):
        return math.prod(self.block_size)

    def scores(self, K, kernel):
        (r, c), (bh, bw) = kernel.shape, self.block_size
        h, w = self._grid((r, c))
        a = K.abs(K.cast(kernel, "float32"))
        if (h * bh, w * bw) != (r, c):
            a = K.pad(a, [[0, h * bh - r], [0, w * bw - c]])
        a = K.reshape(a, (h, bh, w, bw))
        acc = None
        for i in range(bh):  # a fixed order of adds: the same float32 sums everywhere
            for j in range(bw):
                part = a[:, i, :, j]
                if acc is None:
                    acc = part
                elif self.pooling == "AVG":
                    acc = acc + part
                else:
                    acc = K.maximum_array(acc, part)
        if self.pooling == "AVG":
            rows = np.minimum(bh, r - bh * np.arange(h))
            cols = np.minimum(bw, c - bw * np.arange(w))
            acc = acc / K.constant(np.outer(rows, cols), "float32")
        return K.flat(acc)

    def expand(self, K, keep, shape):
        (r, c), (bh, bw) = shape, self.block_size
        h, w = self._grid(shape)
        grid = K.reshape(keep, (h, w))
        full = K.repeat(K.repeat(grid, bh, axis=0), bw, axis=1)
        return full[:r, :c]


def _group_view(shape, n):
    """`(perm, rows, inputs, padded)`: a kernel `(..., in, out)` transposed by `perm`
    to `(out, ..., in)` and flattened to `(rows, in)`, padded to a multiple of `n`."""
    rank = len(shape)
    perm = (rank - 1, *range(rank - 2), rank - 2)
    inputs = shape[-2]
    return perm, math.prod(shape) // inputs, inputs, -(-inputs // n) * n


class MByN(Granularity):
    name = "m_by_n"
    fixed = True

    def __init__(self, m=2, n=4):
        m, n = check_pair((m, n), "sparsity_m_by_n")
        if not 1 <= m < n:
            raise ValueError(
                "Argument `sparsity_m_by_n` must be (m, n) with 1 <= m < n (m zeros in "
                f"every n consecutive weights). Received: sparsity_m_by_n={(m, n)}"
            )
        self.m, self.n = m, n

    @property
    def sparsity(self):
        return self.m / self.n

    def check(self, shape, name="kernel"):
        if len(shape) < 2:
            raise ValueError(
                f"m:n sparsity needs a kernel with an input axis (rank >= 2); `{name}` "
                f"has shape {tuple(shape)}."
            )

    def mask(self, K, kernel):
        """Bool mask of the kernel's shape: `n - m` kept in every group of `n`."""
        shape = tuple(int(d) for d in kernel.shape)
        perm, rows, inputs, padded = _group_view(shape, self.n)
        a = K.reshape(K.transpose(K.abs(K.cast(kernel, "float32")), perm), (rows, inputs))
        if padded != inputs:
            a = K.pad(a, [[0, 0], [0, padded - inputs]])
        g = K.reshape(a, (rows, padded // self.n, self.n))
        cols = [g[:, :, i] for i in range(self.n)]
        keeps = []
        for i, ci in enumerate(cols):
            rank = None
            for j, cj in enumerate(cols):
                if j == i:
                    continue
                beats = K.greater(cj, ci) if j > i else K.logical_or(K.greater(cj, ci),
                                                                     K.equal(cj, ci))
                beats = K.cast(beats, "int32")
                rank = beats if rank is None else rank + beats
            keeps.append(rank < self.n - self.m)
        keep = K.reshape(K.stack(keeps, axis=-1), (rows, padded))[:, :inputs]
        inverse = tuple(int(i) for i in np.argsort(perm))
        transposed = tuple(shape[p] for p in perm)
        return K.transpose(K.reshape(keep, transposed), inverse)


def check_m_by_n(weights, m=2, n=4):
    """Whether every group of `n` consecutive weights along the input axis of
    `weights` (a kernel `(..., in, out)`: the last axis of the TFLite layout) has
    at least `m` zeros (tfmot's `sparsity_m_by_n` pattern).

    >>> import numpy as np
    >>> w = np.array([[1., 0.], [0., 2.], [3., 0.], [0., 4.]])  # (in=4, out=2)
    >>> check_m_by_n(w, 2, 4), check_m_by_n(w, 3, 4)
    (True, False)
    """
    MByN(m, n)  # validates
    if not hasattr(weights, "shape") and not isinstance(weights, (list, tuple)):
        raise TypeError(
            f"Argument `weights` must be an array (a kernel of rank >= 2). Received: weights={weights!r}"
        )
    w = np.asarray(weights)
    if w.ndim < 2:
        raise ValueError(f"Argument `weights` must have rank >= 2. Received shape {w.shape}")
    perm, rows, inputs, padded = _group_view(w.shape, n)
    g = np.transpose(w, perm).reshape(rows, inputs)
    if padded != inputs:
        g = np.pad(g, [(0, 0), (0, padded - inputs)])
    zeros = np.count_nonzero(g.reshape(rows, padded // n, n) == 0, axis=-1)
    # a padded group of r real weights needs max(m - (n - r), 0) real zeros: pads count
    return bool(np.all(zeros >= m))
