"""What each pruned tensor keeps: every call into `tfprune.masks` scoring and
selection is here, so another granularity plugs in at one place.

Two stages over an open file and a `plan.Plan`:

1. `decide(f, plan, options, scratch)` reads the tensors (block by block, through
   `stream`) and finds what to keep, exactly as `masks.select_np` does on whole
   arrays: for weights a keep set per ranking (`masks.topk_threshold_np` on the
   score bits of |w|; one ranking per tensor in layer scope, one of all tensors in
   global scope, each tensor's best weight protected); for units a bool mask per
   layer (`masks.unit_scores_chunked_np` sums of squares, `masks.select_np`).
   First it refuses NaN / inf weights (`check_finite`): a non-finite value has
   no magnitude to rank by.
2. `apply(f, plan, decisions, options, write, scratch)` zeroes, block by block,
   what the decisions do not keep (`write=False`: only counts, a dry run) and
   returns the report rows.

Re-reading a tensor costs little (the page cache); fresh memory costs more than
the math, so each statistic is a pass of its own through reused buffers.

Example (a dataset of 6 weights, half pruned, the lowest index wins the tie):

>>> import h5py, io, numpy as np
>>> from tfprune.h5 import formats, options, plan as plan_lib
>>> f = h5py.File(io.BytesIO(), "w")
>>> f["w"] = np.array([[3.0, -1.0, 2.0], [2.0, 0.5, -4.0]], np.float32)
>>> var = formats.Var("/w", "kernel", (2, 3), np.dtype("float32"), 0)
>>> p = plan_lib.Plan(jobs=[("d", [var])], kept=[])
>>> opts, scratch = options.check_options(0.5), masks.Scratch()
>>> rows = apply(f, p, decide(f, p, opts, scratch, "m.h5"), opts, True, scratch)
>>> f["w"][()]
array([[ 3.,  0.,  2.],
       [ 0.,  0., -4.]], dtype=float32)
>>> [(r.layer, r.zeros_after) for r in rows]
[('d', 3)]
"""

import dataclasses
import math

import numpy as np

from tfprune import masks
from tfprune import registry
from tfprune.h5 import report
from tfprune.h5 import stream

__all__ = ["check_finite", "decide", "apply"]


# ----------------------------------------------------------------------------- checks


def check_finite(f, plan, path, scratch):
    """Refuse NaN / inf in any tensor `plan` ranks: a ValueError naming the file, the
    layer, the tensor and how many values are not finite. Nothing is written."""
    for layer, v in plan.scored():
        bad = stream.nonfinite(f[v.path], scratch)
        if bad:
            raise ValueError(
                "Argument `path` must hold finite weights to prune by magnitude. Received: "
                f"path={path!r} (layer {layer!r}, weight {report.tensor_name(v)!r}: "
                f"{bad} of {int(np.prod(v.shape))} values are NaN or inf); nothing was written"
            )


# ----------------------------------------------------------------------------- weights


def _scored_blocks(datasets, protect, scratch):
    """Yields `(i, selection, block, score bits)` over the blocks of `datasets` in
    turn (`masks.score_bits_np` of |w|); the item at flat index `protect[i]` (or
    None) of dataset i scores +inf, as `select_np` protects each tensor's best
    weight in global scope."""
    for i, (ds, p) in enumerate(zip(datasets, protect)):
        start = 0
        for sel, block in stream.read_blocks(ds, ds.ndim, scratch):
            bits = masks.score_bits_np(block.reshape(-1), scratch.get("bits", block.size, np.int32))
            if p is not None and 0 <= p - start < bits.size:
                bits[p - start] = masks.INF_BITS
            start += bits.size
            yield i, sel, block, bits


@dataclasses.dataclass
class _Ranking:
    """Weight tensors ranked as one flat vector (their concatenation, in order) and
    its keep set: the `(t, ties)` of `masks.topk_threshold_np`. `protect` holds,
    per tensor, the flat index of the weight scored +inf (or None)."""

    paths: list
    protect: list
    t: int
    ties: int


def _ranking(datasets, protect, k, scratch):
    """The `_Ranking` keeping the `k` best weights of `datasets` (exact, ties by
    index, as `masks.topk_keep_np` on their concatenation)."""
    def chunks():
        return (bits for *_, bits in _scored_blocks(datasets, protect, scratch))

    n = sum(ds.size for ds in datasets)
    t, ties = masks.topk_threshold_np(chunks, k, n, scratch)
    return _Ranking([ds.name for ds in datasets], protect, t, ties)


