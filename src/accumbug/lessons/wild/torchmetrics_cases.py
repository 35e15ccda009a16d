"""torchmetrics ``MeanMetric`` fed the batch losses of the shared data: what ``compute()`` gives.

A loop that keeps its epoch loss in a ``MeanMetric`` gets the exact value only when each
``update`` carries its batch size as ``weight``; without it every batch weighs the same, a
mean of batch means. Four more ways it goes wrong or silently changes the question: a NaN
batch is dropped with a warning (the mean of what is left; ``nan_strategy="error"`` raises
instead), a float16 state rounds and, on
bigger sums, overflows to inf, and ``nan_strategy="disable"`` throws the weights away
(Lightning-AI/torchmetrics#3434). Nothing is displayed: torchmetrics has no console of its
own, so ``displayed`` is None. Taught in ``notebooks/07_in_the_wild.ipynb``.
"""

from __future__ import annotations

import warnings

import torch
from torch.nn import functional

from .data import WildData, uneven_data, zero_linear
from .record import WildCase, installed_case

__all__ = ["NAN_BATCH", "torchmetrics_cases"]

NAN_BATCH = 10  # the batch whose loss the NaN case replaces with NaN
FLOAT16_BATCHES, FLOAT16_LOSS = 65, 70.0  # the report's overflow: 65 batches of loss 70 (batches of 16)
DISABLE_VALUES, DISABLE_WEIGHTS = (1.0, 4.0, 7.0), (3.0, 1.0, 1.0)  # a small weighted mean: 2.8 exact


def _batch_losses(data: WildData) -> tuple[list[torch.Tensor], list[int]]:
    """Each batch's mean-squared-error loss under the zero model (float32, as a loop computes it) and its size."""
    model = zero_linear()
    with torch.no_grad():
        batches = zip(data.features.split(data.batch_size), data.targets.split(data.batch_size))
        losses = [functional.mse_loss(model(features), targets) for features, targets in batches]
    return losses, [len(part) for part in data.targets.split(data.batch_size)]


def _fed_mean(values, weights=None, dtype: torch.dtype | None = None, **options) -> tuple[float, list[str]]:
    """A fresh ``MeanMetric(**options)`` (state cast to ``dtype`` by ``set_dtype``) fed ``values``, one
    ``update`` each (with ``weight=weights[i]`` where given): its ``compute()`` and the warnings raised."""
    from torchmetrics.aggregation import MeanMetric

    metric = MeanMetric(**options)
    if dtype is not None:
        metric = metric.set_dtype(dtype)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for index, value in enumerate(values):
            if weights is None:
                metric.update(value)
            else:
                metric.update(value, weight=weights[index])
        saved = metric.compute().item()
    return saved, [f"{w.category.__name__}: {w.message}" for w in caught]


def _case(case: str, saved: float, exact: float, **extra) -> WildCase:
    return installed_case("torchmetrics", "torchmetrics", case, None, saved, exact, **extra)


def _weighting_cases(data: WildData, losses, sizes) -> list[WildCase]:
    """``update(batch_mean)`` against ``update(batch_mean, weight=batch_size)`` on the shared data."""
    unweighted, _ = _fed_mean(losses)
    weighted, _ = _fed_mean(losses, sizes)
    return [
        _case("MeanMetric.update(batch mean)", unweighted, data.exact(),
              note=f"no weight: each of the {len(losses)} batches weighs the same, a mean of batch means"),
        _case("MeanMetric.update(batch mean, weight=n)", weighted, data.exact(),
              note="weight = batch size: the sample-weighted mean, exact to float32"),
    ]


def _raised(values, weights, **options) -> str:
    """What ``MeanMetric(**options)`` fed ``values`` raises, as ``Type: message``; empty when it raises nothing."""
    try:
        _fed_mean(values, weights, **options)
    except Exception as error:  # noqa: BLE001 - whatever the framework raises is what the case records
        return f"{type(error).__name__}: {error}"
    return ""


