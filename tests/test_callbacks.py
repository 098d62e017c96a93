import glob
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfprune
from tests.helpers import every_step, fit

L = keras.layers
X = np.random.default_rng(0).standard_normal((64, 10)).astype("float32")
Y = np.random.default_rng(1).standard_normal((64, 2)).astype("float32")


def pruned_model(schedule):
    model = keras.Sequential([keras.Input((10,)), L.Dense(8, activation="relu"), L.Dense(2)])
    return tfprune.prune_low_magnitude(model, schedule)


def test_forgetting_the_step_callback_is_a_clear_error():
    model = pruned_model(every_step(0.5))
    model.compile("adam", "mse")
    with pytest.raises(RuntimeError, match=r"UpdatePruningStep\(\)"):
        model.fit(X, Y, epochs=1, verbose=0)


def test_custom_training_loop_with_callback_hooks():
    model = pruned_model(every_step(0.5))
    cb = tfprune.callbacks.UpdatePruningStep()
    cb.set_model(model)
    cb.on_train_begin()
    opt = keras.optimizers.SGD(0.01)
    for _ in range(3):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((model(X, training=True) - Y) ** 2)
        opt.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
    wrapper = model.layers[0]
    assert int(wrapper.pruning_step.numpy()) == 3
    assert (wrapper.layer.kernel.numpy() == 0).sum() == 40


def test_steps_are_counted_in_graph_like_optimizer_iterations():
    model = pruned_model(tfprune.ConstantSparsity(0.5, begin_step=3, frequency=4))
    fit(model, X, Y, steps=10)
    wrapper = model.layers[0]
    assert int(wrapper.pruning_step.numpy()) == int(model.optimizer.iterations.numpy()) == 10
    assert int(wrapper.last_update_step.numpy()) == 7  # updates at 3 and 7


def test_steps_per_execution_still_updates_every_step():
    model = pruned_model(tfprune.ConstantSparsity(0.5, begin_step=5, frequency=100))
    model.compile("adam", "mse", steps_per_execution=4)
    fit(model, X, Y, steps=8)
    assert int(model.layers[0].last_update_step.numpy()) == 5


def test_run_that_never_reaches_an_update_warns_loudly():
    model = pruned_model(tfprune.ConstantSparsity(0.5, begin_step=0 + 1000, frequency=100))
    with pytest.warns(RuntimeWarning, match="NOTHING WAS PRUNED"):
        fit(model, X, Y, steps=5)
    assert (model.layers[0].layer.kernel.numpy() == 0).sum() == 0


def test_run_that_updates_does_not_warn():
    model = pruned_model(every_step(0.5))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        fit(model, X, Y, steps=2)


def test_callback_on_unpruned_model_does_nothing_and_warns_like_tfmot():
    model = keras.Sequential([keras.Input((10,)), L.Dense(2)])
    model.compile("adam", "mse")
    before = model.get_weights()
    with pytest.warns(RuntimeWarning, match="no pruned layers"):
        model.fit(X, Y, verbose=0, epochs=1, callbacks=[tfprune.callbacks.UpdatePruningStep()])
    assert any((a != b).any() for a, b in zip(before, model.get_weights()))  # trained as usual


def _read_scalars(log_dir):
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(log_dir, size_guidance={"tensors": 0})
    acc.Reload()
    return {tag: [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in acc.Tensors(tag)]
            for tag in acc.Tags()["tensors"]}


def test_pruning_summaries_are_readable_by_tensorboard(tmp_path):
    model = pruned_model(tfprune.PolynomialDecay(0.0, 0.75, 0, 8, frequency=2))
    model.compile("adam", "mse")
    model.fit(X, Y, batch_size=16, epochs=3, verbose=0,
              callbacks=[tfprune.callbacks.UpdatePruningStep(),
                         tfprune.callbacks.PruningSummaries(log_dir=str(tmp_path))])
    assert glob.glob(str(tmp_path / "*tfevents*"))
    scalars = _read_scalars(str(tmp_path))
    name = model.layers[0].name
    sparsity = scalars[f"{name}/sparsity"]
    assert [s for s, _ in sparsity] == [4, 8, 12]
    assert sparsity[-1][1] == pytest.approx(0.75)
    assert sparsity[0][1] < sparsity[-1][1]
    assert scalars[f"{name}/threshold"][-1][1] > 0


def test_pruning_summaries_rejects_bad_log_dir():
    with pytest.raises(ValueError, match="Received: log_dir=3"):
        tfprune.callbacks.PruningSummaries(log_dir=3)


def test_steps_count_from_one_like_tfmot():
    # tfmot increments its step before asking the schedule: with begin_step=0 and
    # frequency=4 the first update is at the 4th batch, not the 1st.
    model = pruned_model(tfprune.ConstantSparsity(0.5, begin_step=0, frequency=4))
    fit(model, X, Y, steps=3)
    assert int(model.layers[0].last_update_step.numpy()) == -1
    fit(model, X, Y, steps=1)
    assert int(model.layers[0].last_update_step.numpy()) == 4
    assert int(model.layers[0].pruning_step.numpy()) == 4
