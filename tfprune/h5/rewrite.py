"""Rewriting a file: the pruning pipeline run on an HDF5 file or a `.keras` archive,
written through `tfprune.atomic` (or, in a dry run, not written at all).

The pipeline on an open HDF5 file (`_decided`, then `select.apply`): refuse a
`.keras` config that does not describe the weights (`formats.check_config_matches`),
read the layers (`formats.read_layers`), plan (`plan.plan`), refuse non-finite
weights and decide what to keep (`select.decide`), zero the rest
(`select.apply`).

- HDF5 (`.h5`, `.weights.h5`): the kernel copies the file into the temp file
  (`os.sendfile`) while the keep sets are found from the original; then the copy
  is zeroed in place, block by block.
- `.keras`: the weights member is copied out to a second temp file beside the
  target, pruned in place, and the archive rebuilt around it (other members
  byte for byte, same compression, dates and attributes).
- dry run: the same pipeline on the original (an archive's weights on an anonymous
  temporary file), counting only.

Example (a dry run prunes nothing, but reports what it would):

>>> import os, tempfile, keras
>>> from tfprune.h5.options import check_options
>>> path = os.path.join(tempfile.mkdtemp(), "m.keras")
>>> keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, name="hidden"),
...                   keras.layers.Dense(2, name="out")]).save(path)
>>> before = open(path, "rb").read()
>>> fmt, rows, kept = dry_run(path, "keras", check_options(0.75))
>>> fmt, [(r.layer, r.zeros_after) for r in rows], kept
('keras-archive', [('hidden', 48)], [('out', 'output layer (skip_output_layer=True)')])
>>> open(path, "rb").read() == before
True
"""

import os
import shutil
import sys
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor

from tfprune import atomic
from tfprune import masks
from tfprune.h5 import formats
from tfprune.h5 import plan as plan_lib
from tfprune.h5 import select

__all__ = ["prune_file", "dry_run"]


def _decided(f, config, options, path):
    """`(format, plan, decisions, scratch)` for the open h5 file `f` of `path`."""
    if config is not None:
        formats.check_config_matches(f, config, path)
    fmt, layers, outline = formats.read_layers(f, config, path)
    plan = plan_lib.plan(layers, outline, options, path)
    scratch = masks.Scratch()
    return fmt, plan, select.decide(f, plan, options, scratch, path), scratch


def _prune_open(f, config, options, write, path):
    """Prune an open h5 file in place (`write=False`: a dry run, report only);
    returns `(format name, rows, kept)`."""
    fmt, plan, decisions, scratch = _decided(f, config, options, path)
    return fmt, select.apply(f, plan, decisions, options, write, scratch), plan.kept


# ----------------------------------------------------------------------------- HDF5


def _copy_into(src, dst):
    """Copy file `src` into the new empty file `dst` without truncating it: ext4
    writes a truncated-and-rewritten file out when it is closed (`auto_da_alloc`),
    a wasted disk write here, where the pruned datasets are overwritten next."""
    with open(src, "rb") as fin, open(dst, "r+b") as fout:
        if not sys.platform.startswith("linux"):  # sendfile to a file: Linux only
            shutil.copyfileobj(fin, fout, 1 << 20)
            return
        size, done = os.fstat(fin.fileno()).st_size, 0
        while done < size:
            sent = os.sendfile(fout.fileno(), fin.fileno(), done, size - done)
            if sent == 0:
                break
            done += sent


def _h5_writer(target, options, path):
    def write(tmp):
        with formats.open_h5(target, "r", path) as f, ThreadPoolExecutor(1) as pool:
            copying = pool.submit(_copy_into, target, tmp)  # in the kernel, meanwhile:
            fmt, plan, decisions, scratch = _decided(f, None, options, path)
            copying.result()
        with formats.open_h5(tmp, "r+", path) as out:
            rows = select.apply(out, plan, decisions, options, True, scratch)
        return fmt, rows, plan.kept

    return write


# ----------------------------------------------------------------------------- .keras


def _copy_member(zin, zout, info, src=None):
    """Copy archive member `info` into `zout`, from `src` (a file path) if given."""
    new = zipfile.ZipInfo(info.filename, info.date_time)
    new.compress_type = info.compress_type
    new.external_attr = info.external_attr
    new.create_system = info.create_system
    new.comment = info.comment
    new.file_size = os.path.getsize(src) if src else info.file_size  # zip64 if large
    with (open(src, "rb") if src else zin.open(info)) as fin, zout.open(new, "w") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)


def _archive_writer(target, options, path):
    def write(tmp):
        inner = atomic.temp_path(target)
        try:
            with zipfile.ZipFile(target) as zin:
                config = formats.archive_config(zin, path)
                with zin.open(formats.WEIGHTS_MEMBER) as src, open(inner, "r+b") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                with formats.open_h5(inner, "r+", path, member=True) as f:
                    _, rows, kept = _prune_open(f, config, options, True, path)
                with zipfile.ZipFile(tmp, "w") as zout:
                    for info in zin.infolist():
                        src = inner if info.filename == formats.WEIGHTS_MEMBER else None
                        _copy_member(zin, zout, info, src)
            return "keras-archive", rows, kept
        finally:
            os.unlink(inner)

    return write


# ----------------------------------------------------------------------------- API


def prune_file(path, kind, options, backup=False):
    """Prune `path` (`kind`: "h5" or "keras", from `formats.detect`) in place,
    atomically; returns `((format, rows, kept), backup path or None)`."""
    writer = _h5_writer if kind == "h5" else _archive_writer
    target = os.path.realpath(path)
    return atomic.write_file(path, writer(target, options, path), backup=backup)


def dry_run(path, kind, options):
    """What `prune_file` would do, writing nothing: `(format, rows, kept)`."""
    if kind == "h5":
        with formats.open_h5(path, "r", path) as f:
            return _prune_open(f, None, options, False, path)
    with zipfile.ZipFile(path) as zin, tempfile.TemporaryFile() as inner:
        config = formats.archive_config(zin, path)
        with zin.open(formats.WEIGHTS_MEMBER) as member:  # seeking back in a member re-reads it
            shutil.copyfileobj(member, inner, 1 << 20)
        with formats.open_h5(inner, "r", path, member=True) as f:
            _, rows, kept = _prune_open(f, config, options, False, path)
    return "keras-archive", rows, kept
