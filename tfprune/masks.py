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
prunes fewer than asked). float32 scores are ranked by their bit patterns (see
`topk_threshold_np`), so a NaN score (`|NaN|`) ranks above +inf and is kept first,
in NumPy as in TF.

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

Chunked (files on disk)
-----------------------
`tfprune.h5` streams each tensor in blocks of `BLOCK_SIZE` elements through reused
buffers (`Scratch`) and never holds it whole: `topk_threshold_np` finds the keep
set of a stream of float32 scores exactly (`keep_bits_np` applies it block by
block), `unit_scores_chunked_np` sums squares block by block. `topk_keep_np` and
`unit_scores_np` run on the same code, so a file and an array give the same masks.

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
    "global_keep_count",
    "topk_keep_np",
    "select_np",
    "unit_scores_np",
    "weight_scores_np",
    "Scratch",
    "score_bits_np",
    "topk_threshold_np",
    "keep_bits_np",
    "top1_index_np",
    "unit_lead_axes",
    "unit_scores_chunked_np",
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


def global_keep_count(sizes, sparsity, floor=1):
    """Items kept by a global ranking of tensors of `sizes`, each keeping `floor`:
    `max(keep_count(sum(sizes), sparsity), sum(min(floor, n)))`."""
    return max(keep_count(sum(sizes), sparsity), sum(min(floor, n) for n in sizes))


# --------------------------------------------------------------------------- numpy


