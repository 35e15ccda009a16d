"""History files as training code leaves them, read by content, and what is wrong in them.

``read_histories(path)`` recognises a history by what it holds, not by its name:

* an accumbug **run folder** (``config.json`` and ``commit.json``): one ``History`` per tracker
  (kind ``accumbug-run``), found through ``accumbug.runfolder.RunFolder``;
* **JSON** whose top level is a dict of lists of numbers: Keras' ``History.history`` saved with
  ``json.dump`` (kind ``keras``: ``loss``, ``accuracy``, ``val_*``), any other such dict, a list of
  per-epoch dicts, or this package's strict history files (``"format": "accumbug-history/..."``,
  read with ``accumbug.history.loads_history`` so their ``null``\\ s become NaN or ±inf again)
  (kind ``json``);
* Hugging Face's ``trainer_state.json`` (a dict with ``log_history``; kind ``hf-trainer-state``):
  one series per logged key, each value with its epoch and step;
* a **CSV** whose header has ``epoch`` or ``step`` (Lightning's ``CSVLogger`` ``metrics.csv``,
  Keras' ``CSVLogger``; kind ``lightning-csv``): empty cells are skipped, never read as 0.

Python's ``json`` reads ``NaN``, ``Infinity`` and ``-Infinity``; each one found is recorded in
``History.invalid_tokens``. Anything the doctor cannot use raises ``UnusableInput`` with one line
naming the path and why; no other exception escapes for bad input. ``check_history`` gives the
findings a history shows on its own (``invalid-json-tokens``, ``non-finite-values``,
``zeroed-history``); ``consoles.compare`` sets a history beside the console that printed it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..history import HISTORY_FORMAT, HistoryFileError, decode_nonfinite, loads_history
from ..runfolder import COMMIT, CONFIG, RunFolder, RunFolderError
from .findings import Finding, UnusableInput

__all__ = ["HISTORY_KINDS", "MAX_BYTES", "History", "check_history", "csv_header", "format_numbers", "read_histories",
           "read_history", "read_text"]

MAX_BYTES = 64 * 1024 * 1024  # the largest file the doctor reads; checked with os.stat before reading
SNIFF_BYTES = 8192  # a NUL byte in this many first bytes makes a file binary
HISTORY_KINDS = ("json", "keras", "hf-trainer-state", "lightning-csv", "accumbug-run")
_CONSTANTS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_TOKEN = re.compile(r"(?<![\w\"])(?:NaN|-?Infinity)(?![\w\"])")
_CSV_NAME = re.compile(r"[A-Za-z_][\w./-]*")
_INDEX_COLUMNS = ("epoch", "step")
_SHOWN = 8  # values and positions an evidence line lists before "..."


@dataclass
class History:
    """One history: ``series`` per metric (per epoch, or per logged step for HF and Lightning).

    ``invalid_tokens`` holds every ``NaN``/``Infinity``/``-Infinity`` token of the raw JSON, in
    order; ``line_of`` the line where a series' key (or a token, by its spelling) first appears.
    ``epochs[key]`` and ``steps[key]`` give each value's epoch and step where the file records them
    (HF: ``epoch`` is a float, 1.0 at the end of the first epoch; Lightning: 0-based as it writes
    them); without an entry, value ``i`` is epoch ``i + 1``. ``tracker`` names a run folder's tracker.
    """

    path: str
    kind: str
    series: dict[str, list[float]]
    invalid_tokens: list[str] = field(default_factory=list)
    line_of: dict[str, int] = field(default_factory=dict)
    epochs: dict[str, list[float]] = field(default_factory=dict)
    steps: dict[str, list[float]] = field(default_factory=dict)
    tracker: str | None = None


# -- reading text, safely -------------------------------------------------------------------------


def _refuse_stat(path: Path) -> os.stat_result:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise UnusableInput(f"{path}: no such file or folder") from None
    except OSError as error:
        raise UnusableInput(f"{path}: cannot read it ({error.strerror or error})") from None
    if stat.S_ISDIR(info.st_mode):
        raise UnusableInput(f"{path}: a folder, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise UnusableInput(f"{path}: not a regular file (a pipe, device or socket); the doctor reads files only")
    if info.st_size > MAX_BYTES:
        raise UnusableInput(f"{path}: {info.st_size:,} bytes ({info.st_size / 2**20:.1f} MiB), over the doctor's "
                            f"limit of {MAX_BYTES:,} bytes ({MAX_BYTES // 2**20} MiB); not read")
    return info


def read_text(path) -> str:
    """The text of a file the doctor may read, or ``UnusableInput`` saying why not.

    Refused: a missing path, a folder, an unreadable file, one over ``MAX_BYTES`` (its size is
    checked before anything is read), binary content (a NUL byte in the first 8 KB), and bytes
    that are not UTF-8. A UTF-8 byte-order mark is dropped.
    """
    path = Path(path)
    _refuse_stat(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except OSError as error:
        raise UnusableInput(f"{path}: cannot read it ({error.strerror or error})") from None
    if len(data) > MAX_BYTES:
        raise UnusableInput(f"{path}: grew over the doctor's limit of {MAX_BYTES:,} bytes while being read; not read")
    nul = data.find(b"\0", 0, SNIFF_BYTES)
    if nul >= 0:
        utf16 = " (UTF-16 text? save it as UTF-8)" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise UnusableInput(f"{path}: binary content (a NUL byte at offset {nul}){utf16}; the doctor reads text files")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UnusableInput(f"{path}: not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start} "
                            "is not UTF-8); save it as UTF-8") from None
    return text.removeprefix("\ufeff")


# -- numbers and line numbers ----------------------------------------------------------------------


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _as_float(value) -> float:
    """A JSON number or null as a Python float: null is NaN, an int too large for a float is ±inf."""
    if value is None:
        return math.nan
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _is_series(value) -> bool:
    """A list of numbers (nulls allowed, booleans not) with at least one number, or an empty list."""
    return isinstance(value, list) and all(_is_number(v) or v is None for v in value) and \
        (not value or any(_is_number(v) for v in value))


def _line_at(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _key_lines(text: str, keys) -> dict[str, int]:
    """The line where each key first appears as a JSON object key."""
    lines = {}
    for key in keys:
        match = re.search(re.escape(json.dumps(key)) + r"\s*:", text)
        if match:
            lines[key] = _line_at(text, match.start())
    return lines


def _token_lines(text: str, tokens: list[str]) -> dict[str, int]:
    lines = {}
    for match in _TOKEN.finditer(text) if tokens else ():
        lines.setdefault(match.group(), _line_at(text, match.start()))
        if len(lines) == len(set(tokens)):
            break
    return lines


# -- JSON ------------------------------------------------------------------------------------------


def _parse_json(text: str, path) -> tuple[object, list[str]]:
    """Python's ``json`` reading of ``text`` and the non-standard tokens it accepted, in order."""
    tokens: list[str] = []

    def constant(token: str) -> float:
        tokens.append(token)
        return _CONSTANTS[token]

    try:
        return json.loads(text, parse_constant=constant), tokens
    except RecursionError:
        raise UnusableInput(f"{path}: JSON nested too deeply to read (past Python's recursion limit)") from None
    except json.JSONDecodeError as error:
        raise UnusableInput(f"{path}: invalid or truncated JSON at line {error.lineno} column {error.colno} "
                            f"(char {error.pos}): {error.msg}") from None
    except ValueError as error:  # e.g. an integer of more digits than Python converts
        raise UnusableInput(f"{path}: JSON that Python cannot read ({error})") from None


