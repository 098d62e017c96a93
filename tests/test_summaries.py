"""`PruningSummaries`: a TensorBoard that also logs pruning scalars, in `fit` and in
tfmot's custom-training-loop recipe."""

import os
import pathlib
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfprune

L = keras.layers
X = np.random.default_rng(0).standard_normal((64, 10)).astype("float32")
Y = np.random.default_rng(1).standard_normal((64, 2)).astype("float32")


def _tensors(log_dir):
    """`{tag: [(step, value)]}` of the event files directly in `log_dir`."""
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(str(log_dir), size_guidance={"tensors": 0})
    acc.Reload()
    out = {}
    for tag in acc.Tags()["tensors"]:
        out[tag] = [(e.step, tf.make_ndarray(e.tensor_proto)) for e in acc.Tensors(tag)]
    return out


def _scalars(log_dir):
    return {tag: [(s, float(v)) for s, v in events if np.ndim(v) == 0 and v.dtype.kind in "fiu"]
            for tag, events in _tensors(log_dir).items()}


def pruned_model(schedule):
    model = keras.Sequential([keras.Input((10,)), L.Dense(8, activation="relu"), L.Dense(2)])
    return tfprune.prune_low_magnitude(model, schedule)


def test_is_a_tensorboard_and_accepts_its_arguments(tmp_path):
    cb = tfprune.callbacks.PruningSummaries(
        log_dir=tmp_path, update_freq="batch", profile_batch=0, histogram_freq=1,
        write_graph=False, write_steps_per_second=True, write_images=False)
    assert isinstance(cb, keras.callbacks.TensorBoard)
    assert cb.log_dir == str(tmp_path) and cb.update_freq == 1 and cb.histogram_freq == 1
    assert cb.get_config() == {"log_dir": str(tmp_path), "update_freq": 1}
    with pytest.raises(TypeError):
        tfprune.callbacks.PruningSummaries(log_dir=tmp_path, no_such_argument=1)


@pytest.mark.parametrize("bad", ["", b"", None, 3, object()])
def test_log_dir_must_be_a_non_empty_path(bad):
    with pytest.raises(ValueError, match=r"`log_dir` must be a non-empty path.*Received: log_dir="):
        tfprune.callbacks.PruningSummaries(log_dir=bad)


def test_fit_logs_tensorboards_metrics_and_the_pruning_scalars(tmp_path):
    model = pruned_model(tfprune.PolynomialDecay(0.0, 0.75, 0, 8, frequency=2))
    model.compile("adam", "mse")
    model.fit(X, Y, batch_size=16, epochs=3, verbose=0, validation_data=(X[:16], Y[:16]),
              callbacks=[tfprune.callbacks.UpdatePruningStep(),
                         tfprune.callbacks.PruningSummaries(log_dir=str(tmp_path),
                                                            histogram_freq=1)])
    # What TensorBoard logs: epoch metrics for train and validation, histograms.
    train = _tensors(tmp_path / "train")
    assert [s for s, _ in train["epoch_loss"]] == [0, 1, 2]
    assert any(tag.endswith("histogram") or "kernel" in tag for tag in train)
    assert [s for s, _ in _scalars(tmp_path / "validation")["epoch_loss"]] == [0, 1, 2]
    # Plus the pruning scalars, at the end of every epoch (optimizer step).
    pruning = _scalars(tmp_path)
    name = model.layers[0].name
    sparsity = pruning[f"{name}/sparsity"]
    assert [s for s, _ in sparsity] == [4, 8, 12]
    assert sparsity[-1][1] == pytest.approx(0.75)
    assert sparsity[0][1] < sparsity[-1][1]
    kernel = model.layers[0].layer.kernel.numpy()
    assert sparsity[-1][1] == pytest.approx(np.mean(kernel == 0))
    assert pruning[f"{name}/threshold"][-1][1] > 0
    assert set(pruning) == {f"{w.name}/{k}" for w in model.layers
                            for k in ("sparsity", "threshold")}


