"""The run folder: the all-or-nothing commit step by step, what readers see, and a run on Windows' ctypes.

A crash is simulated in-process: a step of ``commit_epoch`` raises, and nothing is cleaned
up after it (a killed process cleans nothing up). The folder must still read as the last
committed epoch, and the next commit must remove what was left. ``test_reliability.py``
kills real processes.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

from accumbug.config import TrainConfig
from accumbug.history import dumps_history, load_history, loads_strict
from accumbug.registry import make_trackers
from accumbug.runfolder import (
    CHECKPOINT,
    COMMIT,
    CONFIG,
    CONSOLE,
    PHASES,
    RUN_FORMAT,
    RunFolder,
    RunFolderError,
    history_filename,
    history_key,
    series,
)
from accumbug.train import train

TRACKERS = ["exact", "incident-broken:float16"]


def epoch_files(epoch: int) -> dict[str, bytes]:
    """What a commit of ``epoch`` holds, for a run with the trackers ``TRACKERS`` (no checkpoint needed here)."""
    files = {history_filename(name): dumps_history({"tracker": name, "train_loss": [1.0 / e for e in
                                                                                     range(1, epoch + 1)]}).encode()
             for name in TRACKERS}
    files[CONSOLE] = "".join(f"Epoch {e}\n" for e in range(1, epoch + 1)).encode()
    return files


@pytest.fixture
def folder(tmp_path):
    """A run folder with epoch 1 committed."""
    made = RunFolder.create(tmp_path / "run", {"config": {"preset": "tiny"}, "trackers": TRACKERS})
    made.commit_epoch(1, epoch_files(1), [0.5])
    return made


def entries(folder: RunFolder) -> list[str]:
    return sorted(p.name for p in folder.path.iterdir())


def assert_reads_as(path, epoch: int) -> None:
    """A fresh reader of ``path`` sees exactly the commit of ``epoch``, every file as committed."""
    reader = RunFolder(path)
    assert reader.epochs == epoch and reader.commit()["folder"] == f"epoch-{epoch:04d}"
    reader.verify()
    for name in TRACKERS:
        assert reader.history_path(name).read_bytes() == epoch_files(epoch)[history_filename(name)]
        assert reader.history(name)["train_loss"] == [1.0 / e for e in range(1, epoch + 1)]
    assert reader.console_lines() == [f"Epoch {e}" for e in range(1, epoch + 1)]


def _crash(*args, **kwargs):
    raise OSError("simulated crash")


def _nothing(*args, **kwargs):
    return None


def _crash_on_existing(path, *args, **kwargs):
    """``shutil.rmtree`` that fails on a folder still there (the older epoch), not on the renamed-away one."""
    if os.path.exists(path):
        raise OSError("simulated crash")


# each step of commit_epoch, in order: where the crash comes, the epoch a reader then sees, what is left
CRASHES = {
    "writing the epoch's files": (1, r"\.partial-[0-9a-f]+"),
    "renaming the folder to epoch-0002": (1, r"\.partial-[0-9a-f]+"),
    "replacing commit.json": (1, r"epoch-0002"),
    "removing the older epoch": (2, r"epoch-0001"),
}


@pytest.mark.parametrize("step", CRASHES)
def test_a_commit_cut_short_at_any_step_leaves_the_last_commit_readable(folder, step):
    seen, leftover = CRASHES[step]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(shutil, "rmtree", _nothing)  # a killed writer removes nothing
        if step == "writing the epoch's files":
            patch.setattr(os, "fsync", _crash)  # the first file is written but not yet flushed
        elif step == "renaming the folder to epoch-0002":
            patch.setattr(os, "rename", _crash)
        elif step == "replacing commit.json":
            patch.setattr(os, "replace", _crash)
            patch.setattr(os, "unlink", _nothing)  # its temporary file stays, as after a kill
        else:
            patch.setattr(shutil, "rmtree", _crash_on_existing)
        with pytest.raises(OSError, match="simulated crash"):
            folder.commit_epoch(2, epoch_files(2), [0.5, 0.5])
    left = [name for name in entries(folder) if name not in (CONFIG, COMMIT, f"epoch-{seen:04d}")]
    assert any(re.fullmatch(leftover, name) for name in left), left  # the crash really left work behind
    if step == "replacing commit.json":
        assert any(re.fullmatch(r"\.commit\.json\.[0-9a-f]+\.tmp", name) for name in left), left
    assert_reads_as(folder.path, seen)
    RunFolder(folder.path).commit_epoch(3, epoch_files(3), [0.5, 0.5, 0.5])
    assert entries(folder) == [COMMIT, CONFIG, "epoch-0003"]  # the next commit removed every left-over
    assert_reads_as(folder.path, 3)


def test_commits_keep_one_epoch_folder_and_record_every_files_digest(folder):
    folder.commit_epoch(2, epoch_files(2), [0.5, 0.25])
    assert entries(folder) == [COMMIT, CONFIG, "epoch-0002"]
    commit = json.loads((folder.path / COMMIT).read_text())
    assert commit["format"] == RUN_FORMAT and commit["epoch"] == 2 and commit["epoch_seconds"] == [0.5, 0.25]
    assert sorted(commit["files"]) == sorted(epoch_files(2))
    assert_reads_as(folder.path, 2)


@pytest.mark.parametrize("change, message", [
    (lambda p: p.write_bytes(p.read_bytes().replace(b"1.0", b"2.0", 1)), "does not match commit.json"),
    (lambda p: p.write_bytes(p.read_bytes()[:20]), "unreadable history"),
    (lambda p: p.unlink(), "unreadable history"),
], ids=["edited", "truncated", "deleted"])
def test_verify_names_a_history_changed_by_hand(folder, change, message):
    path = folder.history_path("incident-broken:float16")
    change(path)
    with pytest.raises(RunFolderError, match=re.escape(repr(str(path))) + ".*" + message):
        folder.verify()


@pytest.mark.parametrize("change", [lambda p: p.write_text("Epoch 7\n"), lambda p: p.unlink()],
                         ids=["edited", "deleted"])
def test_verify_names_any_committed_file_changed_by_hand(folder, change):
    path = folder.file_path(CONSOLE)
    change(path)
    with pytest.raises(RunFolderError, match=re.escape(repr(str(path))) + ": does not match commit.json; the folder "
                                                                          "was changed by hand"):
        folder.verify()


def test_remove_uncommitted_removes_left_over_work_and_nothing_else(folder):
    for name in ("epoch-0002", "epoch-0000", ".partial-0123abcd", "plots"):
        (folder.path / name).mkdir()
        (folder.path / name / "x").write_text("x")
    (folder.path / ".commit.json.0123abcd.tmp").write_text("{")
    (folder.path / "notes.txt").write_text("mine")
    folder.remove_uncommitted()
    assert entries(folder) == [COMMIT, CONFIG, "epoch-0001", "notes.txt", "plots"]
    assert_reads_as(folder.path, 1)


def test_remove_uncommitted_before_any_commit_keeps_only_the_config(tmp_path):
    made = RunFolder.create(tmp_path / "run", {"config": {}, "trackers": TRACKERS})
    (made.path / "epoch-0001").mkdir()
    (made.path / ".partial-ab").mkdir()
    assert made.epochs == 0 and made.commit() is None
    made.remove_uncommitted()
    assert entries(made) == [CONFIG]


def test_history_keys_and_series():
    assert history_key("train", "loss") == "train_loss" and history_key("eval", "top5") == "eval_top5"
    for phase in PHASES:  # every phase a run records is a key of its histories
        assert history_key(phase, "loss") == f"{phase}_loss"
    history = {"train_loss": [2.0, 1.0], "eval_loss": [3.0]}
    assert series(history, "loss") == [2.0, 1.0] and series(history, "loss", "eval") == [3.0]
    for phase in ("test", "Train", ""):
        with pytest.raises(ValueError, match=re.escape(f"phase={phase!r}: unknown; allowed: train, eval")):
            history_key(phase, "loss")
    with pytest.raises(ValueError, match="phase='valid'"):
        series(history, "loss", "valid")


def test_a_missing_folder_is_named(tmp_path):
    missing = tmp_path / "nowhere"
    for read in (lambda f: f.record, lambda f: f.trackers, lambda f: f.histories()):
        expected = f"{str(missing)!r}: no config.json there; not a run folder"
        with pytest.raises(RunFolderError, match=re.escape(expected)):
            read(RunFolder(missing))
    assert not missing.exists()


@pytest.mark.parametrize("text", ["{", "[]", '{"config": {}}', '{"trackers": "exact"}'])
def test_a_corrupt_config_is_named(folder, text):
    (folder.path / CONFIG).write_text(text)
    with pytest.raises(RunFolderError, match=re.escape(f"{str(folder.path)!r}: config.json is corrupt (")):
        _ = RunFolder(folder.path).record


@pytest.mark.parametrize("text, message", [
    ("{", "corrupt ("),
    ('{"epoch": 1}', f"not an {RUN_FORMAT} commit record"),
    ("[1]", f"not an {RUN_FORMAT} commit record"),
])
def test_a_corrupt_commit_record_is_named(folder, text, message):
    (folder.path / COMMIT).write_text(text)
    reader = RunFolder(folder.path)
    for read in (lambda: reader.epochs, lambda: reader.history("exact"), reader.verify, reader.remove_uncommitted):
        with pytest.raises(RunFolderError, match=re.escape(f"{str(folder.path / COMMIT)!r}: {message}")):
            read()


def test_a_folder_without_a_commit_has_no_files_to_read(tmp_path):
    made = RunFolder.create(tmp_path / "run", {"config": {}, "trackers": TRACKERS})
    with pytest.raises(RunFolderError, match=re.escape(f"{str(made.path)!r}: no epoch of this run was completed")):
        made.history_path("exact")


def test_create_refuses_to_mix_two_runs(folder):
    with pytest.raises(RunFolderError, match="exists and is not empty; pass --overwrite"):
        RunFolder.create(folder.path, {"config": {}, "trackers": ["exact"]})
    assert_reads_as(folder.path, 1)
    again = RunFolder.create(folder.path, {"config": {}, "trackers": ["exact"]}, overwrite=True)
    assert entries(again) == [CONFIG] and again.trackers == ["exact"]
    assert [p.name for p in folder.path.parent.iterdir()] == ["run"]  # no staging folder left beside it


def test_a_reader_opens_one_trackers_history_file_directly(tmp_path):
    out = tmp_path / "run"
    result = train(TrainConfig(preset="tiny", epochs=2, samples=128), make_trackers(TRACKERS), out=out)
    reader = RunFolder(out)
    for name in TRACKERS:
        path = reader.history_path(name)
        assert path.is_file() and path.name == history_filename(name) and path.parent.name == "epoch-0002"
        loads_strict(path.read_text(encoding="utf-8"))  # plain strict JSON, nothing else to know
        assert load_history(path) == result.histories[name] == reader.history(name)
    assert reader.histories() == result.histories
    assert reader.checkpoint()["epoch"] == 2 and reader.file_path(CHECKPOINT).parent == path.parent


SITECUSTOMIZE = '''
"""Simulates CPython's ctypes on Windows: find_library("c") is None, CDLL(None) raises TypeError."""
import ctypes
import ctypes.util
import sys

