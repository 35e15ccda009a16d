"""accumbug: epoch metrics accumulated wrongly, so the saved history disagrees with the console.

The package has three layers; a path says which one a piece of code is in
(``docs/architecture.md``):

* the top level is the **reference core**, code to copy or import: the synthetic data set
  (``data``), the model (``model``), the tracker protocol and the exact tracker
  (``trackers``), the exact mean of any loss for a loop of your own (``exact_mean``),
  strict lossless history files (``history``), run folders committed all at once
  (``runfolder``), the trainer (``train``), torchrun ranks (``distributed``) and
  seeding (``seeding``). It never imports the other two layers;
* ``specimens`` holds the deliberately wrong code: the incident's trackers, naive
  cross-rank trackers, lossy serialisers, the gallery's trackers;
* ``lessons`` holds the teaching machinery: quoted figures, replayed streams, tables,
  figures, the claim audit, the mechanism gallery, the explorer, the exercises' checks.

The notebooks import all they use from ``accumbug.lab``. This module exports the core.
"""

from .config import TrainConfig
from .data import PRESETS, DataSpec, SyntheticImages, preset
from .exact_mean import ExactMean
from .history import load_history, save_history
from .runfolder import RunFolder
from .seeding import seed_everything
from .trackers import ExactTracker, MetricTracker, Tracker
from .train import TrainResult, train

__version__ = "0.1.0"

__all__ = [
    "PRESETS",
    "DataSpec",
    "ExactMean",
    "ExactTracker",
    "MetricTracker",
    "RunFolder",
    "SyntheticImages",
    "Tracker",
    "TrainConfig",
    "TrainResult",
    "load_history",
    "preset",
    "save_history",
    "seed_everything",
    "train",
]
