"""`PruningSummaries`: TensorBoard's logs plus pruning scalars, like tfmot's.

It is a `keras.callbacks.TensorBoard` (as tfmot's is), so it accepts TensorBoard's
arguments and writes what TensorBoard writes (epoch metrics under `train/` and
`validation/`, the graph, histograms, profiles when asked). On top of that, each
pruned layer gets two scalars, in an event file directly in `log_dir`:

- `<layer>/sparsity`: the fraction of masked entries over all its pruned weights
  (tfmot: `1 - mean(mask)`);
- `<layer>/threshold`: the smallest kept score at the last mask update (|w| for
  weights, the unit's sum of squares for units).

Both are written at step `optimizer.iterations` (the pruning step when the model
has no optimizer):

- in `model.fit`, at the end of every epoch (so the last point is the sparsity
  the run ended with; tfmot writes at the start of each epoch only);
- in a custom training loop, whenever `on_epoch_begin` or `on_epoch_end` is
  called, at most once per step: tfmot's guide calls
  `log_callback.on_epoch_begin(epoch=-1)` once per epoch, and that works as written.

Like TensorBoard's own batch logging, this callback has per-batch hooks, so
`model.fit` runs its steps synchronously while it is in the callbacks.
"""

import os
import warnings

import keras
import numpy as np

from tfprune.wrappers import collect_wrappers

__all__ = ["PruningSummaries"]


def _check_log_dir(log_dir):
    if isinstance(log_dir, bytes):
        log_dir = os.fsdecode(log_dir)
    if not isinstance(log_dir, (str, os.PathLike)) or not os.fspath(log_dir):
        raise ValueError(
            "Argument `log_dir` must be a non-empty path (a string or path-like). "
            f"Received: log_dir={log_dir!r}"
        )
    return os.fspath(log_dir)


def _layer_sparsity(wrapper):
    """Fraction of masked entries over all of a wrapper's pruned weights."""
    total = zeros = 0
    for t in wrapper.targets:
        mask = keras.ops.convert_to_numpy(t.mask)
        # A unit (or block) mask entry covers several weights.
        scale = int(np.prod(t.variable.shape)) // max(mask.size, 1)
        total += mask.size * scale
        zeros += int((mask == 0).sum()) * scale
    return zeros / max(total, 1)


class PruningSummaries(keras.callbacks.TensorBoard):
    """TensorBoard logging plus each pruned layer's sparsity and threshold.

    Args:
        log_dir: directory for the event files (non-empty; tfmot rejects "" too).
        update_freq: TensorBoard's `update_freq` ("epoch", as in tfmot).
        **kwargs: any other argument of `keras.callbacks.TensorBoard`
            (`histogram_freq`, `write_graph`, `profile_batch`, ...).

    See the module docstring for what is written when.

    Example:

    >>> import keras, numpy as np, tempfile, tfprune
    >>> model = tfprune.prune_low_magnitude(
    ...     keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]),
    ...     tfprune.ConstantSparsity(0.5, begin_step=0, frequency=1))
    >>> model.compile("sgd", "mse")
    >>> log_dir = tempfile.mkdtemp()
    >>> _ = model.fit(np.ones((4, 4)), np.ones((4, 2)), verbose=0, callbacks=[
    ...     tfprune.callbacks.UpdatePruningStep(),
    ...     tfprune.callbacks.PruningSummaries(log_dir=log_dir)])
    >>> sorted(p for p in os.listdir(log_dir) if not p.startswith("events"))
    ['train']
    """

    def __init__(self, log_dir, update_freq="epoch", **kwargs):
        log_dir = _check_log_dir(log_dir)
        super().__init__(log_dir=log_dir, update_freq=update_freq, **kwargs)
        self._pruning_writer = None
        self._last_pruning_step = None
        self._in_fit = False
        self._warned_unpruned = False

    def set_model(self, model):
        super().set_model(model)
        self._last_pruning_step = None

    # ---------------------------------------------------------------- hooks

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._in_fit = True

    def on_train_end(self, logs=None):
        super().on_train_end(logs)
        self._in_fit = False
        if self._pruning_writer is not None:
            self._pruning_writer.flush()

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        if not self._in_fit:
            self._write_pruning_scalars()

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        self._write_pruning_scalars()

    # -------------------------------------------------------------- writing

    def _step(self, wrappers):
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None and hasattr(optimizer, "iterations"):
            return int(keras.ops.convert_to_numpy(optimizer.iterations))
        return int(keras.ops.convert_to_numpy(wrappers[0].pruning_step))

    def _write_pruning_scalars(self):
        wrappers = [w for w in collect_wrappers(self.model) if w.built]
        if not wrappers:
            if not self._warned_unpruned and not collect_wrappers(self.model):
                self._warned_unpruned = True
                warnings.warn(
                    f"PruningSummaries: model {self.model.name!r} has no pruned layers, "
                    "so only TensorBoard's own logs are written. Wrap the model with "
                    "`tfprune.prune_low_magnitude` to log sparsity.",
                    stacklevel=3,
                )
            return
        step = self._step(wrappers)
        if step == self._last_pruning_step:
            return
        self._last_pruning_step = step
        if self._pruning_writer is None:
            self._pruning_writer = self.summary.create_file_writer(self.log_dir)
        with self._pruning_writer.as_default():
            for w in wrappers:
                self.summary.scalar(f"{w.name}/sparsity", _layer_sparsity(w), step=step)
                threshold = float(keras.ops.convert_to_numpy(w.threshold))
                self.summary.scalar(f"{w.name}/threshold", threshold, step=step)
        self._pruning_writer.flush()

    def get_config(self):
        return {"log_dir": self.log_dir, "update_freq": self.update_freq}
