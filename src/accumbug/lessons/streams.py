"""Loss streams without training: a tracker fed batch losses alone, batch by batch.

Accumulation bugs depend only on the stream of batch-mean losses and batch sizes, not on
the model. A ``LossStream`` is a named, seeded draw of **per-sample** losses; ``batches(n)``
groups them into batches of ``n`` (the last one partial) and takes each batch's mean, as
``loss.item()`` does. So a batch size only regroups the same samples, and the stream's
``exact`` loss (the mean over its samples) stays put whatever the batch size: only a
tracker's arithmetic can move what it reports. ``mechanisms.py`` names the lessons' streams
(``mechanisms.STREAMS``); ``03_what_really_breaks.ipynb`` prints them.

Replaying a stream through a tracker takes a fraction of a second even for 8,520 batches, so
tests, the audit and the explorer use it to show where a float16 ``loss_sum`` overflows or a
"fixed" one stalls. ``scored_batches`` adds outputs and labels with chosen top-1/top-5 hit
rates, so the mechanism gallery can feed whole trackers, accuracies included. ``loss_sums``
is the incident trackers' loss arithmetic alone, several times faster than ``replay``: the
explorer (``04_explorer.ipynb``) redraws with it on every change of a control.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import cached_property

import torch

from ..data import DataSpec
from ..specimens.incident_trackers import ACCUMULATORS
from ..trackers import TOPK
from ..validation import check_real, check_whole

__all__ = ["LossStream", "batch_means", "batch_sizes", "epoch_mean", "first_nonfinite", "loss_sums", "replay",
           "sample_losses", "scored_batches", "sized_batches", "stall_start", "trajectory_note"]

RANKED_CLASSES = TOPK + 1  # one class more than top-k, so a label can miss


def batch_sizes(spec: DataSpec) -> list[int]:
    """The batch sizes of one epoch of ``spec``: full batches, then the partial last one."""
    return sized_batches(spec.samples, spec.batch_size)


def sample_losses(samples: int, start: float, end: float, noise: float, seed: int) -> torch.Tensor:
    """``samples`` float32 per-sample losses falling linearly from ``start`` to ``end``, with uniform noise.

    Sample ``i``'s loss is the trend at ``i`` plus a draw from ``[-noise, noise]`` (a generator
    seeded by ``seed``), so the same arguments give the same losses on every machine.
    """
    check_whole("samples", samples, minimum=1)
    check_real("noise", noise, low=0.0)
    generator = torch.Generator().manual_seed(seed)
    trend = torch.linspace(start, end, samples, dtype=torch.float64)
    jitter = (torch.rand(samples, generator=generator, dtype=torch.float64) - 0.5) * 2 * noise
    return (trend + jitter).to(torch.float32)


def batch_means(losses: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """The float32 mean of each run of ``sizes`` consecutive per-sample ``losses`` (vectorised): batch losses."""
    if sum(sizes) != len(losses):
        raise ValueError(f"batch sizes adding up to {sum(sizes):,} for {len(losses):,} samples: they must match")
    counts = torch.tensor(sizes, dtype=torch.int64)
    owner = torch.repeat_interleave(torch.arange(len(sizes)), counts)
    sums = torch.zeros(len(sizes), dtype=torch.float64).index_add_(0, owner, losses.to(torch.float64))
    return (sums / counts).to(torch.float32)


def sized_batches(samples: int, batch_size: int) -> list[int]:
    """The batch sizes of ``samples`` at ``batch_size``: full batches, then a partial last one if any."""
    check_whole("samples", samples, minimum=1)
    check_whole("batch_size", batch_size, minimum=1)
    full, rest = divmod(samples, batch_size)
    return [batch_size] * full + ([rest] if rest else [])


@dataclass(frozen=True, eq=False)
class LossStream:
    """A named stream of per-sample losses (``sample_losses``): the same batches of losses wherever it is used.

    ``batches(n)`` regroups its samples into batches of ``n``; ``exact`` is the mean over
    its samples in float64, the loss a correct tracker reports at any batch size.
    """

    name: str
    samples: int
    start: float
    end: float
    noise: float
    seed: int

    @cached_property
    def losses(self) -> torch.Tensor:
        """The per-sample losses (float32), drawn once per stream."""
        return sample_losses(self.samples, self.start, self.end, self.noise, self.seed)

    @cached_property
    def exact(self) -> float:
        """The per-sample mean loss, in float64: the same for every batch size."""
        return math.fsum(self.losses.tolist()) / self.samples

    def batches(self, batch_size: int) -> tuple[torch.Tensor, list[int]]:
        """Batch-mean losses and batch sizes at ``batch_size`` (the last batch partial where it does not divide)."""
        sizes = sized_batches(self.samples, batch_size)
        return batch_means(self.losses, sizes), sizes


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


def scored_batches(losses: torch.Tensor, sizes: list[int], top1: float, top5: float,
                   seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Batches ``(loss, outputs, labels)`` with top-1 and top-5 hit rates ``top1`` and ``top5`` (fractions).

    Every row of ``outputs`` scores classes 0..5 in falling order, so a label is its own rank:
    label 0 is a top-1 hit, label 1 a top-5 hit only, label 5 a miss. Each sample is a hit
    with the given probability, drawn from a generator seeded by ``seed``.
    """
    if len(losses) != len(sizes):
        raise ValueError(f"{len(losses)} losses for {len(sizes)} batch sizes: need one loss per batch")
    if not 0 <= top1 <= top5 <= 1:
        raise ValueError(f"top1={top1!r}, top5={top5!r}: need 0 <= top1 <= top5 <= 1 (fractions, not percent)")
    draws = torch.rand(sum(sizes), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    labels = torch.full(draws.shape, RANKED_CLASSES - 1, dtype=torch.int64)
    labels[draws < top5] = 1
    labels[draws < top1] = 0
    scores = torch.arange(RANKED_CLASSES - 1, -1, -1, dtype=torch.float32)
    return [(loss, scores.expand(len(chunk), -1), chunk)
            for loss, chunk in zip(losses, labels.split(list(sizes)))]


def loss_sums(losses: torch.Tensor, sizes: list[int], weighted: bool, accumulator: str) -> list[float]:
    """``loss_sum`` after each batch, as an incident tracker holds it, without the accuracy counting.

    ``weighted`` adds ``loss * batch_size`` (``IncidentBrokenTracker``, and ``ExactTracker`` with
    ``float64``), otherwise ``loss`` (``IncidentFixedTracker``). The additions are the trackers'
    own: Python floats for ``python``, 0-dim tensors of the accumulator's dtype otherwise, so
    the result equals ``replay`` bit for bit (``tests/test_streams.py``).
    """
    if accumulator not in ACCUMULATORS or accumulator == "auto":
        allowed = ", ".join(a for a in ACCUMULATORS if a != "auto")
        raise ValueError(f"accumulator={accumulator!r}: allowed: {allowed} "
                         "('auto' follows the outputs' dtype: pass it)")
    if len(losses) != len(sizes):
        raise ValueError(f"{len(losses)} losses for {len(sizes)} batch sizes: need one loss per batch")
    if accumulator == "python":
        addends = [loss * size if weighted else loss for loss, size in zip(losses.tolist(), sizes)]
        return list(itertools.accumulate(addends))
    total = torch.zeros((), dtype=getattr(torch, accumulator))
    trajectory = []
    for loss, size in zip(losses.to(total.dtype), sizes):
        total = total + (loss * size if weighted else loss)
        trajectory.append(float(total))
    return trajectory


def epoch_mean(loss_sum: float, total: int, accumulator: str) -> float:
    """``loss_sum / total`` as an incident tracker's ``get_metrics`` divides: in the accumulator's dtype."""
    if accumulator == "python":
        return loss_sum / total
    return float(torch.tensor(loss_sum, dtype=getattr(torch, accumulator)) / total)


def trajectory_note(trajectory: list[float]) -> str:
    """Where ``loss_sum`` went wrong, in words: ``inf from batch 428``, ``stalls at 32,768 from batch 2,987``, or ''."""
    overflow, stall = first_nonfinite(trajectory), stall_start(trajectory)
    if overflow is not None:
        return f"{trajectory[overflow]} from batch {overflow + 1:,}"
    if stall is not None:
        return f"stalls at {trajectory[stall]:,.0f} from batch {stall + 1:,}"
    return ""