def _weight_rankings(f, targets, sparsity, scope, scratch):
    """`select_np` of the weight scores of `targets` (`Var`s) as `_Ranking`s: one
    per tensor (layer scope), or one of all, each protecting its best weight."""
    datasets = [f[v.path] for v in targets]
    if scope == "layer":
        return [_ranking([ds], [None], masks.keep_count(ds.size, sparsity), scratch)
                for ds in datasets]
    protect = [
        masks.top1_index_np(bits for *_, bits in _scored_blocks([ds], [None], scratch))
        for ds in datasets
    ]
    k = masks.global_keep_count([ds.size for ds in datasets], sparsity)
    return [_ranking(datasets, protect, k, scratch)]


def _apply_ranking(f, ranking, write, scratch):
    """Zero the weights `ranking` does not keep, block by block; returns the nonzero
    counts `[before, after]` of each of its tensors."""
    datasets = [f[path] for path in ranking.paths]
    ties = ranking.ties
    counts = np.zeros((len(datasets), 2), np.int64)
    for i, sel, block, bits in _scored_blocks(datasets, ranking.protect, scratch):
        keep = scratch.get("keep", bits.size, np.int32).reshape(block.shape)
        ties = masks.keep_bits_np(bits, ranking.t, ties, keep.reshape(-1))
        counts[i] += stream.mask_block(datasets[i], sel, block, keep, write, scratch)
    return counts


# ----------------------------------------------------------------------------- units


def _unit_cut(ds, kind):
    """`(unit mask shape, lead)`: `ds`'s unit shape and how many leading axes it
    may be cut along (`masks.unit_lead_axes`)."""
    ushape = registry.unit_shape(kind, ds.shape)
    return ushape, masks.unit_lead_axes(ds.shape, ushape)


def _unit_scores(f, kernel, kind, scope, scratch):
    ds = f[kernel.path]
    ushape, lead = _unit_cut(ds, kind)
    rows = (b.reshape(-1, *ds.shape[lead:]) for _, b in stream.read_blocks(ds, lead, scratch))
    return masks.unit_scores_chunked_np(rows, ds.shape, ushape, scope == "global", scratch)


def _unit_keeps(f, jobs, sparsity, scope, round_to, scratch):
    """`select_np` of the unit scores of `jobs`: a bool mask per layer, each layer
    ranked on its own (layer scope) or all together."""
    scores = [_unit_scores(f, k, kind, scope, scratch) for _, (k, kind, _) in jobs]
    if scope == "layer":
        return [masks.select_np([s], sparsity, "layer", round_to=round_to)[0] for s in scores]
    return masks.select_np(scores, sparsity, "global", round_to=round_to)


def _apply_units(f, name, target, keep, write, scratch):
    kernel, kind, bias = target
    ushape, lead = _unit_cut(f[kernel.path], kind)
    keep = keep.astype(np.int32)  # an int mask multiplies the bits faster than bools
    counts = stream.mask_dataset(f[kernel.path], lead, keep.reshape(ushape), write, scratch)
    rows = [report.row(name, kernel, *counts)]
    if bias is not None:
        counts = stream.mask_dataset(f[bias.path], 0, keep, write, scratch)
        rows.append(report.row(name, bias, *counts))
    return rows


# ----------------------------------------------------------------------------- blocks, m:n


