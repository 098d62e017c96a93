"""`tfprune.h5.prune_weights_file`, end to end: every format and mode prunes what
training would and the file still loads. (Stages: tests/test_h5_<stage>.py.)"""

import os

import numpy as np
import pytest

from h5_files import (  # noqa: F401  (fixtures)
    CASES, FORMATS, H5_WARNING, HIDDEN, assert_pruned, expected, file_bytes, fresh, load,
    predicts, saved, untouched,
)
from tfprune import h5 as h5prune
from tfprune import masks

pytestmark = H5_WARNING


@pytest.mark.parametrize("granularity,scope", CASES)
@pytest.mark.parametrize("fmt", FORMATS)
def test_prune_matches_select_np_and_loads(fresh, fmt, granularity, scope):
    path = fresh(fmt)
    before = load(fmt, path)
    want = expected(before, HIDDEN, 0.6, granularity, scope)

    report = h5prune.prune_weights_file(path, 0.6, granularity=granularity, scope=scope)

    after = load(fmt, path)
    assert_pruned(after, want, untouched(before, ["out"]))
    predicts(after)
    kernels = {r.layer.split("/")[-1]: r for r in report.rows if r.weight.endswith("kernel")}
    assert sorted(kernels) == sorted(HIDDEN)
    for name, row in kernels.items():
        assert row.zeros_after == int(np.sum(want[name][0] == 0))
        assert row.zeros_before == 0
        if scope == "layer":
            n_items = row.total if granularity == "weight" else row.shape[-1]
            pruned_items = n_items - masks.keep_count(n_items, 0.6)
            assert row.zeros_after == pruned_items * row.total // n_items
    if granularity == "unit":
        biases = [r for r in report.rows if r.weight == "bias"]
        assert len(biases) == 4 and all(r.zeros_after > 0 for r in biases)
    assert report.kept == [("out", "output layer (skip_output_layer=True)")]
    assert not report.dry_run and report.backup_path is None


@pytest.mark.parametrize("fmt", FORMATS)
def test_dry_run_writes_nothing_and_reports_the_same(fresh, fmt):
    path = fresh(fmt)
    original = file_bytes(path)
    mtime = os.stat(path).st_mtime_ns
    dry = h5prune.prune_weights_file(path, 0.8, granularity="unit", dry_run=True)
    assert file_bytes(path) == original and os.stat(path).st_mtime_ns == mtime
    assert os.listdir(os.path.dirname(path)) == [os.path.basename(path)]
    real = h5prune.prune_weights_file(path, 0.8, granularity="unit")
    assert [r.to_dict() for r in dry.rows] == [r.to_dict() for r in real.rows]
    assert dry.dry_run and not real.dry_run


def test_public_api_is_the_function_and_the_report():
    assert sorted(h5prune.__all__) == ["LayerRow", "PruneReport", "prune_weights_file"]
    assert all(hasattr(h5prune, name) for name in h5prune.__all__)
