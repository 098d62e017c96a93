"""Lean train steps: `fit` runs a step without the mask-update conditional on every
step the host knows updates no mask (TensorFlow, graph or XLA, and JAX).

The train step counts steps and, at update steps, recomputes masks inside a
conditional (`tfprune.wrappers.groups.Driver`). Compiled by XLA (TensorFlow with
`jit_compile=True`, JAX) an untaken conditional is not free: its branch's
temporaries enlarge the executable's scratch buffer, allocated at every run; past
glibc's mmap threshold (32 MiB at most) it is a fresh mapping each step, and every
page the step touches faults again (measured: +2,600 page faults and 1.4x the
step time of the seed MLP on JAX).

With built-in schedules (and m:n) the update steps are known on the host, so
`UpdatePruningStep` gives `fit` a `LeanDispatch` as `model.train_function`: on each
call it picks Keras's own compiled step (with the conditional) if the step it
trains may update masks, else a second compiled step traced with the drivers
`lean` (counting only). The host keeps each schedule's step count, read from the
model at each epoch's start (after every callback's `on_train_begin`, so a restored
checkpoint counts) and compared with it after the epoch. The lean step is
compiled on its first use and kept on the model for later `fit` calls.

In a TensorFlow graph without XLA the untaken branch costs no memory, but the
schedule's decision and the conditional are a dozen small ops every step: the
lean step saves 0.15-0.25 ms of a 9.5 ms seed-MLP step there (measured in one
process, interleaved), so it is used too.

Not used (every step runs the full step, as before) on torch (eager: the driver
decides on the host, `tfprune.wrappers.groups.Driver`), with
`steps_per_execution > 1`, `run_eagerly`, a `LossScaleOptimizer` (mixed float16:
it skips steps whose gradients overflow, so the host cannot count them), outside
`fit` (`train_on_batch`, custom loops), or when a schedule is not a built-in one.
"""

import keras
from keras import ops

from tfprune import _compat

__all__ = ["LeanDispatch", "install", "uninstall"]


def _device_step(driver):
    return int(ops.convert_to_numpy(driver.wrappers[0]._state.pruning_step))


class LeanDispatch:
    """`model.train_function` during `fit`: `full` (Keras's step) on steps that may
    update masks, `lean` (the same step traced with the drivers counting only) on
    the others. `steps[i]`: training steps driver i has seen (host copy; None
    until `resync`, and after a step it did not count)."""

    def __init__(self, full, lean, drivers):
        self.full = full
        self.lean = lean
        self.drivers = drivers
        self.steps = None
        self.fit_calls = 0

    def resync(self):
        """Read the step count from the model (`on_epoch_begin`: after every
        callback's `on_train_begin`, so a restored checkpoint counts, and before
        JAX's `fit` takes the variables' values into its own state)."""
        self.steps = [_device_step(d) for d in self.drivers]
        self.fit_calls = 0

    def __call__(self, *args, **kwargs):
        if self.steps is None or not _compat.called_by_fit():
            self.steps = None  # train_on_batch, or no count yet: the full step
            return self.full(*args, **kwargs)
        return self.fit_step(*args, **kwargs)

    def fit_step(self, *args, **kwargs):
        """One training step as `fit` runs it, whoever the caller: `full` if a
        driver's next step may update masks, else `lean`. For loops that drive
        `fit`'s steps themselves (`benchmarks/overhead.py --steps` times steps one
        by one); they must call `resync()` first and train every step through here
        (or `check()` raises)."""
        if self.steps is None:
            raise RuntimeError(
                "tfprune: LeanDispatch.fit_step() before resync(): the host does not "
                "know the step count (call `on_epoch_begin` of UpdatePruningStep, or "
                "`resync()`)."
            )
        nxt = [s + 1 for s in self.steps]
        self.fit_calls += 1
        if any(d.due(s) for d, s in zip(self.drivers, nxt)):
            out = self.full(*args, **kwargs)
        else:
            for d in self.drivers:
                d.lean = True
            try:
                out = self.lean(*args, **kwargs)
            finally:
                for d in self.drivers:
                    d.lean = False
        self.steps = nxt
        return out

    def check(self):
        """Raise if the host step count is not the model's after an epoch of steps
        all trained by `fit` (a lean step could then have skipped a mask update).
        A custom loop's steps are not counted here and need no check: it has no
        lean step."""
        if self.steps is None or not self.fit_calls:
            return
        device = [_device_step(d) for d in self.drivers]
        if device != self.steps:
            raise RuntimeError(
                f"tfprune: the host's step count {self.steps} differs from the model's "
                f"{device}; a mask update may have been skipped. Please report this, "
                "and train with `steps_per_execution=1` and without custom steps in "
                "the middle of `fit`."
            )


def _eligible(model, drivers):
    if keras.backend.backend() not in ("tensorflow", "jax") or not drivers:
        return False
    if getattr(model, "train_function", None) is None or getattr(model, "run_eagerly", False):
        return False
    if getattr(model, "steps_per_execution", 1) != 1:
        return False
    if isinstance(getattr(model, "optimizer", None), keras.optimizers.LossScaleOptimizer):
        return False  # it skips the steps whose gradients overflow: not counted on the host
    return all(d.known_on_host for d in drivers)


def install(model, drivers):
    """Make `model.train_function` a `LeanDispatch` (returned), or leave it and
    return None when lean steps do not apply (see the module doc)."""
    current = getattr(model, "train_function", None)
    if isinstance(current, LeanDispatch):  # an interrupted fit left it
        current = model.train_function = current.full
    if not _eligible(model, drivers):
        return None
    cached = getattr(model, "_tfprune_lean", None)
    if cached is not None and cached[0] is current:
        lean = cached[1]
    else:
        step = model.train_step  # the model's own (a subclass's, or one set on it)

        def lean_train_step(*args, **kwargs):
            return step(*args, **kwargs)

        lean = _compat.new_train_function(model, lean_train_step)
        model._tfprune_lean = (current, lean)
    dispatch = LeanDispatch(current, lean, drivers)
    model.train_function = dispatch
    return dispatch


def uninstall(model, dispatch):
    """Give `model` back Keras's own train function."""
    if dispatch is not None and getattr(model, "train_function", None) is dispatch:
        model.train_function = dispatch.full
