"""What a sweep starts from: the model (object or file), the data, and a working copy.

- `load_model(model)`: a Keras model as is, or a `.keras` / `.h5` file loaded with
  `keras.models.load_model`.
- `Data`: evaluation (or training) data as `(x, y)` arrays or a `tf.data.Dataset`;
  `resolve_data(data, model, split)` also accepts the name of a bundled loader
  ("mnist", "fashion_mnist", "cifar10"; images scaled to [0, 1] and reshaped to
  the model's input) or a `.npz` file (keras layout `x_test`/`y_test` or `x`/`y`).
- `working_copy(model, ...)`: a clone with the same weights, compiled for
  evaluation, that the sweep masks in place (the user's model is never touched).
"""

import dataclasses
import hashlib
import os
import pathlib

import keras
import numpy as np

from tfprune import datasets, modelfiles

__all__ = ["load_model", "Data", "resolve_data", "check_arrays", "working_copy", "LOADERS"]

LOADERS = {
    "mnist": datasets.load_mnist,
    "fashion_mnist": datasets.load_fashion_mnist,
    "cifar10": datasets.load_cifar10,
}
MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")


def load_model(model):
    """A Keras model, or the model saved at a `.keras` / `.h5` path."""
    if isinstance(model, keras.Model):
        return model
    if isinstance(model, (str, os.PathLike)):
        path = pathlib.Path(model)
        if path.suffix not in MODEL_SUFFIXES:
            raise ValueError(
                f"Argument `model` must be a Keras model or a {' / '.join(MODEL_SUFFIXES)} "
                f"file. Received: model={str(model)!r}"
            )
        modelfiles.check_saved_model(model)  # missing, a directory, not .keras / HDF5
        import tfprune  # noqa: F401  (registers tfprune objects for loading)

        try:
            return keras.models.load_model(path)
        except (ValueError, TypeError, KeyError, OSError) as e:  # a config Keras cannot read
            raise ValueError(f"Could not load model file {str(model)!r}: "
                             f"{' '.join(str(e).split()) or type(e).__name__}") from e
    raise TypeError(f"Argument `model` must be a Keras model or a path. Received: model={model!r}")


def _digest(*arrays):
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.data)
    return h.hexdigest()[:16]


