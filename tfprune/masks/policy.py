"""The selection policy: which items of a group of score vectors are kept.

Written once, over a small kernel interface with two implementations: `NUMPY`
(arrays and files, `tfprune.masks.numpy_kernel`) and `OPS` (`keras.ops`, inside
compiled train steps on every backend, `tfprune.masks.ops_kernel`). Both compute
the same keep sets bit for bit.

The keep set
------------
Given `n` non-negative scores and a sparsity `σ`, keep `k = max(round(n·(1−σ)), 1)`
items (`tfprune.masks.counts.keep_count`): every item scoring above the k-th
largest score `t`, and of the items scoring exactly `t`, those with the lowest flat
index (C order) until `k` are kept. Exactly `n − k` items are pruned, ties included
(tfmot keeps every tied item and prunes fewer than asked).

- `scope="layer"`: each vector on its own, keeping
  `round_keep_count(k(n), n, round_to)`.
- `scope="global"`: one ranking of the concatenated vectors, after each vector's
  `floor = max(min_keep, round_to)` best items are set to +inf (so no tensor is cut
  off entirely); `max(k(Σn), Σ min(floor, n))` items are kept. With `round_to > 1`
  each vector's share is then rounded up to a multiple of `round_to` and
  re-selected within that vector.
"""

import numpy as np

from tfprune.masks import counts
from tfprune.masks import numpy_kernel as npk

__all__ = ["select", "NUMPY", "OPS", "NumpyKernel", "OpsKernel", "KeepCounts"]


class KeepCounts:
    """The sparsity of a schedule at its update steps, as exact keep counts: the
    counts of every tabulated sparsity are computed in Python (`keep_count`) and
    the train step picks the one at `index` (an int32 tensor)."""

    def __init__(self, sparsities, index):
        self.sparsities = [float(s) for s in sparsities]
        self.index = index

    def keep(self, n):
        table = [counts.keep_count(n, s) for s in self.sparsities]
        if len(set(table)) == 1:
            return table[0]
        from keras import ops

        return ops.take(ops.convert_to_tensor(np.asarray(table, np.int32)), self.index)


class NumpyKernel:
    """NumPy arrays; counts are Python ints."""

    name = "numpy"

    def asarray(self, x):
        return np.asarray(x)

    def flat(self, x):
        return np.asarray(x).reshape(-1)

    def size(self, x):
        return int(np.asarray(x).size)

    def topk(self, scores, k):
        return npk.topk_keep_np(scores, int(k))

    def keep(self, n, sparsity):
        return counts.keep_count(n, sparsity)

    def protect(self, scores, floor):
        top = npk.topk_keep_np(scores, min(floor, scores.size))
        out = scores.astype(np.float64 if scores.dtype == np.float64 else np.float32, copy=True)
        out[top] = np.inf
        return out

    def concat(self, vectors):
        return np.concatenate(vectors)

    def split(self, vector, sizes):
        return np.split(vector, np.cumsum(sizes)[:-1])

    def count(self, keep):
        return int(np.count_nonzero(keep))

    def round_up(self, k, n, round_to):
        return counts.round_keep_count(int(k), n, round_to)

    def maximum(self, a, b):
        return max(a, b)

    # array ops used by the granularities
    abs = staticmethod(np.abs)
    square = staticmethod(np.square)
    reshape = staticmethod(np.reshape)
    transpose = staticmethod(np.transpose)
    maximum_array = staticmethod(np.maximum)
    repeat = staticmethod(np.repeat)
    equal = staticmethod(np.equal)
    greater = staticmethod(np.greater)
    logical_and = staticmethod(np.logical_and)
    logical_or = staticmethod(np.logical_or)
    stack = staticmethod(np.stack)

    def cast(self, x, dtype):
        return np.asarray(x).astype(dtype, copy=False)

    def pad(self, x, widths):
        return np.pad(x, widths)

    def unit_scores(self, kernel, unit_shape):
        return npk.unit_scores_np(kernel, unit_shape)

    def sum(self, x, axis=None):
        return np.sum(x, axis=axis)

    def constant(self, x, dtype):
        return np.asarray(x, dtype)


