"""Epoch metric trackers: the protocol every tracker speaks, and the exact tracker to copy.

**The protocol** is the incident's: ``update(loss, outputs, labels)`` once per batch with the
batch-mean loss, ``get_metrics()`` at any time (a dict with ``loss`` and, when the tracker
counts them, ``top1`` and ``top5`` in percent), ``reset()`` at the start of an epoch. On top
of it, as torchmetrics' ``Metric.add_state(..., dist_reduce_fx="sum")`` does, every tracker
declares its states and how ranks combine them (``state_reductions``), so one generic
function syncs any tracker across ranks (``distributed.sync_states``), and the trainer needs
to know nothing else about it. ``Tracker`` spells the protocol out; ``MetricTracker`` is the
base class that implements the bookkeeping (declare with ``add_state``, ``reset`` restores
the defaults). The incident's trackers, the gallery's wrong ones and a learner's exercise
all subclass it (``specimens/``, ``notebooks/exercises/``).

One more declared attribute, ``per_sample_loss``: under torchrun ``DistributedSampler`` pads
each shard with repeats, and a batch mean cannot be split into counted and repeated rows.
A tracker that sets it gets the per-sample losses and a ``counted`` mask there instead of
the batch mean (``05_distributed.ipynb``).

**ExactTracker** keeps a float64 loss sum weighted by batch size and integer counts on the
outputs' device: no host sync per step, O(1) memory, non-finite batches counted, every
state a sum that ranks may add.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Protocol, runtime_checkable

import torch

from .validation import check_choice, is_real

__all__ = ["REDUCTIONS", "TOPK", "ExactTracker", "MetricTracker", "Tracker"]

TOPK = 5
REDUCTIONS = ("sum", "mean", "local")  # how ranks combine a state; "local": never combined (this rank's own)
REDUCIBLE = "a number (int or float), or a torch tensor of numbers (not bool)"  # a sum or mean state's default


@runtime_checkable
class Tracker(Protocol):
    """What the trainer needs of a tracker. ``MetricTracker`` subclasses have all of it."""

    name: str  # unique within a run: names its history file
    accumulator: str  # what loss_sum is kept in, as the history file records it
    per_sample_loss: bool  # under torchrun: per-sample losses and counted= instead of the batch mean

    def reset(self) -> None: ...

    def update(self, loss, outputs, labels, *args, **kwargs) -> None: ...

    def get_metrics(self) -> dict[str, float]: ...

    def state_reductions(self) -> dict[str, str]: ...


class MetricTracker:
    """Base class of every tracker: declared states with their reduction, ``reset`` to their defaults.

    A subclass calls ``add_state(name, default, reduce)`` in ``__init__`` for each state
    (a number or a tensor; anything, a list say, for a ``local`` state), writes ``update``
    and ``get_metrics``, and sets ``kind``; ``name`` defaults to it. The states are plain
    attributes (``self.loss_sum``), as the incident's code has them.
    """

    kind = "tracker"
    accumulator = "python"
    per_sample_loss = False

    def __init__(self) -> None:
        self.name = self.kind
        self._defaults: dict[str, Any] = {}
        self._reductions: dict[str, str] = {}

    def add_state(self, name: str, default, reduce: str = "sum") -> None:
        """Declare state ``name``, set it to ``default``, and say how ranks combine it.

        A ``sum`` or ``mean`` state must be what ``distributed.sync_states`` can combine: a
        Python int or float, or a tensor of numbers; anything else is refused here, not at the
        end of the first epoch under torchrun. A ``local`` state may hold anything.
        """
        check_choice("reduce", reduce, REDUCTIONS)
        if reduce != "local" and not _reducible(default):
            raise ValueError(f"default={default!r} of state {name!r}: a {type(default).__name__} cannot be "
                             f"combined across ranks (reduce={reduce!r}); allowed: {REDUCIBLE}, "
                             "or reduce='local' for a state each rank keeps to itself")
        self._defaults[name] = default
        self._reductions[name] = reduce
        setattr(self, name, copy.deepcopy(default))

    def reset(self) -> None:
        """Every declared state back to its default (a fresh copy: nothing shared with the last epoch)."""
        for name, default in self._defaults.items():
            setattr(self, name, copy.deepcopy(default))

    def state_reductions(self) -> dict[str, str]:
        """Each declared state's name and reduction, in declaration order."""
        return dict(self._reductions)


