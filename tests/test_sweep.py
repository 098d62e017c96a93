"""tfprune.sweep: records, exact sparsity, untouched models, random baselines, resume, files."""

import doctest
import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfprune
import tfprune.sweep
from tfprune import masks
from tfprune.sweep import SweepResult
from tfprune.sweep import measure, result as result_lib

STR, INT, FLOAT = (str, type(None)), (int, type(None)), (float,)
TYPES = {
    "sparsity": FLOAT, "measured_sparsity": FLOAT, "model_sparsity": FLOAT,
    "granularity": STR, "method": STR, "scope": (str,), "seed": INT, "finetune_epochs": (int,),
    "params": (int,), "nonzero_params": (int,), "flops": INT, "shrunk_params": INT,
    "shrunk_flops": INT, "gzip_bytes": INT, "accuracy": FLOAT, "loss": FLOAT,
}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 12)).astype("float32")
    return x, (x[:, :4].argmax(axis=1)).astype("int32")


def mlp(compiled=True):
    model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(10, activation="relu"),
                              keras.layers.Dense(4, name="out")])
    if compiled:
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
    return model


def weights(model):
    return [w.copy() for w in model.get_weights()]


def fast(**kw):
    return dict(dict(sparsities=(0.5, 0.9), progress=False), **kw)


def test_records_are_complete_typed_and_the_dense_model_comes_first(data):
    result = tfprune.sweep.run(mlp(), data, **fast())
    assert result.metrics == ["accuracy", "loss"]
    dense, *levels = result.records
    assert dense["sparsity"] == 0.0 and dense["granularity"] is None
    assert dense["measured_sparsity"] == 0.0 and dense["seed"] is None
    # dense + 2 granularities x (magnitude + 1 random seed) x 2 levels
    assert len(levels) == 8
    for r in result.records:
        assert list(r) == list(result_lib.HEAD) + ["accuracy", "loss"] + list(result_lib.TAIL)
        for k, v in r.items():
            assert isinstance(v, TYPES[k]), (k, v)
        assert 0.0 <= r["accuracy"] <= 1.0 and r["params"] == 12 * 16 + 16 + 16 * 10 + 10 + 44
        assert r["flops"] == 2 * (12 * 16 + 16 * 10 + 10 * 4)
        assert r["gzip_bytes"] > 0
    units = [r for r in levels if r["granularity"] == "unit"]
    assert all(r["shrunk_params"] < dense["params"] and r["shrunk_flops"] < dense["flops"]
               for r in units)
    assert all(r["shrunk_params"] is None for r in levels if r["granularity"] == "weight")
    assert {(r["method"], r["seed"]) for r in levels} == {("magnitude", None), ("random", 0)}


def test_measured_sparsity_is_exactly_the_requested_count(data):
    result = tfprune.sweep.run(mlp(), data, **fast(sparsities=(0.25, 0.9, 0.97),
                                                   granularities=("weight",)))
    sizes = [12 * 16, 16 * 10]  # the output layer is kept
    dense = result.records[0]
    for r in result.records[1:]:
        pruned = sum(n - masks.keep_count(n, r["sparsity"]) for n in sizes)
        assert r["measured_sparsity"] == pruned / sum(sizes)
        assert dense["nonzero_params"] - r["nonzero_params"] == pruned


def test_unit_levels_prune_exact_unit_counts_and_shrink(data):
    result = tfprune.sweep.run(mlp(), data, **fast(granularities=("unit",), methods=("magnitude",)))
    for r in result.records[1:]:
        k1, k2 = masks.keep_count(16, r["sparsity"]), masks.keep_count(10, r["sparsity"])
        assert r["shrunk_params"] == 12 * k1 + k1 + k1 * k2 + k2 + k2 * 4 + 4


def test_the_users_model_is_never_modified(data):
    model = mlp()
    before = weights(model)
    result = tfprune.sweep.run(model, data, granularities=("unit",), methods=("magnitude",),
                               finetune=dict(epochs=1, train_data=data, batch_size=32),
                               **fast(sparsities=(0.5,)))
    tfprune.sweep.sensitivity(model, data, **fast(sparsities=(0.9,)))
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    one_shot, tuned = result.records[1:]  # fine-tuned unit levels shrink like one-shot ones
    assert tuned["finetune_epochs"] == 1 and tuned["shrunk_params"] == one_shot["shrunk_params"]


