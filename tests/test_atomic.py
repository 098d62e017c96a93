"""`tfprune.atomic`: files are replaced whole or not at all, one writer per path
(threads and processes), errors name the user's file, nothing is left behind."""

import errno
import os
import signal
import stat
import subprocess
import sys
import threading
import time

import pytest

from tfprune import atomic

ATOMIC_PY = atomic.__file__


def _writer(text):
    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)
        return text

    return write


def _read(path):
    with open(path) as f:
        return f.read()


def _ours(folder):
    return sorted(n for n in os.listdir(folder) if ".tfprune" in n)


# ----------------------------------------------------------------------------- writing


def test_new_file_is_created_with_the_umask_mode(tmp_path):
    path = str(tmp_path / "new.txt")
    assert atomic.write_file(path, _writer("a")) == ("a", None)
    assert _read(path) == "a"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~atomic.current_umask()
    assert os.listdir(tmp_path) == ["new.txt"]


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o755], ids=oct)
def test_replaced_file_keeps_its_permission_bits(tmp_path, mode):
    path = str(tmp_path / "f.txt")
    atomic.write_file(path, _writer("old"))
    os.chmod(path, mode)
    atomic.write_file(path, _writer("new"))
    assert _read(path) == "new" and stat.S_IMODE(os.stat(path).st_mode) == mode


@pytest.mark.parametrize("links", [True, False], ids=["hard-link", "copy"])
def test_backup_keeps_the_old_content(tmp_path, monkeypatch, links):
    path = str(tmp_path / "f.txt")
    atomic.write_file(path, _writer("old"))
    if not links:  # a file system without hard links
        def no_link(*args):
            raise OSError(errno.EPERM, "Operation not permitted")
        monkeypatch.setattr(os, "link", no_link)
    _, orig = atomic.write_file(path, _writer("new"), backup=True)
    assert orig == path + ".orig" and _read(orig) == "old" and _read(path) == "new"
    assert sorted(os.listdir(tmp_path)) == ["f.txt", "f.txt.orig"]


def test_backup_never_overwrites_a_backup_or_backs_up_nothing(tmp_path):
    path = str(tmp_path / "f.txt")
    with pytest.raises(FileNotFoundError, match=r"backup=True for path='.*f\.txt'"):
        atomic.write_file(path, _writer("x"), backup=True)
    assert os.listdir(tmp_path) == []
    atomic.write_file(path, _writer("first"))
    atomic.write_file(path, _writer("second"), backup=True)
    with pytest.raises(FileExistsError, match=r"f\.txt\.orig' already present"):
        atomic.write_file(path, _writer("third"), backup=True)
    assert _read(path + ".orig") == "first" and _read(path) == "second"


def test_a_failing_write_leaves_the_file_and_no_temp_or_lock(tmp_path):
    path = str(tmp_path / "f.txt")
    atomic.write_file(path, _writer("old"))

    def fail(tmp):
        _writer("half")(tmp)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic.write_file(path, fail, backup=True)
    assert _read(path) == "old" and os.listdir(tmp_path) == ["f.txt"]


def test_os_errors_name_the_users_file_never_the_temp(tmp_path):
    path = str(tmp_path / "f.txt")

    def full(tmp):
        raise OSError(errno.ENOSPC, "No space left on device", tmp)

    with pytest.raises(OSError) as e:
        atomic.write_file(path, full)
    assert e.value.errno == errno.ENOSPC and repr(path) in str(e.value)
    assert ".tfprune-" not in str(e.value) and os.listdir(tmp_path) == []


def test_symlink_target_is_written_and_link_kept(tmp_path):
    target, link = str(tmp_path / "real.txt"), str(tmp_path / "link.txt")
    atomic.write_file(target, _writer("old"))
    os.symlink(target, link)
    _, orig = atomic.write_file(link, _writer("new"), backup=True)
    assert os.path.islink(link) and _read(target) == "new" and orig == target + ".orig"


