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
is computed, not typed. Only the first two were observed (the write-up quotes its console
and its file); the saved accuracies are never reported and "weights fine" is the write-up's
conclusion, so ``EVIDENCE_STATUS`` marks them assumed, and ``fitting(rows,
observed_evidence())`` and ``format_evidence_comparison`` show which mechanisms fit without
them.

Every case can also run with the write-up's fix applied (``gallery(fix=True)``): the same
habit, with the incident's "fixed" tracker in place of the "broken" one (``with_the_fix``).
``after_the_fix`` asks whether any mechanism gives both the write-up's before (console real,
file 0.0) and its after-line (the file repeats the console, digit for digit).
``03_what_really_breaks.ipynb`` teaches it; ``04_explorer.ipynb`` shows each case.

The doctor says which mechanisms fit a user's zeroed file without running the gallery: it
reads the diagnosis stored in ``doctor/mechanism_evidence.json`` (``mechanism_evidence_record``).
``python -m accumbug.lessons.mechanisms`` (``write_mechanism_evidence``) writes that file again
after a mechanism or its evidence changes; ``tests/test_mechanisms.py`` fails while it is stale.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, lru_cache, partial
from pathlib import Path

import torch

from ..config import TrainConfig
from ..data import preset
from ..distributed import rank_shard
from ..doctor.examine import MECHANISM_EVIDENCE_FILE
from ..history import atomic_write_text, read_back
from ..runfolder import history_key, series
from ..specimens.gallery_trackers import (
    GuardedTracker,
    InPlaceMeanFixedTracker,
    InPlaceMeanTracker,
    TensorLossFixedTracker,
    TensorLossTracker,
)
from ..specimens.incident_trackers import IncidentBrokenTracker, IncidentFixedTracker
from ..specimens.serialisers import write
from ..trackers import ExactTracker
from .incident import INCIDENT_AFTER_VALUES, INCIDENT_CONSOLE, INCIDENT_SAVED_LINE
from .streams import LossStream, batch_means, batch_sizes, scored_batches, trajectory_note
from .tables import format_rows, format_wrapped, yes_no
from .weights import bitwise_equal, toy_sgd, trained_weights

__all__ = [
    "ASSUMED",
    "ASSUMED_EVIDENCE",
    "EVIDENCE",
    "EVIDENCE_BASIS",
    "EVIDENCE_STATUS",
    "FIXED_SPECIMENS",
    "GALLERY_SCENARIO",
    "INCIDENT_STREAM",
    "MECHANISMS",
    "OBSERVED",
    "OBSERVED_EVIDENCE",
    "Mechanism",
    "Outcome",
    "after_line_repeats_console",
    "after_the_fix",
    "after_the_fix_conclusion",
    "console_is_real",
    "diagnosis",
    "epoch_stream",
    "evidence_comparison",
    "exact_loss",
    "fitting",
    "format_after_the_fix",
    "format_diagnosis",
    "format_evidence_comparison",
    "format_gallery",
    "format_needs",
    "format_streams",
    "format_values",
    "gallery",
    "incident_scenario",
    "log_epochs",
    "mechanism",
    "mechanism_evidence_record",
    "observed_evidence",
    "scenario_losses",
    "scenario_stream",
    "stream_rows",
    "with_the_fix",
    "write_mechanism_evidence",
]

SPREAD = 0.2  # each epoch's losses fall from (console loss + SPREAD) to (console loss - SPREAD)
SAMPLE_NOISE = 0.2  # each sample's loss is the trend plus a uniform draw from [-0.2, 0.2]
REAL_WITHIN = 0.02  # a console value is "real" when finite and within 2 % of the exact loss
WEIGHTS_CONFIG = TrainConfig(preset="tiny", epochs=1, samples=264, classes=16)  # 17 batches, the last of 8
NONFINITE_AT = (1, 100)  # (epoch index, batch index) of the non-finite batch
BATCH_SIZE = 16  # per rank, in the DistributedSampler case
RANKS = 5  # DistributedSampler ranks: 1,032 samples pad to 1,035, three duplicates per epoch
MICRO_BATCHES = 4  # gradient accumulation steps per optimizer step
CONTEXT = 0.3  # extra per-token loss per e-fold shorter sequence, for the accumulation case
INCIDENT_STREAM = "the incident stream"
GALLERY_SCENARIO = "the gallery scenario"
STREAMS = {INCIDENT_STREAM: "full", GALLERY_SCENARIO: "small"}  # each named stream and the preset it has the size of


