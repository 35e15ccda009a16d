"""One seeding helper for every run, test and notebook: same seed, same bytes.

The data set needs no global seed (it is a pure function of its own seed and the sample
index, see ``data.py``); this seeds what draws from global generators: the model's
initial weights and anything a notebook or test samples with ``random`` or ``torch``.
"""

from __future__ import annotations

import random

import torch

__all__ = ["seed_everything"]


def seed_everything(seed: int) -> None:
    """Seed Python's ``random`` and torch (CPU and every CUDA device) with ``seed``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r}: must be a whole number >= 0")
    random.seed(seed)
    torch.manual_seed(seed)
