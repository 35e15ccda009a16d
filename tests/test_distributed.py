"""Epoch metrics across ranks: gloo on CPU with 2, 3 and 5 ranks, and torchrun end to end.

Each world size runs once (``ranks_run``): an evaluation pass, then two training epochs,
every rank recording its samples (``train(..., records=True)``). The tests recompute every
tracker's value from those records, without the trackers: the exact one counts each
sample id once (1,032, never the padded 1,035), and each naive one is off by what the
records say it should be. Each rank also syncs trackers of its own through ``sync_states``
directly, so the generic sync is checked against one process and against ranks simulated in
one process (``sync_simulated``).
"""

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import torch.multiprocessing as mp

from accumbug.cli import distributed_trackers
from accumbug.config import TrainConfig
from accumbug.data import preset
from accumbug.distributed import (
    exit_rank,
    join,
    launched_by_torchrun,
    leave,
    rank_shard,
    sync_simulated,
    sync_states,
    torchrun_command,
    torchrun_run,
)
from accumbug.history import load_history
from accumbug.lessons.plots import plot_rank_errors
from accumbug.lessons.tables import rank_rows
from accumbug.registry import make_trackers
from accumbug.runfolder import CHECKPOINT, COMMIT, CONFIG, CONSOLE, RunFolder, history_filename
from accumbug.trackers import ExactTracker, MetricTracker
from accumbug.train import train

TRACKERS = ["exact", "exact-mean", "naive-rank0", "naive-rank-mean", "naive-padded"]
EVAL = TrainConfig(preset="tiny", epochs=1, eval_only=True, device="cpu")
TRAIN = TrainConfig(preset="tiny", epochs=2, device="cpu")
SAMPLES = preset("tiny").samples  # 1,032
BATCH = EVAL.data_spec().batch_size


def _fed(records: dict, tracker=None) -> ExactTracker:
    """An ``ExactTracker`` fed one rank's recorded epoch batch by batch, as the trainer fed it under torchrun."""
    tracker = ExactTracker() if tracker is None else tracker
    for start in range(0, len(records["loss"]), BATCH):
        rows = slice(start, start + BATCH)
        tracker.update(records["loss"][rows], records["outputs"][rows], records["labels"][rows],
                       counted=records["counted"][rows])
    return tracker


class _Mixed(MetricTracker):
    """A tracker with every kind of state: each reduction, Python numbers and tensors of several dtypes."""

    kind = "mixed"

    def __init__(self, rank: int = 0):
        super().__init__()
        self.add_state("count", 0, "sum")
        self.add_state("weight", 0.0, "sum")
        self.add_state("means", torch.zeros(3, dtype=torch.float32), "mean")
        self.add_state("hits", torch.zeros(2, dtype=torch.int64), "sum")
        self.add_state("mine", torch.zeros((), dtype=torch.int64), "local")
        self.count, self.weight = rank + 1, 0.5 * (rank + 1)  # sums and means exact in any order
        self.means = torch.tensor([rank, 2.0 * rank, 0.25], dtype=torch.float32)
        self.hits, self.mine = torch.tensor([rank, 10], dtype=torch.int64), torch.tensor(rank)

    def update(self, loss, outputs, labels):
        pass

    def get_metrics(self):
        return {"loss": self.weight / self.count}

    def states(self) -> dict:
        return {name: getattr(self, name) for name in self.state_reductions()}


def _rank_main(rank: int, world: int, port: int, folder: str) -> None:
    """One rank of ``ranks_run``: join over gloo, evaluate, train, sync trackers directly, save what it saw."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    ranks, device = join("cpu")
    try:
        runs = {name: train(config, make_trackers(TRACKERS), records=True, ranks=ranks)
                for name, config in (("eval", EVAL), ("train", TRAIN))}
        exact, mixed = _fed(runs["eval"].records[0]), _Mixed(rank)
        for tracker in (exact, mixed):
            sync_states(tracker, ranks, device)
    finally:
        leave()
    saved = {name: {"histories": run.histories, "records": run.records} for name, run in runs.items()}
    saved["synced"] = {"exact": exact.get_metrics(), "exact_loss_sum": exact.loss_sum, "mixed": mixed.states()}
    torch.save(saved, os.path.join(folder, f"rank{rank}.pt"))
    exit_rank(0)  # as ``python -m accumbug`` ends a rank: no interpreter shutdown beside gloo's threads


@pytest.fixture(scope="module", params=[2, 3, 5], ids=lambda world: f"{world}-ranks")
def ranks_run(request, tmp_path_factory, free_port):
    """Every rank's histories and records for one world size."""
    world, folder = request.param, tmp_path_factory.mktemp(f"ranks{request.param}")
    mp.start_processes(_rank_main, args=(world, free_port(), str(folder)), nprocs=world, start_method="spawn")
    saved = [torch.load(folder / f"rank{rank}.pt", weights_only=False) for rank in range(world)]
    return world, saved


