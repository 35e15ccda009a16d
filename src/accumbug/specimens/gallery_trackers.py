"""SPECIMEN. Trackers that print the right loss and still leave a wrong one in the history.

Each is one of the incident's trackers (``incident_trackers.py``) with one habit added that
is common in real training code. The habit, not the accumulation, decides what the history
holds, so each comes twice: on the incident's "broken" tracker (the code the write-up
found) and on its "fixed" one (the code after the write-up's fix). The mechanism gallery
runs them on the incident's scenario (``03_what_really_breaks.ipynb``,
``04_explorer.ipynb``); a trained run with the incident's end of epoch and save
(``incident_log.py``) shows their symptom (``01_side_by_side_small.ipynb``,
``02_side_by_side_full_136k.ipynb``):

* in-place mean: a running-mean buffer that is reused, zeroed in place by ``reset()``, and
  handed out by ``get_metrics``. A history that appends it holds the same tensor every
  epoch, and the ``reset()`` after the last epoch sets all of them to 0.0 before they are
  saved. In the wild: ``history.append(meter.avg)`` where ``avg`` is a tensor updated with
  ``copy_``/``fill_``.
* tensor loss: the sum is kept in a float64 tensor (so its value is exact and only its type
  is wrong), and ``get_metrics`` returns ``loss_sum / total`` unconverted, a 0-dim tensor, so
  whatever saves the history meets a tensor, not a float (a sanitiser that zeroes non-floats
  writes 0.0).
* ``GuardedTracker``: a zero-division guard, so an empty tracker reports 0.0 for every
  metric; a loop that reads the metrics after ``reset()`` saves those zeros.
"""

from __future__ import annotations

import torch

from .incident_trackers import IncidentBrokenTracker, IncidentFixedTracker

__all__ = ["GuardedTracker", "InPlaceMeanFixedTracker", "InPlaceMeanTracker", "TensorLossFixedTracker",
           "TensorLossTracker"]


class _InPlaceMean:
    """The habit: a mean buffer filled after every batch, zeroed in place by ``reset``, returned as the loss."""

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


class _TensorLoss:
    """The habit: a float64 tensor accumulator whose ``loss_sum / total`` is returned unconverted."""

    def __init__(self):
        super().__init__("float64")

    def get_metrics(self):
        return {**super().get_metrics(), "loss": self.loss_sum / self.total}


class InPlaceMeanTracker(_InPlaceMean, IncidentBrokenTracker):
    """The incident's broken tracker plus a running-mean buffer that ``reset`` zeroes in place."""

    kind = "in-place-mean"


class InPlaceMeanFixedTracker(_InPlaceMean, IncidentFixedTracker):
    """The write-up's fixed tracker plus the same running-mean buffer."""

    kind = "in-place-mean-fixed"


class TensorLossTracker(_TensorLoss, IncidentBrokenTracker):
    """The incident's broken tracker on a float64 tensor accumulator, returning ``loss_sum / total`` unconverted."""

    kind = "tensor-loss"


class TensorLossFixedTracker(_TensorLoss, IncidentFixedTracker):
    """The write-up's fixed tracker on the same float64 tensor accumulator, returning a tensor."""

    kind = "tensor-loss-fixed"


class GuardedTracker(IncidentBrokenTracker):
    """The incident's broken tracker with a zero-division guard: an empty tracker reports 0.0 for every metric."""

    kind = "guarded"

    def get_metrics(self):
        if self.total == 0:
            return {"loss": 0.0, "top1": 0.0, "top5": 0.0}
        return super().get_metrics()
