"""Property-based tests (hypothesis) of the mask math and the file path.

For random shapes, dtypes (float16/32/64, bfloat16 via ml_dtypes), sparsities and
tie patterns: exact keep counts, ties kept lowest flat index first, the NumPy
kernel equal to the `keras.ops` kernel (`policy.NUMPY` vs `policy.OPS`, also
beyond `ops_kernel.SORT_LIMIT` where the radix select runs), unit masks that zero
whole units, block and m:n patterns, and a file pruned by `tfprune.h5` (and a
model masked by `tfprune.oneshot`) equal to a trained wrapper's masks.

Expected keep sets come from a reference written here (a stable sort on
`(-score, index)`), never from the code under test. Example counts are bounded
(`settings(max_examples=...)`) and the database is off, so the file runs in well
under a minute and writes nothing.
"""

import math

import keras
import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from keras import ops

import tfprune
from tfprune import masks
from tfprune.masks import ops_kernel, policy

DTYPES = {"float16": np.float16, "float32": np.float32, "float64": np.float64,
          "bfloat16": ml_dtypes.bfloat16}
PATTERNS = ("distinct", "few_values", "all_equal", "many_zeros", "signed_ties")

FAST = settings(max_examples=40, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=5, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


def values(pattern, n, rng):
    """`n` float64 values with a tie pattern."""
    if pattern == "distinct":
        return rng.standard_normal(n)
    if pattern == "few_values":
        return rng.integers(-3, 4, n) * 0.5
    if pattern == "all_equal":
        return np.full(n, 0.75)
    if pattern == "many_zeros":
        return rng.standard_normal(n) * (rng.random(n) < 0.3)
    return rng.choice([-1.0, 1.0], n) * rng.integers(1, 4, n)  # signed_ties: |w| tied


@st.composite
def tensors(draw, min_dims=1, max_dims=3, max_side=12, dtypes=tuple(DTYPES)):
    shape = tuple(draw(st.lists(st.integers(1, max_side), min_size=min_dims,
                                max_size=max_dims)))
    dtype = DTYPES[draw(st.sampled_from(dtypes))]
    pattern = draw(st.sampled_from(PATTERNS))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return values(pattern, math.prod(shape), rng).astype(dtype).reshape(shape)


sparsities = st.one_of(
    st.floats(0.0, 1.0, exclude_max=True, allow_nan=False),
    st.sampled_from([0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999]),
)


def reference_keep(scores, k):
    """The `k` largest scores, ties by lowest flat index (a stable sort)."""
    flat = np.asarray(scores, np.float64).reshape(-1)
    order = np.lexsort((np.arange(flat.size), -flat))
    keep = np.zeros(flat.size, bool)
    keep[order[:k]] = True
    return keep


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


def _ops_select(vectors, sparsity, scope="layer", round_to=1):
    return [_np(k) for k in policy.select(policy.OPS, [ops.convert_to_tensor(v) for v in vectors],
                                          sparsity, scope, round_to, 1)]


# ---------------------------------------------------------------- weights


@FAST
@given(w=tensors(), sparsity=sparsities)
def test_weight_masks_keep_exactly_k_ties_by_lowest_index(w, sparsity):
    scores = masks.weight_scores_np(w)
    np.testing.assert_array_equal(scores, np.abs(w.astype(np.float32)))
    keep = masks.select_np([scores], sparsity)[0]
    k = masks.keep_count(w.size, sparsity)
    assert k == max(round(w.size * (1 - sparsity)), 1)  # python's round is half-even too
    assert int(np.count_nonzero(keep)) == k
    np.testing.assert_array_equal(keep.reshape(-1), reference_keep(scores, k))


@FAST
@given(ws=st.lists(tensors(max_side=8), min_size=1, max_size=3), sparsity=sparsities,
       scope=st.sampled_from(["layer", "global"]), round_to=st.sampled_from([1, 1, 2, 3]))
def test_numpy_and_ops_kernels_select_the_same_masks(ws, sparsity, scope, round_to):
    vectors = [masks.weight_scores_np(w).reshape(-1) for w in ws]
    want = masks.select_np(vectors, sparsity, scope, round_to)
    got = _ops_select(vectors, sparsity, scope, round_to)
    for g, v in zip(got, want):
        np.testing.assert_array_equal(g, v)
    sizes = [v.size for v in vectors]
    if scope == "layer":
        for v, n in zip(want, sizes):
            k = masks.round_keep_count(masks.keep_count(n, sparsity), n, round_to)
            assert int(np.count_nonzero(v)) == k
    else:
        floor = round_to
        kept = [int(np.count_nonzero(v)) for v in want]
        assert all(c >= min(floor, n) for c, n in zip(kept, sizes))
        if round_to == 1:
            assert sum(kept) == masks.global_keep_count(sizes, sparsity, floor)


@FAST
@given(ws=st.lists(tensors(max_side=8), min_size=2, max_size=3), sparsity=sparsities)
def test_global_scope_is_the_reference_ranking_after_each_tensor_keeps_its_best(ws, sparsity):
    vectors = [masks.weight_scores_np(w).reshape(-1) for w in ws]
    protected = []
    for v in vectors:
        p = v.astype(np.float64)
        p[reference_keep(v, 1)] = np.inf
        protected.append(p)
    k = masks.global_keep_count([v.size for v in vectors], sparsity, 1)
    want = np.split(reference_keep(np.concatenate(protected), k),
                    np.cumsum([v.size for v in vectors])[:-1])
    for got, v in zip(masks.select_np(vectors, sparsity, "global"), want):
        np.testing.assert_array_equal(got, v)


@settings(max_examples=8, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(ops_kernel.SORT_LIMIT + 1, 3 * ops_kernel.SORT_LIMIT),
       pattern=st.sampled_from(PATTERNS), dtype=st.sampled_from(list(DTYPES)),
       sparsity=sparsities, seed=st.integers(0, 2**32 - 1))
def test_radix_path_beyond_sort_limit_equals_numpy(n, pattern, dtype, sparsity, seed):
    w = values(pattern, n, np.random.default_rng(seed)).astype(DTYPES[dtype])
    scores = masks.weight_scores_np(w)
    k = masks.keep_count(n, sparsity)
    want = masks.select_np([scores], sparsity)[0]
    assert int(np.count_nonzero(want)) == k
    np.testing.assert_array_equal(want, reference_keep(scores, k))
    np.testing.assert_array_equal(_ops_select([scores], sparsity)[0], want)
    # a sparsity tensor (a custom schedule's) takes the in-graph keep count
    tensor = ops.convert_to_tensor(np.float64(sparsity))
    np.testing.assert_array_equal(_ops_select([scores], tensor)[0], want)


# ---------------------------------------------------------------- units


@st.composite
def kernels(draw, dtypes=tuple(DTYPES)):
    """A Dense `(in, out)` or Conv2D `(kh, kw, in, out)` kernel of few rows."""
    conv = draw(st.booleans())
    shape = ((draw(st.integers(1, 2)), draw(st.integers(1, 2))) if conv else ()) + (
        draw(st.integers(1, 3)), draw(st.integers(1, 12)))
    dtype = DTYPES[draw(st.sampled_from(dtypes))]
    pattern = draw(st.sampled_from(PATTERNS))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return values(pattern, math.prod(shape), rng).astype(dtype).reshape(shape)


@FAST
@given(kernel=kernels(), sparsity=sparsities, round_to=st.sampled_from([1, 2, 4]))
def test_unit_masks_zero_whole_units_with_exact_counts(kernel, sparsity, round_to):
    units = kernel.shape[-1]
    g = masks.Unit((units,))
    scores = g.scores(policy.NUMPY, kernel)
    want_scores = np.sum(np.square(kernel.astype(np.float64)).reshape(-1, units), axis=0)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-12)  # Σ w², in the tree's order
    keep = masks.select_np([scores], sparsity, round_to=round_to)[0]
    k = masks.round_keep_count(masks.keep_count(units, sparsity), units, round_to)
    assert int(np.count_nonzero(keep)) == k
    np.testing.assert_array_equal(keep, reference_keep(scores, k))
    masked = kernel * g.expand(policy.NUMPY, keep, kernel.shape).astype(kernel.dtype)
    columns = masked.reshape(-1, units)
    assert not np.any(columns[:, ~keep])  # a pruned unit is zero everywhere
    np.testing.assert_array_equal(columns[:, keep], kernel.reshape(-1, units)[:, keep])
    ops_scores = _np(g.scores(policy.OPS, ops.convert_to_tensor(kernel)))
    np.testing.assert_array_equal(ops_scores, scores)
    np.testing.assert_array_equal(_ops_select([ops_scores], sparsity, round_to=round_to)[0],
                                  keep)


