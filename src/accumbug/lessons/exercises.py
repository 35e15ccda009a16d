"""Checks for the find-the-bug exercises in ``notebooks/exercises/``.

The trackers a learner writes speak the package's tracker protocol (``trackers.Tracker``:
subclass ``MetricTracker``, declare states with ``add_state``, write ``update(loss, outputs,
labels)`` and ``get_metrics()``), so a solved tracker can be passed to ``train()`` as it is.
Each check runs the learner's code on cases where wrong answers part from the right one and
returns a ``Check``: one line per case, passed or not. A check never raises on wrong code
-- an exception in the learner's code is a failed case -- so the exercise notebooks,
committed unsolved, still run top to bottom (and under nbval). ``tests/test_exercises.py``
runs the notebooks' own cells: every check fails on the starting code and passes on the
solutions in ``notebooks/exercises/solutions/``.

1. ``check_epoch_loss``: a tracker to fix (``01_fix_the_tracker.ipynb``);
2. ``check_accumulator``: a tracker and accumulator to choose (``02_choose_the_accumulator.ipynb``);
3. ``check_serialiser``: a history writer to make lossless (``03_lossless_history.ipynb``);
4. ``check_rank_reduction``: an epoch loss put together across ranks (``04_reduce_across_ranks.ipynb``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from ..data import preset
from ..distributed import rank_shard, sync_simulated
from ..history import loads_strict
from ..runfolder import history_key
from ..trackers import TOPK
from .catalogue import make_tracker
from .mechanisms import scenario_losses
from .streams import batch_sizes, replay, trajectory_note

__all__ = ["Check", "check_accumulator", "check_epoch_loss", "check_rank_reduction", "check_serialiser"]

EXACT_WITHIN = 1e-9  # relative: what "equals the exact loss" means in the checks


@dataclass(frozen=True)
class Check:
    """The cases a check ran: ``(passed, description)`` each. Prints as the verdict."""

    cases: tuple[tuple[bool, str], ...]

    @property
    def passed(self) -> bool:
        return all(ok for ok, _ in self.cases)

    def __str__(self) -> str:
        failed = sum(not ok for ok, _ in self.cases)
        head = (f"correct: all {len(self.cases)} checks pass" if self.passed
                else f"not yet: {failed} of {len(self.cases)} checks fail")
        return "\n".join([head, *(f"  {'pass' if ok else 'FAIL'}  {text}" for ok, text in self.cases)])


def _attempt(name: str, case: Callable[[], tuple[bool, str]]) -> tuple[bool, str]:
    """Run one case; an exception in the learner's code fails it and is reported."""
    try:
        ok, detail = case()
    except Exception as error:  # the learner's code may raise anything; that is a finding, not a crash
        return False, f"{name}: raised {type(error).__name__}: {error}"
    return ok, f"{name}: {detail}"


def _close(value: float, truth: float) -> bool:
    return math.isfinite(value) and abs(value - truth) <= EXACT_WITHIN * abs(truth)


def _weighted_mean(losses: list[float], sizes: list[int]) -> float:
    return math.fsum(loss * size for loss, size in zip(losses, sizes)) / sum(sizes)


