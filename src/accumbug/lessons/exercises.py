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
2. ``check_accumulator_choice``: predictions of what five trackers give, then a tracker and accumulator to
   choose (``02_choose_the_accumulator.ipynb``); the predictions are cases of the check, so a choice found by
   trying every combination is not enough, and the choice's value stays hidden until they are written;
3. ``check_serialiser``: a history writer to make lossless (``03_lossless_history.ipynb``);
4. ``check_rank_reduction``: an epoch loss put together across ranks (``04_reduce_across_ranks.ipynb``).

``float16_overflow`` explains exercise 2's overflow prediction (in its solution notebook only,
since it is the answer): at which batch of the check's full-size epoch a float16 sum of
``loss * batch_size`` becomes inf, and why not where the epoch's mean loss says. A failed
case says what came back and what was expected, measured, never how to fix it: that is the
exercise.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..data import preset
from ..distributed import rank_shard, sync_simulated
from ..history import loads_strict
from ..registry import make_tracker
from ..runfolder import history_key
from ..trackers import TOPK
from .mechanisms import scenario_losses
from .streams import batch_sizes, first_nonfinite, loss_sums, replay, trajectory_note

__all__ = ["PREDICTED", "VERDICTS", "Check", "Overflow", "check_accumulator_choice", "check_epoch_loss",
           "check_rank_reduction", "check_serialiser", "float16_overflow"]

EXACT_WITHIN = 1e-9  # relative: what "equals the exact loss" means in the checks
FLOAT16_MAX = torch.finfo(torch.float16).max  # 65,504: float16's largest finite value


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
    except Exception as error:  # noqa: BLE001 - the learner's code may raise anything; a finding, not a crash
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


def _empty_epoch(cls) -> tuple[bool, str]:
    value = float(cls().get_metrics()["loss"])
    wrong = "" if math.isnan(value) else ": a loss, though no batch was measured"
    return math.isnan(value), f"an epoch with no batches gives {value}{wrong}"


def _against(value: float, truth: float) -> str:
    """``value`` beside the per-sample mean, with the relative difference where it is finite and not zero."""
    gap = f" ({value / truth - 1:+.2%})" if math.isfinite(value) and value != truth else ""
    return f"gives {value:.6f}; the per-sample mean is {truth:.6f}{gap}"


def check_epoch_loss(cls) -> Check:
    """Check a tracker class: ``update(loss, outputs, labels)``, ``get_metrics()["loss"]``, ``reset()``.

    ``loss`` is a batch-mean loss as a 0-dim tensor. The epoch loss must be the per-sample
    mean: weighted by batch size, exact over a full-size epoch of float16 losses (a ``model.half()``
    run), NaN for an empty epoch or one with a NaN batch, and a fresh start after ``reset()``.
    """
    sizes = [16] * 64 + [8]
    losses = torch.cat([torch.full((64,), 2.0), torch.tensor([6.0])])
    full = batch_sizes(preset("full"))
    half = scenario_losses(full, 0).to(torch.float16)

    def weighted():
        value, truth = _feed(cls(), losses, sizes), _weighted_mean(losses.tolist(), sizes)
        return _close(value, truth), f"64 batches of 16 at loss 2.0, then one of 8 at 6.0: {_against(value, truth)}"

    def long_half():
        value, truth = _feed(cls(), half, full), _weighted_mean(half.tolist(), full)
        return _close(value, truth), (f"{len(full):,} float16 batch losses of a model.half() run: "
                                      f"{_against(value, truth)}")

    def fresh_epoch():
        tracker = cls()
        _feed(tracker, losses, sizes)
        tracker.reset()
        value = _feed(tracker, torch.tensor([5.0]), [16])
        return value == 5.0, f"after reset() and one batch at 5.0 the epoch gives {value}; that batch alone is 5.0"

    def nonfinite():
        poisoned = losses.clone()
        poisoned[10] = float("nan")
        value = _feed(cls(), poisoned, sizes)
        wrong = "" if math.isnan(value) else ": a number in which the NaN batch left no trace"
        return math.isnan(value), f"an epoch whose batch 11 is NaN gives {value}{wrong}"

    return Check(tuple(_attempt(name, case) for name, case in (
        ("a partial last batch", weighted), ("a long float16 epoch", long_half), ("reset", fresh_epoch),
        ("empty epoch", lambda: _empty_epoch(cls)), ("a NaN batch", nonfinite))))