_find_library, _CDLL = ctypes.util.find_library, ctypes.CDLL


def find_library(name):
    return None if name == "c" else _find_library(name)


class CDLL(_CDLL):
    def __init__(self, name, *args, **kwargs):
        if name is None:  # Windows' CDLL tests '/' in name first
            raise TypeError("argument of type 'NoneType' is not iterable")
        super().__init__(name, *args, **kwargs)


ctypes.util.find_library, ctypes.CDLL = find_library, CDLL
try:  # what the old run folder code did at import
    ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
except TypeError:
    print("simulated: ctypes as on Windows", file=sys.stderr, flush=True)
else:
    raise SystemExit("the ctypes simulation did not take hold")
'''


@pytest.mark.slow
def test_a_run_works_with_ctypes_as_on_windows(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent(SITECUSTOMIZE))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])}
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "accumbug", "run", "--preset", "tiny", "--epochs", "2", "--out",
                           str(out), "--no-progress", "--tracker", "exact"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600, check=False)
    assert done.stderr.startswith("simulated: ctypes as on Windows\n"), done.stderr  # in that very process
    assert done.returncode == 0, done.stderr
    reader = RunFolder(out)
    assert reader.epochs == 2 and reader.trackers == ["exact"]
    reader.verify()
    assert len(reader.history("exact")["train_loss"]) == 2 and len(reader.console_lines()) == 2
    assert reader.checkpoint()["epoch"] == 2
    assert (out / "divergence.png").read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "site"]  # nothing written elsewhere
