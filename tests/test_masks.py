import numpy as np
import pytest
import tensorflow as tf

from tfprune import masks


def np_and_tf(scores, k):
    a = masks.topk_keep_np(scores, k)
    b = masks.topk_keep(tf.constant(scores), k).numpy()
    return a, b


@pytest.mark.parametrize("n", [1, 2, 5, 10, 97, 1000, 4099], ids=lambda n: f"n{n}")
@pytest.mark.parametrize("sparsity", [0.0, 0.25, 0.5, 0.9, 0.95, 0.999], ids=lambda s: f"s{s}")
def test_exactly_n_minus_k_pruned_with_random_weights(n, sparsity, rng):
    w = rng.standard_normal(n).astype(np.float32)
    k = masks.keep_count(n, sparsity)
    a, b = np_and_tf(np.abs(w), k)
    assert a.sum() == k and (a == b).all()
    assert np.abs(w)[a].min() >= np.abs(w)[~a].max(initial=0)


@pytest.mark.parametrize("sparsity", [0.1, 0.5, 0.9], ids=lambda s: f"s{s}")
def test_ties_are_pruned_exactly_lowest_index_kept(sparsity):
    # tfmot keeps every weight tied at the threshold: all-equal weights at 50% -> 0 pruned.
    w = np.full(1000, 0.25, np.float32)
    k = masks.keep_count(1000, sparsity)
    a, b = np_and_tf(w, k)
    assert a.sum() == k and (a == b).all()
    assert a[:k].all() and not a[k:].any()


def test_ties_mixed_with_distinct_values(rng):
    w = rng.integers(0, 4, size=(37, 11)).astype(np.float32)
    for s in (0.2, 0.5, 0.77):
        k = masks.keep_count(w.size, s)
        a, b = np_and_tf(w, k)
        assert a.sum() == k and (a == b).all()
        assert w[a].min() >= w[~a].max()


def test_keep_count_rounds_half_to_even_and_keeps_one():
    assert masks.keep_count(10, 0.95) == 1  # round(0.5) == 0 -> at least one kept
    assert masks.keep_count(5, 0.9) == 1
    assert masks.keep_count(1000, 0.9) == 100
    assert masks.keep_count(3, 0.5) == 2  # round(1.5) == 2
    assert masks.keep_count(5, 0.5) == 2  # round(2.5) == 2 (half to even)
    assert masks.keep_count(7, 0.0) == 7


@pytest.mark.parametrize("k,n,m,expected", [(100, 1000, 8, 104), (96, 1000, 8, 96), (5, 6, 8, 6), (1, 10, 4, 4)],
                         ids=["up", "exact", "capped", "min"])
def test_round_keep_count_rounds_up_to_multiple(k, n, m, expected):
    assert masks.round_keep_count(k, n, m) == expected


def test_tf_select_matches_numpy_select_for_schedule_tensor(rng):
    vecs = [np.abs(rng.standard_normal(n)).astype(np.float32) for n in (30, 200, 7)]
    s = tf.constant(0.8, tf.float64)
    for scope in ("layer", "global"):
        a = masks.select_np(vecs, 0.8, scope)
        b = masks.select([tf.constant(v) for v in vecs], s, scope)
        assert all((x == y.numpy()).all() for x, y in zip(a, b))


def test_global_scope_ranks_across_tensors_and_keeps_one_each(rng):
    big = np.abs(rng.standard_normal(1000)).astype(np.float32) + 10.0
    small = np.abs(rng.standard_normal(100)).astype(np.float32)
    keep = masks.select_np([big, small], 0.5, "global")
    assert keep[0].sum() + keep[1].sum() == masks.keep_count(1100, 0.5)
    assert keep[1].sum() == 1  # protected: the largest of the small tensor
    assert keep[1][np.argmax(small)]


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_round_to_gives_multiples(scope, rng):
    vecs = [rng.random(100), rng.random(64), rng.random(20)]
    keep = masks.select_np(vecs, 0.7, scope, round_to=8)
    for v, kp in zip(vecs, keep):
        assert kp.sum() % 8 == 0 or kp.sum() == v.size
    tf_keep = masks.select([tf.constant(v) for v in vecs], 0.7, scope, round_to=8)
    assert all((a == b.numpy()).all() for a, b in zip(keep, tf_keep))


