"""Figures: how a run's histories part from the console and from the exact loss.

``plot_trajectory`` draws ``loss_sum`` after every batch of one epoch on a log scale, with
float16's largest value (65,504) and each stall or overflow marked: where a half-precision
accumulator stops counting. ``plot_divergence`` draws, per accumulator, each incident tracker's epoch loss as held in memory
(which the console printed), as the incident's lossy serialiser would have saved it, and the
exact loss. A non-finite value cannot sit on an axis, so it is drawn as a triangle at the
top edge, labelled with its value. ``plot_outcome`` and ``plot_gallery`` draw the mechanism
gallery's cases the same way: per epoch, the console's loss, the file's loss and the exact
one (``03_what_really_breaks.ipynb``, ``04_explorer.ipynb``). ``plot_rank_errors`` draws how
far each naive cross-rank tracker's loss is from the exact one (``05_distributed.ipynb``). Colours are the Okabe-Ito
palette (colour-blind safe); PNGs carry no timestamp or version, so the same run gives the
same bytes.
"""

from __future__ import annotations

import io
import math
import textwrap
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..history import atomic_write_bytes
from .streams import first_nonfinite, stall_start

__all__ = ["FLOAT16_MAX", "OKABE_ITO", "figure_png", "plot_case", "plot_divergence", "plot_gallery", "plot_outcome",
           "plot_rank_errors", "plot_trajectory", "save_figure"]

OKABE_ITO = {
    "black": "#000000", "orange": "#E69F00", "sky": "#56B4E9", "green": "#009E73",
    "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "purple": "#CC79A7",
}
TRACKER_COLOURS = {"incident-broken": OKABE_ITO["vermillion"], "incident-fixed": OKABE_ITO["blue"], "exact": OKABE_ITO["black"],
                   "naive-rank0": OKABE_ITO["orange"], "naive-rank-mean": OKABE_ITO["sky"],
                   "naive-padded": OKABE_ITO["purple"]}
MARKER_SIZES = {"incident-broken": 9, "incident-fixed": 5}  # broken drawn larger, so equal values stay visible
ACCUMULATOR_STYLES = {"python": "-", "float64": "-", "float32": "-.", "bfloat16": ":", "float16": "--", "auto": "-."}
FLOAT16_MAX = 65504.0
GALLERY_STYLES = {
    "exact": {"color": OKABE_ITO["black"], "linewidth": 3, "alpha": 0.3},
    "console": {"color": OKABE_ITO["orange"], "marker": "o", "markersize": 9},
    "file": {"color": OKABE_ITO["blue"], "marker": "x", "markersize": 7, "linestyle": "--"},
}


def figure_png(figure: Figure, dpi: int = 110, tight: bool = True) -> bytes:
    """PNG bytes without metadata that changes between runs (software version, time).

    ``tight=False`` keeps the figure's own margins and saves a layout pass (the explorer's
    redraws).
    """
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None}, bbox_inches="tight" if tight else None)
    return buffer.getvalue()


def save_figure(figure: Figure, path, dpi: int = 110, tight: bool = True):
    """Save ``figure_png(figure)`` to a file, atomically (its folder is made if missing), or to a binary file object.

    Returns ``path``: the file's ``Path``, or the file object (``io.BytesIO`` in the explorer).
    """
    content = figure_png(figure, dpi, tight)
    if not isinstance(path, (str, Path)):
        path.write(content)
        return path
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, content)
    return path


def _off_scale(value: float, top: float) -> bool:
    return not math.isfinite(value) or value > top


def _plot_series(axis, epochs, values, top, label, note_offset=(6, -4), **style):
    """A line through the values up to ``top``; a labelled triangle at height ``top`` for each other one."""
    shown = [(e, v) for e, v in zip(epochs, values) if not _off_scale(v, top)]
    if shown:
        axis.plot(*zip(*shown), label=label, **style)
        label = None
    for e, v in zip(epochs, values):
        if _off_scale(v, top):
            axis.plot([e], [top], marker="^", markersize=10, color=style["color"], clip_on=False,
                      linestyle="none", label=label)
            label = None
            axis.annotate(str(v) if not math.isfinite(v) else f"{v:.2g}", (e, top), textcoords="offset points",
                          xytext=note_offset, color=style["color"], fontsize=8)


