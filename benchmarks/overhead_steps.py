"""Per-step interleaved timing for `overhead.py --steps` (run inside `overhead_worker.py`).

The epoch timing pairs whole epochs, a few seconds apart: on a small shared machine
a burst of load from elsewhere hits one epoch of a pair and not the other, and one
run's median moves by +-4%. Here the plain and the pruned model of one compile mode
train alternately, one step each (the order swapped every step), so a burst hits
both; each model is driven the way `fit` drives it:

- its callbacks' `on_train_begin` / `on_epoch_begin`, then per step
  `on_train_batch_begin`, Keras's own `model.train_function` (for a pruned model
  the `LeanDispatch` that `UpdatePruningStep` installs, through `fit_step`: the
  lean step, or the full step on the steps that update masks), `on_train_batch_end`;
  at the end `on_epoch_end` (which checks the host's step count against the
  model's) and `on_train_end`;
- TensorFlow and tf_keras/tfmot: `train_function(iterator)` over the same cached
  `tf.data` pipeline as the epochs; JAX: `train_function(state, iterator)` with the
  state threaded through (as `fit` does; written back to the model at the end);
  torch: `train_function([batch])` in training mode;
- each step is timed to its completion (TensorFlow: the call returns after the
  step ran; JAX: its state is ready; torch: eager), so unlike `fit` the host's
  Python between steps does not overlap the previous step on JAX: a conservative
  measure of the Python that pruning adds.

Update steps come at the real rate: after the warm-up (one `fit` epoch and one
untimed block) the steps are timed in blocks of `frequency` steps, each holding
exactly one mask update of the pruned model. Per block the sum of each model's
step times is the time of `frequency` steps of `fit`; the verdict is the median
of the per-block ratios pruned/plain (with a bootstrap 95% interval), beside the
ratio of the totals and the split between lean steps and update steps.
"""

import itertools
import statistics
import time

import numpy as np


def log(msg):
    print(msg, flush=True)


class Stepper:
    """Drives one `Run` (see `overhead_worker.py`) step by step as `fit` does."""

    def __init__(self, run, backend, data):
        self.run = run
        self.backend = "tf_keras" if run.keras2 else backend
        self.data = data
        self.times = []
        self.due = []  # indices (into times) of the steps that updated masks

    def begin(self):
        run = self.run
        if run.keras2:
            import tf_keras

            self.callbacks = tf_keras.callbacks.CallbackList(run.callbacks, model=run.model)
            run.model.make_train_function()
        else:
            import keras

            self.callbacks = keras.callbacks.CallbackList(run.callbacks, model=run.model)
        self.callbacks.on_train_begin()
        self.callbacks.on_epoch_begin(0)
        fn = run.model.train_function  # a pruned model's: tfprune's LeanDispatch (or not)
        self.fn = getattr(fn, "fit_step", fn)
        self.batch = 0
        self.drivers, self.steps = self._drivers()
        if self.backend in ("tensorflow", "tf_keras"):
            self.iterator = iter(self.data)
        elif self.backend == "jax":
            self.iterator = itertools.cycle(self.data)
            self.state = run.model._get_jax_state(
                trainable_variables=True, non_trainable_variables=True,
                optimizer_variables=True, metrics_variables=True, purge_model_variables=False)
        else:
            run.model.train()
            self.iterator = itertools.cycle(self.data)

    def _drivers(self):
        """tfprune's schedule drivers (after `on_train_begin` linked them) and the
        step count of each, to mark the steps that update masks (on the host)."""
        if self.run.keras2:
            return [], []
        import tfprune
        from tfprune.callbacks import lean

        drivers = {}
        for w in tfprune.wrappers.collect_wrappers(self.run.model):
            for t in w.targets:
                d = getattr(t.variable.constraint, "drive", None)
                if d is not None:
                    drivers[id(d)] = d
        drivers = list(drivers.values())
        return drivers, [lean._device_step(d) for d in drivers]

    def step(self, record=True):
        self.steps = [s + 1 for s in self.steps]
        due = any(d.due(s) for d, s in zip(self.drivers, self.steps))
        self.callbacks.on_train_batch_begin(self.batch)
        t0 = time.perf_counter()
        if self.backend == "jax":
            logs, self.state = self.fn(self.state, self.iterator)
            self.state[0][0].block_until_ready()
        elif self.backend == "torch":
            logs = self.fn([next(self.iterator)])
        else:
            logs = self.fn(self.iterator)
        elapsed = time.perf_counter() - t0
        self.callbacks.on_train_batch_end(self.batch, logs)
        self.batch += 1
        if record:
            if due:
                self.due.append(len(self.times))
            self.times.append(elapsed)
        return elapsed

    def end(self):
        model = self.run.model
        if self.backend == "jax":
            tv, ntv, ov, mv = self.state
            model._jax_state = {"trainable_variables": tv, "non_trainable_variables": ntv,
                                "optimizer_variables": ov, "metrics_variables": mv}
            model._jax_state_synced = False
            model.jax_state_sync()
        self.callbacks.on_epoch_end(0)
        self.callbacks.on_train_end()


