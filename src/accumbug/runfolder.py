"""The run folder: its layout, its history keys, and the one place that writes and reads it.

A run folder looks like this after its third epoch::

    run/
      config.json          the run's settings and tracker names, written once at the start
      commit.json          which epoch folder is committed, each file's SHA-256, epoch times
      epoch-0003/
        console.log        the console lines of epochs 1-3
        history-exact.json one strict, lossless history file per tracker (``history.py``)
        history-incident-broken-python.json
        checkpoint.pt      model, optimizer, scaler and RNG states, to resume from
      divergence.png       written once the run has finished (``python -m accumbug``)

Each file lives in one place: the histories only in their files, the settings only in
``config.json``. A reader can open one tracker's history file directly
(``RunFolder(path).history_path(name)`` says where), or read them all through ``RunFolder``.

**All or nothing, on every system.** An epoch is committed as a whole: its files are written
and flushed in a hidden folder inside the run folder, which is renamed to ``epoch-NNNN``;
then ``commit.json`` is replaced with ``os.replace``, which is atomic on Linux, macOS and
Windows, and only then are the older epoch folders removed. Readers follow ``commit.json``,
so a process killed at any moment leaves the last committed epoch or the new one, never a
mix; a folder that ``commit.json`` does not name is left-over work, ignored by readers and
removed by the next writer. No C library and no system-specific call is needed.
``docs/reliability.md`` lists the promises and the fault tests that check them.

This module is the one that knows the layout: the files an epoch holds and their names
(``epoch_files``: the histories, ``console.log``'s text, the checkpoint's bytes as
``checkpoint.py`` makes them), ``config.json``'s record (``run_record``), ``commit.json``
and the folders. History keys are ``<phase>_<quantity>`` (``train_loss``, ``eval_top5``):
``history_key`` is the one place that spells them.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import shutil
import uuid
from functools import cached_property
from pathlib import Path

from .history import HistoryFileError, atomic_write_bytes, dumps_history, load_history

__all__ = ["CHECKPOINT", "COMMIT", "CONFIG", "CONSOLE", "PHASES", "RECORDED_STATES", "RUN_FORMAT",
           "CommitError", "RunFolder", "RunFolderError", "committed_epochs", "epoch_files", "history_filename",
           "history_key", "run_record", "series"]

CONFIG, COMMIT, CONSOLE, CHECKPOINT = "config.json", "commit.json", "console.log", "checkpoint.pt"
RUN_FORMAT = "accumbug-run/1"
PHASES = ("train", "eval")
RECORDED_STATES = ("loss_sum", "total")  # tracker states a history records per epoch, where the tracker declares them
_EPOCH_FOLDER = "epoch-{:04d}"
_PARTIAL = ".partial-"  # a folder being written; never named by commit.json
_STAGING = ".staging-"  # a run folder being created, beside it


class RunFolderError(ValueError):
    """A run folder that cannot be used as asked (exists, unwritable, not a run folder, changed by hand)."""


class CommitError(OSError):
    """An epoch could not be committed (a full disk, a folder made read-only, any ``OSError``).

    The run folder is left as after its last commit (or, when only the tidying after a commit
    failed, with that commit); the message names the folder, the epoch, why, the epochs kept
    and how to continue.
    """


def committed_epochs(count: int) -> str:
    """``epoch 1`` or ``epochs 1-N``: what a run folder keeps, in the messages of a run that ended early."""
    return "epoch 1" if count == 1 else f"epochs 1-{count}"


def history_filename(tracker_name: str) -> str:
    """The file name of a tracker's history: ``history-incident-broken-python.json`` for ``incident-broken:python``."""
    return f"history-{tracker_name.replace(':', '-')}.json"


def history_key(phase: str, quantity: str) -> str:
    """The key of one series in a history: ``train_loss``, ``eval_top1``, ``train_total``."""
    if phase not in PHASES:
        raise ValueError(f"phase={phase!r}: unknown; allowed: {', '.join(PHASES)}")
    return f"{phase}_{quantity}"


def series(history: dict, quantity: str, phase: str = "train") -> list:
    """One quantity's values per epoch: ``series(history, "loss")`` is ``history["train_loss"]``."""
    return history[history_key(phase, quantity)]


def run_record(config: dict, data: dict, device: str, trackers: list[str], ranks=None) -> dict:
    """``config.json``'s record: the settings, the data set, the device, the trackers' names, the versions.

    ``ranks`` (a ``distributed.Ranks``, under torchrun) adds the world size and backend.
    """
    import torch  # here and in ``checkpoint``, not above: the doctor reads run folders without importing torch

    return {"config": config, "data": data, "device": device, "trackers": list(trackers),
            "torch": torch.__version__, "python": platform.python_version(),
            "ranks": {"world": ranks.world, "backend": ranks.backend} if ranks else None}


