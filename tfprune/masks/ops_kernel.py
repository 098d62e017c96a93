"""The `keras.ops` kernel of the mask engine: the keep set of `tfprune.masks.policy`
computed inside compiled train steps, on every Keras backend and under XLA.

Static shapes only, no data-dependent sizes, no Python control flow on values, so
the same code runs in a TensorFlow graph, under `jit_compile=True`, in JAX's
stateless jitted step and eagerly in torch.

- `topk_keep(scores, k)`: the `k` largest scores, ties by lowest flat index.
  float32 vectors longer than `SORT_LIMIT` use an O(n) two-level radix select on
  the scores' bit patterns (non-negative IEEE floats order like their int32 bits):
  a histogram of the high 16 bits (`ops.segment_sum` into 32768 static buckets)
  finds the bucket of the k-th largest, a histogram of the low 16 bits inside that
  bucket finds it exactly. tfmot sorts every weight instead. Shorter vectors and
  other dtypes (float64 unit scores) sort their values and take the k-th.
- Ties at the threshold are kept lowest index first (a cumulative count of the
  tied items), only when there are more tied items than places.

NumPy computes the same sets in `tfprune.masks.numpy_kernel` (tested bit for bit).
"""

import keras
from keras import ops

__all__ = ["SORT_LIMIT", "score_dtype", "topk_keep", "keep_count"]

SORT_LIMIT = 1 << 16


def score_dtype():
    """The float dtype of unit scores and in-graph keep counts: float64, or
    float32 on JAX unless `jax_enable_x64` is set (JAX has no float64 then)."""
    if keras.backend.backend() == "jax":
        import jax

        return "float64" if jax.config.jax_enable_x64 else "float32"
    return "float64"


def keep_count(n, sparsity):
    """`max(round(n * (1 - sparsity)), 1)` of a sparsity tensor, as int32
    (`score_dtype` arithmetic; a Python number gives the exact Python count)."""
    dtype = score_dtype()
    s = ops.cast(sparsity, dtype)
    k = ops.round(ops.cast(n, dtype) * (ops.cast(1.0, dtype) - s))
    return ops.maximum(ops.cast(k, "int32"), 1)


def _count(x):
    return ops.sum(ops.cast(x, "int32"))


def _at_least(hist):
    """Items in each bucket or above it (a reversed cumulative sum)."""
    return ops.flip(ops.cumsum(ops.flip(hist, 0)), 0)


def _keep_first_ties(values, t, greater, need):
    """`greater`, plus the first `need` items equal to `t` (flat order)."""
    tied = ops.equal(values, t)
    rank = ops.cumsum(ops.cast(tied, "int32"))
    return ops.logical_or(greater, ops.logical_and(tied, rank <= need))


def _topk_sorted(flat, k):
    t = ops.take(ops.flip(ops.sort(flat), 0), k - 1)
    greater = ops.greater(flat, t)
    return _keep_first_ties(flat, t, greater, k - _count(greater))


def _topk_radix(flat, k):
    bits = ops.view(flat, "int32")
    hi = ops.right_shift(bits, 16)
    ones = ops.ones_like(hi)
    c1 = ops.segment_sum(ones, hi, num_segments=32768)
    cum1 = _at_least(c1)
    b = _count(cum1 >= k) - 1
    above = ops.take(cum1, b) - ops.take(c1, b)
    lo = ops.where(ops.equal(hi, b), ops.bitwise_and(bits, 0xFFFF), 65536)
    c2 = ops.segment_sum(ones, lo, num_segments=65537)[:65536]
    cum2 = _at_least(c2) + above
    low = _count(cum2 >= k) - 1
    t = ops.bitwise_or(ops.left_shift(b, 16), low)
    tied = ops.take(c2, low)
    need = k - (ops.take(cum2, low) - tied)
    return ops.cond(
        ops.equal(need, tied),
        lambda: ops.greater_equal(bits, t),
        lambda: _keep_first_ties(bits, t, ops.greater(bits, t), need),
    )


def topk_keep(scores, k):
    """Boolean mask of the `k` largest `scores` (ties: lowest flat index first).

    `scores` are non-negative and finite (float32 or float64); `k` an int or an
    int32 scalar tensor, clipped to [1, n].
    """
    flat = ops.reshape(scores, (-1,))
    n = int(flat.shape[0])
    k = ops.clip(ops.cast(k, "int32"), 1, n)
    if n > SORT_LIMIT and keras.backend.standardize_dtype(flat.dtype) == "float32":
        keep = _topk_radix(flat, k)
    else:
        keep = _topk_sorted(flat, k)
    return ops.reshape(keep, ops.shape(scores))
