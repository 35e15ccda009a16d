"""Crash safety, resume, non-finite losses: what docs/reliability.md promises, tested.

The kill tests run ``python -m accumbug run`` in a subprocess and end it with ``SIGKILL``,
the one ending no code can clean up after. A run folder is then read the way a reader reads
it, through ``commit.json`` (``RunFolder``), and every committed file must parse and equal,
byte for byte, what an uninterrupted run committed after the same epoch.
"""

import hashlib
import io
import math
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from accumbug.cli import main
from accumbug.config import TrainConfig
from accumbug.history import dumps_history, load_history, loads_strict
from accumbug.registry import make_trackers
from accumbug.runfolder import CHECKPOINT, COMMIT, CONFIG, CONSOLE, RunFolder, history_filename
from accumbug.train import NonFiniteLossError, train

TRACKERS = ["exact", "incident-fixed:python", "incident-broken:float16"]
EPOCHS = 6
FIGURE = "divergence.png"
PNG_START, PNG_END = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"
EPOCH_FILES = {CONSOLE, CHECKPOINT, *(history_filename(name) for name in TRACKERS)}

posix_only = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX")


def nan_at(step: int):
    """A ``loss_hook`` that makes the loss of step ``step`` (1-based over the run) NaN."""
    return lambda s, loss: loss * math.nan if s == step else loss


def run_command(*extra: str) -> list[str]:
    trackers = [arg for name in TRACKERS for arg in ("--tracker", name)]
    return [sys.executable, "-m", "accumbug", "run", "--preset", "tiny", "--no-progress", *trackers, *extra]


class Reference:
    """An uninterrupted run: its folder, and the SHA-256 of every file it committed after each epoch."""

    def __init__(self, out: Path, digests: dict[int, dict[str, str]], epoch_seconds: list[float]):
        self.out, self.digests, self.epoch_seconds = out, digests, epoch_seconds
        self.folder = RunFolder(out)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 6-epoch run, every commit's file digests recorded as the trainer hands them over."""
    out = tmp_path_factory.mktemp("reference") / "run"
    digests, commit_epoch = {}, RunFolder.commit_epoch

    def recording(self, epoch, files, epoch_seconds):
        digests[epoch] = {name: hashlib.sha256(content).hexdigest() for name, content in files.items()}
        return commit_epoch(self, epoch, files, epoch_seconds)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(RunFolder, "commit_epoch", recording)
        result = train(TrainConfig(preset="tiny", epochs=EPOCHS), make_trackers(TRACKERS), out=out)
    assert sorted(digests) == list(range(1, EPOCHS + 1))
    assert RunFolder(out).commit()["files"] == digests[EPOCHS]  # the recording saw what was committed
    return Reference(out, digests, result.epoch_seconds)


def _truncated(history: dict, epochs: int) -> dict:
    return {key: value[:epochs] if isinstance(value, list) else value for key, value in history.items()}


def _is_leftover(path: Path, committed: str | None) -> bool:
    """What a killed writer may leave in a run folder; readers ignore it, the next writer removes it."""
    name = path.name
    if path.is_dir():  # a commit's folder being written, or an epoch folder commit.json never named
        return name.startswith(".partial-") or (name.startswith("epoch-") and name != committed)
    # a temporary file of an atomic replace (commit.json, the figure) cut short before its os.replace
    return path.is_file() and name.endswith(".tmp") and name.startswith((f".{COMMIT}.", f".{FIGURE}."))


