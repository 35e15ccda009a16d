"""Every bad input: one clear line naming the value and what is allowed, exit code 2, nothing written."""

import io
import math
import shutil
from pathlib import Path

import pytest
import torch

from accumbug.cli import main
from accumbug.config import TrainConfig
from accumbug.data import DataSpec
from accumbug.registry import make_trackers
from accumbug.runfolder import CHECKPOINT, COMMIT, CONFIG, RunFolder
from accumbug.trackers import ExactTracker
from accumbug.train import train

TINY = ["--preset", "tiny", "--epochs", "1", "--no-progress", "--tracker", "exact"]


def new_run(tmp_path: Path, *args: str) -> list[str]:
    return ["run", *TINY, "--out", str(tmp_path / "out"), *args]


@pytest.fixture(scope="module")
def pristine_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pristine") / "done"
    assert main(["run", *TINY, "--samples", "256", "--classes", "16", "--epochs", "2", "--out", str(out)]) == 0
    return out


@pytest.fixture
def finished_run(tmp_path, pristine_run):
    """A finished 2-epoch run folder of this test's own (a copy: tests damage it)."""
    out = tmp_path / "done"
    shutil.copytree(pristine_run, out)
    return out


def snapshot(folder: Path) -> dict:
    """Every file and folder below ``folder``, with the files' bytes."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


NEW_RUN_CASES = [
    (["--batch-size", "0"], "batch_size=0: must be between 1 and samples=1032"),
    (["--batch-size", "-3"], "batch_size=-3: must be between 1 and samples=1032"),
    (["--batch-size", "5000"], "batch_size=5000: must be between 1 and samples=1032"),
    (["--samples", "0"], "samples=0: the data set needs at least 1 sample"),
    (["--classes", "4"], "classes=4: top-5 accuracy needs at least 5 classes"),
    (["--classes", "2000"], "classes=2000: more than samples=1032"),
    (["--preset", "huge"], "argument --preset: invalid choice: 'huge'"),
    (["--tracker", "nope"], "tracker='nope': unknown; allowed: exact, "),  # the list: test_cli, from the registry
    (["--tracker", "incident-fixed:float8"], "accumulator='float8': unknown; allowed: python, float64, float32"),
    (["--epochs", "0"], "argument --epochs: 0 is below the minimum of 1"),
    (["--lr", "nan"], "lr=nan: must be a finite number > 0"),
    (["--lr", "0"], "lr=0.0: must be a finite number > 0"),
    (["--device", "tpu"], "device='tpu': unknown; allowed: auto, cpu, cuda, cuda:N"),
    (["--amp", "int8"], "argument --amp: invalid choice: 'int8'"),
]


@pytest.mark.parametrize("args, message", NEW_RUN_CASES, ids=[" ".join(a) for a, _ in NEW_RUN_CASES])
def test_bad_new_run_arguments(tmp_path, capsys, args, message):
    assert main(new_run(tmp_path, *args)) == 2
    err = capsys.readouterr().err
    assert err.startswith("accumbug: error: ") and err.count("\n") == 1 and message in err
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_folder(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main(["run", *TINY, "--out", str(blocker / "run")]) == 2
    err = capsys.readouterr().err
    assert "cannot write there" in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_existing_output_folder_without_overwrite(finished_run, capsys):
    before = snapshot(finished_run)
    assert main(["run", *TINY, "--out", str(finished_run)]) == 2
    assert "exists and is not empty; pass --overwrite" in capsys.readouterr().err
    assert snapshot(finished_run) == before


def committed(out: Path, name: str) -> Path:
    """Where the committed epoch's file ``name`` is, as a reader finds it (through commit.json)."""
    return RunFolder(out).file_path(name)


def corrupt_checkpoint(out: Path):
    committed(out, CHECKPOINT).write_bytes(b"not a checkpoint")


