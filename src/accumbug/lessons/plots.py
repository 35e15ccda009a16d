"""Figures: how a run's histories part from the console and from the exact loss.

``plot_divergence`` draws, per accumulator, each incident tracker's epoch loss as the console
printed it (the value in memory), as the incident's lossy serialiser would have saved it, and
the exact loss; below, the relative error of the first two against the exact loss on a
symmetric log scale, so an error of 1e-6, one of 100 % and an infinite one are all readable.
``plot_trajectory`` draws ``loss_sum`` after every batch of one epoch on a log scale (a long
epoch whose sums fail early beside its first 600 batches), the range above float16's largest
value (65,504) shaded and each stall or overflow marked and named in the legend: where a
half-precision accumulator stops counting. ``plot_symptom`` draws the incident's symptom from
a trained run (``01``, ``02``). A non-finite value cannot sit on an axis, so it is drawn as a triangle at the
top edge, labelled with its value. ``plot_outcome`` and ``plot_gallery`` draw the mechanism
gallery's cases the same way: per epoch, the console's loss, the file's loss and the exact
one; a case whose console and file stay within 5 % of the exact loss is drawn as their
difference from it in percent, on its own scale, and a stalled sum's artificial fall is
pointed out (``03_what_really_breaks.ipynb``, ``04_explorer.ipynb``). ``plot_diagnosis`` draws
``mechanisms.diagnosis`` as a yes/no matrix of mechanism by evidence. ``plot_rank_errors``
draws how far each naive cross-rank tracker's loss is from the exact one
(``05_distributed.ipynb``). Accumulators are named in plain words in one place,
``ACCUMULATOR_NAMES``. Every figure speaks the visual language of ``style.py``: a colour per
tracker role, a marker and line per kind of value (console, saved file, exact), legends in
plain words, and a printed value drawn at the value it rounds (``style.drawn_value``). PNGs
carry no timestamp or version, so the same run gives the same bytes.
"""

from __future__ import annotations

import io
import math
import textwrap
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FuncFormatter

from ..history import atomic_write_bytes
from .mechanisms import EVIDENCE, mechanism
from .streams import first_nonfinite, stall_start
from .style import ACCUMULATOR_STYLES, OKABE_ITO, ROLE_WORDS, VALUE_STYLES, VALUE_WORDS, drawn_value, role_colour

__all__ = ["ACCUMULATOR_NAMES", "FLOAT16_MAX", "accumulator_name", "figure_png", "plot_case",
           "plot_diagnosis", "plot_divergence", "plot_gallery", "plot_outcome", "plot_rank_errors", "plot_symptom",
           "plot_trajectory", "relative_error", "save_figure", "tracker_label"]

# every accumulator key as a figure names it: the one place to change these words
ACCUMULATOR_NAMES = {"python": "Python float (float64)", "float64": "float64 tensor", "float32": "float32 tensor",
                     "float16": "float16 tensor", "bfloat16": "bfloat16 tensor", "auto": "outputs' dtype"}
HALF_PRECISION = ("float16", "bfloat16")  # sums drawn on top of the wide ones, so a dashed line is never hidden
FLOAT16_MAX = 65504.0
EXACT = "exact"
# the divergence figure's two series per tracker: row key, kind of value (style.VALUE_STYLES), legend words
DIVERGENCE_SERIES = (("memory", "console", "console (value in memory)"),
                     ("incident_json", "file", "saved file (the incident's JSON)"))
ERROR_OFF_SCALE = 1e3  # a relative error above this (100,000 %) sits as a labelled triangle on the top edge
ERROR_FLOOR = 1e-9  # the error axis is linear below this (where 0 sits), logarithmic above
ZOOM_BATCHES = 600  # the trajectory's zoomed panel: float16 overflows and bfloat16 stalls happen this early
ZOOM_FROM = 4 * ZOOM_BATCHES  # an epoch this long gets the zoomed panel; a shorter one shows it all already
SMALL_DIFFERENCE = 0.05  # a gallery case within 5 % of exact is drawn as its difference from exact, in percent
CONSOLE_DECIMALS = 4  # the console prints losses to 4 decimals (``loss=9.1621``)
MARKER_SCALE = {"incident-broken": 1.4}  # where trackers share a panel, broken drawn larger: equal values stay visible
ZERO_ROOM = 0.06  # an axis of losses starts this fraction of its top below 0, so a saved 0.0 is not on the edge
ARTEFACT_NOTE = "stalled sum:\nthe fall is an artefact"
# the diagnosis matrix in greys: the palette's colours name tracker roles (style.py), not yes and no
DIAGNOSIS_COLOURS = {True: "#BDBDBD", False: "#F2F2F2", None: "#FFFFFF"}
DIAGNOSIS_WORDS = {True: "yes", False: "no", None: "-"}
CONCLUSIONS = {"fits": "fits all", "fits_observed": "fits observed"}  # diagnosis columns drawn after the evidence


