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

The notebooks import all they use from ``accumbug.lab``. This module exports the core, each name
imported from its module on first use: ``import accumbug`` alone imports neither torch nor
anything else, so ``python -m accumbug doctor`` starts in a fraction of a second.
"""

import sys
import types
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what type checkers and editors read; at run time ``__getattr__`` imports each name on first use
    from .config import TrainConfig
    from .data import PRESETS, DataSpec, SyntheticImages, preset
    from .exact_mean import ExactMean
    from .history import load_history, save_history
    from .runfolder import RunFolder
    from .seeding import seed_everything
    from .trackers import ExactTracker, MetricTracker, Tracker
    from .train import TrainResult, train

__version__ = "0.1.0"

_EXPORTS = {  # each exported name -> the core module that defines it, imported on first use
    "PRESETS": "data", "DataSpec": "data", "SyntheticImages": "data", "preset": "data",
    "ExactMean": "exact_mean", "load_history": "history", "save_history": "history", "RunFolder": "runfolder",
    "seed_everything": "seeding", "ExactTracker": "trackers", "MetricTracker": "trackers", "Tracker": "trackers",
    "TrainConfig": "config", "TrainResult": "train", "train": "train",
}

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


def __getattr__(name: str):
    """An exported name, imported from its module the first time it is asked for (PEP 562)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = __import__(f"{__name__}.{_EXPORTS[name]}", fromlist=[name])  # as a statement would: -X importtime sees it
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """The package's module type: importing the submodule ``accumbug.train`` must not replace the exported
    function ``train`` (the import system binds a submodule to its parent's attribute of the same name)."""

    def __setattr__(self, name: str, value) -> None:
        if name in _EXPORTS and value is sys.modules.get(f"{__name__}.{name}"):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