@pytest.mark.parametrize(
    "shape,unit_shape,axes",
    [((784, 100), (100,), (0,)), ((3, 3, 8, 16), (16,), (0, 1, 2)),
     ((3, 3, 16, 8), (16, 1), (0, 1, 3)), ((3, 3, 8, 2), (8, 2), (0, 1))],
    ids=["dense", "conv", "conv-transpose", "depthwise"],
)
def test_unit_scores_are_sum_of_squares_over_incoming_axes(shape, unit_shape, axes, rng):
    k = rng.standard_normal(shape).astype(np.float32)
    expected = (k.astype(np.float64) ** 2).sum(axis=axes).reshape(-1)
    np.testing.assert_allclose(masks.unit_scores_np(k, unit_shape), expected, rtol=1e-12)
    np.testing.assert_allclose(masks.unit_scores(tf.constant(k), unit_shape).numpy(), expected, rtol=1e-12)
    fan_in = k.size // expected.size
    np.testing.assert_allclose(masks.unit_scores_np(k, unit_shape, normalize=True), expected / fan_in)


def test_radix_select_handles_large_tensor_and_zeros(rng):
    w = rng.standard_normal(300_000).astype(np.float32)
    w[:50_000] = 0.0
    k = masks.keep_count(w.size, 0.9)
    a, b = np_and_tf(np.abs(w), k)
    assert (a == b).all() and a.sum() == k


@pytest.mark.parametrize("bad,error", [(1.0, ValueError), (-0.5, ValueError),
                                       (float("nan"), ValueError), ("x", TypeError),
                                       (None, TypeError), (True, TypeError)], ids=str)
def test_select_np_rejects_bad_sparsity(bad, error):
    with pytest.raises(error, match="Argument `sparsity` must be"):
        masks.select_np([np.ones(3)], bad)


def test_bad_scope_and_round_to_raise():
    with pytest.raises(ValueError, match="Received: scope='model'"):
        masks.select_np([np.ones(3)], 0.5, scope="model")
    with pytest.raises(ValueError, match="Received: round_to=0"):
        masks.check_round_to(0)


# ----------------------------------------------------------------------------- chunked


def reference_keep(scores, k):
    """The keep set of the module doc by a stable sort: the k largest, ties by index."""
    keep = np.zeros(scores.size, bool)
    keep[np.argsort(-scores.reshape(-1).astype(np.float64), kind="stable")[:k]] = True
    return keep


def chunked_keep(scores, k, chunk):
    """`topk_threshold_np` + `keep_bits_np` over `scores` cut into `chunk`-sized pieces."""
    bits = masks.score_bits_np(scores.reshape(-1))
    starts = range(0, bits.size, chunk)
    t, ties = masks.topk_threshold_np(lambda: (bits[i : i + chunk] for i in starts), k, bits.size)
    keep = np.zeros(bits.size, bool)
    for i in starts:
        ties = masks.keep_bits_np(bits[i : i + chunk], t, ties, keep[i : i + chunk])
    assert ties == 0
    return keep


def scores_of(kind, n, rng):
    """Non-negative float32 scores: distinct, tied, zero-heavy, near-equal, with inf."""
    if kind == "normal":
        return np.abs(rng.standard_normal(n)).astype(np.float32)
    if kind == "few-values":  # long tie runs everywhere
        return rng.integers(0, 4, n).astype(np.float32)
    if kind == "zero-heavy":  # a file pruned before: 95% zeros
        s = np.abs(rng.standard_normal(n)).astype(np.float32)
        s[rng.random(n) < 0.95] = 0.0
        return s
    if kind == "all-equal":
        return np.full(n, 0.25, np.float32)
    if kind == "ulps":  # neighbours one bit apart, denormals and inf
        s = (rng.integers(0, 5, n) + (1 << 23)).astype(np.int32).view(np.float32)
        s[rng.random(n) < 0.1] = np.float32(1e-42)
        s[rng.random(n) < 0.01] = np.inf
        return s
    raise ValueError(kind)


