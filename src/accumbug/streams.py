"""Loss streams without training: a tracker fed batch losses alone, batch by batch.

Accumulation bugs depend only on the stream of batch-mean losses and batch sizes, not on
the model. Replaying a stream through a tracker takes a fraction of a second even for the
full preset's 8,520 batches, so tests, the audit and the explorer use it to show where a
float16 ``loss_sum`` overflows or a "fixed" one stalls (``03_what_really_breaks.ipynb``).
"""

from __future__ import annotations

import math

import torch

from .data import DataSpec
from .trackers import TOPK

__all__ = ["batch_sizes", "first_nonfinite", "replay", "simulated_losses", "stall_start"]


def batch_sizes(spec: DataSpec) -> list[int]:
    """The batch sizes of one epoch: full batches, then the partial last one."""
    return [spec.batch_size] * (spec.batches_per_epoch - 1) + [spec.last_batch_size]


def simulated_losses(batches: int, start: float, end: float, noise: float = 0.05, seed: int = 0) -> torch.Tensor:
    """``batches`` float32 batch-mean losses falling linearly from ``start`` to ``end``, with uniform noise."""
    if batches < 1:
        raise ValueError(f"batches={batches}: must be >= 1")
    generator = torch.Generator().manual_seed(seed)
    trend = torch.linspace(start, end, batches, dtype=torch.float64)
    jitter = (torch.rand(batches, generator=generator, dtype=torch.float64) - 0.5) * 2 * noise
    return (trend + jitter).to(torch.float32)


def replay(tracker, losses: torch.Tensor, sizes: list[int], outputs_dtype: torch.dtype = torch.float32) -> list[float]:
    """Feed ``tracker`` one update per batch; return ``loss_sum`` after each batch.

    Outputs are zeros of ``outputs_dtype`` (what the ``auto`` accumulator follows), so
    accuracy counts are meaningless here; only the loss accumulation is replayed.
    """
    if len(losses) != len(sizes):
        raise ValueError(f"{len(losses)} losses for {len(sizes)} batch sizes: need one loss per batch")
    blanks = {n: (torch.zeros(n, TOPK, dtype=outputs_dtype), torch.zeros(n, dtype=torch.int64)) for n in set(sizes)}
    trajectory = []
    for loss, size in zip(losses, sizes):
        outputs, labels = blanks[size]
        tracker.update(loss, outputs, labels)
        trajectory.append(float(tracker.loss_sum))
    return trajectory


def first_nonfinite(trajectory: list[float]) -> int | None:
    """Index of the first batch after which ``loss_sum`` is NaN or infinite, or None."""
    return next((i for i, value in enumerate(trajectory) if not math.isfinite(value)), None)


def stall_start(trajectory: list[float], min_lost: int = 10) -> int | None:
    """Index from which ``loss_sum`` never changes again, if at least ``min_lost`` additions were lost.

    A half-precision sum stalls when each addend is below half the spacing of the numbers
    around the sum, so it rounds away: float16 "fixed" at 32,768, bfloat16 at 4,096 / 65,536.
    """
    if not trajectory or not math.isfinite(trajectory[-1]):
        return None
    start = len(trajectory) - 1
    while start > 0 and trajectory[start - 1] == trajectory[-1]:
        start -= 1
    return start if len(trajectory) - 1 - start >= min_lost else None
