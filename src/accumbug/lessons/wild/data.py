"""The shared uneven-batch data set of the in-the-wild cases, and its exact epoch loss.

1,032 samples at batch 16: 64 full batches and a last one of 8 (the default). The model is a
linear layer with zero weights and zero bias trained at learning rate 0 (``zero_linear``), so
it predicts 0 for every sample and never changes: the mean-squared-error loss of sample ``i``
is ``targets[i] ** 2`` at every step, and the exact epoch loss is known before any framework
runs (``WildData.exact``). Any difference between what a framework reports and that value
comes from how it accumulates, not from training.

Targets are standard normal, except the outliers (target 8, loss 64): by default the samples
of the last, partial batch, so a mean of batch means (which gives those 8 samples the weight
of 16) shows clearly. A case that needs another placement (the sampler's padding duplicate
under DDP, say) passes ``outliers=``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ...validation import check_whole

__all__ = ["BATCH", "FEATURES", "SAMPLES", "WildData", "uneven_data", "zero_linear"]

SAMPLES, BATCH, FEATURES = 1032, 16, 4
OUTLIER_TARGET = 8.0


@dataclass(frozen=True)
class WildData:
    """Features ``(n, FEATURES)`` and targets ``(n, 1)``, float32, and the batch size the cases use."""

    features: torch.Tensor
    targets: torch.Tensor
    batch_size: int
    outliers: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.targets)

    def losses(self) -> torch.Tensor:
        """Each sample's loss under the zero model, in float64: ``target ** 2``."""
        return self.targets.double().reshape(-1) ** 2

    def exact(self, indices=None) -> float:
        """The exact mean loss over ``indices`` (every sample by default), each counted once."""
        losses = self.losses()
        if indices is not None:
            losses = losses[torch.as_tensor(sorted({int(i) for i in indices}), dtype=torch.int64)]
        return losses.mean().item()

    def batch_means(self, batch_size: int | None = None) -> list[float]:
        """The float64 mean loss of each batch, in order (no shuffling)."""
        return [part.mean().item() for part in self.losses().split(batch_size or self.batch_size)]

    def mean_of_batch_means(self, batch_size: int | None = None) -> float:
        """What a loop that averages batch means reports: each batch weighs the same."""
        means = self.batch_means(batch_size)
        return sum(means) / len(means)


def uneven_data(samples: int = SAMPLES, batch_size: int = BATCH, outliers=None, seed: int = 0) -> WildData:
    """The shared data set; ``outliers`` (sample indices) default to the last partial batch's samples."""
    samples = check_whole("samples", samples, 2)
    batch_size = check_whole("batch_size", batch_size, 1, samples, maximum_name="samples")
    if outliers is None:
        outliers = range(samples - (samples % batch_size or batch_size), samples)
    outliers = tuple(sorted({int(i) for i in outliers}))
    if any(not 0 <= i < samples for i in outliers):
        raise ValueError(f"outliers={outliers!r}: sample indices must lie in 0..{samples - 1}")
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(samples, FEATURES, generator=generator)
    targets = torch.randn(samples, 1, generator=generator)
    targets[list(outliers)] = OUTLIER_TARGET
    return WildData(features, targets, batch_size, outliers)


def zero_linear(features: int = FEATURES) -> nn.Linear:
    """A ``features -> 1`` linear layer with zero weights and bias: predicts 0, so the loss is ``target ** 2``."""
    layer = nn.Linear(features, 1)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer
