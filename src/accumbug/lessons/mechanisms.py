"""The mechanism gallery: each way a history can end up wrong, as a small runnable case.

Every case starts from the write-up's own console (``incident.py``): four epochs whose batch
losses and top-1/top-5 hit rates follow its printed values. It runs one faulty piece of
code on that scenario -- a tracker, the order of ``reset()`` and the history append, a
serialiser, or a training step -- and returns an ``Outcome``: the loss the console printed
each epoch, the loss the history file holds when read back, the exact per-sample loss, the
file's top-5 accuracy, and whether the weights came out as with correct accounting
(``weights.py``). Each ``Mechanism`` adds a one-line cause and a one-line fix.

``diagnosis`` asks every outcome the questions that the write-up's evidence poses -- did
the console show real values every epoch, does the file hold exactly 0.0 every epoch, are
the saved accuracies non-zero, are the weights fine -- so the table of which mechanisms fit
is computed, not typed. ``03_what_really_breaks.ipynb`` teaches it; ``04_explorer.ipynb``
shows each case.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import torch

from ..data import preset
from ..distributed import rank_shard
from ..history import read_back
from ..runfolder import history_key, series
from ..specimens.gallery_trackers import (
    GuardedTracker,
    InPlaceMeanTracker,
    TensorLossTracker,
)
from ..specimens.incident_trackers import IncidentBrokenTracker, IncidentFixedTracker
from ..specimens.serialisers import write
from ..trackers import ExactTracker
from ..train import TrainConfig
from .incident import INCIDENT_CONSOLE
from .report import format_rows
from .streams import batch_sizes, scored_batches, simulated_losses, trajectory_note
from .weights import bitwise_equal, toy_sgd, trained_weights

__all__ = ["EVIDENCE", "MECHANISMS", "Mechanism", "Outcome", "diagnosis", "exact_loss", "fitting", "format_diagnosis", "format_gallery", "gallery",
           "log_epochs", "mechanism", "scenario_losses", "incident_scenario"]

SPREAD = 0.2  # each epoch's batch losses fall from (console loss + SPREAD) to (console loss - SPREAD)
REAL_WITHIN = 0.02  # a console value is "real" when finite and within 2 % of the exact loss
WEIGHTS_CONFIG = TrainConfig(preset="tiny", epochs=1, samples=264, classes=16)  # 17 batches, the last of 8
NONFINITE_AT = (1, 100)  # (epoch index, batch index) of the non-finite batch
BATCH_SIZE = 16  # per rank, in the DistributedSampler case
RANKS = 5  # DistributedSampler ranks: 1,032 samples pad to 1,035, three duplicates per epoch
MICRO_BATCHES = 4  # gradient accumulation steps per optimizer step
CONTEXT = 0.3  # extra per-token loss per e-fold shorter sequence, for the accumulation case


def scenario_losses(batches: int, epoch: int, noise: float = 0.05) -> torch.Tensor:
    """Batch losses of epoch ``epoch`` (0-based): falling linearly around the write-up's console loss."""
    printed = INCIDENT_CONSOLE[epoch]["loss"]
    return simulated_losses(batches, printed + SPREAD, printed - SPREAD, noise, seed=epoch)


def incident_scenario(sizes: list[int] | None = None, noise: float = 0.05, extra: torch.Tensor | None = None) -> list[list[tuple]]:
    """Four epochs of ``(loss, outputs, labels)`` batches shaped like the write-up's console.

    Epoch ``e``'s batch losses are ``scenario_losses`` (plus ``extra``, one value per batch),
    and its hit rates are its console top-1 and top-5. ``sizes`` defaults to the small
    preset's 852 batches.
    """
    sizes = batch_sizes(preset("small")) if sizes is None else sizes
    epochs = []
    for index, printed in enumerate(INCIDENT_CONSOLE):
        losses = scenario_losses(len(sizes), index, noise)
        losses = losses if extra is None else losses + extra
        epochs.append(scored_batches(losses, sizes, printed["top1"] / 100, printed["top5"] / 100, seed=index))
    return epochs


