"""Epoch metric trackers: the seed's "broken" and "fixed" trackers as written, and the exact one.

All three speak the seed's protocol -- ``update(loss, outputs, labels)`` once per batch with
the batch-mean loss, ``get_metrics()`` at any time, ``reset()`` at the start of an epoch -- so
the trainer can feed them the same batches and every difference comes from accumulation.

* ``SeedBrokenTracker`` adds ``loss * batch_size`` and counts samples. The seed calls this
  the bug; it is in fact the sample-weighted mean, the exact per-sample mean of the epoch
  (the pattern of PyTorch's ImageNet ``AverageMeter`` and d2l's ``Accumulator``).
* ``SeedFixedTracker`` adds ``loss`` and counts batches: the mean of batch means, which is
  off whenever the last batch is partial.
* ``ExactTracker`` keeps float64 sums weighted by batch size and int64 counts on the
  outputs' device: no host sync per step, O(1) memory, non-finite batches counted.

``accumulator=`` chooses what ``loss_sum`` is: ``"python"`` (the seed's ``loss.item()``
floats, i.e. float64), a 0-dim tensor of ``"float64"``, ``"float32"``, ``"bfloat16"`` or
``"float16"`` on the outputs' device, or ``"auto"`` (the outputs' dtype, which is what an fp16
model gives). Only half precision reproduces the seed's overflow story; ``01`` and ``03``
notebooks show why.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "ACCUMULATORS",
    "ExactTracker",
    "SeedBrokenTracker",
    "SeedFixedTracker",
    "TRACKER_KINDS",
    "make_tracker",
]

ACCUMULATORS = ("python", "float64", "float32", "bfloat16", "float16", "auto")
TOPK = 5


def _check_accumulator(accumulator: str) -> str:
    if accumulator not in ACCUMULATORS:
        raise ValueError(f"accumulator={accumulator!r}: unknown; allowed: {', '.join(ACCUMULATORS)}")
    return accumulator


class _SeedTracker:
    """What the seed's two trackers share: reset, top-k counting, ``get_metrics``.

    Kept as the seed wrote it, including the ``targets`` list that grows by one entry per
    sample (O(N) memory; ``benchmarks/bench_trackers.py`` measures it).
    """

    kind = ""

    def __init__(self, accumulator: str = "python"):
        self.accumulator = _check_accumulator(accumulator)
        self.name = f"{self.kind}:{accumulator}"
        self.reset()

    def reset(self):
        self.loss_sum = 0.0
        self.total = 0
        self.top1_correct = 0
        self.top5_correct = 0
        self.targets = []

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


class SeedBrokenTracker(_SeedTracker):
    """The seed's "BROKEN CODE": ``loss_sum += loss * batch_size; total += batch_size``."""

    kind = "seed-broken"

    def update(self, loss, outputs, labels):
        loss = self._as_accumulator(loss, outputs)
        batch_size = labels.size(0)
        self.loss_sum += loss * batch_size  # 9.14 * 16 = 146.24
        self.total += batch_size  # total += 16
        self._count_hits(outputs, labels)


class SeedFixedTracker(_SeedTracker):
    """The seed's "FIXED CODE": ``loss_sum += loss; total += 1`` (a mean of batch means)."""

    kind = "seed-fixed"

    def update(self, loss, outputs, labels):
        loss = self._as_accumulator(loss, outputs)
        self.loss_sum += loss  # 9.14 (correct magnitude)
        self.total += 1  # total += 1 (count batches)
        self._count_hits(outputs, labels)


class ExactTracker:
    """Sample-weighted float64 loss sum and int64 counts, kept on the outputs' device.

    ``update`` launches a few small kernels and never waits for the device (no ``.item()``),
    so it costs next to nothing on a GPU; ``get_metrics`` is the one place that syncs. The
    state is four scalars whatever the epoch length, and a non-finite batch loss is added
    as it is (the epoch loss becomes NaN or inf, never a silent 0.0) and counted in
    ``nonfinite_batches``. ``loss_sum`` and the counts are sums, so ranks can ``all_reduce``
    them (``distributed.py``).
    """

    kind = "exact"
    accumulator = "float64"

    def __init__(self):
        self.name = self.kind
        self.reset()

    def reset(self):
        self.loss_sum = torch.zeros((), dtype=torch.float64)
        self.total = torch.zeros((), dtype=torch.int64)
        self.top1_correct = torch.zeros((), dtype=torch.int64)
        self.top5_correct = torch.zeros((), dtype=torch.int64)
        self.nonfinite_batches = torch.zeros((), dtype=torch.int64)

    def _states(self):
        return ("loss_sum", "total", "top1_correct", "top5_correct", "nonfinite_batches")

    def update(self, loss, outputs, labels):
        if outputs.dim() != 2 or outputs.size(1) < TOPK:
            raise ValueError(
                f"outputs shape {tuple(outputs.shape)}: expected [batch, classes] with classes >= {TOPK} for top-{TOPK}"
            )
        if labels.shape != outputs.shape[:1]:
            raise ValueError(f"labels shape {tuple(labels.shape)}: expected [{outputs.size(0)}], one label per row of outputs")
        if labels.device.type == "cpu" and labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < outputs.size(1):
            # checked on the CPU only: on a GPU the check would wait for the device every step
            raise ValueError(f"labels in [{int(labels.min())}, {int(labels.max())}]: out of range for "
                             f"{outputs.size(1)} classes (allowed 0..{outputs.size(1) - 1})")
        if self.loss_sum.device != outputs.device:
            for state in self._states():
                setattr(self, state, getattr(self, state).to(outputs.device))
        loss = torch.as_tensor(loss, device=outputs.device).detach().to(torch.float64)
        self.loss_sum += loss * labels.size(0)
        self.total += labels.size(0)
        self.nonfinite_batches += ~torch.isfinite(loss)
        correct = outputs.detach().topk(TOPK, 1, True, True).indices.eq(labels.view(-1, 1))
        self.top1_correct += correct[:, 0].sum()
        self.top5_correct += correct.sum()

    def get_metrics(self):
        samples = int(self.total)
        if samples == 0:
            nan = math.nan
            return {"loss": nan, "top1": nan, "top5": nan, "samples": 0, "nonfinite_batches": 0}
        return {
            "loss": float(self.loss_sum / samples),
            "top1": int(self.top1_correct) / samples * 100,
            "top5": int(self.top5_correct) / samples * 100,
            "samples": samples,
            "nonfinite_batches": int(self.nonfinite_batches),
        }


TRACKER_KINDS = {cls.kind: cls for cls in (SeedBrokenTracker, SeedFixedTracker, ExactTracker)}


def make_tracker(spec: str):
    """A tracker from its name: ``exact``, or ``seed-broken``/``seed-fixed`` with ``:ACCUMULATOR``.

    ``seed-broken`` alone means ``seed-broken:python``, the seed's own code.
    """
    kind, _, accumulator = str(spec).partition(":")
    if kind not in TRACKER_KINDS:
        raise ValueError(
            f"tracker={spec!r}: unknown; allowed: exact, seed-broken[:ACCUMULATOR], "
            f"seed-fixed[:ACCUMULATOR] with ACCUMULATOR one of {', '.join(ACCUMULATORS)}"
        )
    if kind == ExactTracker.kind:
        if accumulator and accumulator != "float64":
            raise ValueError(f"tracker={spec!r}: exact always accumulates in float64; write 'exact'")
        return ExactTracker()
    _check_accumulator(accumulator or "python")
    return TRACKER_KINDS[kind](accumulator or "python")
