"""Checks for the find-the-bug exercises in ``notebooks/exercises/``.

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

from .data import preset
from .distributed import rank_shard
from .history import loads_strict
from .mechanisms import scenario_losses
from .streams import batch_sizes, replay, trajectory_note
from .trackers import make_tracker

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


def _feed(cls, losses: torch.Tensor, sizes: list[int]) -> float:
    tracker = cls()
    for loss, size in zip(losses, sizes):
        tracker.update(loss, size)
    return float(tracker.compute())


def check_epoch_loss(cls) -> Check:
    """Check a class with ``reset()``, ``update(loss, batch_size)`` and ``compute() -> float``.

    ``loss`` is a batch-mean loss as a 0-dim tensor. The epoch loss must be the per-sample
    mean: weighted by batch size, exact over a full-size float16 epoch, NaN for an empty
    epoch or one with a NaN batch, and a fresh start after ``reset()``.
    """
    sizes = [16] * 64 + [8]
    losses = torch.cat([torch.full((64,), 2.0), torch.tensor([6.0])])
    full = batch_sizes(preset("full"))
    half = scenario_losses(len(full), 0).to(torch.float16)

    def weighted():
        value, truth = _feed(cls, losses, sizes), _weighted_mean(losses.tolist(), sizes)
        return _close(value, truth), f"64 batches of 16 at loss 2.0 and one of 8 at 6.0 give {value:.6f}; per-sample mean {truth:.6f}"

    def long_half():
        value, truth = _feed(cls, half, full), _weighted_mean(half.tolist(), full)
        return _close(value, truth), f"8,520 float16 batch losses (mixed precision) give {value:.6f}; exact {truth:.6f}"

    def fresh_epoch():
        tracker = cls()
        for loss, size in zip(losses, sizes):
            tracker.update(loss, size)
        tracker.reset()
        tracker.update(torch.tensor(5.0), 16)
        value = float(tracker.compute())
        return value == 5.0, f"after reset() and one batch at 5.0: {value}"

    def empty():
        value = float(cls().compute())
        return math.isnan(value), f"an epoch with no batches gives {value} (NaN says 'nothing measured'; 0.0 looks like a loss)"

    def nonfinite():
        poisoned = losses.clone()
        poisoned[10] = float("nan")
        value = _feed(cls, poisoned, sizes)
        return math.isnan(value), f"an epoch with one NaN batch gives {value} (it must show, not vanish)"

    return Check(tuple(_attempt(name, case) for name, case in (
        ("weighted by batch size", weighted), ("no half-precision sum", long_half), ("reset", fresh_epoch),
        ("empty epoch", empty), ("non-finite batch", nonfinite))))


def check_accumulator(tracker: str, accumulator: str) -> Check:
    """Check a choice of seed tracker (``seed-broken``/``seed-fixed``) and accumulator for an fp16 model.

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
    "tracker": "seed-broken:float16",
    "note": "NaN",
    "train_loss": [9.1621, math.inf, math.nan, -math.inf, 0.1 + 0.2, -0.0],
    "train_total": [136312, 136312, 136312, 136312, 136312, 136312],
    "limits": [5e-324, 1.7976931348623157e308],
}
FINITE = {"train_loss": [9.1621, 8.7352], "train_total": [136312, 136312]}


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
    """One epoch on ``world`` simulated ranks: each rank's tracker takes its shard's batches, then
    ``state()`` is summed over the ranks (what ``all_reduce`` does) and rank 0 computes.

    Returns the learner's epoch loss and the exact one (each sample id once).
    """
    trackers = trackers or [cls() for _ in range(world)]
    for rank, tracker in enumerate(trackers):
        order, counted = rank_shard(len(losses), world, rank, seed=0, epoch=0)
        for start in range(0, len(order), RANK_BATCH):
            tracker.update(losses[order[start:start + RANK_BATCH]], counted[start:start + RANK_BATCH])
    states = [[float(v) for v in tracker.state()] for tracker in trackers]
    if len({len(state) for state in states}) != 1:
        raise ValueError(f"state() gave lists of different lengths on different ranks: {states}")
    summed = [math.fsum(column) for column in zip(*states)]
    return float(trackers[0].compute(summed)), math.fsum(losses.double().tolist()) / len(losses)


def check_rank_reduction(cls) -> Check:
    """Check a class with ``reset()``, ``update(losses, counted)``, ``state() -> list`` and ``compute(summed)``.

    Each simulated rank feeds its own instance its ``DistributedSampler`` shard in batches of
    16: ``losses`` is the batch's per-sample losses (float32), ``counted`` is False on the
    sampler's padding repeats. ``state()`` is what the rank sends; the check sums each entry
    over the ranks (``all_reduce``) and passes the sums to ``compute``. The epoch loss must be
    the per-sample mean over every sample id once, on 2, 3, 4 and 5 ranks, and after
    ``reset()``.
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
        ("reset", fresh_epoch))))
