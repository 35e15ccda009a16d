"""Why ``ExactTracker.update`` costs what it does on a CPU: its top-k pass against the alternatives.

One warm batch of the incident's shape (16 x 7,120). Times, per call, the whole update, the
rank pass the tracker uses (gather the label's output, ``torch.le`` written as 0/1 floats
into a reused workspace, row sum), the subtract-clamp-sign pass it used before, bool
comparisons summed or counted, and ``torch.topk``. Candidates take turns in rounds; the
figure is the median round (``docs/performance.md``, tracker cost).

    python benchmarks/bench_rank_passes.py [--calls 1000] [--rounds 7] [--threads N]
"""

from __future__ import annotations

import argparse
import time

import torch

from accumbug.data import preset
from accumbug.trackers import TOPK, ExactTracker
from record import best_of, save


def candidates(outputs: torch.Tensor, labels: torch.Tensor) -> dict:
    target = outputs.gather(1, labels.view(-1, 1))
    workspace = torch.empty_like(outputs)
    tracker, loss = ExactTracker(), torch.tensor(9.1)
    return {
        "ExactTracker.update": lambda: tracker.update(loss, outputs, labels),
        "gather, le into workspace, sum (the tracker's pass)":
            lambda: torch.le(outputs, outputs.gather(1, labels.view(-1, 1)), out=workspace).sum(1),
        "(outputs - target).clamp_(min=0).sign_().sum(1)": lambda: (outputs - target).clamp_(min=0).sign_().sum(1),
        "(outputs > target).sum(1)": lambda: (outputs > target).sum(1),
        "count_nonzero(outputs > target, 1)": lambda: torch.count_nonzero(outputs > target, dim=1),
        "outputs.topk(5, 1)": lambda: outputs.topk(TOPK, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000, help="calls per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spec = preset("full")
    generator = torch.Generator().manual_seed(0)
    outputs = torch.randn(spec.batch_size, spec.classes, generator=generator)
    labels = torch.randint(0, spec.classes, (spec.batch_size,), generator=generator)
    made = candidates(outputs, labels)
    rounds = {name: [] for name in made}
    for _ in range(args.rounds):
        for name, call in made.items():
            call()
            started = time.perf_counter()
            for _ in range(args.calls):
                call()
            rounds[name].append((time.perf_counter() - started) / args.calls)
    results = {name: round(best_of(times) * 1e6, 1) for name, times in rounds.items()}
    path = save(f"rank-passes-{args.threads}-threads", {"calls_per_round": args.calls, "rounds": args.rounds,
                                                         "threads": args.threads, "us_per_call": results})
    width = max(map(len, results))
    for name, micros in results.items():
        print(f"{name:{width}s}  {micros:7.1f} us")
    print(f"written: {path}")


if __name__ == "__main__":
    main()
