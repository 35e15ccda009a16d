"""Tracker cost per update, against torchmetrics and against one training step of the full preset.

Two measurements, each in interleaved rounds so that machine noise hits all candidates
alike; the figure is the median round.

* **Stream**: one fixed stream (batch 16, 7,120 classes: the incident's shape) fed to each
  candidate. The stream is larger than the caches, so every update reads its outputs from
  memory: an upper bound.
* **In a step**: full-preset training steps, each followed by the candidate's update on
  that step's own outputs, as in the trainer; the cost is the step time with the
  candidate minus the step time without a tracker. This is the share of a step a user pays.
  The candidates take turns 50 steps at a time and each figure is the median chunk, so a
  burst of load elsewhere hits one chunk, not a whole candidate.

Goals: ExactTracker under 2 % of a training step and at most half of
torchmetrics' cost (MeanMetric with weights + MulticlassAccuracy top-1 and top-5, micro).

    python benchmarks/bench_trackers.py [--updates 2000] [--rounds 7] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import time

import torch
import torchmetrics

from accumbug.data import preset
from accumbug.model import SmallClassifier
from accumbug.registry import make_tracker
from record import best_of, save


class TorchMetricsTracker:
    """The production reference: weighted MeanMetric and micro MulticlassAccuracy top-1/top-5."""

    def __init__(self, classes: int, device):
        self.mean = torchmetrics.MeanMetric().to(device)
        self.top1 = torchmetrics.classification.MulticlassAccuracy(classes, top_k=1, average="micro").to(device)
        self.top5 = torchmetrics.classification.MulticlassAccuracy(classes, top_k=5, average="micro").to(device)

    def update(self, loss, outputs, labels):
        self.mean.update(loss, weight=labels.size(0))
        self.top1.update(outputs, labels)
        self.top5.update(outputs, labels)


class NoTracker:
    def update(self, loss, outputs, labels):
        pass


def candidates(classes: int, device) -> dict:
    names = ["incident-broken:python", "incident-fixed:python", "incident-broken:float16", "incident-fixed:float16",
             "exact"]
    made = {"no tracker": lambda: NoTracker()}
    made.update({name: (lambda name=name: make_tracker(name)) for name in names})
    made["torchmetrics"] = lambda: TorchMetricsTracker(classes, device)
    return made


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_round(tracker, stream, device) -> float:
    sync(device)
    started = time.perf_counter()
    for loss, outputs, labels in stream:
        tracker.update(loss, outputs, labels)
    sync(device)
    return (time.perf_counter() - started) / len(stream)


IN_STEP = ("no tracker", "incident-broken:python", "exact", "torchmetrics")


def in_step_chunk(spec, stream, device, steps: int):
    """A function timing ``steps`` training steps, each followed by ``tracker.update`` on its outputs."""
    model = SmallClassifier(spec.pixels, spec.classes).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.015, momentum=0.9)
    images = torch.randn(spec.batch_size, *spec.image_shape, device=device)
    criterion = torch.nn.CrossEntropyLoss()

    def one_chunk(tracker) -> float:
        sync(device)
        started = time.perf_counter()
        for _, _, labels in stream[:steps]:
            outputs = model(images)
            loss = criterion(outputs, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            tracker.update(loss.detach(), outputs.detach(), labels)
        sync(device)
        return (time.perf_counter() - started) / steps
    one_chunk(NoTracker())
    return one_chunk


def step_seconds(spec, stream, device, steps: int) -> list[float]:
    """One SGD step of the full preset's model on batches of the stream's shape, per round."""
    model = SmallClassifier(spec.pixels, spec.classes).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.015, momentum=0.9)
    images = torch.randn(spec.batch_size, *spec.image_shape, device=device)
    criterion = torch.nn.CrossEntropyLoss()

    def one_round():
        sync(device)
        started = time.perf_counter()
        for _, _, labels in stream[:steps]:
            optimizer.zero_grad(set_to_none=True)
            criterion(model(images), labels).backward()
            optimizer.step()
        sync(device)
        return (time.perf_counter() - started) / steps
    one_round()
    return one_round


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=2000, help="updates per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    spec = preset("full")
    generator = torch.Generator().manual_seed(0)
    stream = [(torch.rand((), generator=generator).add(9.0).to(device),
               torch.randn(spec.batch_size, spec.classes, generator=generator).to(device),
               torch.randint(0, spec.classes, (spec.batch_size,), generator=generator).to(device))
              for _ in range(args.updates)]
    makers = candidates(spec.classes, device)
    step_round = step_seconds(spec, stream, device, min(500, args.updates))
    in_step = in_step_chunk(spec, stream, device, min(50, args.updates))
    rounds = {name: [] for name in makers}
    rounds["training step"] = []
    stepped = {name: [] for name in IN_STEP}
    for _ in range(args.rounds):
        for name, make in makers.items():
            rounds[name].append(time_round(make(), stream, device))
        rounds["training step"].append(step_round())
        stepping = {name: makers[name]() for name in IN_STEP}
        for _ in range(10):
            for name, tracker in stepping.items():
                stepped[name].append(in_step(tracker))
    step = best_of(rounds.pop("training step"))
    bare = best_of(rounds["no tracker"])
    results = {}
    for name, times in rounds.items():
        cost = best_of(times) - (bare if name != "no tracker" else 0.0)
        results[name] = {"us_per_update": round(cost * 1e6, 2), "share_of_step_pct": round(cost / step * 100, 2)}
    plain_step = best_of(stepped["no tracker"])
    in_step_results = {name: {"us_per_step": round(best_of(times) * 1e6, 1),
                              "share_of_step_pct": round((best_of(times) / plain_step - 1) * 100, 2)}
                       for name, times in stepped.items()}
    exact, reference = results["exact"]["us_per_update"], results["torchmetrics"]["us_per_update"]
    summary = {
        "training_step_us": round(step * 1e6, 1),
        "exact_share_of_step_pct": results["exact"]["share_of_step_pct"],
        "exact_over_torchmetrics": round(exact / reference, 3),
        "exact_in_step_share_pct": in_step_results["exact"]["share_of_step_pct"],
        "exact_in_step_over_torchmetrics": round(in_step_results["exact"]["share_of_step_pct"]
                                                 / in_step_results["torchmetrics"]["share_of_step_pct"], 3),
        "goal_exact_under_2pct_of_step": in_step_results["exact"]["share_of_step_pct"] < 2.0,
        "goal_exact_at_most_half_of_torchmetrics": exact / reference <= 0.5,
    }
    path = save("trackers", {"device": str(device), "updates_per_round": args.updates, "rounds": args.rounds,
                             "trackers": results, "in_step": in_step_results, "summary": summary})
    width = max(map(len, results))
    print(f"training step of the full preset: {step * 1e6:.1f} us ({device})")
    for name, row in results.items():
        print(f"{name:{width}s}  {row['us_per_update']:8.2f} us/update  {row['share_of_step_pct']:6.2f} % of a step")
    print(f"exact / torchmetrics = {summary['exact_over_torchmetrics']}")
    print(f"in a step (plain step {plain_step * 1e6:.1f} us):")
    for name, row in in_step_results.items():
        print(f"{name:{width}s}  {row['us_per_step']:8.1f} us/step  "
              f"{row['share_of_step_pct']:6.2f} % over a plain step")
    print(f"written: {path}")


if __name__ == "__main__":
    main()
