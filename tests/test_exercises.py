"""The exercises: their check cells fail on the starting code and pass on the solutions.

The notebooks' own code cells are run here (IPython magics left out), so what is tested is
what a learner runs. A solved tracker speaks the package's tracker protocol, so it is also
handed to ``train()`` as it is, beside the exact tracker, and its saved history must equal
the exact one. The checks are also tried on the specimens, each wrong in a known way.
"""

import contextlib
import functools
import io
import json
from pathlib import Path

import nbformat
import pytest
import torch

from accumbug.config import TrainConfig
from accumbug.history import dumps_history, loads_history
from accumbug.lessons.exercises import (
    FLOAT16_MAX,
    PREDICTED,
    VERDICTS,
    check_accumulator_choice,
    check_epoch_loss,
    check_rank_reduction,
    check_serialiser,
    float16_overflow,
)
from accumbug.registry import make_tracker
from accumbug.runfolder import RunFolder
from accumbug.specimens.gallery_trackers import GuardedTracker
from accumbug.specimens.incident_trackers import IncidentFixedTracker
from accumbug.specimens.rank_trackers import PaddedTracker, RankMeanTracker, RankZeroTracker
from accumbug.specimens.serialisers import incident_lossy_dumps
from accumbug.trackers import ExactTracker, MetricTracker, Tracker
from accumbug.train import train

EXERCISES = Path(__file__).resolve().parents[1] / "notebooks" / "exercises"
NAMES = sorted(p.name for p in EXERCISES.glob("*.ipynb"))
TRAINING = {"01_fix_the_tracker.ipynb"}  # solutions whose own cells train a run


def solutions(names) -> list:
    """``names`` as parameters for tests that run the solutions: slow where the solution trains a run."""
    return [pytest.param(name, marks=pytest.mark.slow) if name in TRAINING else name for name in names]


@functools.cache
def run_code_cells(path: Path) -> tuple[str, dict]:
    """Execute a notebook's code cells in one namespace; return what they printed and the namespace.

    Cached: a notebook is run once per session, and the tests only read what it left.
    """
    namespace, printed = {}, io.StringIO()
    with contextlib.redirect_stdout(printed):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code":
                code = "\n".join(line for line in cell.source.splitlines() if not line.startswith("%"))
                exec(compile(code, f"{path.name}", "exec"), namespace)  # noqa: S102 - runs the notebook's cells
    return printed.getvalue(), namespace


def test_there_are_four_exercises_each_with_a_solution():
    assert NAMES == ["01_fix_the_tracker.ipynb", "02_choose_the_accumulator.ipynb", "03_lossless_history.ipynb",
                     "04_reduce_across_ranks.ipynb"]
    assert sorted(p.name for p in (EXERCISES / "solutions").glob("*.ipynb")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_the_check_fails_on_the_starting_code(name):
    cells = nbformat.read(EXERCISES / name, as_version=4).cells
    assert sum(c.source.startswith("# EXERCISE") for c in cells) == 1
    printed, _ = run_code_cells(EXERCISES / name)
    assert "not yet:" in printed and "correct:" not in printed and "FAIL" in printed


@pytest.mark.parametrize("name", solutions(NAMES))
def test_the_check_passes_on_the_solution(name):
    path = EXERCISES / "solutions" / name
    assert sum(c.source.startswith("# SOLUTION") for c in nbformat.read(path, as_version=4).cells) == 1
    printed, _ = run_code_cells(path)
    assert "correct: all" in printed and "not yet" not in printed and "FAIL" not in printed


# How each exercise (starting code and solution alike) names its tracker: 01 and 04 define a class,
# 02 chooses a name for make_tracker.
NOTEBOOK_TRACKERS = {
    "01_fix_the_tracker.ipynb": lambda namespace: namespace["EpochLoss"](),
    "02_choose_the_accumulator.ipynb": lambda namespace: make_tracker(
        f"{namespace['TRACKER']}:{namespace['ACCUMULATOR']}"),
    "04_reduce_across_ranks.ipynb": lambda namespace: namespace["RankLoss"](),
}


@pytest.mark.parametrize("name", solutions(sorted(NOTEBOOK_TRACKERS)))
def test_the_starting_code_and_the_solution_make_protocol_trackers(name):
    """What a learner edits is a tracker ``train()`` takes, before and after the fix."""
    for path in (EXERCISES / name, EXERCISES / "solutions" / name):
        tracker = NOTEBOOK_TRACKERS[name](run_code_cells(path)[1])
        assert isinstance(tracker, Tracker), path


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(NOTEBOOK_TRACKERS))
def test_a_solved_tracker_trains_and_saves_the_exact_loss(name, tmp_path):
    _, namespace = run_code_cells(EXERCISES / "solutions" / name)
    tracker = NOTEBOOK_TRACKERS[name](namespace)
    assert isinstance(tracker, Tracker)
    with contextlib.redirect_stdout(io.StringIO()):
        train(TrainConfig(preset="tiny", epochs=2), [tracker, ExactTracker()], out=tmp_path / "run")
    folder = RunFolder(tmp_path / "run")
    assert folder.trackers == [tracker.name, "exact"] and folder.epochs == 2
    solved, exact = folder.history(tracker.name)["train_loss"], folder.history("exact")["train_loss"]
    assert len(solved) == len(exact) == 2
    assert solved == pytest.approx(exact, rel=1e-9)


