"""accumbug: epoch metrics accumulated wrongly, so the saved history disagrees with the console.

The shared code of the notebooks: the seed-shaped data set (``data``), the model (``model``),
the seed's broken and fixed trackers beside an exact one (``trackers``), the trainer that
feeds them the same batches (``train``), strict lossless history files (``history``), the
console-vs-file table (``report``) and figures (``plots``). On top of them: the write-up's
claims measured (``audit``), the mechanism gallery and its diagnosis (``mechanisms``), the
explorer (``widgets``) and the exercises' checks (``exercises``).
"""

from .data import PRESETS, DataSpec, SyntheticImages, preset
from .history import load_history, save_history, seed_lossy_dumps
from .seeding import seed_everything
from .trackers import ACCUMULATORS, ExactTracker, SeedBrokenTracker, SeedFixedTracker, make_tracker
from .train import TrainConfig, TrainResult, train

__version__ = "0.1.0"

__all__ = [
    "ACCUMULATORS",
    "DataSpec",
    "ExactTracker",
    "PRESETS",
    "SeedBrokenTracker",
    "SeedFixedTracker",
    "SyntheticImages",
    "TrainConfig",
    "TrainResult",
    "load_history",
    "make_tracker",
    "preset",
    "save_history",
    "seed_everything",
    "seed_lossy_dumps",
    "train",
]