@dataclasses.dataclass
class Data:
    """Arrays `x`, `y` or a batched `dataset`; `name` says where they came from."""

    x: object = None
    y: object = None
    dataset: object = None
    name: str = "arrays"

    def fingerprint(self):
        """A short hash of the data (arrays) or of its structure (datasets)."""
        if self.dataset is not None:
            return f"dataset:{self.dataset.element_spec}:{int(self.dataset.cardinality())}"
        xs = self.x if isinstance(self.x, (list, tuple)) else [self.x]
        return _digest(*xs, self.y)

    def __len__(self):
        if self.dataset is not None:
            n = int(self.dataset.cardinality())
            return max(n, 0)
        return len(self.y)

    def evaluate(self, model, batch_size):
        """`model.evaluate(...)` as a dict of floats, under Keras's metric names.

        Arrays are batched into a `tf.data.Dataset` once and reused at every level
        (the same batches `model.evaluate(x, y, batch_size)` makes, without
        building its input pipeline again for each call).
        """
        if self.dataset is not None:
            out = model.evaluate(self.dataset, verbose=0, return_dict=True)
        else:
            out = model.evaluate(self._batched(batch_size), verbose=0, return_dict=True)
        return {k: float(v) for k, v in out.items()}

    def _batched(self, batch_size):
        import tensorflow as tf

        cached = getattr(self, "_cache", None)
        if cached is None or cached[0] != batch_size:
            x = tuple(self.x) if isinstance(self.x, list) else self.x
            ds = tf.data.Dataset.from_tensor_slices((x, self.y)).batch(batch_size)
            self._cache = cached = (batch_size, ds)
        return cached[1]

    def steps_per_epoch(self, batch_size):
        if self.dataset is not None:
            n = int(self.dataset.cardinality())
            if n < 1:
                raise ValueError("Fine-tuning data is a tf.data.Dataset of unknown or infinite "
                                 "length: give it a known cardinality (e.g. `.take(n)`).")
            return n
        return -(-len(self.y) // batch_size)

    def fit(self, model, epochs, batch_size, callbacks):
        if self.dataset is not None:
            return model.fit(self.dataset, epochs=epochs, verbose=0, callbacks=callbacks)
        return model.fit(self.x, self.y, batch_size=batch_size, epochs=epochs, verbose=0,
                         shuffle=True, callbacks=callbacks)

    def labels_sample(self):
        """Labels of (a batch of) the data, for guessing a loss."""
        if self.dataset is not None:
            for _, y, *_ in self.dataset.take(1):
                return np.asarray(y)
        return np.asarray(self.y)


def _model_input_shape(model):
    shape = getattr(model, "input_shape", None)
    if isinstance(shape, list):
        return None
    return tuple(shape[1:]) if shape else None


def prepare_images(x, model, where):
    """uint8 images scaled to float32 [0, 1] and reshaped to the model's input."""
    x = np.asarray(x)
    if x.dtype == np.uint8:
        x = x.astype("float32") / 255.0
    shape = _model_input_shape(model)
    if shape is None or None in shape or x.shape[1:] == shape:
        return x
    if int(np.prod(x.shape[1:])) == int(np.prod(shape)):
        return x.reshape((len(x),) + shape)
    raise ValueError(
        f"The images of {where} have shape {x.shape[1:]}, which does not fit the model's "
        f"input shape {shape}. Pass `(x, y)` arrays prepared for the model instead."
    )


def _from_npz(path, split):
    """`x_<split>`/`y_<split>`; for the test split also plain `x`/`y` (never for
    training: fine-tuning on the evaluation data would be a silent leak)."""
    import zipfile

    pairs = [(f"x_{split}", f"y_{split}")] + ([("x", "y")] if split == "test" else [])
    if not zipfile.is_zipfile(path):  # empty, truncated, a .npy or text renamed
        raise ValueError(f"File {str(path)!r} is not a .npz archive (not a zip file: write "
                         "it with np.savez).")
    try:
        with np.load(path, allow_pickle=False) as f:
            for xk, yk in pairs:
                if xk in f.files and yk in f.files:
                    return f[xk], f[yk]
            files = sorted(f.files)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:  # object arrays...
        raise ValueError(f"Could not read {str(path)!r} as a .npz of arrays: "
                         f"{' '.join(str(e).split())}") from None
    wanted = " or ".join(f"{x}/{y}" for x, y in pairs)
    raise ValueError(f"File {str(path)!r} has no {wanted} arrays (has {files}).")


def _describe(a):
    shape = getattr(a, "shape", None)
    return f"shape {tuple(shape)}" if shape is not None else type(a).__name__


def check_arrays(data, source=None):
    """For `(x, y)` arrays (x possibly a list of arrays, one per model input): each
    is an array of >= 1 dimension and all hold the same number of examples
    (ValueError naming `data`, and `source`, the file they came from, if any).
    Other forms of `data` (datasets, names, paths) pass through unchecked."""
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        return data
    x, y = data
    xs = list(x) if isinstance(x, (list, tuple)) else [x]
    named = [(f"x[{i}]" if len(xs) > 1 else "x", a) for i, a in enumerate(xs)] + [("y", y)]
    received = (f"data={str(source)!r}" if source is not None else
                f"data=(x of {_describe(xs[0])}, y of {_describe(y)})")
    for label, a in named:
        if np.ndim(a) < 1:
            raise ValueError(f"Argument `data` must be (x, y) arrays of one example per row; "
                             f"{label} is {a!r}. Received: {received}")
    lengths = [(label, len(a)) for label, a in named]
    if len({n for _, n in lengths}) > 1:
        counts = ", ".join(f"{label} has {n}" for label, n in lengths)
        raise ValueError(f"Argument `data` must hold as many labels as inputs ({counts} "
                         f"examples). Received: {received}")
    return data


def resolve_data(data, model, split="test", samples=None):
    """`Data` from `(x, y)`, a `tf.data.Dataset`, a loader name or a `.npz` path.

    `split` ("test" or "train") picks the half of a named loader or npz file.
    `samples`: keep only the first N examples (not for a dataset: ValueError).
    """
    import tensorflow as tf

    if isinstance(data, Data):
        out = data
    elif isinstance(data, tf.data.Dataset):
        out = Data(dataset=data, name="dataset")
    elif isinstance(data, (str, os.PathLike)) and str(data) in LOADERS:
        loaded = LOADERS[str(data)]()
        x, y = loaded[0] if split == "train" else loaded[1]
        name = getattr(loaded, "name", str(data))
        out = Data(prepare_images(x, model, f"{data!r}"), np.asarray(y).reshape(-1),
                   name=f"{name}:{split}")
    elif isinstance(data, (str, os.PathLike)):
        path = pathlib.Path(data)
        if path.suffix != ".npz" or not path.is_file():
            raise ValueError(
                f"Argument `data` must be (x, y) arrays, a tf.data.Dataset, one of "
                f"{sorted(LOADERS)} or an existing .npz file. Received: data={str(data)!r}"
            )
        x, y = _from_npz(path, split)
        check_arrays((x, y), path)
        out = Data(prepare_images(x, model, str(path)), np.asarray(y), name=f"{path.name}:{split}")
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        check_arrays(data)
        out = Data(data[0], np.asarray(data[1]), name="arrays")
    else:
        raise TypeError(
            "Argument `data` must be (x, y) arrays, a tf.data.Dataset, a loader name "
            f"({', '.join(sorted(LOADERS))}) or a .npz path. Received: data={type(data).__name__}"
        )
    if samples is not None and out.dataset is not None:
        raise ValueError(
            "Argument `samples` takes the first N examples of (x, y) arrays, a loader or "
            "a .npz file; from a tf.data.Dataset take them in the dataset "
            "(`dataset.unbatch().take(N).batch(B)`) and leave `samples` unset. "
            f"Received: samples={samples} with a tf.data.Dataset"
        )
    if samples is not None:
        xs = out.x
        cut = [a[:samples] for a in xs] if isinstance(xs, (list, tuple)) else xs[:samples]
        out = Data(cut, out.y[:samples], name=f"{out.name}[:{samples}]")
    if out.dataset is None and len(out.y) == 0:
        raise ValueError("Argument `data` holds no examples.")
    return out


def check_fits(data, model):
    """ValueError naming `data` unless its arrays fit the model's inputs (one array
    per input, the input's rank and known dimensions); datasets and models
    without known inputs are left to Keras."""
    if data.dataset is not None:
        return
    try:
        shapes = [tuple(t.shape) for t in model.inputs]
    except (AttributeError, ValueError, TypeError):
        return
    xs = list(data.x) if isinstance(data.x, (list, tuple)) else [data.x]
    where = "" if data.name.startswith("arrays") else f" (data: {data.name})"
    if len(xs) != len(shapes):
        raise ValueError(f"Argument `data` has {len(xs)} input array(s); model "
                         f"{model.name!r} takes {len(shapes)} input(s) of shapes "
                         f"{shapes}{where}.")
    for i, (x, shape) in enumerate(zip(xs, shapes)):
        got = tuple(np.shape(x))
        if len(got) != len(shape) or any(d is not None and d != g
                                          for d, g in zip(shape[1:], got[1:])):
            which = f"x[{i}]" if len(xs) > 1 else "x"
            raise ValueError(f"Argument `data`: {which} has shape {got}, which does not fit "
                             f"the input shape {shape} of model {model.name!r}{where}.")


def _output_activation(model):
    layer = model.layers[-1] if getattr(model, "layers", None) else None
    return getattr(getattr(layer, "activation", None), "__name__", "")


def guess_compile(model, data):
    """Loss and metrics for a model that was never compiled, from its labels:
    integer labels -> sparse categorical cross-entropy + accuracy; one-hot
    labels -> categorical cross-entropy + accuracy (from_logits unless the output
    layer ends in softmax)."""
    y = data.labels_sample()
    units = model.outputs[0].shape[-1] if getattr(model, "outputs", None) else None
    logits = _output_activation(model) != "softmax"
    if np.issubdtype(y.dtype, np.integer) and (y.ndim == 1 or y.shape[-1] == 1) and units and units > 1:
        return dict(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=logits),
                    metrics=["accuracy"])
    if y.ndim == 2 and units and y.shape[-1] == units and units > 1:
        return dict(loss=keras.losses.CategoricalCrossentropy(from_logits=logits),
                    metrics=["accuracy"])
    raise ValueError(
        f"Model '{model.name}' is not compiled and its loss cannot be guessed from labels "
        f"of shape {y.shape} ({y.dtype}): compile it, pass `metrics=`, or pass `evaluate=`."
    )


