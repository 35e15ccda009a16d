"""pytorch-ignite cases against values recomputed by hand from the shared data.

Each test asks for ignite through the ``wild`` fixture (skipped without it, failed under
``ACCUMBUG_REQUIRE_WILD=1``). ``Loss`` must be the exact epoch loss to float32 (1e-6
relative); ``RunningAverage`` must be the exponential moving average of the batch means,
recomputed here in float64, and the progress bar must show it as tqdm rounds it (3 digits).
"""

from __future__ import annotations

import functools

import pytest

from accumbug.lessons.wild.data import uneven_data
from accumbug.lessons.wild.ignite_cases import ignite_cases

F32 = 1e-6
ALPHA = 0.98  # RunningAverage's default


@functools.cache
def _cases() -> dict:
    return {case.case: case for case in ignite_cases()}


def _moving_average(values, alpha: float = ALPHA) -> float:
    """The first value, then ``alpha * previous + (1 - alpha) * value`` for each next one."""
    average = values[0]
    for value in values[1:]:
        average = alpha * average + (1 - alpha) * value
    return average


def test_every_case_is_ignite_with_its_version(wild):
    ignite = wild("ignite")
    assert len(_cases()) == 2
    for case in _cases().values():
        assert (case.framework, case.version) == ("ignite", ignite.__version__) and case.note and case.upstream


def test_the_loss_metric_on_an_evaluator_is_sample_weighted(wild):
    wild("ignite")
    data, case = uneven_data(), _cases()["Loss(MSELoss()) on an evaluator"]
    assert case.displayed is None and case.exact == data.exact()
    assert case.saved == pytest.approx(data.exact(), rel=F32) and case.is_exact
    assert case.upstream == "pytorch/ignite#120"


def test_the_running_average_is_a_moving_average_not_the_epoch_mean(wild):
    wild("ignite")
    data, case = uneven_data(), _cases()["RunningAverage(batch loss) in a ProgressBar"]
    expected = _moving_average(data.batch_means())
    assert case.saved == pytest.approx(expected, rel=F32) and case.exact == data.exact()
    assert case.console == f"loss={expected:.3g}" and case.displayed == float(f"{expected:.3g}")
    assert not case.is_exact and case.saved_error > 0.1
    assert abs(case.saved / data.mean_of_batch_means() - 1) > 0.05  # not a mean of batch means either
    assert f"alpha {ALPHA}" in case.note and case.upstream == "pytorch/ignite#848"
