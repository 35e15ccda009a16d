"""The in-the-wild cases in one table and one figure (``07_in_the_wild.ipynb``, the table in ``docs/frameworks.md``).

``format_wild_table`` writes a Markdown table: framework and version, the case, what was
displayed and saved, the exact value, the saved value's error and the upstream reference.
``format_wild_doctor`` runs the doctor on the files the frameworks wrote. ``plot_wild`` draws
each case's error against the exact value, saved and displayed in the figures' shared styles
(``lessons/style.py``), one row per case grouped by framework, on a symmetric log scale so 0,
0.01 % and +30 % are all readable; an infinite or NaN value sits at the right edge, labelled.
A displayed value is rounded as printed: where it is the exact or the saved value rounded, it
is drawn there, not as an error of its own.

The notebook saves its figure in its run folder (``notebooks/runs/wild/in-the-wild.png``), so
a reader's run never rewrites the repository's figures; ``publish_figure`` (``python -m
accumbug.lessons.wild.summary``, from the repository root) copies it to ``docs/figures/``.
"""

from __future__ import annotations

import math
import textwrap
from decimal import Decimal
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from ...doctor.examine import examine
from ...history import atomic_write_bytes
from ..style import ROUNDING_NOTE, VALUE_STYLES, VALUE_WORDS, drawn_value
from ..tables import fixed_digits
from .data import WildData
from .record import WildCase, signed_error

__all__ = ["displayed_drawn_error", "format_wild_cases", "format_wild_data", "format_wild_doctor", "format_wild_table",
           "plot_wild", "printed_decimals", "publish_figure"]

MARKER_COLOUR = "#555555"  # every case's markers: the colours of style.ROLE_COLOURS name the incident's code paths
LINEAR_BELOW = 0.01  # percent: the error axis is linear below 0.01 %, logarithmic above
EDGE = 1e4  # percent: where a non-finite error is drawn
NOTEBOOK_FIGURE = Path("notebooks", "runs", "wild", "in-the-wild.png")  # what notebook 07 saves, from the root
DOCS_FIGURE = Path("docs", "figures", "in-the-wild.png")  # the copy the docs show


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.6g}"


def _percent(error: float | None) -> str:
    if error is None:
        return "—"
    if not math.isfinite(error):
        return str(error)
    return f"{fixed_digits(error * 100, 2, plus=True)} %"


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


def printed_decimals(value: float) -> int:
    """The decimals a displayed value was printed with, read from its shortest form: ``1.48`` has 2.

    Lightning pads its three significant digits with zeros (``1.480``); the padding is not a digit
    it measured, and the shortest form leaves it out.
    """
    return max(0, -Decimal(repr(value)).as_tuple().exponent)


def displayed_drawn_error(case: WildCase) -> float | None:
    """The displayed value's error as the figure draws it: a value within half a unit of its last printed
    digit of the saved or the exact value is drawn there (``style.drawn_value``): rounding, not an error.

    The saved value comes first: a console that prints what the framework keeps (Lightning's 1.05
    for a saved 1.04997 and an exact 1.04895) is that value rounded.
    """
    if case.displayed is None or not math.isfinite(case.displayed):
        return case.displayed_error
    finite = [value for value in (case.saved, case.exact) if value is not None and math.isfinite(value)]
    return signed_error(drawn_value(case.displayed, printed_decimals(case.displayed), *finite), case.exact)


def _label_non_finite(axis, row: int, errors: list[float | None]) -> None:
    """Name a row's non-finite values once ("nan", "inf"), left of the right edge where they are drawn,
    so the label stays inside the frame."""
    names = dict.fromkeys(str(error) for error in errors if error is not None and not math.isfinite(error))
    if names:
        axis.annotate(", ".join(names), (EDGE, row), xytext=(-12, -3), textcoords="offset points", fontsize=8,
                      ha="right")


def _framework_bands(axis, cases: list[WildCase]) -> None:
    """A thin line between frameworks, so the rows read in groups."""
    for row in range(1, len(cases)):
        if cases[row].framework != cases[row - 1].framework:
            axis.axhline(row - 0.5, color="grey", linewidth=0.6, alpha=0.5)


def _wild_legend(axis) -> None:
    """The kinds of value in plain words, and the rounding rule, above the plot."""
    axis.plot([], [], **{**VALUE_STYLES["file"], "linestyle": "none"}, color=MARKER_COLOUR,
              label=f"{VALUE_WORDS['file']}: History, metrics.csv, compute(), trainer_state.json")
    axis.plot([], [], **{**VALUE_STYLES["console"], "linestyle": "none"}, color=MARKER_COLOUR,
              label=f"{VALUE_WORDS['console']}: console line, progress bar")
    axis.plot([], [], **VALUE_STYLES["exact"], label=VALUE_WORDS["exact"])
    axis.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, fontsize=8, frameon=False,
                title=f"error against the exact epoch loss; {ROUNDING_NOTE}", title_fontsize=8)


def plot_wild(cases: list[WildCase], title: str = "Epoch loss: saved and displayed, against the exact value") -> Figure:
    """One row per case, grouped by framework: the saved value's error and the displayed one's.

    The markers are ``style.VALUE_STYLES``' (the saved file a small filled circle, the console a
    large hollow one, the exact loss the thick line at 0), in one grey: a framework is no tracker
    role of the incident. A displayed value that is the exact or the saved value rounded as
    printed is drawn at that value (``displayed_drawn_error``).
    """
    figure = Figure(figsize=(9.5, 0.42 * len(cases) + 1.9))
    axis = figure.add_subplot()
    axis.axvline(0, **VALUE_STYLES["exact"])
    for row, case in enumerate(cases):
        errors = {"file": case.saved_error, "console": displayed_drawn_error(case)}
        for kind, error in errors.items():
            if error is not None:
                axis.plot(_drawn(error), row, **{**VALUE_STYLES[kind], "linestyle": "none"}, color=MARKER_COLOUR)
        _label_non_finite(axis, row, list(errors.values()))
    axis.set_yticks(range(len(cases)), [f"{c.framework} {c.version}: {c.case}" for c in cases], fontsize=8)
    axis.set_xscale("symlog", linthresh=LINEAR_BELOW)
    axis.set_xlim(-100, EDGE * 3)
    axis.set_ylim(len(cases) - 0.5, -0.5)
    axis.xaxis.set_major_formatter(FuncFormatter(lambda value, _: "inf, NaN" if value == EDGE else f"{value:g}"))
    axis.set_xlabel("error against the exact epoch loss, % (symmetric log scale: linear within ±0.01 %)")
    _framework_bands(axis, cases)
    _wild_legend(axis)
    axis.grid(axis="x", alpha=0.3)
    axis.set_title(title, fontsize=10, pad=44)
    return figure


def publish_figure(root=".") -> Path:
    """Copy the figure notebook 07 saved in its run folder to ``docs/figures/``; the docs' copy changes only so."""
    source, target = Path(root) / NOTEBOOK_FIGURE, Path(root) / DOCS_FIGURE
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no figure there; run notebooks/07_in_the_wild.ipynb first")
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(target, source.read_bytes())
    return target


if __name__ == "__main__":
    print(f"written: {publish_figure()}")