def _reducible(value) -> bool:
    """Whether ``distributed.sync_states`` can combine ``value``: a number (not a bool), a numeric tensor."""
    if isinstance(value, torch.Tensor):
        return value.dtype != torch.bool and not value.is_complex()
    return is_real(value)


def _outputs_not_above_label(outputs: torch.Tensor, labels: torch.Tensor, workspace: torch.Tensor) -> torch.Tensor:
    """Per row, how many outputs are ``<=`` the label's, as float32: one comparison pass and one sum.

    ``classes`` minus this count is the label's rank (0 = top-1). Ties count in the label's
    favour. NaN is never ``<=``, so it ranks above every number, as ``torch.topk`` puts it
    first: a NaN elsewhere in a row moves the label down one place, and a NaN label output
    is never a hit. The comparison writes 0/1 floats into ``workspace`` (float32, the outputs'
    shape, kept by the caller between batches), not bools: summing bools is a slow path on a
    CPU, about four times as long, and a top-k sort takes five times as long
    (``benchmarks/bench_rank_passes.py`` times the alternatives).
    """
    target = outputs.gather(1, labels.view(-1, 1))
    return torch.le(outputs, target, out=workspace).sum(1)


def _check_batch(outputs: torch.Tensor, labels: torch.Tensor) -> None:
    if outputs.dim() != 2 or outputs.size(1) < TOPK:
        raise ValueError(
            f"outputs shape {tuple(outputs.shape)}: expected [batch, classes] with classes >= {TOPK} for top-{TOPK}")
    if labels.shape != outputs.shape[:1]:
        raise ValueError(f"labels shape {tuple(labels.shape)}: expected [{outputs.size(0)}], "
                         "one label per row of outputs")


def _check_counted(loss: torch.Tensor, labels: torch.Tensor, counted: torch.Tensor | None) -> None:
    if loss.shape != labels.shape:
        raise ValueError(f"loss shape {tuple(loss.shape)}: with counted= give per-sample losses, "
                         f"shape [{labels.size(0)}], not a batch mean")
    if counted is not None and (counted.shape != labels.shape or counted.dtype != torch.bool):
        raise ValueError(f"counted shape {tuple(counted.shape)}, dtype {counted.dtype}: expected a "
                         f"bool tensor of shape [{labels.size(0)}]")


