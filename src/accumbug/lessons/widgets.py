"""The explorer: ipywidgets controls over a simulated loss stream and over the mechanism gallery.

Two panes. **Accumulation**: samples, batch size, accumulator dtype, tracker and serialiser
choose one epoch of per-sample losses shaped like the write-up's first epoch
(``mechanisms.scenario_stream``; at 136,312 samples, the incident stream), grouped into
batches and summed with the trackers' own arithmetic (``streams.loss_sums``; no training).
The batch size only regroups the same samples, so the exact loss changes with the number of
samples and never with the batch size. The figure is ``loss_sum`` after each batch, beside
the same tracker's sum in float64; the note says what the console would print, what the
serialiser writes, what a reader gets back, and the exact per-sample loss. **Mechanism**: one
case of the gallery, its figure, cause, fix, what it needs beyond the write-up's code, and
its diagnosis row.

The callbacks are plain functions, ``accumulation_view`` and ``mechanism_view``, returning a
``View`` (figure, facts, HTML). ``Explorer`` only wires them to widgets and shows each figure
as PNG in an ``ipywidgets.Image``, so tests set widget values and read the outputs without a
browser (``tests/test_widgets.py``); every redraw is timed (``benchmarks/bench_explorer.py``).
Taught in ``04_explorer.ipynb``.
"""

from __future__ import annotations

import html
import io
import time
from dataclasses import dataclass

import ipywidgets as widgets
from matplotlib.figure import Figure

from ..history import read_back
from ..runfolder import history_key, series
from ..specimens.incident_trackers import ACCUMULATORS
from ..specimens.serialisers import SERIALISERS, write
from ..validation import check_whole
from .mechanisms import (
    EVIDENCE,
    MECHANISMS,
    diagnosis,
    format_values,
    gallery,
    mechanism,
    scenario_stream,
)
from .plots import plot_case, plot_trajectory, save_figure
from .streams import epoch_mean, first_nonfinite, loss_sums, stall_start
from .tables import yes_no

__all__ = ["ACCUMULATION_CONTROLS", "TRACKER_CHOICES", "Explorer", "View", "accumulation_view", "mechanism_view"]

TRACKER_CHOICES = ("incident-broken", "incident-fixed", "exact")
ACCUMULATOR_CHOICES = tuple(a for a in ACCUMULATORS if a != "auto")
ACCUMULATION_CONTROLS = ("samples", "batch_size", "accumulator", "tracker", "serialiser")
WIDE = ("python", "float64")
MAX_SAMPLES = 136_312
BATCH_RANGE = (8, 512)
MIN_SAMPLES = BATCH_RANGE[1]  # so that every batch size fits
DPI = 72


@dataclass(frozen=True)
class View:
    """What a callback produced: the figure, the facts it shows (for tests), and their HTML."""

    figure: Figure
    facts: dict
    html: str


def _table(rows: list[tuple[str, str]]) -> str:
    cells = "".join(f"<tr><td style='padding-right:1em'>{html.escape(k)}</td>"
                    f"<td><code>{html.escape(v)}</code></td></tr>" for k, v in rows)
    return f"<table>{cells}</table>"


def _percent(value: float) -> str:
    """A signed percentage: two decimals, or two significant digits where two decimals would print ``±0.00``."""
    return f"{value:+.1e} %" if 0 < abs(value) < 0.005 else f"{value:+.2f} %"


