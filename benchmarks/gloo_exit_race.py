"""How often a gloo rank aborts at exit: three ways to end a torchrun rank, counted.

Each launch is ``torchrun --standalone --nproc-per-node 3`` over a bare DDP script: join
over gloo, train a small ``DistributedDataParallel`` model a few steps, ``all_reduce`` a
float64 sum (as ``ExactTracker.sync`` does), ``destroy_process_group``, and rank 0 lingers
half a second (as it does while writing the run folder). Rank 0 counts its process's
threads (``/proc/self/task``) before joining and after destroying the group: the extra ones
are gloo's, still alive. The ranks then end in one of three ways:

- "return": Python's interpreter shutdown runs beside gloo's threads;
- "collect, then return": the model is deleted and garbage collected before the group is
  destroyed (gloo's threads stay alive all the same; the collection only takes time);
- "exit_rank": ``accumbug.distributed.exit_rank``, no interpreter shutdown.

A launch fails when any rank exits non-zero; "aborted" counts the launches whose error
output says "terminate called". The endings take turns, so a slow spell of the host falls
on all three.

    python benchmarks/gloo_exit_race.py [--launches 40]
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import time

ENDINGS = ("return", "collect, then return", "exit_rank")


def rank_body(ending: str) -> None:
    """One rank of a launch (runs under torchrun)."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from accumbug.distributed import exit_rank

    threads_before = len(os.listdir("/proc/self/task"))
    dist.init_process_group("gloo")
    model = DistributedDataParallel(torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(),
                                                        torch.nn.Linear(64, 10)))
    for _ in range(5):
        model(torch.randn(16, 64)).sum().backward()
    loss_sum = torch.ones(3, dtype=torch.float64)
    dist.all_reduce(loss_sum)
    rank = dist.get_rank()
    if ending == "collect, then return":
        del model
        gc.collect()
    dist.destroy_process_group()
    if rank == 0:
        print(f"threads left: {len(os.listdir('/proc/self/task')) - threads_before}", flush=True)
        time.sleep(0.5)
    if ending == "exit_rank":
        exit_rank(0)


def launch(ending: str) -> dict:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "3", __file__,
               "--rank-body", ending]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    left = [int(line.rsplit(" ", 1)[1]) for line in done.stdout.splitlines() if line.startswith("threads left")]
    return {"failed": done.returncode != 0, "aborted": "terminate called" in done.stderr, "threads_left": left}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--launches", type=int, default=40, help="launches per ending (default 40)")
    parser.add_argument("--rank-body", choices=ENDINGS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.launches < 1:
        parser.error(f"--launches {args.launches}: must be 1 or more")
    if args.rank_body:
        rank_body(args.rank_body)
        return

    from tqdm import tqdm

    from record import save

    counts = {ending: {"launches": 0, "failed": 0, "aborted": 0} for ending in ENDINGS}
    threads_left = {ending: set() for ending in ENDINGS}
    for _ in tqdm(range(args.launches), desc="rounds (one launch per ending)"):
        for ending in ENDINGS:
            outcome = launch(ending)
            counts[ending]["launches"] += 1
            counts[ending]["failed"] += outcome["failed"]
            counts[ending]["aborted"] += outcome["aborted"]
            threads_left[ending].update(outcome["threads_left"])
    for ending, count in counts.items():
        count["threads_left_after_destroy"] = sorted(threads_left[ending])
        print(f"{ending:>21}: {count['failed']} of {count['launches']} launches failed, "
              f"{count['aborted']} with 'terminate called'; threads gained since joining and still alive "
              f"after destroy_process_group on rank 0: {count['threads_left_after_destroy']}")
    results = {"world": 3, "endings": counts}
    print(f"saved {save('gloo-exit-race', results)}")


if __name__ == "__main__":
    main()
