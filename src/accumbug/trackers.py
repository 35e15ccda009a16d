"""Epoch metric trackers: the seed's "broken" and "fixed" trackers as written, the exact one, naive rank ones.

All of them speak the seed's protocol -- ``update(loss, outputs, labels)`` once per batch with
the batch-mean loss, ``get_metrics()`` at any time, ``reset()`` at the start of an epoch -- so
the trainer can feed them the same batches and every difference comes from accumulation.

* ``SeedBrokenTracker`` adds ``loss * batch_size`` and counts samples. The seed calls this
  the bug; it is in fact the sample-weighted mean, the exact per-sample mean of the epoch
  (the pattern of PyTorch's ImageNet ``AverageMeter`` and d2l's ``Accumulator``).
* ``SeedFixedTracker`` adds ``loss`` and counts batches: the mean of batch means, which is
  off whenever the last batch is partial.
* ``ExactTracker`` keeps float64 sums weighted by batch size and int64 counts on the
  outputs' device: no host sync per step, O(1) memory, non-finite batches counted. Across
  ranks it sums its states with ``all_reduce`` (``sync``) and counts each sample once.
* ``RankZeroTracker``, ``RankMeanTracker`` and ``PaddedTracker`` are the usual ways to get
  that wrong under ``torchrun`` (rank 0's shard alone, the mean of per-rank means, padding
  duplicates counted); with one process they equal ``ExactTracker``.

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
    "NAIVE_RANK_TRACKERS",
    "PaddedTracker",
    "RankMeanTracker",
    "RankZeroTracker",
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


class ExactTracker:
    """Sample-weighted float64 loss sum and integer counts: the exact epoch metrics.

    ``update`` launches a handful of small kernels and never waits for the device (no
    ``.item()``), so on a GPU it costs next to nothing; ``get_metrics`` is the one place that
    syncs. Top-k hits come from each label's rank, not from a sort: a label is a hit at rank
    ``r`` when exactly ``classes - r`` outputs are ``<=`` its own (``_outputs_not_above_label``). The device
    state is three tensors whatever the epoch length: the float64 loss sum, the int64 hits at
    each top-k rank, and the count of batches with a non-finite loss. A one-batch float32
    workspace for the comparison pass is reused, not grown. Sample and batch counts are known
    on the host from the batch shapes, so they are plain integers. A non-finite batch loss is
    added as it is (the epoch loss becomes NaN or inf, never a silent 0.0) and counted in
    ``nonfinite_batches``. Every state is a sum, so ranks can ``all_reduce`` them
    (``distributed.py``).
    """

    kind = "exact"
    accumulator = "float64"

    def __init__(self):
        self.name = self.kind
        self._workspace, self._hit_levels = torch.empty(0, 0), torch.empty(0)  # made for the first batch
        self.reset()

    def reset(self):
        self.loss_sum = torch.zeros((), dtype=torch.float64)
        self.rank_hits = torch.zeros(TOPK, dtype=torch.int64)  # rank_hits[r]: labels found at rank r
        self.nonfinite_batches = torch.zeros((), dtype=torch.int64)  # batches with a NaN or inf loss
        self.total = 0  # samples
        self.batches = 0

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

    def update(self, loss, outputs, labels, counted=None):
        """Add one batch: its mean ``loss`` (0-dim), or its per-sample losses (``[batch]``).

        ``counted`` (a bool tensor, one per row) leaves out the rows that are not this
        rank's to count, such as ``DistributedSampler``'s padding duplicates; it needs
        per-sample losses, since a batch mean cannot be split.
        """
        if outputs.dim() != 2 or outputs.size(1) < TOPK:
            raise ValueError(
                f"outputs shape {tuple(outputs.shape)}: expected [batch, classes] with classes >= {TOPK} for top-{TOPK}"
            )
        if labels.shape != outputs.shape[:1]:
            raise ValueError(f"labels shape {tuple(labels.shape)}: expected [{outputs.size(0)}], one label per row of outputs")
        if self.loss_sum.device != outputs.device:
            self.loss_sum, self.rank_hits, self.nonfinite_batches = (
                t.to(outputs.device) for t in (self.loss_sum, self.rank_hits, self.nonfinite_batches))
        loss = loss.detach() if isinstance(loss, torch.Tensor) else torch.tensor(float(loss), device=outputs.device)
        workspace, hit_levels = self._scratch_for(outputs)
        try:
            not_above = _outputs_not_above_label(outputs.detach(), labels, workspace)
        except RuntimeError:  # on a CPU, gather refuses an index out of range; say which labels and why
            low, high = (int(v) for v in torch.aminmax(labels))
            if low < 0 or high >= outputs.size(1):
                raise ValueError(f"labels in [{low}, {high}]: out of range for {outputs.size(1)} classes "
                                 f"(allowed 0..{outputs.size(1) - 1})") from None
            raise
        if counted is None and loss.dim() == 0:
            self.loss_sum.add_(loss, alpha=labels.size(0))  # in float64: the batch mean times its size
            self.nonfinite_batches.add_(torch.isnan(loss - loss))  # inf - inf and NaN - NaN are NaN
            samples = labels.size(0)
        else:
            if loss.shape != labels.shape:
                raise ValueError(f"loss shape {tuple(loss.shape)}: with counted= give per-sample losses, "
                                 f"shape [{labels.size(0)}], not a batch mean")
            samples = labels.size(0)
            if counted is not None:
                if counted.shape != labels.shape or counted.dtype != torch.bool:
                    raise ValueError(f"counted shape {tuple(counted.shape)}, dtype {counted.dtype}: expected a "
                                     f"bool tensor of shape [{labels.size(0)}]")
                samples = int(counted.sum())  # host-side when counted is on the CPU, as the trainer passes it
                counted = counted.to(outputs.device, non_blocking=True)
                loss = torch.where(counted, loss, torch.zeros((), dtype=loss.dtype, device=loss.device))
                not_above = not_above.masked_fill(~counted, 0)  # 0 is no hit level: a row left out
            self.loss_sum.add_(loss.sum(dtype=torch.float64))
            self.nonfinite_batches.add_(torch.isnan(loss - loss).any())
        self.rank_hits.add_(not_above.view(-1, 1).eq(hit_levels).sum(0))
        self.total += samples
        self.batches += 1

    def sync(self, ranks) -> None:
        """Sum the epoch's states over all ranks (``ranks.sum_`` is an in-place ``all_reduce``).

        Called once at the end of an epoch, before ``get_metrics``: two collectives, one
        float64 and one int64, so the sums stay exact (``distributed.py``).
        """
        counts = torch.cat([self.rank_hits, self.nonfinite_batches.view(1),
                            torch.tensor([self.total, self.batches], device=self.rank_hits.device)])
        ranks.sum_(self.loss_sum)
        ranks.sum_(counts)
        self.rank_hits, self.nonfinite_batches = counts[:TOPK].clone(), counts[TOPK].clone()
        self.total, self.batches = (int(v) for v in counts[TOPK + 1:].tolist())

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


class _PaddingBlindTracker(ExactTracker):
    """An exact tracker that ignores ``counted``: every row it is given counts, padding included."""

    def update(self, loss, outputs, labels, counted=None):
        super().update(loss, outputs, labels)


class RankZeroTracker(_PaddingBlindTracker):
    """Naive across ranks: rank 0 logs the metrics of its own shard; nothing is reduced.

    What a loop that logs ``if rank == 0`` without an ``all_reduce`` saves. With one
    process it equals ``ExactTracker`` (``05_distributed.ipynb`` shows it with 2 ranks).
    """

    kind = "naive-rank0"

    def sync(self, ranks) -> None:
        """Nothing: rank 0 keeps its own shard's sums."""


