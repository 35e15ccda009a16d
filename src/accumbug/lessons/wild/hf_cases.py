"""Hugging Face ``Trainer`` over the shared data: gradient accumulation, the logged loss, NaN steps, trainer_state.json.

Every case trains a tiny model built from a config (``ZeroRegressor``: one zero linear layer, the
shared data's zero model as a ``PreTrainedModel``) for one epoch at learning rate 0, in order, so
each sample's loss is its ``target ** 2`` and the exact values are known before the Trainer runs.
What the Trainer printed (its ``{'loss': ...}`` lines, captured) and what it saved (the
``log_history`` of ``trainer_state.json``, written by ``Trainer.save_state``, which ``hf_cases``
records in ``WildCase.files`` for the doctor) are set beside the exact values:

* **gradient accumulation**: before 4.46 the Trainer divided each micro-batch's mean loss by
  ``gradient_accumulation_steps``, a mean of micro-batch means, wrong when micro-batches hold
  different numbers of items; huggingface/transformers#34191 passes ``num_items_in_batch`` (the
  items of the whole accumulated batch) to the model, which divides its summed loss by it. The
  Trainer passes it only to a model whose ``forward`` takes ``**kwargs`` (or that sets
  ``accepts_loss_kwargs``); any other model still gets the old formula (#37766).
* **the logged loss** (``{'loss': ...}``, ``log_history``, ``train_loss``) is a mean of step losses:
  the last, smaller batch weighs as much as a full one.
* **NaN steps**: ``logging_nan_inf_filter=True`` (the default) replaces a NaN step's loss by the
  sum of the logging window's earlier step losses over their count plus one: 0 at a window's first
  step, short of their mean elsewhere (the documentation promises their average); with the filter
  off one NaN step makes every later logged loss NaN, and ``trainer_state.json``,
  written with Python's ``json``, holds the token ``NaN``, which is not JSON. These two cases run
  on the shared data without outliers (``uneven_data(outliers=())``), so that what the filter does
  is not hidden under the mean of step means.

Taught in ``notebooks/07_in_the_wild.ipynb``.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import io
import itertools
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from .data import FEATURES, WildData, uneven_data
from .record import WildCase, installed_case

__all__ = ["ACCUMULATION", "LOGGING_STEPS", "NAN_STEP", "accumulation_formulas", "hf_cases", "model_classes"]

ACCUMULATION = 5  # micro-batches per optimizer step: 65 batches make 13 steps, the last of 16, 16, 16, 16 and 8 items
LOGGING_STEPS = 13  # the NaN cases log every 13 steps: five windows in the epoch
NAN_STEP = 14  # the step whose loss is made NaN: the first of the second logging window


class _Samples(Dataset):
    """The shared data as the Trainer takes it: one ``{"features", "labels"}`` dict per sample."""

    def __init__(self, data: WildData):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"features": self.data.features[index], "labels": self.data.targets[index]}


@functools.cache
def model_classes() -> tuple[type, type, type]:
    """``ZeroRegressorConfig``, ``ZeroRegressor`` and ``ZeroRegressorWithKwargs``, made once, on first use.

    ``ZeroRegressor.forward`` names ``num_items_in_batch`` but takes no ``**kwargs``, so the Trainer
    never passes it (it looks for ``**kwargs`` only) and the model returns its micro-batch's mean;
    ``ZeroRegressorWithKwargs`` takes ``**kwargs`` and divides its summed loss by the items of the
    whole accumulated batch. Made inside a function so that transformers is imported only here.
    """
    from transformers import PretrainedConfig, PreTrainedModel

    class ZeroRegressorConfig(PretrainedConfig):
        model_type = "accumbug-zero-regressor"

        def __init__(self, features: int = FEATURES, **kwargs):
            self.features = features
            super().__init__(**kwargs)

    class ZeroRegressor(PreTrainedModel):
        config_class = ZeroRegressorConfig

        def __init__(self, config: ZeroRegressorConfig):
            super().__init__(config)
            self.linear = torch.nn.Linear(config.features, 1)
            self.post_init()

        def _init_weights(self, module):
            if isinstance(module, torch.nn.Linear):  # zero weights and bias: every prediction is 0
                torch.nn.init.zeros_(module.weight)
                torch.nn.init.zeros_(module.bias)

        def forward(self, features, labels, num_items_in_batch=None):
            squared = (self.linear(features) - labels) ** 2
            return {"loss": squared.mean() if num_items_in_batch is None else squared.sum() / num_items_in_batch}

    class ZeroRegressorWithKwargs(ZeroRegressor):
        def forward(self, features, labels, **kwargs):
            return super().forward(features, labels, kwargs.get("num_items_in_batch"))

    return ZeroRegressorConfig, ZeroRegressor, ZeroRegressorWithKwargs


def _model(with_kwargs: bool = True):
    """A fresh zero model: ``ZeroRegressorWithKwargs`` (given ``num_items_in_batch``), else ``ZeroRegressor``."""
    config_class, plain, kwargs = model_classes()
    return (kwargs if with_kwargs else plain)(config_class())


def accumulation_formulas(data: WildData, accumulation: int = ACCUMULATION) -> list[tuple[float, float]]:
    """Each optimizer step's loss by the pre-4.46 formula and by the fix, in float64, in order.

    Pre-4.46: each micro-batch's mean divided by the step's micro-batch count, summed (a mean of
    micro-batch means). The fix: the step's summed item losses over its item count.
    """
    micro = data.losses().split(data.batch_size)
    steps = [micro[start:start + accumulation] for start in range(0, len(micro), accumulation)]
    return [(sum(part.mean().item() for part in step) / len(step), torch.cat(step).mean().item()) for step in steps]


@dataclass(frozen=True)
class _TrainerRun:
    """One Trainer run: its printed log lines, ``log_history`` read back from its file, and ``train_loss``."""

    printed: list[str]
    saved: list[dict]
    state_file: Path
    train_loss: float

    def line(self, key: str, step: int | None = None) -> tuple[str, float]:
        """The printed line holding ``key`` (the one logged at ``step``, else the last) and its value as printed."""
        steps = [entry["step"] for entry in self.saved if key in entry]
        lines = [line for line in self.printed if f"'{key}':" in line]
        printed = lines[steps.index(step)] if step is not None else lines[-1]
        return printed, float(ast.literal_eval(printed)[key])

    def value(self, key: str, step: int | None = None) -> float:
        """``key`` as saved in trainer_state.json (at ``step``, else the last entry holding it)."""
        return [entry[key] for entry in self.saved if key in entry and step in (None, entry["step"])][-1]


def _train(model, data: WildData, out: Path, **settings) -> _TrainerRun:
    """One epoch of ``Trainer`` at learning rate 0, in order, on the CPU; what it printed and saved.

    Nothing reaches the console: the log lines (``disable_tqdm=True`` prints each as a dict of
    values formatted ``.4g``, as the progress bar does) are captured. Only ``trainer_state.json``
    is written (``save_strategy="no"``, then ``save_state``).
    """
    from transformers import Trainer, TrainingArguments

    out.mkdir(parents=True, exist_ok=True)
    args = TrainingArguments(output_dir=str(out), per_device_train_batch_size=data.batch_size, num_train_epochs=1,
                             learning_rate=0.0, report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True,
                             train_sampling_strategy="sequential", **settings)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        trainer = Trainer(model=model, args=args, train_dataset=_Samples(data))
        result = trainer.train()
        trainer.save_state()
    state_file = out / "trainer_state.json"
    saved = json.loads(state_file.read_text(encoding="utf-8"))["log_history"]
    return _TrainerRun(printed.getvalue().splitlines(), saved, state_file, result.training_loss)


def _case(case: str, displayed: float | None, saved: float, exact: float, **extra) -> WildCase:
    return installed_case("HF transformers", "transformers", case, displayed, saved, exact, **extra)


def _last_step(data: WildData) -> tuple[int, range]:
    """The last optimizer step under ``ACCUMULATION`` (counting from 1) and the samples it holds."""
    steps = -(-len(data.batch_means()) // ACCUMULATION)
    return steps, range((steps - 1) * ACCUMULATION * data.batch_size, len(data))


def _formula_case(data: WildData) -> WildCase:
    """The pre-4.46 formula for the last accumulated batch, computed (no old transformers is run)."""
    old, fixed = accumulation_formulas(data)[-1]
    sizes = [len(part) for part in data.losses()[_last_step(data)[1].start:].split(data.batch_size)]
    return WildCase("HF transformers", "< 4.46 (computed)", f"gradient_accumulation_steps={ACCUMULATION}, "
                    "pre-4.46 formula, last step", None, old, fixed, upstream="huggingface/transformers#34191",
                    note=f"loss / gradient_accumulation_steps per micro-batch: the mean of {len(sizes)} micro-batch "
                         f"means of {sizes} items; the fix (num_items_in_batch) gives {fixed:.6g}")


def _accumulation_case(data: WildData, out: Path, with_kwargs: bool) -> WildCase:
    """``gradient_accumulation_steps=5``, a log line per step: the last step's loss and gradient norm.

    The gradient at the zero model is known (``-2 * mean(target * [features, 1])`` over the step's
    items), so the note sets the logged ``grad_norm`` beside the exact one.
    """
    run = _train(_model(with_kwargs), data, out, gradient_accumulation_steps=ACCUMULATION, logging_steps=1)
    step, samples = _last_step(data)
    targets, features = data.targets[samples].double(), data.features[samples].double()
    gradient = -2.0 * torch.cat([targets * features, targets], dim=1).mean(dim=0)
    console, displayed = run.line("loss", step)
    forward = "forward(**kwargs): num_items_in_batch" if with_kwargs else "forward without **kwargs"
    upstream = "huggingface/transformers#" + ("34191" if with_kwargs else "37766")
    return _case(f"gradient_accumulation_steps={ACCUMULATION}, {forward}, last step", displayed,
                 run.value("loss", step), data.exact(samples), console=console, files=(str(run.state_file),),
                 upstream=upstream, note=f"model_accepts_loss_kwargs={with_kwargs}; grad_norm "
                 f"{run.value('grad_norm', step):.6g}, exact item-weighted gradient norm {gradient.norm().item():.6g}")


def _epoch_loss_case(data: WildData, out: Path) -> WildCase:
    """``logging_strategy="epoch"``: the loss logged at the epoch's end, a mean of the 65 step losses."""
    run = _train(_model(), data, out, logging_strategy="epoch")
    console, displayed = run.line("loss")
    return _case("logging_strategy='epoch', loss (= train_loss)", displayed, run.value("loss"), data.exact(),
                 console=console, files=(str(run.state_file),),
                 note=f"mean of {len(data.batch_means())} step losses; train_loss {run.train_loss:.6g} "
                      f"(TrainOutput) and {run.value('train_loss'):.6g} (trainer_state.json)")


