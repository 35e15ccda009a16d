"""The run folder: created safely, and changed all at once after every epoch.

A run folder holds ``config.json``, ``console.log``, one ``history-<tracker>.json`` per
tracker and ``checkpoint.pt``. After each epoch all of them change together. Writing them
one by one, even each atomically, leaves a moment in which one history holds epoch 3 and
another still epoch 2. So an epoch is committed as a whole. Every file of the new state
is written and flushed to disk in a hidden sibling folder (unchanged files are hard links),
and that folder is then swapped with the run folder in one atomic step
(``renameat2(RENAME_EXCHANGE)`` on Linux, ``renamex_np(RENAME_SWAP)`` on macOS). A process
killed at any moment leaves the old epoch's folder or the new one, never a mix. Where
neither call exists (Windows, some network file systems) each file is still replaced
atomically, one after another. ``docs/reliability.md`` lists what is promised and the
fault tests that check it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import sys
import uuid
from pathlib import Path

from .history import atomic_write_bytes

__all__ = ["RunFolderError", "commit_files", "create_run_folder", "remove_stale_staging"]

_STAGING_MARK = ".staging-"


class RunFolderError(ValueError):
    """A run folder that cannot be used as asked (exists, unwritable, not a run folder)."""


def create_run_folder(out: Path, overwrite: bool, files: dict[str, bytes]) -> None:
    """Create the run folder ``out`` holding ``files``, all at once. Refuses to mix two runs.

    The files are written in a hidden sibling folder that is then renamed to ``out``, so a
    process killed meanwhile leaves no partial run folder and no temporary file inside one.
    """
    blocked = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        raise RunFolderError(f"out={str(out)!r}: cannot write there ({str(blocked)!r} is a file, not a folder)")
    if out.exists():
        if not out.is_dir():
            raise RunFolderError(f"out={str(out)!r}: exists and is not a folder")
        if any(out.iterdir()):
            if not overwrite:
                raise RunFolderError(f"out={str(out)!r}: exists and is not empty; pass --overwrite or choose another folder")
            if not (out / "config.json").exists():
                raise RunFolderError(f"out={str(out)!r}: not a run folder (no config.json); refusing to overwrite it")
            shutil.rmtree(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(out)
        staging = _write_staging(out, files)
    except OSError as error:
        raise RunFolderError(f"out={str(out)!r}: cannot write there ({error.strerror or error})") from None
    try:
        os.rename(staging, out)  # onto a missing or empty folder: atomic
        _fsync_folder(out.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def remove_stale_staging(out: Path) -> None:
    """Delete staging folders that a killed run left beside ``out``."""
    for stale in out.parent.glob(f".{out.name}{_STAGING_MARK}*"):
        shutil.rmtree(stale, ignore_errors=True)


def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    except OSError:
        return None


_LIBC = _libc()
_AT_FDCWD, _RENAME_EXCHANGE, _RENAME_SWAP = -100, 2, 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two folders atomically; False where the system offers no such call."""
    if _LIBC is None:
        return False
    if sys.platform.startswith("linux") and hasattr(_LIBC, "renameat2"):
        status = _LIBC.renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    elif sys.platform == "darwin" and hasattr(_LIBC, "renamex_np"):
        status = _LIBC.renamex_np(os.fsencode(a), os.fsencode(b), _RENAME_SWAP)
    else:
        return False
    if status == 0:
        return True
    error = ctypes.get_errno()
    if error in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: the file system cannot swap
        return False
    raise OSError(error, os.strerror(error), str(b))


def _fsync_folder(folder: Path) -> None:
    if os.name == "nt":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_staging(out: Path, files: dict[str, bytes]) -> Path:
    """A hidden sibling folder of ``out`` holding ``files``, flushed to disk."""
    staging = out.parent / f".{out.name}{_STAGING_MARK}{uuid.uuid4().hex}"
    staging.mkdir()
    for name, content in files.items():
        with open(staging / name, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
    _fsync_folder(staging)
    return staging


def commit_files(out: Path, files: dict[str, bytes]) -> None:
    """Replace ``files`` (name -> content) in ``out`` all at once, keeping its other files."""
    staging = _write_staging(out, files)
    try:
        for entry in out.iterdir():
            if entry.name not in files and entry.is_file():
                os.link(entry, staging / entry.name)
        if _exchange(staging, out):
            _fsync_folder(out.parent)
        else:
            for name, content in files.items():
                atomic_write_bytes(out / name, content)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
