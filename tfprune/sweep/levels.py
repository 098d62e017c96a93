"""Evaluating levels: argument checks, and the `Runner` that turns a pruned model
into a record.

A `Runner` holds the user's model (never modified), a working copy compiled for
evaluation (masked in place level after level, so Keras keeps its traced test
function), the evaluation data, and the record builder shared by `run` and
`sensitivity`.
"""

import numbers
import os

import keras
import numpy as np

from tfprune import oneshot
from tfprune.sweep import inputs, measure
from tfprune.sweep.result import HEAD, TAIL

__all__ = ["Runner", "Progress", "check_levels", "check_choices", "check_seeds",
           "check_batch_size", "check_samples", "check_out", "check_tolerance",
           "check_common", "check_flag", "check_metrics", "DEFAULT_SPARSITIES"]

NO_LAYER = object()  # records of `run` have no "layer" field
DEFAULT_SPARSITIES = (0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97, 0.99)


def check_levels(sparsities, name="sparsities"):
    """Sorted unique sparsities in (0, 1) (0 is the dense record, always made)."""
    if isinstance(sparsities, (str, bytes)) or not hasattr(sparsities, "__iter__"):
        raise TypeError(f"Argument `{name}` must be a list of numbers in [0, 1). "
                        f"Received: {name}={sparsities!r}")
    levels = sorted({oneshot.check_sparsity(s, name) for s in sparsities} - {0.0})
    if not levels:
        raise ValueError(f"Argument `{name}` must hold at least one sparsity in (0, 1). "
                         f"Received: {name}={sparsities!r}")
    return tuple(levels)


def check_choices(name, values, choices):
    """A non-empty tuple of distinct values from `choices` (a string is one value)."""
    if isinstance(values, str):
        values = (values,)
    if not hasattr(values, "__iter__"):
        raise TypeError(f"Argument `{name}` must be a list of {choices}. Received: {name}={values!r}")
    values = tuple(dict.fromkeys(values))
    bad = [v for v in values if v not in choices]
    if bad or not values:
        raise ValueError(f"Argument `{name}` must be a non-empty list of {choices}. "
                         f"Received: {name}={values!r}")
    return values


def check_seeds(seeds):
    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool):
        seeds = (seeds,)
    if not hasattr(seeds, "__iter__") or isinstance(seeds, str):
        raise TypeError(f"Argument `seeds` must be a list of integers >= 0. Received: seeds={seeds!r}")
    seeds = tuple(dict.fromkeys(oneshot.check_seed(s) for s in seeds))
    if not seeds:
        raise ValueError("Argument `seeds` must hold at least one seed. Received: seeds=()")
    return seeds


def check_batch_size(batch_size):
    return oneshot.check_int(batch_size, "batch_size", 1)


def check_samples(samples):
    """None (every example) or an integer >= 1."""
    return None if samples is None else oneshot.check_int(samples, "samples", 1)


def check_out(out):
    """None, or a path that is not an existing file (the records folder)."""
    if out is None:
        return None
    if not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"Argument `out` must be None or a folder path. Received: out={out!r}")
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"Argument `out` must be a folder. Received: out={os.fspath(out)!r} "
                         "(a file)")
    return out


def check_tolerance(tolerance):
    """A real number >= 0 (TypeError for a non-number, bool included)."""
    if isinstance(tolerance, bool) or not isinstance(tolerance, numbers.Real):
        raise TypeError(f"Argument `tolerance` must be a number >= 0. "
                        f"Received: tolerance={tolerance!r}")
    if not tolerance >= 0:
        raise ValueError(f"Argument `tolerance` must be >= 0. Received: tolerance={tolerance}")
    return float(tolerance)


