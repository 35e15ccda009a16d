import json
import re

import pytest

from accumbug.history import load_history, loads_strict
from accumbug.train import TrainConfig, format_epoch_line, history_filename, train

FIVE = ["seed-broken:python", "seed-fixed:python", "seed-broken:float16", "seed-fixed:float16", "exact"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "tiny"
    return train(TrainConfig(preset="tiny", epochs=2), FIVE, out=out)


def test_run_folder_holds_config_console_and_one_history_per_tracker(tiny_run):
    names = sorted(p.name for p in tiny_run.out.iterdir())
    assert names == sorted(["config.json", "console.log", "checkpoint.pt", *(history_filename(n) for n in FIVE)])
    config = json.loads((tiny_run.out / "config.json").read_text())
    assert config["config"]["preset"] == "tiny" and config["trackers"] == FIVE
    assert (tiny_run.out / "console.log").read_text().splitlines() == tiny_run.console_lines


def test_history_files_hold_what_the_trackers_held(tiny_run):
    for name in FIVE:
        path = tiny_run.out / history_filename(name)
        loads_strict(path.read_text())
        saved = load_history(path)
        assert saved["train_loss"] == tiny_run.histories[name]["train_loss"]
        assert len(saved["train_loss"]) == 2 and saved["tracker"] == name


def test_seed_broken_python_equals_exact_and_fixed_does_not(tiny_run):
    exact = tiny_run.histories["exact"]["train_loss"]
    broken = tiny_run.histories["seed-broken:python"]["train_loss"]
    fixed = tiny_run.histories["seed-fixed:python"]["train_loss"]
    assert broken == pytest.approx(exact, rel=1e-12)
    assert all(f != pytest.approx(e, rel=1e-6) for f, e in zip(fixed, exact))
    assert tiny_run.histories["seed-fixed:python"]["train_total"] == [65, 65]
    assert tiny_run.histories["seed-broken:python"]["train_total"] == [1032, 1032]


def test_console_lines_have_the_seeds_format(tiny_run):
    pattern = r"Epoch [12] \[Train\]: loss=\d+\.\d{4}, top1=\d+\.\d{2}%, top5=\d+\.\d{2}%  \[[a-z0-9:-]+\]"
    assert len(tiny_run.console_lines) == 10
    assert all(re.fullmatch(pattern, line) for line in tiny_run.console_lines)
    assert tiny_run.console["exact"][0]["loss"] == round(tiny_run.histories["exact"]["train_loss"][0], 4)


def test_single_tracker_line_is_exactly_the_seeds():
    assert format_epoch_line(1, {"loss": 9.16214, "top1": 0.0, "top5": 0.2}) == \
        "Epoch 1 [Train]: loss=9.1621, top1=0.00%, top5=0.20%"


def test_same_seed_same_bytes(tmp_path):
    runs = [train(TrainConfig(preset="tiny", epochs=1), ["exact", "seed-fixed"], out=tmp_path / f"r{i}") for i in range(2)]
    for name in ("exact", "seed-fixed:python"):
        a, b = ((r.out / history_filename(name)).read_bytes() for r in runs)
        assert a == b


def test_loss_falls_while_training(tiny_run):
    losses = tiny_run.histories["exact"]["train_loss"]
    assert losses[1] < losses[0]


@pytest.mark.parametrize("kwargs, message", [
    ({"epochs": 0}, "epochs=0: must be a whole number >= 1"),
    ({"preset": "huge"}, "preset='huge': unknown"),
    ({"classes": 4}, "classes=4: top-5 accuracy needs at least 5 classes"),
    ({"batch_size": 0}, "batch_size=0"),
    ({"lr": -1.0}, "lr=-1.0"),
    ({"amp": "float8"}, "amp='float8': unknown"),
    ({"device": "tpu"}, "device='tpu'"),
])
def test_bad_config_values(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        TrainConfig(**kwargs)


def test_bad_tracker_lists(tmp_path):
    with pytest.raises(ValueError, match="at least one tracker"):
        train(TrainConfig(preset="tiny", epochs=1), [], out=tmp_path / "a")
    with pytest.raises(ValueError, match="each tracker may appear once"):
        train(TrainConfig(preset="tiny", epochs=1), ["exact", "exact"], out=tmp_path / "b")
    assert list(tmp_path.iterdir()) == []


def test_existing_run_folder_is_kept_unless_overwrite(tmp_path):
    out = tmp_path / "run"
    train(TrainConfig(preset="tiny", epochs=1), ["exact"], out=out)
    before = (out / "history-exact.json").read_bytes()
    with pytest.raises(ValueError, match="exists and is not empty; pass --overwrite"):
        train(TrainConfig(preset="tiny", epochs=1, seed=1), ["exact"], out=out)
    assert (out / "history-exact.json").read_bytes() == before
    train(TrainConfig(preset="tiny", epochs=1, seed=1), ["exact"], out=out, overwrite=True)
    assert (out / "history-exact.json").read_bytes() != before


def test_overwrite_refuses_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a run folder"):
        train(TrainConfig(preset="tiny", epochs=1), ["exact"], out=tmp_path, overwrite=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_run_that_fails_before_its_first_epoch_leaves_no_folder(tmp_path):
    class Exploding:
        name, accumulator, loss_sum, total = "boom", "python", 0.0, 0

        def reset(self):
            pass

        def update(self, loss, outputs, labels):
            raise RuntimeError("tracker failed")

    with pytest.raises(RuntimeError, match="tracker failed"):
        train(TrainConfig(preset="tiny", epochs=1), [Exploding()], out=tmp_path / "run")
    assert not (tmp_path / "run").exists()
