"""Shared test setup: small fixtures (a loss stream with a partial last batch, its exact mean, a free
local port, the ``[wild]`` frameworks or a skip). The notebooks' own setup is ``notebooks/conftest.py``.

``pytest`` runs everything; ``pytest -m "not slow"`` is the quick tier, without the notebooks
(each cell of which nbval collects as an item), the audit, the browser and the longer runs.
"""

import importlib
import os
import socket

import pytest
import torch
import torch.nn.functional as F

from accumbug.seeding import seed_everything

collect_ignore_glob = ["doctor_corpus/*"]  # the doctor's inputs (scripts, notebooks, files), read by tests, never run


@pytest.fixture
def stream():
    """65 batches (64 of 16 samples, the last of 8) of outputs, labels and float32 batch-mean losses.

    The last batch is made harder than the rest, so the mean of batch means and the
    per-sample mean differ clearly, as they do whenever batch sizes differ.
    """
    seed_everything(7)
    classes = 10
    batches = []
    for index, size in enumerate([16] * 64 + [8]):
        outputs = torch.randn(size, classes) * (4.0 if index == 64 else 1.0)
        labels = torch.randint(0, classes, (size,))
        batches.append((F.cross_entropy(outputs, labels), outputs, labels))
    return batches


@pytest.fixture
def per_sample_mean(stream):
    """The float64 per-sample mean of the stream's losses: the truth every tracker is judged by."""
    losses = [F.cross_entropy(o.double(), y, reduction="none") for _, o, y in stream]
    return torch.cat(losses).mean().item()


@pytest.fixture(scope="session")
def free_port():
    """A function that finds a free TCP port on 127.0.0.1 (JupyterLab, gloo process groups)."""
    def pick() -> int:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]
    return pick


@pytest.fixture(scope="session")
def wild():
    """A function that imports a framework of the ``[wild]`` extra, or skips the test naming it.

    Under ``ACCUMBUG_REQUIRE_WILD=1`` (``.ci/run`` sets it, having installed the extra) a missing
    framework fails the test instead: there every in-the-wild case must run.
    """
    def need(module: str):
        try:
            return importlib.import_module(module)
        except ImportError as error:
            if os.environ.get("ACCUMBUG_REQUIRE_WILD") == "1":
                pytest.fail(f"{module} is missing under ACCUMBUG_REQUIRE_WILD=1: {error}")
            pytest.skip(f"needs {module}: pip install -e \".[wild]\"")
    return need
