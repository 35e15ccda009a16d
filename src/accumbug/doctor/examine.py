"""Gather the doctor's findings for a list of paths: recognise each input, check it, compare pairs.

Each path is recognised by its content: a run folder of this package, a notebook, a history
(JSON or CSV), a console log, or Python source. A path given by name that is none of these
is unusable input (``UnusableInput``: the CLI exits 2); inside a folder given by name, files
of other kinds are skipped and listed. A history given by name is compared with every
console log given by name, and a run folder's histories with its own console log; files
found by walking a folder are checked on their own. Where the files show a console of real
values and a saved loss of zeros, the finding also says which cases of the mechanism gallery
fit that evidence and which do not. The doctor does not run the gallery: it reads the
gallery's diagnosis stored beside it (``mechanism_evidence.json``, written by
``python -m accumbug.lessons.mechanisms`` and checked against a fresh run by
``tests/test_mechanisms.py``), so it imports nothing of ``lessons``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from ..runfolder import CONFIG, CONSOLE, RunFolder
from .code_checks import check_notebook, check_python
from .consoles import Console, canonical_name, compare, looks_like_console, read_console
from .findings import Finding, UnusableInput, ordered
from .history_files import History, check_history, csv_header, read_histories, read_text

__all__ = ["MECHANISM_EVIDENCE_FILE", "Examination", "examine", "fitting_mechanisms", "mechanism_evidence"]

WALKED_SUFFIXES = {".py", ".ipynb", ".json", ".csv", ".log", ".txt"}  # what a folder walk looks at
MECHANISM_EVIDENCE_FILE = Path(__file__).with_name("mechanism_evidence.json")  # package data


@dataclass
class Examination:
    """What the doctor found: the findings (most serious first per file), the files read and the files skipped."""

    findings: list[Finding] = field(default_factory=list)
    examined: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _kind(text: str, path: Path) -> str:
    """``notebook``, ``history``, ``console`` or ``python``, by content; ``UnusableInput`` when none."""
    head = text.lstrip()[:1]
    if not head:
        raise UnusableInput(f"{str(path)!r}: empty (nothing but white space)")
    if head in "{[":
        return "notebook" if '"nbformat"' in text[:200_000] and '"cells"' in text[:200_000] else "history"
    code = path.suffix == ".py" or any(line.startswith(("import ", "from ", "def ", "class "))
                                       for line in text.splitlines())
    if code:  # before the others: a script's docstring or prints may mention "epoch, loss"
        return "python"
    if csv_header(text) is not None:
        return "history"  # a CSV of metrics: named columns, one of them epoch or step
    if looks_like_console(text):
        return "console"
    raise UnusableInput(f"{str(path)!r}: not a training script, notebook, history or console log the doctor knows")


def _read(path: Path) -> tuple[list[History], list[Console], list[Finding]]:
    """One file or run folder: its histories, its console logs, and the findings of its code."""
    if path.is_dir():  # a run folder: its histories and its own console log
        return read_histories(path), [read_console(RunFolder(path).file_path(CONSOLE))], []
    text = read_text(path)
    kind = _kind(text, path)
    if kind == "python":
        return [], [], check_python(text, str(path))
    if kind == "notebook":
        return [], [], check_notebook(text, str(path))
    if kind == "console":
        return [], [read_console(path)], []
    return read_histories(path), [], []


def _inputs(paths) -> tuple[list[Path], list[str]]:
    """The files and run folders to read: paths given by name, and what a folder walk finds (the rest skipped)."""
    chosen, skipped = [], []
    for given in map(Path, paths):
        if not given.exists():
            raise UnusableInput(f"{str(given)!r}: no such file or folder")
        if not given.is_dir() or (given / CONFIG).is_file():
            chosen.append(given)
            continue
        for found in sorted(p for p in given.rglob("*") if p.is_file() or (p / CONFIG).is_file()):
            if any(parent != given and (parent / CONFIG).is_file() for parent in found.parents):
                continue  # inside a run folder: read as part of it
            (chosen if (found / CONFIG).is_file() or found.suffix in WALKED_SUFFIXES else skipped).append(found)
    return chosen, [str(p) for p in skipped]


def _zero_loss(history: History) -> bool:
    losses = [values for key, values in history.series.items() if "loss" in key.lower() and values]
    return bool(losses) and all(v == 0.0 for values in losses for v in values)


def _accuracies(history: History) -> bool | None:
    """Whether the saved accuracies are all non-zero; None when the history holds none."""
    found = [v for key, values in history.series.items()
             if any(w in key.lower() for w in ("acc", "top")) for v in values]
    return None if not found else all(math.isfinite(v) and v > 0 for v in found)


def _console_real(consoles: list[Console]) -> bool | None:
    """Whether the consoles printed finite, non-zero losses every epoch; None without a console log."""
    losses = [value for console in consoles for metrics in console.epochs.values()
              for name, value in metrics.items() if canonical_name(name) == "loss"]
    return None if not losses else all(math.isfinite(v) and v != 0 for v in losses)


@lru_cache(maxsize=1)
def mechanism_evidence() -> dict:
    """The mechanism gallery's diagnosis as stored in ``MECHANISM_EVIDENCE_FILE``: ``evidence`` (each key
    and its label) and ``mechanisms`` (each ``key``, ``title`` and ``shows``: evidence key -> shown)."""
    return json.loads(MECHANISM_EVIDENCE_FILE.read_text(encoding="utf-8"))


def fitting_mechanisms(evidence: dict[str, bool]) -> tuple[list[str], list[str]]:
    """The gallery's mechanisms whose outcome shows all of ``evidence`` (key -> seen), and the rest."""
    mechanisms = mechanism_evidence()["mechanisms"]
    fit = [m["key"] for m in mechanisms if all(m["shows"][key] == seen for key, seen in evidence.items())]
    return fit, [m["key"] for m in mechanisms if m["key"] not in fit]


