import math

import pytest
import torch

from accumbug.data import preset
from accumbug.lessons.streams import (
    batch_sizes,
    epoch_mean,
    loss_sums,
    replay,
    scored_batches,
    simulated_losses,
    trajectory_note,
)
from accumbug.registry import make_tracker
from accumbug.specimens.incident_trackers import IncidentBrokenTracker


def same(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def streams():
    full, small = preset("full"), preset("small")
    return {"full": (simulated_losses(full.batches_per_epoch, 9.3, 8.9), batch_sizes(full)),
            "small": (simulated_losses(small.batches_per_epoch, 9.3, 8.9, seed=1), batch_sizes(small))}


@pytest.mark.parametrize("kind", ["incident-broken", "incident-fixed"])
@pytest.mark.parametrize("accumulator, size", [("python", "small"), ("float64", "small"), ("float32", "small"),
                                               ("bfloat16", "full"), ("float16", "full")])
def test_loss_sums_is_the_trackers_arithmetic_bit_for_bit(streams, kind, accumulator, size):
    losses, sizes = streams[size]
    tracker = make_tracker(f"{kind}:{accumulator}")
    replayed = replay(tracker, losses, sizes)
    fast = loss_sums(losses, sizes, kind == "incident-broken", accumulator)
    assert same(replayed, fast)
    total = sum(sizes) if kind == "incident-broken" else len(sizes)
    assert same([epoch_mean(fast[-1], total, accumulator)], [tracker.get_metrics()["loss"]])


def test_half_precision_regimes_are_reached_on_the_full_stream(streams):
    losses, sizes = streams["full"]
    assert trajectory_note(loss_sums(losses, sizes, True, "float16")).startswith("inf from batch")
    assert trajectory_note(loss_sums(losses, sizes, False, "float16")).startswith("stalls at 32,768 from batch")
    assert trajectory_note(loss_sums(losses, sizes, True, "python")) == ""


@pytest.mark.parametrize("accumulator, message", [("auto", "'auto' follows the outputs' dtype"),
                                                  ("float8", "accumulator='float8'")])
def test_loss_sums_rejects_unknown_accumulators(accumulator, message):
    with pytest.raises(ValueError, match=message):
        loss_sums(torch.ones(2), [16, 8], True, accumulator)


def test_loss_sums_needs_one_loss_per_batch():
    with pytest.raises(ValueError, match="3 losses for 2 batch sizes"):
        loss_sums(torch.ones(3), [16, 8], True, "python")


def test_scored_batches_hit_the_asked_rates_through_a_tracker():
    sizes = [16] * 999 + [8]
    batches = scored_batches(torch.full((1000,), 2.0), sizes, top1=0.1, top5=0.3, seed=3)
    assert [len(labels) for _, _, labels in batches] == sizes
    tracker = IncidentBrokenTracker()
    for batch in batches:
        tracker.update(*batch)
    metrics = tracker.get_metrics()
    assert metrics["top1"] == pytest.approx(10, abs=0.8) and metrics["top5"] == pytest.approx(30, abs=1.2)
    assert metrics["loss"] == 2.0


@pytest.mark.parametrize("top1, top5", [(0.5, 0.2), (-0.1, 0.5), (0.1, 30.0)])
def test_scored_batches_rejects_rates_that_are_not_ordered_fractions(top1, top5):
    with pytest.raises(ValueError, match=r"need 0 <= top1 <= top5 <= 1"):
        scored_batches(torch.ones(1), [4], top1, top5)
