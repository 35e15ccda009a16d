"""The DDP cases of ``lightning_cases``: two gloo CPU ranks, one command, JSON on rank 0's stdout.

``python -m accumbug.lessons.wild.lightning_ddp FOLDER`` is rank 0; Lightning's launcher starts
the same command again as rank 1. Both ranks then run the two fits below in turn (the second
fit finds the ranks and the process group already there), each logging into ``FOLDER``:

* ``padded``: Lightning's own ``DistributedSampler``. For training Lightning always asks it to
  shuffle (seed 0, whatever the ``DataLoader``'s ``shuffle=False``), and it pads 1,031 samples to
  1,032 by repeating the head of its shuffled order, so that sample (``padding_sample``), made
  the outlier (target 8, loss 64), is trained on by both ranks. The loss is logged twice,
  ``loss_sync`` (``sync_dist=True``) and ``loss_local`` (``sync_dist=False``).
* ``sharded``: no distributed sampler; rank r takes samples r, r+2, ..., so the shards hold 516
  and 515 samples, the same 33 batches each (the last of 4 and of 3), and ``loss_sync`` adds
  an odd number of samples across ranks.

Each rank records the sample indices it trained on, and rank 0 prints, as one JSON line, each
fit's last progress-bar line, its metrics.csv and those indices (``shards``), so the caller can
check which sample was repeated. Everything Lightning prints is kept off stdout.
Each rank ends with ``distributed.exit_rank``, as the package's own torchrun ranks do: a
rank that returns through Python's interpreter shutdown while gloo's threads still run can
abort ("terminate called without an active exception").
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path

import torch
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from ...distributed import exit_rank
from .data import WildData, uneven_data
from .lightning_cases import trained, zero_module

__all__ = ["RANKS", "SAMPLES", "ddp_data", "main", "padding_sample"]

SAMPLES = 1031  # odd: DistributedSampler pads it for two ranks
RANKS = 2


def padding_sample() -> int:
    """The sample the sampler Lightning puts in for training repeats: the head of its shuffled order, seed 0.

    Rank 0's first sample is that head; ``main`` checks that it is the one sample both ranks saw.
    """
    return next(iter(DistributedSampler(range(SAMPLES), num_replicas=RANKS, rank=0, shuffle=True, seed=0)))


def ddp_data() -> WildData:
    """The DDP cases' data: 1,031 samples at batch 16, the padding's repeated sample the only outlier."""
    return uneven_data(SAMPLES, outliers=[padding_sample()])


def _fit(folder: Path, name: str, sharded: bool) -> dict:
    """One fit on both ranks: rank 0's last bar line, its metrics.csv, every rank's sample indices."""
    import torch.distributed as dist
    from lightning.pytorch.strategies import DDPStrategy

    data = ddp_data()
    seen: list[int] = []

    def log(module, loss, batch):
        seen.extend(batch[2].tolist())
        module.log("loss_sync", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        if not sharded:
            module.log("loss_local", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=False)

    def loader(trainer):
        sampler = range(trainer.global_rank, len(data), trainer.world_size) if sharded else None
        return DataLoader(TensorDataset(data.features, data.targets, torch.arange(len(data))),
                          batch_size=data.batch_size, sampler=sampler)

    strategy = DDPStrategy(process_group_backend="gloo", timeout=timedelta(seconds=120))
    console, csv_path = trained(folder, name, zero_module(log, loader), strategy=strategy, devices=RANKS,
                                use_distributed_sampler=not sharded)
    shards: list = [None] * dist.get_world_size()
    dist.all_gather_object(shards, seen)
    return {"console": console, "csv": str(csv_path), "shards": shards}


def main(argv: list[str]) -> None:
    """Run both fits; rank 0 prints one JSON line: ``{"padded": ..., "sharded": ...}`` and the repeated sample."""
    import torch.distributed as dist

    folder = Path(argv[0])
    found = {"padded": _fit(folder, "ddp_padded", sharded=False), "sharded": _fit(folder, "ddp_sharded", sharded=True)}
    shards = found["padded"]["shards"]
    found["padded"]["repeated"] = sorted(set(shards[0]) & set(shards[1]))
    if dist.get_rank() == 0:
        print(json.dumps(found))


if __name__ == "__main__":
    main(sys.argv[1:])
    exit_rank(0)  # each rank, as python -m accumbug ends one: no interpreter shutdown beside gloo's threads
