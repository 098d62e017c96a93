"""`tfprune.h5.plan`: which layers are pruned (include / exclude / output layer,
round_to) and a clear error naming the file when nothing is left."""

import os

import numpy as np
import pytest

from h5_files import (  # noqa: F401  (fixtures)
    H5_WARNING, HIDDEN, PRUNABLE, assert_pruned, expected, fresh, load, saved, sha256, temps,
    untouched,
)
from tfprune import h5 as h5prune

pytestmark = H5_WARNING


@pytest.mark.parametrize("fmt", ["keras3-archive", "keras3-weights", "tfkeras-model-h5",
                                 "tfkeras-weights-h5"])
def test_prune_output_layer_when_asked(fresh, fmt):
    path = fresh(fmt)
    before = load(fmt, path)
    want = expected(before, PRUNABLE, 0.5, "weight", "layer")
    report = h5prune.prune_weights_file(path, 0.5, skip_output_layer=False)
    assert_pruned(load(fmt, path), want, {})
    assert report.kept == []


@pytest.mark.parametrize(
    "include,exclude,pruned",
    [
        pytest.param("^d1$", None, ["d1"], id="include-one"),
        pytest.param("d_in", None, ["d_in", "d_in2"], id="include-nested-name"),
        pytest.param(None, "^inner/", ["d1", "c1"], id="exclude-nested-model"),
        pytest.param("d", "d_in2", ["d1", "d_in"], id="include-and-exclude"),
    ],
)
def test_include_exclude_select_layers_by_name(fresh, include, exclude, pruned):
    fmt = "keras3-archive"
    path = fresh(fmt)
    before = load(fmt, path)
    want = expected(before, pruned, 0.5, "weight", "layer")
    unchanged = untouched(before, [n for n in PRUNABLE if n not in pruned])
    h5prune.prune_weights_file(path, 0.5, include=include, exclude=exclude)
    assert_pruned(load(fmt, path), want, unchanged)


def test_round_to_keeps_unit_counts_multiple(fresh):
    path = fresh("keras3-weights")
    before = load("keras3-weights", path)
    want = expected(before, HIDDEN, 0.6, "unit", "layer", round_to=4)
    h5prune.prune_weights_file(path, 0.6, granularity="unit", round_to=4)
    assert_pruned(load("keras3-weights", path), want, {})
    kept_units = np.count_nonzero(np.any(want["d1"][0] != 0, axis=0))
    assert kept_units % 4 == 0


NOTHING = [
    pytest.param(dict(include="zzz"), r"matched no prunable layer. Received: include='zzz'",
                 id="include-matches-nothing"),
    pytest.param(dict(exclude="."), r"left nothing to prune. Received: exclude='\.'",
                 id="exclude-everything"),
    pytest.param(dict(include="^out$"), r"the only prunable layer is the output layer",
                 id="only-the-output-layer"),
]


@pytest.mark.parametrize("dry_run", [False, True], ids=["write", "dry-run"])
@pytest.mark.parametrize("kwargs,message", NOTHING)
def test_nothing_to_prune_names_the_file_and_the_candidates(fresh, kwargs, message, dry_run):
    path = fresh("keras3-archive")
    digest = sha256(path)
    with pytest.raises(ValueError, match=message) as e:
        h5prune.prune_weights_file(path, 0.5, dry_run=dry_run, **kwargs)
    assert f"prunable layers of {path!r}: d1, inner/d_in, inner/d_in2, c1, out" in str(e.value)
    assert sha256(path) == digest and temps(os.path.dirname(path)) == []
