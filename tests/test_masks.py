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


@pytest.mark.parametrize("bad", [1.0, -0.5, "x", None], ids=str)
def test_select_np_rejects_bad_sparsity(bad):
    with pytest.raises(ValueError, match="Argument `sparsity` must be"):
        masks.select_np([np.ones(3)], bad)


def test_bad_scope_and_round_to_raise():
    with pytest.raises(ValueError, match="Received: scope='model'"):
        masks.select_np([np.ones(3)], 0.5, scope="model")
    with pytest.raises(ValueError, match="Received: round_to=0"):
        masks.check_round_to(0)