def completed_epochs(out: Path, reference: Reference) -> tuple[int, list[str]]:
    """Read a (possibly killed) run folder as a reader does; check every committed file.

    Returns the committed epochs and the left-overs found beside them.
    """
    if not out.exists():  # killed before the folder was renamed into place
        return 0, []
    folder = RunFolder(out)
    config_text = (out / CONFIG).read_text(encoding="utf-8")
    loads_strict(config_text)
    assert config_text == (reference.out / CONFIG).read_text(encoding="utf-8")
    assert folder.trackers == TRACKERS
    commit = folder.commit()
    committed = None if commit is None else commit["folder"]
    expected = {CONFIG} if commit is None else {CONFIG, COMMIT, committed}
    if (out / FIGURE).exists():  # written once every epoch is committed
        expected.add(FIGURE)
    leftovers = sorted(p.name for p in out.iterdir() if p.name not in expected)
    unexpected = [name for name in leftovers if not _is_leftover(out / name, committed)]
    assert not unexpected, f"unexpected entries in {out}: {unexpected}"
    if commit is None:
        assert FIGURE not in expected
        return 0, leftovers
    epochs = commit["epoch"]
    assert 1 <= epochs <= EPOCHS and committed == f"epoch-{epochs:04d}"
    assert {p.name for p in (out / committed).iterdir()} == EPOCH_FILES
    folder.verify()  # every committed file there, with the digest commit.json holds
    assert commit["files"] == reference.digests[epochs], "not the bytes of an uninterrupted run's commit"
    for name in TRACKERS:
        loads_strict(folder.history_path(name).read_text(encoding="utf-8"))
        truth = _truncated(reference.folder.history(name), epochs)
        assert dumps_history(folder.history(name)) == dumps_history(truth), name  # value for value, NaN included
    state = torch.load(io.BytesIO(folder.file_path(CHECKPOINT).read_bytes()), weights_only=True)
    assert state["epoch"] == epochs
    assert folder.console_lines() == reference.folder.console_lines()[: epochs * len(TRACKERS)]
    if FIGURE in expected:
        png = (out / FIGURE).read_bytes()
        assert epochs == EPOCHS and png.startswith(PNG_START) and png.endswith(PNG_END)
    return epochs, leftovers


def _committed_epochs_now(out: Path) -> int:
    """-1 before the run folder exists, else the epochs commit.json names (read as a reader does)."""
    return RunFolder(out).epochs if (out / CONFIG).exists() else -1