def accumulator_name(accumulator: str) -> str:
    """An accumulator key in plain words (``ACCUMULATOR_NAMES``); an unknown key as it is."""
    return ACCUMULATOR_NAMES.get(accumulator, accumulator)


def tracker_label(name: str) -> str:
    """A tracker's name (``kind:accumulator``) as a figure shows it: ``incident-broken, float16 tensor``."""
    kind, _, accumulator = name.partition(":")
    return f"{kind}, {accumulator_name(accumulator)}" if accumulator else kind


def relative_error(value: float, exact: float) -> float:
    """``|value - exact| / |exact|``: NaN where either is NaN, inf where only ``exact`` is 0."""
    if math.isnan(value) or math.isnan(exact):
        return math.nan
    if exact == 0:
        return 0.0 if value == 0 else math.inf
    return abs(value - exact) / abs(exact)


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


def _plot_series(axis, epochs, values, top, label, note_dy=-8, **style):
    """A line through the values up to ``top``; a labelled triangle at height ``top`` for each other one.

    Each triangle's note sits ``note_dy`` points above it (below where negative): left-aligned at
    the first epoch, right-aligned at the last and centred between, so notes stay inside the
    panel and clear of their neighbours. ``note_dy=0`` puts it beside the triangle instead (to
    its right, at the last epoch to its left), clear of a point just below the top edge.
    """
    shown = [(e, v) for e, v in zip(epochs, values) if not _off_scale(v, top)]
    if shown:
        axis.plot(*zip(*shown), label=label, **style)
        label = None
    for e, v in zip(epochs, values):
        if _off_scale(v, top):
            axis.plot([e], [top], marker="^", markersize=10, color=style["color"], clip_on=False,
                      linestyle="none", label=label)
            label = None
            note = str(v) if not math.isfinite(v) else f"{v:.2g}".replace("e+", "e")
            axis.annotate(note, (e, top), textcoords="offset points", color=style["color"], fontsize=8,
                          **_note_place(e, epochs, note_dy))


def _note_place(epoch, epochs, note_dy: float) -> dict:
    """Where ``_plot_series`` writes a triangle's note: offset, alignment (see its docstring)."""
    if note_dy == 0:
        beside = 8 if epoch != max(epochs) else -8
        return {"xytext": (beside, 0), "ha": "left" if beside > 0 else "right", "va": "center"}
    align = "left" if epoch == min(epochs) else "right" if epoch == max(epochs) else "center"
    return {"xytext": ({"left": -5, "right": 5, "center": 0}[align], note_dy), "ha": align,
            "va": "bottom" if note_dy > 0 else "top"}


def _trackers(rows: list[dict], accumulator: str) -> list[str]:
    return list(dict.fromkeys(r["tracker"] for r in rows if r["accumulator"] == accumulator and r["tracker"] != EXACT))


def _value_style(name: str, value: str) -> dict:
    """``style.VALUE_STYLES[value]`` in the colour of tracker or role ``name`` (its marker edge too)."""
    colour = role_colour(name)
    style = {**VALUE_STYLES[value], "color": colour}
    if "marker" in style:
        style["markeredgecolor"] = colour
    return style


def _shared_panel_style(tracker: str, value: str) -> dict:
    """``_value_style`` with the marker scaled by ``MARKER_SCALE``, for trackers drawn in one panel."""
    style = _value_style(tracker, value)
    return {**style, "markersize": style["markersize"] * MARKER_SCALE.get(tracker.partition(":")[0], 1.0)}


