"""SPECIMEN. The incident's end of epoch and its save: how its values reached ``history.json``.

The write-up shows the path: ``train_metrics = metrics.get_metrics()``, then
``history['train_loss'].append(train_metrics['loss'])``, and "at very end of training"
``json.dump(history, f)``. ``IncidentLog`` is that path, as the trainer's ``epoch_hook``
(``train(..., epoch_hook=log)``): it appends each metric as ``get_metrics`` returned it,
resets the tracker after reading it, and at the end writes each tracker's history with
the writer the caller chose (``serialisers.py``).

What is wrong: nothing converts the values when they are appended. A tracker that returns
its own tensor (the in-place mean of ``gallery_trackers.py``) leaves the history holding a
buffer that the ``reset()`` after the last epoch zeroes; a tracker that returns any tensor
meets a sanitiser that writes 0.0 for what is not a float. Either way the console prints
real values and the file holds ``[0.0, 0.0, 0.0, 0.0]``. The fix: ``float(value)`` when
appending, and a strict writer (what the trainer's own history does).
``01_side_by_side_small.ipynb`` and ``02_side_by_side_full_136k.ipynb`` show it.
"""

from __future__ import annotations

from ..runfolder import history_key
from .serialisers import SERIALISERS, write

__all__ = ["INCIDENT_METRICS", "IncidentLog"]

INCIDENT_METRICS = ("loss", "top1", "top5")


class IncidentLog:
    """The incident's ``history`` dict for each tracker named in ``writers``, and its save.

    ``writers`` maps a tracker name to the serialiser (a key of ``serialisers.SERIALISERS``)
    that saves its history; trackers not named are left alone.
    """

    def __init__(self, writers: dict[str, str]):
        for name, writer in writers.items():
            if writer not in SERIALISERS:
                raise ValueError(f"writers[{name!r}]={writer!r}: unknown; allowed: {', '.join(SERIALISERS)}")
        self.writers = dict(writers)
        self.histories = {name: {history_key("train", key): [] for key in INCIDENT_METRICS} for name in writers}

    def __call__(self, epoch: int, tracker, metrics: dict) -> None:
        """End of an epoch: ``history[...].append(train_metrics[...])`` as is, then ``metrics.reset()``."""
        if tracker.name not in self.histories:
            return
        for key in INCIDENT_METRICS:
            self.histories[tracker.name][history_key("train", key)].append(metrics[key])
        tracker.reset()

    def saved(self, name: str) -> str:
        """What ``json.dump(history, f)`` at the very end of training wrote for tracker ``name``."""
        if name not in self.histories:
            raise ValueError(f"name={name!r}: no history; kept for {', '.join(self.histories)}")
        return write(self.histories[name], self.writers[name])
