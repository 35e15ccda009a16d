"""``ExactMean`` against an independent float64 computation, on random uneven streams.

Every expected value here is computed without the class: ``math.fsum`` over Python floats
(or ``torch.float64`` over every item at once), so a wrong sum, a wrong count or a dropped
NaN shows. The streams: batch means with their sizes, per-item values, weights, NaN and inf,
an empty epoch, ``reset`` between epochs; token-level losses with ``ignore_index`` padding;
gradient accumulation over micro-batches of uneven token counts; simulated ranks over
``DistributedSampler``-style padded shards; and the trainer (``lab.train``). Real gloo ranks:
``tests/test_distributed.py`` (``exact-mean`` beside ``exact``).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from accumbug import ExactMean
from accumbug.config import TrainConfig
from accumbug.distributed import rank_shard, sync_simulated
from accumbug.lessons.host_reads import count_host_reads
from accumbug.registry import make_trackers
from accumbug.train import train

IGNORE = -100


def uneven_batches(seed: int, items: int = 1000, largest: int = 37) -> list[torch.Tensor]:
    """``items`` float32 values in batches of random sizes 1..``largest``."""
    generator = torch.Generator().manual_seed(seed)
    values = torch.randn(items, generator=generator) * 3 + 5
    sizes, left = [], items
    while left:
        sizes.append(min(left, int(torch.randint(1, largest + 1, (), generator=generator))))
        left -= sizes[-1]
    return list(values.split(sizes))


def fsum_mean(values, weights=None) -> float:
    """The weighted mean in float64 with a correctly rounded sum; items of weight 0 left out."""
    pairs = [(float(v), float(w)) for v, w in zip(values, weights if weights is not None else [1.0] * len(values))]
    kept = [(v, w) for v, w in pairs if w != 0]
    count = math.fsum(w for _, w in kept)
    return math.fsum(v * w for v, w in kept) / count if count else math.nan


@pytest.mark.parametrize("seed", range(5))
def test_batch_means_with_their_sizes(seed):
    batches = uneven_batches(seed)
    mean = ExactMean()
    for batch in batches:
        mean.update(batch.mean(), n=len(batch))
    expected = fsum_mean([b.mean() for b in batches], [len(b) for b in batches])
    assert mean.compute() == pytest.approx(expected, rel=1e-14, abs=0)
    assert mean.get_metrics()["count"] == sum(len(b) for b in batches)
    batch_means = math.fsum(float(b.mean()) for b in batches) / len(batches)
    assert abs(batch_means - expected) > 1e-6  # the mean of batch means is another number


@pytest.mark.parametrize("seed", range(5))
def test_per_item_values_and_a_device_count(seed):
    batches = uneven_batches(seed)
    per_item, device_count = ExactMean(), ExactMean()
    for batch in batches:
        per_item.update(batch)
        device_count.update(batch.mean(), n=torch.tensor(len(batch)))
    everything = torch.cat(batches)
    assert per_item.compute() == pytest.approx(fsum_mean(everything), rel=1e-14, abs=0)
    assert device_count.compute() == pytest.approx(fsum_mean([b.mean() for b in batches],
                                                             [len(b) for b in batches]), rel=1e-14, abs=0)


@pytest.mark.parametrize("seed", range(3))
def test_weights_and_masks(seed):
    batches = uneven_batches(seed)
    generator = torch.Generator().manual_seed(100 + seed)
    weights = [torch.rand(len(b), generator=generator).round(decimals=1) for b in batches]  # zeros among them
    masks = [w > 0.5 for w in weights]
    weighted, masked = ExactMean(), ExactMean()
    for batch, weight, mask in zip(batches, weights, masks):
        weighted.update(batch, n=weight)
        masked.update(batch, n=mask)
    assert weighted.compute() == pytest.approx(fsum_mean(torch.cat(batches), torch.cat(weights)), rel=1e-13, abs=0)
    assert masked.compute() == pytest.approx(fsum_mean(torch.cat(batches), torch.cat(masks)), rel=1e-14, abs=0)
    assert masked.get_metrics()["count"] == int(torch.cat(masks).sum())


@pytest.mark.parametrize("bad, expected", [(math.nan, "nan"), (math.inf, "inf"), (-math.inf, "-inf")])
def test_a_nonfinite_value_is_kept_and_counted(bad, expected):
    for form in ("mean", "items"):
        mean = ExactMean()
        for batch in uneven_batches(0)[:10]:
            mean.update(batch.mean(), n=len(batch)) if form == "mean" else mean.update(batch)
        poisoned = torch.tensor([1.0, bad, 2.0])
        mean.update(poisoned.mean(), n=3) if form == "mean" else mean.update(poisoned)
        assert str(mean.compute()) == expected
        assert mean.get_metrics()["nonfinite"] == 1


def test_padding_with_weight_zero_adds_nothing_not_even_its_nan():
    mean = ExactMean()
    mean.update(torch.tensor([2.0, math.nan, 4.0]), n=torch.tensor([1, 0, 1]))
    mean.update(torch.tensor(math.nan), n=0)  # an empty micro-batch: its mean over no items is NaN
    mean.update(torch.tensor(math.nan), n=torch.tensor(0))
    assert mean.get_metrics() == {"loss": 3.0, "count": 2, "nonfinite": 0}


def test_an_empty_mean_is_nan_and_reset_starts_over():
    mean = ExactMean()
    assert math.isnan(mean.compute()) and mean.get_metrics()["count"] == 0
    mean.update(torch.tensor(10.0), n=4)
    mean.reset()
    assert math.isnan(mean.compute())
    mean.update(torch.tensor([1.0, 2.0]))
    assert mean.compute() == 1.5


def test_python_and_numpy_numbers_are_values_too():
    np = pytest.importorskip("numpy")
    mean = ExactMean()
    mean.update(2.5, n=np.int64(2))
    mean.update(np.float32(1.0), n=1)
    assert mean.compute() == pytest.approx(2.0, rel=1e-15)


@pytest.mark.parametrize("call, error, message", [
    (lambda m: m.update(torch.tensor(1.0)), ValueError, r"^value=tensor of shape \(\): a batch mean needs n"),
    (lambda m: m.update(torch.tensor(1.0), n=-1), ValueError, r"^n=-1: must be a whole number >= 0$"),
    (lambda m: m.update(torch.tensor(1.0), n=True), ValueError, r"^n=True: must be a whole number >= 0$"),
    (lambda m: m.update(torch.ones(3), n=2), TypeError, r"^n=2: for 3 per-item values give n=3, or a tensor"),
    (lambda m: m.update(torch.ones(3), n=torch.ones(2)), ValueError, r"^n shape \(2,\): expected \(3,\)"),
    (lambda m: m.update(torch.tensor(1.0), n=torch.ones(2)), ValueError, r"^n shape \(2,\): expected \(\), a 0-dim"),
    (lambda m: m.update(torch.ones(3, dtype=torch.int64)), TypeError, r"^value dtype torch.int64: expected a float"),
    (lambda m: m.update("1.0", n=1), TypeError, r"^value='1.0': expected a number or a floating tensor$"),
])
def test_bad_input_is_refused_and_changes_nothing(call, error, message):
    mean = ExactMean()
    mean.update(torch.tensor(3.0), n=2)
    with pytest.raises(error, match=message):
        call(mean)
    assert mean.get_metrics() == {"loss": 3.0, "count": 2, "nonfinite": 0}


def test_update_never_reads_a_value_back_and_compute_does():
    batches = uneven_batches(1)[:20]
    mean = ExactMean()
    with count_host_reads() as reads:
        for batch in batches:
            mean.update(batch.mean(), n=len(batch))
            mean.update(batch.mean(), n=torch.tensor(len(batch)))
            mean.update(batch)
            mean.update(batch, n=batch > 5)
    assert sum(reads.values()) == 0, reads
    with count_host_reads() as reads:
        mean.compute()
    assert sum(reads.values()) == 1  # the one place that syncs: one read of the three states
    with count_host_reads() as reads:
        mean.get_metrics()
    assert sum(reads.values()) == 1


# -- token-level losses ---------------------------------------------------------------------------


def token_batches(seed: int, batches: int = 12, vocabulary: int = 50) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Language-model batches of uneven shape: logits ``[B, T, V]`` and targets padded with ``IGNORE``."""
    generator = torch.Generator().manual_seed(seed)
    made = []
    for _ in range(batches):
        rows = int(torch.randint(1, 9, (), generator=generator))
        steps = int(torch.randint(4, 30, (), generator=generator))
        logits = torch.randn(rows, steps, vocabulary, generator=generator) * 2
        targets = torch.randint(0, vocabulary, (rows, steps), generator=generator)
        lengths = torch.randint(0, steps + 1, (rows,), generator=generator)  # a row may be all padding
        targets[torch.arange(steps) >= lengths.view(-1, 1)] = IGNORE
        made.append((logits, targets))
    return made


