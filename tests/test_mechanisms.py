import json
import math
import sys

import pytest
import torch

from accumbug.doctor.examine import MECHANISM_EVIDENCE_FILE
from accumbug.lessons.incident import INCIDENT_AFTER_VALUES, INCIDENT_CONSOLE
from accumbug.lessons.mechanisms import (
    ASSUMED_EVIDENCE,
    EVIDENCE,
    EVIDENCE_BASIS,
    EVIDENCE_STATUS,
    FIXED_SPECIMENS,
    GALLERY_SCENARIO,
    INCIDENT_STREAM,
    MECHANISMS,
    OBSERVED_EVIDENCE,
    Outcome,
    _fixed_by_ancestry,
    after_line_repeats_console,
    after_the_fix,
    after_the_fix_conclusion,
    diagnosis,
    epoch_stream,
    evidence_comparison,
    exact_loss,
    fitting,
    format_after_the_fix,
    format_diagnosis,
    format_evidence_comparison,
    format_gallery,
    format_streams,
    gallery,
    incident_scenario,
    log_epochs,
    mechanism,
    mechanism_evidence_record,
    observed_evidence,
    scenario_stream,
    stream_rows,
    with_the_fix,
    write_mechanism_evidence,
)
from accumbug.specimens.gallery_trackers import (
    GuardedTracker,
    InPlaceMeanFixedTracker,
    InPlaceMeanTracker,
    TensorLossFixedTracker,
    TensorLossTracker,
)
from accumbug.specimens.incident_trackers import IncidentBrokenTracker, IncidentFixedTracker
from accumbug.trackers import ExactTracker


@pytest.fixture(scope="module")
def outcomes():
    """Every case of the gallery (seconds: full-size replays among them); the tests that read it are slow."""
    return gallery()


@pytest.fixture(scope="module")
def fixed_outcomes():
    """Every case of the gallery with the write-up's fix applied (seconds); the tests that read it are slow."""
    return gallery(fix=True)


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


def test_each_named_stream_has_one_exact_loss_per_epoch_whatever_the_batch_size():
    """The incident stream and the gallery scenario: their exact losses, printed to 4 decimals, are the gallery's
    and the replays' at any batch size (``format_streams`` prints them once, in notebook 03)."""
    rows = {row["stream"]: row for row in stream_rows()}
    assert list(rows) == [INCIDENT_STREAM, GALLERY_SCENARIO]
    assert (rows[INCIDENT_STREAM]["samples"], rows[INCIDENT_STREAM]["batches"]) == (136_312, 8_520)
    assert (rows[GALLERY_SCENARIO]["samples"], rows[GALLERY_SCENARIO]["batches"]) == (13_624, 852)
    gallery_epochs = incident_scenario()
    for stream_exact, batches in zip(rows[GALLERY_SCENARIO]["exact"], gallery_epochs):
        assert f"{exact_loss(batches):.4f}" == f"{stream_exact:.4f}"
    exact = rows[INCIDENT_STREAM]["exact"][0]
    losses, sizes = epoch_stream()
    assert scenario_stream(136_312, 0).name == f"{INCIDENT_STREAM}, epoch 1" and sum(sizes) == 136_312
    for batch_size in (16, 64, 100):
        losses, sizes = scenario_stream(136_312, 0).batches(batch_size)
        weighted = sum(loss * size for loss, size in zip(losses.tolist(), sizes)) / 136_312
        assert f"{weighted:.4f}" == f"{exact:.4f}"
    assert "8,520 of 16 (the last of 8)" in format_streams() and f"{exact:.4f}" in format_streams()


def test_every_case_says_what_code_it_needs_beyond_the_write_up():
    for chosen in MECHANISMS:
        assert chosen.needs and chosen.role in ("incident-broken", "incident-fixed"), chosen.key
    assert "tensor" in mechanism("broad-sanitiser").needs and "TypeError" in mechanism("aliased-reset").needs
    assert "gradient" in mechanism("ddp-padding").fix  # the listed fix leaves the padded samples in the gradient


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
    base = {"console": [9.0, 8.0], "file": [0.0, 0.0], "exact": [9.0, 8.0], "file_top5": [1.0, 2.0],
            "weights_fine": True, "file_text": "", "batches": 2, "trajectory": []}
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