PREDICTED = ("incident-fixed:python", "incident-broken:float32", "incident-broken:bfloat16", "incident-fixed:auto",
             "incident-broken:float16")  # the trackers whose full-size epoch exercise 2 asks to predict
VERDICTS = ("exact", "close", "too low", "too high", "inf")
CLOSE_WITHIN = 1e-3  # relative: "close", not exact but off by less than a thousandth
OVERFLOW_ANSWERS = ("before", "at", "after", "never")  # where the float16 sum overflows, against the estimate


def _verdict(value: float, truth: float) -> str:
    """One of ``VERDICTS`` (or ``nan``) for an epoch loss against the exact one."""
    if not math.isfinite(value):
        return "nan" if math.isnan(value) else "inf"
    error = value / truth - 1
    if abs(error) <= EXACT_WITHIN:
        return "exact"
    return "close" if abs(error) <= CLOSE_WITHIN else ("too low" if error < 0 else "too high")


def _replayed(name: str, sizes: list[int], seed: int) -> tuple[float, float, str]:
    """``name``'s epoch loss over a replayed stream (float16 outputs), the exact loss, and what its sum did."""
    losses = scenario_losses(sizes, seed)
    made = make_tracker(name)
    trajectory = replay(made, losses, sizes, outputs_dtype=torch.float16)
    note = trajectory_note(trajectory)
    return made.get_metrics()["loss"], _weighted_mean(losses.tolist(), sizes), f"; loss_sum: {note}" if note else ""


def _predicted_verdict(name: str, predicted) -> tuple[bool, str]:
    """A prediction of ``name``'s verdict over the full-size epoch, against what the replay gives."""
    if predicted not in VERDICTS:
        return False, f"no prediction: {predicted!r}; write one of {', '.join(map(repr, VERDICTS))} before you run it"
    value, truth, _ = _replayed(name, batch_sizes(preset("full")), 0)
    measured = _verdict(value, truth)
    return predicted == measured, (f"you predicted {predicted!r}; it gives {value:.6f} against the exact "
                                   f"{truth:.6f}: {measured!r}")


def _predicted_overflow(predicted) -> tuple[bool, str]:
    """A prediction of where the float16 sum becomes inf, against the estimate from the epoch's mean loss."""
    overflow = float16_overflow()
    estimate = round(overflow.estimate)
    allowed = ", ".join(repr(f"{word} {estimate}") if word != "never" else "'never'" for word in OVERFLOW_ANSWERS)
    if predicted not in [f"{word} {estimate}" for word in OVERFLOW_ANSWERS[:3]] + ["never"]:
        return False, f"no prediction: {predicted!r}; write one of {allowed} before you run it"
    measured = "never" if overflow.batch is None else (
        "before" if overflow.batch < estimate else "at" if overflow.batch == estimate else "after")
    answer = measured if measured == "never" else f"{measured} {estimate}"
    return predicted == answer, f"you predicted {predicted!r}; it becomes inf at batch {overflow.batch:,}: {answer!r}"


def _written_overflow(predicted) -> bool:
    """Whether an overflow prediction has the form asked for (its truth is ``_predicted_overflow``'s)."""
    return isinstance(predicted, str) and (predicted == "never" or predicted.split(" ")[0] in OVERFLOW_ANSWERS[:3])


