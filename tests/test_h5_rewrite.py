"""`tfprune.h5.rewrite`: the file is rewritten safely (through `tfprune.atomic`):
optimizer state and permissions kept, backups right, one writer at a time,
read-only and failing writes leave it untouched, kill -9 at any instant leaves the
original or the fully pruned file."""

import os
import shutil
import signal
import stat
import subprocess
import threading
import time

import keras
import numpy as np
import pytest

from h5_files import (  # noqa: F401  (fixtures)
    H5_WARNING, PY, REPO, SUFFIX, big_file, file_bytes, fresh, h5_arrays, load, predicts,
    same_arrays, saved, sha256, temps,
)
from tfprune import atomic
from tfprune import cli
from tfprune import h5 as h5prune
from tfprune.h5 import rewrite

pytestmark = H5_WARNING


@pytest.mark.parametrize("fmt", ["keras3-archive", "keras3-weights", "tfkeras-model-h5"])
def test_optimizer_state_is_left_untouched(fresh, fmt):
    path = fresh(fmt)
    before = h5_arrays(path)
    h5prune.prune_weights_file(path, 0.7)
    after = h5_arrays(path)
    opt = [k for k in before if k.startswith(("optimizer/", "optimizer_weights/"))]
    assert opt, "the saved file should hold optimizer state"
    for k in opt:
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)
    if fmt != "keras3-weights":  # full models: the optimizer state loads back
        model = load(fmt, path)
        assert model.optimizer is not None
        predicts(model)


@pytest.mark.parametrize("fmt", ["keras3-archive", "tfkeras-model-h5"])
def test_backup_keeps_original_bytes(fresh, fmt):
    path = fresh(fmt)
    original = file_bytes(path)
    report = h5prune.prune_weights_file(path, 0.5, backup=True)
    assert report.backup_path == path + ".orig"
    assert file_bytes(path + ".orig") == original and file_bytes(path) != original
    restored = os.path.join(os.path.dirname(path), "restored" + SUFFIX[fmt])
    shutil.copyfile(path + ".orig", restored)  # Keras picks the loader by extension
    predicts(load(fmt, restored))
    predicts(load(fmt, path))


def test_backup_refuses_to_overwrite_existing_backup(fresh):
    path = fresh("keras3-weights")
    with open(path + ".orig", "wb") as f:
        f.write(b"first original")
    original = file_bytes(path)
    with pytest.raises(FileExistsError, match=r"backup=True.*\.orig"):
        h5prune.prune_weights_file(path, 0.5, backup=True)
    assert file_bytes(path) == original and file_bytes(path + ".orig") == b"first original"


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o664], ids=oct)
def test_permissions_preserved(fresh, mode):
    path = fresh("keras3-archive")
    os.chmod(path, mode)
    h5prune.prune_weights_file(path, 0.5)
    assert stat.S_IMODE(os.stat(path).st_mode) == mode
    assert temps(os.path.dirname(path)) == []


def _chattr(path, flag):
    return subprocess.run(["chattr", flag, path], capture_output=True).returncode == 0


@pytest.mark.parametrize("target", ["file", "folder"])
@pytest.mark.parametrize("how", ["chmod", "chattr"])
def test_read_only_file_or_folder_is_refused_before_writing(fresh, target, how):
    """chmod: our rule (no write bit at all means read-only, also for root).
    chattr +i: the kernel really refuses writes, even to root (`os.access` says so);
    skipped where the file system or container does not allow it."""
    path = fresh("keras3-weights")
    victim = path if target == "file" else os.path.dirname(path)
    original, mode = file_bytes(path), os.stat(victim).st_mode
    if how == "chmod":
        os.chmod(victim, 0o444 if target == "file" else 0o555)
    elif not _chattr(victim, "+i"):
        pytest.skip("chattr +i not permitted here")
    try:
        with pytest.raises(PermissionError, match=r"read-only"):
            h5prune.prune_weights_file(path, 0.5)
    finally:
        if how == "chattr":
            _chattr(victim, "-i")
        os.chmod(victim, mode)
    assert file_bytes(path) == original and temps(os.path.dirname(path)) == []