def exact_loss(batches) -> float:
    """The per-sample mean of an epoch: batch losses weighted by batch size, in float64."""
    return sum(float(loss) * len(labels) for loss, _, labels in batches) / sum(len(labels) for _, _, labels in batches)


def log_epochs(epochs, tracker, read_after_reset: bool = False) -> tuple[list[float], dict, list[float]]:
    """The incident's loop around its tracker: update every batch, print, append to the history, reset.

    Returns the console's epoch losses (as printed, 4 decimals), the history in memory, and
    ``loss_sum`` after each batch of the first epoch. With ``read_after_reset`` the history
    is read after ``reset()`` instead of before it.
    """
    console, history, trajectory = [], {history_key("train", key): [] for key in ("loss", "top1", "top5")}, []
    for index, batches in enumerate(epochs):
        for loss, outputs, labels in batches:
            tracker.update(loss, outputs, labels)
            if index == 0:
                trajectory.append(float(tracker.loss_sum))
        shown = tracker.get_metrics()
        console.append(float(f"{float(shown['loss']):.4f}"))
        if read_after_reset:
            tracker.reset()
        kept = tracker.get_metrics() if read_after_reset else shown
        for key in ("loss", "top1", "top5"):
            history[history_key("train", key)].append(kept[key])
        tracker.reset()
    return console, history, trajectory


@dataclass(frozen=True)
class Outcome:
    """What one case did: per epoch, the console's loss, the file's loss and top-5, the exact loss."""

    console: list[float]
    file: list[float]
    exact: list[float]
    file_top5: list[float]
    weights_fine: bool
    file_text: str
    batches: int
    trajectory: list[float]


def _outcome(console, history, epochs, weights_fine, serialiser, trajectory, batches=None) -> Outcome:
    text = write(history, serialiser)
    saved = read_back(text)
    return Outcome(console=console, file=[float(v) for v in series(saved, "loss")],
                   exact=[exact_loss(epoch) for epoch in epochs],
                   file_top5=[float(v) for v in series(saved, "top5")], weights_fine=weights_fine, file_text=text,
                   batches=len(epochs[0]) if batches is None else batches, trajectory=trajectory)


@lru_cache(maxsize=1)
def _reference_weights() -> dict[str, torch.Tensor]:
    """The weights of ``WEIGHTS_CONFIG`` trained with the exact tracker: what every logging case is compared with."""
    return trained_weights(WEIGHTS_CONFIG, [ExactTracker()])


def _logged(make_tracker: Callable, epochs=None, serialiser: str = "strict", read_after_reset: bool = False,
            weights_fine: bool | None = None) -> Outcome:
    """A logging bug: run the incident's loop with a fresh tracker; weights from the trainer with it attached."""
    epochs = incident_scenario() if epochs is None else epochs
    console, history, trajectory = log_epochs(epochs, make_tracker(), read_after_reset)
    if weights_fine is None:
        weights_fine = bitwise_equal(_reference_weights(), trained_weights(WEIGHTS_CONFIG, [make_tracker()]))
    return _outcome(console, history, epochs, weights_fine, serialiser, trajectory)


def _float16_overflow() -> Outcome:
    return _logged(lambda: IncidentBrokenTracker("float16"))


def _float16_stall() -> Outcome:
    return _logged(lambda: IncidentFixedTracker("float16"), incident_scenario(batch_sizes(preset("full"))))


def _bfloat16_stall() -> Outcome:
    return _logged(lambda: IncidentBrokenTracker("bfloat16"))


