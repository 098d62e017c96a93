"""tfprune/callbacks/lean.py: under `fit` on TensorFlow (graph and XLA) and JAX,
steps that update no mask run a second compiled step without the update
conditional; the result is bitwise what the full step gives, and every other path
keeps the full step."""

import keras
import numpy as np
import pytest
from keras import layers as L
from keras import ops

import tfprune
from tfprune.callbacks import lean

pytestmark = pytest.mark.core

BACKEND = keras.backend.backend()
LEAN_BACKEND = BACKEND in ("tensorflow", "jax")
JIT_MODES = [False, True] if BACKEND == "tensorflow" else [BACKEND == "jax"]
X = np.random.default_rng(0).standard_normal((72, 12)).astype("float32")
Y = np.random.default_rng(1).standard_normal((72, 3)).astype("float32")


def make(schedule=None, jit=BACKEND != "torch", **kw):
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((12,)), L.Dense(24, activation="relu"),
                              L.Dense(16, activation="relu"), L.Dense(3)])
    schedule = schedule or tfprune.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=9,
                                                   frequency=3)
    pruned = tfprune.prune_low_magnitude(model, schedule, **kw)
    pruned.compile("adam", "mse", jit_compile=jit)
    return pruned


def state(model):
    out = [ops.convert_to_numpy(v) for v in model.weights]
    for w in tfprune.collect_prunable_layers(model):
        out += [ops.convert_to_numpy(v) for v in w.pruning_variables]
    return out


class Calls(keras.callbacks.Callback):
    """Counts the calls of the lean dispatcher's two compiled steps (put it after
    `UpdatePruningStep`, which installs the dispatcher in `on_train_begin`)."""

    def __init__(self):
        super().__init__()
        self.full = self.lean = 0
        self.installed = False

    def on_train_begin(self, logs=None):
        dispatch = self.model.train_function
        self.installed = isinstance(dispatch, lean.LeanDispatch)
        if not self.installed:
            return
        full, lean_fn = dispatch.full, dispatch.lean
        self.original = full, lean_fn

        def counted_full(*a, **k):
            self.full += 1
            return full(*a, **k)

        def counted_lean(*a, **k):
            self.lean += 1
            return lean_fn(*a, **k)

        dispatch.full, dispatch.lean = counted_full, counted_lean


def fit(model, epochs=2, callbacks=(), **kw):
    return model.fit(X, Y, batch_size=8, epochs=epochs, verbose=0, shuffle=False,
                     callbacks=[tfprune.callbacks.UpdatePruningStep(), *callbacks], **kw)


@pytest.mark.parametrize("jit", JIT_MODES)
def test_lean_fit_is_bitwise_the_full_steps_fit(jit, monkeypatch):
    calls = Calls()
    with_lean = make(jit=jit)
    fit(with_lean, callbacks=[calls])  # 18 steps: updates at 3, 6, 9
    assert calls.installed == LEAN_BACKEND
    if LEAN_BACKEND:
        assert (calls.full, calls.lean) == (3, 15)
    monkeypatch.setattr(lean, "_eligible", lambda model, drivers: False)
    full_only = make(jit=jit)
    fit(full_only)
    for a, b in zip(state(with_lean), state(full_only)):
        np.testing.assert_array_equal(a, b)
    for w in tfprune.collect_prunable_layers(with_lean):
        assert int(ops.convert_to_numpy(w.pruning_step)) == 18
        assert int(ops.convert_to_numpy(w.last_update_step)) == 9


def test_fit_gives_keras_its_own_train_function_back_and_reuses_the_lean_one():
    model = make()
    fit(model, epochs=1)
    own = model.train_function
    assert not isinstance(own, lean.LeanDispatch)
    cached = getattr(model, "_tfprune_lean", None)
    calls = Calls()
    fit(model, epochs=1, callbacks=[calls])
    assert not isinstance(model.train_function, lean.LeanDispatch)
    if LEAN_BACKEND:  # steps 10..18: the schedule ended at 9, so every step is lean
        assert calls.original == (own, cached[1]) and model._tfprune_lean is cached
        assert (calls.full, calls.lean) == (0, 9)


def test_train_on_batch_after_an_interrupted_fit_still_updates_masks():
    class Boom(Exception):
        pass

    class Stop(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                raise Boom

    model = make(tfprune.ConstantSparsity(0.5, begin_step=3, end_step=3, frequency=1))
    with pytest.raises(Boom):
        fit(model, epochs=1, callbacks=[Stop()])  # steps 1, 2: the dispatcher is left
    w = tfprune.collect_prunable_layers(model)[0]
    assert int(ops.convert_to_numpy(w.pruning_step)) == 2
    if LEAN_BACKEND:  # left installed; make its host count stale (steps taken elsewhere)
        assert isinstance(model.train_function, lean.LeanDispatch)
        model.train_function.steps = [0]
    model.train_on_batch(X[:8], Y[:8])  # step 3: must update, through the full step
    assert int(ops.convert_to_numpy(w.last_update_step)) == 3
    k = ops.convert_to_numpy(w.layer.kernel)
    assert (k == 0).sum() == k.size // 2


def test_a_loss_scale_optimizer_keeps_the_full_step_every_step():
    """It skips the steps whose scaled gradients overflow (no pruning step either),
    which the host cannot count."""
    model = make()
    model.compile(keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam()), "mse",
                  jit_compile=model.jit_compile)
    calls = Calls()
    fit(model, epochs=1, callbacks=[calls])
    assert not calls.installed
    w = tfprune.collect_prunable_layers(model)[0]
    assert int(ops.convert_to_numpy(w.pruning_step)) == int(
        ops.convert_to_numpy(model.optimizer.iterations))


