"""The shared trainer: the seed's loop, once, feeding several trackers the same batches.

``train(config, trackers)`` runs forward, ``CrossEntropyLoss``, backward and an optimizer
step per batch, then calls ``update`` on every tracker with that batch's loss, outputs and
labels, exactly as the seed's loop called its one ``metrics.update``. Because all trackers
see the same numbers, any difference between their histories comes from accumulation alone.

The console is the seed's: a tqdm bar per epoch whose postfix shows the first tracker's
running metrics (``progress=True``; ``tqdm.auto`` gives the notebook widget), then one line
per tracker, ``Epoch 1 [Train]: loss=9.1621, top1=0.00%, top5=0.20%``. With ``out=`` the run
folder gets ``config.json`` at the start and, after every epoch, ``console.log``, one strict
history file per tracker (``history.py``) and ``checkpoint.pt``, committed together
(``rundir.py``). ``resume=True`` continues such a folder from its last completed epoch and,
on a CPU, writes the same bytes an uninterrupted run would have.

Non-finite batch losses are counted per epoch (``train_nonfinite_batches`` in every
history); ``stop_on_nonfinite`` stops at the first one, before its optimizer step.
``eval_only`` runs the same loop without gradients or optimizer steps (the histories' keys
then start with ``eval_``): every epoch measures the same seeded model.

Under ``torchrun`` (``ranks=`` from ``distributed.join``) the model is wrapped in
``DistributedDataParallel``, each rank walks its ``DistributedSampler`` shard, the exact
trackers get per-sample losses with the padding rows marked, and every tracker with a
``sync`` sums its states over the ranks at the end of the epoch; rank 0 alone prints and
writes the run folder (``05_distributed.ipynb``).
"""

from __future__ import annotations

import io
import json
import math
import platform
import random
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from .data import DataSpec, EpochBatches, SyntheticImages, preset
from .distributed import Ranks, rank_shard
from .history import HistoryFileError, dumps_history, load_history
from .model import SmallClassifier
from .rundir import RunFolderError, commit_files, create_run_folder, remove_stale_staging
from .seeding import seed_everything
from .trackers import TOPK, ExactTracker, make_tracker

__all__ = ["AMP_MODES", "CHECKPOINT", "NonFiniteLossError", "TrainConfig", "TrainResult", "format_epoch_line",
           "history_filename", "read_run_config", "train"]

AMP_MODES = ("off", "float16", "bfloat16")
POSTFIX_EVERY = 25  # batches between postfix updates: get_metrics may sync the device
PROGRESS_SECONDS = 1.0  # at most one bar redraw a second: a notebook gets a few hundred messages, not thousands
CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = "accumbug-checkpoint/1"
RESUMABLE_CHANGES = ("epochs", "progress", "device")  # settings a resumed run may change


class NonFiniteLossError(RuntimeError):
    """A batch loss was NaN or infinite and the run was asked to stop on the first one."""


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
    stop_on_nonfinite: bool = False
    eval_only: bool = False  # no gradients, no optimizer steps: each epoch measures the seeded model
    nan_batch: int | None = None  # 1-based batch of the run whose loss is made NaN (demos, fault tests)

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
        if self.nan_batch is not None and (isinstance(self.nan_batch, bool) or not isinstance(self.nan_batch, int)
                                           or self.nan_batch < 1):
            raise ValueError(f"nan_batch={self.nan_batch!r}: must be a whole number >= 1 (or None)")
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
    batch of epoch ``e + 1`` (a host sync per batch, so only when asked). With
    ``train(..., records=True)``, ``records[e]`` holds this process's samples of epoch
    ``e + 1`` in the order seen: ``sample_id``, per-sample ``loss``, ``counted``, ``outputs``
    and ``labels`` (for checks computed without the trackers; small runs only).
    """

    config: TrainConfig
    device: str
    histories: dict[str, dict] = field(default_factory=dict)
    console: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    console_lines: list[str] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    trajectories: dict[str, list[list[float]]] = field(default_factory=dict)
    records: list[dict[str, torch.Tensor]] = field(default_factory=list)
    out: Path | None = None
    model: nn.Module | None = None

    @property
    def phase(self) -> str:
        """``train`` or ``eval``: the prefix of the history keys."""
        return "eval" if self.config.eval_only else "train"


def format_epoch_line(epoch: int, metrics: dict, tracker: str | None = None, phase: str = "train") -> str:
    """The seed's epoch line; with several trackers the tracker's name follows in brackets."""
    line = f"Epoch {epoch} [{phase.title()}]: loss={metrics['loss']:.4f}, top1={metrics['top1']:.2f}%, top5={metrics['top5']:.2f}%"
    return f"{line}  [{tracker}]" if tracker else line


def _postfix(metrics: dict) -> dict:
    """The seed's ``pbar.set_postfix`` dict."""
    return {"loss": f"{metrics['loss']:.4f}", "top1": f"{metrics['top1']:.2f}%", "top5": f"{metrics['top5']:.2f}%"}


