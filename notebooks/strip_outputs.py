#!/usr/bin/env python
"""Strip outputs and execution counts from notebooks, in place (commit them stripped).

    python notebooks/strip_outputs.py notebooks/*.ipynb

`tests/test_notebooks.py` fails on a notebook that still has outputs.
"""

import sys

import nbformat


def strip(path):
    nb = nbformat.read(path, as_version=4)
    changed = False
    for cell in nb.cells:
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None):
            cell.outputs, cell.execution_count, changed = [], None, True
        if "execution" in cell.metadata:
            del cell.metadata["execution"]
            changed = True
    if changed:
        nbformat.write(nb, path)
    return changed


if __name__ == "__main__":
    for name in sys.argv[1:]:
        if strip(name):
            print(f"stripped {name}")
