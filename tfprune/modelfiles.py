"""Is a file a saved Keras model? Read from its bytes, before Keras sees it.

Keras answers a `.keras` file that is not a zip archive (truncated by a copy, a
text file renamed) with "File not found: filepath=..." although the file exists,
and h5py answers a non-HDF5 `.h5` with "Unable to synchronously open file (file
signature not found)", naming no file. `check_saved_model(path)` says instead
what the file is not, naming it:

- `.keras`: a zip archive (its end-of-archive record present: a truncated file
  has none) holding `config.json`;
- `.h5` / `.hdf5`: the HDF5 signature `\\x89HDF\\r\\n\\x1a\\n` at byte 0, 512, 1024,
  2048, ... (the places HDF5 allows it, after a user block).

Standard library only (no Keras, h5py or TensorFlow): the command line checks
its arguments with it before importing anything heavy.

Example:

>>> import tempfile, pathlib
>>> bad = pathlib.Path(tempfile.mkdtemp()) / "model.keras"
>>> _ = bad.write_text("not a model")
>>> try:
...     check_saved_model(bad)
... except ValueError as e:
...     print(str(e).split(":")[0])
Argument `model` is not a valid .keras archive (not a zip file
"""

import os
import zipfile

__all__ = ["check_saved_model", "content_problem", "KERAS_SUFFIX", "H5_SUFFIXES", "MODEL_SUFFIXES"]

KERAS_SUFFIX = ".keras"
H5_SUFFIXES = (".h5", ".hdf5")
MODEL_SUFFIXES = (KERAS_SUFFIX,) + H5_SUFFIXES
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _is_hdf5(path):
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        offset = 0
        while offset + len(HDF5_SIGNATURE) <= size:
            f.seek(offset)
            if f.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
                return True
            offset = 512 if offset == 0 else offset * 2
    return False


def _keras_problem(path):
    if not zipfile.is_zipfile(path):
        return "not a zip file: truncated, or not saved by `model.save`"
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as e:
        return f"unreadable zip archive: {e}"
    if "config.json" not in names:
        return f"a zip archive without config.json (holds {sorted(names)[:5]})"
    return None


def content_problem(path):
    """What the bytes of an existing `.keras` / `.h5` file are not ("not a valid
    .keras archive (...)", "not an HDF5 file (...)"), or None if they look right
    (other suffixes: None)."""
    lower = os.fspath(path).lower()
    if lower.endswith(KERAS_SUFFIX):
        problem = _keras_problem(path)
        return None if problem is None else f"not a valid .keras archive ({problem})"
    if lower.endswith(H5_SUFFIXES) and not _is_hdf5(path):
        return "not an HDF5 file (no HDF5 signature: truncated, or not saved by Keras)"
    return None


def check_saved_model(path, name="model"):
    """`path` if it is an existing `.keras` archive or HDF5 file, else an error
    naming it: FileNotFoundError (missing), ValueError (a directory, another
    suffix, bytes that are not a .keras archive / HDF5 file), TypeError (not a
    path). Files are only read."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"Argument `{name}` must be a path. Received: {name}={path!r}")
    text = os.fspath(path)
    if not os.path.exists(text):
        raise FileNotFoundError(f"Argument `{name}` must be an existing file. "
                                f"Received: {name}={text!r}")
    if os.path.isdir(text):
        raise ValueError(f"Argument `{name}` must be a saved model file, not a directory. "
                         f"Received: {name}={text!r}")
    if not text.lower().endswith(MODEL_SUFFIXES):
        raise ValueError(f"Argument `{name}` must be a {' / '.join(MODEL_SUFFIXES)} file. "
                         f"Received: {name}={text!r}")
    problem = content_problem(text)
    if problem:
        raise ValueError(f"Argument `{name}` is {problem}. Received: {name}={text!r}")
    return path
