"""The shared trainer: the seed's loop, once, feeding several trackers the same batches.

``train(config, trackers)`` runs forward, ``CrossEntropyLoss``, backward and an optimizer
step per batch, then calls ``update`` on every tracker with that batch's loss, outputs and
labels, exactly as the seed's loop called its one ``metrics.update``. Because all trackers
see the same numbers, any difference between their histories comes from accumulation alone.

The console is the seed's: a tqdm bar per epoch whose postfix shows the first tracker's
running metrics (``progress=True``; ``tqdm.auto`` gives the notebook widget), then one line
per tracker, ``Epoch 1 [Train]: loss=9.1621, top1=0.00%, top5=0.20%``. With ``out=`` the run
folder gets ``config.json`` at the start and, after every epoch, ``console.log`` and one
strict history file per tracker (``history.py``), each written atomically.
"""

from __future__ import annotations

import json
import math
import platform
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from .data import DataSpec, SyntheticImages, preset
from .history import atomic_write_text, save_history
from .model import SmallClassifier
from .seeding import seed_everything
from .trackers import TOPK, make_tracker

__all__ = ["AMP_MODES", "TrainConfig", "TrainResult", "format_epoch_line", "history_filename", "train"]

AMP_MODES = ("off", "float16", "bfloat16")
POSTFIX_EVERY = 25  # batches between postfix refreshes: get_metrics may sync the device


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a run's numbers. ``samples``/``classes``/``batch_size`` override the preset."""

    preset: str = "small"
    epochs: int = 3
    seed: int = 0
    lr: float = 0.015
    momentum: float = 0.9
    hidden: int = 64
    device: str = "auto"
    amp: str = "off"
    progress: bool = False
    samples: int | None = None
    classes: int | None = None
    batch_size: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs={self.epochs!r}: must be a whole number >= 1")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr={self.lr!r}: must be a finite number > 0")
        if not (isinstance(self.momentum, (int, float)) and 0 <= self.momentum < 1):
            raise ValueError(f"momentum={self.momentum!r}: must be in [0, 1)")
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp={self.amp!r}: unknown; allowed: {', '.join(AMP_MODES)}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed={self.seed!r}: must be a whole number >= 0")
        spec = self.data_spec()  # raises on a bad preset, size or batch size
        if spec.classes < TOPK:
            raise ValueError(f"classes={spec.classes}: top-{TOPK} accuracy needs at least {TOPK} classes")
        _resolve_device(self.device)

    def data_spec(self) -> DataSpec:
        changes = {f: getattr(self, f) for f in ("samples", "classes", "batch_size") if getattr(self, f) is not None}
        return preset(self.preset, **changes)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"config keys {unknown}: unknown; allowed: {', '.join(sorted(names))}")
        return cls(**values)


def _resolve_device(name: str) -> torch.device:
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


@dataclass
class TrainResult:
    """What a run returns: per-tracker histories, the console's values, timings, the model.

    ``histories[name]`` maps ``train_loss``, ``train_top1``, ... and the raw accumulator
    state ``train_loss_sum`` / ``train_total`` to one value per epoch, as the tracker held
    them in memory. ``console[name]`` holds the same epochs as the console printed them
    (rounded to the printed digits); ``console_lines`` the printed lines. With
    ``train(..., trajectory=True)``, ``trajectories[name][e]`` is ``loss_sum`` after each
    batch of epoch ``e + 1`` (a host sync per batch, so only when asked).
    """

    config: TrainConfig
    device: str
    histories: dict[str, dict] = field(default_factory=dict)
    console: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    console_lines: list[str] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    trajectories: dict[str, list[list[float]]] = field(default_factory=dict)
    out: Path | None = None
    model: nn.Module | None = None


def format_epoch_line(epoch: int, metrics: dict, tracker: str | None = None) -> str:
    """The seed's epoch line; with several trackers the tracker's name follows in brackets."""
    line = f"Epoch {epoch} [Train]: loss={metrics['loss']:.4f}, top1={metrics['top1']:.2f}%, top5={metrics['top5']:.2f}%"
    return f"{line}  [{tracker}]" if tracker else line


def _postfix(metrics: dict) -> dict:
    """The seed's ``pbar.set_postfix`` dict."""
    return {"loss": f"{metrics['loss']:.4f}", "top1": f"{metrics['top1']:.2f}%", "top5": f"{metrics['top5']:.2f}%"}


def history_filename(tracker_name: str) -> str:
    return f"history-{tracker_name.replace(':', '-')}.json"