def compile_args(model, data, metrics):
    """Keyword arguments of `compile` for evaluating copies of `model`."""
    if getattr(model, "compiled", False) and model.get_compile_config():
        config = dict(model.get_compile_config())
        loss = keras.saving.deserialize_keras_object(config.get("loss"))
        base = dict(loss=loss, metrics=config.get("metrics"),
                    weighted_metrics=config.get("weighted_metrics"))
        base["metrics"] = keras.saving.deserialize_keras_object(base["metrics"])
        base["weighted_metrics"] = keras.saving.deserialize_keras_object(base["weighted_metrics"])
    else:
        base = guess_compile(model, data)
    if metrics is not None:
        base["metrics"] = list(metrics)
    return {k: v for k, v in base.items() if v is not None}


def clone(model):
    """A clone of a Sequential/functional `model` with the same weights."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def working_copy(model, data=None, metrics=None, compile=True):
    """A clone of `model` (same weights), compiled for evaluation when `compile`.

    Subclassed models cannot be cloned: a TypeError says so.
    """
    from tfprune import graph

    if graph.functional_of(model) is None:
        raise TypeError(
            "Sweeps need a Sequential or functional model (it is cloned so that yours is "
            f"never modified). Received: model={model.name!r} ({type(model).__name__}, "
            "subclassed); use `tfprune.oneshot.OneShot` on it directly."
        )
    copy = clone(model)
    if compile:
        copy.compile(**compile_args(model, data, metrics))
    return copy