def _blanks(sizes) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Outputs and labels for each batch size: the checks are about the loss, so they are zeros."""
    return {n: (torch.zeros(n, TOPK), torch.zeros(n, dtype=torch.int64)) for n in set(sizes)}


def _feed(tracker, losses: torch.Tensor, sizes: list[int]) -> float:
    """``update`` once per batch with its mean loss; the epoch loss ``get_metrics`` gives."""
    blanks = _blanks(sizes)
    for loss, size in zip(losses, sizes):
        tracker.update(loss, *blanks[size])
    return float(tracker.get_metrics()["loss"])


def check_epoch_loss(cls) -> Check:
    """Check a tracker class: ``update(loss, outputs, labels)``, ``get_metrics()["loss"]``, ``reset()``.

    ``loss`` is a batch-mean loss as a 0-dim tensor. The epoch loss must be the per-sample
    mean: weighted by batch size, exact over a full-size float16 epoch, NaN for an empty
    epoch or one with a NaN batch, and a fresh start after ``reset()``.
    """
    sizes = [16] * 64 + [8]
    losses = torch.cat([torch.full((64,), 2.0), torch.tensor([6.0])])
    full = batch_sizes(preset("full"))
    half = scenario_losses(len(full), 0).to(torch.float16)

    def weighted():
        value, truth = _feed(cls(), losses, sizes), _weighted_mean(losses.tolist(), sizes)
        return _close(value, truth), f"64 batches of 16 at loss 2.0 and one of 8 at 6.0 give {value:.6f}; per-sample mean {truth:.6f}"

    def long_half():
        value, truth = _feed(cls(), half, full), _weighted_mean(half.tolist(), full)
        return _close(value, truth), f"8,520 float16 batch losses (mixed precision) give {value:.6f}; exact {truth:.6f}"

    def fresh_epoch():
        tracker = cls()
        _feed(tracker, losses, sizes)
        tracker.reset()
        value = _feed(tracker, torch.tensor([5.0]), [16])
        return value == 5.0, f"after reset() and one batch at 5.0: {value}"

    def empty():
        value = float(cls().get_metrics()["loss"])
        return math.isnan(value), f"an epoch with no batches gives {value} (NaN says 'nothing measured'; 0.0 looks like a loss)"

    def nonfinite():
        poisoned = losses.clone()
        poisoned[10] = float("nan")
        value = _feed(cls(), poisoned, sizes)
        return math.isnan(value), f"an epoch with one NaN batch gives {value} (it must show, not vanish)"

    return Check(tuple(_attempt(name, case) for name, case in (
        ("weighted by batch size", weighted), ("no half-precision sum", long_half), ("reset", fresh_epoch),
        ("empty epoch", empty), ("non-finite batch", nonfinite))))


def check_accumulator(tracker: str, accumulator: str) -> Check:
    """Check a choice of incident tracker (``incident-broken``/``incident-fixed``) and accumulator for an fp16 model.

    The model's outputs are float16 (so ``auto`` means float16). The choice must give the
    exact per-sample loss over a full-size epoch and over an epoch of very uneven batches.
    """
    full = batch_sizes(preset("full"))
    uneven = [1, 64] * 200 + [3]

    def run(sizes, seed):
        losses = scenario_losses(len(sizes), seed)
        made = make_tracker(f"{tracker}:{accumulator}")
        trajectory = replay(made, losses, sizes, outputs_dtype=torch.float16)
        value, truth = made.get_metrics()["loss"], _weighted_mean(losses.tolist(), sizes)
        note = trajectory_note(trajectory)
        why = f"; loss_sum: {note}" if note else ""
        return _close(value, truth), (f"{len(sizes):,} batches give {value:.6f}; exact {truth:.6f} "
                                      f"(relative error {(value - truth) / truth:+.1e}){why}")

    return Check(tuple(_attempt(name, case) for name, case in (
        (f"{tracker}:{accumulator}, full-size epoch", lambda: run(full, 0)),
        (f"{tracker}:{accumulator}, uneven batches", lambda: run(uneven, 1)))))


HISTORY = {
    "tracker": "incident-broken:float16",
    "note": "NaN",
    history_key("train", "loss"): [9.1621, math.inf, math.nan, -math.inf, 0.1 + 0.2, -0.0],
    history_key("train", "total"): [136312, 136312, 136312, 136312, 136312, 136312],
    "limits": [5e-324, 1.7976931348623157e308],
}
FINITE = {history_key("train", "loss"): [9.1621, 8.7352], history_key("train", "total"): [136312, 136312]}


def _same(a, b) -> bool:
    """Equal in type and bits (NaN equals NaN, -0.0 differs from 0.0), recursively."""
    if isinstance(a, float):
        return isinstance(b, float) and (math.isnan(a) and math.isnan(b) or a.hex() == b.hex())
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def check_serialiser(save: Callable[[dict], str], load: Callable[[str], dict]) -> Check:
    """Check a history writer ``save(history) -> str`` and reader ``load(text) -> dict``.

    The text must be strict JSON, every value must come back exactly (NaN, +inf, -inf, -0.0,
    the largest and smallest floats, strings that read "NaN"), and a history without
    non-finite values must be plain JSON whose values any reader gets right without ``load``.
    """
    def strict():
        text = save(HISTORY)
        try:
            loads_strict(text)
        except ValueError as error:
            return False, f"a strict JSON parser rejects the text ({error})"
        return True, "a strict JSON parser reads the text"

    def lossless():
        back = load(save(HISTORY))
        wrong = [key for key in HISTORY if not (isinstance(back, dict) and _same(HISTORY[key], back.get(key)))]
        return not wrong, "every value comes back exactly" if not wrong else f"changed: {', '.join(wrong)} -> " + \
            ", ".join(repr(back.get(key)) if isinstance(back, dict) else repr(back) for key in wrong)

    def plain():
        back = loads_strict(save(FINITE))
        kept = isinstance(back, dict) and all(_same(value, back.get(key)) for key, value in FINITE.items())
        return kept, f"a finite history read by a plain JSON parser: {back}"

    return Check(tuple(_attempt(name, case) for name, case in (
        ("strict JSON", strict), ("lossless", lossless), ("plain when finite", plain))))


RANK_BATCH = 16  # per rank, as in ``05_distributed.ipynb``


def _rank_epoch(cls, losses: torch.Tensor, world: int, trackers=None) -> tuple[float, float]:
    """One epoch on ``world`` simulated ranks: each rank's tracker takes its shard's batches as
    per-sample losses with ``counted=``, then the declared states are combined over the ranks
    as ``all_reduce`` does (``distributed.sync_simulated``) and rank 0 reads ``get_metrics``.

    Returns the learner's epoch loss and the exact one (each sample id once).
    """
    trackers = trackers or [cls() for _ in range(world)]
    for rank, tracker in enumerate(trackers):
        order, counted = rank_shard(len(losses), world, rank, seed=0, epoch=0)
        for start in range(0, len(order), RANK_BATCH):
            chosen = order[start:start + RANK_BATCH]
            outputs, labels = _blanks([len(chosen)])[len(chosen)]
            tracker.update(losses[chosen], outputs, labels, counted=counted[start:start + RANK_BATCH])
    sync_simulated(trackers)
    return float(trackers[0].get_metrics()["loss"]), math.fsum(losses.double().tolist()) / len(losses)


def _one_process(cls, losses: torch.Tensor) -> tuple[bool, str]:
    """In one process the trainer passes batch means and no ``counted``: the epoch loss must be sample-weighted."""
    sizes = [16] * 64 + [8]
    means = torch.stack([chunk.mean() for chunk in losses.split(sizes)])
    value, truth = _feed(cls(), means, sizes), _weighted_mean(means.tolist(), sizes)
    return _close(value, truth), f"one process, 65 batch means (the last of 8 samples) give {value:.6f}; exact {truth:.6f}"


def _asks_per_sample(cls) -> tuple[bool, str]:
    value = getattr(cls, "per_sample_loss", None)
    return value is True, f"per_sample_loss is {value!r} (True: under torchrun the trainer passes per-sample losses and counted=)"


def check_rank_reduction(cls) -> Check:
    """Check a tracker class meant for torchrun: ``per_sample_loss = True``, states ranks can add.

    Each simulated rank feeds its own instance its ``DistributedSampler`` shard in batches of
    16: ``loss`` is the batch's per-sample losses (float32), ``counted`` is False on the
    sampler's padding repeats. The ranks' declared states are then combined by their
    reductions. The epoch loss must be the per-sample mean over every sample id once, on 2,
    3, 4 and 5 ranks, and after ``reset()``; in one process, where the trainer passes the
    batch mean and no ``counted``, it must be the sample-weighted mean.
    """
    generator = torch.Generator().manual_seed(0)
    tiny = preset("tiny").samples  # 1,032: pads to 1,035 on 5 ranks
    losses = torch.rand(tiny, generator=generator) * 4 + 1

    def ranks(world: int, samples: int):
        def case():
            value, truth = _rank_epoch(cls, losses[:samples], world)
            shard = -(-samples // world)
            return _close(value, truth), (f"{samples:,} samples on {world} ranks ({shard} per rank, "
                                          f"{shard * world - samples} padding repeats) give {value:.6f}; "
                                          f"per-sample mean {truth:.6f}")
        return case

    def fresh_epoch():
        trackers = [cls() for _ in range(2)]
        _rank_epoch(cls, losses, 2, trackers)
        for tracker in trackers:
            tracker.reset()
        value, truth = _rank_epoch(cls, losses[:100], 2, trackers)
        return _close(value, truth), f"after reset(), a 100-sample epoch on 2 ranks gives {value:.6f}; exact {truth:.6f}"

    return Check(tuple(_attempt(name, case) for name, case in (
        ("2 ranks, a partial last batch on each", ranks(2, tiny)),
        ("4 ranks, shards of 258 and 257 counted samples", ranks(4, tiny - 2)),
        ("5 ranks, three padding repeats", ranks(5, tiny)),
        ("reset", fresh_epoch), ("one process", lambda: _one_process(cls, losses)),
        ("asks for per-sample losses", lambda: _asks_per_sample(cls)))))
