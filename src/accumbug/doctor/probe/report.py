"""A probe's report: per class, the shape found, then one line per stream (its code or ``ok``, the two values
compared, the relative error) with what was seen; as text, JSON (non-finite numbers as the strings ``"nan"``,
``"inf"``, ``"-inf"``, so the document stays strict JSON) or GitHub workflow commands (``doctor/formats.py``)."""

from __future__ import annotations

import json
import math
import textwrap
from dataclasses import dataclass

from ..examine import Examination
from ..findings import Finding
from ..formats import by_severity, format_findings_github
from .streams import Measured

__all__ = ["Probe", "exit_code", "format_probes"]

WIDTH = 100
STATUS_WIDTH = 27  # the longest code, half-precision-accumulator, and a space


@dataclass(frozen=True)
class Probe:
    """One class probed: the target as given, where the class is defined, the shape it speaks, the streams."""

    target: str
    path: str
    line: int | None
    shape: str
    results: list[Measured]

    @property
    def findings(self) -> list[Finding]:
        return [Finding(r.code, self.path, self.line, f"probe {self.target}, {r.stream}: {r.evidence}",
                        _compared(r)) for r in self.results if r.code]


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def _error(result: Measured) -> str:
    error = result.relative_error
    if error is None:
        return ""
    return " (error 0)" if error == 0 else f" (error {error * 100:+.3g}%)"


def _compared(result: Measured) -> str:
    first, second = result.labels
    return f"{first} {_number(result.expected)}, {second} {_number(result.got)}{_error(result)}"


def exit_code(probes: list[Probe]) -> int:
    """2 when a stream could not be measured, 1 when any finding, 0 when every stream came out right."""
    if any(r.failed for p in probes for r in p.results):
        return 2
    return 1 if any(p.findings for p in probes) else 0


def _status(result: Measured) -> str:
    return "not measured" if result.failed else result.code or "ok"


def _text(probes: list[Probe]) -> str:
    wrap = textwrap.TextWrapper(width=WIDTH, initial_indent=" " * 4, subsequent_indent=" " * 4)
    lines = []
    for probe in probes:
        where = f"{probe.path}, line {probe.line}" if probe.line else probe.path
        lines += [f"probe {probe.target} ({where})", *wrap.wrap(f"shape: {probe.shape}")]
        for result in probe.results:
            measured = "" if result.failed else f": {_compared(result)}"
            lines.append(f"  {_status(result):<{STATUS_WIDTH}}{result.stream}{measured}")
            lines += wrap.wrap(result.evidence)
        lines.append("")
    return "\n".join([*lines, _summary(probes)])


def _summary(probes: list[Probe]) -> str:
    findings = [f for p in probes for f in p.findings]
    counts = by_severity(findings)
    unmeasured = sum(r.failed for p in probes for r in p.results)
    streams = sum(len(p.results) for p in probes)
    return (f"{_counted(len(findings), 'finding')} in {streams} streams fed to {_counted(len(probes), 'class')} "
            f"({counts})"
            + (f"; {_counted(unmeasured, 'stream')} not measured" if unmeasured else ""))


def _counted(number: int, noun: str) -> str:
    plural = {"class": "classes"}.get(noun, noun + "s")
    return f"{number} {noun if number == 1 else plural}"


def _strict(value: float | None):
    return value if value is None or math.isfinite(value) else str(value)


def _json(probes: list[Probe]) -> str:
    return json.dumps({"probes": [{
        "target": p.target, "path": p.path, "line": p.line, "shape": p.shape,
        "streams": [{"stream": r.stream, "status": _status(r), "code": r.code, "labels": list(r.labels),
                     "expected": _strict(r.expected), "got": _strict(r.got),
                     "relative_error": _strict(r.relative_error), "evidence": r.evidence} for r in p.results],
        "findings": [f.as_dict() for f in p.findings]} for p in probes]}, indent=1, allow_nan=False)


def _github(probes: list[Probe]) -> str:
    examination = Examination(findings=[f for p in probes for f in p.findings], examined=[p.target for p in probes])
    return format_findings_github(examination)


FORMS = {"text": _text, "json": _json, "github": _github}


def format_probes(probes: list[Probe], form: str = "text") -> str:
    """The probes' report in ``form`` (one of ``FORMS``)."""
    return FORMS[form](probes)
