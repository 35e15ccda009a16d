# Clean: the history is written as strict JSON (allow_nan=False), atomically. A non-finite
# value makes the save fail loudly instead of being written as 0.0 or as a NaN token.
import json
import math
import os
import tempfile


def check_finite(history: dict) -> None:
    for key, values in history.items():
        for epoch, value in enumerate(values):
            if not math.isfinite(value):
                raise ValueError(f"{key}[{epoch}] = {value!r}: not finite; find the batch that diverged")


def save_history(path: str, history: dict) -> None:
    check_finite(history)
    folder = os.path.dirname(os.path.abspath(path))
    with tempfile.NamedTemporaryFile("w", dir=folder, suffix=".tmp", delete=False) as handle:
        json.dump(history, handle, allow_nan=False, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(handle.name, path)


def load_history(path: str) -> dict:
    with open(path) as handle:
        return json.load(handle)
