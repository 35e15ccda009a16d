"""The loops in docs/cheatsheet.md run as they stand and save the exact epoch mean; its demonstrations print
what it shows.

Each python block marked ``<!-- demo: NAME -->`` runs as it stands, and what it prints (or the
exception it raises, as ``Type: message``) must be the text block that follows it, line for line.
Each python block of the cheat sheet marked ``<!-- runnable: NAME -->`` is executed after a
preamble kept here: tiny made-up data from ``torch.randn`` (a model, an optimizer, a loader of
uneven batches, ``epochs``), so that the block stays as short as a learner copies it. The
model's outputs are recorded as the loop runs; each epoch's value in the block's ``history``
must equal the mean over items recomputed from them in float64 (``math.fsum``), without
``ExactMean``, and the data must be uneven enough that the mean of batch means is another
number.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

CHEATSHEET = Path(__file__).resolve().parents[1] / "docs" / "cheatsheet.md"
EPOCHS = 3
IGNORE = -100


def runnable_blocks() -> dict[str, str]:
    """NAME -> code of each python block that follows a ``<!-- runnable: NAME -->`` line."""
    text = CHEATSHEET.read_text(encoding="utf-8")
    found = re.findall(r"^<!-- runnable: ([\w-]+) -->\n```python\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    names = [name for name, _ in found]
    assert len(names) == len(set(names)), f"docs/cheatsheet.md: a runnable name used twice: {names}"
    assert len(found) == text.count("<!-- runnable:"), "docs/cheatsheet.md: a runnable marker not right above ```python"
    return dict(found)


@dataclass
class Setup:
    """What a block runs on, and how to recompute its epoch values."""

    namespace: dict  # the names the block uses: torch, nn, model, optimizer, loader, epochs
    batches: list  # the loader's batches, in the order every epoch gives them
    outputs: list  # the model's outputs, one per forward call, recorded as the block runs
    items: Callable  # (output, batch) -> the batch's per-item values, float64, padding left out


def prepared(model: nn.Module, loader, items: Callable) -> Setup:
    outputs = []
    model.register_forward_hook(lambda module, args, output: outputs.append(output.detach().clone()))
    namespace = {"torch": torch, "nn": nn, "model": model, "loader": loader, "epochs": EPOCHS,
                 "optimizer": torch.optim.SGD(model.parameters(), lr=0.1)}
    return Setup(namespace, list(loader), outputs, items)


def regression() -> Setup:
    """100 samples of 3 features and one target, batches of 16 (the last of 4), a linear model."""
    generator = torch.Generator().manual_seed(0)
    inputs, targets = torch.randn(100, 3, generator=generator), torch.randn(100, 1, generator=generator) * 2
    targets[96:] += 5  # the last, partial batch is far off: its weight shows
    loader = DataLoader(TensorDataset(inputs, targets), batch_size=16)
    return prepared(nn.Linear(3, 1), loader,
                    lambda output, batch: ((output.double() - batch[1].double()) ** 2).flatten())


def language_model() -> Setup:
    """Batches of 2 to 5 sequences of up to 9 tokens, padded with 0 (targets: -100); an embedding and a linear head."""
    generator, vocab = torch.Generator().manual_seed(1), 13
    loader = []
    for size in (5, 2, 4, 3):
        tokens = torch.randint(1, vocab, (size, 9), generator=generator)
        targets = torch.randint(0, vocab, (size, 9), generator=generator)
        padding = torch.arange(9) >= torch.randint(1, 10, (size, 1), generator=generator)
        tokens[padding], targets[padding] = 0, IGNORE
        loader.append((tokens, targets))

    def items(logits, batch):
        targets = batch[1]
        kept = targets != IGNORE
        losses = -torch.log_softmax(logits.double(), dim=-1).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return losses[kept]

    torch.manual_seed(1)
    return prepared(nn.Sequential(nn.Embedding(vocab, 8), nn.Linear(8, vocab)), loader, items)


PREAMBLES = {"regression": regression, "language-model": language_model}
DEMOS = ("float16-sum", "tensor-json")  # half-precision rounding; json.dump of a tensor


def demo_blocks() -> dict[str, tuple[str, str]]:
    """NAME -> (code, expected output) of each ``<!-- demo: NAME -->`` python block and the text block after it."""
    text = CHEATSHEET.read_text(encoding="utf-8")
    found = re.findall(r"^<!-- demo: ([\w-]+) -->\n```python\n(.*?)^```\n\n```text\n(.*?)^```", text,
                       flags=re.MULTILINE | re.DOTALL)
    assert len(found) == text.count("<!-- demo:"), "docs/cheatsheet.md: a demo marker not above ```python, ```text"
    return {name: (code, expected) for name, code, expected in found}


def test_every_demonstration_is_there():
    assert sorted(demo_blocks()) == sorted(DEMOS)


@pytest.mark.parametrize("name", DEMOS)
def test_the_demonstration_prints_what_the_cheat_sheet_shows(name):
    code, expected = demo_blocks()[name]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        try:
            exec(compile(code, f"docs/cheatsheet.md ({name})", "exec"), {})  # noqa: S102 - the cheat sheet's demo
        except Exception as error:  # noqa: BLE001 - the demo may show an exception; its text is compared
            print(f"{type(error).__name__}: {error}")
    assert printed.getvalue() == expected


def test_every_runnable_block_has_its_preamble():
    assert sorted(runnable_blocks()) == sorted(PREAMBLES)


@pytest.mark.parametrize("name", sorted(PREAMBLES))
def test_the_block_saves_the_exact_epoch_mean(name):
    code, setup = runnable_blocks()[name], PREAMBLES[name]()
    exec(compile(code, f"docs/cheatsheet.md ({name})", "exec"), setup.namespace)  # noqa: S102 - the cheat sheet's loop

    history, per_epoch = setup.namespace["history"], len(setup.batches)
    assert len(setup.outputs) == EPOCHS * per_epoch and len(history) == EPOCHS
    for epoch, saved in enumerate(history):
        outputs = setup.outputs[epoch * per_epoch:(epoch + 1) * per_epoch]
        batches = [setup.items(output, batch).tolist() for output, batch in zip(outputs, setup.batches)]
        exact = math.fsum(math.fsum(batch) for batch in batches) / sum(len(batch) for batch in batches)
        batch_means = math.fsum(math.fsum(batch) / len(batch) for batch in batches) / len(batches)
        assert type(saved) is float
        assert saved == pytest.approx(exact, rel=1e-6, abs=0), f"epoch {epoch + 1}"
        assert abs(batch_means - exact) > 1e-3 * abs(exact)  # uneven enough to tell the two apart
    assert len(set(history)) == EPOCHS  # the model trained: each epoch's mean is its own