def topk_keep_np(scores, k):
    """Boolean mask of the `k` largest `scores` (ties: lowest flat index first).

    float32 scores with no sign bit set (all of `weight_scores_np`) are selected
    on their bit patterns (`topk_threshold_np`, as the TF `topk_keep`); others by
    `np.partition`.
    """
    scores = np.asarray(scores)
    flat = scores.reshape(-1)
    n = flat.size
    if k >= n:
        return np.ones(scores.shape, dtype=bool)
    if k <= 0:
        return np.zeros(scores.shape, dtype=bool)
    bits = flat.view(np.int32) if flat.dtype == np.float32 else None
    if bits is not None and bits.min() >= 0:
        starts = range(0, n, BLOCK_SIZE)
        t, ties = topk_threshold_np(lambda: (bits[i : i + BLOCK_SIZE] for i in starts), k, n)
        keep = np.empty(n, dtype=bool)
        for i in starts:
            ties = keep_bits_np(bits[i : i + BLOCK_SIZE], t, ties, keep[i : i + BLOCK_SIZE])
        return keep.reshape(scores.shape)
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
    Computed block by block (`unit_scores_chunked_np`), in the same order as the
    h5 path, so a file and an in-memory kernel score bit for bit alike.
    """
    kernel = np.asarray(kernel)
    lead = unit_lead_axes(kernel.shape, unit_shape)
    rows = kernel.reshape(-1, *kernel.shape[lead:]) if lead else kernel[None]
    step = max(1, BLOCK_SIZE // max(1, math.prod(kernel.shape[lead:])))
    blocks = (rows[i : i + step] for i in range(0, len(rows), step))
    return unit_scores_chunked_np(blocks, kernel.shape, unit_shape, normalize)


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
    k = global_keep_count([v.size for v in vecs], sparsity, floor)
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


# --------------------------------------------------------------------------- numpy, chunked
#
# Files on disk are pruned block by block through a few reused buffers: allocating
# fresh memory costs more than the arithmetic on it. These functions take a tensor
# (or several) as a stream of blocks and never hold it whole.

BLOCK_SIZE = 1 << 20  # elements per block (4 MB of float32: the work stays in cache)
INF_BITS = 0x7F800000  # bits of float32 +inf
_SIGN_OFF = 0x7FFFFFFF


class Scratch:
    """Work buffers kept between calls: `get(name, n, dtype)` is a length-`n` view of
    the buffer `name` of that dtype, grown when too short, never shrunk."""

    def __init__(self):
        self._buffers = {}

    def get(self, name, n, dtype):
        key = (name, np.dtype(dtype))
        buf = self._buffers.get(key)
        if buf is None or buf.size < n:
            buf = self._buffers[key] = np.empty(n, dtype)
        return buf[:n]


def score_bits_np(w, out=None):
    """Bit patterns (int32) of the weight scores `|w|` as float32 (`weight_scores_np`).

    Non-negative floats order like their bit patterns read as integers (+0 < ... <
    +inf < NaN), so the top-k of the scores is the top-k of these ints.
    """
    w = np.asarray(w)
    out = np.empty(w.shape, np.int32) if out is None else out
    if w.dtype == np.float32:
        return np.bitwise_and(w.view(np.int32), _SIGN_OFF, out=out)
    np.abs(w, out=out.view(np.float32), casting="same_kind")
    return out


def topk_threshold_np(chunks, k, n, scratch=None):
    """The keep set of the `k` largest of `n` float32 scores, given in chunks.

    `chunks()` returns a new iterable over the scores' bit patterns: non-negative
    int32 arrays (`score_bits_np`), flat, in C order. It is called 2 times (4 when
    the fast path misses); the arrays may be reused buffers. No sort, no copy of
    the data, exact:

    1. fast path: a random sample of the scores (1/256 of them, at least 65536)
       brackets the k-th largest in a narrow range `[a, b]` (4 sigma of sampling
       error); one pass counts the scores `> b` and `== a` and collects the few in
       `(a, b]`, where `np.partition` finds the k-th largest;
    2. when the sample misled (the k-th largest is outside `[a, b]`, or more than
       `n / 32` scores fall inside): the two-level radix select of the TF
       `topk_keep` (`_radix_select`).

    Returns `(t, ties)`, for `1 <= k <= n`: the keep set of the module doc is every
    item with bits `> t`, and the first `ties` items (flat order) with bits `== t`
    (`keep_bits_np` applies it chunk by chunk).
    """
    scratch = scratch or Scratch()
    a, b = _bracket(_sample(chunks(), n), k, n)
    found = _select_in(chunks(), k, a, b, max(1 << 16, n >> 5), scratch)
    return found if found is not None else _radix_select(chunks, k, scratch)


def _sample(chunks, n, seed=0):
    """About `max(n / 256, 65536)` items of the stream drawn at random, the same
    fraction of every chunk (all the items of a shorter stream)."""
    rate = max(n >> 8, 1 << 16) / n
    if rate >= 1.0:
        return np.concatenate([bits.copy() for bits in chunks])  # chunks may share a buffer
    rng = np.random.default_rng(seed)
    return np.concatenate(
        [bits[rng.integers(0, bits.size, math.ceil(bits.size * rate))] for bits in chunks]
    )


def _bracket(sample, k, n):
    """`(a, b)`: sample values below and above the k-th largest of the `n` scores,
    4 sigma of sampling error away (0 and the largest int32 past the sample's
    ends)."""
    m = sample.size
    p = k / n
    at = (n - k) / n * m  # where the k-th largest falls in the sorted sample
    margin = 4.0 * math.sqrt(m * p * (1.0 - p)) + 2.0
    lo, hi = math.floor(at - margin), math.ceil(at + margin)
    ends = np.partition(sample, [min(max(lo, 0), m - 1), min(max(hi, 0), m - 1)])
    a = int(ends[lo]) if lo >= 0 else 0
    b = int(ends[hi]) if hi < m else _SIGN_OFF
    return a, b


def _select_in(chunks, k, a, b, cap, scratch):
    """`(t, ties)` when the k-th largest of the stream is in `[a, b]` and at most
    `cap` items are in `(a, b]`; else None. One pass: counts the items `> b` and
    `== a`, collects the items in `(a, b]`."""
    above = at_a = count = 0
    inside = [np.zeros(0, np.int32)]
    for bits in chunks:
        mask = scratch.get("mask", bits.size, bool)
        above += np.count_nonzero(np.greater(bits, b, out=mask))
        at_a += np.count_nonzero(np.equal(bits, a, out=mask))
        if a < b:  # a < bits <= b, as one unsigned compare of bits - (a + 1)
            shifted = np.subtract(bits, a + 1, out=scratch.get("shifted", bits.size, np.int32))
            inside.append(bits[np.less_equal(shifted.view(np.uint32), b - a - 1, out=mask)])
            count += inside[-1].size
            if count > cap:
                return None
    inside = np.concatenate(inside)
    if not above < k <= above + inside.size + at_a:
        return None
    if k > above + inside.size:  # the k-th largest is a
        return a, k - above - inside.size
    j = inside.size - (k - above)
    t = int(np.partition(inside, j)[j])
    return t, k - above - int(np.count_nonzero(inside > t))


def _kth_bucket(hist, k):
    """`(i, above)`: the bucket of the k-th largest item of a histogram, and the
    number of items in the buckets above it."""
    at_least = np.cumsum(hist[::-1])[::-1]  # items in bucket i or above
    i = int(np.count_nonzero(at_least >= k)) - 1
    return i, int(at_least[i] - hist[i])


def _radix_select(chunks, k, scratch):
    """`(t, ties)` of `topk_threshold_np` by an exact two-level radix select (as the
    TF `topk_keep`): a histogram of the high 16 bits finds the bucket `b` of the
    k-th largest, a histogram of the low 16 bits of the items in `b` finds it."""
    hist = np.zeros(32768, np.int64)
    for bits in chunks():
        high = np.right_shift(bits, 16, out=scratch.get("high", bits.size, np.int64))
        hist += np.bincount(high, minlength=32768)
    b, above = _kth_bucket(hist, k)
    hist = np.zeros(65536, np.int64)
    for bits in chunks():
        low = np.subtract(bits, b << 16, out=scratch.get("low", bits.size, np.int32))
        low = low.view(np.uint32)  # items of bucket b: 0..65535, others wrap above
        hist += np.bincount(low[np.less(low, 65536, out=scratch.get("mask", bits.size, bool))],
                            minlength=65536)
    lo, above_in_b = _kth_bucket(hist, k - above)
    return (b << 16) | lo, k - above - above_in_b


def keep_bits_np(bits, t, ties, out):
    """Write one chunk of the keep set `(t, ties)` of `topk_threshold_np` to `out`
    (bool or int, 1 = keep): `bits > t`, and the first `ties` items with `bits == t`.
    Returns the ties left for the next chunks."""
    np.greater(bits, t, out=out)
    if ties > 0:
        tied = np.flatnonzero(bits == t)[:ties]
        out[tied] = 1
        ties -= tied.size
    return ties


def top1_index_np(chunks):
    """Flat index of the largest item in a stream of score-bit chunks, the first
    one on ties: the item `select_np` protects (+inf) in global scope."""
    best, index, start = -1, 0, 0
    for bits in chunks:
        i = int(np.argmax(bits))
        if bits[i] > best:
            best, index = int(bits[i]), start + i
        start += bits.size
    return index


def unit_lead_axes(shape, unit_shape):
    """Number of leading axes of a kernel of `shape` that are all summed over for
    unit scores (the axes before the first unit axis): the axes a kernel can be
    cut along for `unit_scores_chunked_np`."""
    axes = _reduce_axes(shape, unit_shape)
    return next((i for i in range(len(shape)) if i not in axes), len(shape))


def unit_scores_chunked_np(blocks, shape, unit_shape, normalize=False, scratch=None):
    """`unit_scores_np` of a kernel of `shape` given as consecutive row blocks.

    With `lead = unit_lead_axes(shape, unit_shape)`, the kernel is viewed as rows
    of shape `shape[lead:]` (C order) and `blocks` yields arrays of shape
    `(rows, *shape[lead:])` covering them in order. Each block is squared in
    float64 (exact for float32) and summed over its rows and the other reduced
    axes, with the running sum placed in front of the block as an extra row: numpy
    sums rows in order, so the blocks continue one sum and the result does not
    depend on where the kernel is cut (it is what one `np.sum` over the whole
    kernel gives).
    """
    scratch = scratch or Scratch()
    axes = _reduce_axes(shape, unit_shape)
    lead = unit_lead_axes(shape, unit_shape)
    inner = tuple(shape[lead:])
    summed = (0, *(1 + a - lead for a in axes if a >= lead))
    # where the running sum goes in the extra row 0 (reduced axes at index 0)
    at = (0, *(0 if 1 + i in summed else slice(None) for i in range(len(inner))))
    total = np.zeros(tuple(d for i, d in enumerate(inner) if 1 + i not in summed))
    for block in blocks:
        buf = scratch.get("unit_sums", (len(block) + 1) * math.prod(inner), np.float64)
        buf = buf.reshape(len(block) + 1, *inner)
        buf[0] = 0.0
        buf[at] = total
        np.square(block, out=buf[1:], dtype=np.float64)
        total = np.sum(buf, axis=summed)
    total = total.reshape(-1)
    if normalize:
        total = total / (math.prod(shape) // total.size)
    return total


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
    # A Python float must become float64 directly: tf.cast(0.9, float64) would go
    # through float32 (0.8999999762) and keep a different count than keep_count.
    if not tf.is_tensor(sparsity):
        sparsity = tf.constant(float(sparsity), tf.float64)
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
    lo = tf.where(tf.equal(hi, b), tf.bitwise.bitwise_and(bits, 0xFFFF), 0)
    c2 = tf.math.bincount(lo, minlength=65536, maxlength=65536, dtype=tf.int64)
    c2 = c2 - tf.one_hot(0, 65536, dtype=tf.int64) * (n - c1[b])  # drop other buckets
    cum2 = tf.cumsum(c2, reverse=True) + above
    l = tf.cast(tf.reduce_sum(tf.cast(cum2 >= k, tf.int32)) - 1, tf.int32)
    t = tf.bitwise.bitwise_or(tf.bitwise.left_shift(b, 16), l)
    need = k - (cum2[l] - c2[l])  # tied items to keep; c2[l] items tie at t

    def keep_all_ties():  # the usual case: no extra ties, no O(n) ranking needed
        return bits >= t

    def keep_first_ties():
        eq = tf.equal(bits, t)
        rank = tf.cumsum(tf.cast(eq, tf.int32))
        return tf.logical_or(bits > t, tf.logical_and(eq, tf.cast(rank, tf.int64) <= need))

    return tf.cond(tf.equal(need, c2[l]), keep_all_ties, keep_first_ties)


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