def plot_divergence(rows: list[dict], title: str = "Console vs saved history") -> Figure:
    """One panel per accumulator: in-memory/console, incident's JSON and exact loss per epoch.

    ``rows`` are ``report.divergence_rows(result)``.
    """
    accumulators = list(dict.fromkeys(r["accumulator"] for r in rows if r["tracker"] != "exact"))
    figure = Figure(figsize=(5.2 * max(len(accumulators), 1), 4.4), layout="constrained")
    axes = figure.subplots(1, max(len(accumulators), 1), squeeze=False)[0]
    finite = [v for r in rows for v in (r["memory"], r["incident_json"]) if math.isfinite(v)]
    top = max(finite) * 1.12 if finite else 1.0
    exact = [r for r in rows if r["tracker"] == "exact"]
    for axis, accumulator in zip(axes, accumulators):
        if exact:
            axis.plot([r["epoch"] for r in exact], [r["memory"] for r in exact], color=OKABE_ITO["black"],
                      linewidth=3, alpha=0.35, label="exact")
        for tracker in dict.fromkeys(r["tracker"] for r in rows if r["accumulator"] == accumulator and r["tracker"] != "exact"):
            mine = [r for r in rows if r["tracker"] == tracker]
            epochs = [r["epoch"] for r in mine]
            kind = tracker.partition(":")[0]
            colour = TRACKER_COLOURS.get(kind, OKABE_ITO["green"])
            size = MARKER_SIZES.get(kind, 6)
            _plot_series(axis, epochs, [r["memory"] for r in mine], top, f"{kind}: console = memory",
                         color=colour, marker="o", markersize=size)
            _plot_series(axis, epochs, [r["incident_json"] for r in mine], top, f"{kind}: incident's JSON",
                         color=colour, marker="x", markersize=size, linestyle="--")
        axis.set_title(f"accumulator: {accumulator}")
        axis.set_xlabel("epoch")
        axis.set_ylabel("epoch loss")
        axis.set_ylim(min(0.0, *finite) if finite else 0.0, top)
        axis.xaxis.get_major_locator().set_params(integer=True)
        axis.grid(alpha=0.3)
    _shared_legend(figure, axes)
    figure.suptitle(title)
    return figure


def _shared_legend(figure: Figure, axes) -> None:
    """One legend below all panels: every label drawn in any panel, once (the panels share their series)."""
    handles = {}
    for axis in axes:
        for handle, label in zip(*axis.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    if handles:  # a run with the exact tracker alone draws no panel series
        figure.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=min(len(handles), 5),
                      fontsize=8, frameon=False)


def plot_trajectory(trajectories: dict[str, list[float]], title: str = "loss_sum within one epoch") -> Figure:
    """``loss_sum`` against batch index for each tracker name (``kind:accumulator``), log scale.

    Stalls are marked with a dot and the value they stall at; an overflow with a cross at
    65,504 and the batch index at which the sum became infinite.
    """
    figure = Figure(figsize=(8.5, 4.8))
    axis = figure.subplots()
    axis.axhline(FLOAT16_MAX, color=OKABE_ITO["black"], linewidth=0.8, linestyle=(0, (1, 3)))
    axis.text(0.99, FLOAT16_MAX * 1.12, "float16 max 65,504", transform=axis.get_yaxis_transform(), ha="right",
              fontsize=8)
    for name, trajectory in trajectories.items():
        kind, _, accumulator = name.partition(":")
        colour = TRACKER_COLOURS.get(kind, OKABE_ITO["green"])
        batches = range(1, len(trajectory) + 1)
        shown = [v if v > 0 and v != float("inf") and v == v else float("nan") for v in trajectory]
        axis.plot(batches, shown, color=colour, linestyle=ACCUMULATOR_STYLES.get(accumulator, "-"),
                  linewidth=1.6, label=name)
        overflow = first_nonfinite(trajectory)
        if overflow is not None:
            axis.plot([overflow + 1], [FLOAT16_MAX], marker="X", markersize=10, color=colour, linestyle="none")
            axis.annotate(f"{trajectory[overflow]} at batch {overflow + 1}", (overflow + 1, FLOAT16_MAX),
                          textcoords="offset points", xytext=(8, 14), color=colour, fontsize=8)
        stall = stall_start(trajectory)
        if stall is not None:
            axis.plot([stall + 1], [trajectory[stall]], marker="o", markersize=7, color=colour, linestyle="none")
            axis.annotate(f"stalls at {trajectory[stall]:,.0f} from batch {stall + 1}", (stall + 1, trajectory[stall]),
                          textcoords="offset points", xytext=(6, -12), color=colour, fontsize=8)
    axis.set_yscale("log")
    axis.set_xlabel("batch within the epoch")
    axis.set_ylabel("loss_sum (log scale)")
    axis.set_title(title)
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, frameon=False)
    return figure


