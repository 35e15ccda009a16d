"""The write-up's claims as data, each with the function that measures it.

Every claim is a record: a number, a short quote, how it is measured, a ``measure``
function that returns the measured value and a verdict -- ``holds``, ``holds approximately
(...)``, ``refuted`` or ``holds only if ...`` -- computed from a run, a replayed loss stream or
the mechanism gallery, never typed in.
Quoted figures come from the write-up; a "~" figure holds when the measurement is within 5 %
of it, a count only when it is equal; a count the write-up marked "~" (``~8,519`` batches) that
is off by less than 5 % "holds approximately", and the verdict gives the difference.

Claims about the arithmetic are measured on replayed streams (``streams.py``) or tiny
runs; claims about the full 136,312-sample run read the recorded 4-epoch CPU run, which
ships inside the package (``recorded_run``; its command is in ``data/README.md``), and say so.
``python -m accumbug audit`` prints the table and writes ``docs/claims.md``;
``03_what_really_breaks.ipynb`` shows it. ``incident_markdown`` (``write_incident``) writes
``docs/incident.md``: the write-up's own words, claim by claim (``incident.WRITE_UP_QUOTES``),
each with its verdict, its number and the notebook cell that prints it (``AUDIT_CELL``, a pointer by a line
of the cell's code, so it holds when cells move; ``tests/test_prose.py`` checks that the cell's stored output
shows every number the page quotes).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..config import TrainConfig
from ..data import SyntheticImages, preset
from ..doctor.examine import fitting_mechanisms
from ..history import atomic_write_text, loads_strict, read_back, strict_parse_ok
from ..model import SmallClassifier
from ..registry import make_tracker
from ..runfolder import CONFIG, RunFolder, history_key, series
from ..seeding import seed_everything
from ..specimens.incident_trackers import IncidentBrokenTracker, IncidentFixedTracker
from ..specimens.serialisers import SERIALISERS, incident_lossy_dumps, write
from .incident import INCIDENT_BATCH_SIZE, INCIDENT_CLASSES, INCIDENT_SAMPLES, WRITE_UP, WRITE_UP_QUOTES
from .mechanisms import (
    ASSUMED_EVIDENCE,
    EVIDENCE,
    EVIDENCE_BASIS,
    EVIDENCE_STATUS,
    MECHANISMS,
    OBSERVED_EVIDENCE,
    after_the_fix,
    after_the_fix_conclusion,
    diagnosis,
    epoch_stream,
    fitting,
    gallery,
    mechanism,
)
from .streams import first_nonfinite, replay, trajectory_note
from .symptom import BEYOND_THE_WRITE_UP
from .tables import format_wrapped
from .weights import same_weights

__all__ = ["CLAIMS", "Claim", "Inputs", "Measurement", "NotebookCell", "claims_markdown", "format_claims",
           "holds_approximately", "holds_only_if", "incident_markdown", "recorded_run", "run_audit", "write_incident"]

REFERENCE_SOURCE = "recorded full run (accumbug/lessons/recorded/full-cpu; command in data/README.md)"
# what the claims on the recorded run read
REFERENCE_TRACKERS = ("incident-broken:python", "incident-fixed:python", "exact")
APPROX = 0.05  # a "~" figure holds within 5 %
PACKAGE_HEAD_SCALE = inspect.signature(SmallClassifier).parameters["head_scale"].default  # the model's own default
STREAM_ACCUMULATORS = ("python", "float64", "float32", "bfloat16", "float16")
HOLDS, REFUTED, NOT_MEASURED = "holds", "refuted", "not measured"
HOLDS_APPROXIMATELY = "holds approximately"


def holds_only_if(condition: str) -> str:
    return f"holds only if {condition}"


def holds_approximately(difference: str) -> str:
    return f"{HOLDS_APPROXIMATELY} ({difference})"


def _approx(measured: float, quoted: float) -> bool:
    return math.isfinite(measured) and abs(measured - quoted) <= APPROX * abs(quoted)


def _pct(measured: float, quoted: float) -> str:
    return f"{(measured - quoted) / quoted * 100:+.1f} %"


def _approximate_count(measured: int, quoted: int, unit: str, others: tuple[str, ...] = ()) -> str:
    """The verdict on a count the write-up marked "~" (its other "~" figures already within 5 %): ``holds`` when
    equal, ``holds approximately`` with the difference (and ``others``) when within 5 %, else ``refuted``."""
    if measured == quoted:
        return HOLDS
    if not _approx(measured, quoted):
        return REFUTED
    gap = measured - quoted
    return holds_approximately("; ".join([f"{measured:,} {unit}, {abs(gap):,} {'more' if gap > 0 else 'fewer'}",
                                          *others]))


@dataclass(frozen=True)
class Measurement:
    """A measured value in words, its verdict, and where the numbers came from."""

    measured: str
    verdict: str
    source: str


def recorded_run() -> Path:
    """The recorded full run's folder, package data read through ``importlib.resources``."""
    folder = resources.files("accumbug.lessons") / "recorded" / "full-cpu"
    if not isinstance(folder, Path):  # installed in a zip: no folder to open
        message = f"the recorded run is inside {folder}; install accumbug as files, not as a zip"
        raise RuntimeError(message)  # noqa: TRY004 - the installation is at fault, not an argument's type
    return folder


