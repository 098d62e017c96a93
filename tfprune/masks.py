"""Mask scoring: which weights or units survive at a given sparsity.

Pure math, no Keras layers. One definition, two implementations: NumPy (the `*_np`
functions, used on files on disk) and TensorFlow graph ops (used inside the compiled
training step). Tests check that both give the same masks bit for bit.

The keep set
------------
Given `n` scores `s` (non-negative) and a sparsity `σ`, keep

    k = max(round(n · (1 − σ)), 1)          (round half to even, in float64)

items: every item with `s > t`, where `t` is the k-th largest score, and among the
items with `s == t` those with the lowest flat index (C order) until `k` are kept.
So exactly `n − k` items are pruned, ties included (tfmot keeps every tied item and
prunes fewer than asked).

Scores
------
- weight granularity: `|w|` of each weight (float32).
- unit granularity: a unit's score is the sum of squares of its incoming weights
  (`||w_u||²`, ranking by it equals ranking by the L2 norm): a Dense kernel column,
  a convolution filter over all axes but the output-channel axis. Coupled layers (a
  residual `Add`) share one ranking: their per-unit sums of squares are added
  (the L2 norm of the concatenated incoming weights).
- global scope ranks the items of several tensors together. For units, scores are
  divided by the fan-in (`||w_u||² / fan_in`, the mean square), so a unit with
  784 inputs and one with 200 inputs are compared by the typical size of their
  weights, not by how many they have. Every tensor keeps at least `min_keep` items
  (1, or `round_to` for units), so no layer is cut off entirely.

`round_to`
----------
For units, `round_to = m` rounds the kept count up to a multiple of `m`
(`min(n, ceil(k / m) · m)`): never more pruned than asked, and channel counts that
hardware likes. In global scope the rounding is applied per tensor after the global
ranking, so the achieved sparsity is at most the target.
"""

import math

import numpy as np
import tensorflow as tf

__all__ = [
    "keep_count",
    "round_keep_count",
    "topk_keep_np",
    "select_np",
    "unit_scores_np",
    "weight_scores_np",
    "topk_keep",
    "select",
    "unit_scores",
    "weight_scores",
    "check_scope",
    "check_round_to",
]

SCOPES = ("layer", "global")


def check_scope(scope):
    if scope not in SCOPES:
        raise ValueError(
            f"Argument `scope` must be one of {SCOPES}. Received: scope={scope!r}"
        )
    return scope


def check_round_to(round_to):
    if isinstance(round_to, bool) or not isinstance(round_to, (int, np.integer)) or round_to < 1:
        raise ValueError(
            f"Argument `round_to` must be an integer >= 1. Received: round_to={round_to!r}"
        )
    return int(round_to)


def check_sparsity(sparsity, name="sparsity"):
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float, np.floating, np.integer)):
        raise ValueError(
            f"Argument `{name}` must be a number in [0, 1). Received: {name}={sparsity!r}"
        )
    if not 0.0 <= float(sparsity) < 1.0:
        raise ValueError(
            f"Argument `{name}` must be in [0, 1). Received: {name}={sparsity}"
        )
    return float(sparsity)


# --------------------------------------------------------------------------- counts


def keep_count(n, sparsity):
    """`max(round(n * (1 - sparsity)), 1)`, rounding half to even in float64."""
    return max(int(np.round(n * (1.0 - float(sparsity)))), 1)