def test_levels_do_not_retrace_the_model(data):
    calls = []

    @keras.saving.register_keras_serializable("tfprune_test")
    class Counted(keras.layers.Layer):
        def call(self, x):
            calls.append(1)  # Python runs only while tracing
            return x

    model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(8), Counted(),
                              keras.layers.Dense(4)])
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    copy = keras.models.clone_model(model)
    copy.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    calls.clear()
    copy.evaluate(*data, batch_size=256, verbose=0)
    one_evaluation = len(calls)
    calls.clear()
    tfprune.sweep.run(model, data, granularities=("weight",),  # 9 levels
                      **fast(sparsities=(0.3, 0.5, 0.7, 0.9)))
    assert 0 < len(calls) <= one_evaluation + 1  # + clone_model's symbolic call


def test_random_differs_from_magnitude_and_repeats_by_seed(data):
    model = mlp()
    run = lambda seeds: tfprune.sweep.run(model, data, **fast(  # noqa: E731
        sparsities=(0.7,), granularities=("weight",), seeds=seeds))
    first, again = run((0, 1)), run((0,))
    loss = {(r["method"], r["seed"]): r["loss"] for r in first.records[1:]}
    assert loss[("random", 0)] != loss[("magnitude", None)]
    assert loss[("random", 0)] != loss[("random", 1)]
    assert [r["loss"] for r in again.records if r["seed"] == 0] == [loss[("random", 0)]]
    counts = {r["nonzero_params"] for r in first.records[1:]}
    assert len(counts) == 1  # same exact counts for both methods and seeds


def test_several_seeds_give_mean_and_std(data):
    result = tfprune.sweep.run(mlp(), data, **fast(sparsities=(0.9,), granularities=("weight",),
                                                   methods=("random",), seeds=(0, 1, 2)))
    (summary,) = [s for s in result.summary() if s["granularity"] == "weight"]
    losses = [r["loss"] for r in result.records[1:]]
    assert summary["seeds"] == 3
    assert summary["loss"] == pytest.approx(np.mean(losses))
    assert summary["loss_std"] == pytest.approx(np.std(losses, ddof=1))
    assert "±" in result.table()


def test_coupled_units_are_one_group_in_sensitivity_and_sweeps(data):
    x = keras.Input((12,))
    a = keras.layers.Dense(8, name="a")(x)
    b = keras.layers.Dense(8, name="b")(keras.layers.ReLU()(a))
    h = keras.layers.Add()([a, b])
    model = keras.Model(x, keras.layers.Dense(4, name="out")(keras.layers.ReLU()(h)))
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    sens = tfprune.sweep.sensitivity(model, data, granularity="unit", **fast(sparsities=(0.5,)))
    assert [r["layer"] for r in sens.records] == [None, "a+b"]
    sweep = tfprune.sweep.run(model, data, granularities=("unit",), methods=("magnitude",),
                              **fast(sparsities=(0.5,)))
    # a and b keep the same 4 units; b reads a's 4 units, out reads the 4 summed ones
    assert sweep.records[1]["shrunk_params"] == (12 * 4 + 4) + (4 * 4 + 4) + (4 * 4 + 4)


def test_resume_skips_finished_levels_and_adds_new_ones(data, tmp_path):
    model = mlp()
    seen = []

    def evaluate(m, d):
        seen.append(1)
        return {"loss": float(m.compute_loss(x=None, y=d[1], y_pred=m(d[0])))}

    kw = dict(granularities=("weight",), methods=("magnitude",), evaluate=evaluate,
              out=tmp_path / "out", progress=False)
    first = tfprune.sweep.run(model, data, sparsities=(0.5,), **kw)
    assert len(seen) == 2
    seen.clear()
    second = tfprune.sweep.run(model, data, sparsities=(0.5, 0.9), **kw)
    assert len(seen) == 1  # only 90% is new
    assert second.records[:2] == first.records
    lines = (tmp_path / "out" / "records.jsonl").read_text().splitlines()
    assert len(lines) == 3
    assert SweepResult.load(tmp_path / "out" / "sweep.csv").records == second.records
    seen.clear()
    tfprune.sweep.run(model, data, sparsities=(0.5, 0.9), resume=False, **kw)
    assert len(seen) == 3


def test_an_interrupted_sweep_resumes_where_it_stopped(data, tmp_path):
    model = mlp()
    seen = []

    def evaluate(m, d):
        seen.append(1)
        if len(seen) == 3 and fail[0]:
            raise KeyboardInterrupt
        return {"loss": float(len(seen))}

    fail = [True]
    kw = dict(sparsities=(0.3, 0.6, 0.9), granularities=("weight",), methods=("magnitude",),
              evaluate=evaluate, out=tmp_path, progress=False)
    with pytest.raises(KeyboardInterrupt):
        tfprune.sweep.run(model, data, **kw)
    with open(tmp_path / "records.jsonl", "a") as f:
        f.write('{"sparsity": 0.9, "cut sho')  # a line cut short by a kill
    fail[0] = False
    seen.clear()
    result = tfprune.sweep.run(model, data, **kw)
    assert len(seen) == 2 and [r["sparsity"] for r in result.records] == [0.0, 0.3, 0.6, 0.9]


