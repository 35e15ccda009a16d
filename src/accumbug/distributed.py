"""Several processes under ``torchrun``: DDP training with exact epoch metrics across ranks.

``torchrun --nproc-per-node N -m accumbug run ...`` starts N copies of the command; each
finds its rank in the environment torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``),
joins the process group (``join``: gloo on a CPU, NCCL on GPUs) and trains a
``DistributedDataParallel`` model on its ``DistributedSampler`` shard (``rank_shard``).

Epoch metrics go wrong across ranks in three usual ways, each a tracker in
``specimens/rank_trackers.py`` and a row in ``05_distributed.ipynb``: rank 0 logs its own
shard (``naive-rank0``), the ranks' means are averaged (``naive-rank-mean``), and the
sampler's padding is counted (``naive-padded``). ``DistributedSampler`` pads its shuffled
order to a multiple of the world size by repeating the head of that order, so with 1,032
samples on 5 ranks three sample ids appear twice. The exact answer: every rank sums float64
losses and int64 counts, counting a sample id only where it first appears in the padded
order (``counted``), and ``sync_states`` adds the ranks' sums.

``sync_states`` works on any tracker, because every tracker declares its states and their
reductions (``trackers.MetricTracker.add_state``): the ``sum`` and ``mean`` states are packed
by dtype, one ``all_reduce`` per dtype, so float64 sums stay exact and integer counts stay
integers; ``local`` states stay this rank's own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from typing import NoReturn

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from .validation import check_whole

__all__ = ["Ranks", "exit_rank", "join", "launched_by_torchrun", "leave", "rank_shard", "sync_simulated", "sync_states",
           "torchrun_command", "torchrun_run"]

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Ranks:
    """This process's place in the run: ``rank`` of ``world``, and the backend."""

    rank: int
    world: int
    backend: str

    @property
    def writes_files(self) -> bool:
        """Rank 0 alone prints the console and writes the run folder."""
        return self.rank == 0

    def sum_(self, tensor: torch.Tensor) -> None:
        """Sum ``tensor`` over all ranks, in place (``all_reduce``)."""
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)

    def max_(self, tensor: torch.Tensor) -> None:
        """The largest value of ``tensor`` over all ranks, in place (the trainer's stop agreement)."""
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)


def _as_tensor(value, device) -> torch.Tensor:
    """A state as a tensor to reduce: Python ints as int64, Python floats as float64."""
    if isinstance(value, torch.Tensor):
        return value
    dtype = torch.int64 if isinstance(value, int) else torch.float64
    return torch.tensor(value, dtype=dtype, device=device)


def _packed_states(tracker, device) -> dict[torch.dtype, tuple[list[str], torch.Tensor]]:
    """The states ranks combine (``sum`` and ``mean``), flattened into one tensor per dtype."""
    reduced = [name for name, how in tracker.state_reductions().items() if how != "local"]
    values = {name: _as_tensor(getattr(tracker, name), device) for name in reduced}
    packs = {}
    for dtype in dict.fromkeys(value.dtype for value in values.values()):
        names = [name for name, value in values.items() if value.dtype == dtype]
        packs[dtype] = (names, torch.cat([values[name].reshape(-1) for name in names]))
    return packs


def _unpack_states(tracker, packs: dict, world: int) -> None:
    """Put the combined states back, ``mean`` ones divided by ``world``, Python numbers as Python numbers."""
    reductions = tracker.state_reductions()
    for names, packed in packs.values():
        for name, part in zip(names, packed.split([_numel(getattr(tracker, name)) for name in names])):
            current = getattr(tracker, name)
            part = part / world if reductions[name] == "mean" else part
            if isinstance(current, torch.Tensor):
                setattr(tracker, name, part.view_as(current).clone())
            else:
                setattr(tracker, name, type(current)(part.item()))


def _numel(value) -> int:
    return value.numel() if isinstance(value, torch.Tensor) else 1


def sync_states(tracker, ranks: Ranks, device: torch.device | str = "cpu") -> None:
    """Combine ``tracker``'s declared states over all ranks, in place, as each state's reduction says.

    Called once at the end of an epoch, before ``get_metrics``: one ``all_reduce`` per dtype.
    """
    packs = _packed_states(tracker, device)
    for _, packed in packs.values():
        ranks.sum_(packed)
    _unpack_states(tracker, packs, ranks.world)