def accumulation_view(samples: int, batch_size: int, accumulator: str, tracker: str, serialiser: str) -> View:
    """One epoch of ``samples`` at ``batch_size`` through ``tracker`` with ``accumulator``, saved by ``serialiser``."""
    if tracker not in TRACKER_CHOICES:
        raise ValueError(f"tracker={tracker!r}: unknown; allowed: {', '.join(TRACKER_CHOICES)}")
    if accumulator not in ACCUMULATOR_CHOICES:
        raise ValueError(f"accumulator={accumulator!r}: unknown; allowed: {', '.join(ACCUMULATOR_CHOICES)}")
    if serialiser not in SERIALISERS:
        raise ValueError(f"serialiser={serialiser!r}: unknown; allowed: {', '.join(SERIALISERS)}")
    check_whole("samples", samples, minimum=1)
    check_whole("batch_size", batch_size, minimum=1, maximum=samples, maximum_name="samples")
    stream = scenario_stream(samples, 0)
    losses, sizes = stream.batches(batch_size)
    used = "float64" if tracker == "exact" else accumulator
    weighted = tracker != "incident-fixed"
    trajectory = loss_sums(losses, sizes, weighted, used)
    value = epoch_mean(trajectory[-1], samples if weighted else len(sizes), used)
    exact = stream.exact
    try:
        written = write({history_key("train", "loss"): [value]}, serialiser)
        read = float(series(read_back(written), "loss")[0])
    except ValueError as error:  # json-strict refuses a non-finite value: that is its answer
        written, read = f"ValueError: {error}", None
    overflow, stall = first_nonfinite(trajectory), stall_start(trajectory)
    facts = {"stream": stream.name, "batches": len(sizes), "last_batch": sizes[-1], "console": f"loss={value:.4f}",
             "written": written, "read_back": read, "exact": exact, "error_pct": (value - exact) / exact * 100,
             "overflow_batch": None if overflow is None else overflow + 1,
             "stall_batch": None if stall is None else stall + 1}
    shown = {"exact" if tracker == "exact" else f"{tracker}:{used}": trajectory}
    if used not in WIDE:  # the same tracker's sum in float64 beside it: the gap is the accumulator's alone
        shown = {f"{tracker}:python": loss_sums(losses, sizes, weighted, "python"), **shown}
    figure = plot_trajectory(shown, f"{samples:,} samples, batch {batch_size} ({len(sizes):,} batches): "
                                    "loss_sum after each batch")
    figure.subplots_adjust(left=0.09, right=0.98, top=0.92, bottom=0.24)  # room for the legend below the axes
    rows = [("tracker", f"{tracker}:{used}, loss_sum {trajectory[-1]:,.1f} over {len(sizes):,} batches"),
            ("console prints", facts["console"]), (f"{serialiser} writes", written[:160]),
            ("a reader gets", "nothing (not written)" if read is None else repr(read)),
            ("exact loss", f"{exact:.4f} ({stream.name})"), ("console vs exact", _percent(facts["error_pct"])),
            ("inf from batch", str(facts["overflow_batch"] or "-")),
            ("stalls from batch", str(facts["stall_batch"] or "-"))]
    return View(figure, facts, _table(rows))


def mechanism_view(key: str) -> View:
    """The gallery's case ``key``: its figure, cause, fix, epochs and diagnosis row."""
    chosen = mechanism(key)
    outcome = gallery([key])[key]
    row = diagnosis({key: outcome})[0]
    figure = plot_case(outcome, chosen.title, chosen.role)
    facts = {"console": outcome.console, "file": outcome.file, "exact": outcome.exact, **row}
    evidence = ", ".join(f"{label}: {yes_no(row[name])}" for name, (label, _) in EVIDENCE.items())
    rows = [("cause", chosen.cause), ("fix", chosen.fix), ("needs beyond the write-up", chosen.needs),
            ("console", str(outcome.console)),
            ("file", str([float(f"{v:.6g}") for v in outcome.file])),
            ("exact", str([round(v, 4) for v in outcome.exact])),
            ("evidence", evidence), ("fits all of it", yes_no(row["fits"])),
            ("fits the observed evidence", yes_no(row["fits_observed"]))]
    return View(figure, facts, _table(rows))


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    save_figure(figure, buffer, dpi=DPI, tight=False)
    return buffer.getvalue()


