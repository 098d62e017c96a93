"""Helpers for the tfprune.export tests: block-sparse weights built with NumPy,
files converted directly (independently of tfprune.export), interpreter runs."""

import contextlib
import io

import keras
import numpy as np


def zero_blocks(kernel, block, sparsity, rng):
    """`kernel` with a random `sparsity` share of its `block`-shaped tiles zeroed
    (tiles start at index 0; a partial last tile counts as a tile)."""
    w = np.array(kernel, copy=True)
    grid = [-(-n // b) for n, b in zip(w.shape, block)]
    n = int(np.prod(grid))
    dead = np.zeros(n, bool)
    dead[rng.permutation(n)[:round(n * sparsity)]] = True
    mask = ~dead.reshape(grid)
    for axis, b in enumerate(block):
        mask = np.repeat(mask, b, axis=axis)
    return w * mask[tuple(slice(0, s) for s in w.shape)]


def block_prune(model, block, sparsity, rng, layers=None):
    for layer in layers or [l for l in model.layers if isinstance(l, keras.layers.Dense)]:
        layer.kernel.assign(zero_blocks(layer.kernel.numpy(), block, sparsity, rng))
    return model


def mlp(inputs=64, hidden=(32,), classes=10, use_bias=True):
    layers = [keras.Input((inputs,))]
    layers += [keras.layers.Dense(u, activation="relu", use_bias=use_bias) for u in hidden]
    layers.append(keras.layers.Dense(classes, use_bias=use_bias))
    return keras.Sequential(layers)


def raw_convert(model, quantize=None, sparse=True, rep=None):
    """The converter called directly (what a user without tfprune gets)."""
    import tensorflow as tf

    c = tf.lite.TFLiteConverter.from_keras_model(model)
    opts = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY] if sparse else []
    if quantize:
        opts.append(tf.lite.Optimize.DEFAULT)
    if quantize == "float16":
        c.target_spec.supported_types = [tf.float16]
    if quantize == "int8":
        c.representative_dataset = rep
        c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    c.optimizations = opts
    with contextlib.redirect_stdout(io.StringIO()):
        return c.convert()


def run_file(data, x, xnnpack=True):
    """Outputs (list, signature order) of a .tflite (bytes or path) on input(s) `x`."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kind = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    if not isinstance(data, (bytes, bytearray)):
        data = open(data, "rb").read()
    it = Interpreter(model_content=bytes(data), experimental_op_resolver_type=kind)
    sig = it.get_signature_list()["serving_default"]
    runner = it.get_signature_runner()
    xs = x if isinstance(x, (list, tuple)) else [x]
    out = runner(**dict(zip(sig["inputs"], xs)))
    return [out[k] for k in sorted(out, key=lambda k: int(k.rsplit("_", 1)[-1]))]


def representative(x):
    def gen():
        for i in range(len(x)):
            yield [x[i:i + 1]]

    return gen