def sync_simulated(trackers: list) -> None:
    """``sync_states`` for ranks simulated in one process: ``trackers[r]`` is rank ``r``'s tracker.

    Adds the packed states exactly as ``all_reduce`` would (in rank order), so a check can
    run a learner's tracker on several shards without starting processes
    (``lessons/exercises.py``).
    """
    packs = [_packed_states(tracker, "cpu") for tracker in trackers]
    for dtype in packs[0]:
        total = torch.stack([pack[dtype][1] for pack in packs]).sum(0)
        for pack in packs:
            pack[dtype][1].copy_(total)
    for tracker, pack in zip(trackers, packs):
        _unpack_states(tracker, pack, len(trackers))


def launched_by_torchrun() -> bool:
    """Whether this process was started by ``torchrun`` (or anything that sets its variables)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def join(device: str = "auto") -> tuple[Ranks, str]:
    """Join the process group torchrun describes; returns the ranks and this rank's device name.

    ``device="auto"`` gives NCCL on ``cuda:LOCAL_RANK`` when CUDA is present, gloo on the CPU
    otherwise; ``device="cpu"`` forces gloo.
    """
    missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
    if missing:
        raise ValueError(f"environment lacks {', '.join(missing)}: start the run with "
                         f"torchrun --nproc-per-node N -m accumbug run ...")
    local_rank = int(os.environ["LOCAL_RANK"])
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise ValueError(f"device={device!r}: with torchrun use auto, cpu or cuda (each rank takes cuda:LOCAL_RANK)")
    if use_cuda:
        torch.cuda.set_device(local_rank)
    backend = "nccl" if use_cuda else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    ranks = Ranks(rank=dist.get_rank(), world=dist.get_world_size(), backend=backend)
    return ranks, f"cuda:{local_rank}" if use_cuda else "cpu"


def leave() -> None:
    """Leave the process group (the end of a run, or after an error)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def exit_rank(code: int) -> NoReturn:
    """End this rank's process with exit status ``code``, skipping Python's interpreter shutdown.

    Why: gloo's worker threads outlive ``destroy_process_group`` once a
    ``DistributedDataParallel`` model has used the group (torch 2.13.0: they still run after
    the model is collected and the group destroyed), so they are never joined. A worker that
    finishes a collective releases the collective's tensors a moment after the caller has
    moved on, and that release takes the GIL. If the main thread has begun interpreter
    shutdown by then, Python ends the worker with ``pthread_exit`` inside a ``noexcept``
    destructor and the rank aborts: "terminate called without an active exception"
    (SIGABRT).
    ``benchmarks/gloo_exit_race.py`` counts how often (``docs/reliability.md``).

    ``os._exit`` after flushing the console never starts that shutdown; everything a run
    writes is committed before this point. ``python -m accumbug`` ends each torchrun rank
    here.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def rank_shard(samples: int, world: int, rank: int, seed: int, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``rank``'s sample indices for ``epoch`` as ``DistributedSampler`` gives them, and which it counts.

    The sampler's padded order has ``world * ceil(samples / world)`` entries; this rank holds
    entries ``rank, rank + world, ...``. Entries at positions ``>= samples`` repeat the head of
    the order, so ``counted`` is False exactly there: each sample id is counted once over all
    ranks.
    """
    sampler = DistributedSampler(range(samples), num_replicas=world, rank=rank, shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    order = torch.tensor(list(sampler), dtype=torch.int64)
    positions = torch.arange(len(order)) * world + rank
    return order, positions < samples


def torchrun_command(world: int, run_args: list[str]) -> list[str]:
    """``torchrun --standalone --nproc-per-node WORLD -m accumbug run RUN_ARGS``, as a command list.

    ``--standalone`` lets torchrun pick a free local port, so several runs can start one
    after another (or side by side) without clashing.
    """
    world = check_whole("world", world, 1, unit="of ranks")
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(world),
            "-m", "accumbug", "run", *run_args]


def torchrun_run(world: int, run_args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``torchrun_command`` to the end on the CPU (gloo); its output comes back as text.

    Raises ``RuntimeError`` with the ranks' error output when the run fails
    (``05_distributed.ipynb`` launches its runs this way).
    """
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARIABLES}  # a fresh run, not a nested one
    done = subprocess.run(torchrun_command(world, [*run_args, "--device", "cpu"]), capture_output=True, text=True,
                          env=env, timeout=timeout, check=False)  # raised below, with the ranks' errors
    if done.returncode != 0:
        raise RuntimeError(f"torchrun with {world} ranks exited with {done.returncode}:\n{done.stderr[-3000:]}")
    return done
