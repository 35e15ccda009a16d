"""Faults beyond SIGKILL: a full disk at commit, Ctrl-C and SIGTERM; one line, an exit code, nothing to clean up."""

import errno
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from accumbug import runfolder
from accumbug.cli import main
from accumbug.config import TrainConfig
from accumbug.runfolder import COMMIT, CommitError, RunFolder, committed_epochs
from accumbug.stopping import RunStopped
from accumbug.trackers import ExactTracker
from accumbug.train import train

CONFIG = TrainConfig(preset="tiny", epochs=3, samples=128)  # 8 batches an epoch
BATCHES = 8
# where a signal stops a run: within an epoch, or after its commit when it came in the last batch or the commit
WHEN = r"(during epoch \d+ \(batch \d+ of \d+\)|at the end of epoch \d+)"
posix_only = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="sends POSIX signals to a child process")


def _full_disk_on(call: int, real):
    """A stand-in for ``real`` that raises ENOSPC on its ``call``-th use (1-based)."""
    calls = []

    def write(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)
    return write


def _leftovers(out):
    return sorted(p.name for p in out.iterdir() if p.name.startswith(".")) + sorted(
        p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}"))


def _same_files(a, b):
    folder_a, folder_b = RunFolder(a), RunFolder(b)
    for name in folder_a.commit()["files"]:
        assert folder_a.file_path(name).read_bytes() == folder_b.file_path(name).read_bytes(), name


