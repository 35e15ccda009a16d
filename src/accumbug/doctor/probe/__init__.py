"""``python -m accumbug doctor --probe path/to/file.py:ClassName``: a user's own tracker, measured.

Where the rest of the doctor reads a user's code without running it, the probe imports the
named class, makes it with no arguments (or the literal ones given, ``Class(accumulator='float16')``),
and feeds fresh instances streams whose exact answers are known (``streams.py``), in the shape
the class speaks (``target.py``: an AverageMeter's ``update(val, n)`` and ``.avg``, a
MeanMetric's ``update(value, weight)`` and ``compute()``, this package's ``Tracker``). Each
stream's outcome is reported under the doctor's finding codes with the measured error
(``report.py``). It runs the user's code, so it runs only when ``--probe`` asks, and torch is
imported only then. Described in ``docs/doctor.md`` ("Probe your own tracker").
"""

from __future__ import annotations

from ...validation import check_choice
from .report import FORMS, Probe, exit_code, format_probes
from .streams import measure
from .target import load_subject

__all__ = ["Probe", "probe", "run_probes"]


def probe(target: str) -> Probe:
    """Load the class ``target`` names and measure it on every stream; ``UnusableInput`` when it cannot be fed."""
    return _measured(load_subject(target))


def _measured(subject) -> Probe:
    path, line = subject.source
    return Probe(subject.target, path, line, subject.shape.words, measure(subject))


def run_probes(targets: list[str], form: str = "text") -> tuple[str, int]:
    """The report on every target in ``form`` (``text``, ``json``, ``github``) and the exit code: 0 clean, 1 a
    finding, 2 a stream that could not be measured. Every target is loaded before any is fed, so a target that
    cannot be used (``UnusableInput``) stops the run before anything is measured."""
    check_choice("form", form, FORMS)
    subjects = [load_subject(target) for target in targets]
    probes = [_measured(subject) for subject in subjects]
    return format_probes(probes, form), exit_code(probes)