class Inputs:
    """What the claims are measured on, each made once and on first use."""

    def __init__(self, reference: Path | None = None):
        self.reference_dir = recorded_run() if reference is None else Path(reference)

    @cached_property
    def reference(self) -> dict[str, dict] | None:
        """The recorded full run's histories by tracker name, or None when there is none committed."""
        folder = RunFolder(self.reference_dir)
        if not (self.reference_dir / CONFIG).exists() or folder.commit() is None:
            return None
        return folder.histories()

    @cached_property
    def full_spec(self):
        return preset("full")

    @cached_property
    def full_stream(self) -> tuple[torch.Tensor, list[int]]:
        """Epoch 1 of the gallery's scenario at the full size: 8,520 batch losses and sizes."""
        return epoch_stream(self.full_spec)

    @cached_property
    def first_samples(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The full data set's first 64 batches of epoch 1 (1,024 samples): images and labels."""
        data = SyntheticImages(self.full_spec, seed=0)
        order = data.epoch_order(0)[: 64 * INCIDENT_BATCH_SIZE]
        images, labels, _ = data.samples(order)
        return images, labels

    def untrained_outputs(self, head_scale: float) -> torch.Tensor:
        """Logits of an untrained full-size model (seed 0) for ``first_samples``."""
        seed_everything(0)
        model = SmallClassifier(self.full_spec.pixels, self.full_spec.classes, head_scale=head_scale)
        with torch.no_grad():
            return model(self.first_samples[0])

    @cached_property
    def diagnosis_rows(self) -> list[dict]:
        return diagnosis(gallery())

    @cached_property
    def after_fix_rows(self) -> list[dict]:
        """Every gallery case before and with the write-up's fix applied (``mechanisms.after_the_fix``)."""
        return after_the_fix(gallery(), gallery(fix=True))


@dataclass(frozen=True)
class NotebookCell:
    """The notebook cell that shows a claim's measurement: the notebook's file (in ``notebooks/``) and a line of the
    cell's code that finds it, a pointer that holds when cells are inserted or moved. ``tests/test_audit.py`` checks
    that exactly one code cell has the line, and ``tests/test_prose.py`` that its stored output shows every number
    ``docs/incident.md`` quotes from the claim's verdict and measurement."""

    notebook: str
    line: str

    def __str__(self) -> str:
        return f"`notebooks/{self.notebook}`, the cell with `{self.line}`"


NB03 = "03_what_really_breaks.ipynb"
AUDIT_CELL = NotebookCell(NB03, "claims = lab.run_audit()")  # prints every claim's measurement and verdict
DIAGNOSIS_CELL = NotebookCell(NB03, "rows = lab.diagnosis(outcomes)")  # the gallery's cases against the evidence


@dataclass(frozen=True)
class Claim:
    """One claim of the write-up: its number, a short quote, how it is measured, and the measurement.

    ``docs/incident.md`` cites ``AUDIT_CELL`` for each: the one cell that shows every number of every measurement.
    The lessons' cells show their own runs (02's has 11 trackers where the recorded run has 7) or some accumulators
    only."""

    number: int
    quote: str
    method: str
    measure: Callable[[Inputs], Measurement]


def _needs_reference(measure: Callable[[Inputs, dict], Measurement]) -> Callable[[Inputs], Measurement]:
    """A claim measured on the recorded run: "not measured", with the reason, when the run or a tracker is missing."""
    def run(inputs: Inputs) -> Measurement:
        if inputs.reference is None:
            return Measurement(f"no recorded run in {inputs.reference_dir}: "
                               "make it with the command in data/README.md", NOT_MEASURED, REFERENCE_SOURCE)
        missing = [name for name in REFERENCE_TRACKERS if name not in inputs.reference]
        if missing:
            return Measurement(f"the recorded run in {inputs.reference_dir} has no {', '.join(missing)} "
                               "tracker; make it with the command in data/README.md",
                               NOT_MEASURED, REFERENCE_SOURCE)
        return measure(inputs, inputs.reference)
    return run


def _batch_count(inputs: Inputs) -> Measurement:
    quoted = 8_519
    kept = len(DataLoader(range(INCIDENT_SAMPLES), batch_size=INCIDENT_BATCH_SIZE))
    dropped = len(DataLoader(range(INCIDENT_SAMPLES), batch_size=INCIDENT_BATCH_SIZE, drop_last=True))
    trainer = len(SyntheticImages(inputs.full_spec).batches(0))
    last = INCIDENT_SAMPLES - (kept - 1) * INCIDENT_BATCH_SIZE
    measured = (f"{trainer:,} batches in the trainer, the last of {last} samples; DataLoader: {kept:,}, "
                f"or {dropped:,} with drop_last=True")
    verdict = _approximate_count(trainer, quoted, "batches", (f"the last holds {last} samples",))
    return Measurement(measured, verdict, "torch DataLoader and the trainer's batches")


def _batch_average(inputs: Inputs) -> Measurement:
    outputs, labels = inputs.untrained_outputs(1.0)[:INCIDENT_BATCH_SIZE], inputs.first_samples[1][:INCIDENT_BATCH_SIZE]
    criterion = nn.CrossEntropyLoss()
    loss = criterion(outputs, labels).item()
    per_sample = nn.functional.cross_entropy(outputs, labels, reduction="none")
    mean, total = per_sample.mean().item(), per_sample.sum().item()
    measured = (f"first full-size batch of a model with PyTorch's default initialisation (untrained; a trained "
                f"run's first batch differs): loss.item() = {loss:.4f}; mean of the 16 per-sample losses = "
                f"{mean:.4f}, their sum = {total:.2f} (reduction={criterion.reduction!r})")
    verdict = HOLDS if abs(loss - mean) <= 1e-5 * abs(mean) else REFUTED
    return Measurement(measured, verdict, "one full-size batch, untrained model")


@_needs_reference
def _broken_state(inputs: Inputs, reference: dict) -> Measurement:
    broken, exact = reference["incident-broken:python"], reference["exact"]
    loss_sum, total = series(broken, "loss_sum")[0], series(broken, "total")[0]
    dropped_total = (INCIDENT_SAMPLES // INCIDENT_BATCH_SIZE) * INCIDENT_BATCH_SIZE
    same_as_exact = abs(loss_sum / total - series(exact, "loss")[0]) <= 1e-12 * series(exact, "loss")[0]
    measured = (f"epoch 1: loss_sum = {loss_sum:,.0f} ({_pct(loss_sum, 1_238_000)}), total = {total:,} "
                f"(every sample; {dropped_total:,} = 8,519 x 16 without the last batch); loss_sum / total "
                f"{'equals' if same_as_exact else 'differs from'} the exact loss {exact['train_loss'][0]:.4f}")
    if not _approx(loss_sum, 1_238_000):
        verdict = REFUTED
    else:
        verdict = _approximate_count(total, 136_304, "samples", (f"loss_sum {_pct(loss_sum, 1_238_000)}",))
    return Measurement(measured, verdict, REFERENCE_SOURCE)


def _formula(inputs: Inputs) -> Measurement:
    spec = preset("tiny")
    data = SyntheticImages(spec, seed=0)
    seed_everything(0)
    model = SmallClassifier(spec.pixels, spec.classes)
    broken, fixed, per_sample = IncidentBrokenTracker("python"), IncidentFixedTracker("python"), []
    with torch.no_grad():
        for images, labels, _ in data.batches(0):
            outputs = model(images)
            loss = nn.functional.cross_entropy(outputs, labels)
            broken.update(loss, outputs, labels)
            fixed.update(loss, outputs, labels)
            per_sample.append(nn.functional.cross_entropy(outputs.double(), labels, reduction="none"))
    truth = torch.cat(per_sample).mean().item()
    errors = {name: abs(t.get_metrics()["loss"] - truth) / truth for name, t in (("broken", broken), ("fixed", fixed))}
    measured = (f"per-sample mean {truth:.6f}; broken formula {broken.get_metrics()['loss']:.6f} "
                f"(relative error {errors['broken']:.0e}); fixed {fixed.get_metrics()['loss']:.6f} "
                f"({errors['fixed']:.0e}; its last batch of {spec.last_batch_size} weighs as much as one of 16)")
    verdict = REFUTED if errors["broken"] <= 1e-6 < errors["fixed"] else HOLDS
    return Measurement(measured, verdict,
                       "tiny preset, one epoch of an untrained model, per-sample losses in float64")


def _replayed(inputs: Inputs, kind: str) -> dict[str, tuple[list[float], float]]:
    losses, sizes = inputs.full_stream
    runs = {}
    for accumulator in STREAM_ACCUMULATORS:
        tracker = make_tracker(f"{kind}:{accumulator}")
        runs[accumulator] = (replay(tracker, losses, sizes), tracker.get_metrics()["loss"])
    return runs


def _describe(trajectory: list[float], loss: float) -> str:
    note = trajectory_note(trajectory)
    if first_nonfinite(trajectory) is not None:
        return note
    return f"{loss:.4f} ({note})" if note else f"{loss:.4f}"


def _accumulators(runs: dict, accepted: list[str], condition: str) -> str:
    if len(accepted) == len(runs):
        return HOLDS
    if not accepted:
        return REFUTED
    named = accepted[0] if len(accepted) == 1 else f"{', '.join(accepted[:-1])} or {accepted[-1]}"
    return holds_only_if(f"{condition} {named}")


def _overflow(inputs: Inputs) -> Measurement:
    runs = _replayed(inputs, "incident-broken")
    nonfinite = [acc for acc, (trajectory, _) in runs.items() if first_nonfinite(trajectory) is not None]
    measured = "; ".join(f"{acc}: {_describe(*run)}" for acc, run in runs.items())
    return Measurement(measured, _accumulators(runs, nonfinite, "the accumulator is"),
                       "incident-broken tracker, one full-size epoch (8,520 batches) replayed")


def _serialised(inputs: Inputs) -> Measurement:
    history = {history_key("train", "loss"): [math.nan, math.inf, -math.inf]}
    shown, zeroing = [], []
    for name in SERIALISERS:
        try:
            text = write(history, name)
        except ValueError as error:
            shown.append(f"{name}: raises ValueError ({error})")
            continue
        values = series(read_back(text), "loss")
        strict = "strict JSON" if strict_parse_ok(text) else "not valid JSON"
        shown.append(f"{name}: {text if len(text) < 60 else values} ({strict})")
        if values == [0.0, 0.0, 0.0]:
            zeroing.append(name)
    condition = f"the writer sanitises them to 0.0 ({', '.join(zeroing)})"
    return Measurement("[nan, inf, -inf] -> " + "; ".join(shown),
                       holds_only_if(condition) if zeroing else REFUTED, "each writer in serialisers.py")


@_needs_reference
def _fixed_state(inputs: Inputs, reference: dict) -> Measurement:
    fixed = reference["incident-fixed:python"]
    loss_sum, total, loss = series(fixed, "loss_sum")[0], series(fixed, "total")[0], series(fixed, "loss")[0]
    dropped = INCIDENT_SAMPLES // INCIDENT_BATCH_SIZE
    measured = (f"epoch 1: loss_sum = {loss_sum:,.0f} ({_pct(loss_sum, 74_000)}), total = {total:,} batches "
                f"({dropped:,} without the last batch), loss = {loss:.4f} ({_pct(loss, 8.68)}; exact "
                f"{reference['exact']['train_loss'][0]:.4f}). {after_the_fix_conclusion(inputs.after_fix_rows)}")
    if not (_approx(loss_sum, 74_000) and _approx(loss, 8.68)):
        verdict = REFUTED
    else:
        verdict = _approximate_count(total, 8_519, "batches",
                                     (f"loss_sum {_pct(loss_sum, 74_000)}, loss {_pct(loss, 8.68)}",))
    return Measurement(measured, verdict,
                       REFERENCE_SOURCE + " and the mechanism gallery with the write-up's fix applied")


def _reasonable(inputs: Inputs) -> Measurement:
    losses, sizes = inputs.full_stream
    exact = sum(loss * size for loss, size in zip(losses.tolist(), sizes)) / sum(sizes)
    runs = _replayed(inputs, "incident-fixed")
    close = [acc for acc, (_, loss) in runs.items() if _approx(loss, exact)]
    measured = f"exact {exact:.4f}; " + "; ".join(f"{acc}: {_describe(*run)}" for acc, run in runs.items())
    return Measurement(measured, _accumulators(runs, close, "the accumulator is"), "incident-fixed tracker, "
                       "one full-size epoch replayed; reasonable = within 5 % of exact")


@_needs_reference
def _same_run(inputs: Inputs, reference: dict) -> Measurement:
    broken = series(reference["incident-broken:python"], "loss")
    fixed = series(reference["incident-fixed:python"], "loss")
    gaps = [abs(b - f) for b, f in zip(broken, fixed)]
    quoted_gap = 9.08 - 8.68
    measured = (f"epoch 1: broken {broken[0]:.4f}, fixed {fixed[0]:.4f}; largest gap over {len(gaps)} epochs "
                f"{max(gaps):.4f} ({max(gaps) / fixed[0] * 100:.3f} %), against the quoted {quoted_gap:.2f}")
    return Measurement(measured, HOLDS if _approx(max(gaps), quoted_gap) else REFUTED, REFERENCE_SOURCE)


@_needs_reference
def _console_vs_file(inputs: Inputs, reference: dict) -> Measurement:
    corrupted = finite_console = 0
    for history in reference.values():
        saved = series(loads_strict(incident_lossy_dumps(history)), "loss")
        for shown, kept in zip(series(history, "loss"), saved):
            if not (shown == kept or (math.isnan(shown) and math.isnan(kept))):
                corrupted += 1
                finite_console += math.isfinite(shown)
    total = sum(len(series(h, "loss")) for h in reference.values())
    both = fitting(inputs.diagnosis_rows, ("console_real", "file_zero"))
    measured = (f"{corrupted} of {total} losses saved through the write-up's sanitiser differ from the console; "
                f"the console showed a finite value for {finite_console} of them. Of the gallery's "
                f"{len(inputs.diagnosis_rows)} cases, those with a real console and a file of 0.0: "
                f"{', '.join(both) or 'none'}")
    if finite_console:
        verdict = HOLDS
    else:
        verdict = holds_only_if("the history is corrupted after the console printed it (of the gallery's cases: "
                                f"{', '.join(both)})") \
            if both else REFUTED
    return Measurement(measured, verdict, REFERENCE_SOURCE + " and the mechanism gallery")


@_needs_reference
def _accuracies(inputs: Inputs, reference: dict) -> Measurement:
    saved = {(tuple(series(h, "top1")), tuple(series(h, "top5"))) for h in reference.values()}
    top1, top5 = series(reference["exact"], "top1"), series(reference["exact"], "top5")
    measured = (f"{len(reference)} trackers, {len(saved)} distinct top-1/top-5 histories; last epoch "
                f"top-1 {top1[-1]:.2f} %, top-5 {top5[-1]:.2f} %")
    return Measurement(measured, HOLDS if len(saved) == 1 else REFUTED, REFERENCE_SOURCE)


def _weights(inputs: Inputs) -> Measurement:
    accumulators = ("python", "float16", "bfloat16")
    config = TrainConfig(preset="tiny", epochs=2, seed=0)
    broken = [f"incident-broken:{acc}" for acc in accumulators]
    fixed = [f"incident-fixed:{acc}" for acc in accumulators]
    identical = same_weights(config, broken, fixed)
    measured = (f"two tiny runs, seed 0, {config.epochs} epochs, tracked by {', '.join(broken)} and by "
                f"{', '.join(fixed)}: state_dicts {'identical' if identical else 'different'} bit for bit")
    return Measurement(measured, HOLDS if identical else REFUTED, "two tiny training runs")


def _initial_loss(inputs: Inputs) -> Measurement:
    labels = inputs.first_samples[1]
    default = nn.functional.cross_entropy(inputs.untrained_outputs(1.0), labels).item()
    scale = PACKAGE_HEAD_SCALE
    spread = nn.functional.cross_entropy(inputs.untrained_outputs(scale), labels).item()
    chance = math.log(INCIDENT_CLASSES)
    measured = (f"untrained 7,120-way model, first 1,024 samples: {default:.4f} with PyTorch's default init "
                f"({_pct(default, 9.14)}), {spread:.4f} with the package's init (the output layer's default weights "
                f"times {scale:g}, SmallClassifier's head_scale, so that the first losses sit above ln 7120 as the "
                f"incident's did); ln 7120 = {chance:.4f}")
    if inputs.reference is not None:
        measured += f"; recorded run's epoch-1 mean {inputs.reference['exact']['train_loss'][0]:.4f}"
    return Measurement(measured, HOLDS if _approx(default, 9.14) and 9.14 > chance else REFUTED,
                       "forward pass of an untrained full-size model")


CLAIMS = (
    Claim(1, "136,312 samples at batch 16 give ~8,519 batches/epoch",
          "count the batches of the trainer and of torch's DataLoader, with and without drop_last", _batch_count),
    Claim(2, "loss.item() is already the batch average",
          "CrossEntropyLoss on one batch against the mean of its per-sample losses", _batch_average),
    Claim(3, "broken: loss_sum ~1,238,000 and total ~136,304 after an epoch",
          "incident-broken:python state after epoch 1 of the full run", _broken_state),
    Claim(4, "the broken formula loss_sum * batch_size / num_samples is wrong",
          "both trackers against the float64 mean of every per-sample loss", _formula),
    Claim(5, "floating-point accumulation over ~8,519 iterations makes the broken metric NaN or Inf",
          "replay a full epoch's batch losses through incident-broken with each accumulator", _overflow),
    Claim(6, "JSON serialises NaN/Inf as 0.0",
          "write [nan, inf, -inf] with each writer and read it back", _serialised),
    Claim(7, "fixed: loss_sum ~74,000, total ~8,519, loss ~8.68",
          "incident-fixed:python state after epoch 1 of the full run; for the JSON after the fix, each of the "
          "gallery's cases run before and with the write-up's fix", _fixed_state),
    Claim(8, 'the fixed metrics are "in a reasonable range"',
          "replay a full epoch through incident-fixed with each accumulator; compare with the exact loss", _reasonable),
    Claim(9, "on the same run the broken tracker gives 9.08 and the fixed one 8.68",
          "both trackers' epoch losses from one run that fed them the same batches", _same_run),
    Claim(10, "the console shows real values while the JSON is corrupted",
          "console vs the write-up's sanitiser for every tracker and epoch; the gallery's cases", _console_vs_file),
    Claim(11, "top-1/top-5 are independent of the loss accumulation",
          "compare the saved accuracies of every tracker of one run", _accuracies),
    Claim(12, "model weights/checkpoints are fine",
          "train twice with the same seed, tracked by broken and by fixed trackers; compare weights", _weights),
    Claim(13, "the initial loss is ~9.14 for 7,120 classes (vs ln 7120)",
          "loss of an untrained full-size model on the first 1,024 samples", _initial_loss),
)


def run_audit(reference: str | Path | None = None) -> list[dict]:
    """Measure every claim (on ``reference``, a run folder, or the recorded run). Rows: ``number, quote,
    method, measured, verdict, source``."""
    inputs = Inputs(reference)
    rows = []
    for claim in CLAIMS:
        finding = claim.measure(inputs)
        rows.append({"number": claim.number, "quote": claim.quote, "method": claim.method,
                     "measured": finding.measured, "verdict": finding.verdict, "source": finding.source})
    return rows


def format_claims(rows: list[dict]) -> str:
    """The audit as a plain-text table with wrapped cells, for the terminal."""
    return format_wrapped(rows, {"number": ("#", 3), "quote": ("claim", 34), "measured": ("measured", 58),
                                 "verdict": ("verdict", 30)})


def _md(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def claims_markdown(rows: list[dict]) -> str:
    """``docs/claims.md``: the audit table with how each claim is measured and where the numbers come from."""
    intro = ("Written by `python -m accumbug audit` (`src/accumbug/lessons/audit.py`); run it again rather than "
             "edit this file. Each verdict is computed from a run, a replayed loss stream or the mechanism gallery "
             "(`03_what_really_breaks.ipynb`). A \"~\" figure holds within 5 %; a count only when equal, and a count "
             "the write-up marked \"~\" holds approximately within 5 %, with the difference. Trained values differ a "
             "little between machines; the verdicts do not. [incident.md](incident.md) quotes the write-up claim by "
             "claim.")
    lines = ["# The write-up's claims, measured", "", intro, "",
             "| # | claim | how it is measured | measured | verdict | source |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['number']} | {_md(r['quote'])} | {_md(r['method'])} | {_md(r['measured'])} | "
              f"**{_md(r['verdict'])}** | {_md(r['source'])} |" for r in rows]
    asked = (f"The gallery's diagnosis asks each of its {len(MECHANISMS)} cases for each piece of the write-up's "
             f"evidence ({_evidence_words()}); see `03_what_really_breaks.ipynb`. What fits, fits of those cases: "
             "other code, not in the gallery, could behave otherwise.")
    lines += ["", asked, ""]
    return "\n".join(lines)


def _evidence_words() -> str:
    """The evidence's labels grouped by status: "a, b: observed; c, d: assumed"."""
    return "; ".join(f"{', '.join(EVIDENCE[name][0] for name in names)}: {EVIDENCE_STATUS[names[0]]}"
                     for names in (OBSERVED_EVIDENCE, ASSUMED_EVIDENCE) if names)


VERDICT_KINDS = (HOLDS, HOLDS_APPROXIMATELY, "holds only if", REFUTED, NOT_MEASURED)


def _tally(rows: list[dict]) -> str:
    """How many verdicts of each kind: "holds: 4; holds approximately: 3; ..."."""
    kinds = [max((kind for kind in VERDICT_KINDS if row["verdict"].startswith(kind)), key=len, default=row["verdict"])
             for row in rows]
    order = [kind for kind in VERDICT_KINDS if kind in kinds] + [kind for kind in dict.fromkeys(kinds)
                                                                  if kind not in VERDICT_KINDS]
    return "; ".join(f"{kind}{' ...' if kind == 'holds only if' else ''}: {kinds.count(kind)}" for kind in order)


def _incident_entry(row: dict) -> list[str]:
    """One claim of ``incident_markdown``: the write-up's words, the verdict, the number, how, and the cell."""
    quoted = WRITE_UP_QUOTES.get(row["number"], ())
    words = ["The write-up:", "", "```text", *quoted, "```"] if quoted else ["The write-up: (no line quoted)"]
    return [f"## Claim {row['number']}: {row['quote']}", "", *words, "",
            f"- **Verdict: {row['verdict']}**", f"- **Measured:** {row['measured']}",
            f"- **How:** {row['method']} (source: {row['source']})",
            f"- **Notebook:** {AUDIT_CELL}", ""]


def _departures() -> list[str]:
    """Where the reproduced symptom departs from the write-up's literal code, and why, as a section of
    ``incident_markdown``: the gallery's cases that give the observed evidence (its diagnosis as the doctor stores
    it) with what each needs (``Mechanism.needs``), then the two the notebooks reproduce (``symptom.py``)."""
    fit, _ = fitting_mechanisms({name: True for name in OBSERVED_EVIDENCE})
    intro = ("The write-up's loop calls `metrics.update(loss.item(), ...)`, so its `loss_sum` is a Python float, "
             "`get_metrics()` returns floats, and the history it shows holds the floats the console printed, which "
             f"`json.dump` writes as they are. Of the gallery's {len(MECHANISMS)} cases, {len(fit)} give the "
             "observed evidence (a real console, a file of 0.0), and each needs code the write-up does not show:")
    reproduced = ("The notebooks reproduce the evidence with "
                  f"{' and '.join(f'`{name}`' for name in BEYOND_THE_WRITE_UP)} (`src/accumbug/lessons/symptom.py`). "
                  "Why their file holds 0.0:")
    return ["## Where the reproduction departs from the write-up's code", "", intro, "",
            *(f"- `{name}`: {mechanism(name).needs}" for name in fit), "", reproduced, "",
            *(f"- `{name}`: {why}." for name, (_, why) in BEYOND_THE_WRITE_UP.items()), ""]


def incident_markdown(rows: list[dict]) -> str:
    """``docs/incident.md``: the write-up's claims one by one, each quoted in its own words
    (``incident.WRITE_UP_QUOTES``), with its measured verdict, the number and the notebook cell that prints it, after
    the evidence and where the reproduction departs from the write-up's code. ``rows`` are ``run_audit``'s."""
    about = (f"The incident's write-up (`{WRITE_UP}`), quoted one claim at a time, verbatim but for indentation "
             "(`src/accumbug/lessons/incident.py`), each claim with the verdict and the number the audit measured "
             "(`src/accumbug/lessons/audit.py`) and the notebook cell that prints it, "
             f"{AUDIT_CELL}: the one cell that shows every number of every measurement. Written by "
             "`accumbug.lessons.audit.write_incident`; regenerate it rather than edit it. All the verdicts in one "
             "table: [claims.md](claims.md).")
    evidence = (f"The write-up's evidence, as each of the mechanism gallery's {len(MECHANISMS)} cases is asked it "
                f"({DIAGNOSIS_CELL}):")
    lines = ["# The incident, claim by claim", "", about, "", f"{len(rows)} claims. {_tally(rows)}.", "", evidence, "",
             *(f"- {label}: **{EVIDENCE_STATUS[name]}**; {EVIDENCE_BASIS[name]}"
               for name, (label, _) in EVIDENCE.items()),
             "", *_departures()]
    for row in rows:
        lines += _incident_entry(row)
    return "\n".join(lines)


def write_incident(path: str | Path = "docs/incident.md", rows: list[dict] | None = None) -> Path:
    """Write ``incident_markdown`` to ``path`` atomically (measuring the claims first unless ``rows`` are given)."""
    rows = run_audit() if rows is None else rows
    atomic_write_text(path, incident_markdown(rows))
    return Path(path)
