"""pytorch-ignite over the shared data: the ``Loss`` metric and the ``RunningAverage`` a progress bar shows.

``Loss`` multiplies each batch's mean loss by the batch's size before summing, so an
evaluator's epoch loss is the sample-weighted mean (pytorch/ignite#120 made it so for the
smaller last batch). ``RunningAverage(output_transform=lambda x: x)`` on a trainer's batch
loss, the usual thing to hand a ``ProgressBar``, is an exponential moving average (alpha
0.98 by default), with a memory of about 1 / (1 - alpha) = 50 batches and the last batch
weighing 2 %: at epoch end it is not the epoch's mean. The trainer runs the zero model at
learning rate 0, so its batch losses are the data's. Taught in ``notebooks/07_in_the_wild.ipynb``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from .data import WildData, uneven_data, zero_linear
from .record import WildCase, installed_case

__all__ = ["ignite_cases"]


def _loader(data: WildData) -> DataLoader:
    """The shared data in order, batches of ``data.batch_size`` (the last one partial)."""
    return DataLoader(TensorDataset(data.features, data.targets), batch_size=data.batch_size, shuffle=False)


def _case(case: str, displayed: float | None, saved: float, exact: float, **extra) -> WildCase:
    return installed_case("ignite", "ignite", case, displayed, saved, exact, **extra)


def _loss_case(data: WildData) -> WildCase:
    """``Loss(nn.MSELoss())`` attached to ``create_supervised_evaluator``: what ``state.metrics`` keeps."""
    from ignite.engine import create_supervised_evaluator
    from ignite.metrics import Loss

    evaluator = create_supervised_evaluator(zero_linear(), metrics={"loss": Loss(nn.MSELoss())})
    saved = evaluator.run(_loader(data)).metrics["loss"]
    return _case("Loss(MSELoss()) on an evaluator", None, float(saved), data.exact(), upstream="pytorch/ignite#120",
                 note="each batch mean times its batch size, summed, over the sample count: sample-weighted")


def _running_average_case(data: WildData) -> WildCase:
    """``RunningAverage`` of a trainer's batch loss, shown by a ``ProgressBar``: its last postfix and the metric.

    The bar is made with ``disable=True`` so nothing is drawn (in a notebook, no widget), but it
    still formats its postfix as it would print it; the last one, set after the last batch, is
    what the bar showed when the epoch ended.
    """
    from ignite.engine import Events, create_supervised_trainer
    from ignite.handlers import ProgressBar
    from ignite.metrics import RunningAverage

    model = zero_linear()
    trainer = create_supervised_trainer(model, torch.optim.SGD(model.parameters(), lr=0.0), nn.MSELoss())
    average = RunningAverage(output_transform=lambda x: x)
    average.attach(trainer, "loss")
    bar = ProgressBar(disable=True)
    bar.attach(trainer, ["loss"])
    postfixes = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda engine: postfixes.append(bar.pbar.postfix))
    saved = trainer.run(_loader(data), max_epochs=1).metrics["loss"]
    displayed = float(postfixes[-1].split("=", 1)[1])
    return _case("RunningAverage(batch loss) in a ProgressBar", displayed, float(saved), data.exact(),
                 upstream="pytorch/ignite#848", console=postfixes[-1],
                 note=f"an exponential moving average, alpha {average.alpha}: batch k weighs "
                      f"{1 - average.alpha:.2g} x {average.alpha}^(n-k), the first batch starts it; not the epoch mean")


def ignite_cases() -> list[WildCase]:
    """Every ignite case on the shared data, in the table's order."""
    data = uneven_data()
    return [_loss_case(data), _running_average_case(data)]