def _shape(document) -> str:
    if isinstance(document, dict):
        keys = ", ".join(str(k) for k in list(document)[:6]) + (", ..." if len(document) > 6 else "")
        return f"an object with keys {keys}" if document else "an empty object"
    if isinstance(document, list):
        return f"a list of {len(document)} items" + (" that are not per-epoch records" if document else "")
    return f"a single {type(document).__name__} value"


def _looks_keras(keys) -> bool:
    """Keras' ``History.history``: ``loss``, every ``val_X`` beside its ``X``, no ``train_`` prefix."""
    keys = set(keys)
    return "loss" in keys and not any(k.startswith("train_") for k in keys) and \
        all(k[4:] in keys for k in keys if k.startswith("val_"))


def _accumbug_document(text: str, document: dict, tokens: list[str], path) -> dict:
    """A strict history file's content with its nulls put back (``loads_history``; by hand if edited to hold
    non-standard tokens, which the strict reader refuses)."""
    try:
        if not tokens:
            return loads_history(text, source=str(path))
        body = {k: v for k, v in document.items() if k not in ("format", "nonfinite")}
        nonfinite = document.get("nonfinite", {})
        if not isinstance(nonfinite, dict):
            raise HistoryFileError(f"{path}: 'nonfinite' must be an object")
        return decode_nonfinite(body, nonfinite)
    except HistoryFileError as error:
        raise UnusableInput(f"{path}: a broken {HISTORY_FORMAT} file ({error})") from None


