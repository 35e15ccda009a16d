"""The multi-rank checks (``unreduced-across-ranks``, ``padded-duplicates-counted``) on each spelling.

* every rank-0 test spelling guards a log (``rank == 0``, ``not rank``, the ``else`` of ``rank !=
  0``, a guard clause, ``dist.get_rank() == 0``, ``hvd.rank() == 0``, ``local_rank in [-1, 0]``,
  ``accelerator.is_main_process``, a same-file ``is_main_process()``, a flag, ``@rank_zero_only``),
  and each is silent once a collective reaches the logged value;
* collectives are recognised by the package they are called on: ``logp.gather``,
  ``functools.reduce`` and an unrelated ``gather_for_metrics`` do not count;
* a writer made on rank 0 only guards its logs; a torchmetrics ``compute()`` syncs, a plain meter does not;
* rank 0 reading the whole data set is no shard;
* padding counts only when the padded loader feeds what is reduced; ``drop_last`` as the sampler states
  it; ``len(sampler)``; masks and ``[:len(...)]`` cuts leave the repeats out;
* Lightning on several devices without ``sync_dist``;
* the findings quote the log, the collective or the helper call that reaches it, and name the line of
  the sum they carry.
"""

from __future__ import annotations

import textwrap

import pytest

from accumbug.doctor.code import check_python
from accumbug.doctor.code.collectives import Distributed
from accumbug.doctor.code.source import Source, parse

UNREDUCED, PADDED = "unreduced-across-ranks", "padded-duplicates-counted"

# a torchrun loop over a DistributedSampler shard: {sampler} is its keywords, {reduce} what follows the
# loop, {log} the epoch's log (indented under the epoch loop)
DDP = """
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

def train(model, data, opt, epochs, rank, device):
    sampler = DistributedSampler(data{sampler})
    for epoch in range(epochs):
        total = torch.zeros((), device=device)
        for x, y in DataLoader(data, batch_size=64, sampler=sampler):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.detach() * len(y)
{reduce}
{log}
"""


def _findings(source: str):
    return check_python(textwrap.dedent(source), "train.py")


def _codes(source: str) -> set[str]:
    return {f.code for f in _findings(source)} & {UNREDUCED, PADDED}


def _ddp(log: str, reduce: str = "", sampler: str = ", drop_last=True") -> str:
    return DDP.format(sampler=sampler, reduce=textwrap.indent(reduce, " " * 8),
                      log=textwrap.indent(textwrap.dedent(log), " " * 8))


RANK_ZERO = {
    "rank-eq-0": "if rank == 0:\n    print(total / len(data))\n",
    "zero-eq-rank": "if 0 == rank:\n    print(total / len(data))\n",
    "not-rank": "if not rank:\n    print(total / len(data))\n",
    "else-of-nonzero": "if rank != 0:\n    pass\nelse:\n    print(total / len(data))\n",
    "guard-clause": "if rank > 0:\n    continue\nprint(total / len(data))\n",
    "get-rank": "if dist.get_rank() == 0:\n    print(total / len(data))\n",
    "modulo": "if rank % torch.cuda.device_count() == 0:\n    print(total / len(data))\n",
    "local-rank-in": "if local_rank in [-1, 0]:\n    print(total / len(data))\n",
    "and-epoch": "if rank == 0 and epoch % 5 == 0:\n    print(total / len(data))\n",
    "or-not-distributed": "if not dist.is_initialized() or dist.get_rank() == 0:\n    print(total / len(data))\n",
    "flag": "main = dist.get_rank() == 0\nif main:\n    print(total / len(data))\n",
    "env-rank": "if int(os.environ['RANK']) == 0:\n    print(total / len(data))\n",
}


@pytest.mark.parametrize("log", RANK_ZERO.values(), ids=RANK_ZERO.keys())
def test_each_rank_zero_spelling_guards_an_unreduced_log(log):
    assert _codes(_ddp(log)) == {UNREDUCED}
    assert _codes(_ddp(log, reduce="dist.all_reduce(total)")) == set()


