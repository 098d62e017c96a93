import subprocess
import sys

import numpy as np
import pytest

from tfprune import cli


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "demo" in capsys.readouterr().out


def test_demo_runs_end_to_end_on_a_small_mnist(tmp_path):
    rng = np.random.default_rng(0)
    # A learnable toy set in MNIST layout: the label is written into the image.
    y = rng.integers(0, 10, 600).astype(np.uint8)
    x = rng.integers(0, 30, (600, 28, 28)).astype(np.uint8)
    x[np.arange(600), y, :] = 255
    np.savez(tmp_path / "mnist.npz", x_train=x[:500], y_train=y[:500], x_test=x[500:], y_test=y[500:])
    out = subprocess.run(
        [sys.executable, "-m", "tfprune.cli", "demo", "--data", str(tmp_path), "--output-dir",
         str(tmp_path / "out"), "--prune-epochs", "2"],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "TOTAL" in out.stdout and "90.00%" in out.stdout
    assert "then shrink" in out.stdout and "x faster" in out.stdout
    assert (tmp_path / "out" / "mnist_mlp_shrunk.keras").exists()
    assert (tmp_path / "out" / "mnist_mlp_pruned.keras").exists()


def test_demo_with_missing_data_fails_cleanly(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "tfprune.cli", "demo", "--data", str(tmp_path / "nope")],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 2
    assert "Received: path=" in out.stderr and "Traceback" not in out.stderr
