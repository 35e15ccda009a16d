"""Count the reads of a tensor's value back to Python: each one waits for the device on a GPU.

``.item()``, ``float(t)``, ``int(t)``, ``bool(t)`` (an ``if`` on a tensor), ``.tolist()``,
``.numpy()`` and ``.cpu()`` all copy a value to the host, so on a GPU each one waits until
every queued kernel has run. On a CPU nothing waits, but the calls are the same, so counting
them here says how many syncs a piece of code would cost on a GPU. ``count_host_reads()``
wraps those methods of ``torch.Tensor`` while its block runs and counts the calls made from
Python (a library's own C++ code is not seen). ``benchmarks/bench_exact_mean.py`` counts them
per update for ``ExactMean``, torchmetrics' ``MeanMetric`` and an ``AverageMeter``;
``tests/test_exact_mean.py`` checks that ``ExactMean.update`` makes none.
"""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager

import torch

__all__ = ["READ_METHODS", "count_host_reads"]

READ_METHODS = ("item", "tolist", "numpy", "cpu", "__float__", "__int__", "__bool__", "__index__")


@contextmanager
def count_host_reads():
    """While the block runs, a ``Counter`` of the calls to each of ``READ_METHODS``; restored after."""
    counts: Counter = Counter()
    originals = {name: getattr(torch.Tensor, name) for name in READ_METHODS}

    def counting(name, original):
        def read(self, *args, **kwargs):
            counts[name] += 1
            return original(self, *args, **kwargs)
        return read

    try:
        for name, original in originals.items():
            setattr(torch.Tensor, name, counting(name, original))
        yield counts
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)