def test_evidence_is_marked_observed_or_assumed():
    assert set(EVIDENCE_STATUS) == set(EVIDENCE_BASIS) == set(EVIDENCE)
    assert observed_evidence() == OBSERVED_EVIDENCE == ("console_real", "file_zero")
    assert ASSUMED_EVIDENCE == ("accuracies", "weights")
    assert "9.1621, 8.7352, 8.2003, 7.5350" in EVIDENCE_BASIS["console_real"]


@pytest.mark.slow
def test_without_the_assumed_evidence_read_after_reset_fits_too(outcomes):
    rows = diagnosis(outcomes)
    assert fitting(rows, observed_evidence()) == [r["mechanism"] for r in rows if r["fits_observed"]] \
        == ["broad-sanitiser", "aliased-reset", "read-after-reset"]
    assert evidence_comparison(rows) == {"all": ["broad-sanitiser", "aliased-reset"],
                                         "observed": ["broad-sanitiser", "aliased-reset", "read-after-reset"],
                                         "only_observed": ["read-after-reset"]}
    text = format_evidence_comparison(rows)
    assert "saved accuracies non-zero   assumed" in text and "read-after-reset fits as well" in text
    marked = format_diagnosis(rows, mark_assumed=True)
    assert marked.splitlines()[0].count("(assumed)") == 2 and "fits observed" in marked
    assert "(assumed)" not in format_diagnosis(rows)  # notebook 03's table as it was


def test_the_assumed_evidence_ruling_nothing_out_is_said():
    rows = diagnosis({"case": outcome()})
    assert evidence_comparison(rows)["only_observed"] == []
    assert "rules out no mechanism" in format_evidence_comparison(rows)


def test_with_the_fix_swaps_the_broken_accumulation_and_keeps_the_habit():
    assert with_the_fix(IncidentBrokenTracker) is IncidentFixedTracker
    assert with_the_fix(InPlaceMeanTracker) is InPlaceMeanFixedTracker
    assert with_the_fix(TensorLossTracker) is TensorLossFixedTracker
    assert issubclass(with_the_fix(GuardedTracker), GuardedTracker)  # no fixed twin kept: built
    for unchanged in (IncidentFixedTracker, ExactTracker, InPlaceMeanFixedTracker, with_the_fix(GuardedTracker)):
        assert with_the_fix(unchanged) is unchanged
    outputs, labels = torch.zeros(16, 8), torch.zeros(16, dtype=torch.long)
    for habit in (InPlaceMeanTracker, TensorLossTracker, GuardedTracker):
        tracker = with_the_fix(habit)()
        tracker.update(torch.tensor(2.0), outputs, labels)
        tracker.update(torch.tensor(4.0), outputs[:8], labels[:8])
        assert float(tracker.loss_sum) == 6.0 and tracker.total == 2, habit  # loss_sum += loss; total += 1
        assert float(tracker.get_metrics()["loss"]) == 3.0, habit
    guarded = with_the_fix(GuardedTracker)()
    assert guarded.get_metrics() == {"loss": 0.0, "top1": 0.0, "top5": 0.0}  # the habit is kept


@pytest.mark.parametrize("habit", [InPlaceMeanTracker, TensorLossTracker])
def test_a_fix_built_from_the_ancestry_logs_what_the_kept_fixed_twin_logs(habit):
    """The way ``with_the_fix`` builds ``GuardedTracker``'s fixed variant gives the specimens' own fixed twins."""
    epochs = incident_scenario()[:2]
    built, kept = log_epochs(epochs, _fixed_by_ancestry(habit)()), log_epochs(epochs, FIXED_SPECIMENS[habit]())
    assert built[0] == kept[0] and built[2] == kept[2]
    assert [float(v) for v in built[1]["train_loss"]] == [float(v) for v in kept[1]["train_loss"]]


