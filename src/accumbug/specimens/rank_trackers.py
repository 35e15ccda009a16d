"""SPECIMEN. The usual ways to get epoch metrics wrong across ``torchrun`` ranks.

Each is ``ExactTracker``'s arithmetic with one thing changed, so every difference in
``05_distributed.ipynb`` comes from that one thing. With one process each equals
``ExactTracker``.

* ``RankZeroTracker``: rank 0 logs its own shard; nothing is reduced. What a loop that logs
  ``if rank == 0`` without an ``all_reduce`` saves (Lightning's ``sync_dist=False``).
* ``RankMeanTracker``: each rank's epoch means, averaged (``all_reduce`` of means, ``/
  world``). Off whenever ranks see different sample counts or losses per sample.
* ``PaddedTracker``: sums reduced exactly, but ``DistributedSampler``'s padding repeats
  counted: on 5 ranks the ``tiny`` preset's 1,032 samples become 1,035.

None of them leaves the padding rows out: each ignores ``counted``.
"""

from __future__ import annotations

import torch

from ..trackers import ExactTracker

__all__ = ["NAIVE_RANK_TRACKERS", "PaddedTracker", "RankMeanTracker", "RankZeroTracker"]

MEANS = ("loss", "top1", "top5")


class _PaddingBlindTracker(ExactTracker):
    """An exact tracker that ignores ``counted``: every row it is given counts, padding included."""

    def update(self, loss, outputs, labels, counted=None):
        super().update(loss, outputs, labels)


class RankZeroTracker(_PaddingBlindTracker):
    """Rank 0 keeps its own shard's sums: every state is ``local``."""

    kind = "naive-rank0"
    state_reduction = "local"


class RankMeanTracker(_PaddingBlindTracker):
    """Sums stay this rank's own; the epoch means are the states ranks combine, by ``mean``."""

    kind = "naive-rank-mean"
    state_reduction = "local"

    def __init__(self):
        super().__init__()
        self.add_state("means", torch.full((len(MEANS),), torch.nan, dtype=torch.float64), "mean")

    def update(self, loss, outputs, labels, counted=None):
        super().update(loss, outputs, labels)
        hits = self.rank_hits.double()  # the same float64 arithmetic as get_metrics, without a host sync
        self.means = torch.stack([self.loss_sum / self.total, hits[0] / self.total * 100,
                                  hits.sum() / self.total * 100])

    def get_metrics(self):
        return {**super().get_metrics(), **dict(zip(MEANS, self.means.tolist()))}


class PaddedTracker(_PaddingBlindTracker):
    """Sums reduced exactly, the padding repeats among them."""

    kind = "naive-padded"


NAIVE_RANK_TRACKERS = (RankZeroTracker, RankMeanTracker, PaddedTracker)
