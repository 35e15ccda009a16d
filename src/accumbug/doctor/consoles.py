"""Console logs: the epoch values a training script printed, and whether its history file says the same.

``read_console`` reads the formats training code prints, each epoch's last values winning:

* this package's and the incident's line ``Epoch 1 [Train]: loss=9.1621, top1=0.00%, top5=0.20%``,
  with a trailing ``  [tracker]`` when several trackers print (each tracker's lines are kept apart);
* tqdm bars, also as a log captures them with carriage returns: ``Epoch 3: 100%|██| 852/852
  [00:01<00:00, loss=3.5120, top1=34.19%]`` (Lightning's bar too, ``v_num`` skipped);
* Keras: an ``Epoch 2/5`` line (none for a single epoch), then progress lines
  ``852/852 ━━━━ 1s 2ms/step - accuracy: 0.3419 - loss: 3.5120`` (Keras 3, colour codes removed)
  or ``[=====] - 1s 2ms/step - loss: 1.2345`` (Keras 2);
* the Hugging Face Trainer's dict lines ``{'eval_loss': 0.62, 'epoch': 1.0}`` at whole epochs;
* plain lines: ``epoch 3 ... loss 3.512``, ``epoch=3 loss=3.512``, ``Epoch 3, train loss: 3.512``.

``compare(history, console)`` flags a metric whose saved value differs from the printed one by
more than the print's rounding (``file-disagrees-with-console``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from .findings import Finding, UnusableInput
from .history_files import History, format_numbers, read_text

__all__ = ["Console", "canonical_name", "compare", "looks_like_console", "parse_console", "read_console"]

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_SEGMENT = re.compile(r"[\r\x08]+")
_VALUE = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?%?|[-+]?(?:nan|inf(?:inity)?)"
_NUMBER = re.compile(rf"(?:{_VALUE})(?![\w.])", re.IGNORECASE)
_KEY_EQUALS = re.compile(r"([A-Za-z_][\w./-]*)\s*=\s*([^,\s\]]+)")
_TQDM = re.compile(r"Epoch\s+(\d+)(?:\s*/\s*\d+)?(?:\s*\[(\w+)\])?\s*:\s*\d+%\|[^|]*\|\s*\d+/\d+\s*\[([^\]]*)\]")
_ACCUMBUG = re.compile(r"\s*Epoch (\d+) \[(\w+)\]: (.*?)(?:\s{2,}\[([^\]]+)\])?\s*")
_KERAS_HEADER = re.compile(r"\s*Epoch\s+(\d+)\s*/\s*\d+\s*")
_KERAS_PAIR = re.compile(r"(?:^|\s)-\s+([A-Za-z_][\w./-]*):\s+(\S+)")
_KERAS_PROGRESS = re.compile(r"\s*\d+/\d+\s+(?:━|\[[=>.]*\])")  # a progress line's start: "65/65 ━━" or "65/65 [==]"
_HF_LINE = re.compile(r"\s*\{.*'epoch':\s*([\d.]+).*\}\s*")
_HF_PAIR = re.compile(r"'([A-Za-z_][\w./-]*)':\s*([^,}\s]+)")
_PLAIN = re.compile(r"\W*epoch\s*[=:]?\s*(\d+)(?:\s*/\s*\d+)?\b(.*)", re.IGNORECASE)
_PLAIN_PAIR = re.compile(rf"\b([A-Za-z][\w]*(?: [A-Za-z][\w]*)?)\s*[=:]?\s*({_VALUE})(?![\w.])", re.IGNORECASE)
_SKIPPED = {"v_num", "epoch", "step", "it", "batch", "eta", "time"}
_ACCURACY = {"acc", "accuracy", "top1", "top_1", "top1_accuracy", "top_1_accuracy", "categorical_accuracy",
             "sparse_categorical_accuracy", "binary_accuracy"}
_TOP5 = {"top5", "top_5", "top5_accuracy", "top_5_accuracy", "top_k_categorical_accuracy",
         "sparse_top_k_categorical_accuracy"}
_PERCENT_NAMES = {"top1", "top_1", "top5", "top_5"}  # this package's top-k: percent
_VAL_PREFIXES = ("val_", "valid_", "validation_", "eval_")


@dataclass
class Console:
    """Epoch values as printed: ``epochs[e][metric]``; ``digits[metric]`` the fewest decimals printed for it.

    ``places[e][metric]`` is the decimals of that one value (``1.2345e-04`` counts 8), so a value
    is known to half a unit of its last digit; ``percent`` the metrics printed with ``%``;
    ``line_of[e]`` the line of the epoch's last values. With ``  [tracker]`` tags, this object is
    the first tracker's (or the untagged lines') and ``trackers`` holds one ``Console`` per tag.
    """

    path: str
    epochs: dict[int, dict[str, float]]
    digits: dict[str, int]
    line_of: dict[int, int]
    places: dict[int, dict[str, int]] = field(default_factory=dict)
    percent: set[str] = field(default_factory=set)
    tracker: str | None = None
    trackers: dict[str, Console] = field(default_factory=dict)

    def add(self, epoch: int, pairs, line: int) -> None:
        """Record printed ``(name, text)`` pairs for ``epoch``; later values replace earlier ones."""
        for name, text in pairs:
            parsed = _printed_value(text)
            if parsed is None or name.lower() in _SKIPPED:
                continue
            value, places, percent = parsed
            self.epochs.setdefault(epoch, {})[name] = value
            self.places.setdefault(epoch, {})[name] = places
            self.digits[name] = min(self.digits.get(name, places), places)
            self.line_of[epoch] = line
            if percent:
                self.percent.add(name)


def _printed_value(text: str) -> tuple[float, int, bool] | None:
    """``(value, decimals, printed with %)`` of a printed number, or None if it is not one."""
    text = text.strip().rstrip(",;")
    match = _NUMBER.fullmatch(text)
    if not match:
        return None
    percent = text.endswith("%")
    body = text.rstrip("%").lower()
    if "nan" in body or "inf" in body:
        return (math.nan if "nan" in body else -math.inf if body.startswith("-") else math.inf), 0, percent
    mantissa, _, exponent = body.partition("e")
    places = len(mantissa.partition(".")[2]) - int(exponent or 0)
    return float(body), max(-300, min(places, 300)), percent  # 10.0 ** -places stays a float


# -- parsing ---------------------------------------------------------------------------------------


def _segment_values(segment: str, keras_epoch: int | None):
    """``(epoch, phase, pairs, tag, new keras epoch)`` for one segment of a line, or None for no values."""
    match = _TQDM.search(segment)
    if match:
        return int(match[1]), match[2], _KEY_EQUALS.findall(match[3]), None, keras_epoch
    match = _ACCUMBUG.fullmatch(segment)
    if match:
        return int(match[1]), match[2], _KEY_EQUALS.findall(match[3]), match[4], keras_epoch
    match = _KERAS_HEADER.fullmatch(segment)
    if match:
        return None, None, [], None, int(match[1])
    match = _HF_LINE.fullmatch(segment)
    if match and float(match[1]).is_integer():
        return int(float(match[1])), None, _HF_PAIR.findall(segment), None, keras_epoch
    match = _PLAIN.match(segment)
    if match:
        return int(match[1]), None, _PLAIN_PAIR.findall(match[2]), None, keras_epoch
    pairs = _KERAS_PAIR.findall(segment)
    if pairs and keras_epoch is None and _KERAS_PROGRESS.match(segment):
        keras_epoch = 1  # fit(epochs=1) prints no "Epoch 1/1" header
    if pairs and keras_epoch is not None:
        return keras_epoch, None, pairs, None, keras_epoch
    return None


def _named(pairs, phase: str | None):
    """The pairs' names as printed; an accumbug ``[Eval]`` line's names get the ``eval_`` prefix of its keys."""
    prefix = "eval_" if phase and phase.lower() == "eval" else ""
    return [(prefix + name.strip(), text) for name, text in pairs]


def parse_console(text: str, path: str = "<console>") -> Console:
    """The console in ``text`` (``path`` only names it); epochs may be empty if nothing was recognised."""
    consoles: dict[str | None, Console] = {}
    keras_epoch = None
    for number, line in enumerate(text.split("\n"), 1):
        for segment in _SEGMENT.split(_ANSI.sub("", line)):
            found = _segment_values(segment, keras_epoch) if segment.strip() else None
            if found is None:
                continue
            epoch, phase, pairs, tag, keras_epoch = found
            if epoch is not None and pairs:
                console = consoles.setdefault(tag, Console(path, {}, {}, {}, tracker=tag))
                console.add(epoch, _named(pairs, phase), number)
    consoles = {tag: console for tag, console in consoles.items() if console.epochs}
    if not consoles:
        return Console(path, {}, {}, {})
    main = consoles.get(None) or next(iter(consoles.values()))
    main.trackers = {tag: console for tag, console in consoles.items() if tag is not None}
    return main


def looks_like_console(text: str) -> bool:
    """Whether ``text`` holds epoch values in a console format the doctor reads."""
    return bool(parse_console(text).epochs)


def read_console(path, text: str | None = None) -> Console:
    """The console log at ``path`` (or ``text``, with ``path`` naming it); ``UnusableInput`` if it holds no
    epoch values the doctor recognises."""
    text = read_text(path) if text is None else text
    console = parse_console(text, str(path))
    if not console.epochs:
        raise UnusableInput(f"{path}: no epoch values in a console format the doctor knows (Epoch N [Train]: "
                            "loss=..., tqdm bars, Keras progress lines, epoch N loss X)")
    return console


# -- comparing -------------------------------------------------------------------------------------


def canonical_name(name: str, keep_train: bool = False) -> str:
    """One spelling per metric: ``train_loss``, ``loss``, ``train loss`` -> ``loss``; ``acc``, ``accuracy``,
    ``train_top1`` -> ``top1``; ``val_acc``, ``eval_accuracy`` -> ``val_top1``; ``train_loss_epoch`` -> ``loss``.

    ``keep_train`` keeps a ``train_`` prefix (HF's ``train_loss`` is the run's mean, not an epoch's).
    """
    name = re.sub(r"[\s/-]+", "_", name.strip().lower())
    name = name.removesuffix("_epoch")
    prefix = ""
    for candidate in _VAL_PREFIXES:
        if name.startswith(candidate):
            prefix, name = "val_", name[len(candidate):]
            break
    if not prefix and name.startswith("train_") and not keep_train:
        name = name[len("train_"):]
    return prefix + ("top1" if name in _ACCURACY else "top5" if name in _TOP5 else name)


def _per_epoch(history: History, key: str) -> dict[int, float] | None:
    """``{epoch: value}`` of a series logged once per epoch, or None for a per-step series."""
    values = history.series[key]
    if key not in history.epochs:
        return {index + 1: value for index, value in enumerate(values)}
    epochs = history.epochs[key]
    if any(math.isnan(e) or not float(e).is_integer() for e in epochs) or len(set(epochs)) != len(epochs):
        return None
    return {int(e): value for e, value in zip(epochs, values)}


def _history_metrics(history: History) -> dict[str, tuple[str, dict[int, float]]]:
    """Canonical name -> (the history's key, its per-epoch values), for the series that align with epochs."""
    found: dict[str, tuple[str, dict[int, float]]] = {}
    for key in history.series:
        values = _per_epoch(history, key)
        if values:
            found.setdefault(canonical_name(key, keep_train=history.kind == "hf-trainer-state"), (key, values))
    return found


def _is_percent(name: str, values, printed_percent: bool) -> bool:
    base = name.lower().rsplit("_", 1)[-1] if name.lower().startswith(("train_", "val_", "eval_")) else name.lower()
    return printed_percent or base in _PERCENT_NAMES or any(math.isfinite(v) and abs(v) > 1 for v in values)


def _differs(printed: float, places: int, saved: float) -> bool:
    """Whether ``saved`` cannot be what printed as ``printed`` with ``places`` decimals (NaN and inf count)."""
    if math.isnan(printed) or math.isnan(saved):
        return math.isnan(printed) != math.isnan(saved)
    if math.isinf(printed) or math.isinf(saved):
        return printed != saved
    return abs(saved - printed) > 0.5 * 10.0 ** -places * (1 + 1e-9) + 1e-12 * abs(printed)


def _mismatches(console: Console, name: str, saved: dict[int, float], factor: float, shift: int) -> list[int]:
    return [epoch for epoch, values in sorted(console.epochs.items()) if name in values and epoch - shift in saved
            and _differs(values[name], console.places[epoch][name], saved[epoch - shift] * factor)]


def _scale(console: Console, name: str, key: str, saved: dict[int, float], shift: int) -> float:
    """The factor that puts the file's values on the console's scale: 1, or 100 / 0.01 between a fraction
    and a percent (each side's by its ``%``, its name, or values above 1); another factor only if it
    makes every epoch agree where the detected one does not."""
    if canonical_name(name) not in ("top1", "top5", "val_top1", "val_top5"):
        return 1.0
    printed = [values[name] for values in console.epochs.values() if name in values]
    console_percent = _is_percent(name, printed, name in console.percent)
    file_percent = _is_percent(key, saved.values(), False)
    factor = 1.0 if console_percent == file_percent else (100.0 if console_percent else 0.01)
    if not _mismatches(console, name, saved, factor, shift):
        return factor
    fits = [f for f in (1.0, 100.0, 0.01) if not _mismatches(console, name, saved, f, shift)]
    return fits[0] if fits else factor


def _shift(console: Console, saved_epochs) -> int:
    """How the console's epoch numbers relate to the file's: 0, or ±1 where one counts from 0, one from 1."""
    if not console.epochs or not saved_epochs:
        return 0
    shift = min(console.epochs) - min(saved_epochs)
    return shift if abs(shift) == 1 else 0


def _show(value: float, places: int | None = None) -> str:
    if not math.isfinite(value):
        return str(value)
    if places is not None and 0 <= places <= 12:
        return f"{value:.{places}f}"
    text = f"{value:.6g}"
    return text if any(c in text for c in ".en") else text + ".0"


def _finding(history: History, console: Console, name: str, key: str, saved, factor: float, shift: int,
             bad: list[int]) -> Finding:
    printed = [console.epochs[e][name] for e in bad]
    filed = [saved[e - shift] for e in bad]
    more = ", ..." if len(bad) > 8 else ""
    scale = "" if factor == 1.0 else f" (file x {factor:g} for the console's scale)"
    evidence = (f"{key} vs printed {name}, epoch{'s' if len(bad) > 1 else ''} {format_numbers(bad)}: console "
                + ", ".join(_show(v, console.places[e][name]) for v, e in zip(printed[:8], bad)) + more
                + "; file " + ", ".join(_show(v) for v in filed[:8]) + more + scale
                + f" ({console.path}, line {console.line_of[bad[0]]})")
    return Finding("file-disagrees-with-console", history.path, history.line_of.get(key), evidence,
                   _consequence(key, printed, [v * factor for v in filed], bad))


def _consequence(key: str, printed: list[float], filed: list[float], epochs: list[int]) -> str:
    relative = [(f - p) / abs(p) for p, f in zip(printed, filed)
                if math.isfinite(p) and math.isfinite(f) and p != 0]
    parts = []
    if relative:
        low, high = min(relative), max(relative)
        span = f"{low:+.1%}" if abs(high - low) < 5e-4 else f"{low:+.1%} to {high:+.1%}"
        parts.append(f"the saved {key} is {span} off the value the console printed")
    odd = [e for p, f, e in zip(printed, filed, epochs) if not (math.isfinite(p) and math.isfinite(f))]
    if odd:
        parts.append(f"at epoch(s) {format_numbers(odd)} one side is not a finite number")
    zero = [e for p, f, e in zip(printed, filed, epochs) if p == 0 and math.isfinite(f)]
    if zero:
        parts.append(f"at epoch(s) {format_numbers(zero)} the console printed 0")
    return "; ".join(parts) + ": plots, comparisons and model selection read from the file are wrong there"


def compare(history: History, console: Console) -> list[Finding]:
    """``file-disagrees-with-console`` per metric present in both whose saved value at some epoch differs
    from the printed one by more than half a unit of its last printed digit (NaN or inf against a
    number counts).

    Names are mapped (``loss`` <-> ``train_loss``/``train_loss_epoch``; ``top1``/``accuracy`` <->
    ``train_top1``/``acc``), percent against fraction is detected, and epochs counted from 0 and
    from 1 are aligned. A series logged per step (HF's ``loss`` at fractional epochs, Lightning's
    ``*_step``) is not compared: only values logged once per whole epoch can be aligned with the
    console, so a history with none gives no finding. A run folder's history is compared with
    its own tracker's tagged lines; a history of a tracker the console never tagged gives none.
    """
    if history.tracker is not None and console.trackers:
        if history.tracker not in console.trackers:
            return []
        console = console.trackers[history.tracker]
    metrics = _history_metrics(history)
    names = {canonical_name(n): n for values in console.epochs.values() for n in values}
    shift = _shift(console, {e for c, (_, saved) in metrics.items() if c in names for e in saved})
    findings = []
    for canonical, (key, saved) in metrics.items():
        name = names.get(canonical)
        if name is None:
            continue
        factor = _scale(console, name, key, saved, shift)
        bad = _mismatches(console, name, saved, factor, shift)
        if bad:
            findings.append(_finding(history, console, name, key, saved, factor, shift, bad))
    return findings
