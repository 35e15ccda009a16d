"""One epoch of the full preset: the package's batch pipeline against a naive per-sample loader.

Three loops over the same 8,520 batches with the same model, optimizer and tracker
(``ExactTracker``):

* **pipeline**: ``SyntheticImages.batches`` (samples generated a block of batches at a time);
* **naive**: ``DataLoader(SampleView, batch_size=16, shuffle=True)`` with the default collate,
  one ``__getitem__`` per sample, the usual way;
* **bare**: the model steps alone on batches built beforehand (no data work, no tracker).

Goals (issue: performance): pipeline at least 2x the naive samples/s, and data generation
plus tracking at most 15 % over the bare steps.

    python benchmarks/bench_epoch.py [--batches 8520] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch
from torch.utils.data import DataLoader

from accumbug.data import SyntheticImages, preset
from accumbug.model import SmallClassifier
from accumbug.seeding import seed_everything
from accumbug.trackers import ExactTracker
from record import save


def run_epoch(batches, spec, device, track: bool, limit: int) -> tuple[float, int]:
    """Seconds and samples for ``limit`` training steps over ``batches`` (a fresh model each time)."""
    seed_everything(0)
    model = SmallClassifier(spec.pixels, spec.classes).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.015, momentum=0.9)
    criterion = torch.nn.CrossEntropyLoss()
    tracker = ExactTracker()
    samples = 0
    started = time.perf_counter()
    for images, labels, _ in itertools.islice(batches, limit):
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        outputs = model(images)
        loss = criterion(outputs, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if track:
            tracker.update(loss.detach(), outputs.detach(), labels)
        samples += labels.size(0)
    if track:
        tracker.get_metrics()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started, samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=preset("full").batches_per_epoch, help="steps per loop")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    spec = preset("full")
    data = SyntheticImages(spec, seed=0, device=device)
    prebuilt = list(itertools.islice(data.batches(0), args.batches))  # for the bare loop, built before timing

    loops = {
        "bare": lambda: run_epoch(iter(prebuilt), spec, device, False, args.batches),
        "pipeline": lambda: run_epoch(iter(data.batches(0)), spec, device, True, args.batches),
        "naive": lambda: run_epoch(iter(DataLoader(SyntheticImages(spec, seed=0).view(), batch_size=spec.batch_size,
                                                   shuffle=True, generator=torch.Generator().manual_seed(0))),
                                   spec, device, True, args.batches),
    }
    run_epoch(iter(prebuilt), spec, device, True, 200)  # warm-up: first-use imports and allocations
    results = {}
    for name, loop in loops.items():
        seconds, samples = loop()
        results[name] = {"seconds": round(seconds, 2), "samples": samples, "samples_per_s": round(samples / seconds)}
        print(f"{name:9s} {seconds:7.2f} s  {samples / seconds:9.0f} samples/s", flush=True)
    speedup = results["pipeline"]["samples_per_s"] / results["naive"]["samples_per_s"]
    overhead = results["pipeline"]["seconds"] / results["bare"]["seconds"] - 1
    summary = {
        "pipeline_over_naive": round(speedup, 2), "pipeline_overhead_over_bare_pct": round(overhead * 100, 1),
        "goal_pipeline_2x_naive": speedup >= 2, "goal_overhead_at_most_15pct": overhead <= 0.15,
        "full_epoch": args.batches == spec.batches_per_epoch,
    }
    path = save("epoch", {"device": str(device), "batches": args.batches, "loops": results, "summary": summary})
    print(f"pipeline / naive = {speedup:.2f}x; pipeline over bare = {overhead * 100:.1f} %")
    print(f"written: {path}")


if __name__ == "__main__":
    main()
