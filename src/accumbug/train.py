"""The shared trainer: the incident's loop, once, feeding several trackers the same batches.

``train(config, trackers)`` runs forward, ``CrossEntropyLoss``, backward and an optimizer
step per batch, then calls ``update(loss, outputs, labels)`` on every tracker, exactly as
the incident's loop called its one ``metrics.update``. Because all trackers see the same
numbers, any difference between their histories comes from accumulation alone. A tracker
is anything that speaks the protocol of ``trackers.Tracker``.

The console is the incident's: a tqdm bar per epoch whose postfix shows the first tracker's
running metrics (``progress=True``; ``tqdm.auto`` gives the notebook widget), then one line
per tracker, ``Epoch 1 [Train]: loss=9.1621, top1=0.00%, top5=0.20%``. With ``out=`` every
epoch is committed to a run folder (``runfolder.py``); ``resume=True`` continues one from
its last committed epoch and, on a CPU, writes the same bytes an uninterrupted run would.

Non-finite batch losses are counted per epoch (``train_nonfinite_batches`` in every
history); ``stop_on_nonfinite`` stops at the first one, before its optimizer step.
``eval_only`` runs the same loop without gradients or optimizer steps (history keys then
start with ``eval_``). ``loss_hook`` lets a test or a demo change a batch's loss (a NaN at
batch 70, say) without a setting in the config. ``epoch_hook(epoch, tracker, metrics)`` is
called for each tracker once its epoch is recorded: another loop's end of epoch, such as
the incident's own history and save (``specimens/incident_log.py``). The trainer's history
takes each metric as a Python number when it is appended (``float()`` of a 0-dim tensor), so
a tracker that hands out its own buffer cannot change what was recorded.

Under ``torchrun`` (``ranks=`` from ``distributed.join``) the model is wrapped in
``DistributedDataParallel``, each rank walks its ``DistributedSampler`` shard, trackers that
declare ``per_sample_loss`` get per-sample losses with the padding rows marked, and every
tracker's declared states are combined at the end of the epoch (``distributed.sync_states``);
rank 0 alone prints and writes the run folder (``05_distributed.ipynb``).

Ctrl-C and SIGTERM stop the run at the next batch boundary with ``RunStopped`` (under
torchrun, at a boundary all ranks agree on); nothing partial is committed
(``docs/reliability.md``, section 6).
"""

from __future__ import annotations

import io
import math
import platform
import random
import shutil
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from .data import DataSpec, EpochBatches, SyntheticImages, preset
from .distributed import Ranks, rank_shard, sync_states
from .history import dumps_history
from .model import SmallClassifier
from .runfolder import (
    CHECKPOINT,
    COMMIT,
    CONSOLE,
    RECORDED_STATES,
    RunFolder,
    RunFolderError,
    committed_epochs,
    history_filename,
    history_key,
)
from .seeding import seed_everything
from .trackers import TOPK, Tracker

__all__ = ["AMP_MODES", "SCHEDULES", "EpochHook", "LossHook", "NonFiniteLossError", "RunStopped", "Schedule", "TrainConfig", "TrainResult", "format_epoch_line",
           "run_config", "train"]

AMP_MODES = ("off", "float16", "bfloat16")
POSTFIX_EVERY = 25  # batches between postfix updates: get_metrics may sync the device
STOP_CHECK_EVERY = 25  # under torchrun, batches between the ranks' agreement on a stop request (one all_reduce)
PROGRESS_SECONDS = 1.0  # at most one bar redraw a second: a notebook gets a few hundred messages, not thousands
CHECKPOINT_FORMAT = "accumbug-checkpoint/2"
RESUMABLE_CHANGES = ("epochs", "progress", "device")  # settings a resumed run may change
LossHook = Callable[[int, torch.Tensor], torch.Tensor]  # (1-based step of the run, loss) -> the loss to use
EpochHook = Callable[[int, Tracker, dict], None]  # (1-based epoch, tracker, its get_metrics()) after recording


class NonFiniteLossError(RuntimeError):
    """A batch loss was NaN or infinite and the run was asked to stop on the first one."""


class RunStopped(Exception):
    """Ctrl-C or SIGTERM stopped the run at a batch boundary; nothing partial was committed.

    ``signal_name`` is ``SIGINT`` or ``SIGTERM``; ``result`` holds the completed epochs (their
    histories, console lines and timings), so an interrupted notebook cell keeps them.
    """

    def __init__(self, message: str, signal_name: str, result: "TrainResult"):
        super().__init__(message)
        self.signal_name, self.result = signal_name, result


