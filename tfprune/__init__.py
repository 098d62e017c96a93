"""tfprune: magnitude pruning for Keras 3 on TensorFlow.

How importing works
-------------------
`import tfprune` is eager: it imports TensorFlow and Keras and every public
name below, which registers tfprune's Keras serializable objects (the pruning
wrapper, the schedules, ...) under the "tfprune" package. So a pruned model saved
as `.keras` loads right after the import, with no custom-object scope:

    import keras, tfprune
    model = keras.models.load_model("pruned.keras")

The one exception is the command line. TensorFlow takes seconds to import, and
`tfprune --help`, `tfprune --version` and argument errors must answer in well
under a second. When this package is imported *by one of the two command-line
entry points* -- the `tfprune` console script (pip's wrapper, whose source is
`from tfprune.cli import main`) or `python -m tfprune` / `python -m tfprune.cli`
while Python locates the module to run -- nothing heavy is imported: the public
names are resolved on first access (PEP 562 module `__getattr__`), and the first
access loads them all, so the package then looks exactly as after an eager import.
The commands (`tfprune.cli.<command>.run`) import TensorFlow only once their
arguments have been checked. Every other import -- a script, a notebook, pytest, a
module of yours run with `python -m` -- is eager. `_started_by_the_command_line()`
is the whole test.
"""

import importlib
import sys

__version__ = "0.1.0"

# Public name -> (module, attribute in it, or None for the module itself).
# Adding a name here makes `import tfprune` import it.
_PUBLIC = {
    "callbacks": ("tfprune.callbacks", None),
    "datasets": ("tfprune.datasets", None),
    "flops": ("tfprune.flops", None),
    "graph": ("tfprune.graph", None),
    "h5": ("tfprune.h5", None),
    "masks": ("tfprune.masks", None),
    "prune_low_magnitude": ("tfprune.prune", "prune_low_magnitude"),
    "strip_pruning": ("tfprune.prune", "strip_pruning"),
    "collect_prunable_layers": ("tfprune.prune", "collect_prunable_layers"),
    "PruningPolicy": ("tfprune.policy", "PruningPolicy"),
    "PruneForLatencyOnXNNPack": ("tfprune.policy", "PruneForLatencyOnXNNPack"),
    "check_m_by_n": ("tfprune.masks", "check_m_by_n"),
    "PrunableLayer": ("tfprune.registry", "PrunableLayer"),
    "sparsity_report": ("tfprune.report", "sparsity_report"),
    "ShrinkReport": ("tfprune.shrink", "ShrinkReport"),
    "shrink": ("tfprune.shrink", "shrink"),
    "ConstantSparsity": ("tfprune.schedules", "ConstantSparsity"),
    "PolynomialDecay": ("tfprune.schedules", "PolynomialDecay"),
    "PruningSchedule": ("tfprune.schedules", "PruningSchedule"),
    "PruneLowMagnitude": ("tfprune.wrappers", "PruneLowMagnitude"),
    # Sparsity sweeps (issue 7): one-shot masks, sweeps / sensitivity, their plots.
    "oneshot": ("tfprune.oneshot", None),
    "sweep": ("tfprune.sweep", None),
    "plot": ("tfprune.plot", None),
    # tfmot-shaped namespace: `import tfprune as tfmot; tfmot.sparsity.keras.X`.
    "sparsity": ("tfprune.sparsity", None),
    "export": ("tfprune.export", None),
}

__all__ = sorted(_PUBLIC)


def _started_by_the_command_line():
    """True while the `tfprune` console script or `python -m tfprune[.cli]` starts.

    - `python -m X`: while X is being located, `sys.argv[0]` is "-m", and
      `sys.orig_argv` holds the interpreter's real command line, with X after "-m".
    - the console script: `__main__` is pip's wrapper file, which imports
      `from tfprune.cli import main`.
    """
    if sys.argv and sys.argv[0] == "-m":
        args = list(getattr(sys, "orig_argv", ()))
        for i, arg in enumerate(args[1:], 1):
            if arg == "-m" and i + 1 < len(args):
                return args[i + 1] in ("tfprune", "tfprune.cli", "tfprune.__main__")
            if arg.startswith("-m") and len(arg) > 2:
                return arg[2:] in ("tfprune", "tfprune.cli", "tfprune.__main__")
        return False
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not path or getattr(main, "__spec__", None) is not None:
        return False
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            head = f.read(4096)
    except OSError:
        return False
    return "from tfprune.cli import main" in head


_resolved = set()
_loading = False


def _resolve(name):
    # Set after the import: importing `tfprune.shrink` binds the *module* to the
    # package attribute `shrink`; the public name is the function.
    module_name, attribute = _PUBLIC[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    _resolved.add(name)
    return value



def _load_all():
    global _loading
    if _loading:  # a module being loaded asked for a sibling: `from tfprune import x`
        return
    _loading = True
    try:
        for name in _PUBLIC:
            if name not in _resolved:
                _resolve(name)
    finally:
        _loading = False


_depth = 0  # nested __getattr__ calls: a module being imported asked for a sibling


def __getattr__(name):
    global _depth
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    _depth += 1
    try:
        value = _resolve(name)
    finally:
        _depth -= 1
    if _depth == 0:  # load the rest only once the first name's imports are done
        _load_all()
    return value


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))


_LAZY = _started_by_the_command_line()
if not _LAZY:
    _load_all()
