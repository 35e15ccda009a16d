"""A run's settings: ``TrainConfig``, every value checked, and the presets' learning-rate schedules.

``TrainConfig`` holds everything that decides a run's numbers and refuses a bad value when it
is made, in one line naming the value and what is allowed (``validation.py``), so nothing
is written before every value is known to be usable. NumPy numbers are accepted and kept as
the Python numbers they are, so ``config.json`` is the same whichever was passed.
``run_config`` reads the settings a run folder was made with; ``RESUMABLE_CHANGES`` names
the ones a resumed run may change (``checkpoint.py`` checks the rest).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch

from .data import DataSpec, preset
from .runfolder import RunFolder, RunFolderError
from .trackers import TOPK
from .validation import check_choice, check_flag, check_real, check_whole

__all__ = ["AMP_MODES", "RESUMABLE_CHANGES", "SCHEDULES", "Schedule", "TrainConfig", "resolve_device",
           "run_config"]

AMP_MODES = ("off", "float16", "bfloat16")
RESUMABLE_CHANGES = ("epochs", "progress", "device")  # settings a resumed run may change


@dataclass(frozen=True)
class Schedule:
    """A preset's learning rate: ``lr``, reached from ``warmup_from`` by an exponential warmup.

    The rate at step ``t`` (0-based) is ``warmup_from * (lr / warmup_from) ** (t / T)`` for the
    first ``T = warmup_epochs`` epochs' steps, then ``lr``. The full preset warms up across the
    incident's 4 epochs, so its loss falls faster each epoch, as the incident's log did
    (``data/README.md``); ``warmup_epochs=0`` is a constant rate.
    """

    lr: float
    warmup_from: float
    warmup_epochs: float


SCHEDULES = {"tiny": Schedule(0.015, 0.015, 0.0), "small": Schedule(0.015, 0.015, 0.0),
             "full": Schedule(4e-3, 3e-6, 4.0)}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a run's numbers. ``samples``/``classes``/``batch_size`` override the preset.

    ``lr``, ``warmup_from`` and ``warmup_epochs`` left at ``None`` take the preset's schedule
    (``SCHEDULES``); the config then holds the numbers, so ``config.json`` records them.
    """

    preset: str = "small"
    epochs: int = 3
    seed: int = 0
    lr: float | None = None
    momentum: float = 0.9
    hidden: int = 64
    device: str = "auto"
    amp: str = "off"
    progress: bool = False
    samples: int | None = None
    classes: int | None = None
    batch_size: int | None = None
    stop_on_nonfinite: bool = False
    eval_only: bool = False  # no gradients, no optimizer steps: each epoch measures the seeded model
    warmup_from: float | None = None
    warmup_epochs: float | None = None

    def __post_init__(self) -> None:
        keep = self._keep
        keep("epochs", check_whole("epochs", self.epochs, 1))
        keep("seed", check_whole("seed", self.seed, 0))
        check_choice("preset", self.preset, SCHEDULES)
        for name, value in asdict(SCHEDULES[self.preset]).items():
            if getattr(self, name) is None:
                keep(name, value)
        for name in ("lr", "warmup_from"):
            keep(name, check_real(name, getattr(self, name), 0, low_open=True))
        keep("warmup_epochs", check_real("warmup_epochs", self.warmup_epochs, 0))
        keep("momentum", check_real("momentum", self.momentum, 0, 1, high_open=True))
        keep("hidden", check_whole("hidden", self.hidden, 1))
        check_choice("amp", self.amp, AMP_MODES)
        for name in ("progress", "stop_on_nonfinite", "eval_only"):
            keep(name, check_flag(name, getattr(self, name)))
        for name in ("samples", "classes", "batch_size"):  # their bounds: DataSpec's, in data_spec()
            if getattr(self, name) is not None:
                keep(name, check_whole(name, getattr(self, name)))
        spec = self.data_spec()  # raises on a bad size or batch size
        if spec.classes < TOPK:
            raise ValueError(f"classes={spec.classes}: top-{TOPK} accuracy needs at least {TOPK} classes")
        resolve_device(self.device)

    def _keep(self, name: str, value) -> None:
        """Store a checked value (a Python number, whatever kind was passed) in the frozen config."""
        object.__setattr__(self, name, value)

    def data_spec(self) -> DataSpec:
        sizes = ("samples", "classes", "batch_size")
        changes = {name: getattr(self, name) for name in sizes if getattr(self, name) is not None}
        return preset(self.preset, **changes)

    @property
    def phase(self) -> str:
        """``train`` or ``eval``: the prefix of the history keys."""
        return "eval" if self.eval_only else "train"

    def learning_rate(self, step: int, steps_per_epoch: int) -> float:
        """The rate of 0-based optimizer step ``step`` (see ``Schedule``)."""
        warmup = self.warmup_epochs * steps_per_epoch
        if step >= warmup:
            return self.lr
        return self.warmup_from * (self.lr / self.warmup_from) ** (step / warmup)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"config keys {unknown}: unknown; allowed: {', '.join(sorted(names))}")
        return cls(**values)


def run_config(folder: RunFolder) -> TrainConfig:
    """The config a run folder was made with (``--resume`` starts from it)."""
    record = folder.record  # a RunFolderError of its own for a missing or unreadable config.json
    try:
        return TrainConfig.from_dict(record["config"])
    except (ValueError, KeyError, TypeError) as error:
        raise RunFolderError(f"{str(folder.path)!r}: config.json is corrupt ({error})") from None


def resolve_device(name: str) -> torch.device:
    """The device ``name`` asks for (``auto``: CUDA when present), or a ``ValueError`` naming it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device={name!r}: unknown; allowed: auto, cpu, cuda, cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r}: CUDA is not available here; use auto or cpu")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device={name!r}: unsupported; allowed: auto, cpu, cuda, cuda:N")
    return device
