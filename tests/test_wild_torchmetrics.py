"""torchmetrics ``MeanMetric`` cases against values recomputed by hand from the shared data.

Each test asks for torchmetrics through the ``wild`` fixture (skipped without it, failed under
``ACCUMBUG_REQUIRE_WILD=1``). Float32 results are held to 1e-6 relative; the float16 ones are
replayed by hand in float16 and must agree to the same tolerance.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch

from accumbug.lessons.wild.data import uneven_data
from accumbug.lessons.wild.torchmetrics_cases import (
    DISABLE_VALUES,
    DISABLE_WEIGHTS,
    FLOAT16_BATCHES,
    FLOAT16_LOSS,
    NAN_BATCH,
    torchmetrics_cases,
)

F32 = 1e-6
ISSUE = "Lightning-AI/torchmetrics#3434"


@functools.cache
def _cases() -> dict:
    return {case.case: case for case in torchmetrics_cases()}


def _case(start: str):
    """The one case whose name starts with ``start``."""
    [found] = [case for name, case in _cases().items() if name.startswith(start)]
    return found


def _float16_mean(values, weights) -> float:
    """What a float16 weighted-mean state holds, replayed by hand: each value and weight rounded to float16,
    their product added to a float16 sum, the weights to a float16 total."""
    total = weight_sum = torch.zeros((), dtype=torch.float16)
    for value, weight in zip(values, weights):
        value, weight = torch.as_tensor(value).to(torch.float16), torch.tensor(float(weight), dtype=torch.float16)
        total, weight_sum = total + value * weight, weight_sum + weight
    return (total / weight_sum).item()


def test_every_case_is_torchmetrics_with_its_version_and_shows_nothing(wild):
    torchmetrics = wild("torchmetrics")
    assert len(_cases()) == 7
    for case in _cases().values():
        assert (case.framework, case.version, case.displayed) == ("torchmetrics", torchmetrics.__version__, None)
        assert case.upstream in ("", ISSUE) and case.note


def test_without_weights_it_is_the_mean_of_batch_means(wild):
    wild("torchmetrics")
    data, case = uneven_data(), _case("MeanMetric.update(batch mean)")
    assert case.exact == data.exact()
    assert case.saved == pytest.approx(data.mean_of_batch_means(), rel=F32)
    assert not case.is_exact and case.saved_error > 0.1


def test_with_the_batch_size_as_weight_it_is_exact(wild):
    wild("torchmetrics")
    data, case = uneven_data(), _case("MeanMetric.update(batch mean, weight=n)")
    assert case.saved == pytest.approx(data.exact(), rel=F32) and case.is_exact


def test_a_nan_batch_is_dropped_with_its_weight_and_one_warning(wild):
    wild("torchmetrics")
    data, case = uneven_data(), _case("MeanMetric, one batch loss NaN")
    kept = torch.cat([part for index, part in enumerate(data.losses().split(data.batch_size)) if index != NAN_BATCH])
    assert case.exact == pytest.approx(kept.mean().item(), rel=1e-12)
    assert case.saved == pytest.approx(kept.mean().item(), rel=F32) and math.isfinite(case.saved)
    assert abs(case.saved / data.exact() - 1) > 1e-3  # not the mean over every sample either
    assert case.console == "UserWarning: Encountered `nan` values in tensor. Will be removed."
    assert f"{len(kept)} other samples" in case.note
    assert case.note.endswith("with nan_strategy='error' the same update raises RuntimeError: "
                              "Encountered `nan` values in tensor")  # what the cheat sheet advises instead


def test_a_float16_state_rounds_the_shared_data(wild):
    wild("torchmetrics")
    data, case = uneven_data(), _case("MeanMetric float16 state")
    parts = data.losses().split(data.batch_size)
    assert case.saved == pytest.approx(_float16_mean([p.float().mean() for p in parts], map(len, parts)), rel=F32)
    assert case.exact == data.exact() and 1e-4 < abs(case.saved_error) < 1e-2


def test_the_reports_65_batches_of_70_overflow_only_with_weights(wild):
    wild("torchmetrics")
    case = _case(f"MeanMetric float16, {FLOAT16_BATCHES} batches")
    assert case.saved == math.inf and case.exact == FLOAT16_LOSS
    weighted = _float16_mean([FLOAT16_LOSS] * FLOAT16_BATCHES, [uneven_data().batch_size] * FLOAT16_BATCHES)
    unweighted = _float16_mean([FLOAT16_LOSS] * FLOAT16_BATCHES, [1] * FLOAT16_BATCHES)
    assert weighted == math.inf and math.isfinite(unweighted)
    assert f"compute() gives {unweighted:g}" in case.note


def test_how_the_state_becomes_float16_as_the_note_says(wild):
    from_module = wild("torchmetrics.aggregation")
    assert from_module.MeanMetric().to(torch.float16).mean_value.dtype == torch.float16
    assert from_module.MeanMetric().set_dtype(torch.float16).mean_value.dtype == torch.float16
    assert from_module.MeanMetric().half().mean_value.dtype == torch.float32


def test_nan_strategy_disable_ignores_the_weights(wild):
    wild("torchmetrics")
    small, shared = _case("MeanMetric(nan_strategy='disable'), 3"), _case("MeanMetric(nan_strategy='disable'), w")
    weighted = sum(v * w for v, w in zip(DISABLE_VALUES, DISABLE_WEIGHTS)) / sum(DISABLE_WEIGHTS)
    assert small.exact == pytest.approx(weighted, rel=1e-12)
    assert small.saved == pytest.approx(sum(DISABLE_VALUES) / len(DISABLE_VALUES), rel=F32)
    assert shared.saved == pytest.approx(uneven_data().mean_of_batch_means(), rel=F32)
    assert small.upstream == shared.upstream == ISSUE
