"""Trackers of the shapes users write, for ``tests/test_probe.py`` to probe: each right or wrong in one known way.

``AverageMeter`` is the common running-average meter (``update(val, n=1)``, read ``.avg``), written here
from its description; the others are it with one habit changed.
"""

import math


class AverageMeter:
    """The running mean of a per-batch value: ``update(val, n=1)`` adds ``val`` weighted by ``n``; read ``.avg``."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.total, self.count, self.avg = 0.0, 0, 0.0

    def update(self, val, n=1):
        self.total += val * n
        self.count += n
        self.avg = self.total / self.count


class StickyMeter(AverageMeter):
    """``reset()`` puts the shown average back to 0 and leaves the sum and the count as they were."""

    def reset(self):
        self.avg = 0.0

    def __init__(self):
        self.total, self.count = 0.0, 0
        self.reset()


class NanSkippingMeter(AverageMeter):
    """Leaves out a non-finite batch without a word, so the epoch average looks healthy."""

    def update(self, val, n=1):
        if math.isfinite(val):
            super().update(val, n)


class WindowMeter(AverageMeter):
    """Needs the length of its window to be made."""

    def __init__(self, window):
        self.window = window
        super().__init__()


class Stopwatch:
    """Not a tracker at all: no ``update``."""

    def reset(self):
        pass
