"""MNIST, Fashion-MNIST and CIFAR-10 from a local copy, or keras's normal download.

Where the data comes from, in order:

1. `path=`: a `.npz` file in keras's layout (`x_train`, `y_train`, `x_test`,
   `y_test`) or a directory;
2. the directory in the environment variable `TFPRUNE_DATA_DIR`;
3. `keras.datasets.<name>.load_data()` (downloads once into `~/.keras/datasets`).

In a directory, MNIST is `mnist.npz` or the four idx files
(`train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`,
`t10k-images-idx3-ubyte[.gz]`, `t10k-labels-idx1-ubyte[.gz]`) in it or in `mnist/`;
Fashion-MNIST is `fashion_mnist.npz` / `fashion-mnist.npz` or the idx files in
`fashion-mnist/` (keras's cache layout).

CIFAR-10 (`load_cifar10`) is `cifar10.npz` (keras's layout), the python batches
(`cifar-10-batches-py/`, as keras extracts them) or the archive
`cifar-10-python.tar.gz`, in the directory or at `path`. Offline with no copy,
`load_cifar10(fallback="mnist")` returns MNIST padded to 32x32x3 instead, with a
warning, and says so in its `.name` / `.note` (never silently).

Example:

>>> (x_train, y_train), (x_test, y_test) = tfprune.datasets.load_mnist()  # doctest: +SKIP
>>> x_train.shape, x_train.dtype  # doctest: +SKIP
((60000, 28, 28), dtype('uint8'))
"""

import gzip
import io
import os
import pathlib
import pickle
import tarfile
import warnings

import numpy as np

__all__ = ["load_mnist", "load_fashion_mnist", "load_cifar10", "pad_mnist_to_32x32x3",
           "Loaded", "DATA_DIR_ENV"]

DATA_DIR_ENV = "TFPRUNE_DATA_DIR"
_KEYS = ("x_train", "y_train", "x_test", "y_test")
_IDX = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_LAYOUT = {
    "mnist": {"npz": ("mnist.npz",), "idx_dirs": (".", "mnist")},
    "fashion_mnist": {
        "npz": ("fashion_mnist.npz", "fashion-mnist.npz"),
        "idx_dirs": ("fashion-mnist", "fashion_mnist"),
    },
}


def load_mnist(path=None):
    """MNIST as `(x_train, y_train), (x_test, y_test)` uint8 arrays (28x28 images)."""
    return _load("mnist", path)


def load_fashion_mnist(path=None):
    """Fashion-MNIST as `(x_train, y_train), (x_test, y_test)` uint8 arrays."""
    return _load("fashion_mnist", path)


def _check_path(path):
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"Argument `path` must be a path (str or os.PathLike). Received: path={path!r}")
    return pathlib.Path(path)


def _load(name, path):
    if path is not None:
        path = _check_path(path)
        if not path.exists():
            raise FileNotFoundError(
                f"Argument `path` must be an existing .npz file or directory. "
                f"Received: path={str(path)!r}"
            )
        data = _read_npz(path) if path.is_file() else _from_dir(name, path)
        if data is None:
            raise FileNotFoundError(
                f"No {name} data in directory {str(path)!r}: expected "
                f"{' or '.join(_LAYOUT[name]['npz'])} or the four idx files."
            )
        return data
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        directory = pathlib.Path(env)
        data = _from_dir(name, directory) if directory.is_dir() else None
        if data is not None:
            return data
    return _download(name, env)


def _from_dir(name, directory):
    layout = _LAYOUT[name]
    for fname in layout["npz"]:
        if (directory / fname).is_file():
            return _read_npz(directory / fname)
    for sub in layout["idx_dirs"]:
        files = {k: _find_idx(directory / sub, stem) for k, stem in _IDX.items()}
        if all(files.values()):
            arrays = {k: _read_idx(f) for k, f in files.items()}
            return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])
    return None


def _find_idx(directory, stem):
    for candidate in (directory / stem, directory / (stem + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def _read_npz(path):
    import zipfile

    if os.path.isfile(path) and not zipfile.is_zipfile(path):
        raise ValueError(f"Could not read {str(path)!r} as .npz: not a zip archive (empty, "
                         "truncated, or not written by np.savez).")
    try:  # not a zip: OSError/EOFError, or ValueError ("pickled data"); a .npy: TypeError
        with np.load(path, allow_pickle=False) as f:
            files = sorted(f.files)
            arrays = {k: f[k] for k in _KEYS if k in f.files}
    except (OSError, EOFError, ValueError, TypeError) as e:
        raise ValueError(f"Could not read {str(path)!r} as .npz: {e}") from e
    missing = [k for k in _KEYS if k not in arrays]
    if missing:
        raise ValueError(
            f"File {str(path)!r} is not in keras's mnist.npz layout: missing "
            f"{missing} (has {files})."
        )
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])