def history_filename(tracker_name: str) -> str:
    return f"history-{tracker_name.replace(':', '-')}.json"


def _tracker_history(tracker, config: TrainConfig) -> dict:
    return {"tracker": tracker.name, "accumulator": tracker.accumulator, "preset": config.preset}


def _record_epoch(history: dict, tracker, metrics: dict, nonfinite_batches: int, phase: str) -> None:
    state = {"loss_sum": float(tracker.loss_sum), "total": int(tracker.total), "nonfinite_batches": nonfinite_batches}
    for key, value in {**metrics, **state}.items():
        history.setdefault(f"{phase}_{key}", []).append(value)


def read_run_config(out) -> tuple[TrainConfig, list[str]]:
    """The config and tracker names a run folder was made with (for ``--resume``)."""
    path = Path(out) / "config.json"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        return TrainConfig.from_dict(record["config"]), list(record["trackers"])
    except FileNotFoundError:
        raise RunFolderError(f"resume={str(out)!r}: no config.json there; not a run folder") from None
    except (ValueError, KeyError, TypeError) as error:
        raise RunFolderError(f"resume={str(out)!r}: config.json is corrupt ({error})") from None


def train(config: TrainConfig, trackers, *, out=None, overwrite: bool = False, trajectory: bool = False,
          resume: bool = False, records: bool = False, ranks: Ranks | None = None) -> TrainResult:
    """Run ``config`` once, feeding every tracker (objects or names for ``make_tracker``).

    ``resume=True`` continues the run folder ``out`` from its checkpoint; ``config`` may differ
    from the folder's only in ``epochs``, ``progress`` and ``device``. ``ranks`` (from
    ``distributed.join``) makes this process one rank of a ``torchrun`` run; only rank 0
    uses ``out``.
    """
    trackers = [make_tracker(t) if isinstance(t, str) else t for t in trackers]
    names = [t.name for t in trackers]
    if not trackers:
        raise ValueError("trackers=[]: give at least one tracker")
    if len(set(names)) != len(names):
        raise ValueError(f"trackers={names}: each tracker may appear once")
    device = _resolve_device(config.device)
    out = Path(out) if out is not None else None
    if ranks is not None:
        if resume:
            raise ValueError("resume=True: a run under torchrun cannot be resumed; start it again")
        if not ranks.writes_files:
            out = None
    if resume:
        if out is None:
            raise ValueError("resume=True needs out=, the run folder to continue")
        state = _load_checkpoint(out, config, names)
        return _run(config, trackers, device, out, trajectory, state, records, None)
    if out is not None:
        record = {"config": asdict(config), "data": asdict(config.data_spec()), "device": str(device), "trackers": names,
                  "torch": torch.__version__, "python": platform.python_version(),
                  "ranks": {"world": ranks.world, "backend": ranks.backend} if ranks else None}
        create_run_folder(out, overwrite, {"config.json": (json.dumps(record, indent=1) + "\n").encode()})
    try:
        return _run(config, trackers, device, out, trajectory, None, records, ranks)
    except BaseException:
        if out is not None and not (out / CHECKPOINT).exists():
            shutil.rmtree(out, ignore_errors=True)  # nothing completed: leave no half-made run folder
        raise