def token_loss_reference(batches) -> float:
    """The epoch's token loss from every token at once, in float64: what the epoch value must be."""
    logits = torch.cat([b[0].reshape(-1, b[0].size(-1)) for b in batches]).double()
    targets = torch.cat([b[1].reshape(-1) for b in batches])
    return F.cross_entropy(logits, targets, ignore_index=IGNORE).item()


@pytest.mark.parametrize("seed", range(4))
def test_token_level_loss_over_uneven_batches_is_the_loss_of_every_real_token(seed):
    batches = token_batches(seed)
    per_token, batch_mean = ExactMean(), ExactMean()
    means = []
    for logits, targets in batches:
        flat_logits, flat_targets = logits.reshape(-1, logits.size(-1)).double(), targets.reshape(-1)
        losses = F.cross_entropy(flat_logits, flat_targets, ignore_index=IGNORE, reduction="none")
        per_token.update(losses, n=flat_targets != IGNORE)  # the pattern: per-token losses, real tokens weighted 1
        loss = F.cross_entropy(flat_logits, flat_targets, ignore_index=IGNORE)  # what a loop backpropagates
        batch_mean.update(loss.detach(), n=(flat_targets != IGNORE).sum())  # its mean and its token count
        means.append(loss.item())
    expected = token_loss_reference(batches)
    assert per_token.compute() == pytest.approx(expected, rel=1e-13, abs=0)
    assert batch_mean.compute() == pytest.approx(expected, rel=1e-13, abs=0)
    real = [float(m) for m in means if not math.isnan(m)]
    assert abs(math.fsum(real) / len(real) - expected) > 1e-4  # averaging batch means is wrong here