def _permuted_units(rows=34, units=6, seed=0):
    """Units whose incoming weights are permutations of one column of widely spread
    magnitudes: mathematically tied scores whose float64 sums round by order."""
    rng = np.random.default_rng(seed)
    column = (rng.choice([1e-3, 1.0, 1e3, 3.7e2, 5e-4], rows)
              * rng.standard_normal(rows)).astype(np.float32)
    return np.stack([rng.permutation(column) for _ in range(units)], axis=1)


def test_unit_scores_numpy_equal_ops_bit_for_bit_for_many_rows():
    kernel = np.random.default_rng(0).standard_normal((100, 64)).astype(np.float32)
    g = masks.Unit((64,))
    np.testing.assert_array_equal(_np(g.scores(policy.OPS, ops.convert_to_tensor(kernel))),
                                  g.scores(policy.NUMPY, kernel))


def test_tied_units_get_the_same_mask_in_numpy_and_ops():
    mismatches = 0
    for seed in range(20):
        kernel = _permuted_units(seed=seed)
        g = masks.Unit((kernel.shape[1],))
        want = masks.select_np([g.scores(policy.NUMPY, kernel)], 0.5)[0]
        got = _ops_select([_np(g.scores(policy.OPS, ops.convert_to_tensor(kernel)))], 0.5)[0]
        mismatches += int(not np.array_equal(got, want))
    assert mismatches == 0