class _StopRequest:
    """A signal handler: the first SIGINT or SIGTERM asks the run to stop at the next batch boundary.

    A second signal stops at once in one process. Under torchrun it is ignored
    (``repeat_at_once=False``): a terminal's Ctrl-C reaches every rank and the launcher, which
    forwards it, so a rank sees it twice; the launcher's own timeout is the hard stop there.
    """

    def __init__(self, repeat_at_once: bool = True):
        self.number, self.repeat_at_once = 0, repeat_at_once

    def __call__(self, number, frame) -> None:
        if self.number and self.repeat_at_once:
            raise KeyboardInterrupt  # a second signal: at once (commits are atomic, so nothing is corrupted)
        self.number = self.number or int(number)


@contextmanager
def _stop_on_signals(repeat_at_once: bool):
    """While training, SIGINT and SIGTERM go to a ``_StopRequest`` (main thread only), then the old handlers return."""
    request = _StopRequest(repeat_at_once)
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    names = [name for name in ("SIGINT", "SIGTERM") if hasattr(signal, name)]
    previous = {name: signal.signal(getattr(signal, name), request) for name in names}
    try:
        yield request
    finally:
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler)


def _whole(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}={value!r}: must be a whole number >= {minimum}")


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
        _whole("epochs", self.epochs, 1)
        _whole("seed", self.seed, 0)
        if self.preset not in SCHEDULES:
            raise ValueError(f"preset={self.preset!r}: unknown; allowed: {', '.join(SCHEDULES)}")
        for name, value in asdict(SCHEDULES[self.preset]).items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        for name in ("lr", "warmup_from"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name}={value!r}: must be a finite number > 0")
        if not (isinstance(self.warmup_epochs, (int, float)) and 0 <= self.warmup_epochs < math.inf):
            raise ValueError(f"warmup_epochs={self.warmup_epochs!r}: must be a finite number >= 0")
        if not (isinstance(self.momentum, (int, float)) and 0 <= self.momentum < 1):
            raise ValueError(f"momentum={self.momentum!r}: must be in [0, 1)")
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp={self.amp!r}: unknown; allowed: {', '.join(AMP_MODES)}")
        spec = self.data_spec()  # raises on a bad preset, size or batch size
        if spec.classes < TOPK:
            raise ValueError(f"classes={spec.classes}: top-{TOPK} accuracy needs at least {TOPK} classes")
        _resolve_device(self.device)

    def data_spec(self) -> DataSpec:
        changes = {f: getattr(self, f) for f in ("samples", "classes", "batch_size") if getattr(self, f) is not None}
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
    def from_dict(cls, values: dict) -> "TrainConfig":
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
    them in memory (keys from ``runfolder.history_key``). ``console[name]`` holds the same
    epochs as the console printed them (rounded to the printed digits); ``console_lines``
    the printed lines. With ``train(..., trajectory=True)``, ``trajectories[name][e]`` is
    ``loss_sum`` after each batch of epoch ``e + 1`` (a host sync per batch, so only when
    asked). With ``train(..., records=True)``, ``records[e]`` holds this process's samples of
    epoch ``e + 1`` in the order seen: ``sample_id``, per-sample ``loss``, ``counted``,
    ``outputs`` and ``labels`` (for checks computed without the trackers; small runs only).
    ``folder`` is the run folder, when there is one.
    """

    config: TrainConfig
    device: str
    histories: dict[str, dict] = field(default_factory=dict)
    console: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    console_lines: list[str] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    trajectories: dict[str, list[list[float]]] = field(default_factory=dict)
    records: list[dict[str, torch.Tensor]] = field(default_factory=list)
    folder: RunFolder | None = None
    model: nn.Module | None = None

    @property
    def out(self) -> Path | None:
        """The run folder's path, when there is one."""
        return None if self.folder is None else self.folder.path

    @property
    def phase(self) -> str:
        return self.config.phase


def _postfix(metrics: dict) -> dict:
    """The incident's ``pbar.set_postfix`` dict: the loss, and top-1 and top-5 where the tracker counts them."""
    shown = {"loss": f"{metrics['loss']:.4f}"}
    shown.update({key: f"{metrics[key]:.2f}%" for key in ("top1", "top5") if key in metrics})
    return shown