def test_a_folder_of_another_sweep_is_refused(data, tmp_path):
    kw = fast(sparsities=(0.5,), granularities=("weight",), methods=("magnitude",), out=tmp_path)
    tfprune.sweep.run(mlp(), data, **kw)
    with pytest.raises(ValueError, match="differs in: weights"):
        tfprune.sweep.run(mlp(), data, **kw)  # other initial weights
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="must be a folder"):
        tfprune.sweep.run(mlp(), data, **dict(kw, out=tmp_path / "file"))


def test_csv_and_json_round_trip(data, tmp_path):
    result = tfprune.sweep.run(mlp(), data, **fast(seeds=(0, 1)))
    for name in ("r.csv", "r.json"):
        path = result.to_csv(tmp_path / name) if name.endswith("csv") else result.to_json(
            tmp_path / name)
        back = SweepResult.load(path)
        assert back.records == result.records and back.metrics == result.metrics
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["summary"] == json.loads(json.dumps(result.summary()))
    assert saved["config"]["granularities"] == ["weight", "unit"]


def test_fine_tuned_levels_reach_the_exact_sparsity_and_keep_the_output_layer(data):
    model = mlp()
    result = tfprune.sweep.run(model, data, sparsities=(0.8,), granularities=("weight",),
                               methods=("magnitude",), seeds=(0, 1), progress=False,
                               finetune=dict(epochs=1, train_data=data, batch_size=32))
    tuned = [r for r in result.records if r["finetune_epochs"] == 1]
    assert [r["seed"] for r in tuned] == [0, 1]
    pruned = sum(n - masks.keep_count(n, 0.8) for n in (12 * 16, 16 * 10))
    for r in tuned:
        assert r["measured_sparsity"] == pruned / (12 * 16 + 16 * 10)
        assert r["params"] - r["nonzero_params"] >= pruned
    assert tuned[0]["loss"] != result.records[1]["loss"]  # it trained


def test_data_as_dataset_loader_name_npz_and_model_file(data, tmp_path, monkeypatch):
    model = mlp()
    kw = fast(sparsities=(0.5,), granularities=("weight",), methods=("magnitude",))
    from_arrays = tfprune.sweep.run(model, data, **kw)
    ds = tf.data.Dataset.from_tensor_slices(data).batch(32)
    from_ds = tfprune.sweep.run(model, ds, **kw)
    assert [r["loss"] for r in from_ds.records] == pytest.approx(
        [r["loss"] for r in from_arrays.records], rel=1e-5)
    model.save(tmp_path / "m.keras")
    from_file = tfprune.sweep.run(tmp_path / "m.keras", data, **kw)
    assert [r["loss"] for r in from_file.records] == [r["loss"] for r in from_arrays.records]
    # a loader name / npz: uint8 images scaled to [0, 1] and reshaped to the input
    images = np.random.default_rng(1).integers(0, 255, (40, 3, 4), dtype=np.uint8)
    labels = np.arange(40) % 4
    np.savez(tmp_path / "mnist.npz", x_train=images, y_train=labels, x_test=images, y_test=labels)
    monkeypatch.setenv("TFPRUNE_DATA_DIR", str(tmp_path))
    by_name = tfprune.sweep.run(model, "mnist", **kw)
    by_npz = tfprune.sweep.run(model, tmp_path / "mnist.npz", **kw)
    want = model.evaluate(images.reshape(40, 12) / 255.0, labels, verbose=0, return_dict=True)
    assert by_name.records[0]["loss"] == pytest.approx(want["loss"], rel=1e-5)
    assert by_npz.records[0]["loss"] == by_name.records[0]["loss"]
    assert by_name.config["data"] == "mnist:test"


def test_an_uncompiled_classifier_gets_cross_entropy_and_accuracy(data):
    result = tfprune.sweep.run(mlp(compiled=False), data, **fast(sparsities=(0.5,),
                                                                 granularities=("weight",)))
    assert result.metrics == ["accuracy", "loss"]


