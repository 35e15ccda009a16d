"""The small classifier trained in every run: an MLP with a wide class head.

The incident's model ended in a 7,120-way head; what matters for the lesson is the shape of the
loss stream (a batch-mean cross entropy starting a little above ln(classes) and falling
slowly), not the backbone, so a two-layer MLP keeps a full epoch within seconds on a GPU and
well under a minute on a laptop CPU.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SmallClassifier"]


class SmallClassifier(nn.Sequential):
    """Flatten -> Linear(in_features, hidden) -> ReLU -> Linear(hidden, classes).

    ``head_scale`` multiplies the head's default initial weights: spread-out initial logits
    put the first losses above ln(classes), as the incident's epoch-1 loss of 9.1621 sat above
    ln(7120) = 8.87.
    """

    def __init__(self, in_features: int, classes: int, hidden: int = 64, head_scale: float = 4.0):
        if in_features < 1 or classes < 1 or hidden < 1:
            raise ValueError(
                f"in_features={in_features}, classes={classes}, hidden={hidden}: all must be >= 1"
            )
        super().__init__(
            nn.Flatten(),
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, classes),
        )
        with torch.no_grad():
            self[-1].weight.mul_(head_scale)