def _same_toy_weights(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bitwise_equal({"w": a}, {"w": b})


def _nonfinite_batch() -> Outcome:
    epochs = incident_scenario()
    epoch, batch = NONFINITE_AT
    _, outputs, labels = epochs[epoch][batch]
    epochs[epoch][batch] = (torch.tensor(float("nan")), outputs, labels)
    # weights: the GradScaler skips the poisoned step (batch 5 holds item 80); fine if that equals leaving it out
    steps = [[(b * 16 + i, 1 / 16) for i in range(16)] for b in range(16)]
    weights_fine = _same_toy_weights(toy_sgd(steps, items=256, poisoned=80), toy_sgd(steps[:5] + steps[6:], items=256))
    return _logged(lambda: IncidentBrokenTracker("python"), epochs, weights_fine=weights_fine)


def _lossy_zero() -> Outcome:
    return _logged(lambda: IncidentBrokenTracker("float16"), serialiser="incident-sanitiser")


def _nan_to_num() -> Outcome:
    return _logged(lambda: IncidentBrokenTracker("float16"), serialiser="nan_to_num")


def _broad_sanitiser() -> Outcome:
    return _logged(TensorLossTracker, serialiser="broad-sanitiser")


def _aliased() -> Outcome:
    return _logged(InPlaceMeanTracker)


def _read_after_reset() -> Outcome:
    return _logged(GuardedTracker, read_after_reset=True)


def _partial_last_batch() -> Outcome:
    return _logged(lambda: IncidentFixedTracker("python"))


def _rank_shards(samples: int, epoch: int) -> list[list[int]]:
    """Each rank's sample indices for ``epoch``, as ``DistributedSampler`` gives them (padded to equal length)."""
    return [rank_shard(samples, RANKS, rank, 0, epoch)[0].tolist() for rank in range(RANKS)]


def _ddp_padding() -> Outcome:
    """Ranks simulated in one process: each feeds its own exact tracker; rank 0 prints; the file keeps the rank average."""
    samples = preset("tiny").samples
    per_sample = incident_scenario([1] * samples, noise=2.0)
    console, history = [], {history_key("train", key): [] for key in ("loss", "top1", "top5")}
    for index, items in enumerate(per_sample):
        per_rank = []
        for shard in _rank_shards(samples, index):
            tracker = IncidentBrokenTracker("python")
            for batch in _rank_batches(shard, items):
                tracker.update(*batch)
            per_rank.append(tracker.get_metrics())
        console.append(float(f"{per_rank[0]['loss']:.4f}"))
        for key in ("loss", "top1", "top5"):
            history[history_key("train", key)].append(sum(m[key] for m in per_rank) / RANKS)  # all_reduce(AVG)
    rank_batches = -(-len(_rank_shards(samples, 0)[0]) // BATCH_SIZE)
    return _outcome(console, history, per_sample, _ddp_weights_fine(samples), "strict", [], batches=rank_batches)


def _rank_batches(indices: list[int], items: list[tuple]):
    """A rank's batches from its sampler's indices: the batch-mean loss, outputs and labels."""
    for start in range(0, len(indices), BATCH_SIZE):
        chosen = [items[i] for i in indices[start:start + BATCH_SIZE]]
        yield (torch.stack([loss for loss, _, _ in chosen]).mean(), torch.cat([o for _, o, _ in chosen]),
               torch.cat([labels for _, _, labels in chosen]))


def _ddp_weights_fine(samples: int) -> bool:
    """One epoch of DDP steps (per-rank batch means, averaged over ranks) against exactly-once counting."""
    shards = _rank_shards(samples, 0)
    padded, once, seen = [], [], set()
    for start in range(0, len(shards[0]), BATCH_SIZE):
        batches = [shard[start:start + BATCH_SIZE] for shard in shards]
        padded.append([(i, 1 / (RANKS * len(b))) for b in batches for i in b])
        unique = [i for b in batches for i in b if not (i in seen or seen.add(i))]
        once.append([(i, 1 / len(unique)) for i in unique])
    return _same_toy_weights(toy_sgd(padded, samples), toy_sgd(once, samples))


def _grad_accumulation() -> Outcome:
    """Micro-batches of variable token counts, logged (and back-propagated) as a mean of micro-batch means."""
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(32, 513, (256,), generator=generator).tolist()
    epochs = incident_scenario(tokens, extra=CONTEXT * torch.log(512 / torch.tensor(tokens, dtype=torch.float32)))
    first = tokens[:4 * MICRO_BATCHES]  # the first four optimizer steps, on a pool of toy tokens
    starts = [sum(first[:g]) for g in range(len(first))]
    per_micro, per_token = [], []
    for step in range(0, len(first), MICRO_BATCHES):
        micro = range(step, step + MICRO_BATCHES)
        step_tokens = sum(first[g] for g in micro)
        per_micro.append([(starts[g] + t, 1 / (MICRO_BATCHES * first[g])) for g in micro for t in range(first[g])])
        per_token.append([(starts[g] + t, 1 / step_tokens) for g in micro for t in range(first[g])])
    weights_fine = _same_toy_weights(toy_sgd(per_micro, sum(first)), toy_sgd(per_token, sum(first)))
    return _logged(lambda: IncidentFixedTracker("python"), epochs, weights_fine=weights_fine)


@dataclass(frozen=True)
class Mechanism:
    """One way a history goes wrong: a key, a title, a one-line cause and fix, and its runnable case."""

    key: str
    title: str
    cause: str
    fix: str
    case: Callable[[], Outcome]


MECHANISMS = (
    Mechanism("float16-overflow", "float16 accumulator overflows",
              "The incident's broken tracker sums loss * 16 in float16; the sum passes 65,504 and becomes inf.",
              "Sum in float64 (or Python floats) whatever the model's dtype.", _float16_overflow),
    Mechanism("float16-stall", 'float16 "fixed" tracker stalls',
              "Summing ~9 per batch in float16, the sum grows until float16's spacing there exceeds twice the "
              "addend; from then on each addend rounds away.",
              "Sum in float64; a smaller addend only moves the stall, it does not remove it.", _float16_stall),
    Mechanism("bfloat16-stall", "bfloat16 accumulator stalls",
              "bfloat16 keeps 8 significant bits, so the sum stops growing early and the loss reads far too low.",
              "Sum in float64; never accumulate in the autocast dtype.", _bfloat16_stall),
    Mechanism("nonfinite-batch", "one non-finite batch poisons the epoch",
              "One batch's loss is NaN (a corrupt sample; the GradScaler skips its step) and the sum stays NaN.",
              "Count non-finite batches and report them (ExactTracker.nonfinite_batches); never drop them silently.",
              _nonfinite_batch),
    Mechanism("lossy-zero", "serialiser writes non-finite as 0.0",
              "The write-up's sanitiser (x if finite else 0.0) turns the float16 tracker's inf into 0.0.",
              "Write strict, lossless files: null plus the original value (history.save_history).", _lossy_zero),
    Mechanism("nan-to-num", "numpy.nan_to_num on save",
              "nan_to_num maps NaN to 0.0 but +inf to 1.8e308, so the float16 tracker's inf is saved as 1.8e308.",
              "Write strict, lossless files; do not coerce non-finite values.", _nan_to_num),
    Mechanism("broad-sanitiser", "sanitiser zeroes what is not a float",
              "The loss is a 0-dim tensor, and a sanitiser meant for NaN/Inf writes 0.0 for any non-float value.",
              "Convert with float() before saving, and fail on unknown types instead of writing 0.0.",
              _broad_sanitiser),
    Mechanism("aliased-reset", "history aliases a tensor reset in place",
              "get_metrics returns the tracker's mean buffer; the history holds that tensor; reset() zeroes it.",
              "Append float(value) (or .item()) to the history, never the tracker's tensor.", _aliased),
    Mechanism("read-after-reset", "history read after reset()",
              "The loop calls reset() before reading the epoch's metrics, and a zero-division guard returns 0.0.",
              "Read and save the epoch's metrics before reset(); let an empty tracker return NaN, not 0.0.",
              _read_after_reset),
    Mechanism("partial-last-batch", "mean of batch means",
              'The incident\'s "fixed" tracker counts batches, so the last batch of 8 weighs as much as one of 16.',
              "Weight by batch size: loss_sum += loss * n; total += n (the incident's \"broken\" code).",
              _partial_last_batch),
    Mechanism("ddp-padding", "DistributedSampler padding and per-rank means",
              "Rank 0 prints its own shard's mean; the file keeps the average of rank means, padding duplicates included.",
              "all_reduce the sums and counts (not the means), and count each sample once.", _ddp_padding),
    Mechanism("grad-accumulation", "mean of micro-batch means under gradient accumulation",
              "Micro-batches hold different token counts, yet each micro-batch mean weighs the same, in the loss and its gradient.",
              "Divide the summed token losses by the step's total token count (the 2024 transformers fix).",
              _grad_accumulation),
)

_BY_KEY = {m.key: m for m in MECHANISMS}


def mechanism(key: str) -> Mechanism:
    """The mechanism called ``key``."""
    if key not in _BY_KEY:
        raise ValueError(f"mechanism={key!r}: unknown; allowed: {', '.join(_BY_KEY)}")
    return _BY_KEY[key]


@lru_cache(maxsize=None)
def _run(key: str) -> Outcome:
    return mechanism(key).case()


def gallery(keys=None) -> dict[str, Outcome]:
    """Every mechanism's outcome (or those in ``keys``), run once per process and then reused."""
    return {key: _run(key) for key in (keys or _BY_KEY)}


def _console_real(outcome: Outcome) -> bool:
    return all(math.isfinite(c) and abs(c - e) <= REAL_WITHIN * abs(e) for c, e in zip(outcome.console, outcome.exact))


EVIDENCE: dict[str, tuple[str, Callable[[Outcome], bool]]] = {
    "console_real": ("console real every epoch", _console_real),
    "file_zero": ("file holds 0.0 every epoch", lambda o: all(v == 0.0 for v in o.file)),
    "accuracies": ("saved accuracies non-zero", lambda o: all(v > 0 for v in o.file_top5)),
    "weights": ("weights fine", lambda o: o.weights_fine),
}


def diagnosis(outcomes: dict[str, Outcome]) -> list[dict]:
    """One row per mechanism: does its outcome show each piece of the write-up's evidence, and all of it?"""
    rows = []
    for key, outcome in outcomes.items():
        row = {"mechanism": key, **{name: test(outcome) for name, (_, test) in EVIDENCE.items()}}
        row["fits"] = all(row[name] for name in EVIDENCE)
        rows.append(row)
    return rows


def fitting(rows: list[dict], evidence=tuple(EVIDENCE)) -> list[str]:
    """The mechanisms whose outcome shows every piece of ``evidence`` (default: all of it)."""
    return [row["mechanism"] for row in rows if all(row[name] for name in evidence)]


def _values(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.4f}" if math.isfinite(v) and abs(v) < 1e6 else f"{v:.4g}" for v in values) + "]"


def format_gallery(outcomes: dict[str, Outcome]) -> str:
    """Each case as text: title, cause, fix, and its epochs as console, file and exact losses."""
    blocks = []
    for key, outcome in outcomes.items():
        chosen = mechanism(key)
        blocks.append("\n".join([
            f"{key} -- {chosen.title} ({outcome.batches:,} batches per epoch)",
            f"  cause:   {chosen.cause}", f"  fix:     {chosen.fix}",
            f"  console  {_values(outcome.console)}", f"  file     {_values(outcome.file)}",
            f"  exact    {_values(outcome.exact)}", f"  weights  {'fine' if outcome.weights_fine else 'changed'}",
            *([f"  epoch 1  loss_sum {trajectory_note(outcome.trajectory)}"] if trajectory_note(outcome.trajectory) else [])]))
    return "\n\n".join(blocks)


def format_diagnosis(rows: list[dict]) -> str:
    """``diagnosis`` rows as a plain-text yes/no table."""
    shown = [{key: ("yes" if value else "no") if isinstance(value, bool) else value for key, value in row.items()}
             for row in rows]
    return format_rows(shown, {"mechanism": "mechanism", **{name: label for name, (label, _) in EVIDENCE.items()},
                               "fits": "fits all"})
