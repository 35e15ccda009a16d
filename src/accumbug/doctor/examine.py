"""Gather the doctor's findings for a list of paths: recognise each input, check it, compare pairs.

Each path is recognised by its content: a run folder of this package, a notebook, a history
(JSON or CSV), a console log, or Python source. A path given by name that is missing,
unreadable or none of these (a script that is not valid Python, say), or that a check fails
on, is unusable: ``examine`` raises for the first one, or with ``keep_going=True`` (the
command line's way) lists each in ``Examination.unusable`` with why and examines the rest, so
one bad path among many costs one line, not the report. Inside a folder given by name, files
of other kinds, or that cannot be read, are skipped and listed. A history given by name is
compared with every console log given by name, and a run folder's histories with its own
console log; files found by walking a folder are checked on their own. Where the files show
a console of real values and a saved loss of zeros, the finding also says which cases of the mechanism gallery
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
from ..validation import check_flag
from .code import check_notebook, check_python
from .consoles import Console, canonical_name, compare, looks_like_console, read_console
from .findings import Finding, UnusableInput, ordered
from .history_files import History, check_history, csv_header, read_histories, read_text

__all__ = ["MECHANISM_EVIDENCE_FILE", "Examination", "Unusable", "examine", "fitting_mechanisms",
           "mechanism_evidence"]

WALKED_SUFFIXES = {".py", ".ipynb", ".json", ".csv", ".log", ".txt"}  # what a folder walk looks at
MECHANISM_EVIDENCE_FILE = Path(__file__).with_name("mechanism_evidence.json")  # package data


@dataclass(frozen=True)
class Unusable:
    """A path given by name that the doctor could not examine, and why; ``str()`` is its one line."""

    path: str
    reason: str

    @classmethod
    def refused(cls, path: Path, error: UnusableInput) -> Unusable:
        """``error``'s message, which starts with the path (quoted or not), as path and reason."""
        message = str(error)
        for shown in (repr(str(path)), str(path)):
            message = message.removeprefix(f"{shown}: ")
        return cls(str(path), message)

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class Examination:
    """What the doctor found: the findings (most serious first per file), the files read, the files skipped
    in a folder walk, and the paths given by name that could not be examined (``keep_going=True``)."""

    findings: list[Finding] = field(default_factory=list)
    examined: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    unusable: list[Unusable] = field(default_factory=list)


def _kind(text: str, path: Path) -> str:
    """``notebook``, ``history``, ``console`` or ``python``, by content; ``UnusableInput`` when none."""
    head = text.lstrip()[:1]
    if not head:
        raise UnusableInput(f"{path}: empty (nothing but white space)")
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
    raise UnusableInput(f"{path}: not a training script, notebook, history or console log the doctor knows")


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
    """The files and run folders to read: paths given by name, and what a folder walk finds (the rest skipped).

    A missing path given by name is kept: reading it says so.
    """
    chosen, skipped = [], []
    for given in map(Path, paths):
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
    unseen = [label for key, label in labels.items() if key not in evidence]  # weights: never in these files
    shown += f"; not seen, so not used: {', '.join(unseen)}" if unseen else ""
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


def _attempt(path: Path, result: Examination, named: bool, keep_going: bool):
    """``_read(path)``, or None once ``result`` says why not: a file found in a folder walk that the doctor cannot
    use is skipped; a path given by name is unusable, and so is any path a check fails on (a bug of the doctor's,
    not of the file). Unusable paths raise ``UnusableInput`` unless ``keep_going``."""
    try:
        return _read(path)
    except UnusableInput as error:
        if not named:
            result.skipped.append(str(path))
            return None
        refused = Unusable.refused(path, error)
    except Exception as error:  # one check's bug must not hide the other files' findings
        if not keep_going:
            raise
        refused = Unusable(str(path), f"the doctor failed on it ({type(error).__name__}: {error}); "
                                      "a bug in the doctor, not in the file: please report it with the file")
    if not keep_going:
        raise UnusableInput(str(refused))
    result.unusable.append(refused)
    return None


def examine(paths, keep_going: bool = False) -> Examination:
    """Read and check every path (see the module docstring). A path given by name that cannot be examined
    raises ``UnusableInput``, or with ``keep_going`` is listed in ``unusable`` while the others are examined.

    A history is compared with a console log when both were given by name, or when both
    belong to one run folder; files found by walking a folder are checked on their own.
    """
    check_flag("keep_going", keep_going)
    chosen, skipped = _inputs(paths)
    named = {Path(p) for p in paths}
    result, paired = Examination(skipped=skipped), ([], [])
    for path in chosen:
        read = _attempt(path, result, path in named, keep_going)
        if read is None:
            continue
        histories, consoles, findings = read
        result.examined.append(str(path))
        result.findings += findings
        if path in named and not path.is_dir():
            paired[0].extend(histories)
            paired[1].extend(consoles)
        else:
            result.findings += _checked(histories, consoles)
    result.findings = ordered(result.findings + _checked(*paired))
    return result
