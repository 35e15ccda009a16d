"""Memory: each tracker's growth over many updates, and the peak RSS of a full 4-epoch run.

The incident's trackers keep a ``targets`` list that grows by one entry per sample; the exact
tracker's state is a few scalars. Each tracker runs in a fresh process so that one's
garbage does not count against another. Goal: ExactTracker does not
grow; a 4-epoch full run peaks under 2 GiB.

    python benchmarks/bench_memory.py [--updates 1000000] [--skip-full-run]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from record import save

TRACKERS = ["incident-broken:python", "incident-fixed:python", "incident-broken:float16", "incident-fixed:float16",
            "exact"]
MIB = 1024 * 1024


def rss_bytes() -> int:
    """Current resident set size, from /proc (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def one_tracker(name: str, updates: int) -> dict:
    """Feed ``updates`` batches of 16 to a fresh tracker; RSS before and after (runs in a child)."""
    from accumbug.registry import make_tracker

    outputs, labels, loss = torch.randn(16, 8), torch.randint(0, 8, (16,)), torch.tensor(2.0)
    tracker = make_tracker(name)
    for _ in range(1000):  # warm up allocators and caches before the baseline
        tracker.update(loss, outputs, labels)
    tracker.reset()
    before = rss_bytes()
    for _ in range(updates):
        tracker.update(loss, outputs, labels)
    after = rss_bytes()
    return {"updates": updates, "rss_growth_mib": round((after - before) / MIB, 1),
            "targets_entries": len(getattr(tracker, "targets", []))}


def full_run_peak() -> dict:
    """Peak RSS of ``python -m accumbug run --preset full --epochs 4`` with reproduce's five trackers."""
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "accumbug", "run", "--preset", "full", "--epochs", "4", "--no-progress",
                   "--out", str(Path(folder) / "run")] + [a for t in TRACKERS for a in ("--tracker", t)]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # kilobytes on Linux
    return {"command": " ".join(command[1:]).replace(folder, "TMP"), "peak_rss_mib": round(peak / MIB, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=1_000_000)
    parser.add_argument("--skip-full-run", action="store_true")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one tracker in this process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_tracker(args.one, args.updates)))
        return
    growth = {}
    for name in TRACKERS:
        done = subprocess.run([sys.executable, __file__, "--one", name, "--updates", str(args.updates)],
                              check=True, capture_output=True, text=True)
        growth[name] = json.loads(done.stdout)
        print(f"{name:22s} +{growth[name]['rss_growth_mib']:8.1f} MiB after {args.updates:,} updates "
              f"(targets: {growth[name]['targets_entries']:,} entries)", flush=True)
    results = {"tracker_growth": growth}
    if not args.skip_full_run:
        results["full_run"] = full_run_peak()
        print(f"full 4-epoch run: peak RSS {results['full_run']['peak_rss_mib']:.1f} MiB")
    results["summary"] = {
        "goal_exact_does_not_grow": growth["exact"]["rss_growth_mib"] < 1.0,
        "goal_full_run_under_2_gib": results.get("full_run", {}).get("peak_rss_mib", float("nan")) < 2048,
    }
    print(f"written: {save('memory', results)}")


if __name__ == "__main__":
    main()
