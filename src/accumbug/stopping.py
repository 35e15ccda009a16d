"""Ctrl-C and SIGTERM: a run stops at the next batch boundary, and says what it kept.

While ``train()`` runs, SIGINT and SIGTERM go to a ``StopRequest``; the loop asks it after
every batch and at every epoch's end (``StopRequest.agreed``) and, once it names a signal,
raises ``RunStopped`` (``run_stopped``), so nothing partial is committed. Under torchrun the
ranks first agree on where to stop (one ``all_reduce`` every ``STOP_CHECK_EVERY`` batches)
(``docs/reliability.md``, section 6).
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

import torch

from .distributed import Ranks
from .runfolder import committed_epochs

__all__ = ["STOP_CHECK_EVERY", "RunStopped", "StopRequest", "run_stopped", "stop_on_signals"]

STOP_CHECK_EVERY = 25  # under torchrun, batches between the ranks' agreements on a stop (one all_reduce)


class RunStopped(Exception):
    """Ctrl-C or SIGTERM stopped the run at a batch boundary; nothing partial was committed.

    ``signal_name`` is ``SIGINT`` or ``SIGTERM``; ``result`` holds the completed epochs (their
    histories, console lines and timings), so an interrupted notebook cell keeps them.
    """

    def __init__(self, message: str, signal_name: str, result):
        super().__init__(message)
        self.signal_name, self.result = signal_name, result


class StopRequest:
    """A signal handler: the first SIGINT or SIGTERM asks the run to stop at the next batch boundary.

    A second signal stops at once in one process. Under torchrun (``ranks``) it is ignored: a
    terminal's Ctrl-C reaches every rank and the launcher, which forwards it, so a rank sees
    it twice; the launcher's own timeout is the hard stop there.
    """

    def __init__(self, ranks: Ranks | None = None, device: torch.device | str = "cpu"):
        self.number, self.ranks, self.device = 0, ranks, device

    def __call__(self, number, frame) -> None:
        if self.number and self.ranks is None:
            raise KeyboardInterrupt  # a second signal: at once (commits are atomic, so nothing is corrupted)
        self.number = self.number or int(number)

    def agreed(self, batch: int = 0, at_epoch_end: bool = False) -> str | None:
        """The signal that stops the run after ``batch`` (1-based) or its epoch; under torchrun, agreed.

        A signal during an epoch's last batch lets that epoch be committed: the run stops at the
        epoch's end (``at_epoch_end``; not after the last epoch, when the run is done anyway).
        Ranks receive a signal at different moments, so each would stop at its own batch and
        the others would wait in their next collective. Every ``STOP_CHECK_EVERY`` batches and
        at an epoch's end the ranks take the largest signal number any of them received (one
        ``all_reduce``), and all stop at the same place.
        """
        if not (batch or at_epoch_end):
            return None
        number = self.number
        if self.ranks is not None:
            if batch % STOP_CHECK_EVERY:
                return None
            agreed = torch.tensor(number, dtype=torch.int64, device=self.device)
            self.ranks.max_(agreed)
            number = int(agreed)
        return signal.Signals(number).name if number else None


@contextmanager
def stop_on_signals(request: StopRequest):
    """While training, SIGINT and SIGTERM go to ``request`` (main thread only); then the old handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    names = [name for name in ("SIGINT", "SIGTERM") if hasattr(signal, name)]
    previous = {name: signal.signal(getattr(signal, name), request) for name in names}
    try:
        yield request
    finally:
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler)


def run_stopped(name: str, when: str, result, ranks: Ranks | None) -> RunStopped:
    """The ``RunStopped`` for signal ``name`` (received ``when``): what was kept, and how to go on.

    ``result`` is the run's ``train.TrainResult`` so far (its run folder, its completed epochs).
    """
    folder = result.folder
    kept = 0 if folder is None else folder.epochs
    launcher = "" if ranks is None else f" under torchrun --nproc-per-node {ranks.world}"
    if ranks is not None and not ranks.writes_files:
        where = "rank 0 keeps the run folder"
    elif folder is None:
        where = f"{len(result.epoch_seconds)} completed epoch(s) are in this exception's result"
    elif kept:
        where = (f"the run folder {str(folder.path)!r} keeps {committed_epochs(kept)}; continue with "
                 f"--resume {folder.path}{launcher}")
    else:
        where = "no epoch was completed, so no run folder is left; start the run again"
    return RunStopped(f"{name} {when}; nothing partial was saved; {where}", name, result)
