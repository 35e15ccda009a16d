"""The incident write-up's own numbers and words, quoted: its console log, the size of its run, its claims.

Nothing here is measured. The claim audit (``audit.py``) sets each measured value beside one
of these quotes, and the mechanism gallery (``mechanisms.py``) starts its scenario from the
write-up's console, so that every mechanism shows what that console would have turned into
(``03_what_really_breaks.ipynb``). ``WRITE_UP_QUOTES`` holds, for each claim of the audit, the
write-up's own lines, verbatim (leading indentation dropped); ``docs/incident.md`` prints them.
"""

from __future__ import annotations

import re

__all__ = ["INCIDENT_AFTER_LINE", "INCIDENT_AFTER_VALUES", "INCIDENT_BATCH_SIZE", "INCIDENT_CLASSES",
           "INCIDENT_CONSOLE", "INCIDENT_CONSOLE_LOG", "INCIDENT_SAMPLES", "INCIDENT_SAVED_LINE", "WRITE_UP",
           "WRITE_UP_QUOTES"]

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


WRITE_UP = "training-metrics-bug-flow.txt"  # the write-up's file

INCIDENT_SAVED_LINE = "[0.0, 0.0, 0.0, 0.0, ...]  ← Corrupted! ❌"  # what the JSON held, before the fix
INCIDENT_AFTER_LINE = "✓ Values saved as: [9.1621, 8.7352, 8.2003, ...]"  # what it says the JSON holds after the fix
INCIDENT_AFTER_VALUES = tuple(float(value) for value in re.findall(r"\d+\.\d+", INCIDENT_AFTER_LINE))

WRITE_UP_QUOTES: dict[int, tuple[str, ...]] = {  # keyed by the number of the audit's claim (audit.CLAIMS)
    1: ("SCENARIO: Training with batch_size=16, 136,312 samples → ~8,519 batches/epoch",),
    2: ("loss = criterion(outputs, labels)          # Loss() averages by default",
        "# loss.item() = 9.14  (ALREADY BATCH-AVERAGED)"),
    3: ("After 8519 batches:", "loss_sum = ~1,238,000  (way too large!)", "total = ~136,304 samples"),
    4: ("# ❌ BUG: Multiplying batch-averaged loss by batch_size",
        "├─ Broken: sum_of_batch_losses * batch_size / num_samples (wrong formula)"),
    5: ("But due to floating point accumulation errors over 8519 iterations:", "→ Metrics become NaN or Inf"),
    6: ("→ JSON serializes these as 0.0", "→ Result: [0.0, 0.0, 0.0, ...] ❌"),
    7: ("After 8519 batches per epoch:", "loss_sum = ~74,000 (sum of all batch-averaged losses)",
        "total = ~8519 batches", "loss = loss_sum / total                    # 74,000 / 8519 = 8.68",
        INCIDENT_AFTER_LINE),
    8: ("✓ Metrics are in reasonable range: ~8.68", "✓ JSON serialization works correctly"),
    9: ("loss = 1,238,000 / 136,304 = 9.08...", "loss = loss_sum / total                    # 74,000 / 8519 = 8.68"),
    10: ("Console Output (Still Shows Real Values):", "✓ Displays: loss=9.1621",
         "✓ But JSON save happens later with corrupted values ❌",
         "Epoch 1 [Train]: loss=9.1621, top1=0.00%, top5=0.20%  ← Real metrics!", INCIDENT_SAVED_LINE),
    11: ("├─ Both were independent of loss accumulation", "├─ These might show non-zero values but unreliable"),
    12: ("✓ Model weights/checkpoints are fine",),
    13: ("outputs = model(images)                    # [16, 7120]", "# loss.item() = 9.14  (ALREADY BATCH-AVERAGED)"),
}