def test_a_full_disk_at_epoch_2_keeps_epoch_1_and_resume_continues_byte_identically(tmp_path, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setattr(runfolder, "_write_folder", _full_disk_on(3, runfolder._write_folder))  # config, e1, e2
    with pytest.raises(CommitError) as raised:
        train(CONFIG, [ExactTracker()], out=out)
    assert str(raised.value) == (f"{str(out)!r}: epoch 2 could not be saved (No space left on device); the folder "
                                 f"keeps epoch 1 as committed; free space or fix the folder, then continue with "
                                 f"--resume {out}")
    folder = RunFolder(out)
    assert folder.epochs == 1 and sorted(p.name for p in out.iterdir()) == ["commit.json", "config.json", "epoch-0001"]
    folder.verify()
    assert _leftovers(out) == []
    monkeypatch.undo()
    train(CONFIG, [ExactTracker()], out=out, resume=True)
    train(CONFIG, [ExactTracker()], out=tmp_path / "whole")
    _same_files(out, tmp_path / "whole")


def test_a_full_disk_at_the_commit_record_removes_the_new_epoch_folder(tmp_path, monkeypatch):
    out = tmp_path / "run"
    real = runfolder.atomic_write_bytes
    monkeypatch.setattr(runfolder, "atomic_write_bytes", _full_disk_on(2, real))  # commit.json of epoch 2
    with pytest.raises(CommitError, match="epoch 2 could not be saved"):
        train(CONFIG, [ExactTracker()], out=out)
    assert RunFolder(out).epochs == 1 and not (out / "epoch-0002").exists() and _leftovers(out) == []


def test_a_full_disk_before_the_first_commit_leaves_no_folder(tmp_path, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setattr(runfolder, "_write_folder", _full_disk_on(2, runfolder._write_folder))
    with pytest.raises(CommitError, match="no epoch was committed, so there is nothing to resume"):
        train(CONFIG, [ExactTracker()], out=out)
    assert list(tmp_path.iterdir()) == []


def test_the_command_line_says_it_in_one_line_with_exit_code_4(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    monkeypatch.setattr(runfolder, "_write_folder", _full_disk_on(3, runfolder._write_folder))
    code = main(["run", "--preset", "tiny", "--samples", "128", "--epochs", "3", "--tracker", "exact", "--out",
                 str(out), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 4 and err.count("\n") == 0
    assert err.startswith("accumbug: stopped: ") and f"continue with --resume {out}" in err


def _signal_at(step: int, times: int = 1):
    """A loss hook that raises SIGINT ``times`` times in the process at 1-based step ``step``."""
    def hook(at, loss):
        if at == step:
            for _ in range(times):
                signal.raise_signal(signal.SIGINT)
        return loss
    return hook


def test_ctrl_c_stops_at_the_next_batch_keeping_the_completed_epochs(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RunStopped) as raised:
        train(CONFIG, [ExactTracker()], out=out, loss_hook=_signal_at(BATCHES + 3))
    assert str(raised.value) == (f"SIGINT during epoch 2 (batch 3 of {BATCHES}); nothing partial was saved; the run "
                                 f"folder {str(out)!r} keeps epoch 1; continue with --resume {out}")
    assert raised.value.result.histories["exact"]["train_loss"] and len(raised.value.result.epoch_seconds) == 1
    assert RunFolder(out).epochs == 1 and _leftovers(out) == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handlers are given back
    train(CONFIG, [ExactTracker()], out=out, resume=True)
    train(CONFIG, [ExactTracker()], out=tmp_path / "whole")
    _same_files(out, tmp_path / "whole")


def test_ctrl_c_in_an_epochs_last_batch_commits_that_epoch_first(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RunStopped) as raised:
        train(CONFIG, [ExactTracker()], out=out, loss_hook=_signal_at(BATCHES))
    assert str(raised.value).startswith("SIGINT at the end of epoch 1; nothing partial was saved; the run folder ")
    assert RunFolder(out).epochs == 1 and _leftovers(out) == []


def test_a_signal_in_the_last_epochs_last_batch_lets_the_run_finish(tmp_path):
    result = train(CONFIG, [ExactTracker()], out=tmp_path / "run", loss_hook=_signal_at(3 * BATCHES))
    assert len(result.epoch_seconds) == 3 and RunFolder(tmp_path / "run").epochs == 3


def test_ctrl_c_before_the_first_commit_leaves_no_folder(tmp_path):
    with pytest.raises(RunStopped, match="no epoch was completed, so no run folder is left"):
        train(CONFIG, [ExactTracker()], out=tmp_path / "run", loss_hook=_signal_at(2))
    assert list(tmp_path.iterdir()) == []


def test_a_second_ctrl_c_stops_at_once_without_harm(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(CONFIG, [ExactTracker()], out=out, loss_hook=_signal_at(BATCHES + 3, times=2))
    assert RunFolder(out).epochs == 1 and _leftovers(out) == []
    RunFolder(out).verify()


@posix_only
@pytest.mark.slow
@pytest.mark.parametrize("sent, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_to_the_command_line_run_ends_it_in_one_line(tmp_path, sent, code):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "accumbug", "run", "--preset", "tiny", "--epochs", "400",
                             "--tracker", "exact", "--out", str(out), "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / COMMIT).exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(sent)
    _, err = proc.communicate(timeout=60)
    kept = RunFolder(out).epochs
    assert proc.returncode == code and "Traceback" not in err, err
    assert re.match(f"accumbug: stopped: {signal.Signals(sent).name} {WHEN}; ", err.strip().splitlines()[-1]), err
    assert f"keeps {committed_epochs(kept)}; continue with --resume {out}" in err
    RunFolder(out).verify()
    assert _leftovers(out) == []


def _mounted_tmpfs(where, megabytes: int) -> bool:
    """A real tmpfs of ``megabytes`` at ``where`` (root on Linux only); False where it cannot be made."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return False
    where.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(where)],
                          capture_output=True, check=False).returncode == 0


def _fill(folder):
    """Write into ``folder`` until the disk is full."""
    with open(folder / "filler", "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError as error:
            assert error.errno == errno.ENOSPC


def test_a_real_full_disk_keeps_the_last_commit_and_resume_continues(tmp_path):
    disk = tmp_path / "disk"
    if not _mounted_tmpfs(disk, 4):
        pytest.skip("needs root on Linux to mount a small tmpfs")
    try:
        out = disk / "run"

        def fill_in_epoch_2(step, loss):
            if step == BATCHES + 1:
                _fill(disk)
            return loss
        with pytest.raises(CommitError, match="epoch 2 could not be saved \\(No space left on device\\)"):
            train(CONFIG, [ExactTracker()], out=out, loss_hook=fill_in_epoch_2)
        assert RunFolder(out).epochs == 1 and _leftovers(out) == []
        RunFolder(out).verify()
        (disk / "filler").unlink()
        train(CONFIG, [ExactTracker()], out=out, resume=True)
        train(CONFIG, [ExactTracker()], out=tmp_path / "whole")
        _same_files(out, tmp_path / "whole")
    finally:
        subprocess.run(["umount", str(disk)], check=False)


RANK_RUN = ["-m", "accumbug", "run", "--preset", "tiny", "--tracker", "exact", "--tracker", "naive-rank0",
            "--no-progress", "--device", "cpu"]


def _rank_env(rank: int, world: int, port: int) -> dict:
    """The environment torchrun gives rank ``rank``, without torchrun (so the test sees each rank's exit code)."""
    return {**os.environ, "RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}


def _wait_for_commit(out, processes) -> None:
    deadline = time.monotonic() + 180
    while not (out / COMMIT).exists() and time.monotonic() < deadline and all(p.poll() is None for p in processes):
        time.sleep(0.05)
    assert (out / COMMIT).exists(), "no epoch was committed"


@posix_only
@pytest.mark.slow
def test_sigterm_to_one_rank_stops_every_rank_after_the_same_batch(tmp_path, free_port):
    out, port = tmp_path / "run", free_port()
    ranks = [subprocess.Popen([sys.executable, *RANK_RUN, "--epochs", "400", "--out", str(out)],
                              env=_rank_env(r, 2, port), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for r in range(2)]
    _wait_for_commit(out, ranks)
    ranks[1].send_signal(signal.SIGTERM)  # rank 0 never receives it: it stops because the ranks agree
    errors = [rank.communicate(timeout=120)[1] for rank in ranks]
    assert [rank.returncode for rank in ranks] == [143, 143], errors
    lines = [err.strip().splitlines()[-1] for err in errors]
    assert all("Traceback" not in err for err in errors), errors
    kept = RunFolder(out).epochs
    where = {line.split("; nothing partial")[0].split(": stopped: ")[1] for line in lines}
    assert len(where) == 1 and re.fullmatch(f"SIGTERM {WHEN}", where.pop())  # the same epoch and batch
    assert lines[0].startswith("accumbug rank 0 of 2: stopped: ") and lines[0].endswith(
        f"keeps {committed_epochs(kept)}; continue with --resume {out} under torchrun --nproc-per-node 2")
    assert lines[1].startswith("accumbug rank 1 of 2: stopped: ") and lines[1].endswith("rank 0 keeps the run folder")
    RunFolder(out).verify()
    assert _leftovers(out) == []


@posix_only
@pytest.mark.slow
def test_sigterm_to_torchrun_keeps_rank_0s_folder_and_resume_continues_byte_identically(tmp_path, capsys):
    from accumbug.distributed import TORCHRUN_VARIABLES, torchrun_command

    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARIABLES}
    out, whole = tmp_path / "run", tmp_path / "whole"
    args = RANK_RUN[3:]
    launcher = subprocess.Popen(torchrun_command(2, [*args, "--epochs", "400", "--out", str(out)]), env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for_commit(out, [launcher])
    launcher.send_signal(signal.SIGTERM)  # torchrun forwards it to every rank and waits for them
    _, err = launcher.communicate(timeout=120)
    ours = [line for line in err.splitlines() if line.startswith("accumbug rank")]
    assert sorted(line[:len("accumbug rank 0 of 2: stopped: SIGTERM")] for line in ours) == [
        f"accumbug rank {r} of 2: stopped: SIGTERM" for r in range(2)], err
    kept = RunFolder(out).epochs
    RunFolder(out).verify()
    assert sorted(p.name for p in out.iterdir()) == ["commit.json", "config.json", f"epoch-{kept:04d}"]
    assert main(["run", "--resume", str(out), "--no-progress"]) == 2  # one process cannot continue two ranks' run
    assert "resume it under torchrun --nproc-per-node 2" in capsys.readouterr().err
    for command in ([*args, "--epochs", str(kept + 1), "--resume", str(out)],
                    [*args, "--epochs", str(kept + 1), "--out", str(whole)]):
        done = subprocess.run(torchrun_command(2, command), env=env, capture_output=True, text=True, timeout=300,
                              check=False)
        assert done.returncode == 0, done.stderr[-3000:]
    _same_files(out, whole)


@posix_only
@pytest.mark.slow
def test_ctrl_c_to_torchruns_process_group_stops_every_rank_once(tmp_path):
    from accumbug.distributed import TORCHRUN_VARIABLES, torchrun_command

    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARIABLES}
    out = tmp_path / "run"
    launcher = subprocess.Popen(torchrun_command(2, [*RANK_RUN[3:], "--epochs", "400", "--out", str(out)]), env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    _wait_for_commit(out, [launcher])
    os.killpg(launcher.pid, signal.SIGINT)  # a terminal's Ctrl-C: the launcher and both ranks, which the launcher
    _, err = launcher.communicate(timeout=120)  # then signals again; a rank takes the repeat as the same request
    ours = sorted(line for line in err.splitlines() if line.startswith("accumbug rank"))
    assert [line[:len("accumbug rank 0 of 2: stopped: SIGINT")] for line in ours] == [
        f"accumbug rank {r} of 2: stopped: SIGINT" for r in range(2)], err
    assert "KeyboardInterrupt" not in err
    RunFolder(out).verify()
    assert _leftovers(out) == []


def test_the_stop_line_is_one_write_so_ranks_sharing_stderr_cannot_split_it(monkeypatch):
    from accumbug import cli

    writes = []
    monkeypatch.setattr(sys, "stderr", type("Recorder", (), {"write": writes.append, "flush": lambda self: None})())
    assert cli._stopped(CommitError("'run': epoch 2 could not be saved")) == 4
    assert cli._stopped(KeyboardInterrupt()) == 130
    assert [w.count("\n") for w in writes] == [1, 1] and all(w.endswith("\n") for w in writes)
    assert writes[0] == "accumbug: stopped: 'run': epoch 2 could not be saved\n"
