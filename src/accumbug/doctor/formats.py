"""The doctor's output formats: text grouped by file (the most serious first), or JSON for tools."""

from __future__ import annotations

import json
import textwrap
from itertools import groupby

from .examine import Examination
from .findings import SEVERITIES

__all__ = ["format_findings", "format_findings_json", "summary"]

WIDTH = 100


def _block(finding) -> list[str]:
    where = f"line {finding.line}: " if finding.line else ""
    wrap = textwrap.TextWrapper(width=WIDTH, initial_indent="    ", subsequent_indent="    ")
    return [f"  {finding.severity:<8} {finding.code}",
            *wrap.wrap(where + finding.evidence), *wrap.wrap("consequence: " + finding.consequence),
            *wrap.wrap("fix: " + finding.fix)]


def summary(examination: Examination) -> str:
    """One line: how many findings of each severity, in how many files, of how many read."""
    counts = {s: sum(f.severity == s for f in examination.findings) for s in SEVERITIES}
    files = len({f.path for f in examination.findings})
    shown = ", ".join(f"{n} {s}{'s' if n != 1 and s != 'info' else ''}" for s, n in counts.items())
    skipped = f"; {len(examination.skipped)} skipped" if examination.skipped else ""
    return (f"{len(examination.findings)} findings in {files} of {len(examination.examined)} inputs read "
            f"({shown}){skipped}")


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
    """``{"findings": [...], "examined": [...], "skipped": [...]}``, one object per finding with its message."""
    return json.dumps({"findings": [f.as_dict() for f in examination.findings], "examined": examination.examined,
                       "skipped": examination.skipped}, indent=1)