def plot_divergence(rows: list[dict], title: str = "Console vs saved history") -> Figure:
    """Per accumulator a column: the epoch losses on top, their relative error against the exact loss below.

    ``rows`` are ``report.divergence_rows(result)``. The top panels draw each tracker's console
    loss (the value in memory), the incident's JSON and the exact loss; the bottom panels,
    drawn when the run had the exact tracker, ``|loss - exact| / exact`` of the first two on
    a symmetric log scale shared by all accumulators (0 at the bottom). One legend below.
    """
    accumulators = list(dict.fromkeys(r["accumulator"] for r in rows if r["tracker"] != EXACT))
    errors = any(r["exact"] is not None for r in rows if r["tracker"] != EXACT)
    columns = max(len(accumulators), 1)
    figure = Figure(figsize=(5.2 * columns, 7.4 if errors else 4.4), layout="constrained")
    axes = figure.subplots(2 if errors else 1, columns, squeeze=False, height_ratios=[3, 2] if errors else None)
    finite = [v for r in rows for v in (r["memory"], r["incident_json"]) if math.isfinite(v)]
    top = max(finite) * 1.12 if finite else 1.0
    for axis, accumulator in zip(axes[0], accumulators):
        _loss_panel(axis, rows, accumulator, top)
        axis.set_ylim(min(-ZERO_ROOM * top, *finite), top)  # a saved 0.0 above the bottom edge
    if errors:
        scale = _error_scale(rows)
        for axis, accumulator in zip(axes[1], accumulators):
            _error_panel(axis, rows, accumulator, scale)
    _shared_legend(figure, axes.ravel())
    figure.suptitle(title)
    return figure


def _loss_panel(axis, rows: list[dict], accumulator: str, top: float) -> None:
    """One accumulator's epoch losses: the exact one, and each tracker's console and saved loss."""
    exact = [r for r in rows if r["tracker"] == EXACT]
    if exact:
        axis.plot([r["epoch"] for r in exact], [r["memory"] for r in exact], label=ROLE_WORDS[EXACT],
                  **VALUE_STYLES[EXACT])
    for tracker in _trackers(rows, accumulator):
        mine = [r for r in rows if r["tracker"] == tracker]
        kind = tracker.partition(":")[0]
        for key, value, words in DIVERGENCE_SERIES:
            _plot_series(axis, [r["epoch"] for r in mine], [r[key] for r in mine], top, f"{kind}: {words}",
                         **_shared_panel_style(tracker, value))
    axis.set_title(f"accumulator: {accumulator_name(accumulator)}")
    _epoch_axis(axis, "epoch loss")


def _epoch_axis(axis, ylabel: str) -> None:
    axis.set_xlabel("epoch")
    axis.set_ylabel(ylabel)
    axis.xaxis.get_major_locator().set_params(integer=True)
    axis.grid(alpha=0.3)


def _error_scale(rows: list[dict]) -> tuple[float, float]:
    """The error panels' symlog threshold and top: a decade below the smallest error, above the largest."""
    errors = [relative_error(r[key], r["exact"]) for r in rows if r["tracker"] != EXACT and r["exact"] is not None
              for key, *_ in DIVERGENCE_SERIES]
    shown = [e for e in errors if 0 < e <= ERROR_OFF_SCALE]
    if not shown:
        return ERROR_FLOOR, 1.0
    linthresh = max(10.0 ** math.floor(math.log10(min(shown))), ERROR_FLOOR)
    return linthresh, max(10.0 ** math.ceil(math.log10(max(shown)) + 0.3), 100 * linthresh)


