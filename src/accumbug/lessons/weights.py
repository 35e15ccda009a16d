"""Does a metrics bug reach the weights? Trained weights compared bit for bit.

The write-up concluded "model weights/checkpoints are fine". ``same_weights`` tests that the
direct way: the same config trained twice with different trackers attached, the two
``state_dict``s compared byte for byte (audit claim 12, and the gallery's "weights fine"
column for bugs in the logging code).

Some bugs live in the training step itself: a mean of micro-batch means under gradient
accumulation, ``DistributedSampler``'s padding duplicates, a batch whose loss is not
finite. The trainer has no such step, so ``toy_sgd`` runs them on a small least-squares
problem, through ``torch.amp.GradScaler`` as mixed-precision training does, and the gallery
compares the result with the correct step (``03_what_really_breaks.ipynb``).
"""

from __future__ import annotations

import contextlib
import io

import torch

from ..config import TrainConfig
from ..registry import make_trackers
from ..train import train

__all__ = ["TOY_FEATURES", "bitwise_equal", "same_weights", "toy_sgd", "trained_weights"]

TOY_FEATURES = 4
TOY_LR = 0.05


def bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """Whether two state_dicts hold the same tensors, byte for byte (a NaN equals only itself)."""
    return a.keys() == b.keys() and all(
        a[k].shape == b[k].shape and a[k].dtype == b[k].dtype
        and a[k].detach().cpu().contiguous().view(torch.uint8).equal(b[k].detach().cpu().contiguous().view(torch.uint8))
        for k in a)


@contextlib.contextmanager
def _one_thread():
    """Run torch on one CPU thread for a while, then restore the thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def trained_weights(config: TrainConfig, trackers) -> dict[str, torch.Tensor]:
    """The state_dict after training ``config`` with ``trackers`` attached (names or objects).

    The run is silent and uses one CPU thread: a bit-for-bit comparison needs both runs to
    do the same arithmetic in the same order, and the small configs compared here gain
    nothing from threads (on a busy machine, threads make them many times slower).
    """
    with contextlib.redirect_stdout(io.StringIO()), _one_thread():
        return train(config, make_trackers(trackers)).model.state_dict()


def same_weights(config: TrainConfig, trackers_a, trackers_b) -> bool:
    """Train ``config`` once with ``trackers_a`` and once with ``trackers_b``; same weights bit for bit?"""
    return bitwise_equal(trained_weights(config, trackers_a), trained_weights(config, trackers_b))


def toy_sgd(steps: list[list[tuple[int, float]]], items: int, poisoned: int | None = None,
            seed: int = 0) -> torch.Tensor:
    """Weights after SGD on a toy least-squares problem, one optimizer step per entry of ``steps``.

    Item ``i`` is a feature row ``x_i`` and a target ``y_i``; a step is a list of
    ``(item, coefficient)`` pairs and its loss is ``sum(c * (x_i . w - y_i) ** 2)``. The
    coefficients say how the loss is normalised (per sample, per token, per rank). Item
    ``poisoned`` gets NaN features, like a corrupt sample: its step has non-finite gradients,
    and the ``GradScaler`` skips it.
    """
    if any(not 0 <= item < items for step in steps for item, _ in step):
        raise ValueError(f"steps name items outside 0..{items - 1}")
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(items, TOY_FEATURES, generator=generator)
    targets = features @ torch.linspace(-1.0, 2.0, TOY_FEATURES) + 0.1 * torch.randn(items, generator=generator)
    if poisoned is not None:
        features[poisoned] = float("nan")
    weights = torch.zeros(TOY_FEATURES, requires_grad=True)
    optimizer = torch.optim.SGD([weights], lr=TOY_LR)
    scaler = torch.amp.GradScaler("cpu")
    for step in steps:
        index = torch.tensor([item for item, _ in step])
        coefficients = torch.tensor([c for _, c in step], dtype=torch.float32)
        loss = (coefficients * (features[index] @ weights - targets[index]) ** 2).sum()
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return weights.detach().clone()
