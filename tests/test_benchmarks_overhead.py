"""`benchmarks/overhead.py`: its argument checks and the analysis of the workers'
JSON (paired ratios, verdicts, tables). The timing itself is a benchmark, run on
purpose (`overhead.py`, `--quick` for a smoke run), never here."""

import importlib.util
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "overhead.py"


@pytest.fixture(scope="module")
def overhead():
    spec = importlib.util.spec_from_file_location("bench_overhead", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _worker_result(plain, pruned, mode="graph", variant="tfprune"):
    return {"epochs": {
        "samples": 256, "steps_per_epoch": 2, "mask_updates_per_epoch": 0.02,
        "timed_epochs_per_variant": len(plain), "modes": [mode],
        "variants": {mode: ["plain", variant]},
        "epoch_s": {f"{mode}:plain": plain, f"{mode}:{variant}": pruned},
        "epoch_cpu_s": {f"{mode}:plain": plain, f"{mode}:{variant}": pruned},
        "final_state": {f"{mode}:{variant}": {"kernel_sparsity": 0.9}},
        "loadavg_per_round": [1.0] * len(plain),
    }}


def test_verdict_is_the_median_of_paired_ratios_not_the_ratio_of_medians(overhead):
    # the load changed from round to round; each pair saw the same load
    plain, pruned = [1.0, 2.0, 3.0], [1.04, 2.2, 3.06]
    (row,) = overhead.overhead_rows({"tensorflow": _worker_result(plain, pruned)})
    assert row["wall"]["paired_ratios"] == pytest.approx([1.04, 1.10, 1.02])
    assert row["wall"]["median_paired_ratio"] == pytest.approx(1.04)
    assert row["wall"]["ratio_of_medians"] == pytest.approx(1.10)
    assert (row["wall"]["paired_min"], row["wall"]["paired_max"]) == pytest.approx((1.02, 1.10))
    assert row["pass"] is True and row["target"] == 1.05


def test_xla_target_is_stricter(overhead):
    plain, pruned = [1.0, 1.0, 1.0], [1.03, 1.03, 1.03]
    (row,) = overhead.overhead_rows({"tensorflow": _worker_result(plain, pruned, mode="xla")})
    assert row["target"] == 1.02 and row["pass"] is False
    verdicts = overhead.verdicts({"overhead": [row], "mask_update": []})
    assert [v["pass"] for v in verdicts.values()] == [False]


def test_tfmot_and_diagnostic_rows_have_no_target(overhead):
    rows = overhead.overhead_rows({
        "tensorflow": _worker_result([1.0], [1.2], mode="tf_keras", variant="tfmot")})
    assert rows[0]["target"] is None and rows[0]["pass"] is None


def test_mask_rows_judge_speedup_and_skip_diagnostic_patches(overhead):
    m = {"shape": [10, 10], "weights": 100, "repeats": 3,
         "median_ms": {"eager": 10.0, "eager+bincount": 2.0, "tfmot": 40.0},
         "speedup_vs_tfmot": {"eager": 4.0, "eager+bincount": 20.0},
         "kept": {"target": 10, "eager": 10, "eager+bincount": 10, "tfmot": 10},
         "masks_differ_from_tfmot": {"eager": 0, "eager+bincount": 0}}
    rows = overhead.mask_rows({"torch": {"mask_update": [m]}})
    assert [(r["mode"], r["pass"]) for r in rows] == [("eager", False), ("eager+bincount", None)]
    assert len(overhead.verdicts({"overhead": [], "mask_update": rows})) == 1


def _steps_result(plain_blocks, pruned_blocks, mode="graph", variant="tfprune"):
    def summary(blocks, paired=None):
        out = {"block_s": blocks, "total_s": sum(blocks), "steps": 10 * len(blocks),
               "median_step_s": blocks[0] / 10, "due_steps": len(blocks),
               "update_step_s": [0.5] * len(blocks), "other_step_s_median": 0.1}
        if paired is not None:
            out["other_steps_median_paired_ratio"] = paired
        return out

    return {"steps": {
        "frequency": 10, "blocks": len(plain_blocks), "modes": [mode],
        "variants": {mode: ["plain", variant]},
        "results": {mode: {"plain": summary(plain_blocks),
                           variant: summary(pruned_blocks, 1.01)}},
        "final_state": {f"{mode}:{variant}": {"kernel_sparsity": 0.9}},
    }}


def test_step_verdict_is_the_median_block_ratio_with_a_bootstrap_interval(overhead):
    plain = [1.0, 2.0, 3.0, 1.0, 1.0]
    pruned = [1.01, 2.2, 3.03, 1.02, 1.03]  # block ratios 1.01 1.10 1.01 1.02 1.03
    (row,) = overhead.step_rows({"jax": _steps_result(plain, pruned, mode="jit")})
    assert row["median_block_ratio"] == pytest.approx(1.02)
    assert row["ratio_of_totals"] == pytest.approx(sum(pruned) / sum(plain))
    lo, hi = row["ci95"]
    assert 1.01 <= lo <= 1.02 <= hi <= 1.10
    assert row["target"] == 1.05 and row["pass"] is True
    (verdict,) = overhead.verdicts({"steps": [row]}).values()
    assert verdict["value"] == pytest.approx(1.02) and verdict["pass"] is True
    rows, header = overhead.step_table({"steps": [row]})
    assert len(rows[0]) == len(header) and rows[0][-1] == "PASS"


def test_step_rows_hold_xla_to_its_stricter_target_and_others_to_none(overhead):
    (xla,) = overhead.step_rows({"tensorflow": _steps_result([1.0] * 3, [1.03] * 3, "xla")})
    assert xla["target"] == 1.02 and xla["pass"] is False
    assert xla["label"] == "TF + XLA (jit_compile=True)"
    (ref,) = overhead.step_rows({"tensorflow": _steps_result(
        [1.0] * 3, [2.0] * 3, "tf_keras", "tfmot")})
    assert ref["target"] is None and ref["pass"] is None
    assert ref["label"] == "tfmot on tf_keras, graph (reference)"
    (diag,) = overhead.step_rows({"tensorflow": _steps_result(
        [1.0] * 3, [1.1] * 3, "graph", "countonly")})  # a --breakdown variant
    assert diag["target"] is None and diag["label"] == "TF graph: countonly (diagnostic)"
    rows, _ = overhead.step_table({"steps": [diag]})
    assert rows[0][0] == "TF graph: countonly (diagnostic)"


def test_stepper_drives_plain_and_pruned_alternately_with_one_update_per_block():
    """`overhead_steps.interleave` on a tiny model: every block of `frequency` steps
    holds exactly one update of the pruned model, marked where it ran, and the
    model ends as `fit` would leave it (its step count checked by the callback)."""
    import keras
    from keras import ops

    import tfprune

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import overhead_steps

    class Run:  # what overhead_steps reads of overhead_worker.Run
        keras2 = False

        def __init__(self, variant, model, callbacks):
            self.variant, self.model, self.callbacks = variant, model, callbacks

    rng = np.random.default_rng(0)
    x = rng.standard_normal((24, 6)).astype("float32")
    y = rng.integers(0, 3, 24).astype("int32")

    def model(pruned):
        keras.utils.set_random_seed(1)
        m = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(3)])
        if pruned:
            m = tfprune.prune_low_magnitude(m, tfprune.PolynomialDecay(
                0.0, 0.75, begin_step=0, end_step=18, frequency=3))
        m.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return m

    plain = Run("plain", model(False), [])
    pruned = Run("tfprune", model(True), [tfprune.callbacks.UpdatePruningStep()])
    for r in (plain, pruned):  # 3 steps of fit, as the benchmark's warm-up epoch
        r.model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False,
                    callbacks=r.callbacks)
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    data = overhead_steps.step_data(keras.backend.backend(), x, y, 8, ds)
    steppers = [overhead_steps.Stepper(r, keras.backend.backend(), data)
                for r in (plain, pruned)]
    overhead_steps.interleave(steppers, blocks=3, frequency=3, tag="[test]")
    # steps 4-6 warm up; timed steps 7..15: updates at 9, 12, 15
    assert [len(s.times) for s in steppers] == [9, 9]
    assert steppers[0].due == [] and steppers[1].due == [2, 5, 8]
    w = tfprune.collect_prunable_layers(pruned.model)[0]
    assert int(ops.convert_to_numpy(w.pruning_step)) == 15
    assert int(ops.convert_to_numpy(w.last_update_step)) == 15
    summary = overhead_steps.summary(steppers[1], steppers[0], 3)
    assert summary["block_s"] == pytest.approx(
        [sum(steppers[1].times[i:i + 3]) for i in (0, 3, 6)])
    assert summary["due_steps"] == 3 and len(summary["update_step_s"]) == 3


def _run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)


def test_unknown_backend_is_refused_before_any_work():
    proc = _run("--backends", "tensorflow,mxnet")
    assert proc.returncode == 2
    assert "must be among" in proc.stderr and "mxnet" in proc.stderr


def test_summarize_prints_the_committed_results():
    results = ROOT / "benchmarks" / "results"
    saved = json.loads((results / "overhead.json").read_text())
    if "backends" not in saved:
        pytest.skip("results/overhead.json predates the per-backend benchmark")
    proc = _run("--summarize", str(results / "overhead.json"))
    assert proc.returncode == 0, proc.stderr
    for label in ("TF graph", "TF + XLA", "JAX (jit)", "torch (eager)", "tfmot on tf_keras"):
        assert label in proc.stdout
    has_masks = any("mask_update" in b for b in saved["backends"].values())
    assert ("One mask update" in proc.stdout) == has_masks  # a --skip-masks run has none
    proc = _run("--summarize", str(results / "overhead_masks_head.json"))
    assert proc.returncode == 0, proc.stderr
    assert "One mask update" in proc.stdout and "1000x1000" in proc.stdout