def format_epoch_line(epoch: int, metrics: dict, tracker: str | None = None, phase: str = "train") -> str:
    """The incident's epoch line; with several trackers the tracker's name follows in brackets."""
    shown = ", ".join(f"{key}={value}" for key, value in _postfix(metrics).items())
    line = f"Epoch {epoch} [{phase.title()}]: {shown}"
    return f"{line}  [{tracker}]" if tracker else line


def _check_trackers(trackers, trajectory: bool) -> list:
    trackers = list(trackers)
    if not trackers:
        raise ValueError("trackers=[]: give at least one tracker")
    for index, tracker in enumerate(trackers):
        if not isinstance(tracker, Tracker):
            raise ValueError(f"trackers[{index}]={tracker!r}: not a tracker (update, get_metrics, reset, "
                             "state_reductions, name, accumulator, per_sample_loss; see accumbug.trackers); "
                             "accumbug.lab.make_tracker makes one from a name such as 'exact'")
        if trajectory and "loss_sum" not in tracker.state_reductions():
            raise ValueError(f"trajectory=True: tracker {tracker.name!r} declares no loss_sum state to follow")
    names = [t.name for t in trackers]
    if len(set(names)) != len(names):
        raise ValueError(f"trackers={names}: each tracker may appear once")
    return trackers


def train(config: TrainConfig, trackers, *, out=None, overwrite: bool = False, trajectory: bool = False,
          resume: bool = False, records: bool = False, ranks: Ranks | None = None,
          loss_hook: LossHook | None = None, epoch_hook: EpochHook | None = None) -> TrainResult:
    """Run ``config`` once, feeding every tracker (objects that speak ``trackers.Tracker``).

    ``resume=True`` continues the run folder ``out`` from its last committed epoch; ``config``
    may differ from the folder's only in ``epochs``, ``progress`` and ``device``. ``ranks``
    (from ``distributed.join``) makes this process one rank of a ``torchrun`` run; only rank 0
    uses ``out``. ``loss_hook(step, loss)`` may replace each batch's loss (fault tests, demos);
    ``epoch_hook(epoch, tracker, metrics)`` sees each tracker's epoch after the trainer recorded it.
    """
    trackers = _check_trackers(trackers, trajectory)
    device = _resolve_device(config.device)
    if resume and out is None:
        raise ValueError("resume=True needs out=, the run folder to continue")
    previous = RunFolder(out) if resume else None  # every rank reads it: it must be visible to all
    if out is not None and (ranks is None or ranks.writes_files):
        folder = previous or _new_folder(out, overwrite, config, device, trackers, ranks)
    else:
        folder = None
    run = _Run(config, trackers, device, folder, ranks, trajectory, records, (loss_hook, epoch_hook))
    if resume:
        run.restore(previous)
    try:
        with _stop_on_signals(repeat_at_once=ranks is None) as run.stop:
            return run.epochs()
    except BaseException:
        if folder is not None and not resume and folder.epochs == 0:
            shutil.rmtree(folder.path, ignore_errors=True)  # nothing completed: leave no half-made run folder
        raise


def _new_folder(out, overwrite: bool, config: TrainConfig, device, trackers, ranks: Ranks | None) -> RunFolder:
    record = {"config": asdict(config), "data": asdict(config.data_spec()), "device": str(device),
              "trackers": [t.name for t in trackers], "torch": torch.__version__,
              "python": platform.python_version(),
              "ranks": {"world": ranks.world, "backend": ranks.backend} if ranks else None}
    return RunFolder.create(out, record, overwrite)


def _check_resumable(folder: RunFolder, config: TrainConfig, names: list[str], ranks: Ranks | None) -> None:
    """Refuse to resume ``folder`` with other settings, trackers or ranks, or with fewer epochs than it has."""
    saved = run_config(folder)
    made = (folder.record.get("ranks") or {}).get("world", 1)
    if made != (1 if ranks is None else ranks.world):
        how = "in one process, without torchrun" if made == 1 else f"under torchrun --nproc-per-node {made}"
        raise RunFolderError(f"ranks={1 if ranks is None else ranks.world}: the run in {str(folder.path)!r} was made "
                             f"with {made}; resume it {how} (the shards decide the numbers)")
    for name in (f.name for f in fields(TrainConfig) if f.name not in RESUMABLE_CHANGES):
        if getattr(config, name) != getattr(saved, name):
            raise RunFolderError(f"{name}={getattr(config, name)!r}: the run in {str(folder.path)!r} was made with "
                                 f"{name}={getattr(saved, name)!r}; a resumed run keeps its settings")
    if names != folder.trackers:
        raise RunFolderError(f"trackers={names}: the run in {str(folder.path)!r} was made with "
                             f"trackers={folder.trackers}")
    if config.epochs < folder.epochs:
        raise RunFolderError(f"epochs={config.epochs}: the run in {str(folder.path)!r} has already completed "
                             f"{folder.epochs} epochs")


