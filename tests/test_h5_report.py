"""`tfprune.h5.report`: the report prints as a table and round-trips through JSON."""

import json

import pytest

from h5_files import H5_WARNING, fresh, saved  # noqa: F401  (fixtures)
from tfprune import h5 as h5prune

pytestmark = H5_WARNING


def test_report_is_printable_and_json_able(fresh):
    report = h5prune.prune_weights_file(fresh("keras3-weights"), 0.5)
    d = json.loads(json.dumps(report.to_dict()))
    assert d["format"] == "keras3-weights-h5" and d["granularity"] == "weight"
    assert {r["layer"] for r in d["rows"]} == {"d1", "inner/d_in", "inner/d_in2", "c1"}
    row = d["rows"][0]
    assert set(row) >= {"layer", "weight", "shape", "total", "zeros_before", "zeros_after",
                        "sparsity_before", "sparsity_after"}
    assert row["sparsity_after"] == pytest.approx(row["zeros_after"] / row["total"])
    assert d["kept"] == [{"layer": "out", "reason": "output layer (skip_output_layer=True)"}]
    text = str(report)
    assert "inner/d_in2" in text and "sparsity after" in text and "kept out" in text
    assert report.zeros_after == sum(r["zeros_after"] for r in d["rows"])


def test_empty_report_prints_without_a_total_row():
    report = h5prune.PruneReport("m.h5", "keras2-weights-h5", 0.5, "weight", "layer", False)
    assert str(report).splitlines()[1:] == [
        "layer  weight  shape  total  zeros before  zeros after  sparsity before  sparsity after"]
