"""Pruning schedules: at which training steps masks are updated, and to what sparsity.

The formulas are kept as plain functions (`should_update`, `polynomial_decay_sparsity`)
so tests can compare them with the closed forms; the schedule classes only hold
validated arguments and serialize to flat configs.

Semantics are exactly tensorflow-model-optimization's, so migrating users get the
same masks at the same steps:

- training steps count from 1 (tfmot's wrapper increments its step before asking
  the schedule), and a mask update happens at `step` when
  `begin_step <= step <= end_step` (or `end_step < 0`) and
  `(step - begin_step) % frequency == 0`;
- `PolynomialDecay`: `p = clip((step - begin_step) / (end_step - begin_step), 0, 1)`,
  `sparsity = final + (initial - final) * (1 - p) ** power`.

One deliberate difference: with `begin_step == end_step` tfmot divides by zero and
returns NaN; here `p = 1` from `begin_step` on, so the final sparsity is used.

Sparsity is computed in float64 so that a schedule value such as 0.9 is the same
number the h5 post-processor and `masks.keep_count` see. In training, the
built-in schedules go further: their sparsity at each update step is computed
here in Python (`update_sparsities`) and the keep counts from it, so the counts are
exact integers on every backend (JAX has no float64 by default); `decide` gives the
train step `(should_update, counts)`. A schedule written tfmot's way (a subclass
overriding `__call__(step) -> (should_prune, sparsity)`) is asked at every step.

Schedules serialize to flat configs; `deserialize` (and `from_config`) also read
tfmot's nested form `{"class_name": "PolynomialDecay", "config": {...}}`.
"""

import math
import warnings

import keras
import numpy as np
from keras import ops

from tfprune.masks import counts as _counts
from tfprune.masks import policy as _policy

__all__ = [
    "PruningSchedule",
    "ConstantSparsity",
    "PolynomialDecay",
    "should_update",
    "polynomial_decay_sparsity",
    "decide",
    "deserialize",
    "check_schedule",
]

# Update steps whose sparsities `decide` tabulates (beyond: computed in the step).
MAX_TABLE = 1 << 14


def should_update(step, begin_step, end_step, frequency):
    """Whether masks are updated at `step` (a tensor or int); returns a bool tensor.

    `begin_step <= step and (step <= end_step or end_step < 0)
    and (step - begin_step) % frequency == 0`.
    """
    step = ops.cast(step, "int32")
    in_range = step >= begin_step
    if end_step >= 0:
        in_range = ops.logical_and(in_range, step <= end_step)
    on_turn = ops.equal(ops.mod(step - begin_step, frequency), 0)
    return ops.logical_and(in_range, on_turn)


def update_step_known(schedule, step):
    """Whether the built-in `schedule` updates masks at `step` (a Python int), as
    `decide` would decide it in the train step; None for a schedule of another
    class (only its own `__call__` knows)."""
    if type(schedule) not in _BUILT_IN.values():
        return None
    begin, end = schedule.begin_step, schedule.end_step
    return begin <= step and (end < 0 or step <= end) and (step - begin) % schedule.frequency == 0


def polynomial_decay_sparsity(
    step, initial_sparsity, final_sparsity, begin_step, end_step, power
):
    """Sparsity of the polynomial decay at `step`, as a float64 tensor.

    `p = clip((step - begin_step) / (end_step - begin_step), 0, 1)`;
    `sparsity = final + (initial - final) * (1 - p) ** power`.
    With `begin_step == end_step`, `p = 1` for `step >= begin_step`, else 0.
    """
    step = ops.cast(step, "float64")
    if end_step == begin_step:
        p = ops.cast(step >= begin_step, "float64")
    else:
        p = ops.clip((step - begin_step) / float(end_step - begin_step), 0.0, 1.0)
    return final_sparsity + (initial_sparsity - final_sparsity) * ops.power(
        1.0 - p, float(power)
    )


def _check_sparsity(name, value):
    return _counts.check_sparsity(value, name)


def _check_int(name, value, minimum=None):
    return _counts.check_int(value, name, minimum)


def _warn_never(schedule):
    warnings.warn(
        f"{schedule!r} never updates masks: steps count from 1, and no step in "
        f"[max(begin_step, 1), end_step] is begin_step + a multiple of frequency.",
        stacklevel=3,
    )


