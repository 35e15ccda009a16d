"""Lightning's epoch metrics as ``lightning_cases`` measures them, against values recomputed from the data.

Each expected value is worked out here from the data set alone (the exact mean, the mean of
batch means, the padded order of a seeded shuffle), so a test fails when Lightning or the case
code starts doing something else. The run itself (about 30 s: Lightning's import, three fits,
a two-rank DDP subprocess) happens once for the module.
"""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path

import pytest
import torch

from accumbug.lessons.wild.data import uneven_data
from accumbug.lessons.wild.lightning_cases import METRIC, STEPS, lightning_cases, saved_value, shown_value
from accumbug.lessons.wild.lightning_ddp import RANKS, SAMPLES, ddp_data, padding_sample

RELATIVE = 2e-6  # float32 sums inside Lightning


def shown(value: float) -> float:
    """What the tqdm bar shows for ``value``: three significant digits."""
    return float(f"{value:.3g}")


def padded_order() -> list[int]:
    """The training order of DistributedSampler under Lightning, worked out by hand: a seed-0 permutation, its
    head repeated at the end to reach a multiple of the ranks."""
    order = torch.randperm(SAMPLES, generator=torch.Generator().manual_seed(0)).tolist()
    return order + order[:(-SAMPLES) % RANKS]


@pytest.fixture(scope="module")
def run(wild, tmp_path_factory):
    """Every case, once; the folder they wrote in, and what they printed (nothing, they should)."""
    wild("lightning")
    out = tmp_path_factory.mktemp("wild")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        cases = lightning_cases(out)
    return cases, out, printed.getvalue()


# -- quick: the helpers ------------------------------------------------------------------------------


def test_shown_value_reads_the_number_the_bar_shows():
    line = "Epoch 0: 100%|##########| 33/33 [00:00<00:00, 92.82it/s, v_num=0, loss_sync=1.110, loss_local=1.050]"
    assert shown_value(line, "loss_sync") == 1.11 and shown_value(line, "loss_local") == 1.05
    assert shown_value(line, "sync") is None and shown_value("", METRIC) is None
    assert shown_value("train_loss=2.5e+03]", METRIC) == 2500.0


def test_saved_value_reads_the_epoch_row(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,step,train_loss,val_loss\n0,9,,0.5\n0,9,1.25,\n", encoding="utf-8")
    assert saved_value(path, METRIC) == 1.25 and saved_value(path, "val_loss") == 0.5
    assert saved_value(path, "other") is None


def test_the_ddp_outlier_is_the_sample_the_padding_repeats():
    order = padded_order()
    assert len(order) == SAMPLES + 1 and order[-1] == order[0] == padding_sample()
    assert ddp_data().outliers == (padding_sample(),) and len(ddp_data()) == SAMPLES


# -- slow: the cases -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_every_case_is_lightnings_and_prints_nothing(wild, run):
    lightning = wild("lightning")
    cases, out, printed = run
    assert printed == ""
    assert len(cases) == 6 and all(c.framework == "Lightning" and c.version == lightning.__version__ for c in cases)
    for case in cases:
        assert case.files and all(Path(f).is_file() and Path(out, "lightning") in Path(f).parents for f in case.files)
        assert case.displayed is not None and case.saved is not None and case.note and "Epoch 0" in case.console


@pytest.mark.slow
def test_ordinary_batches_are_weighted_by_their_size(wild, run):
    wild("lightning")
    case = run[0][0]
    data = uneven_data()
    assert case.case.startswith("(B, F)")
    assert case.saved == pytest.approx(data.exact(), rel=RELATIVE) and case.exact == data.exact()
    assert case.displayed == shown(data.exact()) and f"{METRIC}={case.displayed:.3f}" in case.console


@pytest.mark.slow
def test_sequence_first_batches_weigh_the_same_unless_batch_size_is_given(wild, run):
    wild("lightning")
    inferred, given = run[0][1:3]
    data = uneven_data()
    assert f"T={STEPS}" in inferred.case and "inferred" in inferred.case and "batch_size=B" in given.case
    assert inferred.saved == pytest.approx(data.mean_of_batch_means(), rel=RELATIVE)
    assert inferred.displayed == shown(data.mean_of_batch_means())
    assert given.saved == pytest.approx(data.exact(), rel=RELATIVE) and given.displayed == shown(data.exact())
    assert inferred.exact == given.exact == data.exact()


@pytest.mark.slow
def test_ddp_sync_dist_counts_the_padding_duplicate(wild, run):
    wild("lightning")
    case = run[0][3]
    data = ddp_data()
    counted_twice = data.losses()[padded_order()].mean().item()
    assert "sync_dist=True" in case.case and case.exact == pytest.approx(data.exact(), rel=1e-12)
    assert case.saved == pytest.approx(counted_twice, rel=RELATIVE) and case.displayed == shown(counted_twice)
    assert f"sample {padding_sample()}" in case.note and case.upstream == "Lightning-AI/pytorch-lightning#5060"


@pytest.mark.slow
def test_ddp_unequal_shards_floor_the_mean_synced_batch_size(wild, run):
    wild("lightning")
    case = run[0][4]
    data = ddp_data()
    floored = data.exact() * (SAMPLES / RANKS) / math.floor(SAMPLES / RANKS)
    assert "unequal shards" in case.case and case.upstream == "Lightning-AI/pytorch-lightning#21859"
    assert case.saved == pytest.approx(floored, rel=RELATIVE) and case.displayed == shown(floored)
    assert case.saved_error == pytest.approx(1 / (SAMPLES - 1), rel=1e-3)


@pytest.mark.slow
def test_ddp_without_sync_dist_logs_rank_zeros_shard(wild, run):
    wild("lightning")
    case = run[0][5]
    data = ddp_data()
    rank_zero = padded_order()[0::RANKS]
    assert "sync_dist=False" in case.case and case.upstream == ""
    assert case.saved == pytest.approx(data.exact(rank_zero), rel=RELATIVE)
    assert case.displayed == shown(data.exact(rank_zero))
