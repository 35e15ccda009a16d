"""Console versus file: one row per tracker and epoch, as ``reproduce`` prints it.

For every tracker of a run and every epoch, the row holds the loss as the console showed
it, what the incident's lossy serialiser would have written, what the package's strict history
file holds, and the exact sample-weighted value, so a reader sees in one table where a
history parts from the console and from the truth (``01`` and ``02`` notebooks). For runs
under torchrun, ``rank_rows`` puts the naive cross-rank trackers beside the exact one.

``format_console`` prints a run's console with the incident's two trackers first (``01``,
``02``); ``source_side_by_side`` shows two trackers' code with the lines that truly differ
highlighted (``01``, ``03``, ``05``); ``format_sums_at`` prints ``03``'s sums after chosen
batches, ``format_declared_states`` and ``rank_eval_verdicts`` ``05``'s declared states and
evaluation checks. Every table prints a number by one rule (``fixed_digits``: fixed decimals,
never ``-0.00``) and an answer by another (``yes_no``).
"""

from __future__ import annotations

import difflib
import html
import inspect
import itertools
import math
import textwrap
from pathlib import Path

from ..history import dumps_history, loads_history, loads_strict
from ..runfolder import RunFolder, history_key, series
from ..specimens.serialisers import incident_lossy_dumps
from ..train import TrainResult
from .streams import first_nonfinite, stall_start

__all__ = [
    "RANK_COLUMNS",
    "Html",
    "differing_lines",
    "divergence_rows",
    "fixed_digits",
    "format_console",
    "format_declared_states",
    "format_rows",
    "format_sums_at",
    "format_table",
    "format_verdicts",
    "format_wrapped",
    "incident_comparison",
    "limit_rows",
    "rank_eval_verdicts",
    "rank_rows",
    "run_verdicts",
    "source_side_by_side",
    "strict_history",
    "yes_no",
]

EXACT = "exact"


def strict_history(result: TrainResult, name: str) -> dict:
    """The history as the strict file holds it: read from the run folder, else round-tripped."""
    if result.folder is not None and result.folder.epochs:
        return result.folder.history(name)
    return loads_history(dumps_history(result.histories[name]))


def divergence_rows(result: TrainResult, metric: str = "loss", names=None) -> list[dict]:
    """Rows ``tracker, accumulator, epoch, memory, console, incident_json, strict_json, exact, error_pct``.

    One group of rows per tracker of the run, or per tracker in ``names`` when given.
    ``memory`` is the tracker's value in memory, ``console`` the value as printed,
    ``incident_json`` the incident's serialiser's output, ``strict_json`` the strict file's value,
    ``exact`` the exact tracker's value (None when the run had none) and ``error_pct`` the
    in-memory value's relative error against it, in percent.
    """
    key = history_key(result.phase, metric)
    exact = result.histories.get(EXACT, {}).get(key)
    rows = []
    for name, history in result.histories.items():
        if names is not None and name not in names:
            continue
        lossy = loads_strict(incident_lossy_dumps(history))[key]
        strict = strict_history(result, name)[key]
        for index, value in enumerate(history[key]):
            truth = exact[index] if exact is not None else None
            error = (value - truth) / truth * 100 if truth not in (None, 0) else None
            rows.append({
                "tracker": name,
                "accumulator": history["accumulator"],
                "epoch": index + 1,
                "memory": value,
                "console": result.console[name][index][metric],
                "incident_json": lossy[index],
                "strict_json": strict[index],
                "exact": truth,
                "error_pct": error,
            })
    return rows


def rank_rows(runs: dict[str, Path]) -> list[dict]:
    """Rows ``run, world, tracker, epoch, loss, top1, top5, samples, error_pct`` from run folders.

    ``runs`` maps a label (``"5 ranks"``) to a run folder; each folder's trackers and phase
    come from its ``config.json``. ``error_pct`` is the loss's relative error against the
    same run's exact tracker, in percent (``05_distributed.ipynb`` compares the naive
    cross-rank trackers this way).
    """
    rows = []
    for label, out in runs.items():
        folder = RunFolder(out)
        histories, phase = folder.histories(), folder.phase
        world = (folder.record.get("ranks") or {}).get("world", 1)
        exact = series(histories[EXACT], "loss", phase) if EXACT in histories else None
        for name, history in histories.items():
            for index, loss in enumerate(series(history, "loss", phase)):
                truth = exact[index] if exact is not None else None
                rows.append({"run": label, "world": world, "tracker": name, "epoch": index + 1, "loss": loss,
                             "top1": series(history, "top1", phase)[index],
                             "top5": series(history, "top5", phase)[index],
                             "samples": series(history, "total", phase)[index],
                             "error_pct": (loss - truth) / truth * 100 if truth else None})
    return rows