def plot_outcome(axis, outcome, title: str) -> None:
    """One gallery case on ``axis``: the exact loss, what the console printed and what the file holds, per epoch.

    ``outcome`` is a ``mechanisms.Outcome``. Values above 1.3 times the largest exact loss,
    or not finite, sit as labelled triangles on the top edge.
    """
    epochs = list(range(1, len(outcome.exact) + 1))
    top = 1.3 * max((v for v in outcome.exact if math.isfinite(v)), default=1.0)
    axis.plot(epochs, [v if math.isfinite(v) else float("nan") for v in outcome.exact], **GALLERY_STYLES["exact"])
    _plot_series(axis, epochs, outcome.console, top, None, note_offset=(-4, 6), **GALLERY_STYLES["console"])
    _plot_series(axis, epochs, outcome.file, top, None, note_offset=(4, -12), **GALLERY_STYLES["file"])
    axis.set_ylim(0.0, top * 1.12)
    axis.set_xticks(epochs)
    axis.set_xlabel("epoch", fontsize=8)
    axis.set_ylabel("epoch loss", fontsize=8)
    axis.tick_params(labelsize=7)
    axis.set_title("\n".join(textwrap.wrap(title, 30)), fontsize=9)
    axis.grid(alpha=0.3)


def _gallery_legend(figure: Figure, columns: int) -> None:
    handles = [Line2D([], [], **style, label=label) for label, style in
               (("exact", GALLERY_STYLES["exact"]), ("console", GALLERY_STYLES["console"]),
                ("file, read back", GALLERY_STYLES["file"]),
                ("off scale or not finite", {"color": OKABE_ITO["black"], "marker": "^", "linestyle": "none"}))]
    figure.legend(handles=handles, loc="outside lower center", ncol=columns, frameon=False, fontsize=8)


def plot_case(outcome, title: str) -> Figure:
    """One gallery case as a small figure of its own, with its legend (the explorer's mechanism pane)."""
    figure = Figure(figsize=(4.6, 3.6), layout="constrained")
    plot_outcome(figure.subplots(), outcome, title)
    _gallery_legend(figure, columns=2)
    return figure


def plot_gallery(outcomes: dict, titles: dict[str, str], columns: int = 4,
                 title: str = "Mechanism gallery: console vs file vs exact") -> Figure:
    """``plot_outcome`` for every case in ``outcomes`` (key -> Outcome), in a grid, one legend below."""
    rows = -(-len(outcomes) // columns)
    figure = Figure(figsize=(3.1 * columns, 2.7 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for axis, (key, outcome) in zip(axes, outcomes.items()):
        plot_outcome(axis, outcome, titles[key])
    for axis in axes[len(outcomes):]:
        axis.set_visible(False)
    _gallery_legend(figure, columns=4)
    figure.suptitle(title)
    return figure


def plot_rank_errors(rows: list[dict], title: str = "Naive cross-rank trackers against the exact loss") -> Figure:
    """Grouped bars of ``rank_rows``: per run and epoch, each non-exact tracker's loss error in percent.

    A bar of height 0 is drawn as a thin line on the axis, so "exactly right" stays visible.
    """
    groups = list(dict.fromkeys((row["run"], row["epoch"]) for row in rows))
    trackers = list(dict.fromkeys(row["tracker"] for row in rows if row["tracker"] != "exact"))
    errors = {(row["run"], row["epoch"], row["tracker"]): row["error_pct"] for row in rows}
    figure = Figure(figsize=(max(6.0, 1.1 * len(groups) + 2), 3.6))
    axis = figure.subplots()
    width = 0.8 / max(len(trackers), 1)
    for index, name in enumerate(trackers):
        heights = [errors.get((*group, name)) or 0.0 for group in groups]
        positions = [g + (index - (len(trackers) - 1) / 2) * width for g in range(len(groups))]
        axis.bar(positions, heights, width, label=name, color=TRACKER_COLOURS.get(name, OKABE_ITO["green"]))
    axis.axhline(0, color=OKABE_ITO["black"], linewidth=0.8)
    several_epochs = len({epoch for _, epoch in groups}) > 1
    axis.set_xticks(range(len(groups)), [f"{run}\nepoch {epoch}" if several_epochs else run for run, epoch in groups])
    axis.set_ylabel("loss error vs exact (%)")
    axis.set_title(title)
    axis.legend(frameon=False, fontsize="small")
    figure.tight_layout()
    return figure
