"""Run a `.tflite` file in the interpreter and compare it with Keras.

The interpreter is `ai_edge_litert.interpreter.Interpreter` when installed (extra
`litert`), else the deprecated `tf.lite.Interpreter` (same arguments). With
`xnnpack=True` it is created as users create it (LiteRT applies its default
XNNPACK delegate); with `xnnpack=False` with
`OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES` (the builtin kernels only).

Inputs are matched to the file's signature by name (a functional model's
`keras.Input(name=...)`), else by position; outputs come in the signature's
`output_0, output_1, ...` order, which is the Keras output order.
"""

import warnings

import numpy as np

__all__ = ["interpreter_api", "FileRunner", "compare", "check_model_inputs", "TOLERANCE"]

# Relative limits (times max(1, max|keras|)) that make a float export fail.
TOLERANCE = {None: 1e-4, "float16": 1e-2}


def interpreter_api():
    """`(Interpreter class, OpResolverType, name)` of the interpreter in use."""
    try:
        import ai_edge_litert
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        version = getattr(ai_edge_litert, "__version__", "")
        return Interpreter, OpResolverType, f"ai_edge_litert {version}".strip()
    except ImportError:
        import tensorflow as tf

        return tf.lite.Interpreter, tf.lite.experimental.OpResolverType, "tf.lite.Interpreter"


class FileRunner:
    """A loaded `.tflite` (bytes): `inputs` (name, shape signature, dtype) and
    `__call__(arrays)` -> list of output arrays (any batch size)."""

    def __init__(self, data, xnnpack=True, num_threads=None):
        cls, resolver, self.interpreter_name = interpreter_api()
        kind = resolver.AUTO if xnnpack else resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        self.runtime = "XNNPACK delegate" if xnnpack else "builtin kernels"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
            self._it = cls(model_content=bytes(data), num_threads=num_threads,
                           experimental_op_resolver_type=kind)
        signatures = self._it.get_signature_list()
        self._key = next(iter(signatures))
        sig = signatures[self._key]
        self._runner = self._it.get_signature_runner(self._key)
        details = self._runner.get_input_details()
        self.inputs = [(name, tuple(details[name]["shape_signature"]), details[name]["dtype"])
                       for name in sig["inputs"]]
        self.outputs = sorted(sig["outputs"], key=_output_order)

    def __call__(self, arrays):
        feed = {name: np.asarray(a, dtype) for (name, _, dtype), a in zip(self.inputs, arrays)}
        result = self._runner(**feed)
        return [np.asarray(result[name]) for name in self.outputs]


def _output_order(name):
    tail = name.rsplit("_", 1)[-1]
    return (0, int(tail), name) if tail.isdigit() else (1, 0, name)


def keras_input_names(model):
    try:
        return [t.name for t in model.inputs]
    except (AttributeError, ValueError, TypeError):
        return []


def order_inputs(runner, model, arrays):
    """`arrays` (list, in the model's input order, or dict by name) in `runner`'s order."""
    names = [n for n, _, _ in runner.inputs]
    if isinstance(arrays, dict):
        missing = [n for n in names if n not in arrays]
        if missing:
            raise ValueError(f"Sample inputs lack {missing}; the file's inputs are {names}.")
        return [arrays[n] for n in names]
    arrays = list(arrays)
    if len(arrays) != len(names):
        raise ValueError(f"The file has {len(names)} input(s) {names}; received "
                         f"{len(arrays)} array(s).")
    keras_names = keras_input_names(model)
    if sorted(keras_names) == sorted(names) and len(set(names)) == len(names):
        by_name = dict(zip(keras_names, arrays))
        return [by_name[n] for n in names]
    return arrays


def _shape(a):
    return tuple(np.shape(a))


def check_model_inputs(model, data, where, labels=None):
    """Raise ValueError (starting with `where`) unless `data` fits `model`'s inputs:
    one array per input (an array, a list in input order, or a dict by input
    name), each with the input's rank and known dimensions. Callables (TF-style
    generators) and models without known inputs are not checked.

    `labels`: names of the arrays in the message (e.g. the keys of a .npz file).
    """
    if data is None or callable(data):
        return
    try:
        specs = [(t.name, tuple(t.shape)) for t in model.inputs]
    except (AttributeError, ValueError, TypeError):
        return
    if not specs:
        return
    if isinstance(data, dict):
        missing = [n for n, _ in specs if n not in data]
        extra = [k for k in data if k not in dict(specs)]
        if missing or extra:
            raise ValueError(
                f"{where} has arrays {sorted(map(str, data))}; the model's inputs are "
                f"{[n for n, _ in specs]} (missing {missing}, unknown {extra}).")
        pairs = [(repr(n), data[n]) for n, _ in specs]
    else:
        arrays = list(data) if isinstance(data, (list, tuple)) else [data]
        named = labels is not None and len(labels) == len(arrays)
        names = [repr(n) for n in labels] if named else [f"#{i}" for i in range(len(arrays))]
        pairs = list(zip(names, arrays))
    wanted = ", ".join(f"{n!r} of shape {shape}" for n, shape in specs)
    have = ", ".join(f"{n} of shape {_shape(a)}" for n, a in pairs)
    if len(pairs) != len(specs):
        raise ValueError(f"{where} holds {len(pairs)} array(s) ({have}); the model takes "
                         f"{len(specs)} input(s) ({wanted}).")
    for (label, a), (name, shape) in zip(pairs, specs):
        got = _shape(a)
        if len(got) != len(shape) or any(d is not None and d != g
                                          for d, g in zip(shape[1:], got[1:])):
            raise ValueError(f"{where}: array {label} has shape {got}, which does not fit "
                             f"the model's input {name!r} of shape {shape} (first axis: "
                             "the samples).")
        if len(got) and got[0] == 0:
            raise ValueError(f"{where}: array {label} holds no samples (shape {got}).")


def generated_inputs(runner, n=8, seed=0):
    """Random inputs for the file's signature: N(0, 1) floats, {0, 1} integers."""
    rng = np.random.default_rng(seed)
    out = []
    for name, shape, dtype in runner.inputs:
        dims = list(shape)
        if any(d is None or d < 0 for d in dims[1:]):
            raise ValueError(f"Input {name!r} has unknown dimensions {dims}: pass "
                             "`sample_inputs` to verify the file.")
        dims = [n] + dims[1:] if dims else []
        if np.issubdtype(dtype, np.floating):
            out.append(rng.standard_normal(dims).astype(dtype))
        else:
            out.append(rng.integers(0, 2, size=dims).astype(dtype))
    return out


def compare(outputs, reference):
    """`(max |a - b|, top-1 agreement or None)` over lists of output arrays.

    NaN or inf where the reference is finite counts as an infinite difference.
    """
    worst, agree = 0.0, None
    for a, b in zip(outputs, reference):
        a = np.asarray(a, np.float64)
        b = np.asarray(b, np.float64).reshape(a.shape)
        bad = ~np.isfinite(a) & np.isfinite(b)
        diff = np.abs(a - b)
        worst = max(worst, float("inf") if bad.any() else float(diff.max(initial=0.0)))
        if agree is None and a.ndim == 2 and a.shape[-1] >= 2:
            agree = float(np.mean(np.argmax(a, -1) == np.argmax(b, -1)))
    return worst, agree