KINDS = ["normal", "few-values", "zero-heavy", "all-equal", "ulps"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "n,chunk", [(1, 1), (10, 3), (1000, 7), (1000, 1000), (70_000, 4099), (300_000, 65_536)],
    ids=lambda x: str(x),
)
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.999], ids=lambda s: f"s{s}")
def test_chunked_threshold_equals_the_keep_set(kind, n, chunk, sparsity, rng):
    scores = scores_of(kind, n, rng)
    k = masks.keep_count(n, sparsity)
    want = reference_keep(scores, k)
    np.testing.assert_array_equal(chunked_keep(scores, k, chunk), want)
    np.testing.assert_array_equal(masks.topk_keep_np(scores, k), want)


def test_tie_runs_split_by_chunk_boundaries_keep_lowest_indices():
    scores = np.array([3, 1, 1, 1, 1, 1, 1, 1, 2, 1, 1, 0], np.float32)
    for chunk in (1, 2, 3, 5):
        for k in range(1, scores.size + 1):
            np.testing.assert_array_equal(chunked_keep(scores, k, chunk), reference_keep(scores, k))


@pytest.mark.parametrize("kind", KINDS)
def test_radix_fallback_when_the_sample_misleads(kind, rng, monkeypatch):
    scores = scores_of(kind, 200_000, rng)
    k = masks.keep_count(scores.size, 0.9)
    want = reference_keep(scores, k)
    sample_bracket = masks.numpy_kernel._bracket
    for wrong in [
        lambda sample, k, n: (0, 0),  # the k-th largest above the range
        lambda sample, k, n: (0x7F800000, 0x7F800000),  # below it
        lambda sample, k, n: (0, 0x7FFFFFFF),  # everything inside: over the cap
    ]:
        monkeypatch.setattr(masks.numpy_kernel, "_bracket", wrong)
        np.testing.assert_array_equal(chunked_keep(scores, k, 10_000), want)
    monkeypatch.setattr(masks.numpy_kernel, "_bracket", sample_bracket)
    bits = masks.score_bits_np(scores)
    chunks = lambda: (bits[i : i + 7777] for i in range(0, bits.size, 7777))  # noqa: E731
    assert masks.numpy_kernel._radix_select(chunks, k, masks.Scratch()) == masks.topk_threshold_np(
        chunks, k, bits.size)


