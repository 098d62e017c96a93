"""`PruningSummaries`: pruning scalars for TensorBoard."""

import keras
import numpy as np
import tensorflow as tf

from tfprune.callbacks.pruning_step import require_wrappers

__all__ = ["PruningSummaries"]


class PruningSummaries(keras.callbacks.Callback):
    """Writes each pruned layer's sparsity and threshold to TensorBoard.

    Scalars `<layer>/sparsity` (fraction of masked entries over all its pruned
    weights) and `<layer>/threshold` (smallest kept score at the last update:
    |w| for weights, the unit's sum of squares for units) are written at the end
    of every epoch, at step `optimizer.iterations`.

    Args:
        log_dir: directory for the event files.

    Example:

    >>> cb = tfprune.callbacks.PruningSummaries(log_dir="/tmp/logs")  # doctest: +SKIP
    """

    def __init__(self, log_dir):
        super().__init__()
        if (not isinstance(log_dir, (str, bytes)) and not hasattr(log_dir, "__fspath__")
                or not str(log_dir)):
            raise ValueError(
                "Argument `log_dir` must be a non-empty path. "
                f"Received: log_dir={log_dir!r}"
            )
        self.log_dir = str(log_dir)
        self._writer = None

    def on_train_begin(self, logs=None):
        self._wrappers = require_wrappers(self.model, "PruningSummaries")
        self._writer = tf.summary.create_file_writer(self.log_dir)

    def on_epoch_end(self, epoch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        with self._writer.as_default():
            for w in self._wrappers:
                if not w.built:
                    continue
                total = zeros = 0
                for t in w.targets:
                    m = t.mask.numpy()
                    # A unit mask covers every weight of its unit.
                    scale = int(np.prod(t.variable.shape)) // m.size
                    total += m.size * scale
                    zeros += int((m == 0).sum()) * scale
                tf.summary.scalar(f"{w.name}/sparsity", zeros / max(total, 1), step=step)
                tf.summary.scalar(f"{w.name}/threshold", float(w.threshold.numpy()), step=step)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.flush()

    def get_config(self):
        return {"log_dir": self.log_dir}