def _error_panel(axis, rows: list[dict], accumulator: str, scale: tuple[float, float]) -> None:
    """One accumulator's relative errors against the exact loss; the exact loss itself is the line at 0."""
    linthresh, top = scale
    epochs = sorted({r["epoch"] for r in rows if r["accumulator"] == accumulator and r["exact"] is not None})
    axis.plot(epochs, [0.0] * len(epochs), **VALUE_STYLES[EXACT])
    for tracker in _trackers(rows, accumulator):
        mine = [r for r in rows if r["tracker"] == tracker and r["exact"] is not None]
        for key, value, _ in DIVERGENCE_SERIES:
            _plot_series(axis, [r["epoch"] for r in mine], [relative_error(r[key], r["exact"]) for r in mine], top,
                         None, note_dy=0, gid=f"{tracker} {key} error", **_shared_panel_style(tracker, value))
    axis.set_yscale("symlog", linthresh=linthresh)
    axis.set_ylim(-0.3 * linthresh, top)  # 0 just above the bottom edge, not hidden by it
    _epoch_axis(axis, "relative error vs exact")


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

    An epoch of ``ZOOM_FROM`` batches or more whose sums overflow or stall within the first
    ``ZOOM_BATCHES`` batches is drawn whole on the left and those batches on the right (a
    shorter epoch already shows them, and a later event needs no zoom). A stall is
    marked with a dot where it starts, an overflow with a cross where the sum was last
    finite; the legend names each tracker in plain words with its stall or overflow (value,
    batch and mark), so no label sits on a curve. The region above float16's largest value
    (65,504) is shaded, not drawn as a line, so a sum that stalls at 65,536 stays a line of
    its own. Half-precision sums are thin and on top; wide ones thick and pale beneath.
    """
    batches = max((len(t) for t in trajectories.values()), default=0)
    zoomed = batches >= ZOOM_FROM and any(_early_event(t) for t in trajectories.values())
    figure = Figure(figsize=(11.0 if zoomed else 8.5, 5.0))
    axes = figure.subplots(1, 2 if zoomed else 1, squeeze=False)[0]
    handles = [_trajectory_lines(axes, name, trajectory) for name, trajectory in trajectories.items()]
    band = {"color": OKABE_ITO["black"], "alpha": 0.08, "linewidth": 0}
    handles.append(Patch(label="above float16's largest value, 65,504: a float16 sum there is inf", **band))
    for axis, shown in zip(axes, (trajectories.values(), [t[:ZOOM_BATCHES] for t in trajectories.values()])):
        low, high = _log_limits(shown)
        axis.axhspan(FLOAT16_MAX, high, zorder=0, **band)
        axis.set_yscale("log")
        axis.set_ylim(low, high)
        axis.set_xlabel("batch within the epoch")
        axis.set_ylabel("loss_sum (log scale)")
        axis.grid(alpha=0.3, which="both")
    if zoomed:  # the panels named below their axes, where a caller's subplots_adjust leaves room
        axes[0].set_xlabel(f"batch within the epoch (all {batches:,})")
        axes[1].set_xlabel(f"batch within the epoch (zoomed: the first {ZOOM_BATCHES})")
        axes[1].set_xlim(0, ZOOM_BATCHES)
    figure.suptitle(title)
    legend_rows = -(-len(handles) // 2)
    figure.legend(handles=handles, loc="lower center", ncol=2, fontsize=8, frameon=False)
    figure.subplots_adjust(left=0.08, right=0.98, top=0.9, bottom=0.1 + 0.045 * legend_rows,
                           wspace=0.22)
    return figure


def _early_event(trajectory: list[float]) -> bool:
    """Whether the sum overflows or stalls within the first ``ZOOM_BATCHES`` batches."""
    return any(event is not None and event < ZOOM_BATCHES
               for event in (first_nonfinite(trajectory), stall_start(trajectory)))


def _trajectory_style(name: str) -> dict:
    """A sum's line: its tracker's colour, its accumulator's line style; half precision thin on top, wide pale below."""
    accumulator = name.partition(":")[2]
    style = {"color": role_colour(name), "linestyle": ACCUMULATOR_STYLES.get(accumulator, "-")}
    if accumulator in HALF_PRECISION:
        return {**style, "linewidth": 1.5, "zorder": 3}
    return {**style, "linewidth": 3.5, "alpha": 0.4, "zorder": 2}


