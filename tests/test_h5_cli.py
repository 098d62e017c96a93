"""`tfprune prune-h5` (`tfprune.cli.prune_h5`): options reach `prune_weights_file`;
user errors are one line on stderr naming the file, exit status 2."""

import json
import os

import pytest

from h5_files import (  # noqa: F401  (fixtures)
    H5_WARNING, HIDDEN, assert_pruned, cli, expected, file_bytes, fresh, load, saved, sha256,
)
from tfprune import atomic
from tfprune import cli as tfprune_cli

pytestmark = H5_WARNING


@pytest.mark.slow
def test_cli_subprocess_prunes_and_prints_json(fresh):
    path = fresh("tfkeras-model-h5")
    before = load("tfkeras-model-h5", path)
    want = expected(before, HIDDEN, 0.9, "unit", "global")
    proc = cli(path, "--sparsity", "0.9", "--granularity", "unit", "--scope", "global",
               "--backup", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["granularity"] == "unit" and report["backup_path"] == path + ".orig"
    assert_pruned(load("tfkeras-model-h5", path), want, {})


@pytest.mark.slow
def test_cli_subprocess_bad_value_exits_nonzero_with_one_line(fresh):
    path = fresh("keras3-weights")
    original = file_bytes(path)
    proc = cli(path, "--sparsity", "1.5")
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.startswith("tfprune")]
    assert lines == ["tfprune prune-h5: error: Argument `sparsity` must be in [0, 1). "
                     "Received: sparsity=1.5"]
    assert "Traceback" not in proc.stderr and file_bytes(path) == original


@pytest.mark.parametrize(
    "args,check",
    [
        pytest.param(["--prune-output-layer"], lambda r: "out" in {x.split("/")[-1] for x in r}, id="prune-output"),
        pytest.param(["--keep-output-layer"], lambda r: "out" not in r, id="keep-output"),
        pytest.param(["--include", "^c1$"], lambda r: set(r) == {"c1"}, id="include"),
        pytest.param(["--exclude", "inner", "--dry-run"], lambda r: set(r) == {"d1", "c1"}, id="exclude-dry-run"),
    ],
)
def test_cli_options(fresh, capsys, args, check):
    path = fresh("keras3-archive")
    assert tfprune_cli.main(["prune-h5", path, "--sparsity", "0.5", "--json", *args]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert check({r["layer"] for r in rows})


@pytest.mark.parametrize(
    "args,message",
    [
        pytest.param(["--granularity", "units"], "granularity='units'", id="granularity"),
        pytest.param(["--include", "["], "include='['", id="regex"),
        pytest.param(["--round-to", "0", "--granularity", "unit"], "round_to=0", id="round-to"),
    ],
)
def test_cli_user_errors_return_2_with_message(fresh, capsys, args, message):
    path = fresh("keras3-archive")
    assert tfprune_cli.main(["prune-h5", path, "--sparsity", "0.5", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_cli_missing_file_returns_2(tmp_path, capsys):
    assert tfprune_cli.main(["prune-h5", str(tmp_path / "x.h5"), "--sparsity", "0.5"]) == 2
    assert "x.h5" in capsys.readouterr().err


def test_cli_busy_file_returns_2_with_one_line_naming_it(fresh, capsys):
    path = fresh("keras3-weights")
    digest = sha256(path)
    with atomic.lock(path):
        assert tfprune_cli.main(["prune-h5", path, "--sparsity", "0.5", "--backup"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"path={path!r}" in err and "in use" in err
    assert sha256(path) == digest and not os.path.exists(path + ".orig")