def _prepare_out(out: Path, overwrite: bool) -> None:
    """Create the run folder; refuse to mix a new run into an existing one unless asked."""
    if out.exists():
        if not out.is_dir():
            raise ValueError(f"out={str(out)!r}: exists and is not a folder")
        if any(out.iterdir()):
            if not overwrite:
                raise ValueError(f"out={str(out)!r}: exists and is not empty; pass --overwrite or choose another folder")
            if not (out / "config.json").exists():
                raise ValueError(f"out={str(out)!r}: not a run folder (no config.json); refusing to overwrite it")
            shutil.rmtree(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise ValueError(f"out={str(out)!r}: cannot write there ({error.strerror})") from None


def _tracker_history(tracker, config: TrainConfig) -> dict:
    return {"tracker": tracker.name, "accumulator": tracker.accumulator, "preset": config.preset}


def _record_epoch(history: dict, tracker, metrics: dict) -> None:
    state = {"loss_sum": float(tracker.loss_sum), "total": int(tracker.total)}
    for key, value in {**metrics, **state}.items():
        history.setdefault(f"train_{key}", []).append(value)


def train(config: TrainConfig, trackers, *, out=None, overwrite: bool = False, trajectory: bool = False) -> TrainResult:
    """Run ``config`` once, feeding every tracker (objects or names for ``make_tracker``)."""
    trackers = [make_tracker(t) if isinstance(t, str) else t for t in trackers]
    names = [t.name for t in trackers]
    if not trackers:
        raise ValueError("trackers=[]: give at least one tracker")
    if len(set(names)) != len(names):
        raise ValueError(f"trackers={names}: each tracker may appear once")
    device = _resolve_device(config.device)
    out = Path(out) if out is not None else None
    created = out is not None and not out.exists()
    if out is not None:
        _prepare_out(out, overwrite)
    try:
        return _run(config, trackers, device, out, trajectory)
    except BaseException:
        if created and out is not None and not any(out.glob("history-*.json")):
            shutil.rmtree(out, ignore_errors=True)  # nothing completed: leave no half-made run folder
        raise


def _run(config: TrainConfig, trackers: list, device: torch.device, out: Path | None, trajectory: bool) -> TrainResult:
    spec = config.data_spec()
    seed_everything(config.seed)
    model = SmallClassifier(spec.pixels, spec.classes, config.hidden).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum)
    criterion = nn.CrossEntropyLoss()
    data = SyntheticImages(spec, seed=config.seed, device=device)
    amp_dtype = None if config.amp == "off" else getattr(torch, config.amp)
    scaler = torch.amp.GradScaler(device.type, enabled=config.amp == "float16")

    result = TrainResult(config=config, device=str(device), model=model, out=out)
    for tracker in trackers:
        result.histories[tracker.name] = _tracker_history(tracker, config)
        result.console[tracker.name] = []
        if trajectory:
            result.trajectories[tracker.name] = []
    if out is not None:
        record = {"config": asdict(config), "data": asdict(spec), "device": str(device),
                  "trackers": [t.name for t in trackers], "torch": torch.__version__,
                  "python": platform.python_version()}
        atomic_write_text(out / "config.json", json.dumps(record, indent=1) + "\n")

    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        for tracker in trackers:
            tracker.reset()
        for sums in result.trajectories.values():
            sums.append([])
        batches = data.batches(epoch - 1)
        bar = tqdm(batches, total=len(batches), desc=f"Epoch {epoch} [Train]", disable=not config.progress,
                   leave=False)
        for batch_idx, (images, labels, _metadata) in enumerate(bar):
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                outputs = model(images)
                loss = criterion(outputs, labels)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            loss, outputs = loss.detach(), outputs.detach()
            for tracker in trackers:
                tracker.update(loss, outputs, labels)
            for tracker in trackers if trajectory else ():
                result.trajectories[tracker.name][-1].append(float(tracker.loss_sum))
            if config.progress and (batch_idx % POSTFIX_EVERY == 0 or batch_idx == len(batches) - 1):
                bar.set_postfix(_postfix(trackers[0].get_metrics()))
        bar.close()
        _finish_epoch(result, trackers, epoch, out)
        result.epoch_seconds.append(time.perf_counter() - started)
    return result


def _finish_epoch(result: TrainResult, trackers: list, epoch: int, out: Path | None) -> None:
    """Record each tracker's epoch, print the console lines, write the run folder's files."""
    several = len(trackers) > 1
    for tracker in trackers:
        metrics = tracker.get_metrics()
        _record_epoch(result.histories[tracker.name], tracker, metrics)
        line = format_epoch_line(epoch, metrics, tracker.name if several else None)
        print(line, flush=True)
        result.console_lines.append(line)
        shown = _postfix(metrics)
        result.console[tracker.name].append({k: float(v.rstrip("%")) for k, v in shown.items()})
    if out is not None:
        for tracker in trackers:
            save_history(out / history_filename(tracker.name), result.histories[tracker.name])
        atomic_write_text(out / "console.log", "\n".join(result.console_lines) + "\n")
