"""MNIST and Fashion-MNIST from a local copy, or keras's normal download.

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

Example:

>>> (x_train, y_train), (x_test, y_test) = tfprune.datasets.load_mnist()  # doctest: +SKIP
>>> x_train.shape, x_train.dtype  # doctest: +SKIP
((60000, 28, 28), dtype('uint8'))
"""

import gzip
import os
import pathlib

import numpy as np

__all__ = ["load_mnist", "load_fashion_mnist", "DATA_DIR_ENV"]

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


def _load(name, path):
    if path is not None:
        path = pathlib.Path(path)
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
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in _KEYS if k not in f.files]
            if missing:
                raise ValueError(
                    f"File {str(path)!r} is not in keras's mnist.npz layout: missing "
                    f"{missing} (has {sorted(f.files)})."
                )
            return (f["x_train"], f["y_train"]), (f["x_test"], f["y_test"])
    except (OSError, EOFError) as e:
        raise ValueError(f"Could not read {str(path)!r} as .npz: {e}") from e


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
