import math
import sys

import pytest

from accumbug.lessons.incident import INCIDENT_CONSOLE
from accumbug.lessons.mechanisms import (
    EVIDENCE,
    MECHANISMS,
    Outcome,
    diagnosis,
    exact_loss,
    fitting,
    format_diagnosis,
    format_gallery,
    gallery,
    incident_scenario,
    log_epochs,
    mechanism,
)
from accumbug.specimens.gallery_trackers import InPlaceMeanTracker


@pytest.fixture(scope="module")
def outcomes():
    """Every case of the gallery (seconds: full-size replays among them); the tests that read it are slow."""
    return gallery()


def case(key: str) -> Outcome:
    """One case of the gallery, run alone (``gallery`` keeps each case once per process)."""
    return gallery([key])[key]


@pytest.mark.slow
def test_every_mechanism_has_a_case_with_four_epochs(outcomes):
    assert list(outcomes) == [m.key for m in MECHANISMS] and len(MECHANISMS) >= 10
    for key, outcome in outcomes.items():
        assert len(outcome.console) == len(outcome.file) == len(outcome.exact) == len(INCIDENT_CONSOLE) == 4, key
        assert mechanism(key).cause and mechanism(key).fix


def test_scenario_follows_the_write_ups_console():
    epochs = incident_scenario()
    assert [len(e) for e in epochs] == [852] * 4
    for batches, printed in zip(epochs, INCIDENT_CONSOLE):
        assert exact_loss(batches) == pytest.approx(printed["loss"], rel=2e-3)


@pytest.mark.slow
def test_half_precision_cases(outcomes):
    overflow, stall, bf16 = outcomes["float16-overflow"], outcomes["float16-stall"], outcomes["bfloat16-stall"]
    assert all(c == math.inf for c in overflow.console + overflow.file)
    assert stall.trajectory[-1] == 32768.0 and stall.batches == 8520
    assert stall.console[0] == pytest.approx(32768 / 8520, rel=1e-3) and stall.console[0] < 0.5 * stall.exact[0]
    assert bf16.trajectory[-1] == 65536.0 and all(c < 0.6 * e for c, e in zip(bf16.console, bf16.exact))


@pytest.mark.slow
def test_serialiser_cases_turn_the_same_inf_into_different_files(outcomes):
    assert outcomes["lossy-zero"].file == [0.0] * 4
    assert outcomes["nan-to-num"].file == [sys.float_info.max] * 4
    assert outcomes["float16-overflow"].file == [math.inf] * 4  # the strict file keeps it


def test_nonfinite_batch_poisons_only_its_epoch():
    nonfinite = case("nonfinite-batch")
    assert [math.isnan(v) for v in nonfinite.console] == [False, True, False, False]
    assert math.isnan(nonfinite.file[1]) and nonfinite.weights_fine


def test_cases_that_spoil_the_file_after_the_console():
    for key in ("broad-sanitiser", "aliased-reset", "read-after-reset"):
        spoilt = case(key)
        assert spoilt.file == [0.0] * 4, key
        assert spoilt.console == [round(e, 4) for e in spoilt.exact], key
    assert case("read-after-reset").file_top5 == [0.0] * 4
    assert all(v > 0 for v in case("aliased-reset").file_top5)


def test_in_place_mean_tracker_hands_out_its_buffer():
    tracker = InPlaceMeanTracker()
    console, history, _ = log_epochs(incident_scenario()[:2], tracker)
    assert history["train_loss"][0] is history["train_loss"][1] is tracker.mean
    assert float(tracker.mean) == 0.0 and console[0] > 9


def test_means_of_means():
    partial, accumulation = case("partial-last-batch"), case("grad-accumulation")
    assert all(c != round(e, 4) and abs(c - e) < 1e-3 for c, e in zip(partial.console, partial.exact))
    assert all(c > e + 0.05 for c, e in zip(accumulation.console, accumulation.exact))
    assert not accumulation.weights_fine and not case("ddp-padding").weights_fine


def test_ddp_console_is_rank_zeros_shard():
    ddp = case("ddp-padding")
    assert ddp.batches == 13  # 1,032 samples over 5 ranks: 207 each, padded
    assert all(round(f, 4) != c for f, c in zip(ddp.file, ddp.console))


@pytest.mark.slow
def test_diagnosis_finds_the_mechanisms_that_fit_all_the_evidence(outcomes):
    rows = diagnosis(outcomes)
    assert fitting(rows) == ["broad-sanitiser", "aliased-reset"]
    assert fitting(rows, ("console_real", "file_zero")) == ["broad-sanitiser", "aliased-reset", "read-after-reset"]
    assert {r["mechanism"] for r in rows if r["file_zero"]} == {"lossy-zero", "broad-sanitiser", "aliased-reset",
                                                                 "read-after-reset"}
    table = format_diagnosis(rows)
    assert table.count("\n") == len(rows) + 1 and "fits all" in table


def outcome(**changes) -> Outcome:
    base = dict(console=[9.0, 8.0], file=[0.0, 0.0], exact=[9.0, 8.0], file_top5=[1.0, 2.0], weights_fine=True,
                file_text="", batches=2, trajectory=[])
    return Outcome(**{**base, **changes})


@pytest.mark.parametrize("changes, failing", [
    ({}, set()),
    ({"console": [9.0, math.inf]}, {"console_real"}),
    ({"console": [9.0, 8.2]}, {"console_real"}),  # 2.5 % off is not "real"
    ({"file": [0.0, 8.0]}, {"file_zero"}),
    ({"file_top5": [0.0, 2.0]}, {"accuracies"}),
    ({"weights_fine": False}, {"weights"}),
])
def test_each_piece_of_evidence_can_fail(changes, failing):
    row = diagnosis({"case": outcome(**changes)})[0]
    assert {name for name in EVIDENCE if not row[name]} == failing and row["fits"] == (not failing)


@pytest.mark.slow
def test_gallery_text_names_every_case(outcomes):
    text = format_gallery(outcomes)
    assert all(f"{m.key} -- {m.title}" in text for m in MECHANISMS)
    assert "loss_sum stalls at 32,768 from batch" in text


def test_unknown_mechanism_is_a_clear_error():
    with pytest.raises(ValueError, match="mechanism='nope': unknown; allowed: float16-overflow"):
        mechanism("nope")