def step_data(backend, x, y, batch_size, tf_data):
    """What each backend's train function takes per step: the `tf.data` pipeline
    (repeated) on TensorFlow, else a list of `(x, y)` batches as backend tensors."""
    if backend == "tensorflow":
        return tf_data.repeat()
    from keras import ops

    n = len(x) // batch_size
    return [(ops.convert_to_tensor(x[i * batch_size:(i + 1) * batch_size]),
             ops.convert_to_tensor(y[i * batch_size:(i + 1) * batch_size]))
            for i in range(n)]


def interleave(steppers, blocks, frequency, tag):
    """Warm-up block, then `blocks` timed blocks of `frequency` steps, the variants
    of one mode alternating one step each (order rotated every step)."""
    for s in steppers:
        s.begin()
    for i in range(frequency):  # untimed: first calls outside fit, the first update
        for s in steppers[i % len(steppers):] + steppers[:i % len(steppers)]:
            s.step(record=False)
    for b in range(blocks):
        for j in range(frequency):
            i = b * frequency + j
            for s in steppers[i % len(steppers):] + steppers[:i % len(steppers)]:
                s.step()
        if (b + 1) % max(1, blocks // 5) == 0 or b + 1 == blocks:
            lo = b * frequency
            log(f"{tag}   block {b + 1}/{blocks}: " + "  ".join(
                f"{s.run.variant} {1000 * sum(s.times[lo:]):.0f} ms" for s in steppers))
    for s in steppers:
        s.end()


def summary(stepper, plain, frequency):
    """Block sums and step statistics of one variant; `plain`: the plain model's
    `Stepper` of the same mode (its steps ran beside these, one for one)."""
    t = stepper.times
    due = set(stepper.due)
    lean = [v for i, v in enumerate(t) if i not in due]
    out = {
        "block_s": [sum(t[i:i + frequency]) for i in range(0, len(t), frequency)],
        "total_s": sum(t),
        "steps": len(t),
        "median_step_s": statistics.median(t),
        "due_steps": len(due),
        "update_step_s": [t[i] for i in sorted(due)],
        "other_step_s_median": statistics.median(lean),
    }
    if stepper is not plain:
        out["other_steps_median_paired_ratio"] = statistics.median(
            [v / plain.times[i] for i, v in enumerate(t) if i not in due])
    return out


def bench_steps(backend, cfg, make_runs, final_state, x, y, weights, fit_data):
    """`{mode: {variant: summary}}` and the set-up, for `overhead_worker.py`
    (which passes its `make_runs`, `final_state` and what its `inputs` returns:
    `fit_data` is `fit`'s `(x, y, kwargs)`, a `tf.data` pipeline first on
    TensorFlow)."""
    frequency = cfg["frequency"]
    blocks = cfg["step_blocks"]
    batch = cfg["batch_size"]
    warm_steps = len(x) // batch
    total = warm_steps + frequency * (blocks + 1)
    end_step = -(-total // frequency) * frequency
    data = step_data(backend, x, y, batch, fit_data[0])
    out = {"frequency": frequency, "blocks": blocks, "end_step": end_step,
           "warmup_fit_steps": warm_steps, "modes": [], "variants": {}, "results": {},
           "final_state": {}}
    for group in make_runs(backend, weights, end_step, frequency, cfg["final_sparsity"],
                           cfg.get("breakdown", False), cfg.get("modes")):
        mode = group[0].mode
        tag = f"[{backend}] steps {mode}:"
        t0 = time.perf_counter()
        for r in group:  # compiles Keras's step (and the lean one) inside fit
            r.epoch(fit_data)
        log(f"{tag} warm-up fit epoch of each variant {time.perf_counter() - t0:.1f} s; "
            f"{blocks} blocks of {frequency} steps, one step of each variant in turn")
        steppers = [Stepper(r, backend, data) for r in group]
        interleave(steppers, blocks, frequency, tag)
        out["modes"].append(mode)
        out["variants"][mode] = [r.variant for r in group]
        out["results"][mode] = {s.run.variant: summary(s, steppers[0], frequency)
                                for s in steppers}
        for r in group:
            if r.variant in ("tfprune", "tfmot"):
                out["final_state"][f"{mode}:{r.variant}"] = final_state(r)
    return out


def bootstrap_median_ci(values, seed=0, draws=2000):
    """95% percentile bootstrap interval of the median (NumPy, fixed seed)."""
    v = np.asarray(values, float)
    rng = np.random.default_rng(seed)
    meds = np.median(v[rng.integers(0, len(v), (draws, len(v)))], axis=1)
    return float(np.percentile(meds, 2.5)), float(np.percentile(meds, 97.5))