def epoch_files(histories: dict[str, dict], console_lines: list[str], checkpoint: bytes) -> dict[str, bytes]:
    """What a commit holds: one history file per tracker, the console lines so far, the checkpoint."""
    files = {history_filename(name): dumps_history(history).encode() for name, history in histories.items()}
    files[CONSOLE] = ("\n".join(console_lines) + "\n").encode()
    files[CHECKPOINT] = checkpoint
    return files


def _fsync_folder(folder: Path) -> None:
    if os.name == "nt":  # Windows cannot open a folder to flush it; NTFS journals the rename itself
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_folder(folder: Path, files: dict[str, bytes]) -> None:
    """Make ``folder`` holding ``files``, every file and the folder flushed to disk."""
    folder.mkdir()
    for name, content in files.items():
        with open(folder / name, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
    _fsync_folder(folder)


def _digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


class RunFolder:
    """One run folder: read it (``history``, ``console_lines``, ``checkpoint``), commit epochs to it."""

    def __init__(self, path):
        self.path = Path(path)

    @classmethod
    def create(cls, path, record: dict, overwrite: bool = False) -> RunFolder:
        """A new run folder holding ``config.json`` (``record``), made all at once; refuses to mix two runs.

        ``config.json`` is written in a hidden sibling folder that is then renamed to ``path``,
        so a process killed meanwhile leaves no partial run folder.
        """
        out = Path(path)
        _check_new(out, overwrite)
        staging = out.parent / f".{out.name}{_STAGING}{uuid.uuid4().hex}"
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            for stale in out.parent.glob(f".{out.name}{_STAGING}*"):
                shutil.rmtree(stale, ignore_errors=True)
            _write_folder(staging, {CONFIG: (json.dumps(record, indent=1) + "\n").encode()})
            os.rename(staging, out)  # onto a missing folder: atomic
            _fsync_folder(out.parent)
        except OSError as error:
            raise RunFolderError(f"out={str(out)!r}: cannot write there ({error.strerror or error})") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return cls(out)

    # -- reading ---------------------------------------------------------------------------------

    @cached_property
    def record(self) -> dict:
        """``config.json``: ``config``, ``data``, ``device``, ``trackers``, versions."""
        path = self.path / CONFIG
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            trackers = record["trackers"] if isinstance(record, dict) else None  # a KeyError without them
            listed = isinstance(trackers, list)
            if not listed:
                raise ValueError("no tracker list")
            return record
        except FileNotFoundError:
            raise RunFolderError(f"{str(self.path)!r}: no {CONFIG} there; not a run folder") from None
        except (ValueError, KeyError, TypeError) as error:
            raise RunFolderError(f"{str(self.path)!r}: {CONFIG} is corrupt ({error})") from None

    @property
    def trackers(self) -> list[str]:
        return list(self.record["trackers"])

    @property
    def phase(self) -> str:
        """``train``, or ``eval`` for a run without optimizer steps: the prefix of its history keys."""
        return "eval" if self.record["config"].get("eval_only") else "train"

    def commit(self) -> dict | None:
        """``commit.json``, or None when no epoch was committed yet."""
        try:
            commit = json.loads((self.path / COMMIT).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except ValueError as error:
            raise RunFolderError(f"{str(self.path / COMMIT)!r}: corrupt ({error})") from None
        if not isinstance(commit, dict) or commit.get("format") != RUN_FORMAT:
            raise RunFolderError(f"{str(self.path / COMMIT)!r}: not an {RUN_FORMAT} commit record")
        return commit

    @property
    def epochs(self) -> int:
        """How many epochs are committed."""
        commit = self.commit()
        return 0 if commit is None else commit["epoch"]

    def _committed(self) -> tuple[dict, Path]:
        commit = self.commit()
        if commit is None:
            raise RunFolderError(f"{str(self.path)!r}: no epoch of this run was completed (no {COMMIT})")
        return commit, self.path / commit["folder"]

    def file_path(self, name: str) -> Path:
        """Where the committed epoch's file ``name`` is (``console.log``, ``checkpoint.pt``, a history)."""
        return self._committed()[1] / name

    def history_path(self, tracker_name: str) -> Path:
        return self.file_path(history_filename(tracker_name))

    def history(self, tracker_name: str) -> dict:
        """One tracker's history, lossless (``history.load_history``)."""
        path = self.history_path(tracker_name)
        try:
            return load_history(path)
        except (OSError, HistoryFileError) as error:
            raise RunFolderError(f"{str(path)!r}: unreadable history ({error})") from None

    def histories(self) -> dict[str, dict]:
        """Every tracker's history, by tracker name, in the order of ``config.json``."""
        return {name: self.history(name) for name in self.trackers}

    def console_lines(self) -> list[str]:
        return self.file_path(CONSOLE).read_text(encoding="utf-8").splitlines()

    def checkpoint(self) -> dict:
        """The committed epoch's checkpoint (loaded with ``weights_only=True``)."""
        path = self.file_path(CHECKPOINT)
        if not path.is_file():
            raise RunFolderError(f"{str(path)!r}: missing; the folder was changed by hand")
        import torch

        try:
            return torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 -- torch raises several types for a damaged file
            raise RunFolderError(f"{str(path)!r}: corrupt or truncated checkpoint ({type(error).__name__})") from None

    def verify(self) -> None:
        """Check that every committed file is there and unchanged since its commit (SHA-256)."""
        commit, folder = self._committed()
        for name in commit["files"]:
            if name.startswith("history-"):
                self.history(name[len("history-"):-len(".json")])  # a named error for an unreadable history
        for name, digest in commit["files"].items():
            path = folder / name
            if not path.is_file() or _digest(path.read_bytes()) != digest:
                raise RunFolderError(f"{str(path)!r}: does not match {COMMIT}; the folder was changed by hand")

    # -- writing ---------------------------------------------------------------------------------

    def commit_epoch(self, epoch: int, files: dict[str, bytes], epoch_seconds: list[float]) -> None:
        """Make ``files`` the run folder's committed state after ``epoch``, all at once.

        An ``OSError`` on the way (``ENOSPC``, ``EROFS``, ...) leaves the folder as after its
        last commit, the new epoch's files removed, and raises ``CommitError``.
        """
        try:
            self._commit(epoch, files, epoch_seconds)
        except OSError as error:
            kept = self.epochs
            if kept == epoch:  # committed; only the tidying after it failed: the next writer removes what is left
                raise CommitError(f"{str(self.path)!r}: epoch {epoch} was committed, but tidying the folder after "
                                  f"it failed ({error.strerror or error}); the folder keeps "
                                  f"{committed_epochs(kept)}; continue with --resume {self.path}") from None
            try:
                self.remove_uncommitted()
            except OSError:
                pass  # a folder made read-only: readers still follow commit.json; the next writer cleans up
            where = f"{str(self.path)!r}: epoch {epoch} could not be saved ({error.strerror or error})"
            if not kept:
                raise CommitError(f"{where}; no epoch was committed, so there is nothing to resume: "
                                  "free space or fix the folder and start the run again") from None
            raise CommitError(f"{where}; the folder keeps {committed_epochs(kept)} as committed; free space or fix "
                              f"the folder, then continue with --resume {self.path}") from None

    def _commit(self, epoch: int, files: dict[str, bytes], epoch_seconds: list[float]) -> None:
        self.remove_uncommitted()
        final = self.path / _EPOCH_FOLDER.format(epoch)
        partial = self.path / f"{_PARTIAL}{uuid.uuid4().hex}"
        try:
            _write_folder(partial, files)
            os.rename(partial, final)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        _fsync_folder(self.path)
        commit = {"format": RUN_FORMAT, "epoch": epoch, "folder": final.name,
                  "files": {name: _digest(content) for name, content in files.items()},
                  "epoch_seconds": epoch_seconds}
        atomic_write_bytes(self.path / COMMIT, (json.dumps(commit, indent=1) + "\n").encode())
        _fsync_folder(self.path)
        self.remove_uncommitted()

    def remove_uncommitted(self) -> None:
        """Delete what a killed writer left: epoch folders ``commit.json`` does not name, half-written ones,
        and the temporary files of atomic replaces (``.commit.json.<hex>.tmp``) cut short."""
        commit = self.commit()
        kept = None if commit is None else commit["folder"]
        for entry in self.path.iterdir():
            if entry.is_dir() and entry.name != kept and (entry.name.startswith(_PARTIAL) or
                                                          entry.name.startswith("epoch-")):
                shutil.rmtree(entry, ignore_errors=True)
            elif entry.is_file() and entry.name.startswith(".") and entry.name.endswith(".tmp"):
                entry.unlink(missing_ok=True)

    def write_file(self, name: str, content: bytes) -> Path:
        """A file beside the epochs (a figure), replaced atomically."""
        atomic_write_bytes(self.path / name, content)
        return self.path / name


def _check_new(out: Path, overwrite: bool) -> None:
    """Refuse a place that is not free for a new run: below a file, a file, another run without ``overwrite``."""
    blocked = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        raise RunFolderError(f"out={str(out)!r}: cannot write there ({str(blocked)!r} is a file, not a folder)")
    if not out.exists():
        return
    if not out.is_dir():
        raise RunFolderError(f"out={str(out)!r}: exists and is not a folder")
    if any(out.iterdir()):
        if not overwrite:
            raise RunFolderError(f"out={str(out)!r}: exists and is not empty; "
                                 "pass --overwrite or choose another folder")
        if not (out / CONFIG).exists():
            raise RunFolderError(f"out={str(out)!r}: not a run folder (no {CONFIG}); refusing to overwrite it")
        shutil.rmtree(out)
    else:
        out.rmdir()