def test_update_freq_batch_logs_batch_metrics_like_tensorboard(tmp_path):
    model = pruned_model(tfprune.ConstantSparsity(0.5, 0, frequency=1))
    model.compile("adam", "mse")
    model.fit(X, Y, batch_size=16, epochs=1, verbose=0,
              callbacks=[tfprune.callbacks.UpdatePruningStep(),
                         tfprune.callbacks.PruningSummaries(log_dir=tmp_path,
                                                            update_freq="batch")])
    assert [s for s, _ in _scalars(tmp_path / "train")["batch_loss"]] == [1, 2, 3, 4]
    assert [s for s, _ in _scalars(tmp_path)[f"{model.layers[0].name}/sparsity"]] == [4]


def test_custom_training_loop_driven_like_tfmots_guide_writes_the_scalars(tmp_path):
    # tfmot's comprehensive guide: set_model, then only on_epoch_begin(epoch=-1)
    # once per epoch; no on_train_begin / on_epoch_end on the log callback.
    model = pruned_model(tfprune.ConstantSparsity(0.5, 0, frequency=1))
    optimizer = keras.optimizers.Adam()
    model.optimizer = optimizer
    step_callback = tfprune.callbacks.UpdatePruningStep()
    step_callback.set_model(model)
    log_callback = tfprune.callbacks.PruningSummaries(log_dir=str(tmp_path))
    log_callback.set_model(model)
    step_callback.on_train_begin()
    for _ in range(3):
        log_callback.on_epoch_begin(epoch=-1)
        log_callback.on_epoch_begin(epoch=-1)  # twice at one step: written once
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((model(X, training=True) - Y) ** 2)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
    log_callback.on_epoch_end(epoch=2)
    sparsity = _scalars(tmp_path)[f"{model.layers[0].name}/sparsity"]
    assert [s for s, _ in sparsity] == [0, 1, 2, 3]
    assert sparsity[0][1] == 0.0 and sparsity[-1][1] == pytest.approx(0.5)


def test_unit_masks_count_every_weight_of_a_unit(tmp_path):
    model = tfprune.prune_low_magnitude(
        keras.Sequential([keras.Input((10,)), L.Dense(8, activation="relu"), L.Dense(2)]),
        tfprune.ConstantSparsity(0.5, 0, frequency=1), granularity="unit")
    model.compile("adam", "mse")
    model.fit(X, Y, batch_size=16, epochs=1, verbose=0,
              callbacks=[tfprune.callbacks.UpdatePruningStep(),
                         tfprune.callbacks.PruningSummaries(log_dir=tmp_path)])
    wrapper = model.layers[0]
    values = dict((id(v), a) for v, a in wrapper.masked_values())
    pruned = [values[id(t.variable)] for t in wrapper.targets]
    expected = sum(int((a == 0).sum()) for a in pruned) / sum(a.size for a in pruned)
    got = _scalars(tmp_path)[f"{wrapper.name}/sparsity"][-1][1]
    assert got == pytest.approx(expected) and got == pytest.approx(0.5)


def test_model_without_pruned_layers_gets_tensorboard_logs_and_one_warning(tmp_path):
    model = keras.Sequential([keras.Input((10,)), L.Dense(2)])
    model.compile("adam", "mse")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(X, Y, batch_size=16, epochs=2, verbose=0,
                  callbacks=[tfprune.callbacks.PruningSummaries(log_dir=tmp_path)])
    mine = [w for w in caught if "PruningSummaries" in str(w.message)]
    assert len(mine) == 1 and "no pruned layers" in str(mine[0].message)
    assert "epoch_loss" in _scalars(tmp_path / "train")
    assert not [p for p in os.listdir(tmp_path) if p.startswith("events")]


def test_path_like_log_dir(tmp_path):
    cb = tfprune.callbacks.PruningSummaries(log_dir=pathlib.Path(tmp_path) / "logs")
    assert cb.log_dir == str(tmp_path / "logs")
