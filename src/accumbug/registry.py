"""Every tracker the notebooks and the command line name: the exact one and the specimens.

``make_tracker("incident-broken:float16")`` gives a fresh tracker from its name, so a cell
or ``--tracker`` can say which trackers a run feeds; ``make_trackers`` does a list. The
names: ``exact`` and ``exact-mean`` (``ExactMean``: the loss alone, for any loop); the naive
cross-rank ones ``naive-rank0``, ``naive-rank-mean``, ``naive-padded``; the incident's
``incident-broken`` and ``incident-fixed``, each with ``:ACCUMULATOR`` (alone they mean
``:python``, the incident's own code); and the symptom's ``in-place-mean``,
``in-place-mean-fixed``, ``tensor-loss`` and ``tensor-loss-fixed``, each with the one
accumulator it has (``lessons/symptom.py``).

``TRACKER_KINDS`` and ``ACCUMULATORS`` are the one list of what is allowed:
``tracker_names_help()`` renders it for ``make_tracker``'s error and for the command line's
``--tracker`` help, so a kind added here shows in both. An entry point beside ``cli`` and
``lab``: it imports the core and ``specimens`` only, so the lessons may use it too.
"""

from __future__ import annotations

from .exact_mean import ExactMean
from .specimens.gallery_trackers import (
    InPlaceMeanFixedTracker,
    InPlaceMeanTracker,
    TensorLossFixedTracker,
    TensorLossTracker,
)
from .specimens.incident_trackers import (
    ACCUMULATORS,
    IncidentBrokenTracker,
    IncidentFixedTracker,
)
from .specimens.rank_trackers import NAIVE_RANK_TRACKERS
from .trackers import ExactTracker

__all__ = ["INCIDENT_KINDS", "NAIVE_RANK_KINDS", "TRACKER_KINDS", "make_tracker",
           "make_trackers", "tracker_names_help"]

NAIVE_RANK_KINDS = tuple(cls.kind for cls in NAIVE_RANK_TRACKERS)
INCIDENT_KINDS = (IncidentBrokenTracker.kind, IncidentFixedTracker.kind)
SYMPTOM_TRACKERS = (InPlaceMeanTracker, InPlaceMeanFixedTracker, TensorLossTracker, TensorLossFixedTracker)
TRACKER_KINDS = {cls.kind: cls for cls in (ExactTracker, ExactMean, *NAIVE_RANK_TRACKERS, IncidentBrokenTracker,
                                           IncidentFixedTracker, *SYMPTOM_TRACKERS)}


def tracker_names_help() -> str:
    """The names ``make_tracker`` accepts, from ``TRACKER_KINDS`` and ``ACCUMULATORS``, in one line."""
    names = [f"{kind}[:ACCUMULATOR]" if kind in INCIDENT_KINDS else kind for kind in TRACKER_KINDS]
    return f"{', '.join(names)}; ACCUMULATOR one of {', '.join(ACCUMULATORS)}"


def make_tracker(spec: str):
    """A fresh tracker from its name (see the module's docstring for the names)."""
    kind, _, accumulator = str(spec).partition(":")
    if kind not in TRACKER_KINDS:
        raise ValueError(f"tracker={spec!r}: unknown; allowed: {tracker_names_help()}")
    if kind in INCIDENT_KINDS:  # the incident's trackers take any accumulator; every other kind has its one
        return TRACKER_KINDS[kind](accumulator or "python")  # the tracker checks its accumulator
    tracker = TRACKER_KINDS[kind]()
    if accumulator and accumulator != tracker.accumulator:
        raise ValueError(f"tracker={spec!r}: {kind} always accumulates in {tracker.accumulator}; "
                         f"write '{tracker.name}'")
    return tracker


def make_trackers(specs) -> list:
    """``make_tracker`` for each name of ``specs``; tracker objects pass through unchanged."""
    return [make_tracker(spec) if isinstance(spec, str) else spec for spec in specs]
