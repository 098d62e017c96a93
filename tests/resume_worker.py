"""A pruning run that can be killed and resumed; run in subprocesses by
tests/test_resume.py.

`python resume_worker.py ROUTE OUT [STOP_EPOCH]`

- `ROUTE=full`: train `EPOCHS` epochs without interruption, writing the state
  after every epoch (`OUT/full_epoch<e>.npz`, e = 1..EPOCHS).
- `ROUTE=backup`: `fit(epochs=EPOCHS)` with `keras.callbacks.BackupAndRestore(OUT/backup)`.
- `ROUTE=keras`: without `OUT/ckpt.keras`, a fresh model trained for `STOP_EPOCH`
  epochs and saved there (`model.save`); with it, `keras.models.load_model` and
  `fit(initial_epoch=STOP_EPOCH, epochs=EPOCHS)`.

With `STOP_EPOCH`, once epoch `STOP_EPOCH` has been checkpointed the process
writes `OUT/checkpointed` and waits to be killed (SIGKILL, by the test). A run
that finishes writes `OUT/<ROUTE>_begin.npz` (the state when training starts,
after any restore), `OUT/<ROUTE>_final.npz` and `OUT/<ROUTE>_epochs.json` (the
epochs it ran).

The schedule is mid-way at the checkpoint: `PolynomialDecay(0 -> 0.8, steps 2..20,
every 3)` with 4 steps per epoch over 6 epochs; Adam carries optimizer state.
"""

import json
import os
import sys
import time

EPOCHS = 6
STEPS_PER_EPOCH = 4
BATCH = 8


def data():
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(STEPS_PER_EPOCH * BATCH, 10)).astype("float32")
    y = rng.normal(size=(STEPS_PER_EPOCH * BATCH, 3)).astype("float32")
    return x, y


def build():
    """Layers pruned by weight, by unit and by weight in global scope, in one model."""
    import keras

    import tfprune

    keras.utils.set_random_seed(0)
    schedule = tfprune.PolynomialDecay(0.0, 0.8, begin_step=2, end_step=20, frequency=3)
    model = keras.Sequential([
        keras.Input((10,)),
        tfprune.prune_low_magnitude(keras.layers.Dense(16, activation="relu", name="a"),
                                    schedule, granularity="unit"),
        tfprune.prune_low_magnitude(keras.layers.Dense(12, activation="relu", name="b"),
                                    schedule),
        keras.layers.Dense(3, name="out"),
    ])
    model.compile(keras.optimizers.Adam(0.01), "mse")
    return model


def state(model):
    """Every model weight (pruning state included: masks, steps, thresholds) and
    every optimizer variable, by index (a loaded optimizer names its variables
    after the loaded model's path, so only weight names are compared)."""
    import numpy as np
    from keras import ops

    import tfprune

    out = {}
    for w in tfprune.callbacks.pruning_step.collect_wrappers(model):
        for i, v in enumerate(w.pruning_variables):
            out[f"{w.name}/pruning{i}"] = np.asarray(ops.convert_to_numpy(v))
    for i, v in enumerate(model.weights):
        out[f"weight{i}:{v.name}"] = np.asarray(ops.convert_to_numpy(v))
    if model.optimizer is not None and model.optimizer.built:
        for i, v in enumerate(model.optimizer.variables):
            out[f"optimizer{i}"] = np.asarray(ops.convert_to_numpy(v))
    return out


def save_state(path, model):
    import numpy as np

    np.savez(path, **state(model))


def callbacks(out, route, stop_epoch):
    import keras

    epochs = []

    class Record(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            save_state(os.path.join(out, f"{route}_begin.npz"), self.model)

        def on_epoch_begin(self, epoch, logs=None):
            epochs.append(epoch)

        def on_epoch_end(self, epoch, logs=None):
            if route == "full":
                save_state(os.path.join(out, f"full_epoch{epoch + 1}.npz"), self.model)
            if stop_epoch is not None and epoch + 1 == stop_epoch:
                open(os.path.join(out, "checkpointed"), "w").close()
                time.sleep(3600)  # killed here by the test

    return Record(), epochs


def main(route, out, stop_epoch=None):
    import keras

    import tfprune

    x, y = data()
    record, epochs = callbacks(out, route, stop_epoch)
    cbs = [tfprune.callbacks.UpdatePruningStep()]
    initial_epoch, total = 0, EPOCHS
    if route == "backup":
        model = build()
        cbs.append(keras.callbacks.BackupAndRestore(os.path.join(out, "backup")))
    elif route == "keras":
        ckpt = os.path.join(out, "ckpt.keras")
        if os.path.exists(ckpt):
            model = keras.models.load_model(ckpt)
            initial_epoch = stop_epoch
        else:
            model = build()
            model.fit(x, y, batch_size=BATCH, epochs=stop_epoch, shuffle=False, verbose=0,
                      callbacks=cbs)
            model.save(ckpt)
            open(os.path.join(out, "checkpointed"), "w").close()
            time.sleep(3600)  # killed here by the test
    else:
        model = build()
    cbs.append(record)
    model.fit(x, y, batch_size=BATCH, epochs=total, initial_epoch=initial_epoch, shuffle=False,
              verbose=0, callbacks=cbs)
    save_state(os.path.join(out, f"{route}_final.npz"), model)
    with open(os.path.join(out, f"{route}_epochs.json"), "w") as f:
        json.dump(epochs, f)
    print("DONE", route, flush=True)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else None)
