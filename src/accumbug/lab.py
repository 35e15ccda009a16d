"""Everything the notebooks use, in one namespace: ``from accumbug import lab``.

As d2l's notebooks import one module, every notebook here imports this one, so a reader
finds each name in one place and a cell reads ``lab.train(...)``. It gathers the reference
core (data, trackers, trainer, history files, run folders), the specimens (the incident's
trackers and its serialiser) and the lessons (tables, figures, the audit, the gallery, the
exercises' checks). ``lab.Explorer``, the widget explorer, is imported on first use, so
that ``lab`` itself needs no ipywidgets.
"""

from typing import TYPE_CHECKING

from .config import TrainConfig
from .data import preset
from .distributed import rank_shard, torchrun_command, torchrun_run
from .doctor.examine import examine
from .doctor.findings import FINDING_CODES
from .doctor.formats import format_findings
from .exact_mean import ExactMean
from .history import load_history
from .lessons.audit import format_claims, recorded_run, run_audit
from .lessons.exercises import (
    check_accumulator_choice,
    check_epoch_loss,
    check_rank_reduction,
    check_serialiser,
    float16_overflow,
)
from .lessons.incident import INCIDENT_CONSOLE, INCIDENT_CONSOLE_LOG
from .lessons.mechanisms import (
    ASSUMED_EVIDENCE,
    MECHANISMS,
    after_the_fix,
    diagnosis,
    epoch_stream,
    format_after_the_fix,
    format_diagnosis,
    format_evidence_comparison,
    format_gallery,
    format_needs,
    format_streams,
    gallery,
)
from .lessons.plots import (
    plot_diagnosis,
    plot_divergence,
    plot_gallery,
    plot_rank_errors,
    plot_symptom,
    plot_trajectory,
    save_figure,
)
from .lessons.streams import first_nonfinite, replay, stall_start
from .lessons.symptom import (
    format_departures,
    format_symptom,
    format_symptom_verdicts,
    incident_files,
    symptom_rows,
    symptom_trackers,
)
from .lessons.tables import (
    RANK_COLUMNS,
    Html,
    differing_lines,
    divergence_rows,
    format_console,
    format_declared_states,
    format_rows,
    format_sums_at,
    format_table,
    format_verdicts,
    incident_comparison,
    limit_rows,
    rank_eval_verdicts,
    rank_rows,
    run_verdicts,
    source_side_by_side,
)
from .lessons.wild.data import uneven_data
from .lessons.wild.hf_cases import hf_cases
from .lessons.wild.ignite_cases import ignite_cases
from .lessons.wild.keras_cases import keras_cases
from .lessons.wild.lightning_cases import lightning_cases
from .lessons.wild.summary import (
    format_wild_cases,
    format_wild_data,
    format_wild_doctor,
    format_wild_table,
    plot_wild,
)
from .lessons.wild.torchmetrics_cases import torchmetrics_cases
from .registry import make_tracker, make_trackers
from .runfolder import RunFolder
from .seeding import seed_everything
from .specimens.incident_trackers import ACCUMULATORS, IncidentBrokenTracker, IncidentFixedTracker
from .specimens.rank_trackers import RankMeanTracker
from .specimens.serialisers import incident_lossy_dumps
from .trackers import ExactTracker, MetricTracker
from .train import train

if TYPE_CHECKING:  # for readers and checkers; at run time __getattr__ imports it on first use
    from .lessons.widgets import Explorer

__all__ = [  # every name a notebook uses as lab.NAME, and no other (tests/test_lab.py)
    "ACCUMULATORS",
    "ASSUMED_EVIDENCE",
    "FINDING_CODES",
    "INCIDENT_CONSOLE",
    "INCIDENT_CONSOLE_LOG",
    "MECHANISMS",
    "RANK_COLUMNS",
    "ExactMean",
    "ExactTracker",
    "Explorer",
    "Html",
    "IncidentBrokenTracker",
    "IncidentFixedTracker",
    "MetricTracker",
    "RankMeanTracker",
    "RunFolder",
    "TrainConfig",
    "after_the_fix",
    "check_accumulator_choice",
    "check_epoch_loss",
    "check_rank_reduction",
    "check_serialiser",
    "diagnosis",
    "differing_lines",
    "divergence_rows",
    "epoch_stream",
    "examine",
    "first_nonfinite",
    "float16_overflow",
    "format_after_the_fix",
    "format_claims",
    "format_console",
    "format_declared_states",
    "format_departures",
    "format_diagnosis",
    "format_evidence_comparison",
    "format_findings",
    "format_gallery",
    "format_needs",
    "format_rows",
    "format_streams",
    "format_sums_at",
    "format_symptom",
    "format_symptom_verdicts",
    "format_table",
    "format_verdicts",
    "format_wild_cases",
    "format_wild_data",
    "format_wild_doctor",
    "format_wild_table",
    "gallery",
    "hf_cases",
    "ignite_cases",
    "incident_comparison",
    "incident_files",
    "incident_lossy_dumps",
    "keras_cases",
    "lightning_cases",
    "limit_rows",
    "load_history",
    "make_tracker",
    "make_trackers",
    "plot_diagnosis",
    "plot_divergence",
    "plot_gallery",
    "plot_rank_errors",
    "plot_symptom",
    "plot_trajectory",
    "plot_wild",
    "preset",
    "rank_eval_verdicts",
    "rank_rows",
    "rank_shard",
    "recorded_run",
    "replay",
    "run_audit",
    "run_verdicts",
    "save_figure",
    "seed_everything",
    "source_side_by_side",
    "stall_start",
    "symptom_rows",
    "symptom_trackers",
    "torchmetrics_cases",
    "torchrun_command",
    "torchrun_run",
    "train",
    "uneven_data",
]


def __getattr__(name: str):
    if name == "Explorer":  # ipywidgets only when the explorer is asked for
        from .lessons.widgets import Explorer
        return Explorer
    raise AttributeError(f"module 'accumbug.lab' has no attribute {name!r}")
