"""Shared by the benchmark scripts: machine facts and the results file.

Every result file records the command that made it, the machine, torch's version and the
thread count, so a figure in ``docs/performance.md`` can be traced to the run behind it.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            names = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return {
        "cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
    }


def best_of(rounds: list[float]) -> float:
    """The median of the rounds: robust to the odd slow round on a shared machine."""
    return statistics.median(rounds)


def save(name: str, results: dict) -> Path:
    """Write ``results/<name>-<device>.json`` with the command and the machine."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    document = {"command": "python " + " ".join(shlex.quote(a) for a in sys.argv), "date": time.strftime("%Y-%m-%d"),
                "machine": machine(), **results}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}-{device}.json"
    path.write_text(json.dumps(document, indent=1) + "\n")
    return path
