"""``ExactMean``: the exact epoch mean of any per-item value, for a loop of your own.

The incident's lesson in one class: keep the **sum** of the values and the **count** of the
items they are averaged over, add both every batch, divide once at the end. Whatever the
loss -- a classification or regression batch mean, a language model's loss over its
non-padding tokens, micro-batches of gradient accumulation -- the epoch value is then the
mean over items, not a mean of batch means::

    epoch_loss = ExactMean()
    for inputs, targets in loader:
        loss = criterion(model(inputs), targets)          # a batch mean
        ...
        epoch_loss.update(loss.detach(), n=len(targets))  # the mean and how many items it averages
    history.append(epoch_loss.compute())                  # a Python float, read once
    epoch_loss.reset()

``update(value, n)`` takes a 0-dim batch mean with its item count ``n`` (a Python int, or a
0-dim tensor such as the number of non-padding tokens, counted on the device), or a tensor
of per-item values (then ``n`` is their count, or a weight tensor of their shape: a mask of
real tokens, say). The sum, and the counts and weights given as tensors, are float64 tensors
on the value's device; counts known on the host (``n=16``, a tensor's length) stay a Python
int. So ``update`` never waits for the device (no ``.item()``); ``compute()`` is the one
place that does. A NaN or infinite value is kept (the mean becomes NaN or inf) and counted
(``nonfinite``), never dropped; items of weight 0 (padding) add nothing, not even their NaN.
An empty mean is NaN, never 0.0.

It is a tracker of the package too (``trackers.MetricTracker``): its states are declared sums,
so ``distributed.sync_states`` adds them across ranks in one ``all_reduce`` per dtype, and
``train(config, [ExactMean()])`` feeds it as it feeds any tracker. Taught in
``notebooks/01_side_by_side_small.ipynb`` and ``docs/cheatsheet.md``.
"""

from __future__ import annotations

import math

import torch

from .trackers import MetricTracker
from .validation import check_whole, is_real

__all__ = ["ExactMean"]

FLOAT64 = torch.float64


