"""Fine-tuned levels: a short pruning run from the dense weights at each level.

`finetune=dict(epochs=..., train_data=..., schedule=..., batch_size=...,
optimizer=..., loss=...)` in `tfprune.sweep.run`:

- `epochs` (required, int >= 1): epochs of training per level;
- `train_data`: `(x, y)`, a `tf.data.Dataset`, a loader name or a `.npz`; default:
  the training half of `data` when `data` names a loader or a file;
- `schedule`: a function `(sparsity, total_steps) -> PruningSchedule`; default
  `default_schedule`: `PolynomialDecay(0 -> sparsity)` over the first half of the
  steps (updates every `max(1, min(100, steps // 20))` steps), the second half at
  the final sparsity;
- `batch_size` (default 128), `optimizer` (a name, config, instance — copied fresh
  for every level — or a zero-argument function; default: the model's compiled
  optimizer, else "adam"), `loss` (default: the model's compiled loss).

Each level clones the dense model with `tfprune.prune_low_magnitude` (the output
layer kept by weight when `skip_output_layer`, as in one-shot), trains with
`tfprune.callbacks.UpdatePruningStep`, strips the wrappers and evaluates. Random
ranking has no fine-tuned curve (training ranks by magnitude).
"""

import contextlib
import logging

import keras

__all__ = ["FinetuneOptions", "default_schedule", "finetune_model", "quiet_retracing"]

_KEYS = ("epochs", "train_data", "schedule", "batch_size", "optimizer", "loss")


def default_schedule(sparsity, steps):
    """`PolynomialDecay(0 -> sparsity)` ending at half the steps, on an update step."""
    import tfprune

    frequency = max(1, min(100, steps // 20))
    end = frequency * max(1, (steps // 2) // frequency)
    return tfprune.PolynomialDecay(0.0, sparsity, begin_step=0, end_step=end, frequency=frequency)


class FinetuneOptions:
    """Checked `finetune=` options (see the module doc)."""

    def __init__(self, options):
        if not isinstance(options, dict):
            raise TypeError(f"Argument `finetune` must be a dict or None. Received: "
                            f"finetune={options!r}")
        unknown = sorted(set(options) - set(_KEYS))
        if unknown:
            raise ValueError(f"Argument `finetune` has unknown keys {unknown} (known: "
                             f"{list(_KEYS)}). Received: finetune={options!r}")
        epochs = options.get("epochs")
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"Argument `finetune['epochs']` must be an integer >= 1. "
                             f"Received: epochs={epochs!r}")
        batch_size = options.get("batch_size", 128)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"Argument `finetune['batch_size']` must be an integer >= 1. "
                             f"Received: batch_size={batch_size!r}")
        schedule = options.get("schedule")
        if schedule is not None and not callable(schedule):
            raise TypeError("Argument `finetune['schedule']` must be a function (sparsity, "
                            f"total_steps) -> PruningSchedule. Received: schedule={schedule!r}")
        self.epochs = epochs
        self.batch_size = batch_size
        self.schedule = schedule or default_schedule
        self.train_data = options.get("train_data")
        self.optimizer = options.get("optimizer")
        self.loss = options.get("loss")

    def fingerprint(self):
        return (f"epochs={self.epochs} batch_size={self.batch_size} "
                f"schedule={getattr(self.schedule, '__qualname__', repr(self.schedule))} "
                f"optimizer={_describe(self.optimizer)} loss={_describe(self.loss)}")

    def make_optimizer(self, model):
        opt = self.optimizer
        if opt is None:
            if getattr(model, "compiled", False) and getattr(model, "optimizer", None) is not None:
                return keras.optimizers.deserialize(keras.optimizers.serialize(model.optimizer))
            return keras.optimizers.get("adam")
        if callable(opt) and not isinstance(opt, keras.optimizers.Optimizer):
            return opt()
        if isinstance(opt, keras.optimizers.Optimizer):
            return keras.optimizers.deserialize(keras.optimizers.serialize(opt))
        return keras.optimizers.get(opt)


def _describe(obj):
    if obj is None or isinstance(obj, (str, int, float)):
        return repr(obj)
    if isinstance(obj, keras.optimizers.Optimizer):
        return repr(keras.optimizers.serialize(obj)["config"])
    return getattr(obj, "__qualname__", type(obj).__name__)


def _copy_layer(layer):
    return layer.__class__.from_config(layer.get_config())


def _prune_except(model, keep, schedule, scope):
    """`model` cloned with every prunable layer but those named in `keep` wrapped
    by weight (`prune_low_magnitude(layer, ...)` in a clone function, the tfmot
    pattern), weights copied."""
    import tfprune
    from tfprune import graph, registry

    originals = {l.name: l for l in graph.leaf_layers(model)}

    def clone_function(layer):
        if registry.get_spec(layer) is not None and layer.name not in keep:
            return tfprune.prune_low_magnitude(_copy_layer(layer), schedule, scope=scope)
        return _copy_layer(layer)

    clone = keras.models.clone_model(model, clone_function=clone_function, recursive=True)
    for layer in graph.leaf_layers(clone):
        source = originals.get(layer.name)
        if source is not None and source.weights:
            layer.set_weights(source.get_weights())
    return clone


class _NoRetracingWarning(logging.Filter):
    def filter(self, record):
        return "retracing" not in record.getMessage()


@contextlib.contextmanager
def quiet_retracing():
    """Every fine-tuned level trains and evaluates a new model, so TF's "triggered
    tf.function retracing" warning is expected there and says nothing: hidden."""
    quiet = _NoRetracingWarning()
    logger = logging.getLogger("tensorflow")
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def finetune_model(base, sparsity, granularity, scope, skip_output, options, train, loss,
                   optimizer, seed):
    """Train a pruned copy of `base` (its dense weights are the start) with a fresh
    `optimizer` and return it stripped. `skip_output`: names of layers kept dense
    by weight."""
    import tfprune

    keras.utils.set_random_seed(seed)
    steps = train.steps_per_epoch(options.batch_size) * options.epochs
    schedule = options.schedule(sparsity, steps)
    if granularity == "weight" and skip_output:
        pruned = _prune_except(base, skip_output, schedule, scope)
    else:
        pruned = tfprune.prune_low_magnitude(base, schedule, granularity=granularity, scope=scope)
    pruned.compile(optimizer=optimizer, loss=loss)
    train.fit(pruned, options.epochs, options.batch_size,
              [tfprune.callbacks.UpdatePruningStep()])
    return tfprune.strip_pruning(pruned)