@cache
def scenario_stream(samples: int, epoch: int, noise: float = SAMPLE_NOISE) -> LossStream:
    """Epoch ``epoch`` (0-based) of the scenario over ``samples`` samples: per-sample losses around its console loss.

    The losses fall linearly through the epoch around the write-up's printed loss for that
    epoch, seeded by the epoch. At the full preset's size it is ``INCIDENT_STREAM``, at the
    small preset's ``GALLERY_SCENARIO``; any other size is a stream of its own.
    """
    printed = INCIDENT_CONSOLE[epoch]["loss"]
    named = [name for name, size in STREAMS.items() if preset(size).samples == samples and noise == SAMPLE_NOISE]
    name = named[0] if named else f"the scenario at {samples:,} samples"
    return LossStream(f"{name}, epoch {epoch + 1}", samples, printed + SPREAD, printed - SPREAD, noise, seed=epoch)


def scenario_losses(sizes: list[int], epoch: int, noise: float = SAMPLE_NOISE) -> torch.Tensor:
    """Batch losses of epoch ``epoch``: ``scenario_stream(sum(sizes), epoch)``'s samples, grouped by ``sizes``."""
    return batch_means(scenario_stream(sum(sizes), epoch, noise).losses, sizes)


def epoch_stream(spec=None) -> tuple[torch.Tensor, list[int]]:
    """Epoch 1 of the scenario at the size of ``spec`` (default the full preset: ``INCIDENT_STREAM``).

    Batch losses and sizes at ``spec``'s batch size. The audit, the exercises, the explorer
    and notebook 01 all sum the incident stream, so a figure such as "float16 overflows at
    batch 428" means the same everywhere. It is replayed, not trained: a trained run's early
    losses are higher, so its sums cross the limits at other batches (notebook 02 shows both).
    """
    spec = preset("full") if spec is None else spec
    return scenario_stream(spec.samples, 0).batches(spec.batch_size)


def stream_rows() -> list[dict]:
    """Each named stream (``STREAMS``): its samples, its batches at the preset's batch size, its exact loss per
    epoch (the same at any batch size)."""
    rows = []
    for name, size in STREAMS.items():
        spec = preset(size)
        sizes = batch_sizes(spec)
        rows.append({"stream": name, "samples": spec.samples, "batches": len(sizes), "batch_size": spec.batch_size,
                     "last_batch": sizes[-1],
                     "exact": [scenario_stream(spec.samples, e).exact for e in range(len(INCIDENT_CONSOLE))]})
    return rows


def format_streams() -> str:
    """``stream_rows`` as a plain-text table: the one place the named streams' exact losses are printed
    (``03_what_really_breaks.ipynb``)."""
    shown = [{"stream": row["stream"], "samples": f"{row['samples']:,}",
              "batches": f"{row['batches']:,} of {row['batch_size']} (the last of {row['last_batch']})",
              "exact": format_values(row["exact"])} for row in stream_rows()]
    return format_rows(shown, {"stream": "stream", "samples": "samples", "batches": "batches",
                               "exact": "exact loss per epoch (epochs 1-4)"})


def incident_scenario(sizes: list[int] | None = None, noise: float = SAMPLE_NOISE,
                      extra: torch.Tensor | None = None) -> list[list[tuple]]:
    """Four epochs of ``(loss, outputs, labels)`` batches shaped like the write-up's console.

    Epoch ``e``'s batch losses are ``scenario_losses`` (plus ``extra``, one value per batch),
    and its hit rates are its console top-1 and top-5. ``sizes`` defaults to the small
    preset's 852 batches (``GALLERY_SCENARIO``).
    """
    sizes = batch_sizes(preset("small")) if sizes is None else sizes
    epochs = []
    for index, printed in enumerate(INCIDENT_CONSOLE):
        losses = scenario_losses(sizes, index, noise)
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


FIXED_SPECIMENS = {IncidentBrokenTracker: IncidentFixedTracker, InPlaceMeanTracker: InPlaceMeanFixedTracker,
                   TensorLossTracker: TensorLossFixedTracker}  # each habit on the write-up's fixed tracker, as kept


class _FixedAccumulation(IncidentBrokenTracker):
    """The incident's broken tracker with its fixed ``update``: what ``with_the_fix`` slides under a habit."""

    kind = IncidentFixedTracker.kind
    update = IncidentFixedTracker.update