def solved_predictions() -> tuple[dict, str]:
    """The predictions the solution notebook writes, as its own cells leave them."""
    _, namespace = run_code_cells(EXERCISES / "solutions" / "02_choose_the_accumulator.ipynb")
    return namespace["VERDICTS"], namespace["OVERFLOW"]


@pytest.mark.parametrize("answer", [("incident-fixed", "python"), ("incident-broken", "float32"),
                                    ("incident-broken", "bfloat16"), ("incident-broken", "auto"),
                                    ("incident-broken", "float8")])
def test_accumulator_check_rejects_wrong_choices(answer):
    check = check_accumulator_choice(*answer, *solved_predictions())
    assert not check.passed and str(check).startswith("not yet:")


def test_accumulator_check_accepts_every_weighted_float64_sum():
    assert all(check_accumulator_choice(*answer, *solved_predictions()).passed
               for answer in (("incident-broken", "python"), ("incident-broken", "float64"), ("exact", "float64")))


def test_a_right_choice_without_right_predictions_is_not_correct():
    """Trying every tracker and accumulator finds the choice, but the predictions are checked too."""
    verdicts, overflow = solved_predictions()
    assert sorted(verdicts) == sorted(PREDICTED) and set(verdicts.values()) <= set(VERDICTS)
    unwritten = check_accumulator_choice("incident-broken", "float64", {}, "?")
    assert not unwritten.passed and [ok for ok, _ in unwritten.cases] == [False] * 6 + [True, True]
    assert all("write one of" in text and "gives" not in text for ok, text in unwritten.cases if not ok)
    wrong = {**verdicts, "incident-broken:float32": "exact"}  # a float32 sum is close, not exact
    check = check_accumulator_choice("incident-broken", "float64", wrong, overflow.replace("before", "after"))
    failed = [text for ok, text in check.cases if not ok]
    assert len(failed) == 2 and "you predicted 'exact'" in failed[0] and failed[0].endswith(": 'close'")
    assert "you predicted 'after 447'" in failed[1] and failed[1].endswith(": 'before 447'")


def test_the_choice_shows_no_value_until_the_predictions_are_written():
    """The starting choice, incident-fixed:auto, is one of the predicted trackers: its value would answer it."""
    verdicts, overflow = solved_predictions()
    unwritten = check_accumulator_choice("incident-fixed", "auto", {**verdicts, "incident-fixed:auto": "?"}, overflow)
    choice = [text for _, text in unwritten.cases[-2:]]
    assert [ok for ok, _ in unwritten.cases[-2:]] == [False, False] and not any("give" in text for text in choice)
    written = check_accumulator_choice("incident-fixed", "auto", verdicts, overflow)
    assert "8,520 batches give " in written.cases[-2][1]


def test_the_float16_overflow_is_where_the_accumulator_check_finds_it():
    """Exercise 2's overflow cell and its check replay the same epoch: the same overflow batch."""
    overflow = float16_overflow()
    full_epoch = check_accumulator_choice("incident-broken", "float16", *solved_predictions()).cases[-2][1]
    assert overflow.batch is not None and f"inf from batch {overflow.batch:,}" in full_epoch
    assert f"prediction, where the float16 sum overflows: you predicted 'before {round(overflow.estimate)}'; it " \
           f"becomes inf at batch {overflow.batch:,}" in str(check_accumulator_choice("exact", "float64",
                                                                                     *solved_predictions()))


def test_the_float16_overflow_comes_before_the_estimate_for_both_reasons_the_solution_gives():
    """The solution explains the early overflow by falling losses and by float16's rounding; both must hold."""
    overflow = float16_overflow()
    assert overflow.early_loss > overflow.epoch_loss  # the first batches' losses are above the epoch's mean
    assert overflow.exact_batch < overflow.estimate  # so even an exact sum passes 65,504 before the estimate
    assert overflow.batch < overflow.exact_batch  # and float16's rounding brings it earlier still
    assert overflow.half_sum > overflow.exact_sum  # the rounding added to the sum
    spacing, _, addend, increase = overflow.spacings[-1]
    assert spacing == 32 and increase > addend  # from 32,768 on, each addition rounds up
    assert overflow.half_sum <= FLOAT16_MAX < overflow.half_sum + increase


def test_the_float16_overflow_prints_its_reasons_and_no_verdict():
    """Printed in both notebooks of exercise 2.

    No ``correct:``, ``not yet`` or ``FAIL``, which would confuse the check's tests.
    """
    overflow = float16_overflow()
    text = str(overflow)
    assert f"inf at batch {overflow.batch:,}" in text and f"passes 65,504 at batch {overflow.exact_batch:,}" in text
    assert not any(word in text for word in ("correct:", "not yet", "FAIL"))


