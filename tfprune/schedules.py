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
number the h5 post-processor and `masks.keep_count` see.
"""

import operator
import warnings

import keras
from keras import ops

__all__ = [
    "PruningSchedule",
    "ConstantSparsity",
    "PolynomialDecay",
    "should_update",
    "polynomial_decay_sparsity",
]


def should_update(step, begin_step, end_step, frequency):
    """Whether masks are updated at `step` (a tensor or int); returns a bool tensor.

    `begin_step <= step and (step <= end_step or end_step < 0)
    and (step - begin_step) % frequency == 0`.
    """
    step = ops.cast(step, "int64")
    in_range = step >= begin_step
    if end_step >= 0:
        in_range = ops.logical_and(in_range, step <= end_step)
    on_turn = ops.equal(ops.mod(step - begin_step, frequency), 0)
    return ops.logical_and(in_range, on_turn)


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
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(
            f"Argument `{name}` must be a number in [0, 1). "
            f"Received: {name}={value!r}"
        )
    if not 0.0 <= value < 1.0:
        raise ValueError(
            f"Argument `{name}` must be in [0, 1). Received: {name}={value}"
        )
    return float(value)


def _check_int(name, value, minimum=None):
    try:
        if isinstance(value, bool):
            raise TypeError
        value = operator.index(value)
    except TypeError:
        raise ValueError(
            f"Argument `{name}` must be an integer. Received: {name}={value!r}"
        ) from None
    if minimum is not None and value < minimum:
        raise ValueError(
            f"Argument `{name}` must be >= {minimum}. Received: {name}={value}"
        )
    return value


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

    @classmethod
    def from_config(cls, config):
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
        if 0 <= self.end_step < self.begin_step:
            raise ValueError(
                "Argument `end_step` must be -1 or >= `begin_step` "
                f"({self.begin_step}). Received: end_step={self.end_step}"
            )
        if self.first_update_step() is None:
            _warn_never(self)

    def sparsity(self, step):
        return ops.full_like(ops.cast(step, "float64"), self.target_sparsity)

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
        if isinstance(power, bool) or not isinstance(power, (int, float)) or not power > 0:
            raise ValueError(
                f"Argument `power` must be a positive number. Received: power={power!r}"
            )
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