def _load_checkpoint(out: Path, config: TrainConfig, names: list[str]) -> dict:
    """The checkpoint of ``out``, checked against the config, the trackers and the history files."""
    saved_config, saved_names = read_run_config(out)
    for name in (f.name for f in fields(TrainConfig) if f.name not in RESUMABLE_CHANGES):
        if getattr(config, name) != getattr(saved_config, name):
            raise RunFolderError(f"{name}={getattr(config, name)!r}: the run in {str(out)!r} was made with "
                                 f"{name}={getattr(saved_config, name)!r}; a resumed run keeps its settings")
    if names != saved_names:
        raise RunFolderError(f"trackers={names}: the run in {str(out)!r} was made with trackers={saved_names}")
    path = out / CHECKPOINT
    if not path.exists():
        raise RunFolderError(f"resume={str(out)!r}: no {CHECKPOINT}; no epoch of this run was completed")
    try:
        state = torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=True)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"format {state.get('format')!r}")
    except Exception as error:  # torch raises several types for a damaged file
        raise RunFolderError(f"{str(path)!r}: corrupt or truncated checkpoint ({type(error).__name__})") from None
    if config.epochs < state["epoch"]:
        raise RunFolderError(f"epochs={config.epochs}: the run in {str(out)!r} has already completed "
                             f"{state['epoch']} epochs")
    for name in names:
        file = out / history_filename(name)
        try:
            on_disk = load_history(file)
        except (OSError, HistoryFileError) as error:
            raise RunFolderError(f"{str(file)!r}: unreadable history ({error})") from None
        if dumps_history(on_disk) != dumps_history(state["histories"][name]):
            raise RunFolderError(f"{str(file)!r}: does not match {CHECKPOINT}; the folder was changed by hand")
    remove_stale_staging(out)
    return state


