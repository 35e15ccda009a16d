"""The shared trainer: the incident's loop, once, feeding several trackers the same batches.

``train(config, trackers)`` runs forward, ``CrossEntropyLoss``, backward and an optimizer
step per batch, then calls ``update(loss, outputs, labels)`` on every tracker, exactly as
the incident's loop called its one ``metrics.update``. Because all trackers see the same
numbers, any difference between their histories comes from accumulation alone. A tracker
is anything that speaks the protocol of ``trackers.Tracker``. The whole loop, per epoch and
per batch, is ``_run_epochs``; the settings are ``config.TrainConfig``.

The console is the incident's: a tqdm bar per epoch whose postfix shows the first tracker's
running metrics (``progress=True``; ``tqdm.auto`` gives the notebook widget), then one line
per tracker, ``Epoch 1 [Train]: loss=9.1621, top1=0.00%, top5=0.20%``. With ``out=`` every
epoch is committed to a run folder (``runfolder.py``); ``resume=True`` continues one from
its last committed epoch (``checkpoint.py``) and, on a CPU, writes the same bytes an
uninterrupted run would.

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

Ctrl-C and SIGTERM stop the run at the next batch boundary with ``stopping.RunStopped`` (under
torchrun, at a boundary all ranks agree on); nothing partial is committed
(``docs/reliability.md``, section 6).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from .checkpoint import checkpoint_bytes, restore
from .config import TrainConfig, resolve_device
from .data import EpochBatches, SyntheticImages
from .distributed import Ranks, rank_shard, sync_states
from .model import SmallClassifier
from .runfolder import RECORDED_STATES, RunFolder, epoch_files, history_key, run_record
from .seeding import seed_everything
from .stopping import StopRequest, run_stopped, stop_on_signals
from .trackers import Tracker

__all__ = ["EpochHook", "LossHook", "NonFiniteLossError", "TrainResult", "format_epoch_line", "train"]

POSTFIX_EVERY = 25  # batches between postfix updates: get_metrics may sync the device
PROGRESS_SECONDS = 1.0  # one bar redraw a second at most: a notebook gets hundreds of messages, not thousands
LossHook = Callable[[int, torch.Tensor], torch.Tensor]  # (1-based step of the run, loss) -> the loss to use
EpochHook = Callable[[int, Tracker, dict], None]  # (1-based epoch, tracker, its get_metrics()), once recorded


class NonFiniteLossError(RuntimeError):
    """A batch loss was NaN or infinite and the run was asked to stop on the first one."""


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
    """The incident's ``pbar.set_postfix`` dict: the loss, and top-1 and top-5 where they are counted."""
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
        speaks = isinstance(tracker, Tracker)  # the protocol, and nothing else of its class
        if not speaks:
            raise ValueError(f"trackers[{index}]={tracker!r}: not a tracker (update, get_metrics, reset, "
                             "state_reductions, name, accumulator, per_sample_loss; see accumbug.trackers); "
                             "accumbug.lab.make_tracker makes one from a name such as 'exact'")
        if trajectory and "loss_sum" not in tracker.state_reductions():
            raise ValueError(f"trajectory=True: tracker {tracker.name!r} declares no loss_sum state "
                             "to follow")
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
    device = resolve_device(config.device)
    if resume and out is None:
        raise ValueError("resume=True needs out=, the run folder to continue")
    previous = RunFolder(out) if resume else None  # every rank reads it: it must be visible to all
    writes = out is not None and (ranks is None or ranks.writes_files)  # rank 0 alone writes
    folder = previous if writes else None
    if writes and not resume:
        names = [t.name for t in trackers]
        record = run_record(asdict(config), asdict(config.data_spec()), str(device), names, ranks)
        folder = RunFolder.create(out, record, overwrite)
    hooks = (loss_hook, epoch_hook)
    run = _TrainingState(config, trackers, device, folder, ranks, trajectory, records, hooks)
    if resume:
        run.resume_from(previous)
    try:
        with stop_on_signals(StopRequest(ranks, device)) as stop:
            return _run_epochs(run, stop)
    except BaseException:
        if folder is not None and not resume and folder.epochs == 0:
            shutil.rmtree(folder.path, ignore_errors=True)  # nothing completed: leave no half-made run folder
        raise


def _run_epochs(run: _TrainingState, stop: StopRequest) -> TrainResult:
    """The loop: every epoch and every batch of a run, in the order they happen."""
    config, result = run.config, run.result
    for epoch in range(run.done + 1, config.epochs + 1):
        started = time.perf_counter()
        batches = run.start_epoch(epoch)  # every tracker's reset(); this epoch's batches (this rank's shard)
        bar = run.progress_bar(batches, epoch)
        nonfinite = torch.zeros((), dtype=torch.int64, device=run.device)
        steps_before = (epoch - 1) * len(batches)
        for batch, (images, labels, metadata) in enumerate(bar, start=1):
            loss, per_sample, outputs = run.forward(steps_before + batch, images, labels)
            nonfinite += ~torch.isfinite(loss)
            if config.stop_on_nonfinite and not torch.isfinite(loss):
                bar.close()
                raise _nonfinite(epoch, batch, loss)
            run.optimize(loss, config.learning_rate(steps_before + batch - 1, len(batches)))
            run.feed(loss.detach(), per_sample, outputs.detach(), labels, metadata)
            signal_name = None if batch == len(batches) else stop.agreed(batch=batch)
            if signal_name is not None:
                bar.close()
                raise run_stopped(signal_name, f"during epoch {epoch} (batch {batch} of {len(batches)})",
                                  result, run.ranks)
            run.show_progress(bar, batch, len(batches))
        bar.close()
        run.end_epoch(epoch, nonfinite)  # ranks synced; each tracker's epoch recorded and printed; epoch_hook
        result.epoch_seconds.append(time.perf_counter() - started)
        if run.folder is not None:
            checkpoint = checkpoint_bytes(epoch, run.net, run.optimizer, run.scaler)
            run.folder.commit_epoch(epoch, epoch_files(result.histories, result.console_lines, checkpoint),
                                    result.epoch_seconds)
        signal_name = stop.agreed(at_epoch_end=epoch < config.epochs)
        if signal_name is not None:
            raise run_stopped(signal_name, f"at the end of epoch {epoch}", result, run.ranks)
    return result