def test_read_only_folder_is_refused_before_anything(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    os.chmod(folder, 0o555)
    try:
        with pytest.raises(PermissionError, match=r"writable folder.*read-only"):
            atomic.write_file(str(folder / "f.txt"), _writer("x"))
    finally:
        os.chmod(folder, 0o755)
    assert os.listdir(folder) == []


def test_missing_folder_is_named_and_path_objects_work(tmp_path):
    missing = tmp_path / "no" / "f.txt"
    with pytest.raises(FileNotFoundError, match=r"existing folder. Received: path='.*no/f\.txt'"):
        atomic.write_file(missing, _writer("x"))
    assert atomic.write_file(tmp_path / "f.txt", _writer("x")) == ("x", None)
    with atomic.lock(tmp_path / "f.txt"):
        with pytest.raises(BlockingIOError, match=r"path='.*f\.txt' \(process"):
            atomic.write_file(tmp_path / "f.txt", _writer("y"))
    assert _read(str(tmp_path / "f.txt")) == "x"


def test_stale_temps_of_dead_runs_are_removed_and_live_ones_kept(tmp_path):
    path = str(tmp_path / "f.txt")
    atomic.write_file(path, _writer("old"))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f".f.txt{atomic.TEMP_TAG}{dead}-abc.tmp"
    live = tmp_path / f".f.txt{atomic.TEMP_TAG}{os.getpid()}-def.tmp"
    stale.write_text("left by a killed run")
    live.write_text("another thread's, in progress")
    atomic.write_file(path, _writer("new"))
    assert not stale.exists() and live.exists()


# ----------------------------------------------------------------------------- one writer


def test_second_writer_in_another_thread_fails_fast_naming_the_holder(tmp_path):
    path = str(tmp_path / "f.txt")
    atomic.write_file(path, _writer("old"))
    inside, release = threading.Event(), threading.Event()

    def slow(tmp):
        inside.set()
        release.wait(10)
        return _writer("first")(tmp)

    first = threading.Thread(target=lambda: atomic.write_file(path, slow, backup=True))
    first.start()
    assert inside.wait(10)
    try:
        start = time.monotonic()
        with pytest.raises(BlockingIOError, match=rf"in use by another tfprune writer. "
                                                  rf"Received: path='{path}' \(process "
                                                  rf"{os.getpid()} holds its lock"):
            atomic.write_file(path, _writer("second"), backup=True)
        assert time.monotonic() - start < 5
    finally:
        release.set()
        first.join()
    assert _read(path) == "first" and _read(path + ".orig") == "old"
    assert _ours(tmp_path) == []


def test_waiting_writer_takes_the_lock_when_it_is_released(tmp_path):
    path = str(tmp_path / "f.txt")
    order = []

    with atomic.lock(path):
        def second():
            with atomic.lock(path, timeout=20):
                order.append("second")
                # the lock file it holds is the one at the path (not an unlinked one)
                order.append(os.path.exists(str(tmp_path / ".f.txt.tfprune.lock")))

        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.3)
        order.append("first")
    t.join()
    assert order == ["first", "second", True]
    assert _ours(tmp_path) == []


_HOLDER = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("atomic", sys.argv[1])
atomic = importlib.util.module_from_spec(spec)
spec.loader.exec_module(atomic)
with atomic.lock(sys.argv[2]):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_lock_held_by_another_process_refuses_until_it_dies(tmp_path):
    """A holder killed with SIGKILL frees the path (the kernel drops its flock); the
    lock file it leaves neither blocks the next writer nor outlives it."""
    path = str(tmp_path / "f.txt")
    atomic.write_file(path, _writer("old"))
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, ATOMIC_PY, path],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(BlockingIOError, match=rf"process {holder.pid} holds its lock"):
            atomic.write_file(path, _writer("new"))
        assert _read(path) == "old"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert _ours(tmp_path) == [".f.txt.tfprune.lock"]  # left by the killed holder
    atomic.write_file(path, _writer("new"))
    assert _read(path) == "new" and _ours(tmp_path) == []