def _trajectory_lines(axes, name: str, trajectory: list[float]) -> Line2D:
    """One tracker's ``loss_sum`` on every panel, its overflow or stall marked; its legend handle, the event named."""
    style = _trajectory_style(name)
    shown = [v if v > 0 and math.isfinite(v) else math.nan for v in trajectory]
    overflow, stall = first_nonfinite(trajectory), stall_start(trajectory)
    events = []
    if overflow is not None:
        last = trajectory[overflow - 1] if overflow > 0 else FLOAT16_MAX
        events.append(f"{trajectory[overflow]} from batch {overflow + 1:,}")
    if stall is not None:
        events.append(f"stalls at {trajectory[stall]:,.0f} from batch {stall + 1:,}")
    for axis in axes:
        axis.plot(range(1, len(trajectory) + 1), shown, **style)
        if overflow is not None:
            axis.plot([max(overflow, 1)], [last], marker="X", markersize=10, color=style["color"], linestyle="none",
                      zorder=4)
        if stall is not None:
            axis.plot([stall + 1], [trajectory[stall]], marker="o", markersize=7, color=style["color"],
                      linestyle="none", zorder=4)
    marker = "X" if overflow is not None else "o" if stall is not None else None  # the legend shows the event's mark
    return Line2D([], [], label=": ".join([tracker_label(name), *events]), marker=marker, markersize=7, **style)


def _log_limits(trajectories) -> tuple[float, float]:
    """Log-scale y-limits of the sums' finite positive values, float16's largest value always inside."""
    values = [v for t in trajectories for v in t if v > 0 and math.isfinite(v)]
    return (min(values, default=1.0) / 1.6, max(values + [FLOAT16_MAX]) * 1.8)


def _console_drawn(outcome) -> list[float]:
    """The console's losses where a figure draws them: at the exact or saved value each printed one rounds."""
    return [drawn_value(c, CONSOLE_DECIMALS, e, f) for c, e, f in zip(outcome.console, outcome.exact, outcome.file)]


def _small_difference(outcome) -> bool:
    """Whether the console and the file stay within ``SMALL_DIFFERENCE`` of the exact loss in every epoch."""
    pairs = [(v, e) for values in (outcome.console, outcome.file) for v, e in zip(values, outcome.exact)]
    return bool(pairs) and all(relative_error(v, e) <= SMALL_DIFFERENCE for v, e in pairs)


def plot_outcome(axis, outcome, title: str, role: str = "gallery-case") -> None:
    """One gallery case on ``axis``: the exact loss, what the console printed and what the file holds, per epoch.

    ``outcome`` is a ``mechanisms.Outcome``; ``role`` the tracker role whose colour it is drawn
    in (``Mechanism.role``). A printed console value is drawn at the exact or saved value it
    rounds (``style.drawn_value``), so rounding is not drawn as an error. Values above 1.3
    times the largest exact loss, or not finite, sit as labelled triangles on the top edge;
    the axis starts below 0, so a saved 0.0 is not hidden on it. A case within
    ``SMALL_DIFFERENCE`` of the exact loss is drawn as its difference from it in percent, on
    its own scale (exact is the line at 0). Where the first epoch's sum stalled and the file's
    loss then falls far more than the exact loss, the fall is pointed out as an artefact.
    """
    epochs = list(range(1, len(outcome.exact) + 1))
    if _small_difference(outcome):
        _plot_differences(axis, outcome, epochs, role)
    else:
        top = 1.3 * max((v for v in outcome.exact if math.isfinite(v)), default=1.0)
        axis.plot(epochs, [v if math.isfinite(v) else float("nan") for v in outcome.exact], **VALUE_STYLES[EXACT])
        _plot_series(axis, epochs, _console_drawn(outcome), top, None, note_dy=7, **_value_style(role, "console"))
        _plot_series(axis, epochs, outcome.file, top, None, note_dy=-8, **_value_style(role, "file"))
        axis.set_ylim(-ZERO_ROOM * top, top * 1.2)  # room for a note above a triangle at ``top``
        axis.set_ylabel("epoch loss", fontsize=8)
        _mark_artefact(axis, outcome)
    axis.set_xticks(epochs)
    axis.set_xlabel("epoch", fontsize=8)
    axis.tick_params(labelsize=7)
    axis.set_title("\n".join(textwrap.wrap(title, 36, break_on_hyphens=False)), fontsize=9)
    axis.grid(alpha=0.3)


