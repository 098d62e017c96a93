"""What a sweep records about one pruned model, besides its metrics.

- `params` / `nonzero_params` / `model_sparsity`: over every weight of the model
  (`model.weights`, trainable or not);
- `flops`: the dense model's FLOPs (`tfprune.flops.layer_costs`, 2 per
  multiply-add, batch 1); masks do not remove FLOPs on dense hardware;
- `shrunk_params` / `shrunk_flops` (unit pruning): after `tfprune.shrink`, which
  removes the dead units and checks that the outputs did not change;
- `gzip_bytes`: a gzip stream of the weights' raw bytes, concatenated in
  `model.weights` order (what a stripped weights file compresses to, less its
  small HDF5 overhead; see `gzip_bytes`).

`latency_ms(model, x)`: median batch-1 latency of a compiled Keras forward pass.
"""

import time
import warnings
import zlib
import warnings

import keras
import numpy as np

from tfprune import flops as flops_lib

__all__ = ["weight_counts", "gzip_bytes", "dense_flops", "shrunk_costs", "latency_ms"]


def _values(model):
    return [np.asarray(keras.ops.convert_to_numpy(v)) for v in model.weights]


def weight_counts(model, values=None):
    """`(params, nonzero_params)` over every weight of `model`."""
    values = _values(model) if values is None else values
    return sum(v.size for v in values), sum(int(np.count_nonzero(v)) for v in values)


def gzip_bytes(model, values=None):
    """Bytes of a gzip stream of the weights' raw bytes (model.weights order).

    Deflate with zlib's run-length strategy (`Z_RLE`, level 6): a valid gzip file
    (`gunzip` reads it) that, on float weights with pruned zeros, is within about
    2% of `gzip -6` (smaller at high sparsity) and 3-6x faster to make, so a sweep
    can afford one per level.
    """
    values = _values(model) if values is None else values
    packer = zlib.compressobj(6, zlib.DEFLATED, 31, 9, zlib.Z_RLE)  # wbits 31: gzip header
    size = 0
    for v in values:
        size += len(packer.compress(np.ascontiguousarray(v).data))
    return size + len(packer.flush())


def dense_flops(model):
    """Total FLOPs of `model` (None if a layer's FLOPs are not counted)."""
    costs = flops_lib.layer_costs(model).values()
    return None if any(f is None for _, f in costs) else int(sum(f for _, f in costs))


def shrunk_costs(model):
    """`(params, flops)` of `tfprune.shrink(model)` (outputs verified by shrink)."""
    from tfprune.shrink import shrink

    with warnings.catch_warnings():  # "kept at full width": the output layer, expected
        warnings.simplefilter("ignore", UserWarning)
        _, report = shrink(model, return_report=True)
    return int(report.params_after), report.flops_after


def latency_ms(model, x, runs=50, warmup=5):
    """Median wall time (ms) of one batch-1 forward pass of `model` on `x[:1]`, as a
    compiled `tf.function` (Keras, no TFLite), after `warmup` calls.

    Example:

    >>> import keras, numpy as np, tfprune
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> tfprune.sweep.latency_ms(model, np.ones((1, 8), "float32"), runs=5) > 0
    True
    """
    import tensorflow as tf

    call = tf.function(lambda t: model(t, training=False))
    sample = tf.constant(np.asarray(x)[:1])
    for _ in range(warmup):
        call(sample)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        keras.ops.convert_to_numpy(call(sample))
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))