# -- gradient accumulation ------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_gradient_accumulation_over_micro_batches_of_uneven_token_counts(seed):
    """The step's loss is the token sum over the step's token count (``num_items_in_batch``), not a mean of means."""
    micro = token_batches(seed, batches=16)
    steps = [micro[i:i + 4] for i in range(0, len(micro), 4)]
    epoch = ExactMean()
    for step in steps:
        items_in_step = sum(int((t != IGNORE).sum()) for _, t in step)
        step_loss = sum(F.cross_entropy(lg.reshape(-1, lg.size(-1)).double(), t.reshape(-1), ignore_index=IGNORE,
                                        reduction="sum") for lg, t in step) / items_in_step
        assert step_loss.item() == pytest.approx(token_loss_reference(step), rel=1e-13)
        mean_of_means = [F.cross_entropy(lg.reshape(-1, lg.size(-1)).double(), t.reshape(-1), ignore_index=IGNORE)
                         for lg, t in step]
        naive = math.fsum(m.item() for m in mean_of_means if not math.isnan(m)) / len(mean_of_means)
        assert abs(naive - step_loss.item()) > 1e-6  # each micro-batch weighted alike: another number
        epoch.update(step_loss, n=items_in_step)
    assert epoch.compute() == pytest.approx(token_loss_reference(micro), rel=1e-13, abs=0)


# -- ranks ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("world", [2, 3])
def test_simulated_ranks_over_padded_shards_give_the_one_process_mean(world):
    values = torch.cat(uneven_batches(7, items=1001))
    ranks = []
    for rank in range(world):
        order, counted = rank_shard(len(values), world, rank, seed=0, epoch=0)  # padded with repeats
        mean = ExactMean()
        for rows, keep in zip(order.split(16), counted.split(16)):
            mean.update(values[rows], n=keep)
        ranks.append(mean)
    sync_simulated(ranks)
    assert ranks[0].compute() == pytest.approx(fsum_mean(values), rel=1e-14, abs=0)
    assert ranks[0].get_metrics()["count"] == len(values)


# -- the trainer ----------------------------------------------------------------------------------


def test_the_trainer_feeds_it_like_any_tracker():
    result = train(TrainConfig(preset="tiny", epochs=2), [ExactMean(), *make_trackers(["exact"])])
    exact, mean = result.histories["exact"], result.histories["exact-mean"]
    assert mean["train_loss"] == pytest.approx(exact["train_loss"], rel=1e-12, abs=0)
    assert mean["train_count"] == exact["train_total"]
    assert mean["train_nonfinite"] == [0, 0]


def test_what_the_cheat_sheet_says_of_torchmetrics_mean_metric():
    """Its weighted float64 mean is exact; its NaN check reads back twice per update; "disable" drops the weights."""
    torchmetrics = pytest.importorskip("torchmetrics")
    batches = [(torch.tensor(2.0), 16), (torch.tensor(10.0), 8)]

    def fed(strategy):
        metric = torchmetrics.MeanMetric(nan_strategy=strategy).set_dtype(torch.float64)
        with count_host_reads() as reads:
            for loss, n in batches:
                metric.update(loss, weight=n)
        return metric.compute().item(), sum(reads.values()) / len(batches)

    assert fed("warn") == (pytest.approx((2 * 16 + 10 * 8) / 24, rel=1e-15), 2.0)
    assert fed("disable") == (6.0, 0.0)  # the mean of the two batch means: the weights ignored