# ---------------------------------------------------------------- blocks and m:n


@FAST
@given(kernel=tensors(min_dims=2, max_dims=2, max_side=20),
       block=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       pooling=st.sampled_from(["AVG", "MAX"]), sparsity=sparsities)
def test_block_masks_keep_whole_blocks_exactly(kernel, block, pooling, sparsity):
    g = masks.Block(block, pooling)
    rows, cols = kernel.shape
    bh, bw = block
    grid = (-(-rows // bh), -(-cols // bw))
    scores = g.scores(policy.NUMPY, kernel)
    # reference block scores: mean or max of |w| over each (possibly partial) block
    a = np.abs(kernel.astype(np.float32))
    want = np.array([[(np.mean if pooling == "AVG" else np.max)(
        a[i * bh:(i + 1) * bh, j * bw:(j + 1) * bw].astype(np.float64))
        for j in range(grid[1])] for i in range(grid[0])]).reshape(-1)
    np.testing.assert_allclose(scores, want, rtol=1e-6, atol=0)
    ops_scores = _np(g.scores(policy.OPS, ops.convert_to_tensor(kernel)))
    np.testing.assert_array_equal(ops_scores, scores)
    keep = masks.select_np([scores], sparsity)[0]
    k = masks.keep_count(math.prod(grid), sparsity)
    np.testing.assert_array_equal(keep, reference_keep(scores, k))
    np.testing.assert_array_equal(_ops_select([ops_scores], sparsity)[0], keep)
    mask = g.expand(policy.NUMPY, keep, kernel.shape)
    assert mask.shape == kernel.shape
    np.testing.assert_array_equal(_np(g.expand(policy.OPS, ops.convert_to_tensor(keep),
                                               kernel.shape)), mask)
    for i in range(grid[0]):
        for j in range(grid[1]):
            part = mask[i * bh:(i + 1) * bh, j * bw:(j + 1) * bw]
            assert part.all() == keep[i * grid[1] + j] and part.all() == part.any()


def _m_by_n_reference(kernel, m, n):
    """Keep `n - m` of every `n` consecutive weights along the input axis (axis -2),
    the largest |w|, ties to the lower index; zero pads past the end lose ties."""
    k = np.moveaxis(np.abs(kernel.astype(np.float32)), -2, -1)
    flat = k.reshape(-1, k.shape[-1])
    keep = np.zeros(flat.shape, bool)
    for r, row in enumerate(flat):
        for start in range(0, row.size, n):
            group = row[start:start + n]
            padded = np.concatenate([group, np.zeros(n - group.size, np.float32)])
            kept = reference_keep(padded, n - m)[: group.size]
            keep[r, start:start + group.size] = kept
    return np.moveaxis(keep.reshape(k.shape), -1, -2)


@FAST
@given(kernel=tensors(min_dims=2, max_dims=4, max_side=9),
       mn=st.sampled_from([(1, 2), (2, 4), (1, 4), (3, 4), (2, 8), (4, 8)]))
def test_m_by_n_masks_follow_the_pattern_in_both_kernels(kernel, mn):
    m, n = mn
    g = masks.MByN(m, n)
    mask = np.asarray(g.mask(policy.NUMPY, kernel))
    np.testing.assert_array_equal(mask, _m_by_n_reference(kernel, m, n))
    np.testing.assert_array_equal(_np(g.mask(policy.OPS, ops.convert_to_tensor(kernel))), mask)
    masked = kernel * mask.astype(kernel.dtype)
    assert tfprune.check_m_by_n(masked, m, n)
    inputs = kernel.shape[-2]
    if inputs % n == 0:  # full groups: exactly n - m kept each
        kept = np.moveaxis(mask, -2, -1).reshape(-1, inputs // n, n).sum(axis=-1)
        assert np.all(kept == n - m)


# ---------------------------------------------------------------- files == training


def _dense_model(dtype, sizes, weights_seed, pattern):
    keras.utils.set_random_seed(0)
    layers = [keras.Input((sizes[0],))]
    for i, units in enumerate(sizes[1:]):
        layers.append(keras.layers.Dense(units, name=f"d{i}", dtype=dtype,
                                         activation="relu" if i < len(sizes) - 2 else None))
    model = keras.Sequential(layers)
    rng = np.random.default_rng(weights_seed)
    for v in model.weights:
        v.assign(values(pattern, math.prod(v.shape), rng).reshape(v.shape).astype(dtype))
    return model


@pytest.mark.slow
@SLOW
@given(dtype=st.sampled_from(["float32", "float16", "float64"]),
       sizes=st.lists(st.integers(1, 9), min_size=3, max_size=4),
       pattern=st.sampled_from(PATTERNS), seed=st.integers(0, 2**32 - 1),
       granularity=st.sampled_from(["weight", "unit"]),
       sparsity=st.sampled_from([0.0, 0.3, 0.5, 0.75, 0.9]))
def test_h5_pruned_file_and_oneshot_equal_the_trained_wrapper_masks(
        tmp_path_factory, dtype, sizes, pattern, seed, granularity, sparsity):
    tmp = tmp_path_factory.mktemp("prop")
    model = _dense_model(dtype, sizes, seed, pattern)
    original = [np.asarray(v) for v in model.weights]
    path = tmp / "m.weights.h5"
    model.save_weights(path)

    # training: one step at learning rate 0, so the update ranks these very weights
    pruned = tfprune.prune_low_magnitude(
        model, tfprune.ConstantSparsity(sparsity, begin_step=0, frequency=1),
        granularity=granularity)
    pruned.compile(keras.optimizers.SGD(0.0), "mse")
    x = np.ones((2, sizes[0]), dtype)
    pruned.fit(x, np.zeros((2, sizes[-1]), dtype), batch_size=2, verbose=0,
               callbacks=[tfprune.callbacks.UpdatePruningStep()])
    trained = [np.asarray(v) for v in tfprune.strip_pruning(pruned).weights]

    # file: the output layer keeps its units in unit mode, as in training
    tfprune.h5.prune_weights_file(path, sparsity, granularity=granularity,
                                  skip_output_layer=granularity == "unit")
    fresh = _dense_model(dtype, sizes, seed, pattern)
    fresh.load_weights(path)
    for i, (got, want) in enumerate(zip([np.asarray(v) for v in fresh.weights], trained)):
        np.testing.assert_array_equal(got, want, err_msg=f"file, weight {i}")

    # one-shot masking of the dense model
    dense = _dense_model(dtype, sizes, seed, pattern)
    for v, o in zip(dense.weights, original):
        np.testing.assert_array_equal(np.asarray(v), o)
    tfprune.oneshot.apply_masks(dense, sparsity, granularity=granularity,
                                skip_output_layer=False)
    for i, (got, want) in enumerate(zip([np.asarray(v) for v in dense.weights], trained)):
        np.testing.assert_array_equal(got, want, err_msg=f"oneshot, weight {i}")


def test_unit_pruned_file_equals_training_for_tied_units(tmp_path):
    for seed in range(3):
        kernel = _permuted_units(seed=seed)
        model = keras.Sequential([keras.Input((kernel.shape[0],)),
                                  keras.layers.Dense(kernel.shape[1], name="h"),
                                  keras.layers.Dense(2, name="o")])
        model.layers[0].kernel.assign(kernel)
        path = tmp_path / f"m{seed}.weights.h5"
        model.save_weights(path)
        pruned = tfprune.prune_low_magnitude(
            model, tfprune.ConstantSparsity(0.5, begin_step=0, frequency=1), granularity="unit")
        pruned.compile(keras.optimizers.SGD(0.0), "mse")
        pruned.fit(np.ones((2, kernel.shape[0])), np.zeros((2, 2)), verbose=0,
                   callbacks=[tfprune.callbacks.UpdatePruningStep()])
        trained = _np(pruned.layers[0].targets[0].mask)
        tfprune.h5.prune_weights_file(path, 0.5, granularity="unit")
        model.load_weights(path)
        in_file = (np.abs(_np(model.layers[0].kernel)).sum(axis=0) > 0).astype(np.float32)
        np.testing.assert_array_equal(in_file, trained, err_msg=f"seed {seed}")