@pytest.fixture(scope="module")
def single_eval():
    return train(EVAL, make_trackers(["exact"]), records=True)


def _loss(records: list[dict], rows=lambda r: r["counted"]) -> float:
    """The float64 mean of the chosen rows' per-sample losses."""
    losses = torch.cat([r["loss"][rows(r)] for r in records]).double()
    return losses.mean().item()


def _hits(records: list[dict], k: int) -> int:
    """Counted rows whose label is among the top ``k`` outputs, by ``torch.topk``."""
    found = [(r["outputs"].topk(k, 1).indices == r["labels"].view(-1, 1)).any(1) & r["counted"] for r in records]
    return int(sum(f.sum() for f in found))


def test_shards_count_every_sample_once_and_pad_to_a_multiple_of_the_world():
    for world in (1, 2, 3, 5, 7):
        shards = [rank_shard(SAMPLES, world, rank, seed=0, epoch=4) for rank in range(world)]
        padded = sum(len(order) for order, _ in shards)
        assert padded == world * math.ceil(SAMPLES / world)
        counted = torch.cat([order[keep] for order, keep in shards])
        assert sorted(counted.tolist()) == list(range(SAMPLES))
        duplicates = torch.cat([order[~keep] for order, keep in shards])
        assert len(duplicates) == padded - SAMPLES and set(duplicates.tolist()) <= set(counted.tolist())
    assert sum(len(rank_shard(SAMPLES, 5, r, 0, 0)[0]) for r in range(5)) == 1035


def test_per_sample_losses_with_every_row_counted_equal_the_batch_mean_path(stream):
    by_mean, by_sample = ExactTracker(), ExactTracker()
    for _, outputs, labels in stream:
        losses = torch.nn.functional.cross_entropy(outputs, labels, reduction="none")
        by_mean.update(losses.mean(), outputs, labels)
        by_sample.update(losses, outputs, labels, counted=torch.ones_like(labels, dtype=torch.bool))
    mean, sample = by_mean.get_metrics(), by_sample.get_metrics()
    assert sample["loss"] == pytest.approx(mean["loss"], rel=1e-6)
    assert (sample["top1"], sample["top5"], sample["samples"]) == (mean["top1"], mean["top5"], mean["samples"])


def test_counted_rows_leave_out_the_others_losses_and_hits(stream):
    tracker = ExactTracker()
    _, outputs, labels = stream[0]
    losses = torch.nn.functional.cross_entropy(outputs, labels, reduction="none")
    keep = torch.arange(len(labels)) < 5
    tracker.update(losses, outputs, labels, counted=keep)
    assert tracker.total == 5
    assert tracker.get_metrics()["loss"] == pytest.approx(losses[:5].double().mean().item(), rel=1e-12)
    assert int(tracker.rank_hits.sum()) == int((outputs[:5].topk(5, 1).indices == labels[:5, None]).any(1).sum())


def test_counted_needs_per_sample_losses(stream):
    loss, outputs, labels = stream[0]
    with pytest.raises(ValueError, match=r"loss shape \(\): with counted= give per-sample losses"):
        ExactTracker().update(loss, outputs, labels, counted=torch.ones(len(labels), dtype=torch.bool))
    with pytest.raises(ValueError, match=r"counted shape \(3,\)"):
        ExactTracker().update(loss.expand(len(labels)), outputs, labels, counted=torch.ones(3, dtype=torch.bool))


