"""One seeding helper for every run, test and notebook: same seed, same bytes.

The data set needs no global seed (it is a pure function of its own seed and the sample
index, see ``data.py``); this seeds what draws from global generators: the model's
initial weights and anything a notebook or test samples with ``random`` or ``torch``.
"""

from __future__ import annotations

import random

import torch

from .validation import check_whole

__all__ = ["seed_everything"]


def seed_everything(seed: int) -> None:
    """Seed Python's ``random`` and torch (CPU and every CUDA device) with ``seed``."""
    seed = check_whole("seed", seed, 0)  # a NumPy integer too, seeded as the Python int it is
    random.seed(seed)
    torch.manual_seed(seed)
