"""The doctor's output formats: text grouped by file (the most serious first), JSON for tools, and GitHub
Actions workflow commands, which a CI job turns into annotations on the lines of a pull request."""

from __future__ import annotations

import json
import textwrap
from itertools import groupby
from pathlib import PurePath

from ..validation import check_choice
from .examine import Examination
from .findings import SEVERITIES, Finding

__all__ = ["FORMATS", "by_severity", "format_findings", "format_findings_github", "format_findings_json",
           "format_report", "summary"]

WIDTH = 100
GITHUB_COMMANDS = {"error": "error", "warning": "warning", "info": "notice"}  # severity -> workflow command


def _block(finding) -> list[str]:
    where = f"line {finding.line}: " if finding.line else ""
    wrap = textwrap.TextWrapper(width=WIDTH, initial_indent="    ", subsequent_indent="    ")
    return [f"  {finding.severity:<8} {finding.code}",
            *wrap.wrap(where + finding.evidence), *wrap.wrap("consequence: " + finding.consequence),
            *wrap.wrap("fix: " + finding.fix)]


def by_severity(findings: list[Finding]) -> str:
    """How many findings of each severity, most serious first: ``1 error, 0 warnings, 2 info``."""
    counts = {s: sum(f.severity == s for f in findings) for s in SEVERITIES}
    return ", ".join(f"{n} {s}{'s' if n != 1 and s != 'info' else ''}" for s, n in counts.items())


def summary(examination: Examination) -> str:
    """One line: how many findings of each severity, in how many files, of how many read."""
    files = len({f.path for f in examination.findings})
    shown = by_severity(examination.findings)
    skipped = f"; {len(examination.skipped)} skipped" if examination.skipped else ""
    unusable = f"; {len(examination.unusable)} not examined (on stderr)" if examination.unusable else ""
    found, read = len(examination.findings), len(examination.examined)
    return (f"{found} finding{'s' * (found != 1)} in {files} of {read} input{'s' * (read != 1)} read "
            f"({shown}){skipped}{unusable}")


def format_findings(examination: Examination) -> str:
    """The findings grouped by file, each with its code, line, evidence, consequence and fix; then the summary."""
    lines = []
    for path, findings in groupby(examination.findings, key=lambda f: f.path):
        lines.append(path)
        for finding in findings:
            lines += _block(finding)
        lines.append("")
    if examination.skipped:
        lines += ["skipped (not a script, notebook, history or console log):",
                  *(f"  {path}" for path in examination.skipped), ""]
    return "\n".join([*lines, summary(examination)])


def format_findings_json(examination: Examination) -> str:
    """``{"findings": [...], "examined": [...], "skipped": [...], "unusable": [...]}``: one object per finding
    with its message, and each path that could not be examined as ``{"path": ..., "reason": ...}``."""
    return json.dumps({"findings": [f.as_dict() for f in examination.findings], "examined": examination.examined,
                       "skipped": examination.skipped,
                       "unusable": [{"path": u.path, "reason": u.reason} for u in examination.unusable]}, indent=1)


def _escaped(text: str, in_property: bool = False) -> str:
    """``text`` escaped by GitHub's workflow-command rules: ``%``, CR and LF always; ``:`` and ``,`` in a property."""
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if in_property else text


def format_findings_github(examination: Examination) -> str:
    """One workflow command per finding (``::error``, ``::warning`` or ``::notice`` by severity) with its file,
    its line where it has one (none for a notebook: the evidence names the cell) and its code as the title, so
    GitHub Actions annotates the line; then the summary."""
    lines = []
    for finding in examination.findings:
        path = PurePath(finding.path)  # a notebook's line counts its code cells joined, not the lines of its JSON
        where = {"file": path.as_posix(), "line": None if path.suffix == ".ipynb" else finding.line,
                 "title": finding.code}
        properties = ",".join(f"{key}={_escaped(str(value), True)}" for key, value in where.items()
                              if value is not None)
        message = f"{finding.as_dict()['message']}\nconsequence: {finding.consequence}\nfix: {finding.fix}"
        lines.append(f"::{GITHUB_COMMANDS[finding.severity]} {properties}::{_escaped(message)}")
    return "\n".join([*lines, summary(examination)])


FORMATS = {"text": format_findings, "json": format_findings_json, "github": format_findings_github}


def format_report(examination: Examination, form: str = "text") -> str:
    """The report in one of ``FORMATS``: ``text`` for people, ``json`` for tools, ``github`` for CI annotations."""
    return FORMATS[check_choice("form", form, FORMATS)](examination)
