"""SPECIMEN. Ways to write a history file, and what each one leaves in it.

The incident's history held ``[0.0, 0.0, ...]``; whether a writer can do that is a question
about the writer, so here they stand side by side, each ``history -> text``:

* ``strict``: the package's writer (``history.dumps_history``): strict JSON, lossless.
  The one correct writer, here as the yardstick;
* ``python-json``: ``json.dumps`` as is. It writes ``NaN`` and ``Infinity``, which Python
  reads back but strict parsers (browsers, ``jq``, most languages) reject. In the wild:
  HF Trainer's ``trainer_state.json``, any ``json.dump(history)``;
* ``json-strict``: ``json.dumps(..., allow_nan=False)``: raises on a non-finite value;
* ``incident-sanitiser``: the write-up's ``x if math.isfinite(x) else 0.0``
  (``incident_lossy_dumps``): a non-finite value saved as a loss of 0.0;
* ``nan_to_num``: ``numpy.nan_to_num`` first: NaN becomes 0.0 but +inf becomes 1.8e308;
* ``broad-sanitiser``: a sanitiser meant for NaN/Inf that writes 0.0 for anything not a
  finite Python number, so a 0-dim tensor becomes 0.0 even when its value is fine.

Every writer but ``broad-sanitiser`` first turns 0-dim tensors into floats at save time, as
``float(v)`` in a save routine does. The audit (claim 6), the mechanism gallery, the
explorer and the serialiser exercise use this module (``03_what_really_breaks.ipynb``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import numpy
import torch

from ..history import dumps_history, map_leaves

__all__ = ["SERIALISERS", "incident_lossy_dumps", "to_python", "write"]


def _as_python(value):
    return value.item() if isinstance(value, (torch.Tensor, numpy.generic)) else value


def to_python(history):
    """0-dim tensors and numpy scalars as Python numbers: what ``float(v)`` at save time does."""
    return map_leaves(history, _as_python)


def _incident_sanitise(value):
    return value if not isinstance(value, float) or math.isfinite(value) else 0.0


def incident_lossy_dumps(history) -> str:
    """The write-up's serialiser: every non-finite value becomes ``0.0``, then ``json.dumps``."""
    return json.dumps(map_leaves(history, _incident_sanitise))


def _nan_to_num(value):
    return float(numpy.nan_to_num(value)) if isinstance(value, float) else value


def _broad(value):
    if value is None or isinstance(value, (str, bool)):
        return value
    return value if isinstance(value, (int, float)) and math.isfinite(value) else 0.0


SERIALISERS: dict[str, Callable[[dict], str]] = {
    "strict": lambda history: dumps_history(to_python(history)),
    "python-json": lambda history: json.dumps(to_python(history)),
    "json-strict": lambda history: json.dumps(to_python(history), allow_nan=False),
    "incident-sanitiser": lambda history: incident_lossy_dumps(to_python(history)),
    "nan_to_num": lambda history: json.dumps(map_leaves(to_python(history), _nan_to_num)),
    "broad-sanitiser": lambda history: json.dumps(map_leaves(history, _broad)),
}


def write(history: dict, serialiser: str) -> str:
    """The text that ``serialiser`` writes for ``history``."""
    if serialiser not in SERIALISERS:
        raise ValueError(f"serialiser={serialiser!r}: unknown; allowed: {', '.join(SERIALISERS)}")
    return SERIALISERS[serialiser](history)
