"""The incident's symptom from a trained run: the console prints real values, the file holds zeros.

The write-up's evidence is a console that printed ``loss=9.1621, 8.7352, 8.2003, 7.5350``
while ``history.json`` held ``[0.0, 0.0, 0.0, 0.0]``. Of the mechanism gallery's twelve
cases, two fit all of that evidence (``03_what_really_breaks.ipynb``), and here each runs in
a real training run, with the incident's end of epoch and save (``specimens/incident_log.py``):

* ``aliased-reset``: the tracker hands out its own mean buffer, the history appends it,
  the ``reset()`` after the last epoch zeroes it, and the save writes 0.0 four times;
* ``broad-sanitiser``: the tracker returns a 0-dim tensor, and a sanitiser meant for
  NaN/Inf writes 0.0 for whatever is not a plain float.

Neither is the write-up's code as it shows it: its trackers add ``loss.item()``, a Python
float, so ``get_metrics`` returns floats and a plain ``json.dump`` writes them as they are.
Each case needs a tensor the write-up does not show; ``BEYOND_THE_WRITE_UP`` says which (in
the gallery's words) and why the file still ends up 0.0, and ``format_departures`` prints it.

Each comes three times: the incident's code (its "broken" tracker), the write-up's fix (its
"fixed" tracker, same habit: still zeros), and the fix that works (``float()`` when
appending, a strict writer: the trainer's own history of the first tracker, which equals
the console and the exact loss). ``symptom_rows`` lays them out as ``reproduce`` prints
them first, and as ``01_side_by_side_small.ipynb`` and ``02_side_by_side_full_136k.ipynb``
show them.
"""

from __future__ import annotations

import math

from ..history import read_back
from ..runfolder import series
from ..specimens.gallery_trackers import (
    InPlaceMeanFixedTracker,
    InPlaceMeanTracker,
    TensorLossFixedTracker,
    TensorLossTracker,
)
from ..specimens.incident_log import IncidentLog
from ..train import TrainResult
from .mechanisms import console_is_real, format_values
from .mechanisms import mechanism as gallery_case
from .tables import format_rows, format_wrapped, strict_history, yes_no

__all__ = ["BEYOND_THE_WRITE_UP", "CODE_PATHS", "SYMPTOMS", "format_departures", "format_symptom",
           "format_symptom_verdicts", "incident_files", "symptom_rows", "symptom_trackers", "symptom_verdicts"]


# mechanism -> (the incident's tracker with the habit, the write-up's fixed tracker with it, the writer that saves)
SYMPTOMS = {
    "aliased-reset": (InPlaceMeanTracker, InPlaceMeanFixedTracker, "python-json"),
    "broad-sanitiser": (TensorLossTracker, TensorLossFixedTracker, "broad-sanitiser"),
}
CODE_PATHS = ("incident's code", "write-up's fix", "working fix")

# mechanism -> (what its code needs that the write-up's does not show, in the gallery's words; why the file ends 0.0)
BEYOND_THE_WRITE_UP = {
    key: (gallery_case(key).needs, why) for key, why in (
        ("aliased-reset", ("the save converts 0-dim tensors to floats as it writes (the python-json writer), "
                           "after the last reset(): every entry is the same zeroed buffer")),
        ("broad-sanitiser", "a sanitiser meant for NaN/Inf writes 0.0 for anything that is not a plain float"))}

def symptom_trackers() -> tuple[list, IncidentLog]:
    """Fresh trackers for every mechanism (incident's and fixed), and the incident's log that saves them."""
    trackers = [cls() for pair in SYMPTOMS.values() for cls in pair[:2]]
    writers = {tracker.name: SYMPTOMS[_mechanism(tracker)][2] for tracker in trackers}
    return trackers, IncidentLog(writers)


def _mechanism(tracker) -> str:
    return next(key for key, pair in SYMPTOMS.items() if type(tracker) in pair[:2])


def incident_files(log: IncidentLog) -> dict[str, bytes]:
    """The incident's saved files, one per tracker, named ``incident-history-<tracker>.json``."""
    return {f"incident-history-{name.replace(':', '-')}.json": log.saved(name).encode() for name in log.histories}