def test_topk_keep_np_still_ranks_negative_and_float64_scores(rng):
    for scores in (rng.standard_normal(1000).astype(np.float32), rng.standard_normal(1000),
                   np.array([0.0, -0.0, 1.0, -0.0], np.float32)):
        for k in (1, 2, scores.size // 2):
            np.testing.assert_array_equal(masks.topk_keep_np(scores, k), reference_keep(scores, k))


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_score_bits_are_the_float32_scores(dtype, rng):
    w = (rng.standard_normal(1000) * 100).astype(dtype)
    w[:3] = [0.0, -0.0, -np.inf]
    np.testing.assert_array_equal(masks.score_bits_np(w), masks.weight_scores_np(w).view(np.int32))


def test_top1_index_is_the_first_largest_across_chunks():
    bits = np.array([1, 5, 2, 5, 5, 0], np.int32)
    for chunk in (1, 2, 4, 6):
        assert masks.top1_index_np(bits[i : i + chunk] for i in range(0, 6, chunk)) == 1


def test_global_keep_count_keeps_the_floor_of_each_tensor():
    assert masks.global_keep_count([1000, 10], 0.999) == 2
    assert masks.global_keep_count([1000, 10], 0.5) == 505
    assert masks.global_keep_count([5, 5], 0.9, floor=4) == 8


UNIT_CASES = [
    pytest.param((784, 100), (100,), id="dense"),
    pytest.param((300, 3), (3,), id="dense-few-units"),
    pytest.param((3, 3, 8, 16), (16,), id="conv"),
    pytest.param((3, 3, 16, 8), (16, 1), id="conv-transpose"),
    pytest.param((3, 3, 8, 2), (8, 2), id="depthwise"),
    pytest.param((5, 7), (5, 7), id="nothing-reduced"),
]


def tree_sum_reference(k, unit_shape):
    """The unit-score order, written out: each unit's squares in the kernel's C order
    (reduced axes first), summed pairwise level by level, a zero added to odd levels."""
    aligned = (1,) * (k.ndim - len(unit_shape)) + tuple(unit_shape)
    axes = tuple(i for i, d in enumerate(aligned) if d == 1)
    kept = tuple(i for i in range(k.ndim) if i not in axes)
    x = np.transpose(k, axes + kept).reshape(-1, int(np.prod([k.shape[i] for i in kept])))
    level = [row.astype(np.float64) ** 2 for row in x]
    while len(level) > 1:
        if len(level) % 2:
            level.append(np.zeros_like(level[0]))
        level = [level[i] + level[i + 1] for i in range(0, len(level), 2)]
    return level[0]


@pytest.mark.parametrize("shape,unit_shape", UNIT_CASES)
def test_unit_scores_by_blocks_are_bit_for_bit_one_sum(shape, unit_shape, rng, monkeypatch):
    k = (rng.standard_normal(shape) * rng.uniform(0.01, 100, shape[-1])).astype(np.float32)
    whole = tree_sum_reference(k, unit_shape)
    aligned = (1,) * (len(shape) - len(unit_shape)) + unit_shape
    axes = tuple(i for i, d in enumerate(aligned) if d == 1)
    np.testing.assert_allclose(whole, np.sum(k.astype(np.float64) ** 2, axis=axes).reshape(-1),
                               rtol=1e-13)
    ops_scores = masks.policy.OPS.unit_scores(tf.constant(k), unit_shape).numpy()
    np.testing.assert_array_equal(ops_scores, whole)  # training sums in the same order
    lead = masks.unit_lead_axes(shape, unit_shape)
    rows = k.reshape(-1, *shape[lead:]) if lead else k[None]
    for step in sorted({1, 2, 5, max(1, len(rows) // 3), len(rows)}):
        blocks = (rows[i : i + step] for i in range(0, len(rows), step))
        got = masks.unit_scores_chunked_np(blocks, shape, unit_shape)
        np.testing.assert_array_equal(got, whole)
    for block_size in (1, 100, 1 << 20):
        monkeypatch.setattr(masks.numpy_kernel, "BLOCK_SIZE", block_size)
        np.testing.assert_array_equal(masks.unit_scores_np(k, unit_shape), whole)
        np.testing.assert_array_equal(masks.unit_scores_np(k, unit_shape, normalize=True),
                                      whole / (k.size // whole.size))


def test_in_graph_keep_count_of_a_float64_sparsity_matches_numpy_for_large_n():
    # 0.9 must not pass through float32 (0.8999999762 keeps two more of 102M).
    n = 25088 * 4096
    s = tf.constant(0.9, tf.float64)
    assert int(masks.ops_kernel.keep_count(n, s)) == masks.keep_count(n, 0.9) == 10276045


def test_tf_select_with_many_ties_beyond_threshold_keeps_lowest_indices():
    scores = np.zeros(1000, np.float32)
    scores[::7] = 2.0
    keep = masks.topk_keep(tf.constant(scores), 300).numpy()
    expected = masks.topk_keep_np(scores, 300)
    assert keep.sum() == 300 and (keep == expected).all()
