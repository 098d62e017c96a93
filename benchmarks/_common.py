"""Helpers shared by the benchmark scripts (run as `python benchmarks/NAME.py`)."""

import pathlib

import tfprune


def tfprune_source():
    """Which tfprune was measured: its path, a hash of its .py sources, the git commit
    of this repository and whether the measured sources equal that commit's."""
    import hashlib
    import subprocess

    def digest(files):  # {relative posix path: bytes}
        h = hashlib.sha256()
        for name in sorted(files):
            h.update(name.encode() + b"\0" + files[name])
        return h.hexdigest()[:16]

    pkg = pathlib.Path(tfprune.__file__).resolve().parent
    info = {"path": str(pkg), "sha256": digest(
        {f.relative_to(pkg).as_posix(): f.read_bytes() for f in pkg.rglob("*.py")})}
    repo = pathlib.Path(__file__).resolve().parent.parent

    def git(*cmd):
        return subprocess.run(["git", "-C", str(repo), *cmd], capture_output=True,
                              check=True).stdout

    try:
        commit = git("rev-parse", "HEAD").decode().strip()
        names = [n for n in git("ls-tree", "-r", "--name-only", commit, "tfprune")
                 .decode().split("\n") if n.endswith(".py")]
        committed = {n[len("tfprune/"):]: git("show", f"{commit}:{n}") for n in names}
        info["repo_commit"] = commit
        info["equals_repo_commit"] = digest(committed) == info["sha256"]
    except (OSError, subprocess.CalledProcessError):
        pass
    return info