class ExactTracker(MetricTracker):
    """Sample-weighted float64 loss sum and integer counts: the exact epoch metrics.

    ``update`` launches a handful of small kernels and never waits for the device (no
    ``.item()``), so on a GPU it costs next to nothing; ``get_metrics`` is the one place that
    syncs. Top-k hits come from each label's rank, not from a sort: a label is a hit at rank
    ``r`` when exactly ``classes - r`` outputs are ``<=`` its own (``_outputs_not_above_label``).
    The device states are three tensors whatever the epoch length: the float64 loss sum, the
    int64 hits at each top-k rank, and the count of batches with a non-finite loss. Sample
    and batch counts are known on the host from the batch shapes, so they are plain
    integers. A one-batch float32 workspace for the comparison pass is reused, not grown. A
    non-finite batch loss is added as it is (the epoch loss becomes NaN or inf, never a
    silent 0.0) and counted in ``nonfinite_batches``. Every state is a sum, so ranks add them
    (``distributed.sync_states``).
    """

    kind = "exact"
    accumulator = "float64"
    per_sample_loss = True
    state_reduction = "sum"  # every state; the naive cross-rank specimens change it

    def __init__(self):
        super().__init__()
        self._workspace, self._hit_levels = torch.empty(0, 0), torch.empty(0)  # made for the first batch
        for name, default in (("loss_sum", torch.zeros((), dtype=torch.float64)),
                              ("rank_hits", torch.zeros(TOPK, dtype=torch.int64)),  # [r]: labels found at rank r
                              ("nonfinite_batches", torch.zeros((), dtype=torch.int64)),
                              ("total", 0), ("batches", 0)):  # samples, batches
            self.add_state(name, default, self.state_reduction)

    def _scratch_for(self, outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The comparison workspace for this batch and the hit levels ``classes - r`` for its class count.

        Both are made again only when the class count, the device or a larger batch asks for it.
        """
        rows, classes = outputs.shape
        workspace = self._workspace
        if workspace.size(0) < rows or workspace.size(1) != classes or workspace.device != outputs.device:
            self._workspace = workspace = torch.empty(rows, classes, dtype=torch.float32, device=outputs.device)
            self._hit_levels = classes - torch.arange(TOPK, dtype=torch.float32, device=outputs.device)
        return workspace[:rows], self._hit_levels

    def _labels_not_above(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        workspace, _ = self._scratch_for(outputs)
        try:
            return _outputs_not_above_label(outputs.detach(), labels, workspace)
        except RuntimeError:  # on a CPU, gather refuses an index out of range; say which labels and why
            low, high = (int(v) for v in torch.aminmax(labels))
            if low < 0 or high >= outputs.size(1):
                raise ValueError(f"labels in [{low}, {high}]: out of range for {outputs.size(1)} classes "
                                 f"(allowed 0..{outputs.size(1) - 1})") from None
            raise

    def update(self, loss, outputs, labels, counted=None):
        """Add one batch: its mean ``loss`` (0-dim), or its per-sample losses (``[batch]``).

        ``counted`` (a bool tensor, one per row) leaves out the rows that are not this
        rank's to count, such as ``DistributedSampler``'s padding repeats; it needs
        per-sample losses, since a batch mean cannot be split.
        """
        _check_batch(outputs, labels)
        if self.loss_sum.device != outputs.device:
            self.loss_sum, self.rank_hits, self.nonfinite_batches = (
                t.to(outputs.device) for t in (self.loss_sum, self.rank_hits, self.nonfinite_batches))
        loss = loss.detach() if isinstance(loss, torch.Tensor) else torch.tensor(float(loss), device=outputs.device)
        not_above = self._labels_not_above(outputs, labels)
        samples = labels.size(0)
        if counted is None and loss.dim() == 0:
            self.loss_sum.add_(loss, alpha=samples)  # in float64: the batch mean times its size
            self.nonfinite_batches.add_(torch.isnan(loss - loss))  # inf - inf and NaN - NaN are NaN
        else:
            _check_counted(loss, labels, counted)
            if counted is not None:
                samples = int(counted.sum())  # host-side when counted is on the CPU, as the trainer passes it
                counted = counted.to(outputs.device, non_blocking=True)
                loss = torch.where(counted, loss, torch.zeros((), dtype=loss.dtype, device=loss.device))
                not_above = not_above.masked_fill(~counted, 0)  # 0 is no hit level: a row left out
            self.loss_sum.add_(loss.sum(dtype=torch.float64))
            self.nonfinite_batches.add_(torch.isnan(loss - loss).any())
        self.rank_hits.add_(not_above.view(-1, 1).eq(self._hit_levels).sum(0))
        self.total += samples
        self.batches += 1

    def get_metrics(self):
        samples = self.total
        if samples == 0:
            nan = math.nan
            return {"loss": nan, "top1": nan, "top5": nan, "samples": 0, "nonfinite_batches": 0}
        hits = self.rank_hits.tolist()
        return {
            "loss": float(self.loss_sum / samples),
            "top1": hits[0] / samples * 100,
            "top5": sum(hits) / samples * 100,
            "samples": samples,
            "nonfinite_batches": int(self.nonfinite_batches),
        }