def test_bad_arguments_fail_before_any_work(data):
    model = mlp()
    cases = [
        (dict(sparsities=(0.5, 1.2)), ValueError, r"Received: sparsities=1.2"),
        (dict(sparsities=()), ValueError, "at least one sparsity"),
        (dict(granularities=("block",)), ValueError, "Argument `granularities`"),
        (dict(methods=("taylor",)), ValueError, "Argument `methods`"),
        (dict(scope="net"), ValueError, "Argument `scope`"),
        (dict(seeds=(-1,)), ValueError, "Argument `seed`"),
        (dict(finetune=dict(epochs=0)), ValueError, r"finetune\['epochs'\]"),
        (dict(finetune=dict(epochs=1, lr=3)), ValueError, "unknown keys"),
        (dict(finetune=dict(epochs=1, train_data=data), methods=("random",)), ValueError,
         "include 'magnitude'"),
        (dict(finetune=dict(epochs=1)), ValueError, "needs `train_data`"),
        (dict(batch_size=0), ValueError, "Argument `batch_size`"),
        (dict(evaluate="accuracy"), TypeError, "Argument `evaluate`"),
    ]
    for kw, error, message in cases:
        with pytest.raises(error, match=message):
            tfprune.sweep.run(model, data, progress=False, **kw)
    with pytest.raises(TypeError, match="Argument `data`"):
        tfprune.sweep.run(model, 42)
    with pytest.raises(ValueError, match="Argument `data`"):
        tfprune.sweep.run(model, "imagenet")
    with pytest.raises(FileNotFoundError, match="Received: model="):
        tfprune.sweep.run("missing.keras", data)


def test_sensitivity_prunes_one_layer_at_a_time_and_summarises(data):
    x = keras.Input((6, 6, 2))
    y = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(x)
    y = keras.layers.Flatten()(y)
    y = keras.layers.Dense(8, activation="relu", name="fc")(y)
    model = keras.Model(x, keras.layers.Dense(4, name="out")(y))
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    xs = np.random.default_rng(2).normal(size=(64, 6, 6, 2)).astype("float32")
    ys = np.arange(64) % 4
    result = tfprune.sweep.sensitivity(model, (xs, ys), sparsities=(0.5, 0.9), progress=False)
    assert result.kind == "sensitivity"
    assert [r["layer"] for r in result.records] == [None] + ["conv"] * 2 + ["fc"] * 2 + ["out"] * 2
    dense = result.records[0]["nonzero_params"]
    for r in result.records[1:]:
        n = int(np.prod(model.get_layer(r["layer"]).kernel.shape))
        assert dense - r["nonzero_params"] == n - masks.keep_count(n, r["sparsity"])
    rows = result.layer_summary(metric="loss", tolerance=0.05)
    assert [row["layer"] for row in rows] == ["conv", "fc", "out"]
    assert all(set(row) >= {"auc", "max_sparsity", "loss_dense"} for row in rows)
    units = tfprune.sweep.sensitivity(model, (xs, ys), granularity="unit", sparsities=(0.5,),
                                      progress=False)
    assert [r["layer"] for r in units.records] == [None, "conv", "fc"]


def test_layer_summary_area_and_highest_sparsity_within_tolerance():
    records = [dict(layer=None, sparsity=0.0, granularity=None, method=None, accuracy=0.9)]
    for s, acc in ((0.5, 0.895), (0.8, 0.85), (0.9, 0.89)):
        records.append(dict(layer="fc", sparsity=s, granularity="weight", method="magnitude",
                            finetune_epochs=0, accuracy=acc))
    (row,) = SweepResult(records, "sensitivity").layer_summary(tolerance=0.01)
    assert row["max_sparsity"] == 0.5  # 80% drops 5 points: 90% does not count
    area = np.trapezoid([0.9, 0.895, 0.85, 0.89], [0.0, 0.5, 0.8, 0.9]) / 0.9
    assert row["auc"] == pytest.approx(area) and row["worst"] == 0.89


def test_quick_curve_writes_a_png_in_seconds(data, tmp_path):
    result = tfprune.sweep.quick_curve(mlp(), data, tmp_path / "curve.png",
                                       sparsities=(0.5, 0.9))
    assert (tmp_path / "curve.png").stat().st_size > 10_000
    assert {r["method"] for r in result.records[1:]} == {"magnitude"}
    assert {r["granularity"] for r in result.records[1:]} == {"weight", "unit"}


def test_vgg16_at_width_one_is_keras_applications_vgg16():
    full = tfprune.sweep.models.vgg16()
    ref = keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    convs = [l for l in full.layers if isinstance(l, keras.layers.Conv2D)]
    assert [l.name for l in convs] == [l.name for l in ref.layers
                                       if isinstance(l, keras.layers.Conv2D)]
    assert full.count_params() == ref.count_params() + 512 * 256 + 256 + 256 * 10 + 10
    small = tfprune.sweep.models.vgg16(width=0.25)
    assert [l.name for l in small.layers[1:]] == [l.name for l in full.layers[1:]]
    with pytest.raises(ValueError, match="Argument `width`"):
        tfprune.sweep.models.vgg16(width=2)