def _plot_differences(axis, outcome, epochs: list[int], role: str) -> None:
    """The console's and the file's loss minus the exact loss, in percent of it; limits fitted to them."""
    def percent(values):
        return [(v - e) / e * 100 for v, e in zip(values, outcome.exact)]

    console, file = percent(_console_drawn(outcome)), percent(outcome.file)
    axis.plot(epochs, [0.0] * len(epochs), **VALUE_STYLES[EXACT])
    axis.plot(epochs, console, **_value_style(role, "console"))
    axis.plot(epochs, file, **_value_style(role, "file"))
    low, high = min(0.0, *console, *file), max(0.0, *console, *file)
    pad = (high - low) * 0.15 or 1e-3
    axis.set_ylim(low - pad, high + pad)
    span = high - low + pad
    axis.yaxis.set_major_formatter(FuncFormatter(lambda v, _: "0" if abs(v) < span * 1e-6 else f"{v:+.3g}"))
    axis.set_ylabel("difference from exact (%)", fontsize=8)


def _artefact_epoch(outcome) -> int | None:
    """The epoch (from 1) whose file loss falls far more than the exact loss, where epoch 1's sum stalled."""
    if not outcome.trajectory or stall_start(outcome.trajectory) is None:
        return None
    file, exact = outcome.file, outcome.exact
    for index in range(1, len(file)):
        ratios = (file[index] / file[index - 1] if file[index - 1] else math.nan,
                  exact[index] / exact[index - 1] if exact[index - 1] else math.nan)
        if all(math.isfinite(r) for r in ratios) and ratios[0] < 0.8 * ratios[1]:
            return index + 1
    return None


def _mark_artefact(axis, outcome) -> None:
    epoch = _artefact_epoch(outcome)
    if epoch is not None:
        axis.annotate(ARTEFACT_NOTE, (epoch, outcome.file[epoch - 1]), xytext=(0.04, 0.05), textcoords="axes fraction",
                      fontsize=7, ha="left", va="bottom", color=OKABE_ITO["black"],
                      arrowprops={"arrowstyle": "->", "color": OKABE_ITO["black"], "linewidth": 0.8})


GALLERY_LEGEND = (("exact", VALUE_WORDS["exact"]),
                  ("console", f"console (printed to {CONSOLE_DECIMALS} decimals; drawn at the value it rounds)"),
                  ("file", VALUE_WORDS["file"]))
LEGEND_GREY = "#777777"  # a legend's kinds of value: their marker and line, in no tracker role's colour


def _value_handles(kinds) -> list[Line2D]:
    """Legend handles for ``(value, words)`` pairs: the exact loss as drawn, the console and the file in grey."""
    grey = {"color": LEGEND_GREY, "markeredgecolor": LEGEND_GREY}
    return [Line2D([], [], label=words, **(VALUE_STYLES[EXACT] if value == EXACT else {**VALUE_STYLES[value], **grey}))
            for value, words in kinds]


def _gallery_legend(figure: Figure, columns: int, roles) -> None:
    """Kinds of value in grey (their marker and line), then one colour patch per tracker role drawn."""
    handles = _value_handles(GALLERY_LEGEND)
    handles.append(Line2D([], [], color=LEGEND_GREY, marker="^", linestyle="none", label="off scale or not finite"))
    handles += [Patch(color=role_colour(role), label=f"colour: {ROLE_WORDS[role]}'s arithmetic")
                for role in dict.fromkeys(roles)]
    figure.legend(handles=handles, loc="outside lower center", ncol=columns, frameon=False, fontsize=8)


def _case_role(key: str) -> str:
    """The tracker role of gallery case ``key`` (``Mechanism.role``); a gallery case's for any other key."""
    try:
        return mechanism(key).role
    except ValueError:
        return "gallery-case"


def plot_case(outcome, title: str, role: str = "gallery-case") -> Figure:
    """One gallery case as a small figure of its own, with its legend (the explorer's mechanism pane)."""
    figure = Figure(figsize=(4.6, 4.4), layout="constrained")
    plot_outcome(figure.subplots(), outcome, title, role)
    _gallery_legend(figure, 1, [role])
    return figure


