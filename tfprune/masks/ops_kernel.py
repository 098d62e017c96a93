"""The `keras.ops` kernel of the mask engine: the keep set of `tfprune.masks.policy`
computed inside compiled train steps, on every Keras backend and under XLA.

Static shapes only, no data-dependent sizes, no Python control flow on values, so
the same code runs in a TensorFlow graph, under `jit_compile=True`, in JAX's
stateless jitted step and eagerly in torch.

- `topk_keep(scores, k)`: the `k` largest scores, ties by lowest flat index.
  float32 vectors longer than `SORT_LIMIT` use an O(n) two-level radix select on
  the scores' bit patterns (non-negative IEEE floats order like their int32 bits):
  a histogram of the high 16 bits (32768 static buckets: `ops.segment_sum` under
  XLA and JAX, `ops.bincount` in TensorFlow graphs and torch) finds the bucket of
  the k-th largest, a histogram of the low 16 bits inside that bucket finds it
  exactly. Eager torch (no compiled step to keep static) runs the same select
  with data-dependent sizes instead (`_topk_radix_eager_torch`: the second
  histogram counts only the threshold's bucket), 1.8x faster there.
  tfmot sorts every weight instead. Shorter vectors and
  other dtypes (float64 unit scores) sort their values and take the k-th.
- Ties at the threshold are kept lowest index first (a cumulative count of the
  tied items), only when there are more tied items than places.
- Memory: vectors longer than `CHUNK` are histogrammed `CHUNK` items at a time
  (a `fori_loop` over static-size slices), so no full-length integer temporary
  exists; the peak beyond the scores is the boolean keep mask (n bytes) plus
  chunk-sized temporaries. Tied thresholds find the position of the last tied item
  kept chunk by chunk too and compare row/column indices of the vector viewed as a
  grid by broadcasting; only a length with no divisor in [2, 4096] (a large prime)
  takes a full-length cumulative sum.

- torch's CPU `where` runs a branchy loop: 2.3 ms for a 1000x1000 float32 kernel
  under a half-dense random mask. `where_kept` and `masked_min` select by the bit
  patterns there instead (an integer multiply or and/or: 0.1-0.4 ms), with the
  same values `where` gives.

NumPy computes the same sets in `tfprune.masks.numpy_kernel` (tested bit for bit).
"""

import keras
from keras import ops

from tfprune import _compat

__all__ = ["SORT_LIMIT", "CHUNK", "score_dtype", "topk_keep", "keep_count", "masked_min",
           "where_kept", "torch_mask_", "WidenedMask", "torch_eager"]

SORT_LIMIT = 1 << 16
CHUNK = 1 << 20  # items per histogram slice of a long vector (4 MiB of int32)


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