@cache
def with_the_fix(tracker_class: type) -> type:
    """``tracker_class`` with the write-up's fix applied and every other habit kept.

    A tracker with a fixed twin among the specimens (``FIXED_SPECIMENS``: the incident's broken
    tracker, the gallery's in-place-mean and tensor-loss trackers) becomes that twin. Any other
    class built on the broken tracker (``GuardedTracker``) gets a subclass whose ancestry has
    ``_FixedAccumulation`` just above ``IncidentBrokenTracker``: its own methods run unchanged,
    and where they reach the broken ``update`` (``loss_sum += loss * batch_size; total +=
    batch_size``) they get the fixed one (``loss_sum += loss; total += 1``). Any other class,
    a fixed tracker among them, has nothing to fix and is returned as it is.
    """
    if tracker_class in FIXED_SPECIMENS:
        return FIXED_SPECIMENS[tracker_class]
    if not issubclass(tracker_class, IncidentBrokenTracker) or issubclass(tracker_class, _FixedAccumulation):
        return tracker_class
    return _fixed_by_ancestry(tracker_class)


def _fixed_by_ancestry(tracker_class: type) -> type:
    """A subclass of ``tracker_class`` (built on ``IncidentBrokenTracker``) that accumulates as the fixed tracker."""
    return type(f"{tracker_class.__name__}WithFix", (tracker_class, _FixedAccumulation),
                {"kind": f"{tracker_class.kind}-fixed", "__module__": __name__,
                 "__doc__": f"{tracker_class.__name__} with the write-up's fix: loss_sum += loss; total += 1."})


def _logged(tracker_class: type, *args, fix: bool = False, epochs=None, serialiser: str = "strict",
            read_after_reset: bool = False, weights_fine: bool | None = None) -> Outcome:
    """A logging bug: run the incident's loop with a fresh ``tracker_class(*args)`` (``with_the_fix`` of it with
    ``fix``); weights from the trainer with it attached."""
    make_tracker = partial(with_the_fix(tracker_class) if fix else tracker_class, *args)
    epochs = incident_scenario() if epochs is None else epochs
    console, history, trajectory = log_epochs(epochs, make_tracker(), read_after_reset)
    if weights_fine is None:
        weights_fine = bitwise_equal(_reference_weights(), trained_weights(WEIGHTS_CONFIG, [make_tracker()]))
    return _outcome(console, history, epochs, weights_fine, serialiser, trajectory)


def _float16_overflow(fix: bool = False) -> Outcome:
    return _logged(IncidentBrokenTracker, "float16", fix=fix)


def _float16_stall(fix: bool = False) -> Outcome:
    return _logged(IncidentFixedTracker, "float16", fix=fix, epochs=incident_scenario(batch_sizes(preset("full"))))


def _bfloat16_stall(fix: bool = False) -> Outcome:
    return _logged(IncidentBrokenTracker, "bfloat16", fix=fix)