# check_epoch_loss's cases, in order: a partial last batch, a long float16 epoch, reset, empty epoch, a NaN batch.
@pytest.mark.parametrize("tracker, passing", [
    (ExactTracker, [True, True, True, True, True]),
    (GuardedTracker, [True, True, True, False, True]),  # sums right, but an empty epoch reports 0.0
    (IncidentFixedTracker, [False, False, True, False, True]),  # a mean of batch means; 0.0 / 0 raises
])
def test_tracker_check_names_exactly_what_is_wrong(tracker, passing):
    check = check_epoch_loss(tracker)
    assert [ok for ok, _ in check.cases] == passing and check.passed == all(passing)


def test_tracker_check_reports_the_empty_epochs_zero():
    failed = [text for ok, text in check_epoch_loss(GuardedTracker).cases if not ok]
    assert len(failed) == 1 and failed[0].startswith("empty epoch: an epoch with no batches gives 0.0")


FIX_WORDS = ("weight", "float64", "dtype", "should", "must", "instead", "use ", "NaN says")


def test_tracker_check_says_what_is_wrong_measured_not_how_to_fix_it():
    """Exercise 1's failures give the value and the value expected, and leave the fix to the learner."""
    failed = [text for ok, text in check_epoch_loss(IncidentFixedTracker).cases if not ok]
    assert len(failed) == 3
    assert not [text for text in failed if any(word in text for word in FIX_WORDS)]
    partial, half = failed[:2]
    assert "the per-sample mean is" in partial and "%)" in partial and "the per-sample mean is" in half


def test_tracker_check_survives_code_that_raises():
    class Broken(MetricTracker):
        def update(self, loss, outputs, labels):
            raise RuntimeError("boom")

        def get_metrics(self):
            return {"loss": 0.0}

    check = check_epoch_loss(Broken)
    assert not check.passed and "raised RuntimeError: boom" in str(check)


def test_tracker_check_needs_the_batch_size_from_the_labels():
    class Unweighted(MetricTracker):
        """Sums the batch means in float64, counts batches: the incident's "fixed" tracker, written anew."""

        def __init__(self):
            super().__init__()
            self.add_state("loss_sum", torch.zeros((), dtype=torch.float64))
            self.add_state("batches", 0)

        def update(self, loss, outputs, labels):
            self.loss_sum += loss
            self.batches += 1

        def get_metrics(self):
            return {"loss": float(self.loss_sum / self.batches) if self.batches else float("nan")}

    check = check_epoch_loss(Unweighted)
    assert [ok for ok, _ in check.cases] == [False, False, True, True, True]
    assert str(check).splitlines()[1].startswith("  FAIL  a partial last batch: 64 batches of 16")


def test_serialiser_check_shows_what_was_saved_beside_what_came_back():
    lossless = check_serialiser(incident_lossy_dumps, json.loads).cases[1]  # the write-up's writer
    assert not lossless[0]
    assert lossless[1] == ("lossless: train_loss: saved [9.1621, inf, nan, -inf, 0.30000000000000004, -0.0], "
                           "loaded back [9.1621, 0.0, 0.0, 0.0, 0.30000000000000004, -0.0]")


def test_serialiser_check_rejects_pythons_json_and_accepts_the_packages_own_format():
    assert not check_serialiser(json.dumps, json.loads).passed
    assert check_serialiser(dumps_history, loads_history).passed
    assert not check_serialiser(lambda h: json.dumps(h, allow_nan=False), json.loads).passed


class Unasked(ExactTracker):
    """Exact sums, but it does not ask for per-sample losses under torchrun."""

    per_sample_loss = False


# check_rank_reduction's cases, in order: 2 ranks (no padding), 4 ranks (2 padding repeats), 5 ranks (3),
# reset (2 ranks, no padding), one process, per_sample_loss declared.
@pytest.mark.parametrize("tracker, passing", [
    (ExactTracker, [True, True, True, True, True, True]),
    (PaddedTracker, [True, False, False, True, True, True]),  # counts the padding repeats
    (RankMeanTracker, [True, False, False, True, True, True]),  # a mean of the ranks' means, padding counted
    (RankZeroTracker, [False, False, False, False, True, True]),  # rank 0's shard only
    (Unasked, [True, True, True, True, True, False]),
])
def test_rank_check_accepts_sums_and_names_each_mistake(tracker, passing):
    check = check_rank_reduction(tracker)
    assert [ok for ok, _ in check.cases] == passing and check.passed == all(passing)


def test_rank_check_reads_python_number_states():
    class PythonSums(MetricTracker):
        per_sample_loss = True

        def __init__(self):
            super().__init__()
            self.add_state("loss_sum", 0.0)
            self.add_state("samples", 0)

        def update(self, loss, outputs, labels, counted=None):
            counted = torch.ones_like(labels, dtype=torch.bool) if counted is None else counted
            losses = loss.expand(labels.shape) if loss.dim() == 0 else loss
            self.loss_sum += float(losses[counted].double().sum())
            self.samples += int(counted.sum())

        def get_metrics(self):
            return {"loss": self.loss_sum / self.samples}

    assert check_rank_reduction(PythonSums).passed