def test_a_same_file_helper_and_a_decorator_are_rank_tests():
    helper = _ddp("if is_main():\n    print(total)\n") + "\ndef is_main():\n    return dist.get_rank() == 0\n"
    decorated = _ddp("report(total)\n") + "\n@rank_zero_only\ndef report(value):\n    print(value)\n"
    called_under_test = _ddp("if rank == 0:\n    report(total)\n") + "\ndef report(value):\n    log.append(value)\n"
    assert _codes(helper) == _codes(decorated) == _codes(called_under_test) == {UNREDUCED}


def test_every_rank_logging_is_not_a_rank_zero_log():
    assert _codes(_ddp("print(total / len(data))\n")) == set()
    assert _codes(_ddp("if rank == 1:\n    print(total / len(data))\n")) == set()


def test_the_finding_quotes_the_log_and_names_the_sum():
    source = textwrap.dedent(_ddp("if rank == 0:\n    history.append(total.item() / len(data))\n"))
    [finding] = [f for f in _findings(source) if f.code == UNREDUCED]
    lines = source.splitlines()
    assert "history.append" in lines[finding.line - 1]
    added = next(i for i, line in enumerate(lines, 1) if "total += loss.detach()" in line)
    assert f"`total += loss.detach() * len(y)` (line {added})" in finding.evidence
    assert "`rank == 0`" in finding.evidence


@pytest.mark.parametrize("reduce", [
    "dist.all_reduce(total, op=dist.ReduceOp.SUM)",
    "total = reduce_tensor(total)",  # a helper of another file that says it reduces
    ("gathered = [torch.zeros_like(total) for _ in range(4)]\ndist.all_gather(gathered, total)\n"
     "total = torch.stack(gathered).sum()"),
])
def test_a_collective_that_reaches_the_logged_value_reduces_it(reduce):
    assert _codes(_ddp("if rank == 0:\n    print(total)\n", reduce=reduce)) == set()


@pytest.mark.parametrize("unrelated", [
    "logp = F.log_softmax(model(x), 1).gather(1, y[:, None])",
    "import functools\nsize = functools.reduce(lambda a, b: a * b, x.shape)",
    "other = torch.zeros(2)\ndist.all_reduce(other)",
])
def test_a_collective_of_something_else_does_not_switch_the_check_off(unrelated):
    assert _codes(_ddp("if rank == 0:\n    print(total)\n", reduce=unrelated)) == {UNREDUCED}


def test_collectives_are_recognised_by_the_package_they_are_called_on():
    source = textwrap.dedent("""
        import functools
        from torch import distributed as tdist
        from torch.distributed import all_gather as gather_all
        import horovod.torch as hvd
        from accelerate import Accelerator
        acc = Accelerator()
        logp.gather(1, y[:, None]); functools.reduce(f, xs); tdist.reduce(t, 0); gather_all(out, t)
        hvd.allreduce(t); hvd.allreduce_(t); hvd.allgather(t); acc.gather(t); acc.gather_for_metrics(t)
        acc.reduce(t, reduction="mean"); metric.reduce(t); other.gather(t)
        """)
    dist = Distributed(Source(source, "s.py", parse(source, "s.py")))
    kinds = sorted((c.call.lineno, c.call.col_offset, c.kind) for c in dist.collectives)
    assert [kind for *_, kind in kinds] == ["sum", "gather", "mean", "mean", "gather", "gather", "deduplicated", "mean"]


HOROVOD = """
import horovod.torch as hvd
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

def test(model, test_set):
    hvd.init()
    test_sampler = DistributedSampler(test_set, num_replicas=hvd.size(), rank=hvd.rank(){drop})
    test_loss = 0.0
    for data, target in DataLoader(test_set, batch_size=100, sampler=test_sampler):
        test_loss += F.nll_loss(model(data), target, reduction="sum")
    test_loss = float(test_loss) / len(test_sampler)
    {average}
    if hvd.rank() == 0:
        print(test_loss)
"""


