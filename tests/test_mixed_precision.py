"""Pruning under mixed precision (`mixed_float16`, `mixed_bfloat16`).

Variables stay float32 under both policies (only the computation is in 16 bits),
so masks are float32 too and are ranked on the float32 weights: the same exact
counts and the same masks as the NumPy policy on those weights. `mixed_float16`
trains through a `LossScaleOptimizer`, which skips the steps whose scaled
gradients overflow; a skipped step is not an optimizer step, so it is not a
pruning step either.
"""

import keras
import numpy as np
import pytest
from keras import layers as L
from keras import ops

import tfprune
from tfprune import masks

POLICIES = ["mixed_float16", "mixed_bfloat16"]
SPARSITY = 0.6
X = np.random.default_rng(0).normal(size=(64, 6, 6, 2)).astype("float32")
Y = np.random.default_rng(1).normal(size=(64, 3)).astype("float32")


@pytest.fixture(params=POLICIES)
def policy(request):
    keras.mixed_precision.set_global_policy(request.param)
    try:
        yield request.param
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _model():
    return keras.Sequential([
        keras.Input((6, 6, 2)),
        L.Conv2D(8, 3, activation="relu", name="conv"),
        L.Flatten(),
        L.Dense(10, activation="relu", name="hidden"),
        L.Dense(3, name="out"),
    ])


def _pruned(granularity, learning_rate=0.05):
    keras.utils.set_random_seed(0)
    model = tfprune.prune_low_magnitude(
        _model(), tfprune.ConstantSparsity(SPARSITY, begin_step=0, frequency=1),
        granularity=granularity)
    model.compile(keras.optimizers.SGD(learning_rate), "mse")
    return model


def _fit(model, steps, y=Y):
    model.fit(X[: 8 * steps], y[: 8 * steps], batch_size=8, epochs=1, shuffle=False,
              verbose=0, callbacks=[tfprune.callbacks.UpdatePruningStep()])


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


def _wrappers(model):
    return tfprune.callbacks.pruning_step.collect_wrappers(model)


def _expected_masks(wrapper, values):
    """The NumPy policy on the float32 weights `values` (one per target)."""
    out = []
    for t, value in zip(wrapper.targets, values):
        if wrapper.granularity == "weight":
            keep = masks.select_np([masks.weight_scores_np(value)], SPARSITY)[0]
        else:
            kernel = values[0]  # every target of a unit-pruned layer shares the kernel's units
            unit_shape = wrapper.targets[0].unit_shape
            keep = masks.select_np([masks.unit_scores_np(kernel, unit_shape)], SPARSITY)[0]
        out.append(keep.reshape(t.mask.shape).astype("float32"))
    return out


@pytest.mark.parametrize("granularity", ["weight", "unit"])
def test_variables_stay_float32_and_masks_bool_with_16_bit_compute(policy, granularity):
    model = _pruned(granularity)
    _fit(model, 2)
    compute = policy.split("_")[1]
    for w in _wrappers(model):
        assert w.layer.compute_dtype == compute
        for t in w.targets:
            assert t.variable.dtype == "float32"
            assert keras.backend.standardize_dtype(t.mask.dtype) == "bool"
    assert keras.backend.standardize_dtype(model.predict(X[:4], verbose=0).dtype) == compute


@pytest.mark.parametrize("granularity", ["weight", "unit"])
def test_exact_counts_and_masks_applied_after_training(policy, granularity):
    model = _pruned(granularity)
    _fit(model, 8)
    assert _wrappers(model)
    for w in _wrappers(model):
        assert int(_np(w.pruning_step)) == 8 == int(_np(model.optimizer.iterations))
        for t in w.targets:
            mask = _np(t.mask)
            n = mask.size
            assert int(np.sum(mask == 0)) == n - masks.keep_count(n, SPARSITY), (w.name, t.path)
            value = _np(t.variable)
            np.testing.assert_array_equal(value * (np.broadcast_to(mask, value.shape) == 0), 0)


@pytest.mark.parametrize("granularity", ["weight", "unit"])
def test_update_masks_equal_numpy_policy_on_the_float32_weights(policy, granularity):
    # 5 steps of training, then a 6th at learning rate 0: the 6th update ranks
    # exactly the weights as they are after step 5 (zeros from earlier masks
    # included, so ties at zero are broken by index).
    model = _pruned(granularity, learning_rate=keras.optimizers.schedules.PiecewiseConstantDecay(
        [4], [0.05, 0.0]))
    _fit(model, 5)
    before = {w.name: [_np(t.variable) for t in w.targets] for w in _wrappers(model)}
    _fit(model, 1)
    for w in _wrappers(model):
        assert int(_np(w.pruning_step)) == 6
        for t, got, want, value in zip(w.targets, [_np(t.mask) for t in w.targets],
                                       _expected_masks(w, before[w.name]), before[w.name]):
            np.testing.assert_array_equal(got, want, err_msg=f"{w.name}.{t.path}")
            np.testing.assert_array_equal(_np(t.variable),
                                          value * np.broadcast_to(want, value.shape))


def test_loss_scale_skipped_steps_are_not_pruning_steps():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = _pruned("weight")
        # targets of 300 overflow float16 once the loss is scaled by 2**15: the
        # first steps are skipped (scale halved each time), later ones applied
        _fit(model, 8, y=Y * 300.0)
        iterations = int(_np(model.optimizer.iterations))
        assert 0 < iterations < 8
        for w in _wrappers(model):
            assert int(_np(w.pruning_step)) == iterations
            for t in w.targets:
                n = int(np.prod(t.mask.shape))
                assert int(np.sum(_np(t.mask) == 0)) == n - masks.keep_count(n, SPARSITY)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_strip_and_reload_keep_the_masks(policy, tmp_path):
    model = _pruned("weight")
    _fit(model, 3)
    path = tmp_path / "mixed.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    for a, b in zip(_wrappers(model), _wrappers(loaded)):
        for ta, tb in zip(a.targets, b.targets):
            np.testing.assert_array_equal(_np(ta.mask), _np(tb.mask))
    stripped = tfprune.strip_pruning(loaded)
    for w in _wrappers(loaded):
        layer = stripped.get_layer(w.layer.name)
        mask = _np(w.targets[0].mask)
        np.testing.assert_array_equal(_np(layer.kernel) * (mask == 0), 0)
        assert layer.compute_dtype == policy.split("_")[1]
    np.testing.assert_allclose(_np(stripped.predict(X[:8], verbose=0)).astype("float32"),
                               _np(loaded.predict(X[:8], verbose=0)).astype("float32"))