def _read_idx(path):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{str(path)!r} is not an unsigned-byte idx file.")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(
            f"{str(path)!r} is truncated: header says {dims}, found {data.size} bytes."
        )
    return data.reshape(dims)


def _download(name, env):
    import keras

    loader = getattr(keras.datasets, name)
    try:
        return loader.load_data()
    except Exception as e:  # no network, proxy, corrupted cache...
        where = (
            f"{DATA_DIR_ENV}={env!r} holds no {name} data"
            if env
            else f"{DATA_DIR_ENV} is not set"
        )
        raise RuntimeError(
            f"Could not load {name}: {where}, and keras could not download it "
            f"({type(e).__name__}: {e}). Point tfprune at a local copy: set "
            f"{DATA_DIR_ENV} to a directory holding {_LAYOUT[name]['npz'][0]} (keras's "
            "layout) or the idx files, or pass `path=`."
        ) from e


# --------------------------------------------------------------------------- CIFAR-10

_CIFAR_NPZ = ("cifar10.npz", "cifar-10.npz")
_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_TAR = "cifar-10-python.tar.gz"
_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_FALLBACKS = (None, "mnist")


class Loaded(tuple):
    """`((x_train, y_train), (x_test, y_test))` that also says what it holds.

    name: "cifar10", or "mnist32x32x3" when `load_cifar10` fell back to MNIST.
    note: why it fell back ("" when it did not).
    """

    def __new__(cls, train, test, name, note=""):
        self = super().__new__(cls, (train, test))
        self.name = name
        self.note = note
        return self


