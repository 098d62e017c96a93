"""`tfprune export`, `tfprune inspect`, `tfprune report` (in-process `main`)."""

import json

import keras
import numpy as np
import pytest

from tests import export_util as U
from tfprune.cli import main


@pytest.fixture
def saved(tmp_path, rng):
    model = U.block_prune(U.mlp(64, (48,), 8), (4, 1), 0.9, rng)
    path = tmp_path / "m.keras"
    model.save(path)
    return model, path


def _one_line_error(capsys, argv, text):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and text in err[0], err
    return err[0]


def test_export_prints_the_report_and_writes_a_working_file(saved, tmp_path, capsys, rng):
    model, path = saved
    out = tmp_path / "m.tflite"
    assert main(["export", str(path), str(out)]) == 0
    text = capsys.readouterr().out
    assert "block 1x4" in text and "sparse kernel" in text and "verified in" in text
    x = rng.standard_normal((4, 64)).astype("float32")
    np.testing.assert_allclose(U.run_file(out, x)[0], model(x).numpy(), atol=1e-5)


def test_export_json_int8_with_calibration(saved, tmp_path, capsys, rng):
    _, path = saved
    cal = tmp_path / "cal.npz"
    np.savez(cal, x=rng.standard_normal((32, 64)).astype("float32"))
    assert main(["export", str(path), str(tmp_path / "q.tflite"), "--quantize", "int8",
                 "--calibration", str(cal), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)  # stdout is JSON only
    assert report["quantize"] == "int8" and report["size"] <= report["dense_size"]
    assert report["verification"]["samples"] == 32


def test_int8_export_keeps_the_converters_info_lines_off_stderr(saved, tmp_path, capfd, rng,
                                                                monkeypatch):
    _, path = saved
    cal = tmp_path / "cal.npz"
    np.savez(cal, x=rng.standard_normal((16, 64)).astype("float32"))
    argv = ["export", str(path), str(tmp_path / "q.tflite"), "--quantize", "int8",
            "--calibration", str(cal)]
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")  # the user asked for everything
    assert main(argv) == 0
    assert "fully_quantize: 0" in capfd.readouterr().err
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    assert main(argv) == 0
    err = capfd.readouterr().err
    assert "fully_quantize" not in err and "XNNPACK delegate" not in err, err


def test_export_calibration_that_does_not_fit_the_model_is_one_line(saved, tmp_path, capfd):
    _, path = saved
    bad = tmp_path / "bad.npz"
    np.savez(bad, a=np.zeros((4, 64), "float32"), b=np.zeros((4, 3), "float32"))
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, x=np.zeros((4, 63), "float32"))
    for npz, text in ((bad, "2 array(s)"), (wrong, "(4, 63)")):
        code = main(["export", str(path), str(tmp_path / "q.tflite"), "--quantize", "int8",
                     "--calibration", str(npz)])
        err = capfd.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and npz.name in err[0] and text in err[0], err
    assert not list(tmp_path.glob("*.tflite"))


def test_export_user_errors_are_one_line_before_any_work(saved, tmp_path, capsys):
    _, path = saved
    _one_line_error(capsys, ["export", str(path), str(tmp_path / "q.tflite"), "--quantize",
                             "int8"], "--calibration")
    _one_line_error(capsys, ["export", str(tmp_path / "nope.keras"), "o.tflite"],
                    "no such file")
    _one_line_error(capsys, ["export", str(path), str(path)], "OUT must differ")
    _one_line_error(capsys, ["export", str(path), str(tmp_path / "d" / "o.tflite")],
                    "directory does not exist")
    _one_line_error(capsys, ["export", str(path), "o.tflite", "--sparse", "yes"],
                    "invalid choice")
    assert not list(tmp_path.glob("*.tflite"))


def test_export_refusal_is_a_one_line_error(saved, tmp_path, capsys):
    _, path = saved
    assert main(["export", str(path), str(tmp_path / "d.tflite"), "--quantize", "dynamic",
                 "--sparse", "on"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refused" in err[0]


def test_inspect_table_json_and_errors(saved, tmp_path, capsys, rng):
    model, path = saved
    out = tmp_path / "m.tflite"
    out.write_bytes(U.raw_convert(model))
    assert main(["inspect", str(out)]) == 0
    assert "block 1x4" in capsys.readouterr().out
    assert main(["inspect", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {t["encoding"] for t in report["tensors"]} == {"block 1x4"}
    _one_line_error(capsys, ["inspect", str(path)], "not a TFLite flatbuffer")


def test_report_of_keras_and_h5_models(saved, tmp_path, capsys):
    model, path = saved
    assert main(["report", str(path)]) == 0
    text = capsys.readouterr().out
    assert "sparsity" in text and "FLOPs" in text and "64x48" in text
    h5 = tmp_path / "m.h5"
    model.save(h5)
    assert main(["report", str(h5), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    zeros = [l.kernel.numpy().size - np.count_nonzero(l.kernel.numpy()) for l in model.layers]
    assert [r["zeros"] for r in report["layers"]] == zeros


def test_report_of_a_pruned_checkpoint_loads_without_custom_scope(tmp_path, capsys, rng):
    import tfprune
    from tests.helpers import every_step, fit

    pruned = tfprune.prune_low_magnitude(U.mlp(64, (32,), 10), every_step(0.8))
    x = rng.standard_normal((16, 64)).astype("float32")
    fit(pruned, x, rng.standard_normal((16, 10)).astype("float32"), steps=1)
    pruned.save(tmp_path / "ckpt.keras")
    assert main(["report", str(tmp_path / "ckpt.keras"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    stripped = tfprune.strip_pruning(pruned)
    assert [r["zeros"] for r in report["layers"]] == [
        int(np.sum(l.kernel.numpy() == 0)) for l in stripped.layers]
    assert [r["zeros"] for r in report["layers"]] == [2048 - 410, 320 - 64]


def test_report_refuses_weights_only_files(tmp_path, capsys):
    model = U.mlp()
    model.save_weights(tmp_path / "w.weights.h5")
    _one_line_error(capsys, ["report", str(tmp_path / "w.weights.h5")], "weights only")
    legacy = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    import h5py

    with h5py.File(tmp_path / "old.h5", "w") as f:
        f.create_group("model_weights")  # an h5 file without a model config
    del legacy
    assert main(["report", str(tmp_path / "old.h5")]) == 2
    assert "weights only" in capsys.readouterr().err


@pytest.mark.slow
def test_commands_work_through_python_dash_m(saved, tmp_path):
    """`python -m tfprune` loads tfprune lazily: the commands must still load the model."""
    import os
    import subprocess
    import sys

    _, path = saved
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = tmp_path / "m.tflite"
    for argv in (["export", str(path), str(out), "--json"], ["inspect", str(out)],
                 ["report", str(path)]):
        run = subprocess.run([sys.executable, "-m", "tfprune", *argv], capture_output=True,
                             text=True, env=env, timeout=600)
        assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(subprocess.run(
        [sys.executable, "-m", "tfprune", "inspect", str(out), "--json"], capture_output=True,
        text=True, env=env, timeout=600).stdout)["tensors"]