@pytest.mark.slow
def test_evaluation_across_ranks_equals_one_process(ranks_run, single_eval):
    world, saved = ranks_run
    one = single_eval.histories["exact"]
    for rank in range(world):
        exact = saved[rank]["eval"]["histories"]["exact"]
        assert exact["eval_total"] == [SAMPLES]  # never the padded count
        assert exact["eval_top1"] == one["eval_top1"] and exact["eval_top5"] == one["eval_top5"]
        assert exact["eval_loss"] == pytest.approx(one["eval_loss"], rel=1e-6)
    records = [saved[rank]["eval"]["records"][0] for rank in range(world)]
    assert exact["eval_top1"][0] == _hits(records, 1) / SAMPLES * 100
    assert exact["eval_top5"][0] == _hits(records, 5) / SAMPLES * 100


@pytest.mark.slow
def test_sync_states_over_gloo_gives_one_process_metrics(ranks_run):
    """Each rank's own ExactTracker, synced with ``sync_states``, holds what one process fed every sample holds."""
    world, saved = ranks_run
    records = [saved[rank]["eval"]["records"][0] for rank in range(world)]
    one = ExactTracker()
    for record in records:  # one process, every rank's batches in turn: each sample counted once
        _fed(record, one)
    truth = one.get_metrics()
    assert truth["samples"] == SAMPLES
    for rank in range(world):
        synced = saved[rank]["synced"]["exact"]
        assert (synced["samples"], synced["top1"], synced["top5"], synced["nonfinite_batches"]) == (
            truth["samples"], truth["top1"], truth["top5"], truth["nonfinite_batches"])
        assert synced["loss"] == pytest.approx(truth["loss"], rel=1e-12)  # float64 sums added in another order
        # the trainer syncs the same way: its exact history holds the same numbers
        history = saved[rank]["eval"]["histories"]["exact"]
        assert (history["eval_loss"][0], history["eval_top1"][0], history["eval_total"][0]) == (
            synced["loss"], synced["top1"], synced["samples"])


@pytest.mark.slow
def test_sync_simulated_in_one_process_gives_the_numbers_of_real_gloo_ranks(ranks_run):
    world, saved = ranks_run
    trackers = [_fed(saved[rank]["eval"]["records"][0]) for rank in range(world)]
    mixed = [_Mixed(rank) for rank in range(world)]
    sync_simulated(trackers)
    sync_simulated(mixed)
    for rank in range(world):
        gloo = saved[rank]["synced"]
        assert trackers[rank].get_metrics() == gloo["exact"]
        assert torch.equal(trackers[rank].loss_sum, gloo["exact_loss_sum"])
        simulated = mixed[rank].states()
        assert simulated.keys() == gloo["mixed"].keys()
        for name, value in gloo["mixed"].items():
            assert type(simulated[name]) is type(value), name  # Python numbers stay Python numbers
            assert (torch.equal(simulated[name], value) if isinstance(value, torch.Tensor)
                    else simulated[name] == value), (name, simulated[name], value)
    # what the reductions mean: sums added, means divided by the world, local states untouched
    assert gloo["mixed"]["count"] == world * (world + 1) // 2
    assert gloo["mixed"]["weight"] == 0.5 * world * (world + 1) / 2
    assert gloo["mixed"]["means"].tolist() == [(world - 1) / 2, world - 1, 0.25]
    assert gloo["mixed"]["hits"].tolist() == [world * (world - 1) // 2, 10 * world]
    assert [saved[rank]["synced"]["mixed"]["mine"].item() for rank in range(world)] == list(range(world))


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["eval", "train"])
def test_each_tracker_equals_its_value_recomputed_from_every_ranks_samples(ranks_run, phase):
    world, saved = ranks_run
    rank0 = saved[0][phase]["histories"]

    def everything(r):  # padding rows included
        return torch.ones_like(r["counted"])

    for epoch, records in enumerate(zip(*(saved[rank][phase]["records"] for rank in range(world)))):
        ids = torch.cat([r["sample_id"][r["counted"]] for r in records])
        assert sorted(ids.tolist()) == list(range(SAMPLES))  # each sample counted exactly once
        expected = {
            "exact": _loss(records),
            "exact-mean": _loss(records),
            "naive-rank0": _loss(records[:1], everything),
            "naive-rank-mean": sum(_loss([r], everything) for r in records) / world,
            "naive-padded": _loss(records, everything),
        }
        for name, value in expected.items():
            assert rank0[name][f"{phase}_loss"][epoch] == pytest.approx(value, rel=1e-9), name
        padded = sum(len(r["counted"]) for r in records)
        assert rank0["naive-padded"][f"{phase}_total"][epoch] == padded == world * math.ceil(SAMPLES / world)
        assert rank0["exact"][f"{phase}_total"][epoch] == SAMPLES
        assert rank0["naive-rank0"][f"{phase}_total"][epoch] == len(records[0]["counted"])