def test_error_mid_write_removes_temp_and_keeps_original(fresh, monkeypatch):
    path = fresh("keras3-archive")
    original = file_bytes(path)

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(rewrite, "_copy_member", boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        h5prune.prune_weights_file(path, 0.5)
    assert file_bytes(path) == original
    assert os.listdir(os.path.dirname(path)) == [os.path.basename(path)]


@pytest.mark.parametrize("fmt,stage", [("keras3-weights", "_copy_into"),
                                       ("keras3-archive", "_copy_member")])
def test_os_error_while_writing_names_the_users_file_not_the_temp(fresh, monkeypatch, fmt,
                                                                   stage):
    """A full disk while writing the temp file: the error names the user's file."""
    path = fresh(fmt)
    digest = sha256(path)

    def full(*args):  # _copy_into(src, tmp) / _copy_member(zin, zout, ...)
        tmp = args[1] if isinstance(args[1], str) else args[1].filename
        assert ".tfprune-" in tmp
        raise OSError(28, "No space left on device", tmp)

    monkeypatch.setattr(rewrite, stage, full)
    with pytest.raises(OSError, match="No space left on device") as e:
        h5prune.prune_weights_file(path, 0.5)
    assert repr(path) in str(e.value) and ".tfprune-" not in str(e.value)
    assert e.value.errno == 28
    assert sha256(path) == digest and temps(os.path.dirname(path)) == []


# ----------------------------------------------------------------------------- one writer


def test_a_second_writer_fails_fast_while_the_file_is_locked(fresh):
    path = fresh("keras3-weights")
    digest = sha256(path)
    with atomic.lock(path):  # as a run in progress holds it
        start = time.monotonic()
        with pytest.raises(BlockingIOError, match=rf"in use by another tfprune writer. "
                                                  rf"Received: path='{path}' \(process {os.getpid()}"):
            h5prune.prune_weights_file(path, 0.5, backup=True)
        assert time.monotonic() - start < 5  # fails at once, does not wait
    assert sha256(path) == digest and not os.path.exists(path + ".orig")
    h5prune.prune_weights_file(path, 0.5, dry_run=True)  # readers are never locked out


def _outcome(run):
    try:
        run()
        return "ok"
    except (BlockingIOError, FileExistsError) as e:
        return type(e).__name__


def _pruned_once(path, tmp_path):
    """The arrays of `path` pruned once at 0.5 (on a copy)."""
    ref = str(tmp_path / "reference.weights.h5")
    shutil.copyfile(path, ref)
    h5prune.prune_weights_file(ref, 0.5)
    arrays = h5_arrays(ref)
    os.unlink(ref)
    return arrays


def _assert_one_winner(outcomes, path, digest, pruned):
    """Exactly one run pruned the file; the others were refused; PATH.orig is the
    original, byte for byte, and the file is pruned once."""
    assert outcomes.count("ok") == 1, outcomes
    assert set(outcomes) <= {"ok", "BlockingIOError", "FileExistsError"}, outcomes
    assert sha256(path + ".orig") == digest
    assert same_arrays(h5_arrays(path), pruned)
    assert temps(os.path.dirname(path)) == []


def test_concurrent_backup_runs_in_threads_never_back_up_a_pruned_file(tmp_path):
    path = str(tmp_path / "big.weights.h5")
    big_file(path)
    pruned, digest = _pruned_once(path, tmp_path), sha256(path)
    original = str(tmp_path / "original.bin")
    shutil.copyfile(path, original)
    for _ in range(3):  # each round: two threads start together on the original
        shutil.copyfile(original, path)
        if os.path.exists(path + ".orig"):
            os.unlink(path + ".orig")
        barrier, outcomes = threading.Barrier(2), []

        def run():
            barrier.wait()
            outcomes.append(_outcome(lambda: h5prune.prune_weights_file(path, 0.5, backup=True)))

        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        _assert_one_winner(outcomes, path, digest, pruned)


_RACER = """
import sys, tfprune.h5 as h
print("ready", flush=True)
sys.stdin.readline()
try:
    h.prune_weights_file(sys.argv[1], 0.5, backup=True)
    print("ok")
except (BlockingIOError, FileExistsError) as e:
    print(type(e).__name__)
"""


@pytest.mark.slow
def test_concurrent_backup_runs_in_processes_never_back_up_a_pruned_file(tmp_path):
    path = str(tmp_path / "big.weights.h5")
    big_file(path)
    pruned, digest = _pruned_once(path, tmp_path), sha256(path)
    procs = [subprocess.Popen([PY, "-c", _RACER, path], cwd=REPO, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL,
                              env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
             for _ in range(2)]
    try:
        for p in procs:  # both imported: start them together
            assert p.stdout.readline().strip() == "ready"
        for p in procs:
            p.stdin.write("\n")
            p.stdin.flush()
        outcomes = [p.communicate(timeout=120)[0].strip() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    _assert_one_winner(outcomes, path, digest, pruned)


# ----------------------------------------------------------------------------- kill -9


def _fork_prune(path, delay):
    """Run the CLI in a forked child; SIGKILL it after `delay` s (None: let it end)."""
    pid = os.fork()
    if pid == 0:  # child: no pytest, no atexit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os._exit(cli.main(["prune-h5", path, "--sparsity", "0.5"]))
    start = time.perf_counter()
    if delay is not None:
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    return time.perf_counter() - start, status


def _leftovers(folder):
    """`(temp files, lock files)` a killed run left in `folder`."""
    found = temps(folder)
    return ([t for t in found if t.endswith(".tmp")],
            [t for t in found if t.endswith(atomic.LOCK_SUFFIX)])


@pytest.mark.slow
def test_killed_at_any_instant_leaves_original_or_pruned(tmp_path):
    """SIGKILL at 18 delays spread over a whole run (forked children of this process,
    so the delays hit the pruning itself, not the TF import), then twice in a real
    `python -m tfprune.cli` process. After each kill the path must hold exactly the
    original or the fully pruned arrays; stray temp and lock files are only ours,
    never block the next run, and the next run removes them."""
    path, orig_path = str(tmp_path / "big.weights.h5"), str(tmp_path / "orig.bin")
    big_file(path)
    shutil.copyfile(path, orig_path)
    original = h5_arrays(path)
    runs = []
    for _ in range(3):
        shutil.copyfile(orig_path, path)
        duration, status = _fork_prune(path, None)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        runs.append(duration)
    duration = float(np.median(runs))
    pruned = h5_arrays(path)
    assert not same_arrays(pruned, original)

    outcomes = []  # uniform over the run, then dense near its end (the rename)
    delays = [*np.linspace(0.0, 1.1 * duration, 10), *np.linspace(0.8, 1.05, 8) * duration]
    for delay in delays:
        shutil.copyfile(orig_path, path)
        _, status = _fork_prune(path, float(delay))
        now = h5_arrays(path)  # loads: a valid HDF5 file with every dataset
        assert same_arrays(now, original) or same_arrays(now, pruned), f"broken at {delay:.3f}s"
        outcomes.append(("pruned" if same_arrays(now, pruned) else "original",
                         os.WIFSIGNALED(status)))
        tmps, locks = _leftovers(tmp_path)
        assert len(tmps) <= 1 and len(locks) <= 1
        assert all(".big.weights.h5.tfprune" in t for t in tmps + locks)
    killed = [o for o, sig in outcomes if sig]
    assert "original" in killed, outcomes  # the kills did land during runs

    codes = []
    for fraction in (0.5, 0.95):  # real CLI processes, killed after their import
        shutil.copyfile(orig_path, path)
        code = ("import sys, tfprune.cli as c; print('ready', flush=True); "
                "sys.stdin.readline(); sys.exit(c.main(sys.argv[1:]))")
        proc = subprocess.Popen(
            [PY, "-c", code, "prune-h5", path, "--sparsity", "0.5"], cwd=REPO,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        )
        assert proc.stdout.readline().strip() == "ready"
        proc.stdin.write("\n")
        proc.stdin.flush()
        time.sleep(fraction * duration)
        proc.send_signal(signal.SIGKILL)
        codes.append(proc.wait())
        now = h5_arrays(path)
        assert same_arrays(now, original) or same_arrays(now, pruned)
    assert codes[0] == -signal.SIGKILL, codes  # killed mid-run, not after an early exit

    shutil.copyfile(orig_path, path)
    h5prune.prune_weights_file(path, 0.5)  # a clean run sweeps dead runs' temps and lock
    assert same_arrays(h5_arrays(path), pruned) and temps(tmp_path) == []
    model = keras.Sequential([keras.Input((200,))] + [keras.layers.Dense(200) for _ in range(32)])
    model.load_weights(path)
