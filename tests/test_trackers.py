import math

import pytest
import torch
import torchmetrics
from test_layout import every_tracker

from accumbug.data import preset
from accumbug.distributed import sync_simulated
from accumbug.lessons.streams import batch_means, batch_sizes, replay, sample_losses
from accumbug.registry import make_tracker, make_trackers
from accumbug.specimens.incident_trackers import ACCUMULATORS, IncidentBrokenTracker, IncidentFixedTracker
from accumbug.trackers import ExactTracker, MetricTracker


def feed(tracker, stream):
    for loss, outputs, labels in stream:
        tracker.update(loss, outputs, labels)
    return tracker.get_metrics()


def test_incident_broken_python_is_the_sample_weighted_mean(stream, per_sample_mean):
    weighted = sum(loss.item() * len(labels) for loss, _, labels in stream) / sum(len(l) for _, _, l in stream)
    loss = feed(IncidentBrokenTracker("python"), stream)["loss"]
    assert loss == pytest.approx(weighted, rel=1e-12)
    # equal to the float64 per-sample mean up to the float32 rounding of each batch mean
    assert loss == pytest.approx(per_sample_mean, rel=1e-6)


def test_incident_fixed_python_is_the_mean_of_batch_means_and_is_off(stream, per_sample_mean):
    mean_of_means = sum(loss.item() for loss, _, _ in stream) / len(stream)
    loss = feed(IncidentFixedTracker("python"), stream)["loss"]
    assert loss == pytest.approx(mean_of_means, rel=1e-12)
    assert abs(loss - per_sample_mean) / per_sample_mean > 1e-3


def test_accuracies_are_the_same_for_every_tracker(stream):
    metrics = [feed(t, stream) for t in (IncidentBrokenTracker(), IncidentFixedTracker(), ExactTracker())]
    for key in ("top1", "top5"):
        assert metrics[0][key] == metrics[1][key] == metrics[2][key]
    assert 0 < metrics[0]["top1"] < metrics[0]["top5"] < 100


def test_exact_tracker_matches_torchmetrics(stream):
    classes = stream[0][1].shape[1]
    mean = torchmetrics.MeanMetric().set_dtype(torch.float64)
    top1 = torchmetrics.classification.MulticlassAccuracy(classes, top_k=1, average="micro").set_dtype(torch.float64)
    top5 = torchmetrics.classification.MulticlassAccuracy(classes, top_k=5, average="micro").set_dtype(torch.float64)
    for loss, outputs, labels in stream:
        mean.update(loss.double(), weight=len(labels))
        top1.update(outputs, labels)
        top5.update(outputs, labels)
    ours = feed(ExactTracker(), stream)
    assert ours["loss"] == pytest.approx(mean.compute().item(), rel=1e-9)
    assert ours["top1"] == pytest.approx(top1.compute().item() * 100, rel=1e-9)
    assert ours["top5"] == pytest.approx(top5.compute().item() * 100, rel=1e-9)
    assert ours["samples"] == 1032 and ours["nonfinite_batches"] == 0


def test_exact_tracker_counts_a_nonfinite_batch_and_keeps_it(stream):
    tracker = ExactTracker()
    stream[3] = (torch.tensor(float("nan")), stream[3][1], stream[3][2])
    metrics = feed(tracker, stream)
    assert metrics["nonfinite_batches"] == 1 and math.isnan(metrics["loss"])


def test_exact_tracker_state_does_not_grow(stream):
    tracker = ExactTracker()

    def state_sizes():
        return {k: v.numel() for k, v in vars(tracker).items() if isinstance(v, torch.Tensor)}

    feed(tracker, stream)
    after_one_epoch = state_sizes()
    for _ in range(4):
        feed(tracker, stream)
    assert state_sizes() == after_one_epoch
    # the comparison workspace holds one full batch of outputs; the sums themselves are a dozen numbers
    assert after_one_epoch.pop("_workspace") == stream[0][1].numel()
    assert sum(after_one_epoch.values()) <= 16
    assert tracker.total == 5 * 1032 and tracker.batches == 5 * 65
    tracker.reset()
    assert int(tracker.total) == 0 and math.isnan(tracker.get_metrics()["loss"])