@pytest.mark.slow
def test_training_across_ranks_equals_the_sample_weighted_mean_of_batch_losses(ranks_run):
    """Batch means (float32) weighted by batch size, over all ranks: what the exact tracker must give."""
    world, saved = ranks_run
    size = TRAIN.data_spec().batch_size
    for epoch in range(TRAIN.epochs):
        weighted, samples = 0.0, 0
        for rank in range(world):
            record = saved[rank]["train"]["records"][epoch]
            for start in range(0, len(record["loss"]), size):
                losses, keep = record["loss"][start:start + size], record["counted"][start:start + size]
                weighted += losses[keep].mean().item() * int(keep.sum()) if keep.any() else 0.0
                samples += int(keep.sum())
        assert samples == SAMPLES
        exact = saved[0]["train"]["histories"]["exact"]["train_loss"][epoch]
        assert exact == pytest.approx(weighted / samples, rel=1e-6)


def _torchrun(world: int, *args: str) -> subprocess.Popen:
    command = torchrun_command(world, ["--preset", "tiny", "--no-progress", "--device", "cpu", *args])
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_torchrun_run_prints_and_writes_on_rank_0_only(tmp_path):
    out = tmp_path / "run"
    args = ["--preset", "tiny", "--no-progress", "--eval-only", "--epochs", "1", "--out", str(out)]
    stdout = torchrun_run(2, args).stdout
    lines = [line for line in stdout.splitlines() if line.startswith("Epoch 1 [Eval]")]
    assert len(lines) == 4  # one line per default tracker, from rank 0 alone
    assert sorted(p.name for p in out.iterdir()) == sorted([CONFIG, COMMIT, "divergence.png", "epoch-0001"])
    assert sorted(p.name for p in (out / "epoch-0001").iterdir()) == sorted(
        [CONSOLE, CHECKPOINT, *(history_filename(n) for n in distributed_trackers())])
    folder = RunFolder(out)
    folder.verify()
    assert folder.trackers == list(distributed_trackers()) and folder.record["ranks"] == {"world": 2, "backend": "gloo"}
    assert load_history(folder.history_path("exact"))["eval_total"] == [SAMPLES]
    rows = rank_rows({"2 ranks": out})
    assert [row["tracker"] for row in rows] == list(distributed_trackers()) and rows[0]["samples"] == SAMPLES
    assert rows[0]["error_pct"] == 0 and rows[1]["error_pct"] != 0  # rank 0's shard alone is not the epoch
    bars = plot_rank_errors(rows).axes[0].patches
    assert [bar.get_height() for bar in bars] == [row["error_pct"] for row in rows[1:]]


@pytest.mark.slow
@pytest.mark.parametrize("world", [2, 3])
def test_exact_mean_under_torchrun_counts_each_sample_once(tmp_path, world):
    """torchrun's gloo ranks over padded shards: ExactMean's epoch loss is the exact tracker's, every sample once."""
    out, samples = tmp_path / "run", SAMPLES + 1  # 1,033: neither 2 nor 3 ranks split it evenly, so shards pad
    torchrun_run(world, ["--preset", "tiny", "--samples", str(samples), "--no-progress", "--epochs", "2",
                         "--out", str(out), "--tracker", "exact", "--tracker", "exact-mean"])
    folder = RunFolder(out)
    exact, mean = folder.history("exact"), folder.history("exact-mean")
    assert mean["train_loss"] == pytest.approx(exact["train_loss"], rel=1e-12, abs=0)
    assert mean["train_count"] == exact["train_total"] == [samples, samples]  # padding repeats not counted
    assert samples % world