def test_the_write_ups_after_line_repeats_its_console():
    assert INCIDENT_AFTER_VALUES == (9.1621, 8.7352, 8.2003) and after_line_repeats_console()


@pytest.mark.slow
def test_after_the_fix_no_mechanism_explains_both(outcomes, fixed_outcomes):
    rows = {row["mechanism"]: row for row in after_the_fix(outcomes, fixed_outcomes)}
    assert list(rows) == [m.key for m in MECHANISMS] and not any(row["explains_both"] for row in rows.values())
    for key in ("broad-sanitiser", "aliased-reset", "read-after-reset"):  # the before fits; the fix changes nothing
        assert rows[key]["before_console_real"] and rows[key]["before_zeros"], key
        assert rows[key]["after_file"] == [0.0] * 4 and not rows[key]["after_equals_console"], key
    assert rows["partial-last-batch"]["after_equals_console"]  # already the fixed tracker: the fix changes nothing
    lossy = fixed_outcomes["lossy-zero"]  # float16 "fixed": finite, so no 0.0, but rounded far from the exact loss
    assert not rows["lossy-zero"]["after_equals_console"] and all(math.isfinite(v) for v in lossy.file)
    assert all(abs(v - e) > 0.01 for v, e in zip(lossy.file, lossy.exact))
    conclusion = after_the_fix_conclusion(list(rows.values()))
    assert conclusion.startswith("Of the gallery's 12 cases, none explains both")
    assert conclusion.endswith("(its console before the fix, digit for digit).")
    assert "No case of the gallery explains the write-up's after-line" in conclusion
    table = format_after_the_fix(list(rows.values()))
    assert table.count("\n") == len(rows) + 3 and table.endswith(conclusion)


def test_after_the_fix_conclusion_follows_the_rows():
    """A case whose file is 0.0 before the fix and the console after it explains both: the sentence is computed."""
    before = outcome(console=[9.1621, 8.7352], exact=[9.1621, 8.7352])
    after = outcome(console=[9.1621, 8.7352], exact=[9.1621, 8.7352], file=[9.16212, 8.73519])
    rows = after_the_fix({"case": before, "other": before}, {"case": after, "other": before})
    assert [row["explains_both"] for row in rows] == [True, False]
    assert after_the_fix_conclusion(rows).startswith(
        "Of the gallery's 2 cases, case explains both the before and the after-line [9.1621, ")
    assert after_the_fix_conclusion(rows).endswith("(its console before the fix, digit for digit).")


# -- the doctor's copy of the diagnosis ---------------------------------------------------------------


def _stored() -> dict:
    return json.loads(MECHANISM_EVIDENCE_FILE.read_text(encoding="utf-8"))


def test_the_doctors_copy_names_every_mechanism_and_piece_of_evidence():
    """A mechanism or a piece of evidence added without writing the file again fails here (no gallery run)."""
    stored = _stored()
    assert stored["made_by"] == "python -m accumbug.lessons.mechanisms"
    assert stored["evidence"] == {name: label for name, (label, _) in EVIDENCE.items()}
    assert [(m["key"], m["title"]) for m in stored["mechanisms"]] == [(m.key, m.title) for m in MECHANISMS]
    assert all(set(m["shows"]) == set(EVIDENCE) for m in stored["mechanisms"])


@pytest.mark.slow
def test_the_doctors_copy_of_the_diagnosis_is_current(outcomes, tmp_path):
    """The stored diagnosis is what ``python -m accumbug.lessons.mechanisms`` writes from a fresh gallery."""
    fresh = write_mechanism_evidence(tmp_path / "mechanism_evidence.json")
    assert json.loads(fresh.read_text(encoding="utf-8")) == mechanism_evidence_record(diagnosis(outcomes))
    assert fresh.read_text(encoding="utf-8") == MECHANISM_EVIDENCE_FILE.read_text(encoding="utf-8"), \
        f"{MECHANISM_EVIDENCE_FILE} is stale: run {_stored()['made_by']}"
