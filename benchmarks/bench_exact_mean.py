"""``ExactMean.update`` against what users use: torchmetrics' ``MeanMetric`` and an ``AverageMeter``.

One stream of batch-mean losses (0-dim float32 tensors on the device, batch size 16, as a
training loop hands them over) is fed to each candidate, in interleaved rounds so that
machine noise hits all alike; the figure is the median round's time per update. Beside it,
the reads back to Python per update (``lessons.host_reads``): each one waits for the device
on a GPU.

* ``ExactMean``: ``update(loss, n=16)``;
* ``MeanMetric`` in float64 with ``weight=16``, as torchmetrics' docs suggest for a sample
  mean, with its default NaN check (``nan_strategy="warn"``, which drops a NaN batch) and
  with the check off (``"disable"``);
* ``AverageMeter`` (pytorch/examples' imagenet ``main.py``): ``update(loss.item(), 16)``, a
  Python float sum.

    cd benchmarks && python bench_exact_mean.py [--updates 20000] [--rounds 7] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import time

import torch
import torchmetrics

from accumbug import ExactMean
from accumbug.lessons.host_reads import count_host_reads
from record import best_of, save

BATCH = 16
READ_UPDATES = 200  # updates over which the host reads are counted


class AverageMeter:
    """pytorch/examples' meter: a Python float sum and count, fed ``loss.item()``."""

    def __init__(self):
        self.sum, self.count = 0.0, 0

    def update(self, loss: torch.Tensor, n: int) -> None:
        self.sum += loss.item() * n
        self.count += n


def candidates(device) -> dict:
    """Name -> (make a fresh one, feed it one batch mean)."""
    def mean_metric(strategy):
        return lambda: torchmetrics.MeanMetric(nan_strategy=strategy).set_dtype(torch.float64).to(device)

    return {
        "ExactMean": (ExactMean, lambda m, loss: m.update(loss, n=BATCH)),
        "MeanMetric float64 (nan_strategy=warn)": (mean_metric("warn"), lambda m, loss: m.update(loss, weight=BATCH)),
        "MeanMetric float64 (nan_strategy=disable)": (mean_metric("disable"),
                                                      lambda m, loss: m.update(loss, weight=BATCH)),
        "AverageMeter (loss.item())": (AverageMeter, lambda m, loss: m.update(loss, BATCH)),
    }


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_round(make, feed, losses: torch.Tensor, device) -> float:
    """Seconds per update over the whole stream, device work included."""
    meter = make()
    _sync(device)
    started = time.perf_counter()
    for loss in losses:
        feed(meter, loss)
    _sync(device)
    return (time.perf_counter() - started) / len(losses)


def reads_per_update(make, feed, losses: torch.Tensor) -> float:
    meter = make()
    with count_host_reads() as reads:
        for loss in losses[:READ_UPDATES]:
            feed(meter, loss)
    return sum(reads.values()) / READ_UPDATES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    losses = (torch.rand(args.updates, generator=torch.Generator().manual_seed(0)) * 9).to(device).unbind()
    made = candidates(device)
    rounds = {name: [] for name in made}
    for _ in range(args.rounds):
        for name, (make, feed) in made.items():
            rounds[name].append(time_round(make, feed, losses, device))
    results = {name: {"us_per_update": best_of(times) * 1e6, "host_reads_per_update":
                      reads_per_update(*made[name], losses)} for name, times in rounds.items()}
    fastest = min(r["us_per_update"] for r in results.values())
    for name, result in results.items():
        print(f"{name:44s} {result['us_per_update']:7.2f} us/update  x{result['us_per_update'] / fastest:4.1f}  "
              f"host reads/update {result['host_reads_per_update']:.2f}")
    print("written to", save("exact-mean", {"device": str(device), "batch": BATCH, "updates": args.updates,
                                            "rounds": args.rounds, "candidates": results}))


if __name__ == "__main__":
    main()