def plot_gallery(outcomes: dict, titles: dict[str, str], columns: int = 4,
                 title: str = "Mechanism gallery: console vs file vs exact") -> Figure:
    """``plot_outcome`` for every case in ``outcomes`` (key -> Outcome), in a grid, one legend below.

    Every panel has its own y-scale: a case within ``SMALL_DIFFERENCE`` of the exact loss shows
    its difference from it in percent. Each case is drawn in its tracker role's colour.
    """
    rows = -(-len(outcomes) // columns)
    figure = Figure(figsize=(3.1 * columns, 2.8 * rows + 0.6), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for axis, (key, outcome) in zip(axes, outcomes.items()):
        plot_outcome(axis, outcome, titles[key], _case_role(key))
    for axis in axes[len(outcomes):]:
        axis.set_visible(False)
    _gallery_legend(figure, 3, [_case_role(key) for key in outcomes])
    figure.suptitle(title)
    return figure


def plot_diagnosis(rows: list[dict], assumed: set[str] | None = None,
                   title: str = "Which mechanism fits the write-up's evidence?") -> Figure:
    """``mechanisms.diagnosis`` rows as a matrix: a row per mechanism, a column per piece of evidence, then the fits.

    Each cell says yes (mid grey) or no (near white). ``assumed`` holds the column keys
    (``"accuracies"``, ``"weights"``, ...) of evidence the write-up assumes rather than
    shows: those cells are hatched and their headers end "(assumed)".
    """
    assumed = set(assumed or ())
    columns = [key for key in (rows[0] if rows else {}) if key != "mechanism"]
    figure = Figure(figsize=(4.2 + 1.2 * len(columns), 1.6 + 0.34 * len(rows)), layout="constrained")
    axis = figure.subplots()
    for y, row in enumerate(rows):
        for x, key in enumerate(columns):
            _diagnosis_cell(axis, x, y, row[key], key in assumed, bold=key in CONCLUSIONS)
    axis.set_xlim(-0.5, len(columns) - 0.5)
    axis.set_ylim(len(rows) - 0.5, -0.5)
    axis.set_xticks(range(len(columns)), [_column_label(key, key in assumed) for key in columns], fontsize=8)
    axis.set_yticks(range(len(rows)), [_mechanism_label(row["mechanism"]) for row in rows], fontsize=8)
    axis.xaxis.tick_top()
    axis.tick_params(length=0)
    for spine in axis.spines.values():
        spine.set_visible(False)
    conclusions = [x for x, key in enumerate(columns) if key in CONCLUSIONS]
    if conclusions:  # a wider gap between the evidence and what it concludes
        axis.axvline(conclusions[0] - 0.5, color="white", linewidth=5)
    if assumed & set(columns):
        axis.set_xlabel("hatched: evidence the write-up assumes, it does not show it", fontsize=8, loc="right")
    figure.suptitle(title)
    return figure


def _diagnosis_cell(axis, x: int, y: int, value, assumed: bool, bold: bool) -> None:
    """One cell: its colour and word from ``value`` (True, False, anything else), hatched if its evidence is assumed."""
    key = value if isinstance(value, bool) else None
    axis.add_patch(Rectangle((x - 0.5, y - 0.5), 1, 1, facecolor=DIAGNOSIS_COLOURS[key], edgecolor="white",
                             linewidth=2, hatch="///" if assumed else None, hatchcolor="#777777", gid=f"cell {y} {x}"))
    axis.text(x, y, DIAGNOSIS_WORDS[key], ha="center", va="center", fontsize=9, fontweight="bold" if bold else "normal",
              bbox={"facecolor": DIAGNOSIS_COLOURS[key], "edgecolor": "none", "pad": 1.5} if assumed else None)


def _column_label(key: str, assumed: bool) -> str:
    """A diagnosis column's header: its evidence's words (``EVIDENCE``), wrapped; "(assumed)" added if it is."""
    entry = EVIDENCE.get(key)
    words = CONCLUSIONS.get(key) or (entry[0] if isinstance(entry, tuple) else getattr(entry, "label", key))
    return "\n".join(textwrap.wrap(str(words).replace("_", " "), 14) + (["(assumed)"] if assumed else []))


def _mechanism_label(key: str) -> str:
    """A mechanism's key (the name the printed tables use) and title, or its key where the gallery does not know it."""
    try:
        return f"{key}: {mechanism(key).title}"
    except ValueError:
        return key


def plot_rank_errors(rows: list[dict], title: str = "Naive cross-rank trackers against the exact loss") -> Figure:
    """Grouped bars of ``rank_rows``: per run and epoch, each non-exact tracker's loss error in percent.

    A bar of height 0 is drawn as a short thick line on the axis, so "exactly right" stays
    visible; the legend shows each tracker's colour as a full-height patch, whatever its bars.
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
        colour = role_colour(name)
        axis.bar(positions, heights, width, color=colour, edgecolor=OKABE_ITO["black"], linewidth=0.4)
        zeros = [x for x, h in zip(positions, heights) if h == 0]
        axis.plot(zeros, [0.0] * len(zeros), marker="_", markersize=width * 40, markeredgewidth=3, color=colour,
                  linestyle="none", zorder=3)
    axis.axhline(0, color=OKABE_ITO["black"], linewidth=0.8)
    several_epochs = len({epoch for _, epoch in groups}) > 1
    axis.set_xticks(range(len(groups)), [f"{run}\nepoch {epoch}" if several_epochs else run for run, epoch in groups])
    axis.set_ylabel("loss error vs exact (%)")
    axis.set_title(title)
    axis.legend(handles=[Patch(facecolor=role_colour(name), edgecolor=OKABE_ITO["black"], linewidth=0.4,
                               label=f"{name}: {ROLE_WORDS.get(name, name)}") for name in trackers],
                frameon=False, fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.16),
                ncol=min(len(trackers), 2))  # below the axis: never over a bar
    figure.tight_layout()
    return figure


# the symptom figure's series: row key, kind of value (style.VALUE_STYLES), legend words
SYMPTOM_SERIES = (("exact", "exact", VALUE_WORDS["exact"]), ("console", "console", VALUE_WORDS["console"]),
                  ("saved", "file", VALUE_WORDS["file"]))


def plot_symptom(rows: list[dict], title: str = "The incident's symptom: console vs saved file") -> Figure:
    """``lessons.symptom.symptom_rows`` drawn: one row of panels per mechanism, one column per code path.

    Each panel shows, per epoch, the loss the console printed, the loss the saved file holds
    and the exact loss, in the code path's colour (``style.role_colour``: the incident's code
    vermillion, the write-up's fix blue, the working fix green): the incident's code and the
    write-up's fix save 0.0 under a console of real values; the working fix saves what the
    console printed. Every panel shares one y-scale from just below 0, so a saved 0.0 sits
    visibly above the bottom edge (``01_side_by_side_small.ipynb``,
    ``02_side_by_side_full_136k.ipynb``).
    """
    mechanisms = list(dict.fromkeys(row["mechanism"] for row in rows))
    codes = list(dict.fromkeys(row["code"] for row in rows))
    top = 1.1 * max(v for row in rows for key, *_ in SYMPTOM_SERIES for v in row[key] if math.isfinite(v))
    figure = Figure(figsize=(3.6 * len(codes), 2.7 * len(mechanisms) + 0.9), layout="constrained")
    axes = figure.subplots(len(mechanisms), len(codes), squeeze=False, sharex=True, sharey=True)
    for row in rows:
        axis = axes[mechanisms.index(row["mechanism"])][codes.index(row["code"])]
        epochs = list(range(1, len(row["exact"]) + 1))
        for key, value, _ in SYMPTOM_SERIES:
            style = VALUE_STYLES[EXACT] if value == EXACT else _value_style(row["code"], value)
            axis.plot(epochs, row[key], gid=f"{row['mechanism']} {row['code']} {key}", **style)
        axis.set_ylim(-ZERO_ROOM * top, top)
        _epoch_axis(axis, f"{row['mechanism']}\nepoch loss" if row["code"] == codes[0] else "")
    for axis, code in zip(axes[0], codes):
        axis.set_title(code, color=role_colour(code))
    for axis in axes[:-1].ravel():
        axis.set_xlabel("")  # the panels share their epochs: one label under the bottom row
    figure.suptitle(title)
    figure.legend(handles=_value_handles((value, words) for _, value, words in SYMPTOM_SERIES),
                  loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    return figure
