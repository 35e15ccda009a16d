import itertools
import json
import math
import re
from dataclasses import asdict

import pytest
import torch

from accumbug.config import SCHEDULES, TrainConfig
from accumbug.history import load_history, loads_strict
from accumbug.registry import make_trackers
from accumbug.runfolder import CHECKPOINT, COMMIT, CONFIG, CONSOLE, RunFolder, history_filename
from accumbug.trackers import MetricTracker
from accumbug.train import format_epoch_line, train

SMALL = {"preset": "tiny", "samples": 264}  # 17 batches of 16 an epoch, the last of 8, as the incident's data end
FIVE = ["incident-broken:python", "incident-fixed:python", "incident-broken:float16", "incident-fixed:float16", "exact"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "tiny"
    return train(TrainConfig(**SMALL, epochs=2), make_trackers(FIVE), out=out)


def test_run_folder_holds_config_commit_and_one_epoch_folder(tiny_run):
    assert sorted(p.name for p in tiny_run.out.iterdir()) == sorted([CONFIG, COMMIT, "epoch-0002"])
    folder = tiny_run.folder
    assert folder.path == tiny_run.out and folder.epochs == 2
    names = sorted(p.name for p in (tiny_run.out / "epoch-0002").iterdir())
    assert names == sorted([CONSOLE, CHECKPOINT, *(history_filename(n) for n in FIVE)])
    config = json.loads((tiny_run.out / CONFIG).read_text())
    assert config["config"]["preset"] == "tiny" and config["trackers"] == FIVE
    commit = json.loads((tiny_run.out / COMMIT).read_text())
    assert commit["epoch"] == 2 and commit["folder"] == "epoch-0002" and sorted(commit["files"]) == names
    assert len(commit["epoch_seconds"]) == 2
    assert folder.console_lines() == tiny_run.console_lines
    folder.verify()


def test_history_files_hold_what_the_trackers_held(tiny_run):
    for name in FIVE:
        path = tiny_run.folder.history_path(name)
        loads_strict(path.read_text())
        saved = load_history(path)
        assert saved == tiny_run.histories[name] == tiny_run.folder.history(name)
        assert len(saved["train_loss"]) == 2 and saved["tracker"] == name


def test_incident_broken_python_equals_exact_and_fixed_does_not(tiny_run):
    exact = tiny_run.histories["exact"]["train_loss"]
    broken = tiny_run.histories["incident-broken:python"]["train_loss"]
    fixed = tiny_run.histories["incident-fixed:python"]["train_loss"]
    assert broken == pytest.approx(exact, rel=1e-12)
    assert all(f != pytest.approx(e, rel=1e-6) for f, e in zip(fixed, exact))
    assert tiny_run.histories["incident-fixed:python"]["train_total"] == [17, 17]  # batches
    assert tiny_run.histories["incident-broken:python"]["train_total"] == [264, 264]  # samples


def test_console_lines_have_the_incidents_format(tiny_run):
    pattern = r"Epoch [12] \[Train\]: loss=\d+\.\d{4}, top1=\d+\.\d{2}%, top5=\d+\.\d{2}%  \[[a-z0-9:-]+\]"
    assert len(tiny_run.console_lines) == 10
    assert all(re.fullmatch(pattern, line) for line in tiny_run.console_lines)
    assert tiny_run.console["exact"][0]["loss"] == round(tiny_run.histories["exact"]["train_loss"][0], 4)


def test_single_tracker_line_is_exactly_the_incidents():
    assert format_epoch_line(1, {"loss": 9.16214, "top1": 0.0, "top5": 0.2}) == \
        "Epoch 1 [Train]: loss=9.1621, top1=0.00%, top5=0.20%"


def test_same_seed_same_bytes(tmp_path):
    runs = [train(TrainConfig(preset="tiny", samples=256, epochs=1), make_trackers(["exact", "incident-fixed"]),
                  out=tmp_path / f"r{i}") for i in range(2)]
    for name in ("exact", "incident-fixed:python", CONSOLE, CHECKPOINT):
        file = history_filename(name) if ":" in name or name == "exact" else name
        a, b = (r.folder.file_path(file).read_bytes() for r in runs)
        assert a == b, name
    assert runs[0].folder.commit()["files"] == runs[1].folder.commit()["files"]


def test_loss_falls_while_training(tiny_run):
    losses = tiny_run.histories["exact"]["train_loss"]
    assert losses[1] < losses[0]


def test_loss_hook_sees_every_step_of_the_run_and_its_loss_is_used(tmp_path):
    config = TrainConfig(preset="tiny", epochs=2, samples=64)  # 4 batches of 16 per epoch
    steps = []

    def hook(step, loss):
        steps.append(step)
        return loss * 0 + 2.5 if step == 6 else loss

    result = train(config, make_trackers(["incident-fixed:python"]), loss_hook=hook)
    assert steps == list(range(1, 9))  # 1-based over the run, not over the epoch
    plain = train(config, make_trackers(["incident-fixed:python"])).histories["incident-fixed:python"]["train_loss"]
    hooked = result.histories["incident-fixed:python"]["train_loss"]
    assert hooked[0] == plain[0] and hooked[1] != plain[1]  # the mean of batch means of epoch 2 took 2.5 for batch 2


@pytest.mark.parametrize("kwargs, message", [
    ({"epochs": 0}, "epochs=0: must be a whole number >= 1"),
    ({"preset": "huge"}, "preset='huge': unknown"),
    ({"classes": 4}, "classes=4: top-5 accuracy needs at least 5 classes"),
    ({"batch_size": 0}, "batch_size=0"),
    ({"lr": -1.0}, "lr=-1.0"),
    ({"lr": math.inf}, "lr=inf"),
    ({"amp": "float8"}, "amp='float8': unknown"),
    ({"warmup_from": 0.0}, "warmup_from=0.0: must be a finite number > 0"),
    ({"warmup_epochs": -1.0}, "warmup_epochs=-1.0: must be a finite number >= 0"),
    ({"warmup_epochs": math.inf}, "warmup_epochs=inf: must be a finite number >= 0"),
    ({"device": "tpu"}, "device='tpu'"),
])
def test_bad_config_values(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        TrainConfig(**kwargs)


def test_each_preset_brings_its_schedule_and_the_config_holds_the_numbers():
    for name, schedule in SCHEDULES.items():
        config = TrainConfig(preset=name)
        assert (config.lr, config.warmup_from, config.warmup_epochs) == (schedule.lr, schedule.warmup_from,
                                                                          schedule.warmup_epochs)
        assert TrainConfig.from_dict(asdict(config)) == config
    assert TrainConfig(preset="full", lr=0.01).lr == 0.01 and TrainConfig(preset="full", lr=0.01).warmup_from == \
        SCHEDULES["full"].warmup_from


def test_the_warmup_is_exponential_then_constant():
    config = TrainConfig(preset="tiny", lr=0.01, warmup_from=1e-4, warmup_epochs=2)
    steps = 10
    rates = [config.learning_rate(step, steps) for step in range(25)]
    assert rates[0] == pytest.approx(1e-4) and rates[10] == pytest.approx(1e-3) and rates[20:] == [0.01] * 5
    assert all(b / a == pytest.approx(10 ** 0.1) for a, b in itertools.pairwise(rates[:20]))
    assert {TrainConfig(preset="tiny").learning_rate(step, 65) for step in range(200)} == {0.015}


def test_the_trainer_sets_the_scheduled_rate_before_every_step():
    config = TrainConfig(preset="tiny", epochs=2, samples=64, lr=0.01, warmup_from=1e-3, warmup_epochs=1)
    seen = []

    class Spy(MetricTracker):
        kind = "spy"

        def update(self, loss, outputs, labels):
            seen.append(optimizer_lr[0])

        def get_metrics(self):
            return {"loss": 0.0}

    optimizer_lr = [None]
    original = torch.optim.SGD.step

    def step(self, *args, **kwargs):
        optimizer_lr[0] = self.param_groups[0]["lr"]
        return original(self, *args, **kwargs)

    torch.optim.SGD.step = step
    try:
        train(config, [Spy()])
    finally:
        torch.optim.SGD.step = original
    assert seen == pytest.approx([config.learning_rate(step, 4) for step in range(8)])


def test_bad_tracker_lists(tmp_path):
    config = TrainConfig(preset="tiny", epochs=1)
    with pytest.raises(ValueError, match="at least one tracker"):
        train(config, [], out=tmp_path / "a")
    with pytest.raises(ValueError, match="each tracker may appear once"):
        train(config, make_trackers(["exact", "exact"]), out=tmp_path / "b")
    with pytest.raises(ValueError, match=r"trackers\[0\]='exact': not a tracker .*make_tracker"):
        train(config, ["exact"], out=tmp_path / "c")  # names are for make_tracker, not for train
    assert list(tmp_path.iterdir()) == []


def test_existing_run_folder_is_kept_unless_overwrite(tmp_path):
    out = tmp_path / "run"
    train(TrainConfig(preset="tiny", epochs=1, samples=64), make_trackers(["exact"]), out=out)
    before = RunFolder(out).history_path("exact").read_bytes()
    with pytest.raises(ValueError, match="exists and is not empty; pass --overwrite"):
        train(TrainConfig(preset="tiny", epochs=1, samples=64, seed=1), make_trackers(["exact"]), out=out)
    assert RunFolder(out).history_path("exact").read_bytes() == before
    train(TrainConfig(preset="tiny", epochs=1, samples=64, seed=1), make_trackers(["exact"]), out=out, overwrite=True)
    assert RunFolder(out).history_path("exact").read_bytes() != before


def test_overwrite_refuses_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a run folder"):
        train(TrainConfig(preset="tiny", epochs=1), make_trackers(["exact"]), out=tmp_path, overwrite=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"


class Exploding(MetricTracker):
    """A tracker that speaks the protocol and fails on its first batch."""

    kind = "boom"

    def __init__(self):
        super().__init__()
        self.add_state("loss_sum", 0.0)
        self.add_state("total", 0)

    def update(self, loss, outputs, labels):
        raise RuntimeError("tracker failed")

    def get_metrics(self):
        return {"loss": self.loss_sum}


def test_a_run_that_fails_before_its_first_epoch_leaves_no_folder(tmp_path):
    with pytest.raises(RuntimeError, match="tracker failed"):
        train(TrainConfig(preset="tiny", epochs=1), [Exploding()], out=tmp_path / "run")
    assert list(tmp_path.iterdir()) == []  # neither the run folder nor its staging sibling
