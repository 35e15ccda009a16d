"""Console versus file: one row per tracker and epoch, as ``reproduce`` prints it.

For every tracker of a run and every epoch, the row holds the loss as the console showed
it, what the seed's lossy serialiser would have written, what the package's strict history
file holds, and the exact sample-weighted value, so a reader sees in one table where a
history parts from the console and from the truth (``01`` and ``02`` notebooks).
"""

from __future__ import annotations

import math
from pathlib import Path

from .history import dumps_history, load_history, loads_history, loads_strict, seed_lossy_dumps
from .train import TrainResult, history_filename

__all__ = ["divergence_rows", "format_table"]

EXACT = "exact"


def _strict_history(result: TrainResult, name: str) -> dict:
    """The history as the strict file holds it: read from the run folder, else round-tripped."""
    if result.out is not None and (Path(result.out) / history_filename(name)).exists():
        return load_history(Path(result.out) / history_filename(name))
    return loads_history(dumps_history(result.histories[name]))


def divergence_rows(result: TrainResult, metric: str = "loss") -> list[dict]:
    """Rows ``tracker, accumulator, epoch, memory, console, seed_json, strict_json, exact, error_pct``.

    ``memory`` is the tracker's value in memory, ``console`` the value as printed,
    ``seed_json`` the seed serialiser's output, ``strict_json`` the strict file's value,
    ``exact`` the exact tracker's value (None when the run had none) and ``error_pct`` the
    in-memory value's relative error against it, in percent.
    """
    key = f"train_{metric}"
    exact = result.histories.get(EXACT, {}).get(key)
    rows = []
    for name, history in result.histories.items():
        lossy = loads_strict(seed_lossy_dumps(history))[key]
        strict = _strict_history(result, name)[key]
        for index, value in enumerate(history[key]):
            truth = exact[index] if exact is not None else None
            error = (value - truth) / truth * 100 if truth not in (None, 0) else None
            rows.append({
                "tracker": name,
                "accumulator": history["accumulator"],
                "epoch": index + 1,
                "memory": value,
                "console": result.console[name][index][metric],
                "seed_json": lossy[index],
                "strict_json": strict[index],
                "exact": truth,
                "error_pct": error,
            })
    return rows


def _cell(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:.{digits}f}"


def format_table(rows: list[dict]) -> str:
    """A plain-text table of ``divergence_rows`` for the terminal."""
    header = ("tracker", "epoch", "console", "seed's JSON", "strict JSON", "exact", "vs exact")
    body = [
        (row["tracker"], str(row["epoch"]), _cell(row["console"]), _cell(row["seed_json"]),
         _cell(row["strict_json"]), _cell(row["exact"]),
         "-" if row["error_pct"] is None else (
             _cell(row["error_pct"], 2) + ("%" if math.isfinite(row["error_pct"]) else "")))
        for row in rows
    ]
    widths = [max(len(line[i]) for line in (header, *body)) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths)))
             for line in (header, *body)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