class RankMeanTracker(_PaddingBlindTracker):
    """Naive across ranks: each rank's epoch means, averaged (``all_reduce`` of means, ``/ world``).

    Off whenever ranks see different sample counts or losses per sample; ``loss_sum`` and
    ``total`` stay this rank's own.
    """

    kind = "naive-rank-mean"

    def reset(self):
        super().reset()
        self._rank_means = None

    def sync(self, ranks) -> None:
        local = super().get_metrics()
        means = torch.tensor([local[key] for key in ("loss", "top1", "top5")], dtype=torch.float64,
                             device=self.loss_sum.device)
        ranks.sum_(means)
        self._rank_means = dict(zip(("loss", "top1", "top5"), (means / ranks.world).tolist()))

    def get_metrics(self):
        metrics = super().get_metrics()
        return {**metrics, **self._rank_means} if self._rank_means is not None else metrics


class PaddedTracker(_PaddingBlindTracker):
    """Naive across ranks: sums reduced exactly, but ``DistributedSampler``'s padding rows counted.

    On 5 ranks the ``tiny`` preset's 1,032 samples become 1,035: three samples counted twice.
    """

    kind = "naive-padded"


NAIVE_RANK_TRACKERS = (RankZeroTracker.kind, RankMeanTracker.kind, PaddedTracker.kind)
TRACKER_KINDS = {cls.kind: cls for cls in (SeedBrokenTracker, SeedFixedTracker, ExactTracker, RankZeroTracker,
                                           RankMeanTracker, PaddedTracker)}


def make_tracker(spec: str):
    """A tracker from its name: ``exact``, a naive cross-rank one (``naive-rank0``,
    ``naive-rank-mean``, ``naive-padded``), or ``seed-broken``/``seed-fixed`` with ``:ACCUMULATOR``.

    ``seed-broken`` alone means ``seed-broken:python``, the seed's own code.
    """
    kind, _, accumulator = str(spec).partition(":")
    if kind not in TRACKER_KINDS:
        raise ValueError(
            f"tracker={spec!r}: unknown; allowed: exact, {', '.join(NAIVE_RANK_TRACKERS)}, seed-broken[:ACCUMULATOR], "
            f"seed-fixed[:ACCUMULATOR] with ACCUMULATOR one of {', '.join(ACCUMULATORS)}"
        )
    if issubclass(TRACKER_KINDS[kind], ExactTracker):
        if accumulator and accumulator != "float64":
            raise ValueError(f"tracker={spec!r}: {kind} always accumulates in float64; write '{kind}'")
        return TRACKER_KINDS[kind]()
    _check_accumulator(accumulator or "python")
    return TRACKER_KINDS[kind](accumulator or "python")
