"""SPECIMEN. Trackers that print the right loss and still leave a wrong one in the history.

Each is the incident's broken tracker (``incident_trackers.py``) with one habit added that
is common in real training code. The mechanism gallery runs each on the incident's
scenario (``03_what_really_breaks.ipynb``, ``04_explorer.ipynb``):

* ``InPlaceMeanTracker``: a running-mean buffer that is reused, zeroed in place by
  ``reset()``, and handed out by ``get_metrics``. A history that appends it holds the same
  tensor every epoch, and the ``reset()`` after the last epoch sets all of them to 0.0
  before they are saved. In the wild: ``history.append(meter.avg)`` where ``avg`` is a
  tensor updated with ``copy_``/``fill_``.
* ``TensorLossTracker``: ``get_metrics`` returns ``loss_sum / total`` unconverted, a 0-dim
  tensor, so whatever saves the history meets a tensor, not a float (a sanitiser that
  zeroes non-floats writes 0.0).
* ``GuardedTracker``: a zero-division guard, so an empty tracker reports 0.0 for every
  metric; a loop that reads the metrics after ``reset()`` saves those zeros.
"""

from __future__ import annotations

import torch

from .incident_trackers import IncidentBrokenTracker

__all__ = ["GuardedTracker", "InPlaceMeanTracker", "TensorLossTracker"]


class InPlaceMeanTracker(IncidentBrokenTracker):
    """The incident's broken tracker plus a running-mean buffer that ``reset`` zeroes in place."""

    kind = "in-place-mean"

    def __init__(self):
        self.mean = torch.zeros((), dtype=torch.float64)
        super().__init__("python")

    def reset(self):
        super().reset()
        self.mean.zero_()

    def update(self, loss, outputs, labels):
        super().update(loss, outputs, labels)
        self.mean.fill_(self.loss_sum / self.total)

    def get_metrics(self):
        return {**super().get_metrics(), "loss": self.mean}


class TensorLossTracker(IncidentBrokenTracker):
    """The incident's broken tracker on a float32 tensor accumulator, returning ``loss_sum / total`` unconverted."""

    kind = "tensor-loss"

    def __init__(self):
        super().__init__("float32")

    def get_metrics(self):
        return {**super().get_metrics(), "loss": self.loss_sum / self.total}


class GuardedTracker(IncidentBrokenTracker):
    """The incident's broken tracker with a zero-division guard: an empty tracker reports 0.0 for every metric."""

    kind = "guarded"

    def get_metrics(self):
        if self.total == 0:
            return {"loss": 0.0, "top1": 0.0, "top5": 0.0}
        return super().get_metrics()