def _same_toy_weights(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bitwise_equal({"w": a}, {"w": b})


def _nonfinite_batch(fix: bool = False) -> Outcome:
    epochs = incident_scenario()
    epoch, batch = NONFINITE_AT
    _, outputs, labels = epochs[epoch][batch]
    epochs[epoch][batch] = (torch.tensor(float("nan")), outputs, labels)
    # weights: the GradScaler skips the poisoned step (batch 5 holds item 80); fine if that equals leaving it out
    steps = [[(b * 16 + i, 1 / 16) for i in range(16)] for b in range(16)]
    weights_fine = _same_toy_weights(toy_sgd(steps, items=256, poisoned=80), toy_sgd(steps[:5] + steps[6:], items=256))
    return _logged(IncidentBrokenTracker, "python", fix=fix, epochs=epochs, weights_fine=weights_fine)


def _lossy_zero(fix: bool = False) -> Outcome:
    return _logged(IncidentBrokenTracker, "float16", fix=fix, serialiser="incident-sanitiser")


def _nan_to_num(fix: bool = False) -> Outcome:
    return _logged(IncidentBrokenTracker, "float16", fix=fix, serialiser="nan_to_num")


def _broad_sanitiser(fix: bool = False) -> Outcome:
    return _logged(TensorLossTracker, fix=fix, serialiser="broad-sanitiser")


def _aliased(fix: bool = False) -> Outcome:
    return _logged(InPlaceMeanTracker, fix=fix)


def _read_after_reset(fix: bool = False) -> Outcome:
    return _logged(GuardedTracker, fix=fix, read_after_reset=True)


def _partial_last_batch(fix: bool = False) -> Outcome:
    return _logged(IncidentFixedTracker, "python", fix=fix)


def _rank_shards(samples: int, epoch: int) -> list[list[int]]:
    """Each rank's sample indices for ``epoch``, as ``DistributedSampler`` gives them (padded to equal length)."""
    return [rank_shard(samples, RANKS, rank, 0, epoch)[0].tolist() for rank in range(RANKS)]


def _ddp_padding(fix: bool = False) -> Outcome:
    """Ranks simulated in one process: each feeds its own exact tracker; rank 0 prints.

    The file keeps the rank average.
    """
    tracker_class = with_the_fix(IncidentBrokenTracker) if fix else IncidentBrokenTracker
    samples = preset("tiny").samples
    per_sample = incident_scenario([1] * samples, noise=2.0)
    console, history = [], {history_key("train", key): [] for key in ("loss", "top1", "top5")}
    for index, items in enumerate(per_sample):
        per_rank = []
        for shard in _rank_shards(samples, index):
            tracker = tracker_class("python")
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


def _grad_accumulation(fix: bool = False) -> Outcome:
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
    return _logged(IncidentFixedTracker, "python", fix=fix, epochs=epochs, weights_fine=weights_fine)


@dataclass(frozen=True)
class Mechanism:
    """One way a history goes wrong: a key, a title, a one-line cause and fix, and its runnable case.

    ``case()`` runs it; ``case(fix=True)`` runs it with the write-up's fix applied (``with_the_fix``).
    ``needs`` is the code the case needs beyond what the write-up shows: its loop calls
    ``metrics.update(loss.item(), ...)``, so its ``loss_sum`` is a Python float, and it saves
    with ``json.dump``. ``role`` is the tracker role its arithmetic is (``style.ROLE_COLOURS``).
    """

    key: str
    title: str
    cause: str
    fix: str
    case: Callable[..., Outcome]
    needs: str
    role: str = "incident-broken"


MECHANISMS = (
    Mechanism("float16-overflow", "float16 accumulator overflows",
              ("The incident's broken tracker sums loss * 16 in float16; each addition rounds to the nearest "
               "float16, and one that would pass 65,504, float16's largest value, gives inf."),
              "Sum in float64 (or Python floats) whatever the model's dtype.", _float16_overflow,
              needs="A float16 tensor loss_sum, not the Python float that loss.item() gives."),
    Mechanism("float16-stall", 'float16 "fixed" tracker stalls',
              ("Summing ~9 per batch in float16, each addition rounds to the nearest float16, up or down: "
               "below 16,384 (spacing 8) +9 rounds down to +8, so the sum falls behind the exact one; from "
               "16,384 (spacing 16) it rounds up to +16, so the sum runs ahead; from 32,768 (spacing 32) the "
               "addend is below half the spacing, rounds away, and the sum stalls."),
              "Sum in float64; a smaller addend only moves the stall, it does not remove it.", _float16_stall,
              needs="The \"fixed\" tracker's loss_sum as a float16 tensor, not a Python float.",
              role="incident-fixed"),
    Mechanism("bfloat16-stall", "bfloat16 accumulator stalls",
              ("bfloat16 keeps 8 significant bits; each addition of ~146 (loss * 16) rounds to the nearest "
               "bfloat16, up or down: from 16,384 (spacing 128) to +128, so the sum falls behind; from 32,768 "
               "(spacing 256) to +256, so it runs ahead; from 65,536 (spacing 512) it is below half the spacing, "
               "rounds away, and the sum stalls. bfloat16 overflows only past 3.4e38: here it stalls, and the "
               "loss reads far too low."),
              "Sum in float64; never in the outputs' dtype (under bfloat16 autocast the loss is float32, "
              "but zeros_like(outputs[0, 0]) is bfloat16).", _bfloat16_stall,
              needs="A bfloat16 tensor loss_sum (zeros_like(outputs[0, 0]) under bfloat16 autocast), not a Python "
              "float."),
    Mechanism("nonfinite-batch", "one non-finite batch poisons the epoch",
              "One batch's loss is NaN (a corrupt sample; the GradScaler skips its step) and the sum stays NaN.",
              "Count non-finite batches and report them (ExactTracker.nonfinite_batches); never drop them silently.",
              _nonfinite_batch,
              needs="A batch whose loss is NaN; the code is the write-up's."),
    Mechanism("lossy-zero", "serialiser writes non-finite as 0.0",
              "The write-up's sanitiser (x if finite else 0.0) turns the float16 tracker's inf into 0.0.",
              "Write strict, lossless files: null plus the original value (history.save_history).", _lossy_zero,
              needs="A float16 tensor loss_sum, and a sanitiser at save (a plain json.dump writes Infinity, "
              "not 0.0)."),
    Mechanism("nan-to-num", "numpy.nan_to_num on save",
              "nan_to_num maps NaN to 0.0 but +inf to 1.8e308, so the float16 tracker's inf is saved as 1.8e308.",
              "Write strict, lossless files; do not coerce non-finite values.", _nan_to_num,
              needs="A float16 tensor loss_sum, and numpy.nan_to_num at save."),
    Mechanism("broad-sanitiser", "sanitiser zeroes what is not a float",
              "The loss is a 0-dim tensor, and a sanitiser meant for NaN/Inf writes 0.0 for any non-float value.",
              "Convert with float() before saving, and fail on unknown types instead of writing 0.0.",
              _broad_sanitiser,
              needs="update(loss) with the tensor, not loss.item(), so loss_sum is a tensor; and a sanitiser that "
              "writes 0.0 for any non-float (a plain json.dump of a tensor raises TypeError)."),
    Mechanism("aliased-reset", "history aliases a tensor reset in place",
              "get_metrics returns the tracker's mean buffer; the history holds that tensor; reset() zeroes it.",
              "Append float(value) (or .item()) to the history, never the tracker's tensor.", _aliased,
              needs="get_metrics returning the tracker's own tensor buffer, not Python floats; and a writer that "
              "converts tensors at save time (a plain json.dump of a tensor raises TypeError)."),
    Mechanism("read-after-reset", "history read after reset()",
              "The loop calls reset() before reading the epoch's metrics, and a zero-division guard returns 0.0.",
              "Read and save the epoch's metrics before reset(); let an empty tracker return NaN, not 0.0.",
              _read_after_reset,
              needs="reset() before the history reads the metrics, and a guard returning 0.0 for an empty tracker."),
    Mechanism("partial-last-batch", "mean of batch means",
              'The incident\'s "fixed" tracker counts batches, so the last batch of 8 weighs as much as one of 16.',
              "Weight by batch size: loss_sum += loss * n; total += n (the incident's \"broken\" code).",
              _partial_last_batch,
              needs="Nothing: it is the write-up's own \"fixed\" code.", role="incident-fixed"),
    Mechanism("ddp-padding", "DistributedSampler padding and per-rank means",
              ("Rank 0 prints its own shard's mean; the file keeps the average of rank means, "
               "padding duplicates included."),
              ("all_reduce the sums and counts (not the means), and count each sample once. That fixes the "
               "log only: the padded duplicates also enter the gradient (weights changed), which this fix does "
               "not touch; give them weight 0 in the loss."), _ddp_padding,
              needs="Several ranks under DistributedSampler, rank 0 printing, and all_reduce of the ranks' means; "
              "the write-up shows one process."),
    Mechanism("grad-accumulation", "mean of micro-batch means under gradient accumulation",
              ("Micro-batches hold different token counts, yet each micro-batch mean weighs the same, "
               "in the loss and its gradient."),
              "Divide the summed token losses by the step's total token count (the 2024 transformers fix).",
              _grad_accumulation,
              needs="Gradient accumulation over micro-batches of different token counts; the write-up shows none.",
              role="incident-fixed"),
)

_BY_KEY = {m.key: m for m in MECHANISMS}


def mechanism(key: str) -> Mechanism:
    """The mechanism called ``key``."""
    if key not in _BY_KEY:
        raise ValueError(f"mechanism={key!r}: unknown; allowed: {', '.join(_BY_KEY)}")
    return _BY_KEY[key]


@cache
def _run(key: str, fix: bool = False) -> Outcome:
    return mechanism(key).case(fix=True) if fix else mechanism(key).case()


def gallery(keys=None, fix: bool = False) -> dict[str, Outcome]:
    """Every mechanism's outcome (or those in ``keys``), run once per process and then reused.

    With ``fix``, each case runs with the write-up's fix applied: the same habit, with the
    incident's "fixed" tracker where it had the "broken" one (``with_the_fix``).
    """
    return {key: _run(key, fix) for key in (keys or _BY_KEY)}


def console_is_real(console: list[float], exact: list[float]) -> bool:
    """Whether every printed loss is finite and within ``REAL_WITHIN`` of the exact loss (the write-up's evidence)."""
    return all(math.isfinite(c) and abs(c - e) <= REAL_WITHIN * abs(e) for c, e in zip(console, exact))


def _console_real(outcome: Outcome) -> bool:
    return console_is_real(outcome.console, outcome.exact)


EVIDENCE: dict[str, tuple[str, Callable[[Outcome], bool]]] = {
    "console_real": ("console real every epoch", _console_real),
    "file_zero": ("file holds 0.0 every epoch", lambda o: all(v == 0.0 for v in o.file)),
    "accuracies": ("saved accuracies non-zero", lambda o: all(v > 0 for v in o.file_top5)),
    "weights": ("weights fine", lambda o: o.weights_fine),
}

OBSERVED, ASSUMED = "observed", "assumed"
EVIDENCE_STATUS: dict[str, str] = {  # was each piece of evidence seen, or taken for granted?
    "console_real": OBSERVED, "file_zero": OBSERVED, "accuracies": ASSUMED, "weights": ASSUMED}
EVIDENCE_BASIS: dict[str, str] = {  # what the write-up gives for it
    "console_real": "quoted: its console, loss=" + ", ".join(f"{line['loss']:.4f}" for line in INCIDENT_CONSOLE),
    "file_zero": f"quoted: the JSON, {INCIDENT_SAVED_LINE.split('  ')[0]}",
    "accuracies": 'never reported: it only says the saved accuracies "might show non-zero values"',
    "weights": 'its conclusion ("Model weights/checkpoints are fine"), never checked',
}
OBSERVED_EVIDENCE = tuple(name for name, status in EVIDENCE_STATUS.items() if status == OBSERVED)
ASSUMED_EVIDENCE = tuple(name for name, status in EVIDENCE_STATUS.items() if status == ASSUMED)  # e.g. to hatch


def observed_evidence() -> tuple[str, ...]:
    """The keys of the evidence the write-up observed (``console_real``, ``file_zero``), for ``fitting``."""
    return OBSERVED_EVIDENCE


def diagnosis(outcomes: dict[str, Outcome]) -> list[dict]:
    """One row per mechanism: does its outcome show each piece of the write-up's evidence, all of it
    (``fits``), and all of the observed evidence (``fits_observed``)?"""
    rows = []
    for key, outcome in outcomes.items():
        row = {"mechanism": key, **{name: test(outcome) for name, (_, test) in EVIDENCE.items()}}
        row["fits"] = all(row[name] for name in EVIDENCE)
        row["fits_observed"] = all(row[name] for name in OBSERVED_EVIDENCE)
        rows.append(row)
    return rows


def fitting(rows: list[dict], evidence=tuple(EVIDENCE)) -> list[str]:
    """The mechanisms whose outcome shows every piece of ``evidence`` (default: all of it;
    ``observed_evidence()``: what the write-up observed)."""
    return [row["mechanism"] for row in rows if all(row[name] for name in evidence)]


def evidence_comparison(rows: list[dict]) -> dict[str, list[str]]:
    """Which mechanisms fit all the evidence, which fit the observed evidence only, and which fit only without
    the assumed evidence: ``{"all": [...], "observed": [...], "only_observed": [...]}``."""
    every, observed = fitting(rows), fitting(rows, OBSERVED_EVIDENCE)
    return {"all": every, "observed": observed, "only_observed": [key for key in observed if key not in every]}


def _names(keys) -> str:
    keys = list(keys)
    return ", ".join(keys) if keys else "none"


def format_evidence_comparison(rows: list[dict]) -> str:
    """Each piece of evidence with its status and basis, then the mechanisms that fit all of it and those that fit
    the observed evidence only, with the change put in words."""
    width, basis = max(len(label) for label, _ in EVIDENCE.values()), max(map(len, EVIDENCE_BASIS.values()))
    table = [f"{'evidence':<{width}}  {'status':<8}  what the write-up gives",
             f"{'-' * width}  {'-' * 8}  {'-' * basis}"]
    table += [f"{label:<{width}}  {EVIDENCE_STATUS[name]:<8}  {EVIDENCE_BASIS[name]}"
              for name, (label, _) in EVIDENCE.items()]
    compared = evidence_comparison(rows)
    assumed = ", ".join(EVIDENCE[name][0] for name in ASSUMED_EVIDENCE)
    if compared["only_observed"]:
        gained = compared["only_observed"]
        verb = "fits" if len(gained) == 1 else "fit"
        change = f"Without the assumed evidence ({assumed}), {_names(gained)} {verb} as well."
    else:
        change = f"The assumed evidence ({assumed}) rules out no mechanism that the observed evidence leaves."
    return "\n".join([*table, "", f"of the gallery's {len(rows)} cases,",
                      f"fit all the evidence:        {_names(compared['all'])}",
                      f"fit the observed evidence:   {_names(compared['observed'])}", change])


def format_values(values: list[float]) -> str:
    """Losses as a list with 4 decimals (non-finite and huge values in short form)."""
    return "[" + ", ".join(f"{v:.4f}" if math.isfinite(v) and abs(v) < 1e6 else f"{v:.4g}" for v in values) + "]"


def _exact_words(exact: list[float]) -> str:
    """A case's exact losses: the name of the named stream they are (``format_streams`` prints its values once),
    or the values where the case has a stream of its own."""
    shown = format_values(exact)
    named = [row["stream"] for row in stream_rows() if format_values(row["exact"]) == shown]
    return f"{named[0]}'s (in the table of streams)" if named else shown


def format_gallery(outcomes: dict[str, Outcome]) -> str:
    """Each case as text: title, cause, fix, what it needs, and its epochs as console, file and exact losses."""
    blocks = []
    for key, outcome in outcomes.items():
        chosen, note = mechanism(key), trajectory_note(outcome.trajectory)
        blocks.append("\n".join([
            f"{key} -- {chosen.title} ({outcome.batches:,} batches per epoch)",
            f"  cause:   {chosen.cause}", f"  fix:     {chosen.fix}", f"  needs:   {chosen.needs}",
            f"  console  {format_values(outcome.console)}", f"  file     {format_values(outcome.file)}",
            f"  exact    {_exact_words(outcome.exact)}", f"  weights  {'fine' if outcome.weights_fine else 'changed'}",
            *([f"  epoch 1  loss_sum {note}"] if note else [])]))
    return "\n\n".join(blocks)


def format_needs(rows: list[dict]) -> str:
    """``diagnosis`` rows beside what each case needs beyond the write-up's code (``Mechanism.needs``), wrapped
    (``03_what_really_breaks.ipynb``)."""
    shown = [{"mechanism": row["mechanism"], "fits": yes_no(row["fits"]), "fits_observed": yes_no(row["fits_observed"]),
              "needs": mechanism(row["mechanism"]).needs}
             for row in rows]
    return format_wrapped(shown, {"mechanism": ("mechanism", 18), "fits": ("fits all", 8),
                                  "fits_observed": ("fits observed", 13),
                                  "needs": ("code it needs beyond what the write-up shows", 64)})


def format_diagnosis(rows: list[dict], mark_assumed: bool = False) -> str:
    """``diagnosis`` rows as a plain-text yes/no table; with ``mark_assumed``, the assumed evidence's headers say
    so, and a last column says whether the observed evidence alone fits."""
    shown = [{key: yes_no(value) if isinstance(value, bool) else value for key, value in row.items()} for row in rows]
    marked = {name: f"{label} ({ASSUMED})" if mark_assumed and name in ASSUMED_EVIDENCE else label
              for name, (label, _) in EVIDENCE.items()}
    return format_rows(shown, {"mechanism": "mechanism", **marked, "fits": "fits all",
                               **({"fits_observed": "fits observed"} if mark_assumed else {})})


def _printed_equal(values: list[float], printed: list[float]) -> bool:
    """Whether ``values``, printed as the console prints (4 decimals), repeat ``printed`` digit for digit."""
    return len(values) == len(printed) and all(
        math.isfinite(v) and math.isfinite(p) and f"{v:.4f}" == f"{p:.4f}" for v, p in zip(values, printed))


def after_line_repeats_console() -> bool:
    """Whether the write-up's after-line (``[9.1621, 8.7352, 8.2003, ...]`` saved after the fix) repeats its
    console from before the fix, digit for digit."""
    console = [line["loss"] for line in INCIDENT_CONSOLE[:len(INCIDENT_AFTER_VALUES)]]
    return _printed_equal(list(INCIDENT_AFTER_VALUES), console)


def after_the_fix(before: dict[str, Outcome], after: dict[str, Outcome]) -> list[dict]:
    """One row per mechanism: its case as it was (``before``, e.g. ``gallery()``) and with the write-up's fix applied
    (``after``, ``gallery(fix=True)``).

    ``before_console_real`` and ``before_zeros``: the before shows the write-up's observed evidence;
    ``after_file``: what the file holds after the fix; ``after_equals_console``: it repeats the console from
    before the fix, printed to 4 decimals, as the write-up's after-line does; ``explains_both``: all three.
    """
    rows = []
    for key, outcome in before.items():
        fixed = after[key]
        row = {"mechanism": key, "before_console_real": EVIDENCE["console_real"][1](outcome),
               "before_zeros": EVIDENCE["file_zero"][1](outcome), "after_file": list(fixed.file),
               "after_equals_console": _printed_equal(fixed.file, outcome.console)}
        row["explains_both"] = row["before_console_real"] and row["before_zeros"] and row["after_equals_console"]
        rows.append(row)
    return rows


def after_the_fix_conclusion(rows: list[dict]) -> str:
    """``after_the_fix`` rows in one or two sentences: which mechanisms, if any, explain both the before and the
    write-up's after-line. It speaks of the gallery's cases only: other code could behave otherwise."""
    quoted = "[" + ", ".join(f"{v:.4f}" for v in INCIDENT_AFTER_VALUES) + ", ...]"
    same = "its console before the fix, digit for digit" if after_line_repeats_console() else "not its console"
    both = [row["mechanism"] for row in rows if row["explains_both"]]
    if both:
        return (f"Of the gallery's {len(rows)} cases, {_names(both)} explain{'s' if len(both) == 1 else ''} both the "
                f"before and the after-line {quoted} ({same}).")
    before = [row for row in rows if row["before_console_real"] and row["before_zeros"]]
    after = [row["mechanism"] for row in rows if row["after_equals_console"]]
    if before:
        saved = " or ".join(sorted({format_values(row["after_file"]) for row in before}))
        names = _names(row["mechanism"] for row in before)
        found = f"the mechanisms that give the before (console real, file 0.0), {names}, still save {saved}"
        parts = [f"{found} after the fix"]
    else:
        parts = ["no mechanism gives the before (console real, file 0.0)"]
    parts.append(f"those whose file after the fix repeats the console from before it ({_names(after)}) had no "
                 "real console and file of 0.0 before it" if after
                 else "no mechanism's file repeats the console after the fix")
    return (f"Of the gallery's {len(rows)} cases, none explains both: {'; '.join(parts)}. No case of the gallery "
            f"explains the write-up's after-line {quoted} ({same}).")


def format_after_the_fix(rows: list[dict]) -> str:
    """``after_the_fix`` rows as a plain-text table, then ``after_the_fix_conclusion``."""
    shown = [{**{key: yes_no(value) if isinstance(value, bool) else value for key, value in row.items()},
              "after_file": format_values(row["after_file"])} for row in rows]
    table = format_rows(shown, {"mechanism": "mechanism", "before_console_real": "before: console real",
                                "before_zeros": "before: file 0.0", "after_file": "after the fix: file",
                                "after_equals_console": "after = console before", "explains_both": "explains both"})
    return f"{table}\n\n{after_the_fix_conclusion(rows)}"


MADE_BY = "python -m accumbug.lessons.mechanisms"  # the command that writes the doctor's copy


def mechanism_evidence_record(rows: list[dict]) -> dict:
    """``diagnosis`` rows as the doctor reads them: the command that made them, each piece of evidence's
    label, and each mechanism's key, title and which evidence its outcome shows."""
    return {"made_by": MADE_BY, "evidence": {name: label for name, (label, _) in EVIDENCE.items()},
            "mechanisms": [{"key": row["mechanism"], "title": mechanism(row["mechanism"]).title,
                            "shows": {name: row[name] for name in EVIDENCE}} for row in rows]}


def write_mechanism_evidence(path: str | Path = MECHANISM_EVIDENCE_FILE) -> Path:
    """Run the gallery; store its diagnosis where the doctor reads it (``doctor/mechanism_evidence.json``)."""
    atomic_write_text(path, json.dumps(mechanism_evidence_record(diagnosis(gallery())), indent=1) + "\n")
    return Path(path)


if __name__ == "__main__":
    print(f"written: {write_mechanism_evidence()}")