def test_horovod_allreduce_is_a_reduction_and_len_of_a_padded_sampler_counts_repeats():
    averaged = "test_loss = hvd.allreduce(torch.tensor(test_loss)).item()"
    assert _codes(HOROVOD.format(drop=", drop_last=True", average=averaged)) == set()
    assert _codes(HOROVOD.format(drop=", drop_last=True", average="")) == {UNREDUCED}
    padded = _findings(HOROVOD.format(drop="", average=averaged))
    assert {f.code for f in padded} >= {PADDED}
    assert any("`test_loss = float(test_loss) / len(test_sampler)`" in f.evidence for f in padded)


ACCELERATE = """
import torch
from accelerate import Accelerator

def run(model, opt, train_dl, eval_dl):
    accel = Accelerator()
    model, opt, train_dl, eval_dl = accel.prepare(model, opt, train_dl, eval_dl)
    total_loss = 0
    for batch in train_dl:
        loss = model(**batch).loss
        accel.backward(loss)
        opt.step()
        total_loss += loss.detach() * len(batch["labels"])
    {gather_loss}
    hits = 0
    for batch in eval_dl:
        with torch.no_grad():
            preds = model(**batch).logits.argmax(-1)
        preds, labels = accel.{gather}((preds, batch["labels"]))
        hits += (preds == labels).sum()
    accel.print(f"loss {{total_loss}} hits {{hits}}")
"""


def test_accelerate_gathers_reach_only_what_they_gather():
    assert _codes(ACCELERATE.format(gather_loss="", gather="gather_for_metrics")) == {UNREDUCED}
    reduced = "total_loss = accel.reduce(total_loss)"
    assert _codes(ACCELERATE.format(gather_loss=reduced, gather="gather_for_metrics")) == {PADDED}  # train_dl pads
    fair = "total_loss = accel.gather_for_metrics(total_loss).sum()"
    assert _codes(ACCELERATE.format(gather_loss=fair, gather="gather_for_metrics")) == set()
    assert _codes(ACCELERATE.format(gather_loss=fair, gather="gather")) == {PADDED}


def test_padding_counts_only_through_the_loop_that_feeds_the_reduction():
    padded_train = _ddp("if rank == 0:\n    print(total)\n", sampler="",
                        reduce="dist.all_reduce(total)")
    assert _codes(padded_train) == {PADDED}
    masked = padded_train.replace("total += loss.detach() * len(y)", "total += (loss.detach() * mask).sum()")
    assert _codes(masked) == set()
    other_loop = padded_train.replace("dist.all_reduce(total)", textwrap.dedent("""\
        val = torch.zeros((), device=device)
                for x, y in DataLoader(data, sampler=DistributedSampler(data, drop_last=True)):
                    val += F.cross_entropy(model(x), y, reduction="sum")
                dist.all_reduce(val)"""))
    assert _codes(other_loop.replace("print(total)", "print(val)")) == set()


@pytest.mark.parametrize("trainer, expected", [
    ('Trainer(devices=4)', {UNREDUCED}), ('Trainer(gpus=2)', {UNREDUCED}), ('Trainer(devices=-1)', {UNREDUCED}),
    ('Trainer(devices=[0, 1])', {UNREDUCED}), ('Trainer(strategy="fsdp")', {UNREDUCED}),
    ('Trainer(devices=1)', set()), ('Trainer(accelerator="cpu")', set()),
])
def test_lightning_several_devices_without_sync_dist(trainer, expected):
    module = textwrap.dedent("""
        class M(LightningModule):
            def validation_step(self, batch, i):
                self.log("val_loss", F.cross_entropy(self(batch[0]), batch[1]), sync_dist=False)
        """)
    assert _codes(module + f"trainer = {trainer}\n") == expected