class ExactMean(MetricTracker):
    """The exact mean of per-item values: a float64 sum and the items' count, divided once.

    ``update(value, n=None)`` adds a batch: a 0-dim mean of ``n`` items, or per-item values
    (``n`` their count or their weights). ``compute()`` is the mean as a Python float (NaN when
    empty); ``get_metrics()`` adds the count and the number of non-finite values. Called as
    the trainer calls a tracker, ``update(loss, outputs, labels, counted=None)``, the batch's
    item count comes from ``labels`` (or the ``counted`` mask) and ``outputs`` are not used.
    """

    kind = "exact-mean"
    accumulator = "float64"
    per_sample_loss = True  # under torchrun the trainer gives per-sample losses and the counted mask

    def __init__(self) -> None:
        super().__init__()
        self.add_state("value_sum", torch.zeros((), dtype=FLOAT64), "sum")
        self.add_state("items", 0, "sum")  # counts known on the host (n=16, a tensor's numel): no kernel
        self.add_state("weights", torch.zeros((), dtype=FLOAT64), "sum")  # counts and weights on the device
        self.add_state("nonfinite", torch.zeros((), dtype=torch.int64), "sum")

    def update(self, value, n=None, labels=None, counted=None) -> None:
        """Add a batch: a 0-dim mean of ``n`` items, or per-item values with their count or weights."""
        if labels is not None:  # the trainer's call: (loss, outputs, labels[, counted])
            n = counted if counted is not None else (labels.size(0) if _dims(value) == 0 else None)
        value = _as_tensor(value, self.value_sum.device)
        self._follow(value.device)
        if value.dim() == 0:
            self._add_mean(value, n)
        else:
            self._add_items(value, n)

    def _follow(self, device: torch.device) -> None:
        """The states move to the values' device on the first batch (and after ``reset``)."""
        if self.value_sum.device != device:
            self.value_sum, self.weights, self.nonfinite = (
                state.to(device) for state in (self.value_sum, self.weights, self.nonfinite))

    def _add_mean(self, value: torch.Tensor, n) -> None:
        if n is None:
            raise ValueError(f"value={_shown(value)}: a batch mean needs n, the number of items it averages "
                             "(update(loss, n=len(targets)); n=1 for a value that is one item)")
        if isinstance(n, torch.Tensor):
            weight = _weights(n, value, shape=())
            self._add(torch.where(weight != 0, value.to(FLOAT64) * weight, 0.0), weight, weight != 0, value)
            return
        weight = check_whole("n", n, 0)
        if weight:  # n=0: an empty batch, whose mean (NaN) is no value at all
            self.value_sum.add_(value, alpha=weight)  # in float64: the mean times its count, one kernel
            self.items += weight
            self.nonfinite += ~torch.isfinite(value)

    def _add_items(self, values: torch.Tensor, n) -> None:
        if n is None or (not isinstance(n, torch.Tensor) and check_whole("n", n, 0) == values.numel()):
            self.value_sum += values.sum(dtype=FLOAT64)
            self.items += values.numel()
            self.nonfinite += (~torch.isfinite(values)).sum()
            return
        if not isinstance(n, torch.Tensor):
            raise TypeError(f"n={n!r}: for {values.numel()} per-item values give n={values.numel()}, "
                             f"or a tensor of their weights, shape {tuple(values.shape)}")
        weights = _weights(n, values, shape=values.shape)
        kept = weights != 0
        self._add(torch.where(kept, values.to(FLOAT64) * weights, 0.0).sum(), weights.sum(), kept, values)

    def _add(self, value_sum, count, kept, values: torch.Tensor) -> None:
        """Add weighted values to the three states; ``kept`` marks the values whose weight is not 0."""
        self.value_sum += value_sum
        self.weights += count
        self.nonfinite += (~torch.isfinite(values) & kept).sum()

    def compute(self) -> float:
        """The mean over every item added since the last ``reset``, as a Python float; NaN when there are none."""
        return self._read()[0]

    def get_metrics(self) -> dict[str, float]:
        """``loss``: the mean (``compute``); ``count``: the items (or weights) added; ``nonfinite``: NaN/inf values."""
        mean, count, nonfinite = self._read()
        return {"loss": mean, "count": int(count) if count.is_integer() else count, "nonfinite": nonfinite}

    def _read(self) -> tuple[float, float, int]:
        """The mean, the count and the non-finite values, in one read from the device."""
        value_sum, weights, nonfinite = torch.stack([self.value_sum, self.weights, self.nonfinite.to(FLOAT64)]).tolist()
        count = self.items + weights
        return (value_sum / count if count else math.nan), count, int(nonfinite)


def _dims(value) -> int:
    return value.dim() if isinstance(value, torch.Tensor) else 0


def _as_tensor(value, device: torch.device) -> torch.Tensor:
    """A value as a detached floating tensor; a Python or NumPy number as a float64 one on ``device``."""
    if isinstance(value, torch.Tensor):
        if not value.is_floating_point():
            raise TypeError(f"value dtype {value.dtype}: expected a floating tensor (a loss or a metric)")
        return value.detach()
    if is_real(value):
        return torch.tensor(float(value), dtype=FLOAT64, device=device)
    raise TypeError(f"value={value!r}: expected a number or a floating tensor")


def _weights(n: torch.Tensor, value: torch.Tensor, shape) -> torch.Tensor:
    """``n`` as float64 weights on the value's device, checked against the shape they must have."""
    if tuple(n.shape) != tuple(shape):
        raise ValueError(f"n shape {tuple(n.shape)}: expected {tuple(shape)}, "
                         + ("a 0-dim count" if not shape else "one weight per value"))
    return n.detach().to(device=value.device, dtype=FLOAT64, non_blocking=True)


def _shown(value: torch.Tensor) -> str:
    return f"tensor of shape {tuple(value.shape)}"
