"""The runnable examples in the docstrings run and print what they say, and every
module listed has at least one that really runs (a `+SKIP` is not an example)."""

import doctest
import importlib

import pytest

NO_RUNNABLE_EXAMPLE_YET = pytest.mark.xfail(
    strict=True, reason="every example is `+SKIP` (it needs data this machine may lack): add "
    "one that runs, then remove this mark")

MODULES = [
    "tfprune.schedules", "tfprune.wrappers.layer", "tfprune.masks.granularity", "tfprune.prune", "tfprune.callbacks.pruning_step",
    "tfprune.callbacks.summaries", "tfprune.report",
    "tfprune.datasets", "tfprune.oneshot", "tfprune.sweep.result", "tfprune.sweep.measure",
    "tfprune.sweep.models",
    "tfprune.h5", "tfprune.h5.options", "tfprune.h5.config", "tfprune.h5.formats",
    "tfprune.h5.plan", "tfprune.h5.select", "tfprune.h5.stream", "tfprune.h5.rewrite",
    "tfprune.h5.report", "tfprune.atomic", "tfprune.graph", "tfprune.shrink", "tfprune.modelfiles",
]


def run_examples(name):
    """`doctest.testmod` of module `name` (with `tfprune` imported)."""
    module = importlib.import_module(name)
    import tfprune

    return doctest.testmod(module, extraglobs={"tfprune": tfprune}, optionflags=doctest.ELLIPSIS)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = run_examples(name)
    assert result.failed == 0
    assert result.attempted > 0, f"{name} has no runnable example (all skipped or none)"


def test_a_module_whose_examples_are_all_skipped_fails(tmp_path, monkeypatch):
    (tmp_path / "only_skipped.py").write_text('"""\n>>> 1 / 0  # doctest: +SKIP\n"""\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(AssertionError, match="only_skipped has no runnable example"):
        test_docstring_examples_run("only_skipped")