class OpsKernel:
    """`keras.ops` tensors; counts are int32 tensors (or Python ints when the
    sparsity is a Python number)."""

    name = "ops"

    def asarray(self, x):
        from keras import ops

        return ops.convert_to_tensor(x)

    def flat(self, x):
        from keras import ops

        return ops.reshape(x, (-1,))

    def size(self, x):
        import math

        return int(math.prod(x.shape))

    def topk(self, scores, k):
        from tfprune.masks import ops_kernel

        return ops_kernel.topk_keep(scores, k)

    def keep(self, n, sparsity):
        if isinstance(sparsity, KeepCounts):
            return sparsity.keep(n)
        if isinstance(sparsity, (int, float, np.floating, np.integer)):
            return counts.keep_count(n, sparsity)
        from tfprune.masks import ops_kernel

        return ops_kernel.keep_count(n, sparsity)

    def protect(self, scores, floor):
        from keras import ops

        top = self.topk(scores, min(floor, self.size(scores)))
        return ops.where(top, ops.cast(np.inf, scores.dtype), scores)

    def concat(self, vectors):
        from keras import ops

        return ops.concatenate(vectors, axis=0)

    def split(self, vector, sizes):
        out, start = [], 0
        for n in sizes:
            out.append(vector[start : start + n])
            start += n
        return out

    def count(self, keep):
        from keras import ops

        return ops.sum(ops.cast(keep, "int32"))

    def round_up(self, k, n, round_to):
        if isinstance(k, int):
            return counts.round_keep_count(k, n, round_to)
        from keras import ops

        if round_to == 1:
            return ops.minimum(k, n)
        return ops.minimum((k + (round_to - 1)) // round_to * round_to, n)

    def maximum(self, a, b):
        if isinstance(a, int) and isinstance(b, int):
            return max(a, b)
        from keras import ops

        return ops.maximum(a, b)

    def __getattr__(self, name):  # abs, square, reshape, transpose, repeat, ...
        from keras import ops

        aliases = {"maximum_array": "maximum"}
        return getattr(ops, aliases.get(name, name))

    def unit_scores(self, kernel, unit_shape):
        """`numpy_kernel.UnitTree`'s sums: the same pairwise tree, level by level."""
        from keras import ops

        from tfprune.masks import ops_kernel

        shape = tuple(int(d) for d in kernel.shape)
        perm, rows, units = npk.unit_axes_order(shape, unit_shape)
        x = ops.reshape(ops.transpose(kernel, perm) if perm != tuple(range(len(shape)))
                        else kernel, (rows, units))
        dtype = ops_kernel.score_dtype()

        def pad(a):
            return ops.concatenate([a, ops.zeros((1, *a.shape[1:]), a.dtype)], axis=0)

        if rows % 2 and rows > 1:
            x = pad(x)
        if rows == 1:
            return ops.square(ops.cast(x[0], dtype))
        pairs = ops.reshape(x, (x.shape[0] // 2, 2, units))  # level 1 from float32 pairs
        first = ops.square(ops.cast(pairs[:, 0], dtype)) + ops.square(ops.cast(pairs[:, 1], dtype))
        return npk.pairwise_rows(first, lambda a, b: a + b, pad, ops.reshape)

    def constant(self, x, dtype):
        from keras import ops

        return ops.convert_to_tensor(np.asarray(x, dtype))


NUMPY = NumpyKernel()
OPS = OpsKernel()


def select(kernel, score_vectors, sparsity, scope="layer", round_to=1, min_keep=1):
    """Keep masks (flat bool vectors) for a list of flat score vectors.

    `kernel` is `NUMPY` or `OPS`; `sparsity` a number, or (`OPS`) a scalar tensor.
    See the module doc for the rule; scores must be finite and non-negative.
    """
    counts.check_scope(scope)
    vectors = [kernel.flat(v) for v in score_vectors]
    sizes = [kernel.size(v) for v in vectors]
    if scope == "layer":
        return [
            kernel.topk(v, kernel.round_up(kernel.keep(n, sparsity), n, round_to))
            for v, n in zip(vectors, sizes)
        ]
    floor = max(min_keep, round_to)
    protected = [kernel.protect(v, floor) for v in vectors]
    k = kernel.maximum(kernel.keep(sum(sizes), sparsity), sum(min(floor, n) for n in sizes))
    parts = kernel.split(kernel.topk(kernel.concat(protected), k), sizes)
    if round_to > 1:
        parts = [
            kernel.topk(v, kernel.round_up(kernel.count(p), n, round_to))
            for v, p, n in zip(vectors, parts, sizes)
        ]
    return parts
