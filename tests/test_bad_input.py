"""A bad-input battery across the Python API and every CLI command.

Every case asserts the exception type exactly (TypeError for a wrong type,
ValueError for a wrong value, FileNotFoundError for a missing path), a message
naming the bad value, and that the user's files are byte for byte what they were
(sha256 of every file in the folder, and no file added) after the failure. CLI
cases run `python -m tfprune ...` in a subprocess: exit code 2, exactly one line
on stderr, the bad value named in it.

Only cases not tested elsewhere are here (the h5/atomic/shrink/sweep/export test
files have their own). Cases that fail today are strict xfails naming the owner
of the module and the fix: `lead: ...` for the lead's modules.
"""

import hashlib
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import layers as L

import tfprune
from tfprune import datasets, export, oneshot, schedules, sweep

# ------------------------------------------------------------------ user files


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _snapshot(folder):
    """`{relative path: sha256, or "dir"}` of everything under `folder`."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            out[os.path.relpath(os.path.join(root, name), folder)] = "dir"
        for name in files:
            path = os.path.join(root, name)
            out[os.path.relpath(path, folder)] = _sha256(path)
    return out


def _model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), L.Dense(6, name="h"), L.Dense(3, name="o")])
    model.compile("sgd", "mse")
    return model


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """The user's files: a model (.keras, .h5, .weights.h5), a .tflite, data, and
    broken look-alikes (truncated, empty, text, directories with file names)."""
    d = tmp_path_factory.mktemp("user")
    model = _model()
    model.save(d / "m.keras")
    model.save(d / "m.h5")
    model.save_weights(d / "m.weights.h5")
    blob = (d / "m.keras").read_bytes()
    (d / "trunc.keras").write_bytes(blob[: len(blob) // 2])
    (d / "text.keras").write_text("not a model\n")
    (d / "text.h5").write_text("not hdf5\n")
    with __import__("zipfile").ZipFile(d / "badconfig.keras", "w") as z:  # a zip, bad JSON
        z.writestr("config.json", "{not json")
    (d / "text.tflite").write_text("not a flatbuffer\n")
    (d / "empty.tflite").write_bytes(b"")
    (d / "empty.npz").write_bytes(b"")
    (d / "garbage.npz").write_bytes(b"garbage" * 10)
    (d / "adir").mkdir()
    (d / "adir.keras").mkdir()
    (d / "mnist_dir").mkdir()
    np.savez(d / "d.npz", x_test=np.zeros((4, 8), "float32"), y_test=np.zeros((4, 3), "float32"))
    np.savez(d / "bad.npz", foo=np.zeros(3))
    (d / "m.tflite").write_bytes(_tflite_bytes(model))
    blob = (d / "m.tflite").read_bytes()
    (d / "trunc.tflite").write_bytes(blob[: len(blob) // 3])
    return d


def _tflite_bytes(model):
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


@pytest.fixture
def unchanged(folder):
    """The folder; after the test, every file byte-identical and nothing added."""
    before = _snapshot(folder)
    yield folder
    assert _snapshot(folder) == before


def _data():
    return np.zeros((4, 8), "float32"), np.zeros((4, 3), "float32")


def _dataset():
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices(_data()).batch(2)


def _loaded(d):
    return keras.models.load_model(d / "m.keras")


def xfail(owner, why):
    return pytest.mark.xfail(strict=True, reason=f"{owner}: {why}")


# ------------------------------------------------------------------ Python API

P = pytest.param
API = [
    # prune_low_magnitude
    P(lambda d: tfprune.prune_low_magnitude(_model(), "constant"), TypeError,
      "pruning_schedule='constant'", id="prune-schedule-str"),
    P(lambda d: tfprune.prune_low_magnitude(_model(), granularity=None), TypeError,
      "granularity=None", id="prune-granularity-None"),
    P(lambda d: tfprune.prune_low_magnitude(_model(), scope=1), TypeError, "scope=1",
      id="prune-scope-int"),
    P(lambda d: tfprune.prune_low_magnitude(_model(), granularity="unit", round_to=True),
      TypeError, "round_to=True", id="prune-round_to-bool"),
    P(lambda d: tfprune.prune_low_magnitude(_model(), sparsity_m_by_n=(2,)), TypeError,
      "sparsity_m_by_n=(2,)", id="prune-m_by_n-one-number"),
    P(lambda d: tfprune.prune_low_magnitude(__import__("tf_keras").Sequential(
        [__import__("tf_keras").layers.Dense(2, input_shape=(3,))])), TypeError,
      "Received: to_prune=<tf_keras", id="prune-tf_keras-model"),
    P(lambda d: tfprune.prune_low_magnitude([L.Dense(3), 3]), TypeError, "3",
      id="prune-list-with-int"),
    P(lambda d: tfprune.prune_low_magnitude(_model(), block_size=(1, 4), block_pooling_type=3),
      TypeError, "block_pooling_type=3", id="prune-pooling-int"),
    # PruneLowMagnitude
    P(lambda d: tfprune.PruneLowMagnitude("dense"), TypeError, "layer='dense'",
      id="wrapper-layer-str"),
    P(lambda d: tfprune.PruneLowMagnitude(None), TypeError, "layer=None",
      id="wrapper-layer-None"),
    P(lambda d: tfprune.PruneLowMagnitude(L.Dense(3), {"class_name": "Nope", "config": {}}),
      ValueError, "Nope", id="wrapper-schedule-unknown-class"),
    # schedules
    P(lambda d: tfprune.ConstantSparsity(0.5, 0, frequency=2.5), TypeError, "frequency=2.5",
      id="constant-frequency-float"),
    P(lambda d: tfprune.ConstantSparsity(True, 0), TypeError, "target_sparsity=True",
      id="constant-sparsity-bool"),
    P(lambda d: tfprune.ConstantSparsity(np.float32(1.5), 0), ValueError,
      "target_sparsity=np.float32(1.5)", id="constant-sparsity-numpy-scalar"),
    P(lambda d: tfprune.ConstantSparsity(0.5, 0, end_step=None), TypeError, "end_step=None",
      id="constant-end_step-None"),
    P(lambda d: tfprune.PolynomialDecay(None, 0.5, 0, 10), TypeError, "initial_sparsity=None",
      id="poly-initial-None"),
    P(lambda d: tfprune.PolynomialDecay(0.0, 0.5, 0, 10, power=float("inf")), ValueError,
      "power=inf", id="poly-power-inf"),
    P(lambda d: schedules.deserialize("constant"), TypeError, "pruning_schedule='constant'",
      id="schedule-deserialize-str"),
    # strip_pruning
    P(lambda d: tfprune.strip_pruning(str(d / "m.keras")), TypeError, "m.keras",
      id="strip-path"),
    P(lambda d: tfprune.strip_pruning(None), TypeError, "model=None", id="strip-None"),
    # masks
    P(lambda d: tfprune.masks.Block((1, 4), 3), TypeError, "block_pooling_type=3",
      id="masks-block-pooling-int"),
    P(lambda d: tfprune.masks.MByN("2", 4), TypeError, "'2'", id="masks-m_by_n-str"),
    P(lambda d: tfprune.check_m_by_n("w", 2, 4), TypeError, "'w'", id="check_m_by_n-str"),
    P(lambda d: tfprune.check_m_by_n(np.ones(8), 2, 4), ValueError, "(8,)",
      id="check_m_by_n-vector"),
    # shrink
    P(lambda d: tfprune.shrink(_model(), verify=np.zeros((3, 5), "float32")), ValueError,
      "(3, 5)", id="shrink-verify-wrong-shape"),
    P(lambda d: tfprune.shrink(_model(), verify=np.full((2, 8), np.nan, "float32")), ValueError,
      "16 NaN", id="shrink-verify-nan"),
    P(lambda d: tfprune.shrink(L.Dense(3)), TypeError, "model=<Dense", id="shrink-a-layer"),
    # sparsity_report
    P(lambda d: tfprune.sparsity_report(keras.Sequential([L.Dense(3, name="unbuilt")])),
      ValueError, "unbuilt", id="report-unbuilt-model"),
    P(lambda d: tfprune.sparsity_report(_model(), reference=[_model()]), TypeError,
      "reference=[", id="report-reference-list"),
    # oneshot
    P(lambda d: oneshot.apply_masks(_model(), 0.5, scope="net"), ValueError, "scope='net'",
      id="oneshot-scope"),
    P(lambda d: oneshot.apply_masks(_model(), 0.5, scope=1), TypeError, "scope=1",
      id="oneshot-scope-int"),
    P(lambda d: oneshot.apply_masks(_model(), 0.5, granularity=None), TypeError,
      "granularity=None", id="oneshot-granularity-None"),
    P(lambda d: oneshot.apply_masks(_model(), 0.5, method="random", seed="a"), TypeError,
      "seed='a'", id="oneshot-seed-str"),
    P(lambda d: oneshot.apply_masks(_model(), 0.5, granularity="unit", round_to=2.0), TypeError,
      "round_to=2.0", id="oneshot-round_to-float"),
    P(lambda d: oneshot.apply_masks(_model(), float("nan")), ValueError, "sparsity=nan",
      id="oneshot-sparsity-nan"),
    P(lambda d: oneshot.apply_masks(_model(), True), TypeError, "sparsity=True",
      id="oneshot-sparsity-bool"),
    # datasets
    P(lambda d: datasets.load_mnist(42), TypeError, "path=42", id="mnist-path-int"),
    P(lambda d: datasets.load_mnist(d / "mnist_dir"), FileNotFoundError, "mnist_dir",
      id="mnist-empty-dir"),
    P(lambda d: datasets.load_mnist(d / "empty.npz"), ValueError, "empty.npz",
      id="mnist-empty-file"),
    P(lambda d: datasets.load_mnist(d / "garbage.npz"), ValueError, "garbage.npz",
      id="mnist-not-a-zip"),
    P(lambda d: datasets.load_fashion_mnist(d / "text.keras"), ValueError, "text.keras",
      id="fashion-text-file"),
    P(lambda d: datasets.load_cifar10(download="yes"), TypeError, "download='yes'",
      id="cifar-download-str"),
    P(lambda d: datasets.load_cifar10(d / "bad.npz"), ValueError, "bad.npz",
      id="cifar-npz-wrong-layout"),
    P(lambda d: datasets.pad_mnist_to_32x32x3(np.zeros((3, 5))), ValueError, "(3, 5)",
      id="pad-wrong-shape"),
    # export
    P(lambda d: export.to_tflite(_model(), d / "adir"), ValueError, "adir",
      id="to_tflite-out-is-a-dir"),
    P(lambda d: export.to_tflite(_model(), 42), TypeError, "path=42", id="to_tflite-out-int"),
    P(lambda d: export.to_tflite(_model(), d / "x.tflite", shrink="yes"), TypeError,
      "shrink='yes'", id="to_tflite-shrink-str"),
    P(lambda d: export.inspect(d / "trunc.tflite"), ValueError, "trunc.tflite",
      id="inspect-truncated"),
    P(lambda d: export.inspect(42), TypeError, "42", id="inspect-int"),
    P(lambda d: export.to_tflite(_model(), d / "x.tflite",
                                 sample_inputs=np.zeros((2, 5), "float32")),
      ValueError, "(2, 5)", id="to_tflite-samples-wrong-shape"),
    P(lambda d: export.to_tflite(_model(), d / "x.tflite", quantize="int8",
                                 representative_data=[np.zeros((4, 8), "float32")] * 2),
      ValueError, "2 array(s)", id="to_tflite-calibration-two-arrays"),
    # sweep
    P(lambda d: sweep.run(_loaded(d), _data(), sparsities="0.5", progress=False), TypeError,
      "sparsities='0.5'", id="sweep-sparsities-str"),
    P(lambda d: sweep.run(_loaded(d), _data(), sparsities=(0.5,), seeds="0", progress=False),
      TypeError, "seeds='0'", id="sweep-seeds-str"),
    P(lambda d: sweep.run(_loaded(d), (np.zeros((4, 8), "float32"), np.zeros((3, 3), "float32")),
                          sparsities=(0.5,), progress=False), ValueError, "data",
      id="sweep-data-lengths-differ"),
    P(lambda d: sweep.run(_loaded(d), _data(), sparsities=(0.5,), out=42, progress=False),
      TypeError, "out=42", id="sweep-out-int"),
    P(lambda d: sweep.run(_loaded(d), _data(), sparsities=(0.5,), batch_size="8",
                          progress=False), TypeError, "batch_size='8'", id="sweep-batch-str"),
    P(lambda d: sweep.run(_loaded(d), _data(), sparsities=(0.5,), samples=-1, progress=False),
      ValueError, "samples=-1", id="sweep-samples-negative"),
    P(lambda d: sweep.run(_loaded(d), _dataset(), sparsities=(0.5,), samples=3, progress=False),
      ValueError, "samples=3 with a tf.data.Dataset", id="sweep-samples-with-a-dataset"),
    P(lambda d: sweep.sensitivity(_loaded(d), _data(), sparsities=(0.5,), tolerance=-1,
                                  progress=False), ValueError, "tolerance=-1",
      id="sensitivity-tolerance-negative"),
    P(lambda d: sweep.sensitivity(_loaded(d), _data(), sparsities=(0.5,), tolerance="0.1",
                                  progress=False), TypeError, "tolerance='0.1'",
      id="sensitivity-tolerance-str"),
    P(lambda d: sweep.sensitivity(_loaded(d), _data(), sparsities=(0.5,), layers=42,
                                  progress=False), TypeError, "layers=42",
      id="sensitivity-layers-int"),
    P(lambda d: sweep.sensitivity(_loaded(d), _data(), sparsities=(0.5,), layers=[1],
                                  progress=False), TypeError, "layers=[1]",
      id="sensitivity-layers-list-int"),
    P(lambda d: sweep.run(_loaded(d), (np.zeros((4, 5), "float32"), np.zeros((4, 3), "float32")),
                          sparsities=(0.5,), progress=False), ValueError, "(4, 5)",
      id="sweep-x-wrong-shape"),
    P(lambda d: sweep.run(_loaded(d), _data(), sparsities=(0.5,), sizes="no", progress=False),
      TypeError, "sizes='no'", id="sweep-sizes-str"),
    P(lambda d: sweep.run(d / "trunc.keras", _data(), sparsities=(0.5,), progress=False),
      ValueError, "not a valid .keras archive", id="sweep-model-truncated"),
    P(lambda d: sweep.run(d / "text.h5", _data(), sparsities=(0.5,), progress=False),
      ValueError, "not an HDF5 file", id="sweep-model-text-h5"),
    P(lambda d: sweep.quick_curve(_loaded(d), _data(), 42), TypeError, "path=42",
      id="quick-curve-path-int"),
    P(lambda d: sweep.run(_loaded(d), _data(), sparsities=(0.5,), methods=("magnitude",),
                          sizes=False, progress=False).table("nope"), ValueError,
      "metric='nope'", id="result-table-unknown-metric"),
    P(lambda d: sweep.SweepResult([]).to_csv(42), TypeError, "path=42", id="result-to-csv-int"),
    P(lambda d: sweep.SweepResult.load(42), TypeError, "path=42", id="result-load-int"),
    P(lambda d: sweep.run(_loaded(d), d / "empty.npz", sparsities=(0.5,), progress=False),
      ValueError, "empty.npz", id="sweep-data-empty-npz"),
    P(lambda d: sweep.run(_loaded(d), d / "garbage.npz", sparsities=(0.5,), progress=False),
      ValueError, "garbage.npz", id="sweep-data-not-a-zip"),
    P(lambda d: sweep.run(d / "badconfig.keras", _data(), sparsities=(0.5,), progress=False),
      ValueError, "badconfig.keras", id="sweep-model-bad-config"),
]


@pytest.mark.parametrize("call,error,message", API)
def test_python_api_bad_input_is_a_named_error_and_files_are_untouched(unchanged, call, error,
                                                                       message):
    with pytest.raises(Exception) as e:
        call(unchanged)
    assert type(e.value) is error, f"{type(e.value).__name__}: {e.value}"
    assert message in str(e.value)


# ------------------------------------------------------------------ command line


def _cli(folder, *argv):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env.pop("TFPRUNE_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "tfprune", *argv], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=600)


def C(argv, must, slow=False, marks=(), must_not=(), id=None):
    marks = list(marks) + ([pytest.mark.slow] if slow else [])
    return pytest.param(argv, must, tuple(must_not), marks=marks, id=id)


NOT_FOUND = ("File not found", "No such file")
CLI = [
    C(["nosuch"], "'nosuch'", id="unknown-command"),
    # report
    C(["report", "adir.keras"], "'adir.keras'", id="report-directory"),
    C(["report", "m.tflite"], "'m.tflite'", id="report-tflite"),
    C(["report", "trunc.keras"], "trunc.keras", slow=True, must_not=NOT_FOUND,
      id="report-truncated-keras"),
    C(["report", "text.keras"], "text.keras", slow=True, must_not=NOT_FOUND,
      id="report-text-keras"),
    C(["report", "text.h5"], "text.h5", slow=True, id="report-text-h5"),
    # inspect
    C(["inspect", "empty.tflite"], "'empty.tflite'", id="inspect-empty"),
    C(["inspect", "adir"], "'adir'", id="inspect-directory"),
    C(["inspect", "missing.tflite"], "'missing.tflite'", id="inspect-missing"),
    C(["inspect", "trunc.tflite"], "trunc.tflite", id="inspect-truncated"),
    # export
    C(["export", "m.keras", "adir"], "'adir'", id="export-out-directory"),
    C(["export", "m.keras", "o.tflite", "--samples", "m.keras"], "'m.keras'",
      id="export-samples-not-npz"),
    C(["export", "text.keras", "o.tflite"], "text.keras", slow=True, must_not=NOT_FOUND,
      id="export-text-keras"),
    C(["export", "m.keras", "o.tflite", "--quantize", "int8", "--calibration", "bad.npz"],
      "bad.npz", slow=True, id="export-calibration-wrong-arrays"),
    C(["report", "badconfig.keras"], "'badconfig.keras'", slow=True,
      id="report-bad-config"),
    C(["export", "m.keras", "o.tflite", "--quantize", "int8", "--calibration", "garbage.npz"],
      "'garbage.npz'", id="export-calibration-not-a-zip"),
    C(["export", "m.keras", "o.tflite", "--samples", "bad.npz"], "bad.npz", slow=True,
      id="export-samples-wrong-arrays"),
    C(["inspect", "text.tflite"], "'text.tflite'", id="inspect-text"),
    # sweep / sensitivity
    C(["sweep", "m.keras", "--data", "d.npz", "--out", "sw", "--sparsities", "0.5,abc"], "'abc'",
      id="sweep-sparsity-not-a-number"),
    C(["sweep", "m.keras", "--data", "nosuch", "--out", "sw"], "'nosuch'", id="sweep-data-unknown"),
    C(["sweep", "m.keras", "--data", "d.npz", "--out", "m.keras"], "'m.keras'",
      id="sweep-out-is-a-file"),
    C(["sweep", "missing.keras", "--data", "d.npz", "--out", "sw"], "'missing.keras'",
      id="sweep-model-missing"),
    C(["sweep", "m.keras", "--data", "d.npz", "--out", "sw", "--seeds", "-1"], "-1",
      id="sweep-seed-negative"),
    C(["sweep", "m.keras", "--data", "bad.npz", "--out", "sw", "--sparsities", "0.5", "--quiet",
       "--no-sizes"], "bad.npz", slow=True, id="sweep-npz-without-arrays"),
    C(["sensitivity", "m.keras", "--data", "d.npz", "--out", "se", "--tolerance", "-1"], "-1",
      id="sensitivity-tolerance-negative"),
    C(["sensitivity", "m.keras", "--data", "d.npz", "--out", "se", "--layers", "nope",
       "--quiet"], "'nope'", slow=True, id="sensitivity-unknown-layer"),
    C(["sweep", "trunc.keras", "--data", "d.npz", "--out", "sw"], "'trunc.keras'",
      must_not=NOT_FOUND, id="sweep-model-truncated"),
    C(["sweep", "m.keras", "--data", "empty.npz", "--out", "sw"], "'empty.npz'",
      id="sweep-data-empty-npz"),
    C(["sensitivity", "text.h5", "--data", "d.npz", "--out", "se"], "'text.h5'",
      id="sensitivity-model-text-h5"),
    # demo
    C(["demo", "--dense-epochs", "-1"], "-1", id="demo-dense-epochs-negative"),
    C(["demo", "--unit-sparsity", "-0.1"], "-0.1", id="demo-unit-sparsity-negative"),
    C(["demo", "--output-dir", "demo_out", "--data", "text.keras"], "text.keras", slow=True,
      id="demo-data-not-mnist"),
    # prune-h5
    C(["prune-h5", "m.keras", "--sparsity", "0.5", "--m-by-n", "4:2"], "(4, 2)",
      id="prune-h5-m-by-n-reversed"),
    C(["prune-h5", "m.keras"], "--sparsity", id="prune-h5-no-sparsity"),
    C(["prune-h5", "adir", "--sparsity", "0.5"], "'adir'", id="prune-h5-directory"),
    C(["prune-h5", "m.tflite", "--sparsity", "0.5"], "'m.tflite'", slow=True,
      id="prune-h5-tflite"),
]


@pytest.mark.parametrize("argv,must,must_not", CLI)
def test_cli_bad_input_is_one_line_exit_2_and_files_are_untouched(unchanged, argv, must,
                                                                  must_not):
    out = _cli(unchanged, *argv)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, out.stderr[-3000:]
    assert len(lines) == 1, out.stderr[-3000:]
    assert must in lines[0]
    for text in must_not:
        assert text not in lines[0]


def test_the_battery_has_at_least_40_distinct_cases():
    ids = [f"api-{p.id}" for p in API] + [f"cli-{p.id}" for p in CLI]
    assert len(set(ids)) == len(ids) >= 40