def _nonfinite(epoch: int, batch: int, loss: torch.Tensor) -> NonFiniteLossError:
    return NonFiniteLossError(f"epoch {epoch}, batch {batch}: loss is {loss.item()}; stopped before its "
                              f"optimizer step (stop_on_nonfinite); the run folder holds the {epoch - 1} "
                              "completed epoch(s)")


def _epoch_batches(data: SyntheticImages, epoch: int, ranks: Ranks | None) -> EpochBatches:
    """The whole epoch in one process; this rank's ``DistributedSampler`` shard under torchrun."""
    if ranks is None:
        return data.batches(epoch - 1)
    order, counted = rank_shard(len(data), ranks.world, ranks.rank, data.seed, epoch - 1)
    return EpochBatches(data, order, counted)


class _TrainingState:
    """What one run trains and fills: model, optimizer, scaler, data, trackers, and the result so far."""

    def __init__(self, config: TrainConfig, trackers: list, device: torch.device, folder: RunFolder | None,
                 ranks: Ranks | None, trajectory: bool, records: bool, hooks: tuple):
        self.config, self.trackers, self.device = config, trackers, device
        self.folder, self.ranks = folder, ranks
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
            header = {"tracker": tracker.name, "accumulator": tracker.accumulator, "preset": config.preset}
            self.result.histories[tracker.name] = header
            self.result.console[tracker.name] = []
            if trajectory:
                self.result.trajectories[tracker.name] = []
        self.done, self.seen = 0, None
        self.model.train(not config.eval_only)

    def resume_from(self, folder: RunFolder) -> None:
        """Continue ``folder`` from its last committed epoch: states, histories, console (on every rank)."""
        histories = restore(folder, self.config, [t.name for t in self.trackers], self.ranks, self.net,
                            self.optimizer, self.scaler)
        self.result.histories.update(histories)
        self.result.console_lines.extend(folder.console_lines())
        self.result.epoch_seconds.extend(folder.commit()["epoch_seconds"])
        for name, history in histories.items():
            self.result.console[name] = [_printed(history, self.config.phase, epoch)
                                         for epoch in range(folder.epochs)]
        self.done = folder.epochs
        if self.folder is not None:
            self.folder.remove_uncommitted()

    def start_epoch(self, epoch: int) -> EpochBatches:
        """Every tracker reset, a new trajectory and records begun; the epoch's batches."""
        for tracker in self.trackers:
            tracker.reset()
        for sums in self.result.trajectories.values():
            sums.append([])
        keys = ("sample_id", "loss", "counted", "outputs", "labels")
        self.seen = {key: [] for key in keys} if self.records else None
        return _epoch_batches(self.data, epoch, self.ranks)

    def progress_bar(self, batches: EpochBatches, epoch: int):
        return tqdm(batches, total=len(batches), desc=f"Epoch {epoch} [{self.config.phase.title()}]",
                    disable=not (self.config.progress and self.talks), leave=False,
                    mininterval=PROGRESS_SECONDS)

    def show_progress(self, bar, batch: int, batches: int) -> None:
        """The first tracker's running metrics in the bar, every ``POSTFIX_EVERY`` batches and at the last."""
        if self.config.progress and self.talks and ((batch - 1) % POSTFIX_EVERY == 0 or batch == batches):
            bar.set_postfix(_postfix(self.trackers[0].get_metrics()), refresh=False)

    def forward(self, step: int, images, labels):
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

    def feed(self, loss, per_sample, outputs, labels, metadata: dict) -> None:
        """Every tracker's ``update`` with this batch; the trajectory and the records, when asked."""
        counted = metadata.get("counted")
        for tracker in self.trackers:
            if self.ranks is not None and tracker.per_sample_loss:
                tracker.update(per_sample.detach(), outputs, labels, counted=counted)
            else:
                tracker.update(loss, outputs, labels)
        for tracker in self.trackers if self.result.trajectories else ():
            self.result.trajectories[tracker.name][-1].append(float(tracker.loss_sum))
        if self.seen is not None:
            everyone = torch.ones_like(labels, dtype=torch.bool)
            for key, value in (("sample_id", metadata["sample_id"]), ("loss", per_sample.detach()),
                               ("counted", everyone if counted is None else counted), ("outputs", outputs),
                               ("labels", labels)):
                self.seen[key].append(value.cpu())

    def end_epoch(self, epoch: int, nonfinite: torch.Tensor) -> None:
        """Keep the records; sync across ranks, record each tracker's epoch, print the console lines."""
        if self.seen is not None:
            self.result.records.append({key: torch.cat(values) for key, values in self.seen.items()})
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


def _add_epoch(history: dict, tracker, metrics: dict, nonfinite_batches: int, phase: str) -> None:
    """Append one epoch to ``history``: the metrics, the recorded states declared, the non-finite count."""
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