def _chunked(flat, n, chunk, body, init):
    """`fori_loop` of `body(x, valid, start, carry) -> carry` over `chunk`-sized
    slices of `flat` (static sizes: the last slice starts at `n - chunk` and
    `valid` marks the items that no earlier slice covered)."""
    steps = -(-n // chunk)
    offsets = ops.arange(chunk, dtype="int32")

    def step(i, carry):
        first = i * chunk
        start = ops.minimum(first, n - chunk)
        x = ops.slice(flat, ops.reshape(start, (1,)), (chunk,))
        return body(x, offsets + start >= first, start, carry)

    return ops.fori_loop(0, steps, step, init)


def _counts(ids, buckets):
    """How many of `ids` (int32 in `[0, buckets]`) fall in each of `buckets + 1` bins.
    torch, and TensorFlow outside XLA, count with `bincount` (Keras's torch
    `segment_sum` scatters floats, ~4x slower; TensorFlow's is 5x slower for 1M
    items); XLA and JAX with `segment_sum` (static size: XLA compiles it, not
    TensorFlow's `DenseBincount`)."""
    backend = keras.backend.backend()
    if backend == "torch" or (backend == "tensorflow" and not _compat.tf_xla_tracing()):
        return ops.cast(ops.bincount(ids, minlength=buckets + 1), "int32")
    return ops.segment_sum(ops.ones_like(ids), ids, num_segments=buckets + 1)


def _histogram(flat, n, ids_of, buckets, chunk):
    """Counts of `ids_of(flat)` in `[0, buckets)` (ids == buckets are not counted)."""
    if n <= chunk:
        return _counts(ids_of(flat), buckets)[:buckets]

    def body(x, valid, start, hist):
        return hist + _counts(ops.where(valid, ids_of(x), buckets), buckets)

    return _chunked(flat, n, chunk, body, ops.zeros((buckets + 1,), "int32"))[:buckets]


def _last_tied_index(bits, t, need, n, chunk):
    """Flat index of the `need`-th item equal to `t` (need >= 1, and that many exist)."""

    def body(x, valid, start, carry):
        seen, pos = carry
        tied = ops.cast(ops.logical_and(ops.equal(x, t), valid), "int32")
        rank = ops.cumsum(tied) + seen
        hit = ops.logical_and(ops.equal(rank, need), ops.equal(tied, 1))
        found = ops.any(hit)
        at = start + ops.cast(ops.argmax(ops.cast(hit, "int32")), "int32")
        return seen + ops.sum(tied), ops.where(found, at, pos)

    init = (ops.zeros((), "int32"), ops.zeros((), "int32"))
    return _chunked(bits, n, min(chunk, n), body, init)[1]


def _grid_columns(n, widest=4096):
    """The largest divisor of `n` in [2, widest] (1 if there is none): `n` items
    viewed as rows of that many columns, in flat order."""
    for cols in range(min(n, widest), 1, -1):
        if n % cols == 0:
            return cols
    return 1


def _keep_first_ties_2d(bits, cols, t, need, chunk):
    """`_keep_first_ties` without full-length integer temporaries: the last kept
    tied item's position, then index comparisons of broadcast rows and columns of
    the flat vector viewed as `(n // cols, cols)`."""
    n = int(bits.shape[0])
    pos = _last_tied_index(bits, t, need, n, chunk)
    grid = ops.reshape(bits, (n // cols, cols))
    rows = ops.arange(n // cols, dtype="int32")[:, None]
    columns = ops.arange(cols, dtype="int32")[None, :]
    row, col = pos // cols, pos % cols
    upto = ops.logical_or(ops.less(rows, row),
                          ops.logical_and(ops.equal(rows, row), ops.less_equal(columns, col)))
    keep = ops.logical_or(ops.greater(grid, t), ops.logical_and(ops.equal(grid, t), upto))
    return ops.reshape(keep, (n,))


def _topk_radix(flat, k, chunk=None):
    n = int(flat.shape[0])
    chunk = CHUNK if chunk is None else chunk
    bits = ops.view(flat, "int32")
    c1 = _histogram(bits, n, lambda x: ops.right_shift(x, 16), 32768, chunk)
    cum1 = _at_least(c1)
    b = _count(cum1 >= k) - 1
    above = ops.take(cum1, b) - ops.take(c1, b)

    def low_ids(x):
        return ops.where(ops.equal(ops.right_shift(x, 16), b), ops.bitwise_and(x, 0xFFFF), 65536)

    c2 = _histogram(bits, n, low_ids, 65536, chunk)
    cum2 = _at_least(c2) + above
    low = _count(cum2 >= k) - 1
    t = ops.bitwise_or(ops.left_shift(b, 16), low)
    tied = ops.take(c2, low)
    need = k - (ops.take(cum2, low) - tied)
    cols = _grid_columns(n) if n > chunk else 1
    if cols > 1:
        ties = lambda: _keep_first_ties_2d(bits, cols, t, need, chunk)  # noqa: E731
    else:
        ties = lambda: _keep_first_ties(bits, t, ops.greater(bits, t), need)  # noqa: E731
    return ops.cond(ops.equal(need, tied), lambda: ops.greater_equal(bits, t), ties)


def torch_eager():
    """Whether this code runs eagerly on torch (Keras's torch `fit` without
    `jit_compile`): Python sees every step, so host-side work is cheaper than ops
    and sizes may depend on the data."""
    if keras.backend.backend() != "torch" or _compat.in_stateless_scope():
        return False
    import torch

    return not torch.compiler.is_compiling()


_FLOAT_INTS = {"float16": "int16", "bfloat16": "int16", "float32": "int32", "float64": "int64"}


def _torch_bits(x):
    """`x` (a float torch tensor) viewed as integers of its width, or None (other
    backends and dtypes, or autograd recording `x`)."""
    if keras.backend.backend() != "torch":
        return None
    ints = _torch_int_view(x.dtype)
    import torch

    if ints is None or (x.requires_grad and torch.is_grad_enabled()):
        return None
    return x.detach().view(ints)


def _torch_bytes(mask):
    import torch

    return ops.convert_to_tensor(mask).view(torch.uint8)


_TORCH_INT_VIEWS = {}  # torch float dtype -> the integer dtype of its width


def _torch_int_view(dtype):
    """The torch integer dtype as wide as the float `dtype`, or None."""
    ints = _TORCH_INT_VIEWS.get(dtype)
    if ints is None:
        name = _FLOAT_INTS.get(keras.backend.standardize_dtype(dtype))
        if name is None:
            return None
        import torch

        ints = _TORCH_INT_VIEWS[dtype] = getattr(torch, name)
    return ints


def torch_mask_(x, keep):
    """`where_kept(keep, x, in_place=True)` for eager torch tensors with little
    Python around the kernel (a pruned kernel's constraint runs it every step:
    12 us of Python instead of 29). `x`: a float tensor (autograd may track it:
    its storage is written through a detached view); `keep`: a bool tensor
    broadcasting to it. Returns `x`; other dtypes go through `where_kept`."""
    import torch

    ints = _torch_int_view(x.dtype)
    if ints is None:
        return where_kept(keep, x)
    x.detach().view(ints).mul_(keep.view(torch.uint8))
    return x


class WidenedMask:
    """`torch_mask_` for one pruned variable, with its bool mask widened once to
    the kernel's integer width and kept: torch widens the mask's bytes into a
    temporary at every call otherwise. The constraint masks the kernel after every
    optimizer step, and inside `fit` (weights and mask out of cache after Adam's
    pass) the widening is most of its cost: the seed MLP's 5 constraints took
    +1.02 ms of a 27.2 ms step through `torch_mask_`, +0.20 ms with widened
    masks (400 interleaved steps in one process).

    The widened copy is rebuilt whenever the mask's tensor is replaced or written
    in place (torch's version counter: Keras assigns variables with `copy_`). It
    costs the kernel's integer width per weight (4 bytes for float32), so only a
    mask of the kernel's own shape with at most `LIMIT` items is widened (64 MiB
    for float32); others go through `torch_mask_`."""

    LIMIT = 1 << 24

    def __init__(self):
        self._source = None
        self._version = None
        self._ints = None

    def __call__(self, x, keep):
        ints = _torch_int_view(x.dtype)
        if ints is None or keep.shape != x.shape or x.numel() > self.LIMIT:
            return torch_mask_(x, keep)
        if self._source is not keep or self._version != keep._version or self._ints.dtype != ints:
            self._ints = keep.to(ints)
            self._source, self._version = keep, keep._version
        x.detach().view(ints).mul_(self._ints)
        return x


def where_kept(keep, x, in_place=False, untracked=False):
    """`where(keep, x, 0)`: float `x` where the bool `keep` (broadcast to it) holds,
    +0.0 elsewhere (NaN included). On torch, `x`'s bits times `keep`'s 0/1 bytes,
    written into `x` (returned) when `in_place` and `x` is a float tensor outside
    autograd (a variable's value in the optimizer step); else a new tensor.

    `untracked`: no gradient flows through the result (a pruned kernel's
    constraint, after the optimizer's update). TensorFlow then also selects by bit
    patterns, `bitcast(bitcast(x, int) * cast(keep, int), float)`, when `keep` has
    `x`'s static shape, instead of `SelectV2` broadcasting the scalar 0: the seed
    MLP's five kernels took 0.83 ms against 1.05-1.14 a step in a graph (after a
    write of every kernel) in one machine state, and the same as `where` within
    noise in another (benchmarks/README.md). The bits, and so the values, are
    `where`'s."""
    value = ops.convert_to_tensor(x)
    bits = _torch_bits(value)
    if bits is not None:
        if in_place:
            torch_mask_(value, ops.convert_to_tensor(keep))
            return x
        return (bits * _torch_bytes(keep)).view(value.dtype)
    keep = ops.convert_to_tensor(keep)
    if untracked and keras.backend.backend() == "tensorflow":
        out = _tf_where_kept(keep, value)
        if out is not None:
            return out
    return ops.where(keep, value, ops.zeros((), value.dtype))


def _tf_where_kept(keep, value):
    """`where_kept` by bit patterns for a TensorFlow float tensor and a bool mask of
    its fully known shape; None otherwise (other dtypes, shapes or broadcasting)."""
    ints = _FLOAT_INTS.get(keras.backend.standardize_dtype(value.dtype))
    if ints is None or not value.shape.is_fully_defined() or keep.shape != value.shape:
        return None
    import tensorflow as tf

    kept = tf.bitcast(value, ints) * tf.cast(keep, ints)
    return tf.bitcast(kept, value.dtype)


_INF32_BITS = 0x7F800000  # float32 +inf; non-negative float32 values order like their bits


def _min_where(keep, values, inf):
    bits = _torch_bits(values)
    if bits is None or keras.backend.standardize_dtype(values.dtype) != "float32":
        return ops.min(ops.where(keep, values, inf))
    # Dropped items become `bits | inf` (>= inf's bits: their sign bit is clear),
    # in one int32 temporary updated in place (each fresh full-size temporary of
    # torch's CPU allocator costs its page faults: 5 of them made this 4 ms of a
    # 64 ms seed-MLP update, now 0.3-0.4 ms).
    dropped = _torch_bytes(keep).to(bits.dtype).sub_(1).bitwise_and_(_INF32_BITS)
    smallest = dropped.bitwise_or_(bits).amin().clamp_max_(_INF32_BITS)
    return smallest.view(values.dtype)


def masked_min(values, keep):
    """`min(values[keep])` (inf when nothing is kept) of flat float32 vectors;
    `CHUNK` items at a time for long ones (no full-length temporary)."""
    n = int(values.shape[0])
    inf = ops.convert_to_tensor(float("inf"), "float32")
    if n <= CHUNK:
        return _min_where(keep, values, inf)

    def body(x, valid, start, smallest):
        k = ops.slice(keep, ops.reshape(start, (1,)), (CHUNK,))
        return ops.minimum(smallest, _min_where(ops.logical_and(k, valid), x, inf))

    return _chunked(values, n, CHUNK, body, inf)


def _topk_radix_eager_torch(flat, k):
    """`_topk_radix` for eager torch, where data-dependent sizes cost nothing: the
    same two histograms and the same keep set, but the second histogram counts
    only the items of the threshold's bucket (gathered from each chunk) and the
    host reads the scalars. 1.8x faster than the static-shape form (3.6 vs 6.5
    ms for 784,000 scores). Chunks of `CHUNK` items bound the temporaries; the
    keep mask (n bytes) is the one full-length result."""
    import torch

    n = int(flat.shape[0])
    bits = flat.view(torch.int32)
    k = int(k)
    chunk = CHUNK
    starts = range(0, n, chunk)
    c1 = None
    for s in starts:
        h = torch.bincount(bits[s:s + chunk] >> 16, minlength=32768)
        c1 = h if c1 is None else c1 + h
    cum1 = _at_least(c1)
    b = int(torch.count_nonzero(cum1 >= k)) - 1
    above = int(cum1[b] - c1[b])
    low = torch.cat([x[(x >> 16) == b] for x in (bits[s:s + chunk] for s in starts)])
    c2 = torch.bincount(low & 0xFFFF, minlength=65536)
    cum2 = _at_least(c2) + above
    lo = int(torch.count_nonzero(cum2 >= k)) - 1
    t = (b << 16) | lo
    tied = int(c2[lo])
    need = k - (int(cum2[lo]) - tied)
    if need == tied:
        return bits >= t
    keep = bits > t
    for s in starts:  # the first `need` tied items, lowest index first
        if need == 0:
            break
        eq = bits[s:s + chunk] == t
        count = int(torch.count_nonzero(eq))
        if count > need:
            eq &= torch.cumsum(eq, 0, dtype=torch.int32) <= need
            count = need
        keep[s:s + chunk] |= eq
        need -= count
    return keep


def topk_keep(scores, k):
    """Boolean mask of the `k` largest `scores` (ties: lowest flat index first).

    `scores` are non-negative and finite (float32 or float64); `k` an int or an
    int32 scalar tensor, clipped to [1, n].
    """
    flat = ops.reshape(scores, (-1,))
    n = int(flat.shape[0])
    k = ops.clip(ops.cast(k, "int32"), 1, n)
    if n > SORT_LIMIT and keras.backend.standardize_dtype(flat.dtype) == "float32":
        keep = _topk_radix_eager_torch(flat, k) if torch_eager() else _topk_radix(flat, k)
    else:
        keep = _topk_sorted(flat, k)
    return ops.reshape(keep, ops.shape(scores))
