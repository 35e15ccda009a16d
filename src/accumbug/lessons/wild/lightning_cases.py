"""Lightning: what ``self.log(..., on_epoch=True)`` shows and saves for an epoch loss, measured.

Lightning averages an epoch metric weighted by each batch's size. It infers that size from the
first dimension of the batch's first tensor unless ``self.log(..., batch_size=)`` says it, and
under DDP it adds the ranks' weighted sums and batch-size counters (``sync_dist=True``) or keeps
each rank's own (``sync_dist=False``, rank 0's is the one shown and saved). Each case trains the
zero model of ``data.py`` one epoch at learning rate 0, so the exact epoch loss is known before
Lightning runs, and reads what the progress bar showed at the epoch's end and what the
``CSVLogger`` wrote in ``metrics.csv``:

1. ordinary ``(B, F)`` batches;
2. sequence-first ``(T, B, F)`` batches (each sample repeated over ``STEPS`` time steps), the
   batch size inferred (``T``) and given (``batch_size=B``);
3. DDP on two gloo CPU ranks, 1,031 samples, all in one subprocess (``lightning_ddp``):
   ``sync_dist=True`` with the ``DistributedSampler`` Lightning puts in, whose padding trains on
   one sample twice (for training Lightning shuffles it, seed 0, whatever the ``DataLoader``
   says, so the repeated sample is the head of a seeded permutation, not sample 0);
   ``sync_dist=True`` on shards of unequal length (516 and 515 samples), where the ranks'
   batch-size counters are mean-synced as integers, so the denominator is floor(1031 / 2) = 515
   for a sum of 1031 / 2 samples, x1031/1030 (Lightning-AI/pytorch-lightning#21859; its x1.0625
   needs 17 samples in all); and ``sync_dist=False``, rank 0's shard.

Why: these are the settings where a user who trusts Lightning's weighting gets another number,
and ``batch_size=`` or a sampler without padding is the fix. The bar is Lightning's
``TQDMProgressBar`` (its default where ``rich`` is not installed), which shows three significant
digits, drawn as text also inside Jupyter (``text_progress_bar``) so that what it showed can be
read back. Taught in ``notebooks/07_in_the_wild.ipynb``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import warnings
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset, default_collate

from .data import uneven_data, zero_linear
from .record import WildCase, signed_error

__all__ = ["METRIC", "STEPS", "lightning_cases", "quiet", "saved_value", "shown_value", "text_progress_bar", "trained",
           "zero_module"]

FRAMEWORK = "Lightning"
METRIC = "train_loss"
STEPS = 3  # time steps of the sequence-first batches
DDP_TIMEOUT = 240.0  # seconds for the whole DDP subprocess (about 20 s on two CPU cores)
# a surrounding launcher's variables (Lightning would take the subprocess for one of its ranks), and the seed
# Lightning gives the sampler (``ddp_data`` puts the outlier where seed 0 repeats a sample)
CLEARED_VARIABLES = ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT", "PL_GLOBAL_SEED")


def lightning_cases(out: Path) -> list[WildCase]:
    """Run every Lightning case, Lightning's files under ``out / "lightning"``; one ``WildCase`` per case."""
    import lightning

    folder = Path(out) / "lightning"
    return [*_single_process_cases(folder, lightning.__version__), *_ddp_cases(folder, lightning.__version__)]


