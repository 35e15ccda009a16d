"""The exercises: their check cells fail on the starting code and pass on the solutions.

The notebooks' own code cells are run here (IPython magics left out), so what is tested is
what a learner runs. The checks are also tried on a few other wrong answers.
"""

import contextlib
import io
import json
from pathlib import Path

import nbformat
import pytest

from accumbug.exercises import check_accumulator, check_epoch_loss, check_rank_reduction, check_serialiser
from accumbug.mechanisms import InPlaceMeanTracker

EXERCISES = Path(__file__).resolve().parents[1] / "notebooks" / "exercises"
NAMES = sorted(p.name for p in EXERCISES.glob("*.ipynb"))


def run_code_cells(path: Path) -> tuple[str, dict]:
    """Execute a notebook's code cells in one namespace; return what they printed and the namespace."""
    namespace, printed = {}, io.StringIO()
    with contextlib.redirect_stdout(printed):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code":
                code = "\n".join(line for line in cell.source.splitlines() if not line.startswith("%"))
                exec(compile(code, f"{path.name}", "exec"), namespace)
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


@pytest.mark.parametrize("name", NAMES)
def test_the_check_passes_on_the_solution(name):
    path = EXERCISES / "solutions" / name
    assert sum(c.source.startswith("# SOLUTION") for c in nbformat.read(path, as_version=4).cells) == 1
    printed, _ = run_code_cells(path)
    assert "correct: all" in printed and "not yet" not in printed and "FAIL" not in printed


@pytest.mark.parametrize("answer", [("seed-fixed", "python"), ("seed-broken", "float32"), ("seed-broken", "bfloat16"),
                                    ("seed-broken", "auto"), ("seed-broken", "float8")])
def test_accumulator_check_rejects_wrong_choices(answer):
    check = check_accumulator(*answer)
    assert not check.passed and str(check).startswith("not yet:")


def test_accumulator_check_accepts_every_weighted_float64_sum():
    assert all(check_accumulator(*answer).passed
               for answer in (("seed-broken", "python"), ("seed-broken", "float64"), ("exact", "float64")))


class Adapter:
    """InPlaceMeanTracker behind the exercise's interface: right sums, but compute() on empty gives 0.0."""

    def __init__(self):
        self.tracker = InPlaceMeanTracker()

    def reset(self):
        self.tracker.reset()

    def update(self, loss, batch_size):
        import torch
        self.tracker.update(loss, torch.zeros(batch_size, 6), torch.zeros(batch_size, dtype=torch.int64))

    def compute(self):
        return float(self.tracker.mean)


def test_tracker_check_names_exactly_what_is_wrong():
    check = check_epoch_loss(Adapter)
    assert [ok for ok, _ in check.cases] == [True, True, True, False, True]
    assert "empty epoch" in str(check).split("FAIL")[1]


def test_tracker_check_survives_code_that_raises():
    class Broken:
        def reset(self):
            pass

        def update(self, loss, batch_size):
            raise RuntimeError("boom")

        def compute(self):
            return 0.0

    check = check_epoch_loss(Broken)
    assert not check.passed and "raised RuntimeError: boom" in str(check)


def test_serialiser_check_rejects_pythons_json_and_accepts_the_packages_own_format():
    assert not check_serialiser(json.dumps, json.loads).passed
    from accumbug.history import dumps_history, loads_history
    assert check_serialiser(dumps_history, loads_history).passed
    assert not check_serialiser(lambda h: json.dumps(h, allow_nan=False), json.loads).passed


class RankSums:
    """A rank tracker that sends sums and counts: right unless ``count_padding`` or ``send_means``."""

    count_padding = send_means = False

    def __init__(self):
        self.reset()

    def reset(self):
        self.loss_sum, self.samples = 0.0, 0

    def update(self, losses, counted):
        keep = counted | self.count_padding
        self.loss_sum += float(losses[keep].double().sum())
        self.samples += int(keep.sum())

    def state(self):
        return [self.loss_sum / self.samples, 1] if self.send_means else [self.loss_sum, self.samples]

    def compute(self, summed):
        return summed[0] / summed[1]


@pytest.mark.parametrize("wrong, failing", [("count_padding", [False, True, True, False]),
                                            ("send_means", [False, True, True, False])])
def test_rank_check_accepts_sums_and_names_each_mistake(wrong, failing):
    assert check_rank_reduction(RankSums).passed
    mistaken = type("Mistaken", (RankSums,), {wrong: True})
    assert [not ok for ok, _ in check_rank_reduction(mistaken).cases] == failing
