"""The package that is tested is the package that ships.

`make test` (what CI runs) installs the built wheel in its own virtualenv and runs
this suite from a copy of the project without `tfprune/`, with
`TFPRUNE_TEST_INSTALLED=1` and `TFPRUNE_SOURCE_DIR` pointing at the checkout.
"""

import os
import pathlib
import re
import subprocess
import sys
import zipfile

import pytest

import tfprune

INSTALLED = os.environ.get("TFPRUNE_TEST_INSTALLED") == "1"
HERE = pathlib.Path(__file__).resolve().parents[1]
SOURCE = pathlib.Path(os.environ.get("TFPRUNE_SOURCE_DIR") or HERE)


def _package_files(root):
    """Every file of the package under `root` (relative paths), bytecode excluded."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")}


def _tracked_package_files():
    """The package's files as the checkout has them (git's list where there is one:
    untracked scratch files are not part of the package)."""
    try:
        out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "tfprune"],
                             cwd=SOURCE, capture_output=True, text=True, timeout=60, check=True)
    except (OSError, subprocess.CalledProcessError):
        return _package_files(SOURCE / "tfprune")
    return {f[len("tfprune/"):] for f in out.stdout.split()
            if (SOURCE / f).is_file() and "__pycache__" not in f}


@pytest.mark.skipif(not INSTALLED, reason="only under `make test` (the installed wheel)")
def test_the_suite_imports_the_installed_wheel_not_the_checkout():
    package = pathlib.Path(tfprune.__file__).resolve().parent
    assert "site-packages" in package.parts, package
    assert package != (SOURCE / "tfprune").resolve()
    assert not (HERE / "tfprune").exists(), "the test tree must not hold the package"


@pytest.mark.skipif(not INSTALLED, reason="only under `make test` (the installed wheel)")
def test_the_installed_package_holds_every_file_of_the_source_package():
    installed = _package_files(pathlib.Path(tfprune.__file__).resolve().parent)
    missing = sorted(_tracked_package_files() - installed)
    assert not missing, f"files of tfprune/ missing from the installed wheel: {missing[:10]}"


@pytest.mark.slow
@pytest.mark.skipif(not (SOURCE / "setup.cfg").exists(), reason="needs the source tree")
def test_a_wheel_built_from_the_tree_holds_every_package_file_and_no_stale_one(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path), str(SOURCE)],
        capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {out.stderr[-500:]}")
    (wheel,) = tmp_path.glob("tfprune-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {n[len("tfprune/"):] for n in names if n.startswith("tfprune/")}
    source = _tracked_package_files()
    assert not sorted(source - shipped), sorted(source - shipped)[:10]
    assert not sorted(shipped - source), f"stale files shipped: {sorted(shipped - source)[:10]}"
    assert not [n for n in shipped if n.endswith((".pyc", ".pyo")) or "__pycache__" in n]
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "tfprune = tfprune.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


@pytest.mark.skipif(not (SOURCE / "tfprune").is_dir(), reason="needs the source tree")
def test_readme_layout_names_every_module_and_package():
    text = (HERE / "README.md").read_text()
    layout = text[text.index("## Layout"):]
    root = SOURCE / "tfprune"
    entries = [p.name + ("/" if p.is_dir() else "") for p in root.iterdir()
               if (p.suffix == ".py" or (p / "__init__.py").exists())]
    assert entries
    missing = sorted(e for e in entries if f"  {e}" not in layout)
    assert not missing, f"README layout lacks {missing}"
    listed = re.findall(r"^  (\w+(?:\.py|/))", layout, re.M)
    gone = sorted(e for e in listed if e not in entries)
    assert not gone, f"README layout lists what the tree lacks: {gone}"
