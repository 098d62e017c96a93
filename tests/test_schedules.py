import math
import warnings

import keras
import numpy as np
import pytest

from tfprune import schedules
from tfprune.schedules import ConstantSparsity, PolynomialDecay


def closed_form_poly(step, initial, final, begin, end, power):
    if end == begin:
        p = 1.0 if step >= begin else 0.0
    else:
        p = min(1.0, max(0.0, (step - begin) / (end - begin)))
    return final + (initial - final) * (1 - p) ** power


def closed_form_update(step, begin, end, frequency):
    return begin <= step and (end < 0 or step <= end) and (step - begin) % frequency == 0


GRID = [
    (0.0, 0.9, 0, 1000, 3, 100),
    (0.2, 0.8, 50, 250, 1, 10),
    (0.5, 0.95, 7, 7, 3, 1),
    (0.0, 0.5, 10, 40, 2.5, 5),
]


@pytest.mark.parametrize("args", GRID, ids=lambda a: "init{}-final{}-b{}-e{}-pow{}-f{}".format(*a))
def test_polynomial_decay_matches_closed_form(args):
    initial, final, begin, end, power, freq = args
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = PolynomialDecay(initial, final, begin, end, power=power, frequency=freq)
    for step in list(range(0, end + 30, 3)) + [begin, end, end + 1]:
        update, sparsity = s(step)
        assert math.isclose(float(sparsity), closed_form_poly(step, *args[:5]), abs_tol=1e-12)
        assert bool(update) == closed_form_update(step, begin, end, freq), step


@pytest.mark.parametrize("end_step", [-1, 300], ids=["open-ended", "ends-at-300"])
def test_constant_sparsity_updates_on_tfmot_steps(end_step):
    s = ConstantSparsity(0.7, begin_step=20, end_step=end_step, frequency=40)
    for step in range(0, 700):
        update, sparsity = s(step)
        assert float(sparsity) == 0.7
        assert bool(update) == closed_form_update(step, 20, end_step, 40)


def test_begin_equals_end_gives_final_sparsity_not_nan():
    s = PolynomialDecay(0.1, 0.6, begin_step=5, end_step=5, frequency=1)
    assert float(s(5)[1]) == 0.6
    assert float(s(100)[1]) == 0.6
    assert float(s(4)[1]) == pytest.approx(0.1)
    assert not np.isnan(float(s(5)[1]))


def test_polynomial_decay_is_float64_for_exact_counts():
    s = PolynomialDecay(0.0, 0.9, 0, 100, frequency=10)
    assert keras.backend.standardize_dtype(s(100)[1].dtype) == "float64"
    assert float(s(100)[1]) == 0.9


def test_tensor_steps_work_inside_graph():
    import tensorflow as tf

    s = PolynomialDecay(0.0, 0.8, 0, 100, frequency=10)
    f = tf.function(lambda step: s(step))
    update, sparsity = f(tf.constant(50, tf.int64))
    assert bool(update) and float(sparsity) == pytest.approx(closed_form_poly(50, 0.0, 0.8, 0, 100, 3))


def test_warns_when_final_sparsity_is_never_reached():
    with pytest.warns(UserWarning, match="not a multiple of frequency=100"):
        PolynomialDecay(0.0, 0.9, 0, 950)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        PolynomialDecay(0.0, 0.9, 0, 1000)


def test_update_steps_lists_the_update_steps():
    assert ConstantSparsity(0.5, 10, frequency=25).update_steps(80) == [10, 35, 60]
    # Steps count from 1 (as in tfmot), so begin_step=0 first updates at `frequency`.
    assert PolynomialDecay(0, 0.5, 0, 20, frequency=10).update_steps(1000) == [10, 20]
    assert ConstantSparsity(0.5, 0, frequency=1).update_steps(3) == [1, 2, 3]
    assert PolynomialDecay(0, 0.5, 0, 20, frequency=10).first_update_step() == 10
    assert ConstantSparsity(0.5, 7, frequency=10).first_update_step() == 7
    with pytest.warns(UserWarning, match="never updates masks"):
        assert ConstantSparsity(0.5, 0, end_step=5, frequency=10).first_update_step() is None