def test_a_user_schedule_keeps_the_full_step_every_step():
    class Every2(tfprune.PruningSchedule):
        frequency = 2

        def sparsity(self, step):
            return ops.convert_to_tensor(0.5, "float64")

        def get_config(self):
            return {}

    calls = Calls()
    model = make(Every2())
    fit(model, epochs=1, callbacks=[calls])
    assert not calls.installed
    w = tfprune.collect_prunable_layers(model)[0]
    assert int(ops.convert_to_numpy(w.last_update_step)) == 8


@pytest.mark.skipif(BACKEND != "tensorflow", reason="writes a variable in the middle of fit")
def test_a_step_count_changed_behind_fits_back_is_an_error():
    class Meddle(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 0:
                for w in tfprune.collect_prunable_layers(self.model):
                    w._state.pruning_step.assign(100)

    model = make()
    with pytest.raises(RuntimeError, match="host's step count"):
        fit(model, epochs=1, callbacks=[Meddle()])


@pytest.mark.skipif(BACKEND != "tensorflow", reason="a TensorFlow custom training loop")
def test_a_custom_loop_after_fit_is_not_mistaken_for_a_skipped_update():
    import tensorflow as tf

    model = make(tfprune.ConstantSparsity(0.5, begin_step=0, frequency=2))
    fit(model, epochs=1)
    cb = tfprune.callbacks.UpdatePruningStep()
    cb.set_model(model)
    cb.on_train_begin()
    for _ in range(3):  # tfmot's custom-loop guide: steps outside fit
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((model(X[:8], training=True) - Y[:8]) ** 2)
        grads = tape.gradient(loss, model.trainable_variables)
        model.optimizer.apply_gradients(zip(grads, model.trainable_variables))
    cb.on_epoch_end(batch=3)  # no error: no lean step ran
    cb.on_train_end()
    w = tfprune.collect_prunable_layers(model)[0]
    assert int(ops.convert_to_numpy(w.pruning_step)) == 12
    assert int(ops.convert_to_numpy(w.last_update_step)) == 12


def test_a_step_count_restored_by_a_later_callback_is_the_one_counted():
    class Restore(keras.callbacks.Callback):  # as BackupAndRestore does, after ours
        def on_train_begin(self, logs=None):
            for w in tfprune.collect_prunable_layers(self.model):
                w._state.pruning_step.assign(5)

    model = make(tfprune.ConstantSparsity(0.5, begin_step=6, end_step=6, frequency=1))
    model.fit(X[:24], Y[:24], batch_size=8, epochs=1, verbose=0, shuffle=False,
              callbacks=[tfprune.callbacks.UpdatePruningStep(), Restore()])  # steps 6-8
    for w in tfprune.collect_prunable_layers(model):
        assert int(ops.convert_to_numpy(w.pruning_step)) == 8
        assert int(ops.convert_to_numpy(w.last_update_step)) == 6
        k = ops.convert_to_numpy(w.layer.kernel)
        assert (k == 0).sum() == k.size - tfprune.masks.keep_count(k.size, 0.5)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="drives TensorFlow's train function")
@pytest.mark.parametrize("jit", [False, True])
def test_steps_driven_one_by_one_through_fit_step_are_bitwise_fits_steps(jit):
    """`LeanDispatch.fit_step`, as `benchmarks/overhead.py --steps` calls it: full
    steps at the update steps, lean ones between, and the result of `fit`."""
    import tensorflow as tf

    schedule = tfprune.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=15, frequency=3)
    driven, reference = make(schedule, jit=jit), make(schedule, jit=jit)
    fit(driven, epochs=1)  # 9 steps: compiles the full and the lean step
    fit(reference, epochs=2)  # 18 steps: updates at 3, 6, 9, 12, 15
    cb, calls = tfprune.callbacks.UpdatePruningStep(), Calls()
    callbacks = keras.callbacks.CallbackList([cb, calls], model=driven)
    callbacks.on_train_begin()
    dispatch = driven.train_function
    with pytest.raises(RuntimeError, match=r"fit_step\(\) before resync"):
        dispatch.fit_step(iter([]))
    callbacks.on_epoch_begin(0)
    batches = iter(tf.data.Dataset.from_tensor_slices((X, Y)).batch(8))
    for _ in range(9):  # steps 10..18
        dispatch.fit_step(batches)
    callbacks.on_epoch_end(0)  # the host's count is the model's: no error
    callbacks.on_train_end()
    assert (calls.full, calls.lean) == (2, 7)  # steps 12 and 15 update
    for a, b in zip(state(driven), state(reference)):
        np.testing.assert_array_equal(a, b)