RANK_COLUMNS = {"run": "run", "tracker": "tracker", "epoch": "epoch", "loss": "loss", "top1": "top-1 %",
                "top5": "top-5 %", "samples": "samples", "error_pct": "loss vs exact %"}


def limit_rows(sources: dict[str, dict[str, list[float]]], first: int = 400, batch_size: int = 16) -> list[dict]:
    """Where each sum overflows or stalls, for several sources of the same epoch's ``loss_sum`` trajectories.

    ``sources`` maps a label ("trained run, epoch 1", "replayed stream") to ``{tracker:
    trajectory}``. Each row: ``source``, ``tracker``, ``inf_from`` and ``stalls_from`` (1-based
    batches, None when never), and ``early_loss``, the mean batch loss of the first ``first``
    batches from the source's ``incident-broken:python`` sum (``loss * batch_size`` per batch).
    The trained run and the replayed stream differ because their early losses differ
    (notebook 02).
    """
    rows = []
    for label, trajectories in sources.items():
        exact_sum = trajectories.get("incident-broken:python")
        early = exact_sum[first - 1] / (first * batch_size) if exact_sum and len(exact_sum) >= first else None
        for name, trajectory in trajectories.items():
            if name.endswith(":python"):
                continue
            overflow, stall = first_nonfinite(trajectory), stall_start(trajectory)
            rows.append({"source": label, "tracker": name, "early_loss": early,
                         "inf_from": None if overflow is None else overflow + 1,
                         "stalls_from": None if stall is None else stall + 1})
    return rows


def fixed_digits(value: float, digits: int, plus: bool = False) -> str:
    """``value`` with ``digits`` decimals, a positive one with a leading ``+`` where ``plus``; one that rounds to zero
    prints as zero, unsigned, never as ``-0.00``: the one rule of the lessons' tables and percentages."""
    text = f"{value:{'+' if plus else '-'}.{digits}f}"
    return text.lstrip("+-") if float(text) == 0 else text


def yes_no(value: bool) -> str:
    """A yes/no answer (a verdict, a diagnosis cell) as every table and note of the lessons prints it."""
    return "yes" if value else "no"


