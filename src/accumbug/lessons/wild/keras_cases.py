"""Keras 3 (torch backend): what ``model.fit`` printed and what ``History`` saved, version by version.

Each version runs ``keras_worker`` in a subprocess on the shared uneven data set (``data.py``:
64 batches of 16, a last one of 8 holding the outliers; exact epoch loss ``WildData.exact()``):
older versions from their own cache folders (``versions.cached_install``), the installed one
(``None``) without one, so every version is measured the same way and importing Keras never
changes the notebook's process. Taught in ``notebooks/07_in_the_wild.ipynb``. Three behaviours:

* up to 3.1: the loss tracker averages batch means (each batch weighs the same), so ``History``
  saves the mean of batch means; keras-team/keras#19363 (in 3.2.0) weights each batch's loss by
  its size;
* up to 3.10: the progress bar averages the already-running means again, step by step, and its
  epoch-end update counts the final value once more: the last line shows
  ``(r_1 + ... + r_n + r_n) / (n + 1)`` for the running means ``r_k`` after each step, not
  ``r_n``, so from 3.2 on the console disagrees with an exact ``History``;
* 3.11 to 3.14: the last line shows the logs' value (keras-team/keras#21331), the lines before
  it still average again; from 3.15 every line shows the logs' values (keras-team/keras#23030).

The console line is read with the doctor's parser (``doctor.consoles.parse_console``), the
same one that reads a user's Keras log, so the value shown is what a user would read off it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ...doctor.consoles import parse_console
from .data import WildData, uneven_data
from .record import WildCase
from .versions import cached_install, run_with

__all__ = ["keras_cases", "upstream"]

WORKER = "accumbug.lessons.wild.keras_worker"
CASE = "model.fit, batch 16, last batch 8"
_TERMINAL_CODES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_REDRAWS = re.compile(r"[\r\x08]+")
# the first Keras version with each pull request (read from the releases' wheels), in order: a version's
# ``upstream`` is the first one it lacks (what fixes what it shows), or the last one once it has them all
FIXES = [((3, 2, 0), "keras-team/keras#19363"),  # History: each batch's loss weighted by its size
         ((3, 11, 0), "keras-team/keras#21331"),  # console: the final progress line shows the logs' values
         ((3, 15, 0), "keras-team/keras#23030")]  # console: every progress line shows the logs' values


def keras_cases(out: Path, versions=("3.1.1", "3.5.0", None)) -> list[WildCase]:
    """One ``WildCase`` per Keras version (``None``: the installed one); the files go in ``out/keras``.

    Raises ``RuntimeError`` with the worker's error output if a version fails to run, and
    ``ValueError`` for a version pip cannot be asked for.
    """
    folder = Path(out) / "keras"
    folder.mkdir(parents=True, exist_ok=True)
    data = uneven_data()
    return [_case(_run(version, folder), data) for version in versions]


def _run(version: str | None, folder: Path) -> dict:
    """The worker's JSON report for ``version`` (installed into the cache on first use)."""
    packages = None if version is None else cached_install("keras", version)
    done = run_with(packages, ["-m", WORKER, str(folder)], env={"KERAS_BACKEND": "torch"})
    name = f"Keras {version or '(installed)'}"
    if done.returncode != 0:
        raise RuntimeError(f"the {name} worker exited with {done.returncode}:\n{done.stderr[-3000:]}")
    try:
        report = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError) as error:
        raise RuntimeError(f"the {name} worker printed no report:\n{done.stdout[-1000:]}\n{done.stderr[-2000:]}") \
            from error
    if version is not None and report["version"] != version:
        raise RuntimeError(f"{name} was asked for but Keras {report['version']} ran: {packages} did not shadow it")
    return report


def upstream(version: str) -> str:
    """The pull request that changed (or, for versions without it, fixes) what Keras ``version`` shows."""
    release = tuple(int(part) for part in re.findall(r"\d+", version)[:3])
    return next((pull for first, pull in FIXES if release < first), FIXES[-1][1])


def _final_line(text: str) -> tuple[float, int, str]:
    """The epoch's last displayed loss and its decimals, as the doctor parses them, and that progress line
    as a terminal shows it."""
    console = parse_console(text)
    if 1 not in console.epochs or "loss" not in console.epochs[1]:
        raise RuntimeError(f"no Keras progress line with a loss in the console:\n{text[-1000:]}")
    line = _TERMINAL_CODES.sub("", text.split("\n")[console.line_of[1] - 1])
    shown = [part for part in _REDRAWS.split(line) if part.strip()][-1].strip()
    return console.epochs[1]["loss"], console.places[1]["loss"], shown


def _close(value: float, target: float) -> bool:
    """Equal but for float32 accumulation (Keras's metrics sum in float32)."""
    return abs(value / target - 1) < 1e-5


def _note(saved: float, displayed: float, places: int, data: WildData) -> str:
    """What was measured, in a few words: what History holds, and whether the console's last line agrees."""
    held = ("the exact loss" if _close(saved, data.exact()) else "the mean of batch means"
            if _close(saved, data.mean_of_batch_means()) else "neither the exact loss nor the mean of batch means")
    agrees = abs(displayed - saved) <= 0.5 * 10.0 ** -places + 1e-6 * abs(saved)
    return f"History saves {held}; the console's last line {'agrees' if agrees else 'shows another value'}"


def _case(report: dict, data: WildData) -> WildCase:
    """The ``WildCase`` of one worker report: displayed from the console file, saved from the History."""
    console = Path(report["console"])
    displayed, places, line = _final_line(console.read_text(encoding="utf-8"))
    saved = report["history"]["loss"][0]
    return WildCase("Keras", report["version"], CASE, displayed, saved, data.exact(),
                    upstream=upstream(report["version"]), note=_note(saved, displayed, places, data),
                    files=(report["saved"], report["console"]), console=line)