def _nan_case(data: WildData, losses, sizes) -> WildCase:
    """One batch's loss NaN under the default ``nan_strategy="warn"``: dropped, with a warning only; and what
    ``nan_strategy="error"``, the setting that does not drop it silently, does with the same batch."""
    fed = [torch.tensor(float("nan")) if index == NAN_BATCH else loss for index, loss in enumerate(losses)]
    saved, caught = _fed_mean(fed, sizes)
    start = NAN_BATCH * data.batch_size
    finite = [i for i in range(len(data)) if not start <= i < start + sizes[NAN_BATCH]]
    raised = _raised(fed, sizes, nan_strategy="error") or "nothing raised"
    return _case("MeanMetric, one batch loss NaN (default)", saved, data.exact(finite), console="\n".join(caught),
                 note=f"batch {NAN_BATCH}'s NaN dropped with its weight: the mean of the {len(finite)} other "
                      f"samples, reported as a number where a NaN-including mean is NaN; "
                      f"{len(caught)} warning(s) the only sign; with nan_strategy='error' the same update "
                      f"raises {raised}")


def _float16_cases(data: WildData, losses, sizes) -> list[WildCase]:
    """A float16 state: the shared data (rounding) and the report's 65 batches of loss 70 (overflow)."""
    shared, _ = _fed_mean(losses, sizes, torch.float16)
    batch = data.batch_size
    overflowed, _ = _fed_mean([torch.tensor(FLOAT16_LOSS)] * FLOAT16_BATCHES, [batch] * FLOAT16_BATCHES, torch.float16)
    unweighted, _ = _fed_mean([torch.tensor(FLOAT16_LOSS)] * FLOAT16_BATCHES, None, torch.float16)
    biggest = torch.finfo(torch.float16).max
    return [
        _case("MeanMetric float16 state, weight=n", shared, data.exact(),
              note="set_dtype(torch.float16) (or .to(torch.float16); .half() leaves float32): the weighted "
                   f"sum {sum(sizes) * data.exact():.0f} is kept in float16, so each batch's addition rounds"),
        _case(f"MeanMetric float16, {FLOAT16_BATCHES} batches of loss {FLOAT16_LOSS:g}, weight=n", overflowed,
              FLOAT16_LOSS,
              note=f"the weighted sum {FLOAT16_BATCHES * batch * FLOAT16_LOSS:.0f} passes float16's largest "
                   f"{biggest:.0f}; without weights the sum stays below it and compute() gives {unweighted:g}"),
    ]


def _disable_cases(data: WildData, losses, sizes) -> list[WildCase]:
    """``nan_strategy="disable"`` replaces every weight by 1: a small weighted mean, then the shared data."""
    small, _ = _fed_mean([torch.tensor(v) for v in DISABLE_VALUES], DISABLE_WEIGHTS, nan_strategy="disable")
    small_exact = sum(v * w for v, w in zip(DISABLE_VALUES, DISABLE_WEIGHTS)) / sum(DISABLE_WEIGHTS)
    shared, _ = _fed_mean(losses, sizes, nan_strategy="disable")
    upstream = "Lightning-AI/torchmetrics#3434"
    return [
        _case("MeanMetric(nan_strategy='disable'), 3 values", small, small_exact, upstream=upstream,
              note=f"values {DISABLE_VALUES} with weights {DISABLE_WEIGHTS}: the weights are replaced by ones"),
        _case("MeanMetric(nan_strategy='disable'), weight=n", shared, data.exact(), upstream=upstream,
              note="weight = batch size passed, then ignored: a mean of batch means"),
    ]


def torchmetrics_cases() -> list[WildCase]:
    """Every torchmetrics case on the shared data (and two small examples), in the table's order."""
    data = uneven_data()
    losses, sizes = _batch_losses(data)
    return [*_weighting_cases(data, losses, sizes), _nan_case(data, losses, sizes),
            *_float16_cases(data, losses, sizes), *_disable_cases(data, losses, sizes)]