def check_flag(name, value):
    """`value` as a bool; TypeError for anything else (`sizes="no"` is not True)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"Argument `{name}` must be True or False. Received: {name}={value!r}")
    return bool(value)


def check_metrics(metrics):
    """None, or a list of metrics (a single string or metric object is one metric)."""
    if metrics is None:
        return None
    if isinstance(metrics, (str, keras.metrics.Metric)) or callable(metrics):
        return [metrics]
    if isinstance(metrics, dict) or not hasattr(metrics, "__iter__"):
        raise TypeError(f"Argument `metrics` must be None or a list of metrics (names, "
                        f"keras.metrics.Metric objects or functions). Received: "
                        f"metrics={metrics!r}")
    return list(metrics)


def check_common(batch_size, samples, out, data, **flags):
    """The arguments `run` and `sensitivity` share, checked before any work
    (`flags`: boolean arguments by name)."""
    inputs.check_arrays(data)
    for name, value in flags.items():
        check_flag(name, value)
    return check_batch_size(batch_size), check_samples(samples), check_out(out)


class Runner:
    """The user's model, its working copy, the data, and how a level is recorded.

    Args:
        model: a Keras model or a `.keras` / `.h5` path (see `inputs.load_model`).
        data: see `inputs.resolve_data`.
        metrics: metrics to compile the working copy with (default: the model's).
        evaluate: None (`model.evaluate`) or a function `(model, data) -> dict`.
        batch_size: evaluation batch size for arrays.
        samples: evaluate on the first N examples only (arrays, a loader or a .npz
            file; with a `tf.data.Dataset`, take them in the dataset instead).
        sizes: measure `gzip_bytes` and, for units, the shrunk size.
    """

    def __init__(self, model, data, metrics=None, evaluate=None, batch_size=256, samples=None,
                 sizes=True):
        if evaluate is not None and not callable(evaluate):
            raise TypeError(f"Argument `evaluate` must be a function (model, data) -> dict. "
                            f"Received: evaluate={evaluate!r}")
        self.batch_size = check_batch_size(batch_size)
        samples = check_samples(samples)
        metrics = check_metrics(metrics)
        inputs.check_arrays(data)
        self.source = inputs.load_model(model)
        self.raw_data = data
        self.data = inputs.resolve_data(data, self.source, "test", samples)
        inputs.check_fits(self.data, self.source)
        self.custom_evaluate = evaluate
        self.working = inputs.working_copy(self.source, self.data, metrics,
                                           compile=evaluate is None)
        self.sizes = bool(sizes)
        self.flops = measure.dense_flops(self.working)
        self.metric_names = None

    def fingerprint(self, **settings):
        """What records depend on (the store refuses a folder made with others)."""
        values = [np.asarray(keras.ops.convert_to_numpy(v)) for v in self.working.weights]
        evaluate = self.custom_evaluate
        return {
            "weights": inputs._digest(*values),
            "data": self.data.fingerprint(),
            "batch_size": self.batch_size,
            "evaluate": "model.evaluate" if evaluate is None else getattr(
                evaluate, "__qualname__", repr(evaluate)),
            "compile": repr(self.working.get_compile_config().get("metrics"))
            if evaluate is None else "",
            "sizes": self.sizes,
            **{k: v if isinstance(v, (str, int, float, bool)) or v is None else repr(v)
               for k, v in settings.items()},
        }

    def evaluate(self, model):
        """Metrics of `model` on the data, as a dict of floats."""
        if self.custom_evaluate is None:
            out = self.data.evaluate(model, self.batch_size)
        else:
            arg = self.data.dataset if self.data.dataset is not None else (self.data.x, self.data.y)
            out = self.custom_evaluate(model, arg)
            if not isinstance(out, dict) or not all(isinstance(v, numbers.Real) or np.ndim(v) == 0
                                                    for v in out.values()):
                raise TypeError(f"Argument `evaluate` must return a dict of numbers. "
                                f"Received: {out!r}")
            out = {str(k): float(v) for k, v in out.items()}
        if self.metric_names is None:
            self.metric_names = list(out)
        return out

    def record(self, model, metrics, sparsity, measured, granularity, method, scope, seed,
               finetune_epochs=0, layer=NO_LAYER):
        """A flat record of `model` (see `tfprune.sweep.result`)."""
        values = [np.asarray(keras.ops.convert_to_numpy(v)) for v in model.weights]
        params, nonzero = measure.weight_counts(model, values)
        rec = {} if layer is NO_LAYER else {"layer": layer}
        rec.update(dict(zip(HEAD, (
            float(sparsity), float(measured), (params - nonzero) / params if params else 0.0,
            granularity, method, scope, seed, int(finetune_epochs)))))
        rec.update({k: float(v) for k, v in metrics.items()})
        shrunk, gzipped = (None, None), None
        if self.sizes:
            # zlib releases the GIL: the gzip size is computed while shrink builds.
            pending = _background().submit(measure.gzip_bytes, model, values)
            if granularity == "unit":
                shrunk = measure.shrunk_costs(model)
            gzipped = pending.result()
        rec.update(dict(zip(TAIL, (
            int(params), int(nonzero), self.flops, shrunk[0],
            None if shrunk[1] is None else int(shrunk[1]), gzipped))))
        return rec


_POOL = []


def _background():
    """One worker thread for the gzip sizes (made on first use)."""
    if not _POOL:
        from concurrent.futures import ThreadPoolExecutor

        _POOL.append(ThreadPoolExecutor(1, thread_name_prefix="tfprune-gzip"))
    return _POOL[0]


class Progress:
    """A Keras `Progbar` over levels showing the current level's sparsity and metrics
    (made at the first update, when the metric names are known)."""

    def __init__(self, total, enabled):
        self.total = total
        self.enabled = bool(enabled)
        self.bar = None

    def update(self, done, record, metric_names):
        if not self.enabled:
            return
        names = [n for n in (metric_names or []) if n in record]
        if self.bar is None:
            self.bar = keras.utils.Progbar(self.total, unit_name="level",
                                           stateful_metrics=["sparsity"] + names)
        level = [("sparsity", record["sparsity"])] if record["sparsity"] else []  # not 0.0000e+00
        self.bar.update(done, values=level + [(n, record[n]) for n in names])
