"""The core of tfprune on every Keras backend and compile mode.

These tests use only Keras and NumPy, so they run unchanged on whichever backend
`KERAS_BACKEND` selects; CI runs the `core` marker on TensorFlow, JAX and torch.
On TensorFlow, training tests run both in graph mode and under XLA
(`jit_compile=True`); JAX always trains in a jitted, stateless step.
"""

import math

import keras
import numpy as np
import pytest
from keras import layers as L
from keras import ops

import tfprune
from tfprune import masks
from tfprune.masks import policy

pytestmark = pytest.mark.core

BACKEND = keras.backend.backend()
JIT_MODES = [False, True] if BACKEND == "tensorflow" else ["auto"]


def compiled(fn, jit):
    """`fn` compiled the way the backend's train step is."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=bool(jit))
    if BACKEND == "jax":
        import jax

        return jax.jit(fn)
    return fn


def to_numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


# ---------------------------------------------------------------- the mask engine


@pytest.mark.parametrize("jit", JIT_MODES)
@pytest.mark.parametrize("n", [7, 1000, 70_000, 300_001], ids=lambda n: f"n{n}")
@pytest.mark.parametrize("ties", ["distinct", "ties"])
def test_ops_topk_equals_numpy_bitwise(n, ties, jit, rng):
    scores = np.abs(rng.standard_normal(n)).astype("float32")
    if ties == "ties":
        scores = np.round(scores * 4) / 4  # a handful of values, many tied at the threshold
    for sparsity in (0.3, 0.9, 0.999):
        k = masks.keep_count(n, sparsity)
        got = to_numpy(compiled(lambda s: masks.topk_keep(s, k), jit)(ops.convert_to_tensor(scores)))
        want = masks.topk_keep_np(scores, k)
        assert got.sum() == k
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("jit", JIT_MODES)
@pytest.mark.parametrize("shape", [(300, 257), (70_001,), (65_537,)], ids=["2d", "1d", "prime"])
@pytest.mark.parametrize("ties", ["distinct", "ties", "half-zero"])
def test_chunked_radix_select_equals_numpy_bitwise(shape, ties, jit, rng, monkeypatch):
    """Long vectors are histogrammed CHUNK items at a time (a fori_loop over static
    slices, the last one overlapping) and tied thresholds located chunk by chunk:
    the keep set is the NumPy one, bit for bit."""
    from tfprune.masks import ops_kernel

    monkeypatch.setattr(ops_kernel, "CHUNK", 4099)  # several chunks, a ragged last one
    scores = np.abs(rng.standard_normal(shape)).astype("float32")
    if ties == "ties":
        scores = np.round(scores * 4) / 4
    if ties == "half-zero":
        scores[..., : shape[-1] // 2] = 0
    n = scores.size
    fn = compiled(lambda s, k: masks.topk_keep(s, k), jit)
    for k in (1, n // 10, n // 2 + 7, n - 3):
        got = to_numpy(fn(ops.convert_to_tensor(scores), np.int32(k)))
        np.testing.assert_array_equal(got.reshape(-1), masks.topk_keep_np(scores.reshape(-1), k))
    keep = rng.random(n) < 0.3
    smallest = to_numpy(compiled(ops_kernel.masked_min, jit)(
        ops.convert_to_tensor(scores.reshape(-1)), ops.convert_to_tensor(keep)))
    assert smallest == scores.reshape(-1)[keep].min()


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize("mask_shape", [(6, 5), (1, 5)], ids=["same", "broadcast"])
def test_where_kept_gives_wheres_bits_in_and_out_of_place(dtype, mask_shape, rng):
    """(torch selects by bit patterns: +0.0 where masked, NaN and Inf included;
    -0.0 and NaN kept where kept.)"""
    from tfprune.masks import ops_kernel

    x = rng.standard_normal((6, 5)).astype("float32")
    x.flat[:4] = [np.nan, -0.0, np.inf, -np.inf]
    keep = rng.random(mask_shape) < 0.5
    keep.flat[:2] = [False, True]
    want = to_numpy(ops.cast(ops.convert_to_tensor(np.where(keep, x, np.float32(0)), dtype),
                             "float32"))
    for in_place, untracked in ((False, False), (True, False), (False, True)):
        got = ops_kernel.where_kept(ops.convert_to_tensor(keep), ops.convert_to_tensor(
            x, dtype), in_place=in_place, untracked=untracked)
        got = to_numpy(ops.cast(got, "float32"))
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
    if BACKEND == "tensorflow":  # the constraint's selection by bits, in graphs and XLA
        import tensorflow as tf

        for jit in (False, True):
            graph = tf.function(lambda k, v: ops_kernel.where_kept(k, v, untracked=True),
                                jit_compile=jit)
            got = to_numpy(ops.cast(graph(keep, ops.convert_to_tensor(x, dtype)), "float32"))
            np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
    if BACKEND == "torch":  # the constraint's eager kernel: in place, through autograd
        import torch

        t = ops.convert_to_tensor(x, dtype).requires_grad_(True)
        out = ops_kernel.torch_mask_(t, ops.convert_to_tensor(keep))
        assert out is t
        got = to_numpy(ops.cast(t.detach(), "float32"))
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
        assert torch.is_tensor(out) and out.requires_grad
        t = ops.convert_to_tensor(x, dtype)  # the same through a widened mask
        assert ops_kernel.WidenedMask()(t, ops.convert_to_tensor(keep)) is t
        np.testing.assert_array_equal(to_numpy(ops.cast(t, "float32")), want)
    scores = np.abs(x.reshape(-1)[4:])  # finite
    for k in (rng.random(scores.size) < 0.5, np.zeros(scores.size, bool)):
        smallest = to_numpy(ops_kernel.masked_min(ops.convert_to_tensor(scores),
                                                  ops.convert_to_tensor(k)))
        assert smallest == (scores[k].min() if k.any() else np.inf)


@pytest.mark.skipif(BACKEND != "torch", reason="eager torch's constraint kernel")
def test_widened_mask_follows_every_write_of_the_mask(rng):
    from tfprune.masks import ops_kernel

    widened = ops_kernel.WidenedMask()
    mask = keras.Variable(rng.random((40, 30)) < 0.5, trainable=False)
    x = rng.standard_normal((40, 30)).astype("float32")
    for step in range(4):
        if step == 1:  # written in place, as Keras assigns
            mask.assign(rng.random((40, 30)) < 0.3)
        if step == 2:
            mask.assign(np.ones((40, 30), bool))
        t = ops.convert_to_tensor(x)
        widened(t, mask.value)
        np.testing.assert_array_equal(to_numpy(t), np.where(to_numpy(mask), x, 0))
    other = ops.convert_to_tensor(rng.random((40, 30)) < 0.5)  # another tensor
    t = ops.convert_to_tensor(x)
    widened(t, other)
    np.testing.assert_array_equal(to_numpy(t), np.where(to_numpy(other), x, 0))


@pytest.mark.parametrize("jit", JIT_MODES)
@pytest.mark.parametrize("scope", ["layer", "global"])
def test_policy_on_ops_equals_numpy_for_every_granularity(scope, jit, rng):
    kernels = [rng.standard_normal(shape).astype("float32") for shape in ((300, 40), (96, 260))]
    cases = {
        "weight": (masks.Weight(), masks.Weight()),
        "unit": tuple(masks.Unit((k.shape[-1],)) for k in kernels),
        "block": (masks.Block((1, 4), "AVG"), masks.Block((4, 1), "MAX")),
    }
    for name, gs in cases.items():
        if name == "block" and scope == "global":
            gs = (masks.Block((1, 4)), masks.Block((1, 4)))
        want_scores = [g.scores(policy.NUMPY, k) for g, k in zip(gs, kernels)]
        want = policy.select(policy.NUMPY, want_scores, 0.8, scope, round_to=1)

        def run(*ks, gs=gs):
            scores = [g.scores(policy.OPS, k) for g, k in zip(gs, ks)]
            return policy.select(policy.OPS, scores, 0.8, scope)

        got = compiled(run, jit)(*[ops.convert_to_tensor(k) for k in kernels])
        for g, a, b in zip(gs, got, want):
            np.testing.assert_array_equal(to_numpy(a), b, err_msg=f"{name} {g}")


@pytest.mark.parametrize("jit", JIT_MODES)
def test_m_by_n_mask_on_ops_equals_numpy(jit, rng):
    w = rng.standard_normal((3, 3, 10, 8)).astype("float32")
    w[0, 0, :4, 0] = 0.5  # ties inside a group: the earlier index wins
    g = masks.MByN(2, 4)
    want = g.mask(policy.NUMPY, w)
    got = to_numpy(compiled(lambda x: g.mask(policy.OPS, x), jit)(ops.convert_to_tensor(w)))
    np.testing.assert_array_equal(got, want)
    assert masks.check_m_by_n(w * want, 2, 4) and not masks.check_m_by_n(w, 2, 4)


# ---------------------------------------------------------------- training


def sequential(dropout=True):
    # (Keras does not restore a Dropout layer's random state from a file: resume
    # tests use no dropout.)
    return keras.Sequential([keras.Input((12,)), L.Dense(32, activation="relu"),
                             *([L.Dropout(0.1)] if dropout else []),
                             L.Dense(16, activation="relu"), L.Dense(3)])


class NoTrainingArg(keras.Model):
    """A subclassed model whose call() has no `training` argument."""

    def __init__(self):
        super().__init__()
        self.d1 = L.Dense(32, activation="relu")
        self.d2 = L.Dense(3)

    def call(self, x):
        return self.d2(self.d1(x))


def shared_layer():
    """One Dense layer called twice per step (a shared layer)."""
    inputs = keras.Input((12,))
    shared = L.Dense(12, activation="tanh")
    return keras.Model(inputs, L.Dense(3)(shared(shared(inputs))))


MODELS = {"sequential": sequential, "subclassed-no-training": NoTrainingArg,
          "shared-layer": shared_layer}
X = np.random.default_rng(0).standard_normal((64, 12)).astype("float32")
Y = np.random.default_rng(1).standard_normal((64, 3)).astype("float32")


def train(model, steps, jit, batch_size=8, callbacks=(), **kw):
    if not model.compiled:
        model.compile("adam", "mse", jit_compile=jit)
    n = steps * batch_size
    xs, ys = np.resize(X, (n, X.shape[1])), np.resize(Y, (n, Y.shape[1]))
    return model.fit(xs, ys, batch_size=batch_size, epochs=1, verbose=0, shuffle=False,
                     callbacks=[tfprune.callbacks.UpdatePruningStep(), *callbacks], **kw)


def kernels(model):
    return [w.layer.kernel for w in tfprune.collect_prunable_layers(model)]


def zeros(v):
    return int((to_numpy(v) == 0).sum())


def test_wrapped_layers_give_the_plain_models_outputs_and_losses(monkeypatch):
    """Eager torch skips a plain inner layer's own `__call__`; the layers whose
    `__call__` does more (an activity regularizer, another dtype policy) keep it."""

    def model():
        keras.utils.set_random_seed(3)
        inputs = keras.Input((12,))
        x = L.Dense(16, activation="relu", name="plain_a")(inputs)
        x = L.Dense(8, activity_regularizer="l2", name="regularized")(x)
        x = L.Dense(8, dtype="mixed_float16", name="mixed")(x)
        return keras.Model(inputs, L.Dense(3, name="plain_b")(x))

    plain, pruned = model(), tfprune.prune_low_magnitude(model())
    real, direct = tfprune._compat.direct_call, []

    def spy(layer, *args, **kwargs):
        direct.append(layer.name)
        return real(layer, *args, **kwargs)

    monkeypatch.setattr(tfprune._compat, "direct_call", spy)
    for training in (False, True):
        got, want = pruned(X, training=training), plain(X, training=training)
        np.testing.assert_array_equal(to_numpy(got), to_numpy(want))
        assert len(pruned.losses) == len(plain.losses) == 1
        np.testing.assert_array_equal(to_numpy(pruned.losses[0]), to_numpy(plain.losses[0]))
    assert direct == (["plain_a", "plain_b"] * 2 if BACKEND == "torch" else [])


@pytest.mark.parametrize("jit", JIT_MODES)
@pytest.mark.parametrize("kind", list(MODELS))
def test_training_prunes_exactly_and_counts_one_step_per_optimizer_step(kind, jit):
    model = MODELS[kind]()
    if kind == "subclassed-no-training":
        model(X[:2])
    pruned = tfprune.prune_low_magnitude(
        model, tfprune.PolynomialDecay(0.0, 0.75, begin_step=0, end_step=6, frequency=2))
    train(pruned, 7, jit)
    for w in tfprune.collect_prunable_layers(pruned):
        assert int(to_numpy(w.pruning_step)) == 7  # shared layer too: one step per step
        assert int(to_numpy(w.last_update_step)) == 6
        k = w.layer.kernel
        n = math.prod(k.shape)
        assert zeros(k) == n - masks.keep_count(n, 0.75)


@pytest.mark.parametrize("jit", JIT_MODES)
@pytest.mark.parametrize("granularity", ["weight", "unit", "block", "m_by_n"])
def test_every_granularity_trains_to_its_exact_pattern(granularity, jit):
    options = {"weight": {}, "unit": {"granularity": "unit", "round_to": 4},
               "block": {"block_size": (1, 4)}, "m_by_n": {"sparsity_m_by_n": (2, 4)}}
    pruned = tfprune.prune_low_magnitude(
        sequential(), tfprune.ConstantSparsity(0.5, begin_step=0, frequency=1),
        **options[granularity])
    train(pruned, 3, jit)
    for w in tfprune.collect_prunable_layers(pruned):
        k = to_numpy(w.layer.kernel)
        if granularity == "weight":
            assert (k == 0).sum() == k.size - masks.keep_count(k.size, 0.5)
        elif granularity == "unit":
            dead = (k == 0).all(axis=0)
            assert dead.sum() == k.shape[1] - masks.round_keep_count(
                masks.keep_count(k.shape[1], 0.5), k.shape[1], 4)
            assert (to_numpy(w.layer.bias)[dead] == 0).all()
        elif granularity == "block":  # (1, 4) blocks, the last one in a row may be partial
            blocks = [k[r, c:c + 4] == 0 for r in range(k.shape[0]) for c in range(0, k.shape[1], 4)]
            assert all(b.all() or not b.any() for b in blocks)  # whole blocks
            assert sum(b.all() for b in blocks) == len(blocks) - masks.keep_count(len(blocks), 0.5)
        else:
            assert masks.check_m_by_n(k, 2, 4)


@pytest.mark.parametrize("jit", JIT_MODES)
def test_masks_stay_applied_after_every_step_and_eval_does_not_step(jit):
    pruned = tfprune.prune_low_magnitude(
        sequential(), tfprune.ConstantSparsity(0.5, begin_step=1, end_step=1, frequency=1))
    train(pruned, 10, jit)  # one update at step 1, then 9 Adam steps that move masked weights
    before = [to_numpy(k).copy() for k in kernels(pruned)]
    for w in tfprune.collect_prunable_layers(pruned):
        assert (to_numpy(w.layer.kernel)[to_numpy(w.targets[0].mask) == 0] == 0).all()
    pruned.evaluate(X, Y, verbose=0)
    pruned.predict(X, verbose=0)
    assert [int(to_numpy(w.pruning_step)) for w in tfprune.collect_prunable_layers(pruned)] == [10] * 3
    for a, k in zip(before, kernels(pruned)):
        np.testing.assert_array_equal(a, to_numpy(k))


def test_training_without_the_callback_is_a_clear_error():
    pruned = tfprune.prune_low_magnitude(sequential())
    pruned.compile("adam", "mse")
    with pytest.raises(RuntimeError, match="UpdatePruningStep"):
        pruned.fit(X, Y, verbose=0)


@pytest.mark.parametrize("jit", JIT_MODES)
def test_strip_shrink_save_load_and_resume_exactly(jit, tmp_path):
    schedule = tfprune.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=8, frequency=2)

    def make():
        keras.utils.set_random_seed(7)
        return tfprune.prune_low_magnitude(sequential(dropout=False), schedule,
                                           granularity="unit")

    straight = make()
    train(straight, 12, jit)
    half = make()
    train(half, 6, jit)
    half.save(tmp_path / "half.keras")
    resumed = keras.models.load_model(tmp_path / "half.keras")
    assert int(to_numpy(tfprune.collect_prunable_layers(resumed)[0].pruning_step)) == 6
    xs, ys = np.resize(X, (96, 12)), np.resize(Y, (96, 3))
    resumed.fit(xs[48:], ys[48:], batch_size=8, epochs=1, verbose=0, shuffle=False,
                callbacks=[tfprune.callbacks.UpdatePruningStep()])
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    for a, b in zip(tfprune.collect_prunable_layers(straight),
                    tfprune.collect_prunable_layers(resumed)):
        np.testing.assert_array_equal(to_numpy(a.targets[0].mask), to_numpy(b.targets[0].mask))
    stripped = tfprune.strip_pruning(resumed)
    assert not tfprune.collect_prunable_layers(stripped)
    np.testing.assert_allclose(stripped.predict(X, verbose=0), resumed.predict(X, verbose=0),
                               rtol=1e-6, atol=1e-6)
    small = tfprune.shrink(stripped)
    assert small.count_params() < stripped.count_params()
    np.testing.assert_allclose(small.predict(X, verbose=0), stripped.predict(X, verbose=0),
                               rtol=1e-5, atol=1e-5)
    small.save(tmp_path / "small.keras")
    np.testing.assert_allclose(keras.models.load_model(tmp_path / "small.keras").predict(
        X, verbose=0), small.predict(X, verbose=0), rtol=1e-6, atol=1e-6)
    report = tfprune.sparsity_report(stripped)
    assert 0 < report.sparsity < 1
