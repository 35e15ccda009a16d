"""SPECIMEN. The incident's "broken" and "fixed" trackers, as its write-up gives them.

What is wrong: the write-up has them the wrong way round.

* ``IncidentBrokenTracker`` adds ``loss * batch_size`` and counts samples. The write-up calls
  this the bug; it is in fact the sample-weighted mean, the exact per-sample mean of the
  epoch (the pattern of PyTorch's ImageNet ``AverageMeter`` and d2l's ``Accumulator``).
* ``IncidentFixedTracker`` adds ``loss`` and counts batches: the mean of batch means, which
  is off whenever the last batch is partial. In the wild: any loop that does
  ``running_loss += loss.item()`` and divides by ``len(loader)``.

``accumulator=`` chooses what ``loss_sum`` is: ``"python"`` (the incident's ``loss.item()``
floats, i.e. float64), a 0-dim tensor of ``"float64"``, ``"float32"``, ``"bfloat16"`` or
``"float16"`` on the outputs' device, or ``"auto"``: the outputs' dtype, not the loss's. That
is a buffer made from the outputs (``torch.zeros_like(outputs[0, 0])``, then ``buffer +=
loss``), half precision under ``torch.autocast``, where the loss itself is float32
(``F.cross_entropy`` runs in float32 there), so ``loss_sum += loss`` without ``.item()`` would
give a float32 sum. The loss is float16 only when the model runs in half precision
(``model.half()``). ``tests/test_autocast.py`` pins these dtypes. Only half precision
reproduces the write-up's overflow story. Taught in ``01_side_by_side_small.ipynb``
and ``02_side_by_side_full_136k.ipynb``; ``03_what_really_breaks.ipynb`` measures the claims.

Both keep the incident's ``targets`` list that grows by one entry per sample (O(N) memory;
``benchmarks/bench_memory.py`` measures it). Their states are declared ``local``: the
incident's code never reduced them across ranks, so under torchrun they keep rank 0's shard.
"""

from __future__ import annotations

import torch

from ..trackers import TOPK, MetricTracker
from ..validation import check_choice

__all__ = ["ACCUMULATORS", "IncidentBrokenTracker", "IncidentFixedTracker"]

ACCUMULATORS = ("python", "float64", "float32", "bfloat16", "float16", "auto")


class _IncidentTracker(MetricTracker):
    """What the incident's two trackers share: their states, top-k counting, ``get_metrics``."""

    def __init__(self, accumulator: str = "python"):
        super().__init__()
        self.accumulator = check_choice("accumulator", accumulator, ACCUMULATORS)
        self.name = f"{self.kind}:{accumulator}"
        for name, default in (("loss_sum", 0.0), ("total", 0), ("top1_correct", 0), ("top5_correct", 0),
                              ("targets", [])):
            self.add_state(name, default, "local")

    def _as_accumulator(self, loss, outputs):
        """The batch loss as the accumulator holds it: a float (``loss.item()``) or a 0-dim tensor."""
        if self.accumulator == "python":
            return float(loss)
        dtype = outputs.dtype if self.accumulator == "auto" else getattr(torch, self.accumulator)
        return torch.as_tensor(loss, device=outputs.device).detach().to(dtype)

    def _count_hits(self, outputs, labels):
        _, pred = outputs.topk(TOPK, 1, True, True)
        correct = pred.eq(labels.view(-1, 1))
        self.top1_correct += correct[:, :1].sum().item()
        self.top5_correct += correct[:, :TOPK].sum().item()
        self.targets.extend(labels.cpu().tolist())

    def get_metrics(self):
        num_samples = len(self.targets)
        loss = self.loss_sum / self.total
        return {
            "loss": float(loss),
            "top1": self.top1_correct / num_samples * 100,
            "top5": self.top5_correct / num_samples * 100,
        }


class IncidentBrokenTracker(_IncidentTracker):
    """The incident's "BROKEN CODE": ``loss_sum += loss * batch_size; total += batch_size``."""

    kind = "incident-broken"

    def update(self, loss, outputs, labels):
        loss = self._as_accumulator(loss, outputs)
        batch_size = labels.size(0)
        self.loss_sum += loss * batch_size  # 9.14 * 16 = 146.24
        self.total += batch_size  # total += 16
        self._count_hits(outputs, labels)


class IncidentFixedTracker(_IncidentTracker):
    """The incident's "FIXED CODE": ``loss_sum += loss; total += 1`` (a mean of batch means)."""

    kind = "incident-fixed"

    def update(self, loss, outputs, labels):
        loss = self._as_accumulator(loss, outputs)
        self.loss_sum += loss  # 9.14 (correct magnitude)
        self.total += 1  # total += 1 (count batches)
        self._count_hits(outputs, labels)