def _row(result: TrainResult, mechanism: str, code: str, name: str, saved: dict) -> dict:
    return {"mechanism": mechanism, "code": code, "tracker": name,
            "console": [epoch["loss"] for epoch in result.console[name]],
            "saved": series(saved, "loss"), "saved_top1": series(saved, "top1"), "saved_top5": series(saved, "top5"),
            "exact": series(result.histories["exact"], "loss")}


def symptom_rows(result: TrainResult, log: IncidentLog) -> list[dict]:
    """Per mechanism, three rows (``CODE_PATHS``): the console's, the saved file's and the exact loss per epoch.

    ``result`` is a run with the ``exact`` tracker and ``symptom_trackers()``'s, trained with
    ``epoch_hook=log``. The working fix's file is the trainer's strict history of the
    incident's tracker (read from the run folder when there is one).
    """
    rows = []
    for mechanism, (broken, fixed, _) in SYMPTOMS.items():
        names = [next(t for t in log.histories if t.startswith(cls.kind + ":")) for cls in (broken, fixed)]
        for code, name in zip(CODE_PATHS, names):
            rows.append(_row(result, mechanism, code, name, read_back(log.saved(name))))
        rows.append(_row(result, mechanism, CODE_PATHS[2], names[0], strict_history(result, names[0])))
    return rows


def format_symptom(rows: list[dict]) -> str:
    """``symptom_rows`` as a plain-text table: loss per epoch on the console, in the saved file, exact."""
    shown = [{**row, "console": format_values(row["console"]), "saved": format_values(row["saved"]),
              "saved_top5": format_values(row["saved_top5"]).replace("]", "] %"), "exact": format_values(row["exact"])}
             for row in rows]
    return format_rows(shown, {"mechanism": "mechanism", "code": "code", "console": "console loss",
                               "saved": "saved loss", "saved_top5": "saved top-5", "exact": "exact loss"})


def symptom_verdicts(row: dict) -> dict[str, bool]:
    """What one row shows, as yes/no: the parts of the write-up's evidence and whether the file is right.

    These do not depend on the trained digits, so a notebook can check them exactly.
    """
    console, saved, exact = row["console"], row["saved"], row["exact"]
    return {
        "console real": console_is_real(console, exact),
        "saved loss all 0.0": all(v == 0.0 for v in saved),
        "saved accuracies non-zero": all(v > 0 for v in row["saved_top1"] + row["saved_top5"]),
        "saved = console": all(round(v, 4) == c for v, c in zip(saved, console)),
        "saved = exact": all(math.isclose(v, e, rel_tol=1e-6) for v, e in zip(saved, exact)),
    }


def format_symptom_verdicts(rows: list[dict]) -> str:
    """``symptom_verdicts`` of every row as a yes/no table, and the saved losses (exact zeros or not)."""
    shown = []
    for row in rows:
        verdicts = {key: yes_no(holds) for key, holds in symptom_verdicts(row).items()}
        shown.append({"mechanism": row["mechanism"], "code": row["code"], **verdicts})
    return format_rows(shown, {"mechanism": "mechanism", "code": "code",
                               **{key: key for key in symptom_verdicts(rows[0])}})


def format_departures() -> str:
    """Where each reproduced mechanism departs from the write-up's literal code, as a wrapped table.

    The write-up's trackers add ``loss.item()`` (a Python float), so its ``get_metrics``
    returns floats, which ``json.dump`` writes as they are; each case that fits the evidence
    needs a tensor (``BEYOND_THE_WRITE_UP``, in the gallery's words). ``01`` and ``02`` print
    this beside the symptom they reproduce.
    """
    rows = [{"mechanism": key, "needs": needs, "file": why} for key, (needs, why) in BEYOND_THE_WRITE_UP.items()]
    return format_wrapped(rows, {"mechanism": ("mechanism", 15),
                                 "needs": ("what its code needs beyond the write-up's", 48),
                                 "file": ("why the file holds 0.0", 44)})
