"""Resume after SIGKILL: a pruning run killed in a subprocess right after a
checkpoint taken mid-schedule, then resumed in a fresh process, ends bit for bit
where an uninterrupted run ends (masks, weights, steps, optimizer state), through
`keras.callbacks.BackupAndRestore` and through a plain `.keras` save +
`load_model` + `fit(initial_epoch=...)`.

The runs are `tests/resume_worker.py` in subprocesses, each bounded in time and
killed in `finally`.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from tests import resume_worker as worker

pytestmark = pytest.mark.slow

WORKER = str(Path(__file__).with_name("resume_worker.py"))
TIMEOUT = 300  # seconds per process
STOP_EPOCH = 2  # steps 1..8: updates at 2, 5, 8 done, 11..20 still to come


def _env():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env.setdefault("KERAS_BACKEND", keras.backend.backend())
    return env


def _start(route, out, *extra):
    log = open(out / f"{route}-{len(list(out.glob('*.log')))}.log", "w+")
    proc = subprocess.Popen([sys.executable, WORKER, route, str(out), *map(str, extra)],
                            env=_env(), stdout=log, stderr=subprocess.STDOUT)
    return proc, log


def _output(log):
    log.seek(0)
    return log.read()[-4000:]


def _run(route, out, *extra):
    """Run to completion (at most TIMEOUT s)."""
    proc, log = _start(route, out, *extra)
    try:
        proc.wait(timeout=TIMEOUT)
        assert proc.returncode == 0, _output(log)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        log.close()


def _run_and_kill_after_checkpoint(route, out, *extra):
    """Run until the worker reports its checkpoint, then SIGKILL it."""
    proc, log = _start(route, out, *extra)
    marker = out / "checkpointed"
    try:
        deadline = time.monotonic() + TIMEOUT
        while not marker.exists():
            assert proc.poll() is None, _output(log)
            assert time.monotonic() < deadline, "no checkpoint within the time limit"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        assert proc.returncode == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        log.close()
    marker.unlink()


def _load(path):
    with np.load(path) as f:
        return dict(f)


def _assert_identical(got, want, what):
    assert sorted(got) == sorted(want), what
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=f"{what}: {key}")


def _masks_are_mid_schedule(state):
    """Some pruned, not yet the final 80%: the kill really is mid-schedule."""
    zeros = [float(np.mean(v == 0)) for k, v in state.items()
             if "/pruning" in k and v.ndim >= 1]
    assert zeros and 0 < max(zeros) < 0.75, zeros


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    _run("full", out)
    return out


def test_uninterrupted_run_prunes_to_the_final_sparsity(uninterrupted):
    final = _load(uninterrupted / "full_final.npz")
    for name in ("prune_low_magnitude_a", "prune_low_magnitude_b"):
        mask = final[f"{name}/pruning0"]
        n = mask.size
        import tfprune

        assert int(np.sum(mask == 0)) == n - tfprune.masks.keep_count(n, 0.8)
    _masks_are_mid_schedule(_load(uninterrupted / f"full_epoch{STOP_EPOCH}.npz"))


def test_backup_and_restore_after_sigkill_is_bit_identical(uninterrupted, tmp_path):
    _run_and_kill_after_checkpoint("backup", tmp_path, STOP_EPOCH)
    assert (tmp_path / "backup" / "latest.weights.h5").exists()
    _run("backup", tmp_path)
    assert json.loads((tmp_path / "backup_epochs.json").read_text()) == list(
        range(STOP_EPOCH, worker.EPOCHS))
    checkpoint = _load(uninterrupted / f"full_epoch{STOP_EPOCH}.npz")
    _masks_are_mid_schedule(checkpoint)
    _assert_identical(_load(tmp_path / "backup_begin.npz"), checkpoint, "restored state")
    _assert_identical(_load(tmp_path / "backup_final.npz"),
                      _load(uninterrupted / "full_final.npz"), "final state")


def test_keras_save_load_and_initial_epoch_after_sigkill_is_bit_identical(uninterrupted,
                                                                          tmp_path):
    _run_and_kill_after_checkpoint("keras", tmp_path, STOP_EPOCH)
    assert (tmp_path / "ckpt.keras").exists()
    _run("keras", tmp_path, STOP_EPOCH)
    assert json.loads((tmp_path / "keras_epochs.json").read_text()) == list(
        range(STOP_EPOCH, worker.EPOCHS))
    checkpoint = _load(uninterrupted / f"full_epoch{STOP_EPOCH}.npz")
    _assert_identical(_load(tmp_path / "keras_begin.npz"), checkpoint, "loaded state")
    _assert_identical(_load(tmp_path / "keras_final.npz"),
                      _load(uninterrupted / "full_final.npz"), "final state")