def _with_fits(finding: Finding, history: History, consoles: list[Console]) -> Finding:
    """A zeroed or disagreeing file's finding, with which gallery mechanisms fit what the files show."""
    seen = {"file_zero": True, "console_real": _console_real(consoles), "accuracies": _accuracies(history)}
    evidence = {key: value for key, value in seen.items() if value is not None}
    fit, rest = fitting_mechanisms(evidence)
    labels = mechanism_evidence()["evidence"]
    shown = ", ".join(f"{labels[key]}: {'yes' if value else 'no'}" for key, value in evidence.items())
    stop = "" if finding.consequence.endswith(".") else "."
    note = (f"{stop} Mechanisms of the gallery that fit what these files show ({shown}): "
            f"{', '.join(fit) or 'none'}; that do not: {', '.join(rest)} (accumbug.lessons.mechanisms; notebook 03).")
    return replace(finding, consequence=finding.consequence + note)


def _checked(histories: list[History], consoles: list[Console]) -> list[Finding]:
    """Each history's own findings, and its comparison with each console log it goes with."""
    found = []
    for history in histories:
        findings = check_history(history) + [f for console in consoles for f in compare(history, console)]
        if _zero_loss(history):
            findings = [_with_fits(f, history, consoles) if f.code in ("zeroed-history", "file-disagrees-with-console")
                        else f for f in findings]
        found += findings
    return found


def examine(paths) -> Examination:
    """Read and check every path (see the module docstring); ``UnusableInput`` for a path given by name that cannot be.

    A history is compared with a console log when both were given by name, or when both
    belong to one run folder; files found by walking a folder are checked on their own.
    """
    chosen, skipped = _inputs(paths)
    named = {Path(p) for p in paths}
    result, paired = Examination(skipped=skipped), ([], [])
    for path in chosen:
        try:
            histories, consoles, findings = _read(path)
        except UnusableInput:
            if path in named:
                raise
            result.skipped.append(str(path))
            continue
        result.examined.append(str(path))
        result.findings += findings
        if path in named and not path.is_dir():
            paired[0].extend(histories)
            paired[1].extend(consoles)
        else:
            result.findings += _checked(histories, consoles)
    result.findings = ordered(result.findings + _checked(*paired))
    return result