def _cell(value, digits: int = 4) -> str:
    """A number as a table shows it: fixed decimals, non-finite values by name, None as '-'."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return f"{value:,}"
    if not math.isfinite(value):
        return str(value)
    return fixed_digits(value, digits)


def format_rows(rows: list[dict], columns: dict[str, str]) -> str:
    """A plain-text table of ``rows``: ``columns`` maps each key to its header; numbers right-aligned."""
    header = list(columns.values())
    body = [[_cell(row[key]) for key in columns] for row in rows]
    widths = [max(len(line[i]) for line in (header, *body)) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths)))
             for line in (header, *body)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_wrapped(rows: list[dict], columns: dict[str, tuple[str, int]]) -> str:
    """A plain-text table whose cells wrap: ``columns`` maps each key to ``(header, width)``."""
    widths = [width for _, width in columns.values()]
    lines = ["  ".join(header.ljust(width) for header, width in columns.values()).rstrip(),
             "  ".join("-" * width for width in widths)]
    for row in rows:
        cells = [textwrap.wrap(_cell(row[key]), width) or [""] for key, (_, width) in columns.items()]
        for parts in itertools.zip_longest(*cells, fillvalue=""):
            lines.append("  ".join(part.ljust(width) for part, width in zip(parts, widths)).rstrip())
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def format_table(rows: list[dict]) -> str:
    """``divergence_rows`` as a plain-text table for the terminal."""
    def error(value):
        if value is None:
            return "-"
        return f"{fixed_digits(value, 2)}%" if math.isfinite(value) else str(value)

    shown = [{**row, "error_pct": error(row["error_pct"]), "epoch": str(row["epoch"])} for row in rows]
    headers = {"tracker": "tracker", "epoch": "epoch", "console": "console", "incident_json": "incident's JSON",
               "strict_json": "strict JSON", "exact": "exact", "error_pct": "vs exact"}
    return format_rows(shown, headers)


INCIDENT_PAIR = ("incident-broken:python", "incident-fixed:python")


def format_console(result: TrainResult, first: tuple[str, ...] = INCIDENT_PAIR) -> str:
    """A run's console, the trackers in ``first`` as printed, then every other tracker's loss as a table.

    A run of eleven trackers prints eleven lines an epoch. The reader needs the incident's
    two first (the write-up's trackers, as its console printed them); the others follow one
    row each, loss per epoch, and their accuracies are listed only where they differ from the
    first tracker's (``01_side_by_side_small.ipynb``, ``02_side_by_side_full_136k.ipynb``).
    """
    lines = [line for line in result.console_lines if line.endswith(tuple(f"  [{name}]" for name in first))]
    others = [name for name in result.console if name not in first]
    if not others:
        return "\n".join(lines)
    epochs = range(len(result.console[first[0]]))
    rows = [{"tracker": name, **{e: result.console[name][e]["loss"] for e in epochs}} for name in others]
    table = format_rows(rows, {"tracker": "tracker", **{e: f"loss, epoch {e + 1}" for e in epochs}})
    accuracies = {name: [(e.get("top1"), e.get("top5")) for e in result.console[name]] for name in result.console}
    differ = [name for name in others if accuracies[name] != accuracies[first[0]]]
    note = (f"their top-1 and top-5 as printed: the same as {first[0]}'s" if not differ
            else f"top-1 or top-5 as printed differ from {first[0]}'s for: {', '.join(differ)}")
    return "\n".join([*lines, "", f"the other {len(others)} trackers, console loss per epoch;", note, table])


class Html(str):
    """A string that Jupyter renders as HTML."""

    def _repr_html_(self) -> str:
        return str(self)


def _source_lines(obj) -> list[str]:
    """The source of ``obj``, dedented, so a method and a class start at the same column."""
    return textwrap.dedent(inspect.getsource(obj)).rstrip("\n").split("\n")


def _normalised(line: str) -> str:
    """A source line as the comparison sees it: no indentation, each run of spaces as one."""
    return " ".join(line.split())


def _aligned(a, b) -> list[tuple[tuple[str, bool] | None, tuple[str, bool] | None]]:
    """The two sources' lines side by side, each with whether it truly differs; None pads a shorter block.

    difflib aligns the normalised lines. A line differs when it is not blank and the other
    source has no line equal to it once normalised, so indentation, spacing and a line that
    only moved are not highlighted.
    """
    left, right = _source_lines(a), _source_lines(b)
    keys = [_normalised(line) for line in left], [_normalised(line) for line in right]
    known = set(keys[0]), set(keys[1])

    def marked(lines, index, stop, other_keys):
        if index >= stop:
            return None
        key = _normalised(lines[index])
        return lines[index], bool(key) and key not in other_keys

    rows = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, *keys, autojunk=False).get_opcodes():
        for k in range(max(i2 - i1, j2 - j1)):
            if tag == "equal":
                rows.append(((left[i1 + k], False), (right[j1 + k], False)))
            else:
                rows.append((marked(left, i1 + k, i2, known[1]), marked(right, j1 + k, j2, known[0])))
    return rows


def differing_lines(a, b) -> tuple[list[str], list[str]]:
    """The source lines of ``a`` and of ``b`` that the other does not have (stripped), in order."""
    rows = _aligned(a, b)
    return tuple([cell[0].strip() for cell in column if cell is not None and cell[1]]
                 for column in zip(*rows)) if rows else ([], [])


CELL = "text-align:left;vertical-align:top;font-family:monospace;font-size:12px"


def source_side_by_side(a, b) -> Html:
    """Two functions' or classes' source in two left-aligned columns, the lines that truly differ highlighted.

    ``01_side_by_side_small.ipynb`` shows the incident's two ``update`` methods with it,
    ``03`` and ``05`` the exact tracker beside another.
    """
    def render(column):
        return "".join(
            f'<div style="background:{"#fde0c5" if cell is not None and cell[1] else "transparent"};'
            f'white-space:pre;text-align:left">{html.escape(cell[0]) if cell is not None and cell[0] else "&nbsp;"}'
            "</div>" for cell in column)

    def title(obj):
        return html.escape(f"{obj.__qualname__}  ({inspect.getmodule(obj).__name__})")

    left, right = zip(*_aligned(a, b))
    return Html(
        f'<table style="border-collapse:collapse;margin-left:0"><tr><th style="{CELL}">{title(a)}</th>'
        f'<th style="{CELL}">{title(b)}</th></tr>'
        f'<tr><td style="{CELL};padding-right:2em">{render(left)}</td><td style="{CELL}">{render(right)}</td></tr>'
        "</table>")


def incident_comparison(result: TrainResult) -> list[dict]:
    """The incident's comparison table, each number next to the one this run measured (epoch 1).

    Needs the run's ``incident-broken:python`` and ``incident-fixed:python`` trackers, and
    ``train(..., trajectory=True)`` for the first batch's loss; ``incident-broken:float16`` adds
    the rows of the half-precision story when the run has it.
    """
    broken, fixed = result.histories["incident-broken:python"], result.histories["incident-fixed:python"]
    spec = result.config.data_spec()
    first_loss = result.trajectories["incident-fixed:python"][0][0]
    lossy = {name: series(loads_strict(incident_lossy_dumps(h)), "loss") for name, h in result.histories.items()}
    rows = [
        ("batch size", "16", spec.batch_size),
        ("batches per epoch", "~8,519", f"{spec.batches_per_epoch:,} (last batch {spec.last_batch_size})"),
        ("loss.item() of this run's first batch (before any step)", "9.14", first_loss),
        ("broken: first addend loss * batch_size", "146.24", first_loss * spec.batch_size),
        ("broken: loss_sum after the epoch", "~1,238,000", f"{broken['train_loss_sum'][0]:,.1f}"),
        ("broken: total after the epoch", "~136,304", f"{broken['train_total'][0]:,}"),
        ("broken: loss_sum / total", "9.08... -> NaN", series(broken, "loss")[0]),
        ("fixed: loss_sum after the epoch", "~74,000", f"{fixed['train_loss_sum'][0]:,.1f}"),
        ("fixed: total after the epoch", "~8,519", f"{fixed['train_total'][0]:,}"),
        ("fixed: loss_sum / total", "8.68", series(fixed, "loss")[0]),
        ("exact per-sample mean", "-",
         series(result.histories["exact"], "loss")[0] if "exact" in result.histories else None),
        ("broken: JSON output", "[0.0, 0.0, ...]", _short_list(lossy["incident-broken:python"])),
        ("fixed: JSON output", "[9.16, 8.73, ...]", _short_list(lossy["incident-fixed:python"])),
    ]
    rows += _float16_rows(result.histories, lossy)
    return [{"quantity": q, "quoted": quoted, "measured": measured} for q, quoted, measured in rows]


# the write-up's quoted float16 figures: tracker, its word, the quoted loss_sum, the quoted JSON output
QUOTED_FLOAT16 = (("incident-broken:float16", "broken", "-", "[0.0, 0.0, ...]"),
                  ("incident-fixed:float16", "fixed", "~74,000", "[9.16, 8.73, ...]"))


def _float16_rows(histories: dict[str, dict], lossy: dict[str, list[float]]) -> list[tuple]:
    """The comparison's rows of the half-precision story, for the float16 trackers the run has."""
    rows = []
    for name, word, quoted_sum, quoted_json in QUOTED_FLOAT16:
        if name in histories:
            loss_sum = histories[name]["train_loss_sum"][0]
            rows += [(f"{word}, float16 accumulator: loss_sum after the epoch", quoted_sum, f"{loss_sum:,.1f}"),
                     (f"{word}, float16 accumulator: JSON output", quoted_json, _short_list(lossy[name]))]
    return rows


def _short_list(values: list[float]) -> str:
    """The values as a JSON file shows them, to four decimals: ``0.0`` stays ``0.0``, not ``0``."""
    return "[" + ", ".join(repr(round(v, 4)) for v in values) + "]"



def run_verdicts(result: TrainResult) -> list[tuple[str, bool]]:
    """Checks of a run's histories against the exact tracker, each computed, never asserted.

    Only the checks whose trackers the run has are made. Used by the notebooks, whose
    checked outputs are these verdicts rather than the trained values themselves.
    """
    histories = result.histories
    exact = histories.get("exact", {}).get(history_key("train", "loss"))
    if exact is None:
        return []

    def relative_errors(name):
        return [abs(v - e) / abs(e) if math.isfinite(v) else math.inf
                for v, e in zip(series(histories[name], "loss"), exact)]

    def lossy(name):
        return series(loads_strict(incident_lossy_dumps(histories[name])), "loss")

    checks = []
    if "incident-broken:python" in histories:
        checks.append(("incident-broken:python equals the exact loss in every epoch (relative 1e-12)",
                       max(relative_errors("incident-broken:python")) <= 1e-12))
    if "incident-fixed:python" in histories:
        checks.append(("incident-fixed:python differs from the exact loss in some epoch (relative > 1e-9)",
                       max(relative_errors("incident-fixed:python")) > 1e-9))
    for name in (n for n in histories if n.endswith((":float16", ":bfloat16"))):
        values = series(histories[name], "loss")
        if not all(math.isfinite(v) for v in values):
            strict = series(strict_history(result, name), "loss")
            claim = (f"{name}: where memory/console is non-finite, the incident's JSON holds 0.0 and the strict file "
                     f"the same non-finite value")
            checks.append((claim, all(z == 0.0 and (s == v or (math.isnan(s) and math.isnan(v)))
                                      for v, z, s in zip(values, lossy(name), strict) if not math.isfinite(v))))
        checks.append((f"{name}: off by more than 1 % from exact in some epoch", max(relative_errors(name)) > 0.01))
    accuracies = {(tuple(series(h, "top1")), tuple(series(h, "top5"))) for h in histories.values()}
    checks.append(("every tracker reports the same top-1 and top-5 accuracy", len(accuracies) == 1))
    return checks


def rank_eval_verdicts(eval_rows: list[dict], single: dict) -> list[tuple[str, bool]]:
    """What an evaluation pass over ranks must show (notebook 05): on every world size the exact tracker
    counts each sample once and gives one process's metrics (``single``: its history); the padded tracker
    counts ``world * ceil(samples / world)`` entries, the padding repeats included."""
    samples = single["eval_total"][0]
    exact = [row for row in eval_rows if row["tracker"] == EXACT]
    padded = [row for row in eval_rows if row["tracker"] == "naive-padded"]
    return [
        (f"every world size counts {samples:,} samples", all(row["samples"] == samples for row in exact)),
        ("top-1 and top-5 hits equal one process's exactly",
         all((row["top1"], row["top5"]) == (single["eval_top1"][0], single["eval_top5"][0]) for row in exact)),
        ("the loss equals one process's to 1e-6",
         all(abs(row["loss"] / single["eval_loss"][0] - 1) < 1e-6 for row in exact)),
        ("naive-padded counts world * ceil(samples / world) entries: "
         + ", ".join(f"{row['samples']:,} on {row['run']}" for row in padded),
         bool(padded) and all(row["samples"] == row["world"] * math.ceil(samples / row["world"]) for row in padded)),
    ]


def format_declared_states(trackers: list) -> str:
    """One row per tracker: each state it declares and how ranks combine it (notebook 05)."""
    declared = {tracker.name: tracker.state_reductions() for tracker in trackers}
    states = list(dict.fromkeys(state for reductions in declared.values() for state in reductions))
    return format_rows([{"tracker": name, **{state: reductions.get(state) for state in states}}
                        for name, reductions in declared.items()], {"tracker": "tracker", **{s: s for s in states}})


def format_sums_at(trajectories: dict[str, list[float]], batches: tuple[int, ...]) -> str:
    """Each trajectory's running sum after the given 1-based batches, one line per batch (notebook 03)."""
    return "\n".join(f"after batch {batch:>3}: " + ", ".join(f"{name.partition(':')[2]} {sums[batch - 1]:>9,.1f}"
                                                             for name, sums in trajectories.items())
                     for batch in batches)


def format_verdicts(verdicts: list[tuple[str, bool]]) -> str:
    return "\n".join(f"{'holds ' if holds else 'fails '}  {claim}" for claim, holds in verdicts)
