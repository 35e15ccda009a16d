"""Redraw times of the explorer (``04_explorer.ipynb``): each control changed in turn, several rounds.

A redraw is timed from the change of a control's value to the new PNG in the pane's
``Image`` widget (``Explorer.redraw_seconds``). The target is under 0.5 s on a laptop CPU.

    python benchmarks/bench_explorer.py [--rounds N]

prints, per control, the number of redraws, the median and the slowest. The recorded result
for this project's 2-core CPU is in ``benchmarks/explorer-redraw.txt``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from accumbug.lessons.widgets import Explorer

CHANGES = {
    "samples": (136_312, 50_000),
    "batch_size": (16, 8),
    "accumulator": ("float16", "bfloat16", "float32", "float64", "python"),
    "tracker": ("incident-fixed", "incident-broken", "exact"),
    "serialiser": ("incident-sanitiser", "strict", "nan_to_num", "json-strict"),
    "mechanism": ("aliased-reset", "float16-stall", "ddp-padding", "grad-accumulation"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="times each control cycles through its values")
    rounds = parser.parse_args().rounds
    started = time.perf_counter()
    explorer = Explorer()
    print(f"explorer made in {time.perf_counter() - started:.1f} s (runs the gallery's cases once)")
    print(f"python {platform.python_version()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'control':12s} {'redraws':>7s} {'median s':>9s} {'slowest s':>10s}")
    worst = 0.0
    for name, values in CHANGES.items():
        pane = "mechanism" if name == "mechanism" else "accumulation"
        times = []
        for _ in range(rounds):
            for value in values[1:] + values[:1]:
                explorer.controls[name].value = value
                times.append(explorer.redraw_seconds[pane][-1])
        worst = max(worst, max(times))
        print(f"{name:12s} {len(times):7d} {statistics.median(times):9.3f} {max(times):10.3f}")
    print(f"slowest redraw: {worst:.3f} s ({'under' if worst < 0.5 else 'over'} the 0.5 s target)")


if __name__ == "__main__":
    main()