def _single_process_cases(folder: Path, version: str) -> list[WildCase]:
    """Cases 1 and 2: one CPU process, ``(B, F)`` batches, then ``(T, B, F)`` batches.

    The ``(T, B, F)`` batches run without and with ``batch_size=``.
    """
    data = uneven_data()
    settings = [  # case, folder, sequence-first, batch_size= given, upstream, what happens
        ("(B, F) batches, on_epoch=True", "batch_b_f", False, False, "Lightning-AI/pytorch-lightning#2924",
         "batch size from the first dimension, B"),
        (f"(T={STEPS}, B, F) batches, batch size inferred", "batch_t_b_f", True, False,
         "Lightning-AI/pytorch-lightning#10093", f"batch size inferred as T={STEPS}: every batch weighs the same"),
        (f"(T={STEPS}, B, F) batches, batch_size=B", "batch_t_b_f_given", True, True,
         "Lightning-AI/pytorch-lightning#10093", "batch_size=B given"),
    ]
    cases = []
    for case, name, time_first, given, upstream, mechanism in settings:
        def log(module, loss, batch, given=given):
            size = batch[1].shape[1] if given else None
            module.log(METRIC, loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=size)

        loader = DataLoader(TensorDataset(data.features, data.targets), batch_size=data.batch_size,
                            collate_fn=_time_first if time_first else None)
        console, csv_path = trained(folder, name, zero_module(log, lambda trainer, loader=loader: loader))
        saved = saved_value(csv_path, METRIC)
        cases.append(WildCase(FRAMEWORK, version, case, shown_value(console, METRIC), saved, data.exact(), upstream,
                              _note(mechanism, saved, data.exact()), (str(csv_path),), console))
    return cases


def _time_first(samples: list) -> tuple[torch.Tensor, torch.Tensor]:
    """Collate ``(features, target)`` samples into sequence-first ``(STEPS, B, ...)`` tensors, each sample repeated
    at every step: the mean-squared-error loss of the batch stays the mean of ``target ** 2`` over its B samples."""
    features, targets = default_collate(samples)
    return features.expand(STEPS, *features.shape), targets.expand(STEPS, *targets.shape)


