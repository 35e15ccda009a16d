"""Loss streams without training: a tracker fed batch losses alone, batch by batch.

Accumulation bugs depend only on the stream of batch-mean losses and batch sizes, not on
the model. Replaying a stream through a tracker takes a fraction of a second even for the
full preset's 8,520 batches, so tests, the audit and the explorer use it to show where a
float16 ``loss_sum`` overflows or a "fixed" one stalls (``03_what_really_breaks.ipynb``).
"""

from __future__ import annotations

import torch

from .data import DataSpec
from .trackers import TOPK

__all__ = ["batch_sizes", "replay", "simulated_losses"]


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
