"""Checkpoints and resume: what ``checkpoint.pt`` holds, and the checks before a run folder is continued.

A checkpoint holds the model, optimizer, scaler and RNG states after an epoch
(``checkpoint_bytes``); the run folder stores those bytes under its name with the epoch's
other files (``runfolder.epoch_files``). ``restore`` continues a run folder: it checks, in
this order, the number of ranks, the settings (only ``config.RESUMABLE_CHANGES`` may differ),
the trackers and the epochs, then that an epoch was committed, the histories are readable,
the checkpoint loads and every committed file is unchanged (``RunFolder.verify``); only then
does it load the states. On a CPU a resumed run writes the same bytes an uninterrupted one
would (``tests/test_reliability.py``).
"""

from __future__ import annotations

import io
import random
from dataclasses import fields

import torch

from .config import RESUMABLE_CHANGES, TrainConfig, run_config
from .distributed import Ranks
from .runfolder import CHECKPOINT, COMMIT, RunFolder, RunFolderError

__all__ = ["CHECKPOINT_FORMAT", "check_resumable", "checkpoint_bytes", "restore"]

CHECKPOINT_FORMAT = "accumbug-checkpoint/2"


def checkpoint_bytes(epoch: int, net: torch.nn.Module, optimizer, scaler) -> bytes:
    """The checkpoint after ``epoch``: model, optimizer, scaler and RNG states, as ``torch.save`` writes."""
    state = {"format": CHECKPOINT_FORMAT, "epoch": epoch, "model": net.state_dict(),
             "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "rng": _rng_state()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def restore(folder: RunFolder, config: TrainConfig, names: list[str], ranks: Ranks | None,
            net: torch.nn.Module, optimizer, scaler) -> dict[str, dict]:
    """Load ``folder``'s last committed epoch into ``net``, ``optimizer``, ``scaler`` and the RNGs.

    Returns the histories of the committed epochs, by tracker name. Every rank reads the folder.
    """
    check_resumable(folder, config, names, ranks)
    if folder.commit() is None:
        raise RunFolderError(f"resume={str(folder.path)!r}: no epoch of this run was completed "
                             f"(no {COMMIT}); nothing to resume")
    histories, state = folder.histories(), folder.checkpoint()
    folder.verify()
    if state.get("format") != CHECKPOINT_FORMAT or state.get("epoch") != folder.epochs:
        raise RunFolderError(f"{str(folder.file_path(CHECKPOINT))!r}: not the checkpoint of this commit")
    net.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    _set_rng_state(state["rng"])
    return histories


def check_resumable(folder: RunFolder, config: TrainConfig, names: list[str], ranks: Ranks | None) -> None:
    """Refuse to resume ``folder`` with other settings, trackers or ranks, or fewer epochs than it has."""
    saved = run_config(folder)
    made, world = (folder.record.get("ranks") or {}).get("world", 1), 1 if ranks is None else ranks.world
    if made != world:
        how = "in one process, without torchrun" if made == 1 else f"under torchrun --nproc-per-node {made}"
        raise RunFolderError(f"ranks={world}: the run in {str(folder.path)!r} was made with {made}; "
                             f"resume it {how} (the shards decide the numbers)")
    for name in (f.name for f in fields(TrainConfig) if f.name not in RESUMABLE_CHANGES):
        if getattr(config, name) != getattr(saved, name):
            raise RunFolderError(f"{name}={getattr(config, name)!r}: the run in {str(folder.path)!r} "
                                 f"was made with {name}={getattr(saved, name)!r}; "
                                 "a resumed run keeps its settings")
    if names != folder.trackers:
        raise RunFolderError(f"trackers={names}: the run in {str(folder.path)!r} was made with "
                             f"trackers={folder.trackers}")
    if config.epochs < folder.epochs:
        raise RunFolderError(f"epochs={config.epochs}: the run in {str(folder.path)!r} has already completed "
                             f"{folder.epochs} epochs")


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "python": list(random.getstate()),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
