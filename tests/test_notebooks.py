"""Every notebook in notebooks/ is stored without outputs and runs top to bottom with a
real Jupyter kernel (nbclient) in quick mode (TFPRUNE_QUICK=1, read by the notebook's
one parameters cell)."""

import os
import pathlib

import nbformat
import numpy as np
import pytest

NOTEBOOKS = sorted((pathlib.Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
IDS = [p.name for p in NOTEBOOKS]
SHOW_FIGURES = {"mnist_sweep.ipynb", "vgg16_sweep.ipynb"}  # their plots must show as images


def test_the_sweep_notebooks_are_there():
    assert {"mnist_sweep.ipynb", "vgg16_sweep.ipynb"} <= set(IDS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_is_stored_without_outputs_and_has_one_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
             and (c.outputs or c.execution_count is not None)]
    assert not dirty, (f"{path.name}: cells {dirty} have outputs; run "
                       f"`python notebooks/strip_outputs.py {path.relative_to(path.parents[1])}`")
    quick = [c for c in nb.cells if c.cell_type == "code" and "TFPRUNE_QUICK" in c.source]
    assert len(quick) == 1, f"{path.name}: one parameters cell must read TFPRUNE_QUICK"


def _mnist_dir(tmp_path):
    """The real MNIST when the data directory has it, else a small learnable stand-in
    (the label drawn into the image) so that no test needs the network."""
    real = os.environ.get("TFPRUNE_DATA_DIR")
    if real and (pathlib.Path(real) / "mnist.npz").is_file():
        return real
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 6000).astype(np.uint8)
    x = rng.integers(0, 30, (6000, 28, 28)).astype(np.uint8)
    x[np.arange(6000), 2 * y + 4, :] = 255
    folder = tmp_path / "data"
    folder.mkdir()
    np.savez(folder / "mnist.npz", x_train=x[:5000], y_train=y[:5000], x_test=x[5000:],
             y_test=y[5000:])
    return str(folder)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_runs_in_quick_mode(path, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("TFPRUNE_QUICK", "1")
    monkeypatch.setenv("TFPRUNE_DATA_DIR", _mnist_dir(tmp_path))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    nb = nbformat.read(path, as_version=4)
    work = tmp_path / "run"
    work.mkdir()
    NotebookClient(nb, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(work)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert any(o.output_type == "stream" for o in outputs)
    if path.name in SHOW_FIGURES:
        assert any("image/png" in o.get("data", {}) for o in outputs), "no figure was shown"