def truncate_checkpoint(out: Path):
    path = committed(out, CHECKPOINT)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def truncate_history(out: Path):
    path = committed(out, "history-exact.json")
    text = path.read_text()
    path.write_text(text[: len(text) // 2])


def edit_history(out: Path):
    path = committed(out, "history-exact.json")
    path.write_text(path.read_text().replace('"train_loss": [\n  ', '"train_loss": [\n  1.0, ', 1))


def remove_checkpoint(out: Path):
    committed(out, CHECKPOINT).unlink()


def remove_commit(out: Path):
    (out / COMMIT).unlink()


def corrupt_commit(out: Path):
    (out / COMMIT).write_text("{")


def corrupt_config(out: Path):
    (out / CONFIG).write_text("{")


RESUME_CASES = [
    (corrupt_checkpoint, [], "corrupt or truncated checkpoint"),
    (truncate_checkpoint, [], "corrupt or truncated checkpoint"),
    (truncate_history, ["--epochs", "3"], "history-exact.json': unreadable history"),
    (edit_history, ["--epochs", "3"],
     "history-exact.json': does not match commit.json; the folder was changed by hand"),
    (remove_checkpoint, [], "checkpoint.pt': missing"),
    (remove_commit, ["--epochs", "3"], "no epoch of this run was completed"),
    (corrupt_commit, [], "commit.json': corrupt"),
    (corrupt_config, [], "config.json is corrupt"),
    (None, ["--preset", "small"], "preset='small': the run in"),
    (None, ["--seed", "3"], "seed=3: the run in"),
    (None, ["--tracker", "incident-fixed"], "trackers=['incident-fixed:python']: the run in"),
    (None, ["--epochs", "1"], "epochs=1: the run in"),
    (None, ["--out", "elsewhere"], "--out goes with a new run, not with --resume"),
]


@pytest.mark.parametrize("damage, args, message", RESUME_CASES,
                         ids=[f"{d.__name__ if d else 'settings'} {' '.join(a)}" for d, a, _ in RESUME_CASES])
def test_bad_resume(finished_run, capsys, damage, args, message):
    if damage:
        damage(finished_run)
    before = snapshot(finished_run)
    assert main(["run", "--no-progress", "--resume", str(finished_run), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("accumbug: error: ") and err.count("\n") == 1 and message in err
    assert snapshot(finished_run) == before


def test_resume_of_a_missing_folder(tmp_path, capsys):
    assert main(["run", "--resume", str(tmp_path / "nowhere")]) == 2
    assert "no config.json there; not a run folder" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_labels_out_of_range():
    with pytest.raises(ValueError, match=r"labels in \[0, 9\]: out of range for 8 classes \(allowed 0..7\)"):
        ExactTracker().update(1.0, torch.zeros(4, 8), torch.tensor([0, 1, 9, 2]))
    with pytest.raises(ValueError, match=r"labels shape \(3,\): expected \[4\]"):
        ExactTracker().update(1.0, torch.zeros(4, 8), torch.tensor([0, 1, 2]))


def test_nan_in_inputs():
    with pytest.raises(ValueError, match="signal=nan: must be a finite number >= 0"):
        DataSpec(samples=32, classes=8, signal=math.nan)
    with pytest.raises(ValueError, match="lr=nan"):
        TrainConfig(lr=math.nan)


def test_a_config_from_another_preset_via_the_api(finished_run):
    with pytest.raises(ValueError, match="preset='small': the run in"):
        train(TrainConfig(preset="small", epochs=3), make_trackers(["exact"]), out=finished_run, resume=True)


def test_checkpoint_is_loadable_without_pickle(finished_run):
    state = torch.load(io.BytesIO(committed(finished_run, CHECKPOINT).read_bytes()), weights_only=True)
    assert state["epoch"] == 2 and state["format"] == "accumbug-checkpoint/2"
    assert {"model", "optimizer", "scaler", "rng"} <= set(state)