def _epoch_batches(data: SyntheticImages, epoch: int, ranks: Ranks | None) -> EpochBatches:
    """The whole epoch in one process; this rank's ``DistributedSampler`` shard under torchrun."""
    if ranks is None:
        return data.batches(epoch - 1)
    order, counted = rank_shard(len(data), ranks.world, ranks.rank, data.seed, epoch - 1)
    return EpochBatches(data, order, counted)


class _Run:
    """One training run's moving parts: model, optimizer, scaler, data, the result being filled."""

    def __init__(self, config: TrainConfig, trackers: list, device: torch.device, folder: RunFolder | None,
                 ranks: Ranks | None, trajectory: bool, records: bool, hooks: tuple):
        self.config, self.trackers, self.device, self.folder, self.ranks = config, trackers, device, folder, ranks
        self.records, (self.loss_hook, self.epoch_hook) = records, hooks
        spec = config.data_spec()
        seed_everything(config.seed)
        self.net = SmallClassifier(spec.pixels, spec.classes, config.hidden).to(device)
        self.model = self.net if ranks is None else DistributedDataParallel(
            self.net, device_ids=[device.index] if device.type == "cuda" else None)
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=config.lr, momentum=config.momentum)
        self.criterion = nn.CrossEntropyLoss()
        self.data = SyntheticImages(spec, seed=config.seed, device=device)
        self.amp_dtype = None if config.amp == "off" else getattr(torch, config.amp)
        self.scaler = torch.amp.GradScaler(device.type, enabled=config.amp == "float16")
        self.talks = ranks is None or ranks.writes_files  # prints the console and shows the bar
        self.result = TrainResult(config=config, device=str(device), model=self.net, folder=folder)
        for tracker in trackers:
            self.result.histories[tracker.name] = {"tracker": tracker.name, "accumulator": tracker.accumulator,
                                                   "preset": config.preset}
            self.result.console[tracker.name] = []
            if trajectory:
                self.result.trajectories[tracker.name] = []
        self.done = 0
        self.stop = _StopRequest()  # replaced by train() with the one its signal handlers feed
        self.model.train(not config.eval_only)

    def restore(self, folder: RunFolder) -> None:
        """Continue ``folder`` from its last committed epoch: states, histories, console (every rank reads it)."""
        names = [t.name for t in self.trackers]
        _check_resumable(folder, self.config, names, self.ranks)
        if folder.commit() is None:
            raise RunFolderError(f"resume={str(folder.path)!r}: no epoch of this run was completed (no {COMMIT}); "
                                 "nothing to resume")
        histories, state = folder.histories(), folder.checkpoint()
        folder.verify()
        if state.get("format") != CHECKPOINT_FORMAT or state.get("epoch") != folder.epochs:
            raise RunFolderError(f"{str(folder.file_path(CHECKPOINT))!r}: not the checkpoint of this commit")
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"])
        self.result.histories.update(histories)
        self.result.console_lines.extend(folder.console_lines())
        self.result.epoch_seconds.extend(folder.commit()["epoch_seconds"])
        for name, history in histories.items():
            self.result.console[name] = [_printed(history, self.config.phase, epoch) for epoch in range(folder.epochs)]
        self.done = folder.epochs
        if self.folder is not None:
            self.folder.remove_uncommitted()

    def epochs(self) -> TrainResult:
        for epoch in range(self.done + 1, self.config.epochs + 1):
            started = time.perf_counter()
            nonfinite = self.epoch(epoch)
            self.finish_epoch(epoch, nonfinite)
            self.result.epoch_seconds.append(time.perf_counter() - started)
            if self.folder is not None:
                self.folder.commit_epoch(epoch, self.epoch_files(epoch), self.result.epoch_seconds)
            stop = self.stop_signal(at_epoch_end=epoch < self.config.epochs)
            if stop is not None:
                raise self.stopped(stop, f"at the end of epoch {epoch}")
        return self.result

    def epoch(self, epoch: int) -> torch.Tensor:
        """One pass over the epoch's batches; returns the count of non-finite batch losses."""
        for tracker in self.trackers:
            tracker.reset()
        for sums in self.result.trajectories.values():
            sums.append([])
        seen = {key: [] for key in ("sample_id", "loss", "counted", "outputs", "labels")} if self.records else None
        nonfinite = torch.zeros((), dtype=torch.int64, device=self.device)
        batches = _epoch_batches(self.data, epoch, self.ranks)
        bar = tqdm(batches, total=len(batches), desc=f"Epoch {epoch} [{self.config.phase.title()}]",
                   disable=not (self.config.progress and self.talks), leave=False, mininterval=PROGRESS_SECONDS)
        step = (epoch - 1) * len(batches)
        for index, (images, labels, metadata) in enumerate(bar):
            loss, per_sample, outputs = self.step(step + index + 1, images, labels)
            nonfinite += ~torch.isfinite(loss)
            if self.config.stop_on_nonfinite and not torch.isfinite(loss):
                bar.close()
                raise NonFiniteLossError(
                    f"epoch {epoch}, batch {index + 1}: loss is {loss.item()}; stopped before its optimizer step "
                    f"(stop_on_nonfinite); the run folder holds the {epoch - 1} completed epoch(s)")
            self.optimize(loss, self.config.learning_rate(step + index, len(batches)))
            self.feed(loss.detach(), per_sample, outputs.detach(), labels, metadata, seen)
            stop = None if index + 1 == len(batches) else self.stop_signal(batch=index + 1)
            if stop is not None:
                bar.close()
                raise self.stopped(stop, f"during epoch {epoch} (batch {index + 1} of {len(batches)})")
            if self.config.progress and self.talks and (index % POSTFIX_EVERY == 0 or index == len(batches) - 1):
                bar.set_postfix(_postfix(self.trackers[0].get_metrics()), refresh=False)
        bar.close()
        if seen is not None:
            self.result.records.append({key: torch.cat(values) for key, values in seen.items()})
        return nonfinite

    def stop_signal(self, batch: int = 0, at_epoch_end: bool = False) -> str | None:
        """The signal that stops the run after ``batch`` (1-based) or its epoch; under torchrun, one all ranks agree on.

        A signal during an epoch's last batch lets that epoch be committed: the run stops at the
        epoch's end (``at_epoch_end``; not after the last epoch, when the run is done anyway).
        Ranks receive a signal at different moments, so each would stop at its own batch and
        the others would wait in their next collective. Every ``STOP_CHECK_EVERY`` batches and
        at an epoch's end the ranks take the largest signal number any of them received (one
        ``all_reduce``), and all stop at the same place.
        """
        if not (batch or at_epoch_end):
            return None
        number = self.stop.number
        if self.ranks is not None:
            if batch % STOP_CHECK_EVERY:
                return None
            agreed = torch.tensor(number, dtype=torch.int64, device=self.device)
            self.ranks.max_(agreed)
            number = int(agreed)
        return signal.Signals(number).name if number else None

    def stopped(self, name: str, when: str) -> RunStopped:
        """The ``RunStopped`` for signal ``name`` (received ``when``): what was kept, and how to go on."""
        kept = 0 if self.folder is None else self.folder.epochs
        launcher = "" if self.ranks is None else f" under torchrun --nproc-per-node {self.ranks.world}"
        if self.ranks is not None and not self.ranks.writes_files:
            where = "rank 0 keeps the run folder"
        elif self.folder is None:
            where = f"{len(self.result.epoch_seconds)} completed epoch(s) are in this exception's result"
        elif kept:
            where = (f"the run folder {str(self.folder.path)!r} keeps {committed_epochs(kept)}; continue with "
                     f"--resume {self.folder.path}{launcher}")
        else:
            where = "no epoch was completed, so no run folder is left; start the run again"
        return RunStopped(f"{name} {when}; nothing partial was saved; {where}", name, self.result)

    def step(self, step: int, images, labels):
        """Forward and loss of one batch: the batch-mean loss, per-sample losses where needed, outputs."""
        per_sample_needed = self.ranks is not None or self.records
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None), \
                torch.set_grad_enabled(not self.config.eval_only):
            outputs = self.model(images)
            per_sample = F.cross_entropy(outputs, labels, reduction="none") if per_sample_needed else None
            loss = self.criterion(outputs, labels) if self.ranks is None else per_sample.mean()
        if self.loss_hook is not None:
            loss = self.loss_hook(step, loss)
            per_sample = None if per_sample is None else self.loss_hook(step, per_sample)
        return loss, per_sample, outputs

    def optimize(self, loss: torch.Tensor, lr: float) -> None:
        if not self.config.eval_only:
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()

    def feed(self, loss, per_sample, outputs, labels, metadata: dict, seen) -> None:
        """Every tracker's ``update`` with this batch; the trajectory and the records, when asked."""
        counted = metadata.get("counted")
        for tracker in self.trackers:
            if self.ranks is not None and tracker.per_sample_loss:
                tracker.update(per_sample.detach(), outputs, labels, counted=counted)
            else:
                tracker.update(loss, outputs, labels)
        for tracker in self.trackers if self.result.trajectories else ():
            self.result.trajectories[tracker.name][-1].append(float(tracker.loss_sum))
        if seen is not None:
            everyone = torch.ones_like(labels, dtype=torch.bool)
            for key, value in (("sample_id", metadata["sample_id"]), ("loss", per_sample.detach()),
                               ("counted", everyone if counted is None else counted), ("outputs", outputs),
                               ("labels", labels)):
                seen[key].append(value.cpu())

    def finish_epoch(self, epoch: int, nonfinite: torch.Tensor) -> None:
        """Sync across ranks, record each tracker's epoch and print the console lines."""
        if self.ranks is not None:
            self.ranks.sum_(nonfinite)
            for tracker in self.trackers:
                sync_states(tracker, self.ranks, self.device)
        several, phase = len(self.trackers) > 1, self.config.phase
        for tracker in self.trackers:
            metrics = tracker.get_metrics()
            _add_epoch(self.result.histories[tracker.name], tracker, metrics, int(nonfinite), phase)
            line = format_epoch_line(epoch, metrics, tracker.name if several else None, phase)
            if self.talks:
                print(line, flush=True)
            self.result.console_lines.append(line)
            self.result.console[tracker.name].append(_as_printed(metrics))
            if self.epoch_hook is not None:
                self.epoch_hook(epoch, tracker, metrics)

    def epoch_files(self, epoch: int) -> dict[str, bytes]:
        """What a commit holds: one history per tracker, the console, the checkpoint."""
        files = {history_filename(name): dumps_history(history).encode()
                 for name, history in self.result.histories.items()}
        files[CONSOLE] = ("\n".join(self.result.console_lines) + "\n").encode()
        state = {"format": CHECKPOINT_FORMAT, "epoch": epoch, "model": self.net.state_dict(),
                 "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(), "rng": _rng_state()}
        buffer = io.BytesIO()
        torch.save(state, buffer)
        files[CHECKPOINT] = buffer.getvalue()
        return files


def _add_epoch(history: dict, tracker, metrics: dict, nonfinite_batches: int, phase: str) -> None:
    """Append one epoch to ``history``: the metrics, the recorded states the tracker declares, the non-finite count."""
    declared = tracker.state_reductions()
    states = {name: getattr(tracker, name) for name in RECORDED_STATES if name in declared}
    values = {**{key: _number(v) for key, v in metrics.items()},
              **{name: float(v) if name == "loss_sum" else int(v) for name, v in states.items()},
              "nonfinite_batches": nonfinite_batches}
    for key, value in values.items():
        history.setdefault(history_key(phase, key), []).append(value)


def _number(value):
    """A metric as a Python number: ``.item()`` of a tensor, so the history holds no tracker's buffer."""
    return value.item() if isinstance(value, torch.Tensor) else value


def _as_printed(metrics: dict) -> dict[str, float]:
    """The metrics rounded as the console line prints them."""
    return {k: float(v.rstrip("%")) for k, v in _postfix(metrics).items()}


def _printed(history: dict, phase: str, epoch: int) -> dict[str, float]:
    """An epoch's values as the console printed them, from its history (a resumed run's earlier epochs)."""
    return _as_printed({key: history[history_key(phase, key)][epoch] for key in ("loss", "top1", "top5")
                        if history_key(phase, key) in history})


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "python": list(random.getstate()),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
