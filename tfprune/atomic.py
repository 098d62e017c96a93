"""Atomic file writing, one writer per path: every tfprune writer goes through here.

`write_file(path, write)` creates or replaces `path` so that, killed at any
instant, the path holds either its old content or the complete new one, and two
writers of one path never interleave:

1. the writer lock of `path` is taken (`lock`): a lock file beside it,
   `.NAME.tfprune.lock`, held with `flock`, which the kernel releases when its
   holder exits, even on SIGKILL. A second writer, thread or process, fails at
   once with a `BlockingIOError` naming the path and the holder's PID (or waits up
   to `timeout` seconds);
2. temp files of dead runs on the same path are deleted
   (`.NAME.tfprune-PID-XXXX.tmp`, PIDs no longer alive);
3. `write(tmp)` writes the new content into an empty temp file beside the target
   (same folder, so same file system: the rename is atomic);
4. the temp file gets the target's permission bits (a new file: `0o666` less
   the umask), is fsynced; with `backup=True` the old file is kept as
   `PATH.orig` (a hard link where the file system allows, else a fsynced copy;
   refused if `PATH.orig` exists, checked under the lock, so a first original is
   never overwritten);
5. `os.replace(tmp, target)`, then the folder is fsynced; the lock file is
   removed and the lock released.

A symlink is followed: the file it points to is rewritten (and locked and backed
up beside it). Errors name the user's path, never a temp file. POSIX only (flock).

Example (runs as is):

>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "notes.txt")
>>> def write(tmp):
...     with open(tmp, "w") as f:
...         f.write("v1")
>>> write_file(path, write)
(None, None)
>>> open(path).read(), oct(os.stat(path).st_mode & 0o777) == oct(0o666 & ~current_umask())
('v1', True)
>>> def write2(tmp):
...     with open(tmp, "w") as f:
...         f.write("v2")
...     return "done"
>>> result, orig = write_file(path, write2, backup=True)
>>> result, open(path).read(), open(orig).read(), os.path.basename(orig)
('done', 'v2', 'v1', 'notes.txt.orig')
>>> with lock(path):   # a second writer of a locked path fails at once
...     write_file(path, write)
Traceback (most recent call last):
...
BlockingIOError: Argument `path` must not be in use by another tfprune writer. Received: path=... (process ... holds its lock; retry when it has finished)
>>> sorted(os.listdir(os.path.dirname(path)))   # no lock or temp file left
['notes.txt', 'notes.txt.orig']
"""

import contextlib
import fcntl
import glob
import os
import shutil
import stat
import tempfile
import time

__all__ = ["write_file", "lock", "temp_path", "check_writable", "current_umask",
           "TEMP_TAG", "LOCK_SUFFIX"]

TEMP_TAG = ".tfprune-"
LOCK_SUFFIX = ".tfprune.lock"
_POLL = 0.05  # seconds between attempts to take a busy lock


# ----------------------------------------------------------------------------- checks


def _read_only(path):
    return not os.access(path, os.W_OK) or not os.stat(path).st_mode & 0o222


def check_writable(path, shown=None):
    """Refuse a read-only file or folder (`PermissionError` naming `shown`, default
    `path`), or a missing folder (`FileNotFoundError`), before anything is written.
    Read-only is the OS's answer (`os.access`) or, also for root, no write
    permission bit at all."""
    shown = path if shown is None else shown
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"Argument `path` must be in an existing folder. Received: path={shown!r} "
            f"(no folder {folder!r})"
        )
    if os.path.exists(path) and _read_only(path):
        raise PermissionError(
            f"Argument `path` must be a writable file. Received: path={shown!r} "
            "(the file is read-only)"
        )
    if _read_only(folder) or not os.access(folder, os.X_OK):
        raise PermissionError(
            f"Argument `path` must be in a writable folder (the new file is written "
            f"beside it, then renamed). Received: path={shown!r} (folder {folder!r} is "
            "read-only)"
        )


def _backup_path(path, shown):
    orig = path + ".orig"
    if os.path.lexists(orig):
        raise FileExistsError(
            f"Argument `backup` would overwrite an existing backup. Received: backup=True "
            f"for path={shown!r} with {orig!r} already present (remove it, or pass "
            "backup=False)"
        )
    return orig