RANK_ZERO_EVAL = """
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

@torch.no_grad()
def validate(model, val_set, criterion):
    total = torch.zeros((), dtype=torch.float64)
    for x, y in DataLoader(val_set, batch_size=256{sampler}):
        total += criterion(model(x), y).double() * len(y)
    return total / len(val_set)

def after_epoch(model, val_set, criterion, log):
    dist.init_process_group("gloo")
    if dist.get_rank() == 0:
        log.append(validate(model, val_set, criterion).item())
"""


def test_rank_zero_reading_the_whole_data_set_is_not_a_shard():
    assert _codes(RANK_ZERO_EVAL.format(sampler="")) == set()
    [finding] = _findings(RANK_ZERO_EVAL.format(sampler=", sampler=DistributedSampler(val_set)"))
    assert finding.code == UNREDUCED and "`log.append(validate(model, val_set, criterion).item())`" in finding.evidence


def test_a_writer_made_on_rank_zero_only_guards_its_logs():
    made_if = "writer = SummaryWriter() if rank == 0 else None\n"
    made_under = "writer = None\nif rank == 0:\n    writer = SummaryWriter()\n"
    for made in (made_if, made_under):
        log = made + "if writer is not None:\n    writer.add_scalar('loss', total, epoch)\n"
        assert _codes(_ddp(log)) == {UNREDUCED}, made
        assert _codes(_ddp(log, reduce="dist.all_reduce(total)")) == set(), made


@pytest.mark.parametrize("sampler, expected", [
    ("", {PADDED}), (", drop_last=False", {PADDED}), (", drop_last=True", set()),
    (", drop_last=args.drop_last", set()),  # not stated in the file
])
def test_padding_is_read_from_the_sampler_s_drop_last(sampler, expected):
    source = _ddp("if rank == 0:\n    print(total)\n", reduce="dist.all_reduce(total)", sampler=sampler)
    assert _codes(source) == expected


def test_an_elastic_sampler_pads_and_cutting_gathered_values_back_leaves_the_repeats_out():
    source = _ddp("if rank == 0:\n    print(total)\n", reduce="dist.all_reduce(total)", sampler="")
    assert _codes(source.replace("DistributedSampler(data", "ElasticDistributedSampler(data")) == {PADDED}
    gathered = ("everyone = [torch.zeros_like(total)] * 4\ndist.all_gather(everyone, total)\n"
                "total = torch.cat(everyone)[:len(data)].sum()")
    assert _codes(_ddp("if rank == 0:\n    print(total)\n", reduce=gathered, sampler="")) == set()


def test_a_torchmetrics_compute_syncs_and_a_plain_meter_does_not():
    made = "import torchmetrics\nmetric = torchmetrics.MeanMetric()\n"
    source = _ddp("if rank == 0:\n    print(metric.compute())\n", sampler=", drop_last=True")
    source = source.replace("total += loss.detach() * len(y)", "metric.update(loss.detach(), weight=len(y))")
    assert _codes(made + source) == set()
    plain = "class Mean:\n    def update(self, v, weight):\n        self.s += v * weight\n"
    assert _codes(plain + source) == {UNREDUCED}


def test_a_reduction_inside_a_helper_is_reported_where_the_helper_gets_the_padded_sum():
    helper = "def metric_average(value, name):\n    return hvd.allreduce(torch.tensor(value), name=name).item()\n"
    source = textwrap.dedent(HOROVOD.format(drop="", average="test_loss = metric_average(test_loss, 'avg_loss')"))
    lines = (source + helper).splitlines()
    padded = [f for f in _findings(source + helper) if f.code == PADDED]
    at_call = [f for f in padded if "metric_average(test_loss, 'avg_loss')" in lines[f.line - 1]]
    assert at_call and "(through `hvd.allreduce(torch.tensor(value), name=name)`" in at_call[0].evidence
