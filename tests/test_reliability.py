"""Crash safety, resume, non-finite losses: what docs/reliability.md promises, tested."""

import io
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from accumbug.cli import main
from accumbug.history import load_history, loads_strict
from accumbug.train import CHECKPOINT, NonFiniteLossError, TrainConfig, history_filename, train

TRACKERS = ["exact", "seed-fixed:python", "seed-broken:float16"]
EPOCHS = 6


def run_command(out: Path, *extra: str) -> list[str]:
    trackers = [arg for name in TRACKERS for arg in ("--tracker", name)]
    return [sys.executable, "-m", "accumbug", "run", "--preset", "tiny", "--no-progress", *trackers, *extra]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 6-epoch run: the files every interrupted run is compared with."""
    out = tmp_path_factory.mktemp("reference") / "run"
    train(TrainConfig(preset="tiny", epochs=EPOCHS), TRACKERS, out=out)
    return out


def completed_epochs(out: Path, reference: Path) -> int:
    """Check every file of a (possibly killed) run folder; return the epochs it holds."""
    if not out.exists():
        return 0
    names = {p.name for p in out.iterdir()}
    if "divergence.png" in names:  # written once all epochs are done
        png = (out / "divergence.png").read_bytes()
        assert png.startswith(b"\x89PNG") and png.endswith(b"IEND\xaeB`\x82")
        names.remove("divergence.png")
    expected = {"config.json", "console.log", CHECKPOINT, *(history_filename(n) for n in TRACKERS)}
    assert names in ({"config.json"}, expected), f"unexpected files {sorted(names)}"
    loads_strict((out / "config.json").read_text())
    if names == {"config.json"}:
        return 0
    checkpoint = torch.load(io.BytesIO((out / CHECKPOINT).read_bytes()), weights_only=True)
    epochs = checkpoint["epoch"]
    lines = (out / "console.log").read_text().splitlines()
    assert lines == (reference / "console.log").read_text().splitlines()[: epochs * len(TRACKERS)]
    for name in TRACKERS:
        path = out / history_filename(name)
        loads_strict(path.read_text())
        saved, truth = load_history(path), load_history(reference / history_filename(name))
        assert {key: value for key, value in saved.items()} == {
            key: value[:epochs] if isinstance(value, list) else value for key, value in truth.items()
        } or _same_with_nan(saved, truth, epochs)
    return epochs


def _same_with_nan(saved, truth, epochs):
    return all(str(saved[k]) == str(truth[k][:epochs] if isinstance(truth[k], list) else truth[k]) for k in truth)


def kill_when(proc: subprocess.Popen, parent: Path, name: str, rng: random.Random, index: int) -> str:
    """Kill ``proc`` at a random moment, or just as its n-th commit starts writing."""
    if index % 2 == 0:
        time.sleep(rng.uniform(0.3, 4.0))
        moment = "random"
    else:
        wanted, seen, deadline = rng.randint(1, EPOCHS + 1), set(), time.monotonic() + 30
        while len(seen) < wanted and proc.poll() is None and time.monotonic() < deadline:
            seen |= {p.name for p in parent.glob(f".{name}.staging-*")}
            time.sleep(0.0005)
        time.sleep(rng.uniform(0, 0.004))
        moment = f"during write {wanted}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return moment


def test_sigkill_at_random_moments_leaves_only_valid_files_with_completed_epochs(tmp_path, reference):
    rng = random.Random(20261124)
    seen_epochs, killed = [], []
    for index in range(20):
        out = tmp_path / f"kill{index}"
        proc = subprocess.Popen(run_command(out, "--epochs", str(EPOCHS), "--out", str(out)),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        moment = kill_when(proc, tmp_path, out.name, rng, index)
        killed.append((moment, proc.returncode))
        seen_epochs.append(completed_epochs(out, reference))
    assert len(killed) >= 20
    assert len(set(seen_epochs)) >= 3, f"kills should land at several epochs, got {seen_epochs}"
    print("\nkill moments and epochs found:", list(zip([m for m, _ in killed], seen_epochs)))


def test_resume_after_kills_is_byte_identical(tmp_path, reference):
    rng = random.Random(7)
    resumed_from = set()
    for index in range(12):
        if len(resumed_from) >= 3:
            break
        out = tmp_path / f"resume{index}"
        proc = subprocess.Popen(run_command(out, "--epochs", str(EPOCHS), "--out", str(out)),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        kill_when(proc, tmp_path, out.name, rng, 1)  # always just as a commit starts
        epochs = completed_epochs(out, reference)
        if not 1 <= epochs < EPOCHS or epochs in resumed_from:
            continue
        resumed_from.add(epochs)
        done = subprocess.run(run_command(out, "--resume", str(out)), capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        for name in [history_filename(n) for n in TRACKERS] + ["console.log", "config.json"]:
            assert (out / name).read_bytes() == (reference / name).read_bytes(), name
        assert not list(tmp_path.glob(f".{out.name}.staging-*"))
    print("\nresumed, byte-identical, after kills at completed epochs", sorted(resumed_from))
    assert len(resumed_from) >= 2, f"resumed from epochs {sorted(resumed_from)}"


def test_resume_in_process_extends_a_run_byte_for_byte(tmp_path, reference):
    out = tmp_path / "run"
    train(TrainConfig(preset="tiny", epochs=2), TRACKERS, out=out)
    result = train(TrainConfig(preset="tiny", epochs=EPOCHS), TRACKERS, out=out, resume=True)
    assert len(result.histories["exact"]["train_loss"]) == EPOCHS
    for name in [history_filename(n) for n in TRACKERS] + ["console.log"]:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name


def test_an_injected_nan_batch_is_counted_and_never_written_as_a_number(tmp_path):
    out = tmp_path / "nan"
    result = train(TrainConfig(preset="tiny", epochs=2, nan_batch=70), ["exact", "seed-broken:python"], out=out)
    exact = result.histories["exact"]
    # batch 70 is the 5th of epoch 2; its NaN step makes the weights NaN, so batches 5..65 of epoch 2 are NaN
    assert exact["train_nonfinite_batches"] == [0, 61]
    text = (out / history_filename("exact")).read_text()
    assert "NaN" not in text and "Infinity" not in text
    document = loads_strict(text)
    assert document["train_loss"][1] is None and document["nonfinite"]["/train_loss/1"] == "nan"
    assert load_history(out / history_filename("seed-broken:python"))["train_nonfinite_batches"] == [0, 61]


def test_stop_on_nonfinite_stops_at_the_first_one_and_keeps_completed_epochs(tmp_path, capsys):
    out = tmp_path / "stop"
    code = main(["run", "--preset", "tiny", "--epochs", "3", "--out", str(out), "--no-progress",
                 "--tracker", "exact", "--stop-on-nonfinite"])
    assert code == 0
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, batch 5: loss is nan; stopped"):
        train(TrainConfig(preset="tiny", epochs=3, nan_batch=70, stop_on_nonfinite=True), ["exact"],
              out=tmp_path / "stop2")
    assert load_history(tmp_path / "stop2" / "history-exact.json")["train_nonfinite_batches"] == [0]
    capsys.readouterr()
    code = main(["run", "--preset", "tiny", "--epochs", "3", "--out", str(tmp_path / "stop3"), "--no-progress",
                 "--tracker", "exact", "--stop-on-nonfinite", "--lr", "1e30"])
    err = capsys.readouterr().err
    assert code == 3 and err.startswith("accumbug: stopped: epoch 1, batch ") and err.count("\n") == 1
    assert not (tmp_path / "stop3").exists()  # stopped in epoch 1: nothing completed, nothing left


def test_same_seed_same_config_same_bytes(tmp_path, reference):
    out = tmp_path / "again"
    train(TrainConfig(preset="tiny", epochs=EPOCHS), TRACKERS, out=out)
    for name in [history_filename(n) for n in TRACKERS] + ["console.log", "config.json"]:
        assert (out / name).read_bytes() == (reference / name).read_bytes()
