"""Which dtype each piece of a mixed-precision step really has: the facts the pages and exercises rest on.

Under ``torch.autocast`` with float16 or bfloat16, a Linear layer's outputs are half
precision, but ``F.cross_entropy`` (and ``nn.CrossEntropyLoss``) runs in float32 and returns a
float32 loss. So a float16 *sum* does not come from ``loss_sum += loss`` under autocast: it
comes from a buffer made in the outputs' dtype (``torch.zeros_like(outputs[0, 0])``, which
``+=`` keeps in half precision; the incident trackers' ``accumulator="auto"``), or from a
model run in half precision (``model.half()``), whose loss itself is float16.

Every test asserts the dtypes it gets, so a torch release that changes autocast's rules
fails here before a page that teaches them goes wrong. CPU always; CUDA where there is one.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from accumbug.registry import make_tracker

DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA")])]
HALF = [torch.float16, torch.bfloat16]
CLASSES = 6  # more than top-5, so the incident trackers can count hits


def _batch(device: str):
    """A Linear model and one batch of 4 inputs and labels on ``device``, all float32."""
    generator = torch.Generator().manual_seed(0)
    model = nn.Linear(8, CLASSES)
    inputs = torch.randn(4, 8, generator=generator)
    labels = torch.randint(0, CLASSES, (4,), generator=generator)
    return model.to(device), inputs.to(device), labels.to(device)


def _autocast_step(device: str, dtype: torch.dtype):
    """Outputs and batch-mean loss of one forward pass under autocast, as ``train.py`` computes them."""
    model, inputs, labels = _batch(device)
    with torch.autocast(device, dtype=dtype):
        outputs = model(inputs)
        loss = F.cross_entropy(outputs, labels)
    return outputs, loss, labels


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", HALF)
def test_autocast_gives_half_outputs_and_a_float32_loss(device, dtype):
    model, inputs, labels = _batch(device)
    with torch.autocast(device, dtype=dtype):
        outputs = model(inputs)
        functional = F.cross_entropy(outputs, labels)
        module = nn.CrossEntropyLoss()(outputs, labels)
    assert outputs.dtype == dtype
    assert functional.dtype == torch.float32
    assert module.dtype == torch.float32


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", HALF)
def test_a_model_in_half_precision_gives_a_half_loss(device, dtype):
    """``model.half()`` (float16) or ``model.to(torch.bfloat16)``, inputs in the same dtype, no autocast."""
    model, inputs, labels = _batch(device)
    model = model.half() if dtype == torch.float16 else model.to(dtype)
    outputs = model(inputs.to(dtype))
    loss = F.cross_entropy(outputs, labels)
    assert outputs.dtype == dtype
    assert loss.dtype == dtype


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", HALF)
def test_a_python_float_sum_under_autocast_is_never_half(device, dtype):
    """``loss_sum += loss.item()`` stays a Python float; ``loss_sum += loss`` becomes a float32 tensor."""
    _, loss, _ = _autocast_step(device, dtype)
    with_item, without_item = 0.0, 0.0
    with_item += loss.item()
    without_item += loss.detach()
    assert type(with_item) is float
    assert isinstance(without_item, torch.Tensor) and without_item.dtype == torch.float32


@pytest.mark.parametrize("device", DEVICES)
def test_a_python_float_sum_of_a_half_models_loss_is_float16(device):
    """Without ``.item()``, ``0.0 + loss`` takes the loss's dtype: float16 for a ``model.half()`` run."""
    model, inputs, labels = _batch(device)
    loss = F.cross_entropy(model.half()(inputs.half()), labels)
    loss_sum = 0.0
    loss_sum += loss.detach()
    assert isinstance(loss_sum, torch.Tensor) and loss_sum.dtype == torch.float16


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", HALF)
def test_a_buffer_made_from_the_outputs_is_half_and_stays_half(device, dtype):
    outputs, loss, _ = _autocast_step(device, dtype)
    buffer = torch.zeros_like(outputs[0, 0])
    assert buffer.dtype == dtype
    buffer += loss.detach()  # a float32 loss, added in place: cast to the buffer's half dtype
    assert buffer.dtype == dtype
    assert buffer.item() == loss.detach().to(dtype).item()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", HALF)
def test_the_auto_accumulator_follows_the_outputs_not_the_loss(device, dtype):
    """``accumulator="auto"`` is that buffer: the outputs' dtype, although the loss is float32."""
    outputs, loss, labels = _autocast_step(device, dtype)
    tracker = make_tracker("incident-broken:auto")
    tracker.update(loss.detach(), outputs.detach(), labels)
    assert loss.dtype == torch.float32
    assert isinstance(tracker.loss_sum, torch.Tensor) and tracker.loss_sum.dtype == dtype
