"""The runnable examples in the docstrings run and print what they say."""

import doctest
import importlib

import pytest

MODULES = ["tfprune.schedules", "tfprune.wrappers", "tfprune.prune", "tfprune.callbacks.pruning_step", "tfprune.callbacks.summaries",
           "tfprune.report", "tfprune.datasets", "tfprune.h5"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    import tfprune

    result = doctest.testmod(module, extraglobs={"tfprune": tfprune}, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