def check_accumulator_choice(tracker: str, accumulator: str, verdicts: dict, overflow: str) -> Check:
    """Check exercise 2: the predictions written first, then a choice of incident tracker and accumulator.

    ``verdicts`` predicts, for each tracker of ``PREDICTED``, one of ``VERDICTS`` for its epoch
    loss over the full-size epoch; ``overflow`` where ``incident-broken:float16``'s sum becomes
    inf against the estimate 65,504 / (epoch loss x 16) (``"before 447"``, ``"at 447"``,
    ``"after 447"`` or ``"never"``). Each prediction is a case, compared with the replay, so a
    choice found by trying every combination still leaves the predictions to be made. The model
    trains under float16 autocast: its outputs are float16 (so ``auto``, the outputs' dtype,
    means float16) and its batch-mean losses float32, as ``F.cross_entropy`` returns them under
    autocast. The choice must give the exact per-sample loss over a full-size epoch and over an
    epoch of very uneven batches. Until every prediction is written, the choice's cases say only
    whether it passes: its value over the full-size epoch would answer one of the predictions.
    """
    full, uneven = batch_sizes(preset("full")), [1, 64] * 200 + [3]
    name = f"{tracker}:{accumulator}"
    given = verdicts if isinstance(verdicts, dict) else {}

    written = all(given.get(each) in VERDICTS for each in PREDICTED) and _written_overflow(overflow)

    def run(sizes, seed):
        value, truth, why = _replayed(name, sizes, seed)
        if not written:  # what the choice gives would answer a prediction still to be made
            return _close(value, truth), f"{len(sizes):,} batches; the value is shown once every prediction is written"
        return _close(value, truth), (f"{len(sizes):,} batches give {value:.6f}; exact {truth:.6f} "
                                      f"(relative error {(value - truth) / truth:+.1e}){why}")

    predictions = [(f"prediction, {each}, full-size epoch", lambda each=each: _predicted_verdict(each, given.get(each)))
                   for each in PREDICTED]
    return Check(tuple(_attempt(label, case) for label, case in (
        *predictions, ("prediction, where the float16 sum overflows", lambda: _predicted_overflow(overflow)),
        (f"{name}, full-size epoch", lambda: run(full, 0)), (f"{name}, uneven batches", lambda: run(uneven, 1)))))


def _float16_spacing(value: float) -> float:
    """The gap between neighbouring float16 numbers at ``value``'s size (a normal number)."""
    return 2.0 ** (math.frexp(value)[1] - 11)


@dataclass(frozen=True)
class Overflow:
    """Where a float16 sum of ``loss * batch_size`` becomes inf, and why there (``float16_overflow``)."""

    batches: int  # in the epoch
    batch_size: int
    batch: int | None  # 1-based: the first batch after which the float16 sum is inf; None if it stays finite
    epoch_loss: float  # the epoch's per-sample mean loss
    estimate: float  # FLOAT16_MAX / (epoch_loss * batch_size): where the epoch's mean loss says it overflows
    early_loss: float  # the mean batch loss of batches 1..batch
    exact_batch: int | None  # the first batch at which the exact (float64) sum passes FLOAT16_MAX
    half_sum: float  # the float16 sum after batch - 1
    exact_sum: float  # the float64 sum after batch - 1
    spacings: tuple[tuple[float, int, float, float], ...]  # (spacing, additions, mean addend, mean increase)

    def __str__(self) -> str:
        if self.batch is None:
            return f"the float16 sum stays finite over all {self.batches:,} batches"
        exact_at = f"at batch {self.exact_batch:,}" if self.exact_batch else "nowhere in the epoch"
        lines = [
            (f"incident-broken:float16 over the check's full-size epoch "
             f"({self.batches:,} batches of {self.batch_size}):"),
            f"  the float16 sum becomes inf at batch {self.batch:,}",
            (f"  the estimate {FLOAT16_MAX:,.0f} / ({self.epoch_loss:.4f} x {self.batch_size}) = {self.estimate:.1f} "
             "takes every batch's loss to be the epoch's mean"),
            (f"  but the losses fall over the epoch: batches 1-{self.batch:,} average {self.early_loss:.4f}, "
             f"so even an exact float64 sum passes {FLOAT16_MAX:,.0f} {exact_at}"),
            "  and float16 rounds every addition to its spacing at the sum's size:"]
        lines += [f"    sum {spacing * 1024:,.0f} to {min(spacing * 2048, FLOAT16_MAX):,.0f}, spacing {spacing:g}: "
                  f"{count} addends averaging {addend:.2f} each added {increase:.2f} on average"
                  for spacing, count, addend, increase in self.spacings[-3:]]
        lines.append(f"  after batch {self.batch - 1:,} the float16 sum is {self.half_sum:,.0f} and the exact sum "
                     f"{self.exact_sum:,.1f}; the next addition goes past {FLOAT16_MAX:,.0f} and rounds to inf")
        return "\n".join(lines)