def _records(entries: list, path) -> tuple[dict, dict, dict]:
    """Series, epochs and steps from per-log dicts (HF's ``log_history``, a list of per-epoch dicts)."""
    series: dict[str, list[float]] = {}
    epochs: dict[str, list[float]] = {}
    steps: dict[str, list[float]] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise UnusableInput(f"{path}: log entry {index} is {_shape(entry)}, not an object of numbers")
        epoch, step = entry.get("epoch"), entry.get("step")
        for key, value in entry.items():
            if key in _INDEX_COLUMNS or not _is_number(value):
                continue
            series.setdefault(key, []).append(_as_float(value))
            epochs.setdefault(key, []).append(_as_float(epoch) if _is_number(epoch) else math.nan)
            steps.setdefault(key, []).append(_as_float(step) if _is_number(step) else math.nan)
    return series, {k: v for k, v in epochs.items() if not all(map(math.isnan, v))}, \
        {k: v for k, v in steps.items() if not all(map(math.isnan, v))}


def _json_history(text: str, path) -> History:
    document, tokens = _parse_json(text, path)
    history = History(str(path), "json", {}, tokens)
    if isinstance(document, dict) and str(document.get("format", "")).startswith("accumbug-history/"):
        content = _accumbug_document(text, document, tokens, path)
        history.series = {k: [_as_float(v) for v in value] for k, value in content.items() if _is_series(value)}
    elif isinstance(document, dict) and isinstance(document.get("log_history"), list):
        history.kind = "hf-trainer-state"
        history.series, history.epochs, history.steps = _records(document["log_history"], path)
    elif isinstance(document, dict) and document and all(_is_series(v) for v in document.values()):
        history.kind = "keras" if _looks_keras(document) else "json"
        history.series = {k: [_as_float(v) for v in value] for k, value in document.items()}
    elif isinstance(document, list) and document and all(isinstance(e, dict) for e in document):
        history.series, history.epochs, history.steps = _records(document, path)
    if not history.series:
        raise UnusableInput(f"{path}: is JSON but not a history the doctor knows ({_shape(document)}; expected "
                            "a dict of lists of numbers, a trainer_state.json or an accumbug history file)")
    history.line_of = {**_key_lines(text, history.series), **_token_lines(text, tokens)}
    return history


# -- CSV -------------------------------------------------------------------------------------------


def csv_header(text: str) -> list[str] | None:
    """The header of a metrics CSV (names only, ``epoch`` or ``step`` among them), or None."""
    first = text.lstrip("\n").split("\n", 1)[0].strip()
    names = [name.strip() for name in first.split(",")]
    if len(names) < 2 or not all(_CSV_NAME.fullmatch(name) for name in names):
        return None
    return names if any(name in _INDEX_COLUMNS for name in names) else None


def _csv_number(cell: str, where: str) -> float:
    try:
        return float(cell)
    except ValueError:
        raise UnusableInput(f"{where}: {cell[:40]!r} is not a number") from None


def _csv_history(text: str, path, header: list[str]) -> History:
    history = History(str(path), "lightning-csv", {})
    rows = csv.reader(io.StringIO(text.lstrip("\n")))
    try:
        next(rows)
        for row in rows:
            cells = dict(zip(header, (cell.strip() for cell in row)))
            index = {name: _csv_number(cells[name], f"{path}: line {rows.line_num}, column {name}")
                     for name in _INDEX_COLUMNS if cells.get(name)}
            for name, cell in cells.items():
                if cell and name not in _INDEX_COLUMNS:
                    value = _csv_number(cell, f"{path}: line {rows.line_num}, column {name}")
                    history.series.setdefault(name, []).append(value)
                    history.line_of.setdefault(name, rows.line_num)
                    for column, store in (("epoch", history.epochs), ("step", history.steps)):
                        store.setdefault(name, []).append(index.get(column, math.nan))
    except csv.Error as error:
        raise UnusableInput(f"{path}: unreadable CSV at line {rows.line_num} ({error})") from None
    if not history.series:
        raise UnusableInput(f"{path}: a CSV with the header {','.join(header)} but no metric values")
    history.epochs = {k: v for k, v in history.epochs.items() if not all(map(math.isnan, v))}
    history.steps = {k: v for k, v in history.steps.items() if not all(map(math.isnan, v))}
    return history


# -- dispatch --------------------------------------------------------------------------------------


def _file_history(path) -> History:
    text = read_text(path)
    stripped = text.lstrip()
    if not stripped:
        raise UnusableInput(f"{path}: empty file")
    if stripped[0] in "{[":
        return _json_history(text, path)
    header = csv_header(text)
    if header is not None:
        return _csv_history(text, path, header)
    raise UnusableInput(f"{path}: not a history the doctor knows (neither JSON nor a CSV with an epoch or "
                        "step column)")


def _run_histories(path: Path) -> list[History]:
    folder = RunFolder(path)
    try:
        places = [(name, folder.history_path(name)) for name in folder.trackers]
    except (RunFolderError, KeyError, TypeError) as error:
        raise UnusableInput(f"{path}: an accumbug run folder the doctor cannot read ({error})") from None
    histories = []
    for name, history_path in places:
        history = _file_history(history_path)
        history.kind, history.tracker = "accumbug-run", name
        histories.append(history)
    return histories