class PruningSchedule:
    """Base class: `schedule(step)` returns `(should_update, sparsity)` tensors.

    Subclasses implement `sparsity(step)` (float64 tensor) and `get_config()`.
    """

    begin_step = 0
    end_step = -1
    frequency = 100

    def __call__(self, step):
        return (
            should_update(step, self.begin_step, self.end_step, self.frequency),
            self.sparsity(step),
        )

    def sparsity(self, step):
        raise NotImplementedError

    @property
    def final_sparsity(self):
        raise NotImplementedError

    def update_steps(self, num_steps):
        """The steps of a run of `num_steps` training steps at which masks are
        updated (a Python list). Steps count from 1, as in tfmot: the first
        training step is step 1."""
        last = num_steps if self.end_step < 0 else min(self.end_step, num_steps)
        return [s for s in range(self.begin_step, last + 1, self.frequency) if s >= 1]

    def first_update_step(self):
        """The first step (counting from 1) with a mask update, or None if none."""
        first = self.begin_step if self.begin_step >= 1 else self.frequency
        return first if self.end_step < 0 or first <= self.end_step else None

    def _should_prune_in_step(self, step, begin_step, end_step, frequency):
        """tfmot's helper for schedules written its way: `should_update(...)`."""
        return should_update(step, begin_step, end_step, frequency)

    def update_sparsities(self):
        """The sparsity at each update step `begin_step + j * frequency`
        (j = 0, 1, ...), as Python floats, for `decide` to tabulate; None when not
        tabulated (a user schedule, or more than `MAX_TABLE` update steps)."""
        return None

    @classmethod
    def from_config(cls, config):
        if set(config) >= {"class_name", "config"}:  # tfmot's nested form
            config = config["config"]
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash((type(self).__name__, tuple(sorted(self.get_config().items()))))


@keras.saving.register_keras_serializable("tfprune")
class ConstantSparsity(PruningSchedule):
    """Prune to `target_sparsity` at every update step.

    Args:
        target_sparsity: fraction of weights (or units) pruned, in [0, 1).
        begin_step: first step at which masks are updated.
        end_step: last step at which masks may be updated; -1 for no end.
        frequency: masks are updated every `frequency` steps from `begin_step`.

    Example:

    >>> schedule = ConstantSparsity(0.5, begin_step=0, frequency=10)
    >>> update, sparsity = schedule(20)
    >>> bool(update), float(sparsity)
    (True, 0.5)
    """

    def __init__(self, target_sparsity, begin_step, end_step=-1, frequency=100):
        self.target_sparsity = _check_sparsity("target_sparsity", target_sparsity)
        self.begin_step = _check_int("begin_step", begin_step, 0)
        self.end_step = _check_int("end_step", end_step)
        self.frequency = _check_int("frequency", frequency, 1)
        if self.end_step != -1 and self.end_step < self.begin_step:
            raise ValueError(
                "Argument `end_step` must be -1 or >= `begin_step` "
                f"({self.begin_step}). Received: end_step={self.end_step}"
            )
        if self.first_update_step() is None:
            _warn_never(self)

    def sparsity(self, step):
        return ops.full_like(ops.cast(step, "float64"), self.target_sparsity)

    def update_sparsities(self):
        return [self.target_sparsity]

    @property
    def final_sparsity(self):
        return self.target_sparsity

    def get_config(self):
        return {
            "target_sparsity": self.target_sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "frequency": self.frequency,
        }