def load_cifar10(path=None, fallback=None, download=True):
    """CIFAR-10 as `(x_train, y_train), (x_test, y_test)`: uint8 images of shape
    `(n, 32, 32, 3)` (channels last) and uint8 labels of shape `(n,)`.

    Where from, in order: `path` (a `.npz` in keras's layout, the archive
    `cifar-10-python.tar.gz`, or a directory holding one of them or the python
    batches `cifar-10-batches-py/`), the directory `$TFPRUNE_DATA_DIR`, then
    `keras.datasets.cifar10.load_data()` (downloads 170 MB once).

    `download=False` skips keras's download (quick runs, tests).

    `fallback="mnist"`: when none of these works (offline, no local copy), return
    MNIST padded to 32x32 and repeated over 3 channels (`pad_mnist_to_32x32x3`)
    instead, with a `UserWarning`; the result's `.name` is "mnist32x32x3" and its
    `.note` says why. It is a stand-in for running the code, not CIFAR-10
    results. An explicit `path` that holds no CIFAR-10 is an error either way.

    Returns a `Loaded` tuple (unpacks like keras's; `.name`, `.note`).

    Example:

    >>> data = tfprune.datasets.load_cifar10(fallback="mnist")  # doctest: +SKIP
    >>> (x_train, y_train), (x_test, y_test) = data  # doctest: +SKIP
    >>> data.name, x_train.shape  # doctest: +SKIP
    ('cifar10', (50000, 32, 32, 3))
    """
    if not isinstance(download, bool):
        raise TypeError(f"Argument `download` must be True or False. Received: download={download!r}")
    if fallback not in _CIFAR_FALLBACKS:
        raise ValueError(
            f"Argument `fallback` must be one of {_CIFAR_FALLBACKS}. Received: fallback={fallback!r}"
        )
    if path is not None:
        path = _check_path(path)
        if not path.exists():
            raise FileNotFoundError(
                "Argument `path` must be an existing CIFAR-10 .npz / .tar.gz file or a "
                f"directory. Received: path={str(path)!r}"
            )
        data = _cifar_file(path) if path.is_file() else _cifar_dir(path)
        if data is None:
            raise FileNotFoundError(
                f"No CIFAR-10 data in directory {str(path)!r}: expected {_CIFAR_NPZ[0]}, "
                f"{_CIFAR_TAR} or {_CIFAR_DIR}/."
            )
        return Loaded(*data, name="cifar10")
    env = os.environ.get(DATA_DIR_ENV)
    if env and pathlib.Path(env).is_dir():
        data = _cifar_dir(pathlib.Path(env))
        if data is not None:
            return Loaded(*data, name="cifar10")
    where = f"{DATA_DIR_ENV}={env!r} holds no CIFAR-10" if env else f"{DATA_DIR_ENV} is not set"
    error = None
    if download:
        try:
            import keras

            (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
            return Loaded((x_train, y_train.reshape(-1)), (x_test, y_test.reshape(-1)),
                          name="cifar10")
        except Exception as e:  # no network, proxy, corrupted cache...
            error = e
            reason = f"{where}, and keras could not download it ({type(e).__name__}: {e})"
    else:
        reason = f"{where}, and download=False"
    if fallback is None:
        raise RuntimeError(
            f"Could not load CIFAR-10: {reason}. Put {_CIFAR_NPZ[0]}, {_CIFAR_TAR} or "
            f"{_CIFAR_DIR}/ in {DATA_DIR_ENV}, pass `path=`, or pass "
            "`fallback='mnist'` to run on MNIST padded to 32x32x3 instead."
        ) from error
    note = (f"CIFAR-10 is not available ({reason}); using MNIST padded to 32x32x3 as an "
            "offline stand-in. These are NOT CIFAR-10 results.")
    warnings.warn(note, stacklevel=2)
    (x_train, y_train), (x_test, y_test) = load_mnist()
    return Loaded((pad_mnist_to_32x32x3(x_train), y_train.reshape(-1)),
                  (pad_mnist_to_32x32x3(x_test), y_test.reshape(-1)),
                  name="mnist32x32x3", note=note)


def pad_mnist_to_32x32x3(x):
    """MNIST images `(n, 28, 28)` padded with 2 zero pixels on each side and
    repeated over 3 channels: `(n, 32, 32, 3)`, same dtype.

    Example:

    >>> import numpy as np
    >>> x = tfprune.datasets.pad_mnist_to_32x32x3(np.full((5, 28, 28), 7, np.uint8))
    >>> x.shape, x.dtype, int(x[0, 0, 0, 0]), int(x[0, 2, 2, 2])
    ((5, 32, 32, 3), dtype('uint8'), 0, 7)
    """
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[1:] != (28, 28):
        raise ValueError(f"Expected MNIST images of shape (n, 28, 28). Received: shape={x.shape}")
    padded = np.pad(x, ((0, 0), (2, 2), (2, 2)))
    return np.repeat(padded[..., None], 3, axis=-1)


def _cifar_dir(directory):
    for name in _CIFAR_NPZ:
        if (directory / name).is_file():
            return _cifar_npz(directory / name)
    for batches in (directory / _CIFAR_DIR, directory):
        if all((batches / b).is_file() for b in _CIFAR_TRAIN + ("test_batch",)):
            return _cifar_batches(lambda b, d=batches: (d / b).read_bytes(), str(batches))
    if (directory / _CIFAR_TAR).is_file():
        return _cifar_tar(directory / _CIFAR_TAR)
    return None


def _cifar_file(path):
    if path.name.endswith((".tar.gz", ".tgz", ".tar")):
        return _cifar_tar(path)
    return _cifar_npz(path)


def _cifar_npz(path):
    (x_train, y_train), (x_test, y_test) = _read_npz(path)
    return (x_train, np.asarray(y_train).reshape(-1)), (x_test, np.asarray(y_test).reshape(-1))


def _cifar_tar(path):
    try:
        with tarfile.open(path) as tar:
            members = {pathlib.PurePosixPath(m.name).name: m for m in tar.getmembers()
                       if m.isfile()}
            missing = [b for b in _CIFAR_TRAIN + ("test_batch",) if b not in members]
            if missing:
                raise ValueError(f"{str(path)!r} is not the CIFAR-10 python archive: no {missing}.")
            return _cifar_batches(lambda b: tar.extractfile(members[b]).read(), str(path))
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ValueError(f"Could not read {str(path)!r} as a tar archive: {e}") from e


def _cifar_batches(read, where):
    """Train and test arrays from the six python batches (`read(name) -> bytes`)."""
    parts = [_cifar_batch(read(b), f"{where}/{b}") for b in _CIFAR_TRAIN]
    x_test, y_test = _cifar_batch(read("test_batch"), f"{where}/test_batch")
    x_train = np.concatenate([x for x, _ in parts])
    y_train = np.concatenate([y for _, y in parts])
    return (x_train, y_train), (x_test, y_test)


def _cifar_batch(raw, where):
    """One python batch: a pickled dict with b"data" (n, 3072) uint8 in CHW order and
    b"labels". (Pickle runs code from the file: read only copies you trust, as keras
    does for its own download.)"""
    try:
        batch = pickle.load(io.BytesIO(raw), encoding="bytes")
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.uint8)
    except Exception as e:
        raise ValueError(f"{where!r} is not a CIFAR-10 python batch: {e}") from e
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise ValueError(f"{where!r} is not a CIFAR-10 python batch: data {data.shape}, "
                         f"{len(labels)} labels")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels
