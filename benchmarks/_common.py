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


def one_process_environment(log):
    """Check that Keras 3 (tfprune) and tf_keras (tfmot) share this process, print
    one line saying so, and return the versions for the results JSON.

    The calling script must set `TF_USE_LEGACY_KERAS=1` before importing tfmot.
    """
    import keras
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras
    from tensorflow_model_optimization.python.core.keras.compat import keras as tfmot_keras

    problems = []
    if not keras.__version__.startswith("3."):
        problems.append(f"`import keras` is {keras.__version__}, not Keras 3")
    if not tfmot_keras.__name__.startswith("tf_keras"):
        problems.append(f"tfmot uses {tfmot_keras.__name__}, not tf_keras")
    if problems:
        raise SystemExit(
            "Keras 3 and tf_keras/tfmot cannot share this process: " + "; ".join(problems)
        )
    env = {
        "single_process": True,
        "keras": keras.__version__,
        "tf_keras": tf_keras.__version__,
        "tensorflow": tf.__version__,
        "tfmot": tfmot.__version__,
        "tfmot_keras_module": tfmot_keras.__name__,
        "tfprune": tfprune.__version__,
        "tfprune_source": tfprune_source(),
    }
    log(f"one process: Keras {env['keras']} (tfprune) + tf_keras {env['tf_keras']} "
        f"(tfmot {env['tfmot']}), TF {env['tensorflow']}; tfprune from "
        f"{env['tfprune_source']['path']}")
    return env
