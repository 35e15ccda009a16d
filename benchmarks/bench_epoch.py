"""One epoch of the full preset: the package's batch pipeline against a naive per-sample loader.

Three loops over the same 8,520 batches with the same model, optimizer and tracker
(``ExactTracker``):

* **pipeline**: ``SyntheticImages.batches`` (samples generated a block of batches at a time);
* **naive**: ``DataLoader(SampleView, batch_size=16, shuffle=True)`` with the default collate,
  one ``__getitem__`` per sample, the usual way;
* **bare**: the model steps alone on batches built beforehand (no data work, no tracker);
* **batches only**: the pipeline's batches with no model step and no tracker: what data
  generation alone costs per epoch.

Goals: pipeline at least 2x the naive samples/s, and data generation
plus tracking at most 15 % over the bare steps. The loops take turns a chunk at a time and
the ratios use each loop's median chunk rate, so a burst of load elsewhere on the machine
hits all three alike.

    python benchmarks/bench_epoch.py [--batches 8520] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import torch
from torch.utils.data import DataLoader

from accumbug.data import SyntheticImages, preset
from accumbug.model import SmallClassifier
from accumbug.seeding import seed_everything
from accumbug.trackers import ExactTracker
from record import save


class Loop:
    """One training loop over a batch iterator, advanced a chunk at a time (a fresh model per loop)."""

    def __init__(self, batches, spec, device, track: bool, train: bool = True):
        seed_everything(0)
        self.batches, self.device, self.track, self.train = batches, device, track, train
        self.model = SmallClassifier(spec.pixels, spec.classes).to(device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.015, momentum=0.9)
        self.criterion = torch.nn.CrossEntropyLoss()
        self.tracker = ExactTracker()
        self.chunks: list[tuple[float, int]] = []  # (seconds, samples)

    def advance(self, steps: int) -> None:
        samples = 0
        started = time.perf_counter()
        for images, labels, _ in itertools.islice(self.batches, steps):
            images, labels = images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)
            samples += labels.size(0)
            if not self.train:
                continue
            outputs = self.model(images)
            loss = self.criterion(outputs, labels)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            if self.track:
                self.tracker.update(loss.detach(), outputs.detach(), labels)
        if self.track:
            self.tracker.get_metrics()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.chunks.append((time.perf_counter() - started, samples))

    def summary(self) -> dict:
        seconds, samples = sum(s for s, _ in self.chunks), sum(n for _, n in self.chunks)
        rate = statistics.median(n / s for s, n in self.chunks)  # robust to a burst of load in one chunk
        return {"seconds": round(seconds, 2), "samples": samples, "samples_per_s": round(samples / seconds),
                "median_chunk_samples_per_s": round(rate)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=preset("full").batches_per_epoch, help="steps per loop")
    parser.add_argument("--chunks", type=int, default=20, help="the loops take turns, a chunk of batches each")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    spec = preset("full")
    data = SyntheticImages(spec, seed=0, device=device)
    prebuilt = list(itertools.islice(data.batches(0), args.batches))  # for the bare loop, built before timing
    naive = DataLoader(SyntheticImages(spec, seed=0).view(), batch_size=spec.batch_size, shuffle=True,
                       generator=torch.Generator().manual_seed(0))
    Loop(iter(prebuilt), spec, device, True).advance(200)  # warm-up: first-use imports and allocations
    loops = {"bare": Loop(iter(prebuilt), spec, device, False),
             "pipeline": Loop(iter(data.batches(0)), spec, device, True),
             "naive": Loop(iter(naive), spec, device, True),
             "batches only": Loop(iter(data.batches(0)), spec, device, False, train=False)}
    chunk = -(-args.batches // args.chunks)
    for _ in range(args.chunks):
        for loop in loops.values():
            loop.advance(chunk)
    results = {name: loop.summary() for name, loop in loops.items()}
    for name, row in results.items():
        print(f"{name:12s} {row['seconds']:7.2f} s  {row['samples_per_s']:9d} samples/s  "
              f"(median chunk {row['median_chunk_samples_per_s']} samples/s)", flush=True)
    rate = {name: row["median_chunk_samples_per_s"] for name, row in results.items()}
    speedup = rate["pipeline"] / rate["naive"]
    overhead = rate["bare"] / rate["pipeline"] - 1
    summary = {
        "pipeline_over_naive": round(speedup, 2), "pipeline_overhead_over_bare_pct": round(overhead * 100, 1),
        "pipeline_epoch_seconds_estimate": round(spec.samples / rate["pipeline"], 1),
        "batches_only_epoch_seconds_estimate": round(spec.samples / rate["batches only"], 2),
        "batches_only_share_of_bare_pct": round(rate["bare"] / rate["batches only"] * 100, 1),
        "goal_pipeline_2x_naive": speedup >= 2, "goal_overhead_at_most_15pct": overhead <= 0.15,
        "full_epoch": args.batches >= spec.batches_per_epoch,
    }
    path = save("epoch", {"device": str(device), "batches": args.batches, "chunks": args.chunks, "loops": results,
                          "summary": summary})
    print(f"pipeline / naive = {speedup:.2f}x; pipeline over bare = {overhead * 100:.1f} % (median chunk rates); "
          f"full epoch with the pipeline ~{summary['pipeline_epoch_seconds_estimate']} s, of which batches alone "
          f"~{summary['batches_only_epoch_seconds_estimate']} s "
          f"({summary['batches_only_share_of_bare_pct']} % of the bare steps)")
    print(f"written: {path}")


if __name__ == "__main__":
    main()
