"""One epoch of the full preset before and after it was made to train like the incident's run.

The full preset gained clustered class prototypes, a steeper class tail and an exponential
learning-rate warmup (``data/README.md``). None of that should cost time per step: the
images are still noise plus one precomputed mean per class, and the warmup sets one number
per step. This script trains whole epochs of the full preset with the exact tracker, the
old settings and the new taking turns, and reports each one's median epoch time and their
ratio (goal: at most 1.2).

    cd benchmarks && python bench_preset.py [--rounds 2] [--batches 8520]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

from accumbug import data
from accumbug.config import TrainConfig
from accumbug.data import DataSpec
from accumbug.trackers import ExactTracker
from accumbug.train import train
from record import save

BEFORE = DataSpec(samples=136_312, classes=7_120)  # the full preset until it was reshaped
BEFORE_RATE = {"lr": 0.015, "warmup_from": 0.015, "warmup_epochs": 0.0}  # a constant 0.015


def epoch_seconds(spec: DataSpec, rates: dict, samples: int) -> float:
    """One epoch of the full preset with ``spec`` in place of the preset's data, on ``samples`` samples."""
    saved = data.PRESETS["full"]
    data.PRESETS["full"] = replace(spec, samples=samples) if samples != spec.samples else spec
    try:
        config = TrainConfig(preset="full", epochs=1, device="cpu", **rates)
        started = time.perf_counter()
        train(config, [ExactTracker()])
        return time.perf_counter() - started
    finally:
        data.PRESETS["full"] = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batches", type=int, default=8520, help="batches per epoch (default: the whole epoch)")
    args = parser.parse_args()
    samples = min(136_312, args.batches * 16)
    after = data.PRESETS["full"]
    after_rates = {name: getattr(TrainConfig(preset="full"), name) for name in BEFORE_RATE}
    times = {"before": [], "after": []}
    for _ in range(args.rounds):
        times["before"].append(epoch_seconds(BEFORE, BEFORE_RATE, samples))
        times["after"].append(epoch_seconds(after, after_rates, samples))
    medians = {key: statistics.median(values) for key, values in times.items()}
    ratio = medians["after"] / medians["before"]
    for key, values in times.items():
        print(f"{key:6s} epoch seconds: " + ", ".join(f"{v:.1f}" for v in values) + f"  (median {medians[key]:.1f})")
    print(f"after / before: {ratio:.3f} (goal: at most 1.2)")
    path = save("preset", {"samples": samples, "rounds": args.rounds, "seconds": times, "median_seconds": medians,
                           "ratio_after_before": ratio})
    print(f"written to {path}")


if __name__ == "__main__":
    main()