def _wait(proc: subprocess.Popen, condition, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while proc.poll() is None and not condition() and time.monotonic() < deadline:
        time.sleep(0.0005)


def kill_when(proc: subprocess.Popen, out: Path, rng: random.Random, mode: str, epoch_seconds: float,
              commit: int | None = None) -> str:
    """SIGKILL ``proc`` at a moment chosen by ``mode``; returns the moment, in words.

    ``random``: a random moment of a random epoch (or of the start-up), within the time the
    run's previous epoch took (``epoch_seconds`` for the first). ``writing``: 0-4 ms
    after the ``commit``-th commit starts writing, that is once a ``.partial-*`` folder is in
    the run folder while ``commit.json`` still names the previous epoch. ``renamed``: 0-10 ms
    after that commit's folder has its ``epoch-NNNN`` name, around the replacing of
    ``commit.json``.
    """
    if mode == "random":
        epoch = rng.randint(0, EPOCHS)  # 0: from the start (import, folder creation)
        if epoch:
            _wait(proc, lambda: _committed_epochs_now(out) >= epoch - 1)
            commit = RunFolder(out).commit() if epoch > 1 and proc.poll() is None else None
            if commit is not None:  # this run's own pace: its last epoch's time, as commit.json records it
                epoch_seconds = commit["epoch_seconds"][-1]
        delay = rng.uniform(0.2, 3.0) if epoch == 0 else rng.uniform(0, epoch_seconds)
        time.sleep(delay)
        moment = f"random: {delay:.2f} s after " + ("the start" if epoch == 0 else f"epoch {epoch} began")
    else:
        wanted, seen = commit or rng.randint(1, EPOCHS), []

        def reached():
            if _committed_epochs_now(out) == wanted - 1 and (
                    any(out.glob(".partial-*")) if mode == "writing" else (out / f"epoch-{wanted:04d}").exists()):
                seen.append(True)
            return bool(seen) or _committed_epochs_now(out) >= wanted  # the latter: the moment was missed

        _wait(proc, reached)
        time.sleep(rng.uniform(0, 0.004 if mode == "writing" else 0.010))
        moment = (f"commit {wanted}: " + ("writing" if mode == "writing" else "renamed")) if seen else \
            f"commit {wanted}: {mode} not seen"
    proc.send_signal(signal.SIGKILL)  # does nothing when the run has already ended
    proc.wait()
    return moment


@pytest.mark.slow
@posix_only
def test_sigkill_at_random_moments_leaves_only_valid_files_with_completed_epochs(tmp_path, reference):
    rng = random.Random(20261124)
    epoch_seconds = reference.epoch_seconds[0]
    found = []
    for index in range(20):
        out = tmp_path / f"kill{index}"
        proc = subprocess.Popen(run_command("--epochs", str(EPOCHS), "--out", str(out)),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        moment = kill_when(proc, out, rng, ("random", "writing", "random", "renamed")[index % 4], epoch_seconds)
        epochs, leftovers = completed_epochs(out, reference)
        found.append((moment, proc.returncode, epochs, leftovers))
    print("\nkill moment -> exit code, epochs committed, left-overs:")
    for moment, code, epochs, leftovers in found:
        print(f"  {moment:38s} -> {code}, {epochs}, {leftovers}")
    for moment, code, epochs, _ in found:  # killed, or finished with every epoch committed
        assert code == -signal.SIGKILL or (code == 0 and epochs == EPOCHS), (moment, code, epochs)
    killed = [epochs for _, code, epochs, _ in found if code == -signal.SIGKILL]
    assert len(killed) >= 15, f"only {len(killed)} of 20 runs were killed before they finished"
    assert len(set(killed)) >= 3, f"kills should land at several epochs, got {killed}"
    during = [m for m, code, _, _ in found if m.endswith(("writing", "renamed")) and code == -signal.SIGKILL]
    assert len(during) >= 5, f"only {len(during)} of 10 kills came during a commit"
    staging = [p.name for p in tmp_path.iterdir() if not p.name.startswith("kill")]
    assert all(name.startswith(".kill") and ".staging-" in name for name in staging), staging


@pytest.mark.slow
@posix_only
def test_resume_after_kills_is_byte_identical(tmp_path, reference):
    rng = random.Random(7)
    commits = [2, 3, 4, 5] * 3
    rng.shuffle(commits)
    resumed_from = set()
    for index, commit in enumerate(commits):
        if len(resumed_from) >= 3:
            break
        out = tmp_path / f"resume{index}"
        proc = subprocess.Popen(run_command("--epochs", str(EPOCHS), "--out", str(out)),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        kill_when(proc, out, rng, "writing", 0, commit=commit)  # just as a commit starts writing
        epochs, leftovers = completed_epochs(out, reference)
        if proc.returncode != -signal.SIGKILL or not 1 <= epochs < EPOCHS or epochs in resumed_from:
            continue
        resumed_from.add(epochs)
        done = subprocess.run(run_command("--resume", str(out)), capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        assert completed_epochs(out, reference)[0] == EPOCHS
        folder = RunFolder(out)
        assert folder.commit()["files"] == reference.digests[EPOCHS]  # histories, console, checkpoint: same bytes
        assert (out / CONFIG).read_bytes() == (reference.out / CONFIG).read_bytes()
        assert sorted(p.name for p in out.iterdir()) == sorted([CONFIG, COMMIT, FIGURE, f"epoch-{EPOCHS:04d}"]), \
            f"left-overs {leftovers} should be gone"
    print("\nresumed, byte-identical, after kills at completed epochs", sorted(resumed_from))
    assert len(resumed_from) >= 2, f"resumed from epochs {sorted(resumed_from)}"


@pytest.mark.slow
def test_resume_in_process_extends_a_run_byte_for_byte(tmp_path, reference):
    out = tmp_path / "run"
    train(TrainConfig(preset="tiny", epochs=2), make_trackers(TRACKERS), out=out)
    assert RunFolder(out).commit()["files"] == reference.digests[2]
    config = (out / CONFIG).read_bytes()
    result = train(TrainConfig(preset="tiny", epochs=EPOCHS), make_trackers(TRACKERS), out=out, resume=True)
    assert len(result.histories["exact"]["train_loss"]) == EPOCHS
    assert RunFolder(out).commit()["files"] == reference.digests[EPOCHS]
    for name in [history_filename(n) for n in TRACKERS] + [CONSOLE, CHECKPOINT]:
        assert RunFolder(out).file_path(name).read_bytes() == reference.folder.file_path(name).read_bytes(), name
    assert (out / CONFIG).read_bytes() == config  # written once, when the run began
    assert sorted(p.name for p in out.iterdir()) == sorted([CONFIG, COMMIT, f"epoch-{EPOCHS:04d}"])


def test_an_injected_nan_batch_is_counted_and_never_written_as_a_number(tmp_path):
    out = tmp_path / "nan"
    names = ["exact", "incident-broken:python"]
    config = TrainConfig(preset="tiny", samples=264, epochs=2)  # 17 batches an epoch
    result = train(config, make_trackers(names), out=out, loss_hook=nan_at(17 + 5))
    exact = result.histories["exact"]
    # step 22 is the 5th batch of epoch 2; its NaN step makes the weights NaN, so batches 5..17 of epoch 2 are NaN
    assert exact["train_nonfinite_batches"] == [0, 13]
    folder = RunFolder(out)
    text = folder.history_path("exact").read_text()
    assert "NaN" not in text and "Infinity" not in text
    document = loads_strict(text)
    assert document["train_loss"][1] is None and document["nonfinite"]["/train_loss/1"] == "nan"
    assert math.isnan(load_history(folder.history_path("exact"))["train_loss"][1])
    assert folder.history("incident-broken:python")["train_nonfinite_batches"] == [0, 13]


def test_stop_on_nonfinite_stops_at_the_first_one_and_keeps_completed_epochs(tmp_path, capsys):
    out = tmp_path / "stop"
    code = main(["run", "--preset", "tiny", "--samples", "256", "--epochs", "2", "--out", str(out), "--no-progress",
                 "--tracker", "exact", "--stop-on-nonfinite"])
    assert code == 0 and RunFolder(out).epochs == 2  # finite losses: the flag changes nothing
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, batch 5: loss is nan; stopped"):  # 16 batches an epoch
        train(TrainConfig(preset="tiny", samples=256, epochs=3, stop_on_nonfinite=True), make_trackers(["exact"]),
              out=tmp_path / "stop2", loss_hook=nan_at(16 + 5))
    kept = RunFolder(tmp_path / "stop2")
    assert kept.epochs == 1 and kept.history("exact")["train_nonfinite_batches"] == [0]
    kept.verify()
    capsys.readouterr()
    code = main(["run", "--preset", "tiny", "--epochs", "3", "--out", str(tmp_path / "stop3"), "--no-progress",
                 "--tracker", "exact", "--stop-on-nonfinite", "--lr", "1e30"])
    err = capsys.readouterr().err
    assert code == 3 and err.startswith("accumbug: stopped: epoch 1, batch ") and err.count("\n") == 1
    assert not (tmp_path / "stop3").exists()  # stopped in epoch 1: nothing completed, nothing left


@pytest.mark.slow
def test_same_seed_same_config_same_bytes(tmp_path, reference):
    out = tmp_path / "again"
    train(TrainConfig(preset="tiny", epochs=EPOCHS), make_trackers(TRACKERS), out=out)
    assert RunFolder(out).commit()["files"] == reference.digests[EPOCHS]
    for name in [history_filename(n) for n in TRACKERS] + [CONSOLE, CHECKPOINT]:
        assert RunFolder(out).file_path(name).read_bytes() == reference.folder.file_path(name).read_bytes(), name
    assert (out / CONFIG).read_bytes() == (reference.out / CONFIG).read_bytes()