def round_keep_count(k, n, round_to=1):
    """`min(n, ceil(k / round_to) * round_to)`: the kept count rounded up."""
    return min(n, -(-k // round_to) * round_to)


# --------------------------------------------------------------------------- numpy


def topk_keep_np(scores, k):
    """Boolean mask of the `k` largest `scores` (ties: lowest flat index first)."""
    scores = np.asarray(scores)
    flat = scores.reshape(-1)
    n = flat.size
    if k >= n:
        return np.ones(scores.shape, dtype=bool)
    if k <= 0:
        return np.zeros(scores.shape, dtype=bool)
    t = np.partition(flat, n - k)[n - k]
    keep = flat > t
    need = k - int(np.count_nonzero(keep))
    tied = np.flatnonzero(flat == t)[:need]
    keep[tied] = True
    return keep.reshape(scores.shape)


def weight_scores_np(w):
    """`|w|` as float32 (the weight-granularity score)."""
    return np.abs(np.asarray(w, dtype=np.float32))


def _reduce_axes(shape, unit_shape):
    """Axes of a tensor of `shape` summed over to get one score per unit.

    `unit_shape` is aligned to the last axes of `shape`; every axis where it is 1
    (or absent) is reduced.
    """
    rank = len(shape)
    aligned = (1,) * (rank - len(unit_shape)) + tuple(unit_shape)
    for d, s in zip(aligned, shape):
        if d != 1 and d != s:
            raise ValueError(
                f"Unit shape {tuple(unit_shape)} does not match kernel shape {tuple(shape)}"
            )
    return tuple(i for i, d in enumerate(aligned) if d == 1)


def unit_scores_np(kernel, unit_shape, normalize=False):
    """Per-unit sum of squares of `kernel`, flat float64 vector of `prod(unit_shape)`.

    `unit_shape` is the shape of a unit mask broadcast against the kernel, aligned
    to its last axes: `(units,)` for Dense/Conv kernels, `(units, 1)` for a
    transposed convolution's `(..., filters, in)` kernel, `(in, multiplier)` for a
    depthwise kernel. With `normalize=True` the sum is divided by the fan-in.
    """
    kernel = np.asarray(kernel)
    axes = _reduce_axes(kernel.shape, unit_shape)
    k64 = kernel.astype(np.float64)
    s = np.sum(np.square(k64, out=k64), axis=axes).reshape(-1)  # one float64 copy, not two
    if normalize:
        s = s / (kernel.size // s.size)
    return s


def _protect_np(scores, min_keep):
    """Copy of `scores` with its `min_keep` best items (ties by index) set to +inf."""
    top = topk_keep_np(scores, min(min_keep, scores.size))
    out = scores.astype(np.float64 if scores.dtype == np.float64 else np.float32, copy=True)
    out[top] = np.inf
    return out


def select_np(score_vectors, sparsity, scope="layer", round_to=1, min_keep=1):
    """Keep masks for a list of flat score vectors (NumPy).

    scope="layer": each vector keeps `round_keep_count(keep_count(n, s), n, round_to)`.
    scope="global": one ranking over the concatenation (after protecting the
    `max(min_keep, round_to)` best items of each vector), then per-vector counts
    are rounded up to multiples of `round_to`.
    """
    sparsity = check_sparsity(sparsity)
    check_scope(scope)
    vecs = [np.asarray(v).reshape(-1) for v in score_vectors]
    if scope == "layer":
        return [
            topk_keep_np(v, round_keep_count(keep_count(v.size, sparsity), v.size, round_to))
            for v in vecs
        ]
    floor = max(min_keep, round_to)
    protected = [_protect_np(v, floor) for v in vecs]
    total = sum(v.size for v in vecs)
    k = max(keep_count(total, sparsity), sum(min(floor, v.size) for v in vecs))
    keep = topk_keep_np(np.concatenate(protected), k)
    out, start = [], 0
    for v in vecs:
        part = keep[start : start + v.size]
        start += v.size
        if round_to > 1:
            c = round_keep_count(int(part.sum()), v.size, round_to)
            part = topk_keep_np(v, c) if c != part.sum() else part
        out.append(part)
    return out


# --------------------------------------------------------------------------- TensorFlow


def weight_scores(w):
    """`|w|` as float32 (TF)."""
    return tf.abs(tf.cast(w, tf.float32))


def unit_scores(kernel, unit_shape, normalize=False):
    """Per-unit sum of squares (TF, float64); see `unit_scores_np`."""
    axes = list(_reduce_axes(tuple(kernel.shape), unit_shape))
    k64 = tf.cast(kernel, tf.float64)
    s = tf.reshape(tf.reduce_sum(tf.square(k64), axis=axes), [-1])
    if normalize:
        s = s / float(int(np.prod(kernel.shape)) // int(np.prod(unit_shape)))
    return s


def _tf_keep_count(n, sparsity):
    k = tf.cast(tf.round(float(n) * (1.0 - tf.cast(sparsity, tf.float64))), tf.int64)
    return tf.maximum(k, 1)


def _tf_round_keep_count(k, n, round_to):
    if round_to == 1:
        return tf.minimum(k, n)
    return tf.minimum(tf.cast(n, tf.int64), ((k + round_to - 1) // round_to) * round_to)


def _topk_keep_float32(flat, k):
    """Exact top-k of non-negative float32 scores by a two-level radix select.

    Non-negative IEEE floats order like their int32 bit patterns, so the k-th largest
    value is found with two histograms (high 16 bits, then low 16 bits within the
    winning bucket): O(n), no sort. tfmot sorts all n weights.
    """
    n = tf.size(flat, out_type=tf.int64)
    bits = tf.bitcast(flat, tf.int32)
    hi = tf.bitwise.right_shift(bits, 16)
    c1 = tf.math.bincount(hi, minlength=32768, maxlength=32768, dtype=tf.int64)
    cum1 = tf.cumsum(c1, reverse=True)  # items with hi >= bucket
    b = tf.cast(tf.reduce_sum(tf.cast(cum1 >= k, tf.int32)) - 1, tf.int32)
    above = cum1[b] - c1[b]
    in_b = tf.equal(hi, b)
    lo = tf.where(in_b, tf.bitwise.bitwise_and(bits, 0xFFFF), 0)
    c2 = tf.math.bincount(lo, minlength=65536, maxlength=65536, dtype=tf.int64)
    outside = n - tf.reduce_sum(tf.cast(in_b, tf.int64))
    c2 = c2 - tf.one_hot(0, 65536, dtype=tf.int64) * outside
    cum2 = tf.cumsum(c2, reverse=True) + above
    l = tf.cast(tf.reduce_sum(tf.cast(cum2 >= k, tf.int32)) - 1, tf.int32)
    t = tf.bitwise.bitwise_or(tf.bitwise.left_shift(b, 16), l)
    gt = bits > t
    eq = tf.equal(bits, t)
    need = k - tf.reduce_sum(tf.cast(gt, tf.int64))
    rank = tf.cumsum(tf.cast(eq, tf.int64))
    return tf.logical_or(gt, tf.logical_and(eq, rank <= need))


def _topk_keep_sorted(flat, k):
    """Exact top-k by a stable sort (small vectors, any float dtype)."""
    order = tf.argsort(-flat, stable=True)
    n = tf.shape(flat, out_type=tf.int64)[0]
    keep_sorted = tf.range(n) < k
    return tf.scatter_nd(tf.expand_dims(order, 1), keep_sorted, tf.shape(flat))


def topk_keep(scores, k):
    """Boolean mask of the `k` largest `scores` (TF; same definition as `topk_keep_np`).

    float32 scores use an O(n) radix select; other dtypes a stable sort.
    """
    scores = tf.convert_to_tensor(scores)
    flat = tf.reshape(scores, [-1])
    k = tf.cast(k, tf.int64)
    if flat.dtype == tf.float32:
        keep = _topk_keep_float32(flat, k)
    else:
        keep = _topk_keep_sorted(flat, k)
    return tf.reshape(keep, tf.shape(scores))


def _protect(scores, min_keep):
    n = int(scores.shape[0])
    top = topk_keep(scores, min(min_keep, n))
    return tf.where(top, tf.constant(np.inf, scores.dtype), scores)


def select(score_vectors, sparsity, scope="layer", round_to=1, min_keep=1):
    """Keep masks for a list of flat score vectors (TF); see `select_np`.

    `sparsity` may be a tensor (the schedule's value at the current step).
    """
    check_scope(scope)
    vecs = [tf.reshape(v, [-1]) for v in score_vectors]
    sizes = [int(v.shape[0]) for v in vecs]
    if scope == "layer":
        return [
            topk_keep(v, _tf_round_keep_count(_tf_keep_count(n, sparsity), n, round_to))
            for v, n in zip(vecs, sizes)
        ]
    floor = max(min_keep, round_to)
    dtype = tf.float64 if any(v.dtype == tf.float64 for v in vecs) else tf.float32
    protected = [_protect(tf.cast(v, dtype), floor) for v in vecs]
    total = sum(sizes)
    k = tf.maximum(_tf_keep_count(total, sparsity), sum(min(floor, n) for n in sizes))
    keep = topk_keep(tf.concat(protected, 0), k)
    parts = tf.split(keep, sizes)
    if round_to == 1:
        return list(parts)
    out = []
    for v, part, n in zip(vecs, parts, sizes):
        c = _tf_round_keep_count(tf.reduce_sum(tf.cast(part, tf.int64)), n, round_to)
        out.append(topk_keep(v, c))
    return out


def num_units(unit_shape):
    return int(math.prod(unit_shape))