def test_measure_counts_and_gzip():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.layers[0].kernel.assign(np.zeros((4, 3), "float32"))
    assert measure.weight_counts(model) == (15, 0)
    assert 0 < measure.gzip_bytes(model) < 60  # 60 bytes of zeros compress
    assert measure.dense_flops(model) == 24


@pytest.mark.parametrize("module", [result_lib, measure, tfprune.sweep.models])
def test_docstring_examples_run(module):
    out = doctest.testmod(module, extraglobs={"tfprune": tfprune})
    assert out.attempted > 0 and out.failed == 0


def test_json_keeps_nan_free_and_summary_of_unit_units():
    r = SweepResult([dict(sparsity=0.0, granularity=None, method=None, loss=math.nan)])
    assert json.loads(json.dumps(result_lib._jsonable(r.to_dict())))["records"][0]["loss"] is None


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def saved(tmp_path, data):
    model = mlp()
    model.save(tmp_path / "m.keras")
    x, y = data
    np.savez(tmp_path / "d.npz", x_test=x, y_test=y, x_train=x, y_train=y)
    return tmp_path


def test_cli_sweep_writes_csv_json_png_and_resumes(saved, capsys):
    from tfprune import cli

    args = ["sweep", str(saved / "m.keras"), "--data", str(saved / "d.npz"), "--out",
            str(saved / "out"), "--sparsities", "0.5,0.9", "--granularity", "weight",
            "--seeds", "0,1", "--quiet"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "random" in out and "wrote" in out
    for name in ("sweep.csv", "sweep.json", "sweep.png", "records.jsonl"):
        assert (saved / "out" / name).stat().st_size > 0
    result = SweepResult.load(saved / "out" / "sweep.json")
    assert len(result.records) == 1 + 2 + 4
    assert cli.main(args) == 0  # resumed: the same records
    assert SweepResult.load(saved / "out").records == result.records


def test_cli_sensitivity_prints_per_layer_targets(saved, capsys):
    from tfprune import cli

    assert cli.main(["sensitivity", str(saved / "m.keras"), "--data", str(saved / "d.npz"),
                     "--out", str(saved / "sens"), "--sparsities", "0.5", "--quiet",
                     "--tolerance", "0.05"]) == 0
    out = capsys.readouterr().out
    assert "max sparsity" in out and "dense_1" in out
    assert (saved / "sens" / "sensitivity.png").stat().st_size > 0


@pytest.mark.parametrize("extra, message", [
    (["--sparsities", "0.5,1.5"], "--sparsities"),
    (["--granularity", "block"], "--granularity"),
    (["--method", "taylor"], "--method"),
    (["--data", "imagenet"], "--data"),
    (["--seeds", "-1"], "--seeds"),
    (["--finetune-epochs", "1", "--method", "random"], "include magnitude"),
])
def test_cli_bad_arguments_are_one_line_errors(saved, capsys, extra, message):
    from tfprune import cli

    base = ["sweep", str(saved / "m.keras"), "--data", str(saved / "d.npz"), "--out",
            str(saved / "out")]
    args = base[:2] + base[4:] if extra[0] == "--data" else base
    try:
        code = cli.main(args + extra)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert not (saved / "out").exists()


def test_cli_unknown_metric_is_one_line_and_the_rerun_resumes_from_the_records(saved, capsys):
    from tfprune import cli

    args = ["sweep", str(saved / "m.keras"), "--data", str(saved / "d.npz"), "--out",
            str(saved / "out"), "--sparsities", "0.5", "--granularity", "weight", "--method",
            "magnitude", "--no-sizes", "--quiet"]
    assert cli.main(args + ["--metric", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--metric 'nope'" in err[0] and "resumes" in err[0], err
    kept = (saved / "out" / "records.jsonl").read_text()
    assert len(kept.splitlines()) == 2  # dense + 50%: kept for the rerun
    assert cli.main(args) == 0
    assert (saved / "out" / "records.jsonl").read_text() == kept  # resumed, nothing redone


def test_fine_tuning_never_trains_on_the_evaluation_arrays_of_an_npz(data, tmp_path):
    np.savez(tmp_path / "only_test.npz", x=data[0], y=data[1])
    with pytest.raises(ValueError, match="no x_train/y_train arrays"):
        tfprune.sweep.run(mlp(), tmp_path / "only_test.npz", sparsities=(0.5,),
                          finetune=dict(epochs=1), progress=False)
