"""The mask engine: which weights, units or blocks survive at a given sparsity.

Pure math, no Keras layers, in stages:

- `counts`: how many items are kept (`keep_count`, `round_to`, global floors) and
  the argument checks every floor shares;
- `granularity`: how a kernel is scored and how a keep vector becomes its mask
  (`Weight`, `Unit`, `Block`, `MByN`);
- `policy`: the selection rule (exact counts, ties by lowest flat index, layer or
  global scope), written once over a kernel interface;
- `numpy_kernel` (arrays, and files streamed block by block) and `ops_kernel`
  (`keras.ops`, compiled train steps on every backend and under XLA): the two
  implementations, identical bit for bit.

`select_np` / `select` are the policy on NumPy / `keras.ops`; `weight_scores_np`,
`unit_scores_np` (and `weight_scores`, `unit_scores` on tensors) the scores.
"""

from tfprune.masks import counts, granularity, numpy_kernel, ops_kernel, policy
from tfprune.masks.counts import (
    SCOPES,
    check_int,
    check_round_to,
    check_scope,
    check_sparsity,
    global_keep_count,
    keep_count,
    round_keep_count,
)
from tfprune.masks.granularity import (
    Block, Granularity, MByN, Unit, Weight, check_combination, check_m_by_n, check_pair,
)
from tfprune.masks.numpy_kernel import (
    BLOCK_SIZE,
    INF_BITS,
    Scratch,
    keep_bits_np,
    reduce_axes,
    score_bits_np,
    top1_index_np,
    topk_keep_np,
    topk_threshold_np,
    unit_lead_axes,
    unit_scores_chunked_np,
    unit_scores_np,
    weight_scores_np,
)
from tfprune.masks.ops_kernel import topk_keep

__all__ = [
    "SCOPES", "keep_count", "round_keep_count", "global_keep_count", "check_sparsity",
    "check_scope", "check_round_to", "check_int",
    "Granularity", "Weight", "Unit", "Block", "MByN", "check_m_by_n", "check_pair",
    "check_combination",
    "select_np", "select", "topk_keep_np", "topk_keep", "weight_scores_np", "weight_scores",
    "unit_scores_np", "unit_scores", "nonfinite_count_np",
    "Scratch", "BLOCK_SIZE", "INF_BITS", "score_bits_np", "topk_threshold_np", "keep_bits_np",
    "top1_index_np", "unit_lead_axes", "unit_scores_chunked_np", "reduce_axes",
    "counts", "granularity", "policy", "numpy_kernel", "ops_kernel",
]


def select_np(score_vectors, sparsity, scope="layer", round_to=1, min_keep=1):
    """Keep masks (flat bool arrays) for a list of flat score vectors, in NumPy
    (`policy.select` with the NumPy kernel; see `tfprune.masks.policy`)."""
    sparsity = check_sparsity(sparsity)
    return policy.select(policy.NUMPY, score_vectors, sparsity, scope, check_round_to(round_to),
                         min_keep)


def select(score_vectors, sparsity, scope="layer", round_to=1, min_keep=1):
    """`select_np` on `keras.ops` tensors; `sparsity` may be a scalar tensor."""
    return policy.select(policy.OPS, score_vectors, sparsity, scope, check_round_to(round_to),
                         min_keep)


def weight_scores(w):
    """`|w|` as float32 (tensors)."""
    return Weight().scores(policy.OPS, w)


def unit_scores(kernel, unit_shape, normalize=False):
    """Per-unit sum of squares (tensors, `ops_kernel.score_dtype()`); see
    `unit_scores_np`."""
    s = policy.OPS.unit_scores(kernel, unit_shape)
    if normalize:
        s = s / float(Unit(unit_shape).fan_in(tuple(kernel.shape)))
    return s


def nonfinite_count_np(w):
    """Number of NaN / ±inf entries of an array."""
    import numpy as np

    w = np.asarray(w)
    return 0 if not np.issubdtype(w.dtype, np.floating) else int(w.size - np.count_nonzero(np.isfinite(w)))