def _by_spacing(half: list[float], addends: list[float]) -> tuple[tuple[float, int, float, float], ...]:
    """Per float16 spacing of the running sum: how many additions, their mean addend, the sum's mean increase."""
    groups = defaultdict(list)
    for before, after, addend in zip([0.0, *half], half, addends):
        if before > 0:
            groups[_float16_spacing(before)].append((addend, after - before))
    return tuple((spacing, len(pairs), math.fsum(a for a, _ in pairs) / len(pairs),
                  math.fsum(d for _, d in pairs) / len(pairs)) for spacing, pairs in sorted(groups.items()))


def float16_overflow() -> Overflow:
    """Where ``incident-broken:float16`` overflows in ``check_accumulator_choice``'s full epoch, and why.

    The same stream as the check's (``mechanisms.scenario_losses``: batch losses that fall
    through the epoch around the write-up's epoch-1 loss), summed as the tracker sums it
    (``streams.loss_sums``, bit for bit ``replay``), beside an exact float64 sum of the same
    addends. Exercise 2 asks for a prediction first; this is the answer.
    """
    sizes = batch_sizes(preset("full"))
    losses = scenario_losses(sizes, 0)
    half = loss_sums(losses, sizes, True, "float16")
    exact = loss_sums(losses, sizes, True, "float64")
    overflow = first_nonfinite(half)
    end = len(half) if overflow is None else overflow  # the batches before the overflow
    epoch_loss = _weighted_mean(losses.tolist(), sizes)
    exact_batch = next((i + 1 for i, value in enumerate(exact) if value > FLOAT16_MAX), None)
    return Overflow(
        batches=len(sizes), batch_size=sizes[0], batch=None if overflow is None else overflow + 1,
        epoch_loss=epoch_loss, estimate=FLOAT16_MAX / (epoch_loss * sizes[0]),
        early_loss=float(losses[:end + 1].double().mean()), exact_batch=exact_batch,
        half_sum=half[end - 1] if end else 0.0, exact_sum=exact[end - 1] if end else 0.0,
        spacings=_by_spacing(half[:end], [loss * size for loss, size in zip(losses.tolist(), sizes[:end])]))


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
        got = (lambda key: repr(back.get(key))) if isinstance(back, dict) else (lambda key: f"{back!r} (not a dict)")
        return not wrong, "every value comes back exactly" if not wrong else "; ".join(
            f"{key}: saved {HISTORY[key]!r}, loaded back {got(key)}" for key in wrong)

    def plain():
        back = loads_strict(save(FINITE))
        kept = isinstance(back, dict) and all(_same(value, back.get(key)) for key, value in FINITE.items())
        return kept, f"a finite history read by a plain JSON parser: {back}" + ("" if kept else f"; saved {FINITE}")

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
    return _close(value, truth), (f"one process, 65 batch means (the last of 8 samples) give {value:.6f}; "
                                  f"exact {truth:.6f}")


def _asks_per_sample(cls) -> tuple[bool, str]:
    value = getattr(cls, "per_sample_loss", None)
    return value is True, (f"per_sample_loss is {value!r} "
                           "(True: under torchrun the trainer passes per-sample losses and counted=)")


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
        return _close(value, truth), (f"after reset(), a 100-sample epoch on 2 ranks gives {value:.6f}; "
                                      f"exact {truth:.6f}")

    return Check(tuple(_attempt(name, case) for name, case in (
        ("2 ranks, a partial last batch on each", ranks(2, tiny)),
        ("4 ranks, shards of 258 and 257 counted samples", ranks(4, tiny - 2)),
        ("5 ranks, three padding repeats", ranks(5, tiny)),
        ("reset", fresh_epoch), ("one process", lambda: _one_process(cls, losses)),
        ("asks for per-sample losses", lambda: _asks_per_sample(cls)))))