def _checkpoint_bytes(epoch: int, config: TrainConfig, names: list[str], model, optimizer, scaler,
                      result: TrainResult) -> bytes:
    state = {
        "format": CHECKPOINT_FORMAT, "epoch": epoch, "config": asdict(config), "trackers": names,
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "python": list(random.getstate()),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
        "histories": result.histories, "console": result.console, "console_lines": result.console_lines,
        "epoch_seconds": result.epoch_seconds,
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _restore(state: dict, model, optimizer, scaler, result: TrainResult) -> int:
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng"]["torch"])
    version, internal, gauss = state["rng"]["python"]
    random.setstate((version, tuple(internal), gauss))
    if state["rng"]["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    result.histories.update(state["histories"])
    result.console.update(state["console"])
    result.console_lines.extend(state["console_lines"])
    result.epoch_seconds.extend(state["epoch_seconds"])
    return state["epoch"]


def _run(config: TrainConfig, trackers: list, device: torch.device, out: Path | None, trajectory: bool,
         state: dict | None, records: bool, ranks: Ranks | None) -> TrainResult:
    spec = config.data_spec()
    seed_everything(config.seed)
    net = SmallClassifier(spec.pixels, spec.classes, config.hidden).to(device)
    model = net if ranks is None else DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = torch.optim.SGD(net.parameters(), lr=config.lr, momentum=config.momentum)
    criterion = nn.CrossEntropyLoss()
    data = SyntheticImages(spec, seed=config.seed, device=device)
    amp_dtype = None if config.amp == "off" else getattr(torch, config.amp)
    scaler = torch.amp.GradScaler(device.type, enabled=config.amp == "float16")
    names = [t.name for t in trackers]
    talks = ranks is None or ranks.writes_files  # prints the console and shows the bar
    model.train(not config.eval_only)

    result = TrainResult(config=config, device=str(device), model=net, out=out)
    for tracker in trackers:
        result.histories[tracker.name] = _tracker_history(tracker, config)
        result.console[tracker.name] = []
        if trajectory:
            result.trajectories[tracker.name] = []
    done = _restore(state, net, optimizer, scaler, result) if state is not None else 0

    step = done * spec.batches_per_epoch
    for epoch in range(done + 1, config.epochs + 1):
        started = time.perf_counter()
        for tracker in trackers:
            tracker.reset()
        for sums in result.trajectories.values():
            sums.append([])
        seen = {key: [] for key in ("sample_id", "loss", "counted", "outputs", "labels")} if records else None
        nonfinite = torch.zeros((), dtype=torch.int64, device=device)
        batches = _epoch_batches(data, epoch, ranks)
        bar = tqdm(batches, total=len(batches), desc=f"Epoch {epoch} [{result.phase.title()}]",
                   disable=not (config.progress and talks), leave=False, mininterval=PROGRESS_SECONDS)
        for batch_idx, (images, labels, metadata) in enumerate(bar):
            step += 1
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None), \
                    torch.set_grad_enabled(not config.eval_only):
                outputs = model(images)
                per_sample = F.cross_entropy(outputs, labels, reduction="none") if ranks or records else None
                loss = criterion(outputs, labels) if ranks is None else per_sample.mean()
            if step == config.nan_batch:
                loss = loss * math.nan
                per_sample = per_sample * math.nan if per_sample is not None else None
            nonfinite += ~torch.isfinite(loss.detach())
            if config.stop_on_nonfinite and not torch.isfinite(loss):
                bar.close()
                raise NonFiniteLossError(
                    f"epoch {epoch}, batch {batch_idx + 1}: loss is {loss.item()}; stopped before its optimizer step "
                    f"(stop_on_nonfinite); the run folder holds the {epoch - 1} completed epoch(s)")
            if not config.eval_only:
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            loss, outputs = loss.detach(), outputs.detach()
            counted = metadata.get("counted")
            for tracker in trackers:
                if ranks is not None and isinstance(tracker, ExactTracker):
                    tracker.update(per_sample.detach(), outputs, labels, counted=counted)
                else:
                    tracker.update(loss, outputs, labels)
            for tracker in trackers if trajectory else ():
                result.trajectories[tracker.name][-1].append(float(tracker.loss_sum))
            if seen is not None:
                everyone = torch.ones_like(labels, dtype=torch.bool)
                for key, value in (("sample_id", metadata["sample_id"]), ("loss", per_sample.detach()),
                                   ("counted", everyone if counted is None else counted), ("outputs", outputs),
                                   ("labels", labels)):
                    seen[key].append(value.cpu())
            if config.progress and talks and (batch_idx % POSTFIX_EVERY == 0 or batch_idx == len(batches) - 1):
                bar.set_postfix(_postfix(trackers[0].get_metrics()), refresh=False)
        bar.close()
        if ranks is not None:
            ranks.sum_(nonfinite)
            for tracker in trackers:
                if hasattr(tracker, "sync"):
                    tracker.sync(ranks)
        if seen is not None:
            result.records.append({key: torch.cat(values) for key, values in seen.items()})
        _finish_epoch(result, trackers, epoch, int(nonfinite), talks)
        result.epoch_seconds.append(time.perf_counter() - started)
        if out is not None:
            files = {history_filename(name): dumps_history(result.histories[name]).encode() for name in names}
            files["console.log"] = ("\n".join(result.console_lines) + "\n").encode()
            files[CHECKPOINT] = _checkpoint_bytes(epoch, config, names, net, optimizer, scaler, result)
            commit_files(out, files)
    return result


def _epoch_batches(data: SyntheticImages, epoch: int, ranks: Ranks | None) -> EpochBatches:
    """The whole epoch in one process; this rank's ``DistributedSampler`` shard under torchrun."""
    if ranks is None:
        return data.batches(epoch - 1)
    order, counted = rank_shard(len(data), ranks.world, ranks.rank, data.seed, epoch - 1)
    return EpochBatches(data, order, counted)


def _finish_epoch(result: TrainResult, trackers: list, epoch: int, nonfinite_batches: int, talks: bool) -> None:
    """Record each tracker's epoch and print the console lines (``talks``: this process prints)."""
    several = len(trackers) > 1
    for tracker in trackers:
        metrics = tracker.get_metrics()
        _record_epoch(result.histories[tracker.name], tracker, metrics, nonfinite_batches, result.phase)
        line = format_epoch_line(epoch, metrics, tracker.name if several else None, result.phase)
        if talks:
            print(line, flush=True)
        result.console_lines.append(line)
        shown = _postfix(metrics)
        result.console[tracker.name].append({k: float(v.rstrip("%")) for k, v in shown.items()})
