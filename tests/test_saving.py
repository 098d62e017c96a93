"""Saving pruned models: .keras round trip, resume, sparse checkpoints."""

import subprocess
import sys

import keras
import numpy as np

import tfprune
from tests.h5_files import h5_arrays
from tests.helpers import fit

L = keras.layers
X = np.random.default_rng(0).standard_normal((64, 10)).astype("float32")
Y = np.random.default_rng(1).standard_normal((64, 3)).astype("float32")


def make_pruned(granularity="weight"):
    inputs = keras.Input((10,))
    x = L.Dense(16, activation="relu")(inputs)
    x = L.Dense(12, activation="relu")(x)
    model = keras.Model(inputs, L.Dense(3)(x))
    schedule = tfprune.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=20, frequency=5)
    pruned = tfprune.prune_low_magnitude(model, schedule, granularity=granularity)
    pruned.compile(keras.optimizers.Adam(0.01), "mse")
    return pruned


def wrappers(model):
    return [l for l in model.layers if isinstance(l, tfprune.PruneLowMagnitude)]


def test_checkpoint_between_updates_is_exactly_as_sparse_as_masks(tmp_path):
    model = make_pruned()
    fit(model, X, Y, steps=8)  # updates at 0 and 5, saved at 8
    path = tmp_path / "mid.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    for w in wrappers(loaded):
        for t in w.targets:
            value = t.variable.numpy()
            np.testing.assert_array_equal(value == 0, t.mask.numpy() == 0)


def test_keras_file_loads_without_custom_scope_in_fresh_process(tmp_path):
    model = make_pruned()
    fit(model, X, Y, steps=7)
    path = tmp_path / "m.keras"
    model.save(path)
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "expected.npy", model.predict(X, verbose=0))
    code = (
        "import numpy as np, keras, tfprune\n"
        f"m = keras.models.load_model({str(path)!r})\n"
        f"x = np.load({str(tmp_path / 'x.npy')!r}); e = np.load({str(tmp_path / 'expected.npy')!r})\n"
        "np.testing.assert_allclose(m.predict(x, verbose=0), e, rtol=1e-6, atol=1e-6)\n"
        "print(type(m.layers[1]).__name__, int(m.layers[1].pruning_step.numpy()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "PruneLowMagnitude 7"


def test_resume_from_keras_file_matches_uninterrupted_training(tmp_path):
    model = make_pruned()
    fit(model, X, Y, steps=7)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    for w_orig, w_load in zip(wrappers(model), wrappers(loaded)):
        assert int(w_load.pruning_step.numpy()) == int(w_orig.pruning_step.numpy()) == 7
        for a, b in zip(w_orig.targets, w_load.targets):
            np.testing.assert_array_equal(a.mask.numpy(), b.mask.numpy())
    # Continue both for 9 more steps (updates at 10 and 15): identical results.
    fit(model, X, Y, steps=9)
    fit(loaded, X, Y, steps=9)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    for w in wrappers(loaded):
        assert int(w.last_update_step.numpy()) == 15


def test_unit_pruned_model_round_trips(tmp_path):
    model = make_pruned("unit")
    fit(model, X, Y, steps=6)
    model.save(tmp_path / "u.keras")
    loaded = keras.models.load_model(tmp_path / "u.keras")
    np.testing.assert_allclose(loaded.predict(X, verbose=0), model.predict(X, verbose=0), rtol=1e-6, atol=1e-6)
    w = wrappers(loaded)[0]
    assert w.granularity == "unit" and w.targets[0].mask.shape == (16,)


def test_weights_file_round_trip_into_fresh_pruned_model(tmp_path):
    model = make_pruned()
    fit(model, X, Y, steps=6)
    model.save_weights(tmp_path / "w.weights.h5")
    fresh = make_pruned()
    fresh.load_weights(tmp_path / "w.weights.h5")
    for a, b in zip(model.get_weights(), fresh.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_stripped_model_saves_as_plain_keras(tmp_path):
    model = make_pruned()
    fit(model, X, Y, steps=6)
    stripped = tfprune.strip_pruning(model)
    stripped.save(tmp_path / "s.keras")
    config = (tmp_path / "s.keras").read_bytes()
    assert b"PruneLowMagnitude" not in config
    loaded = keras.models.load_model(tmp_path / "s.keras")
    np.testing.assert_allclose(loaded.predict(X, verbose=0), model.predict(X, verbose=0), rtol=1e-6, atol=1e-6)


def test_masks_are_saved_as_bool_and_older_float_masks_still_load(tmp_path):
    import h5py

    model = make_pruned()
    fit(model, X, Y, steps=8)
    path = tmp_path / "w.weights.h5"
    model.save_weights(path)
    targets = [t for w in wrappers(model) for t in w.targets]
    masks = {n: a for n, a in h5_arrays(path).items() if a.dtype == bool}
    assert len(masks) == len(targets)  # a byte per entry, not the kernel's 4
    with h5py.File(path, "r+") as f:
        for name, value in masks.items():  # what tfprune wrote before bool masks
            del f[name]
            f.create_dataset(name, data=value.astype("float32"))
    fresh = make_pruned()
    fresh.load_weights(path)
    for mine, theirs in zip([t for w in wrappers(fresh) for t in w.targets], targets):
        assert keras.backend.standardize_dtype(mine.mask.dtype) == "bool"
        np.testing.assert_array_equal(mine.mask.numpy(), theirs.mask.numpy())
        np.testing.assert_array_equal(mine.variable.numpy(), theirs.variable.numpy())
    assert any(not t.mask.numpy().all() for t in targets)  # something was masked
    fit(fresh, X, Y, steps=1)  # and training goes on with the loaded masks
    for t in [t for w in wrappers(fresh) for t in w.targets]:
        np.testing.assert_array_equal(t.variable.numpy() == 0, ~t.mask.numpy())