@pytest.mark.slow
def test_a_failed_torchrun_run_raises_with_the_ranks_errors():
    with pytest.raises(RuntimeError,
                       match=r"torchrun with 2 ranks exited with 1:(.|\n)*rank [01] of 2: error: tracker='nope'"):
        torchrun_run(2, ["--preset", "tiny", "--tracker", "nope"])


def test_exit_rank_flushes_the_console_and_keeps_the_exit_status():
    """Piped stdout is block-buffered and the text has no newline: only a flush gets it out."""
    code = ("import sys; from accumbug.distributed import exit_rank; print('out', end=''); "
            "print('err', end='', file=sys.stderr); exit_rank(3); print('never')")
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=buffered,
                          check=False)
    assert (done.returncode, done.stdout, done.stderr) == (3, "out", "err")


def _workers(parent: int) -> dict[int, int]:
    """The torchrun workers under ``parent``: rank -> pid, read from /proc."""
    found = {}
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
            if ppid != parent:
                continue
            with open(f"/proc/{entry}/environ", "rb") as environ:
                variables = dict(v.split(b"=", 1) for v in environ.read().split(b"\0") if b"=" in v)
            found[int(variables[b"RANK"])] = int(entry)
        except (OSError, ValueError, KeyError, IndexError):
            continue
    return found


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the worker processes through /proc")
def test_a_killed_rank_ends_the_run_with_an_error_and_whole_histories(tmp_path):
    out = tmp_path / "run"
    process = _torchrun(2, "--epochs", "500", "--out", str(out), "--tracker", "exact", "--tracker", "naive-rank0",
                        "--tracker", "incident-broken")
    deadline = time.monotonic() + 120
    while not (out / COMMIT).exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    workers = _workers(process.pid)
    assert (out / COMMIT).exists() and 1 in workers, process.stderr.read() if process.poll() is not None else ""
    os.kill(workers[1], signal.SIGKILL)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode != 0
    assert "local_rank: 1" in stderr and "Signal 9 (SIGKILL)" in stderr
    folder = RunFolder(out)
    folder.verify()  # the committed epoch is whole: every file there, unchanged since its commit
    histories = [folder.history(name) for name in ("exact", "naive-rank0", "incident-broken:python")]
    epochs = folder.epochs
    assert 1 <= epochs < 500 and all(len(h["train_loss"]) == epochs for h in histories)
    # the incident's tracker is not reduced: rank 0's shard
    assert histories[2]["train_total"] == [SAMPLES // 2] * epochs
    assert len(folder.console_lines()) == 3 * epochs
    committed = folder.commit()["folder"]
    others = [p.name for p in out.iterdir() if p.name not in (CONFIG, COMMIT, committed, "divergence.png")]
    # rank 0 may have been ended in the middle of the next commit: only what readers ignore may be left
    assert all(name.startswith((".partial-", "epoch-", f".{COMMIT}.")) for name in others), others


def test_join_names_what_the_environment_lacks(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert launched_by_torchrun()
    with pytest.raises(ValueError, match="environment lacks"):
        join("cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (the NCCL backend)")
def test_nccl_evaluation_equals_one_process(tmp_path):
    world, out = min(torch.cuda.device_count(), 2), tmp_path / "nccl"
    command = torchrun_command(world, ["--preset", "tiny", "--eval-only", "--epochs", "1", "--no-progress",
                                       "--tracker", "exact", "--out", str(out)])
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "config.json").read_text())["ranks"] == {"world": world, "backend": "nccl"}
    one = train(TrainConfig(preset="tiny", epochs=1, eval_only=True, device="cuda"), ["exact"]).histories["exact"]
    saved = load_history(out / history_filename("exact"))
    assert saved["eval_total"] == [SAMPLES]
    assert (saved["eval_top1"], saved["eval_top5"]) == (one["eval_top1"], one["eval_top5"])
    assert saved["eval_loss"] == pytest.approx(one["eval_loss"], rel=1e-6)