def read_histories(path) -> list[History]:
    """Every history at ``path``: one per tracker for an accumbug run folder, else the file's one."""
    path = Path(path)
    if path.is_dir():
        if (path / CONFIG).is_file() and (path / COMMIT).is_file():
            return _run_histories(path)
        raise UnusableInput(f"{path}: a folder, but not an accumbug run folder (no {CONFIG} and {COMMIT})")
    return [_file_history(path)]


def read_history(path) -> History:
    """The history in one file (for a run folder: its first tracker's; ``read_histories`` gives all)."""
    return read_histories(path)[0]


# -- checks ----------------------------------------------------------------------------------------


def format_numbers(numbers) -> str:
    """``1-4, 7, 9-10`` for whole numbers (runs of consecutive ones joined), else the values, shortened."""
    numbers = list(numbers)
    if not all(float(n).is_integer() for n in numbers):
        return ", ".join(f"{n:g}" for n in numbers[:_SHOWN]) + (", ..." if len(numbers) > _SHOWN else "")
    runs: list[list[int]] = []
    for n in (int(n) for n in numbers):
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    text = [f"{a}" if a == b else f"{a}-{b}" for a, b in runs]
    return ", ".join(text[:_SHOWN]) + (", ..." if len(text) > _SHOWN else "")


def _position(history: History, key: str, index: int) -> str:
    """Where value ``index`` of ``key`` was logged: ``step 120 (epoch 0.5)`` or ``epoch 3``."""
    step = history.steps.get(key, [math.nan] * (index + 1))[index]
    epoch = history.epochs.get(key, [index + 1.0] * (index + 1))[index]
    if not math.isnan(step):
        return f"step {step:g}" + ("" if math.isnan(epoch) else f" (epoch {epoch:g})")
    return f"epoch {epoch:g}"


def _token_findings(history: History) -> list[Finding]:
    if not history.invalid_tokens:
        return []
    counts = Counter(history.invalid_tokens)
    seen = ", ".join(f"{n} x {token}" for token, n in counts.items())
    first = min(history.line_of.get(token, 0) for token in counts) or None
    return [Finding("invalid-json-tokens", history.path, first,
                    f"{len(history.invalid_tokens)} non-standard JSON token(s): {seen}"
                    + (f" (first at line {first})" if first else ""),
                    "strict JSON parsers (browsers' JSON.parse, jq, most languages' JSON libraries) reject the "
                    "whole file, so no value in it can be read there; only Python's json accepts it")]


def _nonfinite_findings(history: History) -> list[Finding]:
    findings = []
    for key, values in history.series.items():
        bad = [i for i, v in enumerate(values) if not math.isfinite(v)]
        if not bad:
            continue
        where = ", ".join(f"{_position(history, key, i)}: {values[i]}" for i in bad[:_SHOWN])
        findings.append(Finding(
            "non-finite-values", history.path, history.line_of.get(key),
            f"{key} holds {len(bad)} non-finite value(s) of {len(values)}: {where}"
            + (", ..." if len(bad) > _SHOWN else ""),
            f"a plot of {key} breaks there, and any mean, minimum or early-stopping rule over it gives nan or "
            "inf; the value says the run diverged, not by how much"))
    return findings


def _alive(history: History, zeroed: str) -> list[str]:
    """The series beside ``zeroed`` that show training ran: one that changes, or an accuracy that is not 0."""
    shown = []
    for key, values in history.series.items():
        finite = [v for v in values if math.isfinite(v)]
        if key == zeroed or not finite:
            continue
        if len(set(finite)) > 1:
            shown.append(f"{key} changes ({format_numbers(finite[:1])} to {format_numbers(finite[-1:])})")
        elif any(word in key.lower() for word in ("acc", "top")) and finite[0] != 0:
            shown.append(f"{key} is {finite[0]:g}, not 0")
    return shown


def _zeroed_findings(history: History) -> list[Finding]:
    findings = []
    for key, values in history.series.items():
        if "loss" not in key.lower() or not values or any(v != 0.0 for v in values):
            continue
        alive = _alive(history, key)
        if alive:
            findings.append(Finding(
                "zeroed-history", history.path, history.line_of.get(key),
                f"{key} is exactly 0.0 at all {len(values)} points while " + "; ".join(alive[:4]),
                f"the saved {key} says nothing of the run: a loss of exactly 0.0 at every epoch means a perfect fit "
                "from the first epoch on, which the other series contradict; plots and comparisons read from this "
                "file are wrong"))
    return findings


def check_history(history: History) -> list[Finding]:
    """What a history shows on its own: non-standard JSON tokens, non-finite values, a loss of exact zeros.

    A healthy file gives no finding.
    """
    return [*_token_findings(history), *_nonfinite_findings(history), *_zeroed_findings(history)]