def _row_chunks(ds, multiple, scratch):
    """Yields `(selection, chunk)` of a dataset cut into runs of whole rows along
    its first axis (a multiple of `multiple` rows each, about `masks.BLOCK_SIZE`
    elements), so no block of `multiple` rows spans two chunks."""
    per_row = math.prod(ds.shape[1:])
    step = max(multiple, masks.BLOCK_SIZE // max(per_row, 1) // multiple * multiple)
    dtype = ds.dtype.newbyteorder("=")
    for start in range(0, ds.shape[0], step):
        stop = min(start + step, ds.shape[0])
        chunk = scratch.get("block", (stop - start) * per_row, dtype).reshape(
            stop - start, *ds.shape[1:])
        sel = (slice(start, stop),)
        ds.read_direct(chunk, source_sel=sel)
        yield sel, chunk


def _check_pattern(plan, pattern, f, path):
    """Every target can take the pattern (blocks: 2-D weights), else ValueError."""
    for layer, v in plan.scored():
        try:
            pattern.check(tuple(f[v.path].shape), f"{layer}/{report.tensor_name(v)}")
        except ValueError as e:
            raise ValueError(f"{e} in path={path!r}; nothing was written") from None


def _block_scores(ds, block, scratch):
    """`block.scores` of a 2-D dataset, read in chunks of whole block rows."""
    return np.concatenate([block.scores(masks.policy.NUMPY, chunk).copy()
                           for _, chunk in _row_chunks(ds, block.block_size[0], scratch)])


def _block_keeps(f, targets, sparsity, scope, block, scratch):
    scores = [_block_scores(f[v.path], block, scratch) for v in targets]
    return masks.select_np(scores, sparsity, scope)


def _apply_blocks(f, v, keep, block, write, scratch):
    """Zero the blocks of `v` that `keep` (one bool per block, row-major) does not keep."""
    ds = f[v.path]
    grid_cols = -(-ds.shape[1] // block.block_size[1])
    counts = np.zeros(2, np.int64)
    for sel, chunk in _row_chunks(ds, block.block_size[0], scratch):
        first = sel[0].start // block.block_size[0]
        rows = -(-chunk.shape[0] // block.block_size[0])
        part = keep[first * grid_cols:(first + rows) * grid_cols]
        mask = block.expand(masks.policy.NUMPY, part, chunk.shape).astype(np.int32)
        counts += stream.mask_block(ds, sel, chunk, mask, write, scratch)
    return counts


def _apply_m_by_n(f, v, pattern, write, scratch):
    """Zero the `m` smallest of every `n` consecutive weights along the input axis
    (the second-last axis): chunks of whole `n`-row groups (2-D) or of whole
    `(in, out)` slabs (convolutions), so no group spans two chunks."""
    ds = f[v.path]
    chunks = (_row_chunks(ds, pattern.n, scratch) if ds.ndim == 2
              else stream.read_blocks(ds, ds.ndim - 2, scratch))
    counts = np.zeros(2, np.int64)
    for sel, chunk in chunks:
        mask = pattern.mask(masks.policy.NUMPY, chunk).astype(np.int32)
        counts += stream.mask_block(ds, sel, chunk, mask, write, scratch)
    return counts


# ----------------------------------------------------------------------------- stages


def decide(f, plan, options, scratch, path):
    """What to keep, from the data in `f` (`path` names it in errors): `_Ranking`s
    (weights) or unit masks (units), after `check_finite`."""
    check_finite(f, plan, path, scratch)
    pattern = options.pattern
    if pattern is not None:
        _check_pattern(plan, pattern, f, path)
    if options.granularity == "weight":
        targets = [v for _, vs in plan.jobs for v in vs]
        if isinstance(pattern, masks.MByN):
            return None  # a fixed pattern: nothing to rank
        if isinstance(pattern, masks.Block):
            return _block_keeps(f, targets, options.sparsity, options.scope, pattern, scratch)
        return _weight_rankings(f, targets, options.sparsity, options.scope, scratch)
    return _unit_keeps(f, plan.jobs, options.sparsity, options.scope, options.round_to,
                       scratch)


def apply(f, plan, decisions, options, write, scratch):
    """Zero in `f` what `decisions` (from `decide`) does not keep, writing it back
    with `write` (else a dry run: only counted); returns the report rows."""
    if options.granularity == "weight":
        targets = [(name, v) for name, vs in plan.jobs for v in vs]
        pattern = options.pattern
        if isinstance(pattern, masks.MByN):
            counts = [_apply_m_by_n(f, v, pattern, write, scratch) for _, v in targets]
        elif isinstance(pattern, masks.Block):
            counts = [_apply_blocks(f, v, keep, pattern, write, scratch)
                      for (_, v), keep in zip(targets, decisions)]
        else:
            counts = [c for ranking in decisions
                      for c in _apply_ranking(f, ranking, write, scratch)]
        return [report.row(name, v, *c) for (name, v), c in zip(targets, counts)]
    rows = []
    for (name, target), keep in zip(plan.jobs, decisions):
        rows += _apply_units(f, name, target, keep, write, scratch)
    return rows