def test_incident_trackers_keep_the_incidents_targets_list(stream):
    tracker = IncidentFixedTracker()
    feed(tracker, stream)
    assert len(tracker.targets) == 1032 and tracker.total == 65


FULL = preset("full")


@pytest.fixture(scope="module")
def full_stream():
    sizes = batch_sizes(FULL)
    return batch_means(sample_losses(FULL.samples, 9.3, 8.9, 0.05, seed=0), sizes), sizes


def test_full_preset_stream_shape(full_stream):
    _, sizes = full_stream
    assert len(sizes) == 8520 and sizes[-1] == 8 and sum(sizes) == 136_312


def test_float16_broken_overflows_on_the_full_stream(full_stream):
    losses, sizes = full_stream
    trajectory = replay(IncidentBrokenTracker("float16"), losses, sizes)
    first = next(i for i, v in enumerate(trajectory) if not math.isfinite(v))
    assert trajectory[first] == math.inf and trajectory[first - 1] <= 65504
    assert 420 <= first <= 450  # 65,504 / (9.2 * 16) = 445 batches; float16 rounding of 146-152 makes it sooner


def test_float16_fixed_stalls_at_32768(full_stream):
    losses, sizes = full_stream
    tracker = IncidentFixedTracker("float16")
    trajectory = replay(tracker, losses, sizes)
    assert trajectory[-1] == 32768.0
    stall = trajectory.index(32768.0)
    assert stall < 4000 and all(v == 32768.0 for v in trajectory[stall:])
    assert tracker.get_metrics()["loss"] == pytest.approx(32768 / 8520, rel=1e-3)


@pytest.mark.parametrize("kind, stall", [("incident-broken", 65536.0), ("incident-fixed", 4096.0)])
def test_bfloat16_stalls_without_overflow(full_stream, kind, stall):
    losses, sizes = full_stream
    trajectory = replay(make_tracker(f"{kind}:bfloat16"), losses, sizes)
    assert trajectory[-1] == stall and all(math.isfinite(v) for v in trajectory)


@pytest.mark.parametrize("accumulator", ["python", "float64"])
def test_wide_accumulators_stay_exact_on_the_full_stream(full_stream, accumulator):
    losses, sizes = full_stream
    weighted = sum(l * n for l, n in zip(losses.double().tolist(), sizes)) / sum(sizes)
    tracker = IncidentBrokenTracker(accumulator)
    replay(tracker, losses, sizes)
    assert tracker.get_metrics()["loss"] == pytest.approx(weighted, rel=1e-12)


def test_auto_accumulator_follows_the_outputs_dtype():
    tracker = IncidentBrokenTracker("auto")
    tracker.update(torch.tensor(9.14), torch.zeros(16, 5, dtype=torch.float16), torch.zeros(16, dtype=torch.int64))
    assert tracker.loss_sum.dtype == torch.float16 and float(tracker.loss_sum) == pytest.approx(146.25)


@pytest.mark.parametrize("accumulator", ACCUMULATORS)
def test_every_accumulator_accepts_a_float_or_a_tensor(accumulator):
    for loss in (2.5, torch.tensor(2.5)):
        tracker = IncidentFixedTracker(accumulator)
        tracker.update(loss, torch.zeros(4, 5), torch.zeros(4, dtype=torch.int64))
        assert tracker.get_metrics()["loss"] == 2.5


@pytest.mark.parametrize("bad", ["float8", "int64", "", "Float16"])
def test_unknown_accumulator_is_a_clear_error(bad):
    with pytest.raises(ValueError, match=rf"accumulator='{bad}': unknown; allowed: python, float64"):
        IncidentBrokenTracker(bad)


@pytest.mark.parametrize("name, message", [
    ("nope", "tracker='nope': unknown"),
    ("exact:float16", "exact always accumulates in float64"),
    ("incident-fixed:float8", "accumulator='float8': unknown"),
])
def test_make_tracker_rejects_bad_names(name, message):
    with pytest.raises(ValueError, match=message):
        make_tracker(name)


def test_make_tracker_names():
    assert make_tracker("incident-broken").name == "incident-broken:python"
    assert make_tracker("incident-fixed:float16").accumulator == "float16"
    assert isinstance(make_tracker("exact"), ExactTracker)


