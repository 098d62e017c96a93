"""The NumPy kernel of the mask engine: exact top-k and unit scores on arrays and
on streams of blocks (files on disk).

`tfprune.h5` streams each tensor in blocks of `BLOCK_SIZE` elements through reused
buffers (`Scratch`) and never holds it whole: `topk_threshold_np` finds the keep
set of a stream of float32 scores exactly (`keep_bits_np` applies it block by
block), `unit_scores_chunked_np` sums squares block by block. `topk_keep_np` and
`unit_scores_np` run on the same code, so a file and an array give the same masks.
The keep set (k largest, ties by lowest flat index) is defined in
`tfprune.masks.policy`; `tfprune.masks.ops_kernel` computes the same sets with
`keras.ops` inside compiled train steps.
"""

import math

import numpy as np

__all__ = [
    "BLOCK_SIZE",
    "INF_BITS",
    "Scratch",
    "topk_keep_np",
    "weight_scores_np",
    "unit_scores_np",
    "score_bits_np",
    "topk_threshold_np",
    "keep_bits_np",
    "top1_index_np",
    "unit_lead_axes",
    "unit_scores_chunked_np",
    "reduce_axes",
    "unit_axes_order",
    "pairwise_rows",
    "UnitTree",
]


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


def reduce_axes(shape, unit_shape):
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


def unit_axes_order(shape, unit_shape):
    """`(perm, rows, units)`: a kernel of `shape` transposed by `perm` (reduced axes
    first, then the unit axes, each in order) and reshaped to `(rows, units)` is
    its canonical unit view: column u holds unit u's incoming weights in the
    kernel's C order."""
    axes = reduce_axes(shape, unit_shape)
    kept = tuple(i for i in range(len(shape)) if i not in axes)
    rows = math.prod(shape[i] for i in axes)
    return axes + kept, rows, math.prod(shape) // max(rows, 1)


def pairwise_rows(x, add, pad, reshape=np.reshape):
    """Sum the rows of a `(m, units)` array by the fixed pairwise tree of
    `UnitTree`: `add(a, b)` adds two arrays, `pad(x)` appends one zero row."""
    while x.shape[0] > 1:
        if x.shape[0] % 2:
            x = pad(x)
        half = x.shape[0] // 2
        pairs = reshape(x, (half, 2, *x.shape[1:]))
        x = add(pairs[:, 0], pairs[:, 1])
    return x[0]


class UnitTree:
    """Unit scores `Σ w²` (float64) summed in one fixed order, whatever the cut.

    Unit u's squares, in the kernel's C order (`unit_axes_order`), are summed by a
    pairwise tree: level 0 is the rows, each level adds rows `2j` and `2j + 1` of
    the level below (a level of odd length gets a zero row, which adds exactly).
    Every implementation follows the same tree (`pairwise_rows` here and in
    `policy.OpsKernel.unit_scores`), so files, one-shot masks and training on every
    backend and compile mode get the same float64 bits, hence the same ranking.
    `push(rows)` takes the rows in order, in pieces of any size: a run of `2^c`
    rows starting at a multiple of `2^c` is one node of level c, summed at once.
    """

    def __init__(self, units):
        self.units = units
        self.count = 0  # rows pushed so far
        self.pending = {}  # level -> the node waiting for its right sibling

    def _node(self, level, value):
        while level in self.pending:
            value = self.pending.pop(level) + value
            level += 1
        self.pending[level] = value

    def push(self, rows):
        rows = np.asarray(rows).reshape(-1, self.units)
        i = 0
        while i < len(rows):
            c = 0
            while self.count % (2 << c) == 0 and i + (2 << c) <= len(rows):
                c += 1
            run = np.square(rows[i : i + (1 << c)], dtype=np.float64)
            self._node(c, pairwise_rows(run, np.add, _pad_np) if len(run) > 1 else run[0])
            i += 1 << c
            self.count += 1 << c

    def total(self):
        if not self.pending:
            return np.zeros(self.units)
        levels = sorted(self.pending)
        value, level = self.pending[levels[0]], levels[0]
        for nxt in levels[1:]:  # a lone node is carried up (plus zero) to the next one
            value, level = self.pending[nxt] + value, nxt + 1
        return value


def _pad_np(x):
    return np.concatenate([x, np.zeros((1, *x.shape[1:]), x.dtype)])


def unit_scores_np(kernel, unit_shape, normalize=False):
    """Per-unit sum of squares of `kernel`, flat float64 vector of `prod(unit_shape)`.

    `unit_shape` is the shape of a unit mask broadcast against the kernel, aligned
    to its last axes: `(units,)` for Dense/Conv kernels, `(units, 1)` for a
    transposed convolution's `(..., filters, in)` kernel, `(in, multiplier)` for a
    depthwise kernel. With `normalize=True` the sum is divided by the fan-in.
    Summed in `UnitTree`'s fixed order, block by block as the h5 path does, so a
    file, an array and a training step score bit for bit alike.
    """
    kernel = np.asarray(kernel)
    lead = unit_lead_axes(kernel.shape, unit_shape)
    rows = kernel.reshape(-1, *kernel.shape[lead:]) if lead else kernel[None]
    step = max(1, BLOCK_SIZE // max(1, math.prod(kernel.shape[lead:])))
    blocks = (rows[i : i + step] for i in range(0, len(rows), step))
    return unit_scores_chunked_np(blocks, kernel.shape, unit_shape, normalize)


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
    axes = reduce_axes(shape, unit_shape)
    return next((i for i in range(len(shape)) if i not in axes), len(shape))


def unit_scores_chunked_np(blocks, shape, unit_shape, normalize=False, scratch=None):
    """`unit_scores_np` of a kernel of `shape` given as consecutive row blocks.

    With `lead = unit_lead_axes(shape, unit_shape)`, the kernel is viewed as rows
    of shape `shape[lead:]` (C order) and `blocks` yields arrays of shape
    `(rows, *shape[lead:])` covering them in order. Each block is put in the
    canonical unit view (`unit_axes_order`: its reduced axes first) and pushed
    into a `UnitTree`, so the result does not depend on where the kernel is cut.
    """
    axes = reduce_axes(shape, unit_shape)
    lead = unit_lead_axes(shape, unit_shape)
    inner = tuple(shape[lead:])
    # inside a block: the block's row axis, then the reduced axes after `lead`
    inner_reduced = tuple(1 + a - lead for a in axes if a >= lead)
    inner_kept = tuple(1 + i for i in range(len(inner)) if 1 + i not in inner_reduced)
    units = math.prod(inner[i - 1] for i in inner_kept)
    tree = UnitTree(units)
    for block in blocks:
        block = np.asarray(block).reshape(-1, *inner)
        if inner_reduced:
            block = np.transpose(block, (0, *inner_reduced, *inner_kept))
        tree.push(block.reshape(-1, units))
    total = tree.total().reshape(-1)
    if normalize:
        total = total / (math.prod(shape) // total.size)
    return total