def zero_module(log, loader):
    """A ``LightningModule`` training ``zero_linear`` at learning rate 0 with the mean-squared-error loss.

    ``log(module, loss, batch)`` does the ``self.log`` calls of a case; ``loader(trainer)`` makes the
    training ``DataLoader`` (the trainer tells a DDP rank its ``global_rank`` and ``world_size``).
    """
    import lightning.pytorch as pl

    class ZeroModule(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = zero_linear()

        def training_step(self, batch, batch_idx):
            loss = nn.functional.mse_loss(self.model(batch[0]), batch[1])
            log(self, loss, batch)
            return loss

        def train_dataloader(self):
            return loader(self.trainer)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    return ZeroModule()


def text_progress_bar():
    """Lightning's ``TQDMProgressBar`` drawing text, as in a terminal, also inside Jupyter.

    With ipywidgets installed Lightning draws its bar as a notebook widget, which nothing can
    read back; this bar keeps Lightning's number format (``Tqdm.format_num``) and writes text.
    """
    from lightning.pytorch.callbacks import TQDMProgressBar
    from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm
    from tqdm.std import tqdm as text_tqdm

    text_bar = type("TextTqdm", (text_tqdm,), {"format_num": staticmethod(Tqdm.format_num)})

    class TextProgressBar(TQDMProgressBar):
        def init_train_tqdm(self):
            return text_bar(desc=self.train_description, position=2 * self.process_position, disable=self.is_disabled,
                            leave=True, dynamic_ncols=True, file=sys.stdout, smoothing=0, bar_format=self.BAR_FORMAT)
    return TextProgressBar()


def trained(folder: Path, name: str, module, **options) -> tuple[str, Path]:
    """Fit ``module`` one epoch, quietly, logging to ``folder/name/version_0``; the bar's last line and metrics.csv.

    ``options`` go to the ``Trainer`` (a DDP strategy and ``devices=2``, say). The folder is emptied
    first: ``CSVLogger`` would otherwise warn about old files in it.
    """
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import CSVLogger

    shutil.rmtree(folder / name, ignore_errors=True)
    logger = CSVLogger(folder, name=name, version=0)
    with quiet() as printed:
        trainer = pl.Trainer(**{"accelerator": "cpu", "devices": 1, **options}, max_epochs=1, logger=logger,
                             callbacks=[text_progress_bar()], enable_checkpointing=False, enable_model_summary=False)
        trainer.fit(module)
    bar = [line.strip() for line in re.split(r"[\r\n]", printed.getvalue()) if line.startswith("Epoch ")]
    return (bar[-1] if bar else ""), Path(logger.log_dir) / "metrics.csv"


@contextmanager
def quiet():
    """Catch what Lightning prints (its progress bar: the buffer yielded) and silence its info lines and warnings."""
    printed = io.StringIO()
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings(), redirect_stdout(printed), redirect_stderr(printed):
            warnings.simplefilter("ignore")
            yield printed
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def shown_value(console: str, metric: str) -> float | None:
    """The number the progress bar line shows for ``metric`` (``metric=1.48``), None where it shows none."""
    found = re.findall(rf"\b{re.escape(metric)}=([-+0-9.eE]+|nan|inf)", console)
    return float(found[-1]) if found else None


def saved_value(path: Path, metric: str) -> float | None:
    """The last value of ``metric`` in a ``CSVLogger`` metrics.csv: the epoch-level one; None where there is none."""
    with open(path, newline="", encoding="utf-8") as file:
        values = [row[metric] for row in csv.DictReader(file) if row.get(metric)]
    return float(values[-1]) if values else None


def _note(mechanism: str, saved: float | None, exact: float) -> str:
    """A few words: "exact" where the saved value is within 1e-6 of the exact one, else the mechanism and the error."""
    error = signed_error(saved, exact)
    if error is None:
        return f"{mechanism}: nothing saved"
    return f"{mechanism}: exact" if abs(error) <= 1e-6 else f"{mechanism}: saved {error:+.3%}"


def _ddp_cases(folder: Path, version: str) -> list[WildCase]:
    """Case 3: both DDP fits in one ``lightning_ddp`` subprocess (two gloo ranks); three ``WildCase`` from its JSON."""
    from .lightning_ddp import ddp_data

    found = _run_ddp(folder)
    data = ddp_data()
    padded, sharded = found["padded"], found["sharded"]
    rows = [
        ("DDP 2 ranks, sync_dist=True, DistributedSampler", padded, "loss_sync", "Lightning-AI/pytorch-lightning#5060",
         "padding repeats sample " + ", ".join(map(str, padded["repeated"]))),
        ("DDP 2 ranks, sync_dist=True, unequal shards", sharded, "loss_sync", "Lightning-AI/pytorch-lightning#21859",
         "batch-size counter mean-synced as an integer"),
        ("DDP 2 ranks, sync_dist=False", padded, "loss_local", "", "rank 0's shard only"),
    ]
    cases = []
    for case, run, metric, upstream, mechanism in rows:
        saved = saved_value(Path(run["csv"]), metric)
        cases.append(WildCase(FRAMEWORK, version, case, shown_value(run["console"], metric), saved, data.exact(),
                              upstream, _note(mechanism, saved, data.exact()), (run["csv"],), run["console"]))
    return cases


def _run_ddp(folder: Path) -> dict:
    """Run ``python -m accumbug.lessons.wild.lightning_ddp FOLDER`` (Lightning starts rank 1); rank 0's JSON.

    The command runs in its own process group, so a timeout ends both ranks, and without the
    variables ``CLEARED_VARIABLES`` names.
    """
    environment = {key: value for key, value in os.environ.items() if key not in CLEARED_VARIABLES}
    command = [sys.executable, "-m", "accumbug.lessons.wild.lightning_ddp", str(folder)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=DDP_TIMEOUT)
    except subprocess.TimeoutExpired:
        if hasattr(os, "killpg"):
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
        process.communicate()
        raise RuntimeError(f"the Lightning DDP cases ran past {DDP_TIMEOUT:.0f} s: {' '.join(command)}") from None
    if process.returncode != 0 or not stdout.strip():
        raise RuntimeError(f"the Lightning DDP cases failed (exit {process.returncode}):\n{stderr[-3000:]}")
    return json.loads(stdout.strip().splitlines()[-1])