BAD = [
    (lambda: ConstantSparsity(1.5, 0), "Argument `target_sparsity` must be in [0, 1). Received: target_sparsity=1.5"),
    (lambda: ConstantSparsity(-0.1, 0), "Received: target_sparsity=-0.1"),
    (lambda: ConstantSparsity("0.5", 0), "Received: target_sparsity='0.5'"),
    (lambda: ConstantSparsity(0.5, -1), "Argument `begin_step` must be >= 0. Received: begin_step=-1"),
    (lambda: ConstantSparsity(0.5, 0, frequency=0), "Received: frequency=0"),
    (lambda: ConstantSparsity(0.5, 10, end_step=5), "Received: end_step=5"),
    (lambda: ConstantSparsity(0.5, 1.5), "Argument `begin_step` must be an integer. Received: begin_step=1.5"),
    (lambda: PolynomialDecay(0.0, 1.0, 0, 10), "Argument `final_sparsity` must be in [0, 1). Received: final_sparsity=1.0"),
    (lambda: PolynomialDecay(0.0, 0.5, 10, 5), "Received: end_step=5"),
    (lambda: PolynomialDecay(0.0, 0.5, 0, 10, power=0), "Received: power=0"),
    (lambda: PolynomialDecay(0.0, 0.5, 0, 10, frequency=True), "Received: frequency=True"),
    (lambda: PolynomialDecay(0.0, 0.5, 0, 10, power="3"), "Received: power='3'"),
    (lambda: ConstantSparsity(0.5, 10, -5, 10), "Received: end_step=-5"),
    (lambda: ConstantSparsity(float("nan"), 0), "Received: target_sparsity=nan"),
]
WRONG_TYPE = ("'0.5'", "begin_step=1.5", "frequency=True", "power='3'")


@pytest.mark.parametrize("make,message", BAD, ids=[m.split("Received: ")[1] for _, m in BAD])
def test_bad_arguments_raise_keras_style_errors(make, message):
    # Wrong types raise TypeError, wrong values ValueError, as in Keras.
    error = TypeError if message.endswith(WRONG_TYPE) else ValueError
    with pytest.raises(error) as e:
        make()
    assert message in str(e.value)


def test_numpy_scalars_are_accepted_like_python_numbers():
    s = ConstantSparsity(np.float32(0.5), np.int64(2), frequency=np.int32(3))
    assert (s.target_sparsity, s.begin_step, s.frequency) == (0.5, 2, 3)


def test_tfmot_nested_config_loads():
    config = {"class_name": "PolynomialDecay",
              "config": {"initial_sparsity": 0.1, "final_sparsity": 0.8, "begin_step": 0,
                         "end_step": 100, "power": 3, "frequency": 10}}
    assert PolynomialDecay.from_config(config) == PolynomialDecay(0.1, 0.8, 0, 100, frequency=10)
    assert schedules.deserialize(config) == PolynomialDecay(0.1, 0.8, 0, 100, frequency=10)


def test_update_sparsities_are_the_closed_form_at_update_steps():
    s = PolynomialDecay(0.1, 0.9, begin_step=10, end_step=110, power=2, frequency=25)
    want = [0.9 + (0.1 - 0.9) * (1 - (st - 10) / 100) ** 2 for st in (10, 35, 60, 85, 110)]
    np.testing.assert_allclose(s.update_sparsities(), want, rtol=0, atol=1e-15)
    assert ConstantSparsity(0.7, 3).update_sparsities() == [0.7]


@pytest.mark.parametrize(
    "schedule",
    [ConstantSparsity(0.3, 5, 100, 7), PolynomialDecay(0.1, 0.7, 0, 100, 2, 10)],
    ids=["constant", "polynomial"],
)
def test_config_is_flat_and_round_trips(schedule):
    config = schedule.get_config()
    assert all(not isinstance(v, (dict, list)) for v in config.values())
    again = type(schedule).from_config(config)
    assert again == schedule
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert restored == schedule


def test_formula_functions_are_exported():
    assert float(schedules.polynomial_decay_sparsity(5, 0.0, 1.0 - 1e-9, 0, 10, 1)) == pytest.approx(0.5)
    assert bool(schedules.should_update(30, 10, -1, 10))


@pytest.mark.parametrize(
    "make",
    [lambda: ConstantSparsity(0.5, 0, end_step=5, frequency=10),
     lambda: PolynomialDecay(0.0, 0.5, 0, 0, frequency=10)],
    ids=["constant-ends-before-first-update", "polynomial-begin-equals-end-at-0"],
)
def test_warns_when_a_schedule_never_updates(make):
    with pytest.warns(UserWarning, match="never updates masks"):
        make()


def test_long_schedules_are_checked_without_enumerating_steps():
    # Building a list of update steps here would exhaust memory (10**12 steps).
    s = PolynomialDecay(0.0, 0.9, 0, 10**12, frequency=1)
    assert s.first_update_step() == 1
    with pytest.warns(UserWarning, match=r"last mask update is at step 999999999900"):
        PolynomialDecay(0.0, 0.9, 0, 10**12 - 1, frequency=100)