def test_exact_tracker_rejects_fewer_than_five_classes():
    with pytest.raises(ValueError, match="classes >= 5"):
        ExactTracker().update(1.0, torch.zeros(4, 3), torch.zeros(4, dtype=torch.int64))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_exact_tracker_update_never_syncs_on_cuda():
    tracker = ExactTracker()
    outputs = torch.randn(16, 7120, device="cuda")
    labels = torch.randint(0, 7120, (16,), device="cuda")
    loss = torch.nn.functional.cross_entropy(outputs, labels)
    tracker.update(loss, outputs, labels)  # first call moves the state to the device
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(10):
            tracker.update(loss, outputs, labels)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert tracker.get_metrics()["samples"] == 176


def topk_rank_hits(outputs, labels):
    """Hits at each of the 5 ranks, the way torchmetrics and the incident count them: from ``topk``."""
    found = outputs.topk(5, 1).indices.eq(labels.view(-1, 1))
    return found.sum(0).tolist()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_exact_tracker_hits_equal_topk_at_every_rank(dtype):
    generator = torch.Generator().manual_seed(3)
    tracker = ExactTracker()
    expected = [0] * 5
    for rows in (16, 16, 7):  # a partial last batch reuses part of the workspace
        # distinct whole numbers per row (exact in every dtype, so topk's order is unambiguous)
        outputs = torch.rand(rows, 40, generator=generator).argsort(1).to(dtype)
        labels = outputs.topk(8, 1).indices[torch.arange(rows), torch.arange(rows) % 8]  # ranks 0..7
        tracker.update(torch.tensor(1.0), outputs, labels)
        expected = [a + b for a, b in zip(expected, topk_rank_hits(outputs, labels))]
    assert tracker.rank_hits.tolist() == expected and all(expected)


def test_exact_tracker_ties_count_for_the_label_and_nan_ranks_first():
    outputs = torch.tensor([[1.0, 1.0, 1.0, 1.0, 1.0, 1.0],  # all tied: the label is top-1
                            [float("nan"), 2.0, 1.0, 0.0, 0.0, 0.0],  # a NaN above the label's 2.0: rank 1
                            [0.0, float("nan"), 3.0, 0.0, 0.0, 0.0]])  # the label's own output is NaN: no hit
    labels = torch.tensor([4, 1, 1])
    tracker = ExactTracker()
    tracker.update(torch.tensor(1.0), outputs, labels)
    assert tracker.rank_hits.tolist() == [1, 1, 0, 0, 0]
    assert tracker.get_metrics()["top5"] == pytest.approx(2 / 3 * 100)


def test_exact_tracker_follows_a_change_of_class_count():
    tracker = ExactTracker()
    wide = torch.zeros(4, 50)
    wide[:, 7] = 1.0
    tracker.update(torch.tensor(1.0), wide, torch.full((4,), 7))
    narrow = torch.zeros(4, 6)
    narrow[:, 2] = 1.0
    tracker.update(torch.tensor(1.0), narrow, torch.tensor([2, 2, 0, 0]))  # label 0 sits under one output: rank 1
    assert tracker.rank_hits.tolist() == [6, 2, 0, 0, 0]


class Counting(MetricTracker):
    """A tracker with one state of each kind: a tensor, a Python number, a list."""

    kind = "counting"

    def __init__(self):
        super().__init__()
        self.add_state("loss_sum", torch.zeros((), dtype=torch.float64), "sum")
        self.add_state("total", 0)
        self.add_state("sizes", [], "local")

    def update(self, loss, outputs, labels):
        self.loss_sum += loss * len(labels)
        self.total += len(labels)
        self.sizes.append(len(labels))

    def get_metrics(self):
        return {"loss": float(self.loss_sum / self.total) if self.total else math.nan}


def test_metric_tracker_reset_restores_fresh_copies_of_the_defaults(stream):
    tracker = Counting()
    assert tracker.name == "counting" and tracker.state_reductions() == {"loss_sum": "sum", "total": "sum",
                                                                          "sizes": "local"}
    feed(tracker, stream)
    sizes = tracker.sizes
    tracker.loss_sum.add_(1.0)  # in place: must not reach the default
    tracker.reset()
    assert float(tracker.loss_sum) == 0.0 and tracker.total == 0 and tracker.sizes == []
    assert tracker.sizes is not sizes and len(sizes) == 65
    assert feed(tracker, stream)["loss"] == feed(Counting(), stream)["loss"]