@keras.saving.register_keras_serializable("tfprune")
class PolynomialDecay(PruningSchedule):
    """Raise sparsity from `initial_sparsity` to `final_sparsity` (Zhu & Gupta, 2017).

    `p = clip((step - begin_step) / (end_step - begin_step), 0, 1)`,
    `sparsity = final + (initial - final) * (1 - p) ** power`; masks are updated every
    `frequency` steps from `begin_step` to `end_step` inclusive.

    Args:
        initial_sparsity: sparsity at `begin_step`, in [0, 1).
        final_sparsity: sparsity from `end_step` on, in [0, 1).
        begin_step: first update step.
        end_step: step at which `final_sparsity` is reached (>= begin_step);
            unlike tfmot, `end_step == begin_step` is allowed and means "final at once".
        power: exponent of the decay (> 0); 3 as in tfmot.
        frequency: steps between mask updates (>= 1).

    Example:

    >>> schedule = PolynomialDecay(0.0, 0.9, begin_step=0, end_step=100, frequency=50)
    >>> [round(float(schedule(s)[1]), 4) for s in (0, 50, 100)]
    [0.0, 0.7875, 0.9]
    """

    def __init__(
        self,
        initial_sparsity,
        final_sparsity,
        begin_step,
        end_step,
        power=3,
        frequency=100,
    ):
        self.initial_sparsity = _check_sparsity("initial_sparsity", initial_sparsity)
        self.final_sparsity_ = _check_sparsity("final_sparsity", final_sparsity)
        self.begin_step = _check_int("begin_step", begin_step, 0)
        self.end_step = _check_int("end_step", end_step)
        if self.end_step < self.begin_step:
            raise ValueError(
                f"Argument `end_step` must be >= `begin_step` ({self.begin_step}). "
                f"Received: end_step={self.end_step}"
            )
        if isinstance(power, (bool, np.bool_)) or not isinstance(
                power, (int, float, np.integer, np.floating)):
            raise TypeError(f"Argument `power` must be a positive number. Received: power={power!r}")
        if not power > 0 or not math.isfinite(power):
            raise ValueError(f"Argument `power` must be a positive number. Received: power={power!r}")
        self.power = power
        self.frequency = _check_int("frequency", frequency, 1)
        last = self.end_step - (self.end_step - self.begin_step) % self.frequency
        if self.first_update_step() is None:
            _warn_never(self)
        elif last != self.end_step:
            warnings.warn(
                f"PolynomialDecay: end_step - begin_step = {self.end_step - self.begin_step} "
                f"is not a multiple of frequency={self.frequency}, so the last mask update "
                f"is at step {last}, at sparsity "
                f"{float(self.sparsity(last)):.4f} < final_sparsity={self.final_sparsity_}. "
                "Choose end_step = begin_step + a multiple of frequency.",
                stacklevel=2,
            )

    @property
    def final_sparsity(self):
        return self.final_sparsity_

    def update_sparsities(self):
        count = (self.end_step - self.begin_step) // self.frequency + 1
        if count > MAX_TABLE:
            return None
        steps = self.begin_step + self.frequency * np.arange(count, dtype=np.float64)
        span = self.end_step - self.begin_step
        p = np.ones(count) if span == 0 else np.clip((steps - self.begin_step) / span, 0.0, 1.0)
        values = self.final_sparsity_ + (self.initial_sparsity - self.final_sparsity_) * np.power(
            1.0 - p, float(self.power))
        return [float(v) for v in values]

    def sparsity(self, step):
        return polynomial_decay_sparsity(
            step,
            self.initial_sparsity,
            self.final_sparsity_,
            self.begin_step,
            self.end_step,
            self.power,
        )

    def get_config(self):
        return {
            "initial_sparsity": self.initial_sparsity,
            "final_sparsity": self.final_sparsity_,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "power": self.power,
            "frequency": self.frequency,
        }


def check_schedule(schedule):
    """`schedule` if it is a `PruningSchedule` (ours, or one written tfmot's way:
    any object with `__call__(step) -> (should_prune, sparsity)` and
    `get_config`); TypeError otherwise."""
    if isinstance(schedule, PruningSchedule) or (
        callable(schedule) and callable(getattr(schedule, "get_config", None))
        and type(schedule).__name__ != "function"
    ):
        return schedule
    raise TypeError(
        "Argument `pruning_schedule` must be a `tfprune.PruningSchedule` "
        "(ConstantSparsity, PolynomialDecay, or a subclass). "
        f"Received: pruning_schedule={schedule!r}"
    )


_BUILT_IN = {"ConstantSparsity": ConstantSparsity, "PolynomialDecay": PolynomialDecay}


def deserialize(config):
    """A schedule from a config: Keras's serialized form, or tfmot's
    `{"class_name": "PolynomialDecay", "config": {...}}`."""
    if isinstance(config, PruningSchedule):
        return config
    if not isinstance(config, dict) or "class_name" not in config:
        raise TypeError(
            "Argument `pruning_schedule` must be a schedule or its config dict. "
            f"Received: pruning_schedule={config!r}"
        )
    name = str(config["class_name"]).split(">")[-1]
    if name in _BUILT_IN and "module" not in config:
        return _BUILT_IN[name].from_config(config.get("config", {}))
    try:
        schedule = keras.saving.deserialize_keras_object(config)
    except TypeError as e:
        if "Could not locate" not in str(e):  # the class's own argument checks
            raise
        raise ValueError(  # a config of the right form naming an unknown class
            f"Argument `pruning_schedule` names an unknown schedule class "
            f"{config['class_name']!r} (register it with "
            f"`keras.saving.register_keras_serializable`). Received: pruning_schedule={config!r}"
        ) from e
    if not isinstance(schedule, PruningSchedule):
        raise TypeError(
            "Argument `pruning_schedule` must deserialize to a `PruningSchedule`. "
            f"Received: pruning_schedule={config!r} (a {type(schedule).__name__})"
        )
    return schedule


def decide(schedule, step):
    """`(should_update, sparsity)` at `step` (an int32 tensor) inside a train step.

    Built-in schedules give exact keep counts (`masks.policy.KeepCounts` over their
    `update_sparsities`); others return what `schedule(step)` returns (the
    sparsity as a tensor).
    """
    table = schedule.update_sparsities() if type(schedule) in _BUILT_IN.values() else None
    if table is not None:
        should = should_update(step, schedule.begin_step, schedule.end_step, schedule.frequency)
        index = ops.clip((step - schedule.begin_step) // schedule.frequency, 0, len(table) - 1)
        return should, _policy.KeepCounts(table, index)
    should, sparsity = schedule(step)
    return ops.cast(should, "bool"), sparsity