def _nan_at(step: int):
    """A forward hook that adds NaN to the loss of the model's ``step``-th call (counting from 1).

    The loss is NaN after the model computed it, so the gradient stays finite and the weights
    untouched, as when fp16's gradient scaler skips an overflowing step: only the logs see the NaN.
    """
    calls = itertools.count(1)

    def hook(module, inputs, output):
        return {**output, "loss": output["loss"] + math.nan} if next(calls) == step else None
    return hook


def _nan_case(data: WildData, out: Path, nan_filter: bool) -> WildCase:
    """Step ``NAN_STEP``'s loss is NaN, logged every ``LOGGING_STEPS`` steps: ``train_loss`` against the exact
    mean of the other steps' samples. The note gives the loss logged for the NaN step's window beside the
    mean of that window's other steps (what the filter's documentation promises), and the NaN tokens in
    trainer_state.json (Python's ``json`` writes NaN as ``NaN``: not JSON)."""
    model = _model()
    model.register_forward_hook(_nan_at(NAN_STEP))
    run = _train(model, data, out, logging_steps=LOGGING_STEPS, logging_nan_inf_filter=nan_filter)
    nan_batch = range((NAN_STEP - 1) * data.batch_size, NAN_STEP * data.batch_size)
    window = -(-NAN_STEP // LOGGING_STEPS) * LOGGING_STEPS
    others = [mean for step, mean in enumerate(data.batch_means(), 1)
              if window - LOGGING_STEPS < step <= window and step != NAN_STEP]
    tokens = []
    json.loads(run.state_file.read_text(encoding="utf-8"), parse_constant=tokens.append)
    logged = [entry["loss"] for entry in run.saved if "loss" in entry]
    console, displayed = run.line("train_loss")
    return _case(f"logging_nan_inf_filter={nan_filter}, step {NAN_STEP} NaN, train_loss", displayed,
                 run.value("train_loss"), data.exact(i for i in range(len(data)) if i not in nan_batch),
                 console=console, files=(str(run.state_file),), upstream="huggingface/transformers#13619",
                 note=f"loss logged at step {window}: {run.value('loss', window):.6g} (its other steps' mean "
                      f"{sum(others) / len(others):.6g}); {sum(map(math.isnan, logged))} of {len(logged)} logged "
                      f"losses NaN; {len(tokens)} NaN tokens in trainer_state.json")


def hf_cases(out: Path) -> list[WildCase]:
    """Every Hugging Face case on the shared data, in the table's order; Trainer output under ``out / "hf"``.

    Prints nothing: each Trainer's console lines are captured into its case's ``console``. The
    Trainer seeds Python, NumPy and torch when it is made (``set_seed``); the caller's random
    states are put back afterwards, so running the cases changes nothing else in the session.
    """
    data, folder = uneven_data(), Path(out) / "hf"
    without_outliers = uneven_data(outliers=())  # the NaN cases: no outliers, so the mean of step means is near exact
    with _random_states_kept():
        return [_formula_case(data), _accumulation_case(data, folder / "accumulation-plain", with_kwargs=False),
                _accumulation_case(data, folder / "accumulation-kwargs", with_kwargs=True),
                _epoch_loss_case(data, folder / "epoch-loss"),
                _nan_case(without_outliers, folder / "nan-filter-on", True),
                _nan_case(without_outliers, folder / "nan-filter-off", False)]


@contextlib.contextmanager
def _random_states_kept():
    """Put Python's, NumPy's and torch's (CPU) random states back after the block."""
    import numpy

    python, legacy, generator = random.getstate(), numpy.random.get_state(), torch.get_rng_state()
    try:
        yield
    finally:
        random.setstate(python)
        numpy.random.set_state(legacy)
        torch.set_rng_state(generator)