def test_add_state_rejects_an_unknown_reduction():
    with pytest.raises(ValueError, match="reduce='max': unknown; allowed: sum, mean, local"):
        Counting().add_state("largest", 0.0, "max")


@pytest.mark.parametrize("default, kind", [([], "list"), ({}, "dict"), (None, "NoneType"), (True, "bool"),
                                            ("0", "str"), (torch.zeros(2, dtype=torch.bool), "Tensor")])
@pytest.mark.parametrize("reduce", ["sum", "mean"])
def test_add_state_refuses_a_default_its_reduction_cannot_combine(default, kind, reduce):
    """Refused when declared, not at the end of the first epoch under torchrun (a TypeError there)."""
    tracker = Counting()
    with pytest.raises(ValueError) as refused:
        tracker.add_state("values", default, reduce)
    assert str(refused.value) == (
        f"default={default!r} of state 'values': a {kind} cannot be combined across ranks "
        f"(reduce={reduce!r}); allowed: a number (int or float), or a torch tensor of numbers (not bool), "
        "or reduce='local' for a state each rank keeps to itself")
    assert "values" not in tracker.state_reductions() and not hasattr(tracker, "values")


def test_add_state_keeps_anything_local_and_every_reducible_default_syncs():
    """What add_state accepts for sum and mean is what sync_states combines: two simulated ranks add them."""
    trackers = []
    for rank in range(2):
        tracker = Counting()
        tracker.add_state("seen", [], "local")
        for name, default in (("count", 0), ("share", 0.0), ("scalar", torch.zeros(())),
                              ("counts", torch.zeros(3, dtype=torch.int64))):
            tracker.add_state(name, default, "sum")
        tracker.add_state("mean_share", 0.0, "mean")
        tracker.count, tracker.share, tracker.mean_share = rank + 1, 0.5, float(rank)
        tracker.scalar.add_(2.0)
        tracker.counts.add_(rank)
        trackers.append(tracker)
    sync_simulated(trackers)
    for tracker in trackers:
        assert (tracker.count, tracker.share, tracker.mean_share) == (3, 1.0, 0.5)
        assert type(tracker.count) is int and float(tracker.scalar) == 4.0
        assert tracker.counts.tolist() == [1, 1, 1]
        assert tracker.seen == []


def test_every_tracker_of_the_package_declares_states_it_can_reduce():
    for tracker in every_tracker():
        for name, reduce in tracker.state_reductions().items():
            tracker.add_state(name, getattr(tracker, name), reduce)  # declared again: accepted again


def test_declared_reductions_of_the_exact_and_the_incidents_trackers():
    assert set(ExactTracker().state_reductions().values()) == {"sum"}  # ranks may add every state
    assert {"loss_sum", "total"} <= set(ExactTracker().state_reductions())
    assert set(IncidentBrokenTracker().state_reductions().values()) == {"local"}  # never reduced, as in the incident


def test_make_trackers_makes_fresh_trackers_and_passes_objects_through():
    exact = ExactTracker()
    made = make_trackers(["incident-fixed:float16", exact, "naive-rank0", "exact"])
    assert made[1] is exact and made[3] is not exact
    assert [t.name for t in made] == ["incident-fixed:float16", "exact", "naive-rank0", "exact"]


def test_exact_tracker_leaves_out_rows_not_counted(stream):
    """Per-sample losses with counted= give the batch-mean result of the counted rows alone."""
    masked, subset = ExactTracker(), ExactTracker()
    for _, outputs, labels in stream:
        losses = torch.nn.functional.cross_entropy(outputs, labels, reduction="none")
        counted = torch.arange(len(labels)) % 3 != 0
        masked.update(losses, outputs, labels, counted=counted)
        subset.update(losses[counted], outputs[counted], labels[counted], counted=None)
    got, expected = masked.get_metrics(), subset.get_metrics()
    assert got["loss"] == pytest.approx(expected["loss"], rel=1e-12)
    assert {k: v for k, v in got.items() if k != "loss"} == {k: v for k, v in expected.items() if k != "loss"}
    assert masked.total == sum(int((torch.arange(len(l)) % 3 != 0).sum()) for _, _, l in stream)
