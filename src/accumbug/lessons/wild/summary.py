"""The in-the-wild cases in one table and one figure (``07_in_the_wild.ipynb``, the table in ``docs/frameworks.md``).

``format_wild_table`` writes a Markdown table: framework and version, the case, what was
displayed and saved, the exact value, the saved value's error and the upstream reference.
``format_wild_doctor`` runs the doctor on the files the frameworks wrote. ``plot_wild`` draws
each case's error against the exact value, saved (filled) and displayed (hollow), one row per
case grouped by framework, on a symmetric log scale so 0, 0.01 % and +30 % are all readable;
an infinite or NaN value sits at the right edge, labelled.
"""

from __future__ import annotations

import math
import textwrap

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from ...doctor.examine import examine
from ..plots import OKABE_ITO
from .data import WildData
from .record import WildCase

__all__ = ["format_wild_cases", "format_wild_data", "format_wild_doctor", "format_wild_table", "plot_wild"]

FRAMEWORK_COLOURS = [OKABE_ITO[name] for name in ("vermillion", "blue", "green", "orange", "purple", "sky")]
LINEAR_BELOW = 0.01  # percent: the error axis is linear below 0.01 %, logarithmic above
EDGE = 1e4  # percent: where a non-finite error is drawn


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.6g}"


def _percent(error: float | None) -> str:
    if error is None:
        return "—"
    if not math.isfinite(error):
        return str(error)
    return "0.00 %" if abs(error) < 5e-5 else f"{error:+.2%}".replace("%", " %")  # no "-0.00 %"


def format_wild_data(data: WildData) -> str:
    """The shared data set in a few lines: sizes, outliers, and the two epoch losses that part."""
    sizes = [len(part) for part in data.losses().split(data.batch_size)]
    wrong = data.mean_of_batch_means()
    listed = (", ".join(map(str, data.outliers)) if len(data.outliers) < 4
              else f"{data.outliers[0]} to {data.outliers[-1]}")
    outliers = "no outliers" if not data.outliers else (
        f"{len(data.outliers)} outliers (loss {data.losses()[data.outliers[0]].item():g}): samples {listed}")
    return (f"{len(data):,} samples at batch {data.batch_size}: {len(sizes)} batches, the last of {sizes[-1]}\n"
            f"{outliers}\nexact epoch loss (per-sample mean)  {data.exact():.6f}\n"
            f"mean of batch means                 {wrong:.6f}  ({_percent(wrong / data.exact() - 1)})")


def format_wild_cases(cases: list[WildCase]) -> str:
    """The cases as the notebook prints them, a block each (``_format_case``)."""
    return "\n\n".join(_format_case(case) for case in cases)


def _format_case(case: WildCase) -> str:
    """One case: the values, their errors, the console line as printed, the reference and the note."""
    lines = [f"{case.framework} {case.version}: {case.case}",
             f"  displayed  {_number(case.displayed)}" + (f"   as printed: {case.console!r}" if case.console else ""),
             f"  saved      {_number(case.saved)}",
             f"  exact      {_number(case.exact)}",
             f"  error      saved {_percent(case.saved_error)}, displayed {_percent(case.displayed_error)}"]
    lines += [f"  {label:<10} {text}" for label, text in (("upstream", case.upstream), ("note", case.note)) if text]
    return "\n".join(lines)


def format_wild_table(cases: list[WildCase]) -> str:
    """A Markdown table of ``cases``: one row each, in order."""
    lines = ["| framework | case | displayed | saved | exact | saved vs exact | upstream |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for case in cases:
        lines.append(f"| {case.framework} {case.version} | {case.case} | {_number(case.displayed)} | "
                     f"{_number(case.saved)} | {_number(case.exact)} | {_percent(case.saved_error)} | "
                     f"{case.upstream or '—'} |")
    return "\n".join(lines)


def format_wild_doctor(cases: list[WildCase], width: int = 160) -> str:
    """The doctor (``python -m accumbug doctor``) on each case's files, given together so a history meets its console.

    One block per case that wrote files: the files, then each finding's code, severity and
    evidence, or ``nothing found``.
    """
    blocks = []
    for case in (case for case in cases if case.files):
        found = examine(list(case.files)).findings
        lines = [f"{case.framework} {case.version}: {case.case}", *(f"  file  {name}" for name in case.files)]
        lines += ["  " + textwrap.shorten(f"{f.severity:<8} {f.code}: {f.evidence}", width) for f in found] or [
            "  nothing found"]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _drawn(error: float) -> float:
    """An error in percent where the axis can draw it: non-finite at the right edge."""
    return error * 100 if math.isfinite(error) else EDGE


def plot_wild(cases: list[WildCase], title: str = "Epoch loss: saved and displayed, against the exact value") -> Figure:
    """One row per case, grouped by framework: the saved value's error (filled) and the displayed one's (hollow)."""
    figure = Figure(figsize=(9.5, 0.42 * len(cases) + 1.6))
    axis = figure.add_subplot()
    frameworks = list(dict.fromkeys(case.framework for case in cases))
    for row, case in enumerate(cases):
        colour = FRAMEWORK_COLOURS[frameworks.index(case.framework) % len(FRAMEWORK_COLOURS)]
        for error, filled in ((case.saved_error, True), (case.displayed_error, False)):
            if error is None:
                continue
            axis.plot(_drawn(error), row, "o", markersize=7 if filled else 13, color=colour,
                      markerfacecolor=colour if filled else "none", markeredgewidth=1.6)
            if not math.isfinite(error):
                axis.annotate(str(error), (EDGE, row), xytext=(8, -4), textcoords="offset points", fontsize=8)
    axis.set_yticks(range(len(cases)), [f"{c.framework} {c.version}: {c.case}" for c in cases], fontsize=8)
    axis.set_xscale("symlog", linthresh=LINEAR_BELOW)
    axis.set_xlim(-100, EDGE * 3)
    axis.set_ylim(len(cases) - 0.5, -0.5)
    axis.xaxis.set_major_formatter(FuncFormatter(lambda value, _: "inf, NaN" if value == EDGE else f"{value:g}"))
    axis.axvline(0, color=OKABE_ITO["black"], linewidth=1, alpha=0.5)
    axis.set_xlabel("error against the exact epoch loss, % (symmetric log scale)")
    axis.plot([], [], "o", color="grey", label="saved (History, metrics.csv, compute(), trainer_state.json)")
    axis.plot([], [], "o", color="grey", markerfacecolor="none", label="displayed (console, progress bar)")
    axis.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize=8, frameon=False)
    axis.grid(axis="x", alpha=0.3)
    axis.set_title(title, fontsize=10, pad=22)
    return figure
