"""The incident write-up's own numbers, quoted: its console log and the size of its run.

Nothing here is measured. The claim audit (``audit.py``) sets each measured value beside one
of these quotes, and the mechanism gallery (``mechanisms.py``) starts its scenario from the
write-up's console, so that every mechanism shows what that console would have turned into
(``03_what_really_breaks.ipynb``).
"""

from __future__ import annotations

import re

__all__ = ["INCIDENT_BATCH_SIZE", "INCIDENT_CLASSES", "INCIDENT_CONSOLE", "INCIDENT_CONSOLE_LOG", "INCIDENT_SAMPLES"]

INCIDENT_SAMPLES = 136_312
INCIDENT_CLASSES = 7_120
INCIDENT_BATCH_SIZE = 16

INCIDENT_CONSOLE_LOG = (
    "Epoch 1 [Train]: loss=9.1621, top1=0.00%, top5=0.20%",
    "Epoch 2 [Train]: loss=8.7352, top1=0.60%, top5=0.60%",
    "Epoch 3 [Train]: loss=8.2003, top1=2.42%, top5=6.25%",
    "Epoch 4 [Train]: loss=7.5350, top1=3.88%, top5=13.15%",
)

_LINE = re.compile(r"Epoch (\d+) \[Train\]: loss=([\d.]+), top1=([\d.]+)%, top5=([\d.]+)%")


def _parse(line: str) -> dict[str, float]:
    epoch, loss, top1, top5 = _LINE.fullmatch(line).groups()
    return {"epoch": int(epoch), "loss": float(loss), "top1": float(top1), "top5": float(top5)}


INCIDENT_CONSOLE = tuple(_parse(line) for line in INCIDENT_CONSOLE_LOG)
