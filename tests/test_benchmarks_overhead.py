"""`benchmarks/overhead.py`: its argument checks and the analysis of the workers'
JSON (paired ratios, verdicts, tables). The timing itself is a benchmark, run on
purpose (`overhead.py`, `--quick` for a smoke run), never here."""

import importlib.util
import json
import pathlib
import subprocess
import sys

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
