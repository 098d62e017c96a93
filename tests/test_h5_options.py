"""`tfprune.h5` arguments: every bad one is refused in Keras's form, naming the value,
before the file is opened (the file byte for byte untouched)."""

import dataclasses
import os

import pytest

from h5_files import H5_WARNING, fresh, saved, sha256, temps  # noqa: F401  (fixtures)
from tfprune import h5 as h5prune
from tfprune.h5 import options

pytestmark = H5_WARNING

BAD = [
    pytest.param(dict(sparsity=1.5), ValueError, r"sparsity=1\.5", id="sparsity-too-big"),
    pytest.param(dict(sparsity=-0.1), ValueError, r"sparsity=-0\.1", id="sparsity-negative"),
    pytest.param(dict(sparsity=1.0), ValueError, r"sparsity=1\.0", id="sparsity-one"),
    pytest.param(dict(sparsity="half"), TypeError, r"sparsity='half'", id="sparsity-not-number"),
    pytest.param(dict(granularity="units"), ValueError, r"granularity='units'", id="granularity"),
    pytest.param(dict(scope="net"), ValueError, r"scope='net'", id="scope"),
    pytest.param(dict(round_to=0), ValueError, r"round_to=0", id="round-to-zero"),
    pytest.param(dict(round_to=2.5), TypeError, r"round_to=2\.5", id="round-to-float"),
    pytest.param(dict(include="("), ValueError, r"include='\('", id="bad-regex"),
    pytest.param(dict(exclude=5), TypeError, r"exclude=5", id="regex-not-a-string"),
]


@pytest.mark.parametrize("kwargs,exc,message", BAD)
def test_bad_argument_raises_naming_the_value_and_leaves_file_untouched(fresh, kwargs, exc,
                                                                        message):
    path = fresh("tfkeras-weights-h5")
    digest = sha256(path)
    with pytest.raises(exc, match=message):
        h5prune.prune_weights_file(path, **dict(dict(sparsity=0.5), **kwargs))
    assert sha256(path) == digest and temps(os.path.dirname(path)) == []


def test_path_of_wrong_type_is_a_type_error():
    with pytest.raises(TypeError, match=r"Argument `path` must be a file path.*path=3"):
        h5prune.prune_weights_file(3, 0.5)


def test_missing_path_raises_file_not_found(tmp_path):
    missing = str(tmp_path / "nope.h5")
    with pytest.raises(FileNotFoundError, match=r"path='.*nope\.h5'"):
        h5prune.prune_weights_file(missing, 0.5)
    assert os.listdir(tmp_path) == []


def test_directory_path_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"must be a file. Received: path='.*'"):
        h5prune.prune_weights_file(str(tmp_path), 0.5)
    assert os.listdir(tmp_path) == []


def test_options_are_checked_and_compiled_once():
    opts = options.check_options(0.25, "unit", "global", 8, include="^a", exclude="b$")
    assert (opts.sparsity, opts.granularity, opts.scope, opts.round_to) == (0.25, "unit", "global", 8)
    assert opts.include.search("abc") and opts.exclude.search("ab")
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.sparsity = 0.9  # frozen: one set of checked options per run
