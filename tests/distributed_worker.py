"""Training under `tf.distribute`, run in subprocesses by tests/test_distributed.py.

`python distributed_worker.py MODE OUT` (TensorFlow backend):

- `mirrored`: two logical CPU devices (configured before TensorFlow starts), then
  `fit` of every `CASES` model under `MirroredStrategy` and under the default
  strategy (single device), and the custom loop under `MirroredStrategy`;
- `loop`: the custom training loop under `MultiWorkerMirroredStrategy` (the
  cluster comes from `TF_CONFIG`);
- `fit`: `model.fit` under `MultiWorkerMirroredStrategy` (keras-team/keras#20585).

Each run writes `OUT/<run>.npz` (every replica's masks and weights,
`<layer>/mask<i>/replica<r>`, `<layer>/weight<i>/replica<r>`, and `<layer>/step`) and
saves the model to `OUT/<run>.keras`. `train_loop` also runs in the test's own process for
the single-device reference of the multi-worker runs.
"""

import json
import os
import sys

STEPS = 8
GLOBAL_BATCH = 16
CASES = ("weight", "unit")


def data():
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(STEPS * GLOBAL_BATCH, 8)).astype("float32")
    y = rng.normal(size=(STEPS * GLOBAL_BATCH, 4)).astype("float32")
    return x, y


def build(granularity="weight"):
    """A seeded MLP pruned from 0 to 75% over the 8 steps (updates at 2, 4, 6, 8)."""
    import keras

    import tfprune

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8,)),
        keras.layers.Dense(16, activation="relu", name="hidden"),
        keras.layers.Dense(12, activation="relu", name="middle"),
        keras.layers.Dense(4, name="out"),
    ])
    schedule = tfprune.PolynomialDecay(0.0, 0.75, begin_step=0, end_step=STEPS, frequency=2)
    return tfprune.prune_low_magnitude(model, schedule, granularity=granularity)


def _replicas(variable):
    """Every replica's value of a (Keras) variable: one for a plain variable."""
    import numpy as np

    inner = getattr(variable, "value", variable)
    values = getattr(inner, "values", None)
    if values is None:
        return [np.asarray(variable)]
    return [np.asarray(v.numpy()) for v in values]


def state(model):
    """`{key: array}`: every replica's masks and weights, and the steps."""
    import numpy as np

    import tfprune

    out = {}
    for w in tfprune.callbacks.pruning_step.collect_wrappers(model):
        for i, t in enumerate(w.targets):
            for r, value in enumerate(_replicas(t.mask)):
                out[f"{w.name}/mask{i}/replica{r}"] = value
        for i, v in enumerate(w.layer.weights):
            for r, value in enumerate(_replicas(v)):
                out[f"{w.name}/weight{i}/replica{r}"] = value
        out[f"{w.name}/step"] = np.asarray(w.pruning_step)
    return out


def write(out, run, model):
    import numpy as np

    np.savez(os.path.join(out, f"{run}.npz"), **state(model))
    model.save(os.path.join(out, f"{run}.keras"))


def train_fit(strategy, granularity="weight"):
    import keras

    import tfprune

    x, y = data()
    with strategy.scope():
        model = build(granularity)
        model.compile(keras.optimizers.SGD(0.1), "mse")
    model.fit(x, y, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False, verbose=0,
              callbacks=[tfprune.callbacks.UpdatePruningStep()])
    return model


def train_loop(strategy, granularity="weight"):
    """tfprune's documented custom-loop recipe in a `strategy.run` loop."""
    import keras
    import tensorflow as tf

    import tfprune

    x, y = data()
    with strategy.scope():
        model = build(granularity)
        optimizer = keras.optimizers.SGD(0.1)
        optimizer.build(model.trainable_variables)
    cb = tfprune.callbacks.UpdatePruningStep()
    cb.set_model(model)
    cb.on_train_begin()

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH).with_options(options)

    def replica_step(xb, yb):
        with tf.GradientTape() as tape:
            per_example = tf.reduce_mean(tf.square(model(xb, training=True) - yb), axis=-1)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=GLOBAL_BATCH)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    @tf.function
    def step(batch):
        return strategy.run(replica_step, args=batch)

    for batch in strategy.experimental_distribute_dataset(dataset):
        step(batch)
    cb.on_epoch_end(batch=STEPS)
    cb.on_train_end()
    return model


def main(mode, out):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    if mode == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        assert mirrored.num_replicas_in_sync == 2, mirrored.num_replicas_in_sync
        for g in CASES:
            write(out, f"mirrored_fit_{g}", train_fit(mirrored, g))
            write(out, f"single_fit_{g}", train_fit(tf.distribute.get_strategy(), g))
        write(out, "mirrored_loop_weight", train_loop(mirrored, "weight"))
    else:
        task = json.loads(os.environ["TF_CONFIG"])["task"]
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        assert strategy.num_replicas_in_sync == 2, strategy.num_replicas_in_sync
        model = (train_loop if mode == "loop" else train_fit)(strategy, "weight")
        write(out, f"{mode}_worker{task['index']}", model)
    print("DONE", mode, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