class Explorer:
    """The two panes wired to ipywidgets. ``widget`` is what a notebook displays.

    ``controls`` maps each control's name to its widget; changing a value redraws its pane.
    ``views`` holds each pane's last ``View`` and ``redraw_seconds`` the time of every redraw,
    from the change to the PNG in the ``Image`` widget. The gallery's cases run once, when
    the explorer is made (a few seconds); redraws reuse them.
    """

    def __init__(self, samples: int = MAX_SAMPLES, batch_size: int = 16, accumulator: str = "float16",
                 tracker: str = "incident-fixed", serialiser: str = "incident-sanitiser",
                 mechanism: str = "aliased-reset"):
        gallery()
        style = {"description_width": "90px"}
        self.controls = {
            "samples": widgets.IntSlider(value=samples, min=MIN_SAMPLES, max=MAX_SAMPLES, step=8,
                                         continuous_update=False, description="samples", style=style),
            "batch_size": widgets.IntSlider(value=batch_size, min=BATCH_RANGE[0], max=BATCH_RANGE[1],
                                            continuous_update=False, description="batch size", style=style),
            "accumulator": widgets.Dropdown(options=ACCUMULATOR_CHOICES, value=accumulator, description="accumulator",
                                            style=style),
            "tracker": widgets.Dropdown(options=TRACKER_CHOICES, value=tracker, description="tracker", style=style),
            "serialiser": widgets.Dropdown(options=tuple(SERIALISERS), value=serialiser, description="serialiser",
                                           style=style),
            "mechanism": widgets.Dropdown(options=[(m.title, m.key) for m in MECHANISMS], value=mechanism,
                                          description="mechanism", style=style),
        }
        self.images = {pane: widgets.Image(format="png") for pane in ("accumulation", "mechanism")}
        self.notes = {pane: widgets.HTML() for pane in ("accumulation", "mechanism")}
        self.views: dict[str, View] = {}
        self.redraw_seconds: dict[str, list[float]] = {"accumulation": [], "mechanism": []}
        for name in ACCUMULATION_CONTROLS:
            self.controls[name].observe(lambda _change: self.redraw("accumulation"), names="value")
        self.controls["mechanism"].observe(lambda _change: self.redraw("mechanism"), names="value")
        self.redraw("accumulation")
        self.redraw("mechanism")

    def _view(self, pane: str) -> View:
        if pane == "accumulation":
            return accumulation_view(**{name: self.controls[name].value for name in ACCUMULATION_CONTROLS})
        return mechanism_view(self.controls["mechanism"].value)

    def redraw(self, pane: str) -> None:
        """Recompute ``pane`` from the controls' values and show it."""
        started = time.perf_counter()
        view = self._view(pane)
        self.images[pane].value = _png(view.figure)
        self.notes[pane].value = view.html
        self.views[pane] = view
        self.redraw_seconds[pane].append(time.perf_counter() - started)

    def summary(self, pane: str = "accumulation") -> str:
        """The pane's last result in one line: the console, the file, the exact loss."""
        facts = self.views[pane].facts
        if pane == "accumulation":
            return (f"console {facts['console']}; the file holds {facts['read_back']}; exact {facts['exact']:.4f} "
                    f"({facts['stream']}: {facts['batches']:,} batches, the last of {facts['last_batch']})")
        return (f"console {format_values(facts['console'])}; file {format_values(facts['file'])}; fits all the "
                f"evidence: {yes_no(facts['fits'])}, the observed evidence: {yes_no(facts['fits_observed'])}")

    def timing(self) -> str:
        """How long the redraws took so far, per pane: count, median and slowest."""
        parts = []
        for pane, seconds in self.redraw_seconds.items():
            ordered = sorted(seconds)
            parts.append(f"{pane}: {len(ordered)} redraws, median {ordered[len(ordered) // 2]:.3f} s, "
                         f"slowest {ordered[-1]:.3f} s")
        return "; ".join(parts)

    @property
    def widget(self) -> widgets.Widget:
        controls = [self.controls[name] for name in ACCUMULATION_CONTROLS]
        return widgets.VBox([
            widgets.HTML("<b>Accumulation</b>: one epoch of per-sample losses shaped like the write-up's first "
                         "epoch, in batches"),
            widgets.HBox(controls[:2]), widgets.HBox(controls[2:]),
            widgets.HBox([self.images["accumulation"], self.notes["accumulation"]]),
            widgets.HTML("<b>Mechanism</b>: a case of the gallery"), self.controls["mechanism"],
            widgets.HBox([self.images["mechanism"], self.notes["mechanism"]]),
        ])