def current_umask():
    """The process's umask (read from /proc on Linux, without changing it)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# ----------------------------------------------------------------------------- lock


def _lock_path(path):
    folder, base = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{base}{LOCK_SUFFIX}")


def _holder(lock_file):
    try:
        with open(lock_file) as f:
            pid = f.read().strip()
    except OSError:
        pid = ""
    return f"process {pid}" if pid.isdigit() else "another process"


def _busy(path, shown, lock_file):
    return BlockingIOError(
        "Argument `path` must not be in use by another tfprune writer. Received: "
        f"path={shown!r} ({_holder(lock_file)} holds its lock; retry when it has "
        "finished)"
    )


def _acquire(lock_file):
    """An fd holding the flock of `lock_file`, or None if another holds it. The
    fd's file must still be the one at `lock_file` (a holder unlinks it before
    releasing: a lock taken on an unlinked file would lock nothing)."""
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    try:
        current = os.stat(lock_file)
    except FileNotFoundError:
        current = None
    if current is None or not os.path.samestat(os.fstat(fd), current):
        os.close(fd)
        return _acquire(lock_file)
    return fd


@contextlib.contextmanager
def lock(path, timeout=0.0, shown=None):
    """Hold the writer lock of `path` (a file that may not exist yet).

    Every tfprune writer takes it, in any thread or process (`flock` locks of two
    opens conflict even within one process). Busy: waits up to `timeout` seconds
    (0: not at all), then raises `BlockingIOError` naming `shown` (default `path`)
    and the holder's PID. The lock file is removed on release.
    """
    path = os.fspath(path)
    shown = path if shown is None else shown
    lock_file = _lock_path(path)
    deadline = time.monotonic() + timeout
    while (fd := _acquire(lock_file)) is None:
        if time.monotonic() >= deadline:
            raise _busy(path, shown, lock_file)
        time.sleep(_POLL)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        _unlink(lock_file)  # while holding it: the next holder checks it is current
        os.close(fd)


# ----------------------------------------------------------------------------- temp files


def temp_path(path):
    """A new empty file beside `path`: `.NAME.tfprune-PID-XXXX.tmp`."""
    folder, base = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(
        prefix=f".{base}{TEMP_TAG}{os.getpid()}-", suffix=".tmp", dir=folder
    )
    os.close(fd)
    return tmp


def _remove_stale_temps(path):
    """Delete temp files that killed runs on `path` left behind (dead PIDs only)."""
    folder, base = os.path.split(os.path.abspath(path))
    pattern = os.path.join(glob.escape(folder), f".{glob.escape(base)}{TEMP_TAG}*.tmp")
    for tmp in glob.glob(pattern):
        pid = os.path.basename(tmp)[len(base) + 1 + len(TEMP_TAG):].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            _unlink(tmp)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _backup(path, orig):
    """Keep the original as `orig`: a hard link, or a copy where links fail."""
    try:
        os.link(path, orig)
        return
    except FileExistsError:
        raise
    except OSError:
        pass
    tmp = temp_path(path)
    try:
        shutil.copy2(path, tmp)
        _fsync(tmp)
        os.replace(tmp, orig)  # under the lock, `orig` was checked absent
    finally:
        _unlink(tmp)


def _renamed(error, path, temps):
    """`error` with `path` in place of a temp file's name (same type and errno)."""
    if not isinstance(error, OSError) or not {error.filename, error.filename2} & temps:
        return error
    return type(error)(error.errno, f"{error.strerror} (writing {path!r} through a "
                                    "temporary file beside it)")


# ----------------------------------------------------------------------------- write


def write_file(path, write, backup=False, timeout=0.0):
    """Create or replace `path` atomically with what `write(tmp)` writes to `tmp`.

    Args:
        path: the file to write, str or path-like (a symlink: its target is written).
        write: `write(tmp) -> result`; `tmp` is an existing empty file beside the
            target, to fill (or replace) with the new content.
        backup: keep the old file as `path + ".orig"` (refused if it exists; the
            target must exist).
        timeout: seconds to wait for another writer of the path (0: fail at once).

    Returns:
        `(write's result, backup path or None)`.

    Raises:
        PermissionError: a read-only file or folder; FileExistsError: the backup
        exists; BlockingIOError: another writer holds the path. Nothing is written
        then; if `write` raises, the temp file is removed and the path untouched.
    """
    path = os.fspath(path)
    target = os.path.realpath(path)  # rewrite a symlink's target, not the link
    check_writable(target, path)
    with lock(target, timeout, shown=path):
        exists = os.path.exists(target)
        if backup and not exists:
            raise FileNotFoundError(
                f"Argument `backup` needs an existing file to back up. Received: "
                f"backup=True for path={path!r} (no such file)"
            )
        orig = _backup_path(target, path) if backup else None
        mode = stat.S_IMODE(os.stat(target).st_mode) if exists else 0o666 & ~current_umask()
        _remove_stale_temps(target)
        tmp = temp_path(target)
        try:
            result = write(tmp)
            os.chmod(tmp, mode)
            _fsync(tmp)
            if orig is not None:
                _backup(target, orig)
            os.replace(tmp, target)
        except OSError as e:
            raise _renamed(e, path, {tmp}) from None
        finally:
            _unlink(tmp)
        _fsync(os.path.dirname(target))
    return result, orig
