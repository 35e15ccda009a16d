import math

import pytest
import torch

from accumbug.data import preset
from accumbug.lessons.streams import (
    LossStream,
    batch_means,
    batch_sizes,
    epoch_mean,
    loss_sums,
    replay,
    sample_losses,
    scored_batches,
    sized_batches,
    trajectory_note,
)
from accumbug.registry import make_tracker
from accumbug.specimens.incident_trackers import IncidentBrokenTracker


def same(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def streams():
    full, small = preset("full"), preset("small")
    return {name: (batch_means(sample_losses(spec.samples, 9.3, 8.9, 0.05, seed), batch_sizes(spec)),
                   batch_sizes(spec)) for name, spec, seed in (("full", full, 0), ("small", small, 1))}


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


def test_a_batch_size_only_regroups_the_samples_so_the_exact_loss_stays_put():
    stream = LossStream("test", samples=1_000, start=9.3, end=8.9, noise=0.2, seed=5)
    for batch_size in (1, 16, 64, 999, 1_000):
        losses, sizes = stream.batches(batch_size)
        assert sum(sizes) == 1_000 and all(size == batch_size for size in sizes[:-1])
        weighted = math.fsum(loss * size for loss, size in zip(losses.tolist(), sizes)) / 1_000
        assert weighted == pytest.approx(stream.exact, rel=1e-7)  # float32 batch means, as loss.item() gives
    assert stream.exact == math.fsum(stream.losses.tolist()) / 1_000
    assert stream.batches(1)[0].tolist() == stream.losses.tolist()


def test_sample_losses_are_seeded_and_follow_their_trend():
    a, b = sample_losses(10_000, 9.3, 8.9, 0.2, seed=1), sample_losses(10_000, 9.3, 8.9, 0.2, seed=1)
    assert torch.equal(a, b) and not torch.equal(a, sample_losses(10_000, 9.3, 8.9, 0.2, seed=2))
    assert float(a.min()) >= 8.9 - 0.2 - 1e-6 and float(a.max()) <= 9.3 + 0.2 + 1e-6
    assert float(a[:100].mean()) > float(a[-100:].mean()) + 0.3


def test_batch_means_are_each_runs_mean_and_refuse_sizes_that_do_not_add_up():
    losses = torch.tensor([1.0, 3.0, 5.0, 7.0, 9.0])
    assert batch_means(losses, [2, 2, 1]).tolist() == [2.0, 6.0, 9.0]
    with pytest.raises(ValueError, match="batch sizes adding up to 4 for 5 samples"):
        batch_means(losses, [2, 2])
    assert sized_batches(136_312, 16)[-1] == 8 and len(sized_batches(136_312, 16)) == 8_520
    with pytest.raises(ValueError, match="batch_size=0"):
        sized_batches(10, 0)
