"""`tfprune.demo` and `tfprune demo`: argument checks first, phase headings before
their phases, end to end on a small MNIST-shaped set."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from tfprune import demo


@pytest.fixture
def small_mnist(tmp_path):
    rng = np.random.default_rng(0)
    # A learnable toy set in MNIST layout: the label is written into the image.
    y = rng.integers(0, 10, 600).astype(np.uint8)
    x = rng.integers(0, 30, (600, 28, 28)).astype(np.uint8)
    x[np.arange(600), y, :] = 255
    np.savez(tmp_path / "mnist.npz", x_train=x[:500], y_train=y[:500], x_test=x[500:],
             y_test=y[500:])
    return tmp_path


@pytest.mark.parametrize("kwargs,error,match", [
    ({"sparsity": 90}, ValueError, r"`sparsity` must be in \[0, 1\).*Received: sparsity=90"),
    ({"sparsity": "0.9"}, TypeError, r"`sparsity` must be a number.*Received: sparsity='0.9'"),
    ({"unit_sparsity": -0.1}, ValueError, r"Received: unit_sparsity=-0.1"),
    ({"samples": -5}, ValueError, r"`samples` must be >= 1. Received: samples=-5"),
    ({"samples": 2.5}, TypeError, r"`samples` must be an integer"),
    ({"prune_epochs": 0}, ValueError, r"`prune_epochs` must be >= 1"),
    ({"dense_epochs": True}, TypeError, r"`dense_epochs` must be an integer"),
    ({"batch_size": 0}, ValueError, r"`batch_size` must be >= 1"),
    ({"output_dir": 3}, TypeError, r"`output_dir` must be a directory path"),
])
def test_run_checks_every_argument_before_any_work(kwargs, error, match, tmp_path):
    calls = []
    kwargs = {"output_dir": tmp_path / "out", **kwargs}
    with pytest.raises(error, match=match):
        demo.run(log=calls.append, **kwargs)
    assert calls == [] and not (tmp_path / "out").exists()


def test_run_rejects_an_output_dir_that_is_a_file_or_inside_one(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_bytes(b"keep me")
    for output_dir in (a_file, a_file / "sub"):
        with pytest.raises(ValueError, match="must be a directory.*Received: output_dir="):
            demo.run(output_dir=output_dir, log=lambda line: None)
    assert a_file.read_bytes() == b"keep me"


def test_run_rejects_a_missing_data_path_before_any_work(tmp_path):
    with pytest.raises(FileNotFoundError, match="Received: data_path="):
        demo.run(output_dir=tmp_path / "out", data_path=tmp_path / "nope",
                 log=lambda line: None)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_demo_command_end_to_end_prints_each_heading_before_its_phase(small_mnist):
    out_dir = small_mnist / "out"
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    out = subprocess.run(
        [sys.executable, "-m", "tfprune", "demo", "--data", str(small_mnist), "--output-dir",
         str(out_dir), "--prune-epochs", "2"],
        capture_output=True, text=True, timeout=900, env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    # Nothing from TensorFlow's native start-up reaches the console.
    assert out.stderr == "", out.stderr[-3000:]
    text = out.stdout
    assert "TOTAL" in text and "90.00%" in text
    assert "x faster" in text
    headings = [m.start() for m in re.finditer(r"^\[\d/7\] ", text, re.M)]
    assert len(headings) == 7
    # Each heading comes before what its phase prints.
    for heading, result in (("[1/7]", "MNIST: 500 train"), ("[2/7]", "dense:  test accuracy"),
                            ("[3/7]", "pruned: test accuracy"),
                            ("[4/7]", "Per-layer sparsity"), ("[5/7]", "shrunk: test accuracy"),
                            ("[6/7]", "Saved the accuracy-vs-sparsity plot"),
                            ("[7/7]", "mnist_mlp_pruned.tflite")):
        assert text.index(heading) < text.index(result), heading
    # Training progress (Keras's per-epoch lines) shows inside its phase.
    assert text.index("[2/7]") < text.index("4/4 - ") < text.index("dense:  test accuracy")
    for name in ("mnist_mlp_shrunk.keras", "mnist_mlp_pruned.keras", "sweep.png",
                 "mnist_mlp_pruned.tflite", "mnist_mlp_shrunk.tflite"):
        assert (out_dir / name).stat().st_size > 0, name
    assert (out_dir / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Both files were run in the interpreter and agree with Keras (float32 export).
    diffs = [float(d) for d in re.findall(r"max \|tflite - keras\| (\S+?),", text)]
    assert len(diffs) == 2 and max(diffs) < 1e-4, text[-2000:]
