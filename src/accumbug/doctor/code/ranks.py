"""Multi-rank runs: a metric never reduced across ranks, or one whose padded repeats are counted.

A heuristic, like every code check (see ``accumbug.doctor.code``); the distributed APIs are
recognised by origin (``collectives.py``, ``rank_zero.py``), values by what they are made from
(``rank_flow.py``), loaders by their samplers (``shards.py``) and steps by ``provenance.py``.
What it looks for, and what it ignores:

``unreduced-across-ranks``
    In a multi-rank file (torch.distributed, Horovod, Accelerate), a value logged, printed,
    appended or saved on rank 0 only (a rank test, ``@rank_zero_only``, ``accelerator.print``
    or ``accelerator.log``, a writer made on rank 0 only) that is made from a per-batch running
    sum or meter of the loss or of the batch (``total_loss += loss.item()``,
    ``losses.update(...)``) accumulated over a sharded loader, with no collective on the way
    (``dist.all_reduce``, ``hvd.allreduce``, ``accelerator.gather``/``reduce``/
    ``gather_for_metrics``, a helper that calls one, a torchmetrics ``compute()``). The finding
    quotes that log. And Lightning: ``self.log``/``self.log_dict`` at epoch level
    (``on_epoch=True``, or its default in ``validation_step``, ``test_step`` and epoch hooks)
    without ``sync_dist=True`` under a Trainer on several devices (one finding per file,
    counting the calls). Ignored: a collective that reduces other values (predictions gathered
    while the loss sum is not), a per-batch print inside the loop, a loop over a loader that
    every rank reads whole, a bare ``self.<metric>`` object (torchmetrics syncs itself), and
    saves that carry no metric.
``padded-duplicates-counted``
    A sum, mean or gather across ranks (not ``gather_for_metrics``, which drops the repeats)
    of values accumulated per batch over a loader whose ``DistributedSampler`` is made
    without ``drop_last`` or with ``drop_last=False`` (or an Accelerate-prepared loader,
    padded by ``even_batches``); the finding quotes the collective, or the helper that calls
    it. A division by ``len(sampler)`` of such a sampler (the padded per-rank length).
    Lightning's ``self.log(..., sync_dist=True)`` at epoch level on several devices. Ignored:
    loops over ``drop_last=True`` samplers even when another loader of the file pads, and
    loops that mask (a name containing ``mask`` or ``counted``) or whose function cuts the
    gathered values back (``[:len(...)]``).
"""

from __future__ import annotations

import ast
import re
import weakref
from collections.abc import Iterator
from typing import NamedTuple

from ..findings import Finding
from .collectives import Distributed, epoch_logs, multi_device_trainer
from .provenance import Provenance, provenance
from .rank_flow import Key, RankFlow
from .rank_zero import RankZero
from .shards import SAMPLERS, Shard, Shards
from .source import Source, and_more, called, is_true

_LOG_CALLS = {"print", "log", "info", "add_scalar", "add_scalars", "append", "dump", "save", "write", "log_metrics",
              "log_metric", "log_dict", "extend", "set_postfix", "display_summary"}
_SAVING = re.compile(r"^(save|write|dump|print|log)_(?!softmax|prob|sum|det)")  # save_checkpoint, write_history
_MASKISH = re.compile(r"mask|counted", re.IGNORECASE)

UNREDUCED = ("the epoch metric saved is rank 0's own shard (1/world_size of the data), not the whole "
             "epoch's: it differs from the true epoch value, and every rank holds a different one")
PADDED = ("DistributedSampler pads every rank's shard with repeated samples to equal length; summed "
          "across ranks they are counted twice, so the total exceeds the data set and the mean is "
          "weighted towards the repeats")

_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class _Ranks(NamedTuple):
    src: Source
    dist: Distributed
    zero: RankZero
    flow: RankFlow
    shards: Shards
    steps: Provenance


def _ranks(src: Source) -> _Ranks | None:
    """The distributed reading of ``src``, built once for both checks; ``None`` for a file that runs on one rank."""
    if src not in _CACHE:
        dist = Distributed(src)
        flow = RankFlow(src, dist) if dist.multi_rank() else None
        _CACHE[src] = flow and _Ranks(src, dist, RankZero(src, dist), flow, Shards(src, dist, flow), provenance(src))
    return _CACHE[src]


def _position(node: ast.AST) -> tuple[int, int]:
    return node.lineno, node.col_offset


def _inside(r: _Ranks, node: ast.AST, outer: ast.AST) -> bool:
    while node in r.steps.parent:
        node = r.steps.parent[node]
        if node is outer:
            return True
    return False


def _shard_of_step(r: _Ranks, step: ast.AST) -> Shard | None:
    return r.shards.of(r.steps.iterated(step)) if isinstance(step, (ast.For, ast.AsyncFor)) else None


def _added_values(statement: ast.AST) -> list[ast.expr]:
    if isinstance(statement, ast.Call):
        return [*statement.args, *(k.value for k in statement.keywords)]
    return [statement.value.right] if isinstance(statement, ast.Assign) else [statement.value]


def _loader_loop(r: _Ranks, node: ast.AST) -> ast.AST | None:
    """The innermost loop around ``node`` (in its function) that goes through a loader the file builds."""
    while node in r.steps.parent and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        node = r.steps.parent[node]
        if isinstance(node, (ast.For, ast.AsyncFor)) and _shard_of_step(r, node) is not None:
            return node
    return None


def _per_batch_sums(r: _Ranks, keys: set[Key]) -> Iterator[tuple[ast.AST, ast.AST]]:
    """``(addition, step)`` for each addition to one of ``keys`` made once per batch, in file order."""
    for key in sorted(keys, key=str):
        for statement in r.flow.additions.get(key, ()):
            step = r.steps.step_of(statement) or _loader_loop(r, statement)
            if step is not None:
                yield statement, step


def _lightning_logs(src: Source, synced: bool, code: str, says: str, consequence: str) -> list[Finding]:
    """One finding for a file's Lightning epoch logs with (or without) ``sync_dist=True`` under a Trainer on
    several devices: the first such call quoted, the others counted."""
    calls = [call for call, sync in epoch_logs(src) if is_true(sync) == synced] if multi_device_trainer(src) else []
    if not calls:
        return []
    evidence = f"`{src.quote(calls[0])}`{and_more(len(calls) - 1, 'call', 'calls')}: {says}"
    return [src.finding(code, calls[0], evidence, consequence)]


# -- unreduced-across-ranks -------------------------------------------------------------------------


def _of_the_batch(r: _Ranks, statement: ast.AST, step: ast.AST) -> bool:
    """What the addition adds is a loss, or is made from the batch the step loop reads (not only its size)."""
    values = _added_values(statement)
    if any(r.steps.is_loss(v) for v in values):
        return True
    batch = set(r.flow.targets(step.target)) if isinstance(step, (ast.For, ast.AsyncFor)) else set()
    return any(batch & r.flow.made_from(v) and (isinstance(v, ast.BinOp) or not r.steps.is_sample_count(v))
               for v in values)


def _epoch_sum(r: _Ranks, log: ast.Call, keys: set[Key]) -> ast.AST | None:
    """The first per-batch sum of a sharded loop's metric that ``log`` carries from outside that loop."""
    for statement, step in _per_batch_sums(r, keys):
        shard = _shard_of_step(r, step)
        if not _inside(r, log, step) and (shard is None or shard.kind != "whole") and _of_the_batch(r, statement, step):
            return statement
    return None


def _logged(r: _Ranks, call: ast.Call) -> Iterator[set[Key]]:
    """What each value a log call writes is made from (each value of a dict, each field of an f-string),
    leaving out the values that a collective reaches."""
    stack = [*call.args, *(k.value for k in call.keywords)]
    while stack:
        value = stack.pop(0)
        if isinstance(value, (ast.Dict, ast.JoinedStr, ast.Tuple, ast.List)):
            stack[:0] = value.values if isinstance(value, (ast.Dict, ast.JoinedStr)) else value.elts
            continue
        keys = r.flow.made_from(value.value if isinstance(value, ast.FormattedValue) else value)
        if not r.flow.reductions_in(keys):
            yield keys


def _rank_zero_logs(r: _Ranks) -> Iterator[tuple[ast.Call, ast.AST, ast.AST]]:
    """``(log call, its rank-0 guard, the unreduced per-batch sum it carries)``, one per guard."""
    guarded = set()
    for call in sorted(r.src.of(ast.Call), key=_position):
        name = called(call) or ""
        guard = r.zero.guard(call) if name in _LOG_CALLS or _SAVING.match(name) else None
        if guard is None or id(guard) in guarded:
            continue
        statement = next(filter(None, (_epoch_sum(r, call, keys) for keys in _logged(r, call))), None)
        if statement is not None:
            guarded.add(id(guard))
            yield call, guard, statement


def check_unreduced_across_ranks(src: Source) -> list[Finding]:
    """Epoch metrics logged on rank 0 that no collective reaches, or Lightning's epoch logs without sync_dist."""
    r = _ranks(src)
    findings = _lightning_logs(src, False, "unreduced-across-ranks",
                               "epoch values under a Trainer on several devices, without sync_dist=True", UNREDUCED)
    if r is None:
        return findings
    for call, guard, statement in _rank_zero_logs(r):
        where = "logs on the main process only" if guard is call else f"runs on rank 0 only (`{src.quote(guard)}`)"
        evidence = f"`{src.quote(call)}` {where}; it carries `{src.quote(statement)}` (line {statement.lineno}), " \
                   "a sum over this rank's shard that no all_reduce, all_gather or gather reaches"
        findings.append(src.finding("unreduced-across-ranks", call, evidence, UNREDUCED))
    return findings


# -- padded-duplicates-counted ----------------------------------------------------------------------


def _masked(r: _Ranks, step: ast.AST) -> bool:
    """The loop leaves the repeats out (it names a mask), or its function cuts values back with ``[:len(...)]``."""
    nodes = ast.walk(step)
    names = (n.id if isinstance(n, ast.Name) else n.attr for n in nodes if isinstance(n, (ast.Name, ast.Attribute)))
    cuts = (n for n in ast.walk(r.src.scope.get(step, r.src.tree)) if isinstance(n, ast.Slice) and n.upper is not None)
    return any(_MASKISH.search(name) for name in names) or any("len(" in r.src.unparse(n.upper) for n in cuts)


def _padded_step(r: _Ranks, step: ast.AST) -> Shard | None:
    shard = _shard_of_step(r, step)
    return shard if shard is not None and shard.kind == "padded" and not _masked(r, step) else None


def _padded_inputs(r: _Ranks, call: ast.Call) -> tuple[ast.AST, Shard] | None:
    """What a collective sums or gathers, when it was made per batch from a padded loop: (that code, its shard)."""
    step = r.steps.step_of(call) or _loader_loop(r, call)
    shard = _padded_step(r, step) if step is not None else None
    if shard is not None:
        return call, shard
    for statement, step in _per_batch_sums(r, r.flow.made_from_key(("collective", id(call)))):
        shard = _padded_step(r, step)
        if shard is not None:
            return statement, shard
    return None


def _padded_reductions(r: _Ranks) -> Iterator[Finding]:
    for call in sorted(r.flow.reducers.values(), key=lambda c: c.lineno):
        collective = r.flow.collectives.get(id(call))
        found = _padded_inputs(r, call) if collective is None or collective.kind != "deduplicated" else None
        if found is None:
            continue
        made, shard = found
        site = _helper_call(r, call, made)
        through = "" if site is call else f" (through `{r.src.quote(call)}`, line {call.lineno})"
        fed = "" if made is call else f" `{r.src.quote(made)}` (line {made.lineno}),"
        evidence = f"`{r.src.quote(site)}`{through} combines across ranks{fed} counted over a shard that " \
                   f"`{r.src.quote(shard.made)}` (line {shard.made.lineno}) pads with repeats"
        yield r.src.finding("padded-duplicates-counted", site, evidence, PADDED)


def _helper_call(r: _Ranks, call: ast.Call, made: ast.AST) -> ast.Call:
    """Where a collective inside a helper of the file (``metric_average``) is called with the padded sum: the
    line that makes the epoch's value; the collective itself when it is not in such a helper."""
    helper = r.src.scope.get(call)
    if made is call or not isinstance(helper, (ast.FunctionDef, ast.AsyncFunctionDef)) or _inside(r, made, helper):
        return call
    summed = set(r.flow.targets(made.func.value if isinstance(made, ast.Call) else made.target))
    calls = sorted(r.src.calls(helper.name), key=_position)
    passed = (c for reach in (r.flow.keys, r.flow.made_from) for c in calls  # passed as is, else made from it
              if summed & reach(ast.Tuple(c.args, ast.Load())))
    return next(passed, call)


def _is_sampler(r: _Ranks, node: ast.expr) -> Shard | None:
    """A padded ``DistributedSampler`` (or a name that holds one), not a loader made with it."""
    made = [node, *r.shards.made.get(r.flow.key(node), ())] if isinstance(node, (ast.Name, ast.Attribute)) else [node]
    samplers = [m for m in made if isinstance(m, ast.Call) and called(m) in SAMPLERS]
    shard = r.shards.of(samplers[0]) if samplers else None
    return shard if shard is not None and shard.kind == "padded" else None


def _padded_lengths(r: _Ranks) -> Iterator[Finding]:
    """``x / len(sampler)`` (or ``/=``) where the sampler pads: the per-rank length counts the repeats."""
    for node in r.src.of(ast.BinOp, ast.AugAssign):
        divisor = node.right if isinstance(node, ast.BinOp) else node.value
        if not isinstance(node.op, ast.Div):
            continue
        lengths = [c for c in ast.walk(divisor) if isinstance(c, ast.Call) and called(c) == "len" and c.args]
        shard = next((s for s in (_is_sampler(r, c.args[0]) for c in lengths) if s is not None), None)
        if shard is not None:
            statement = node if isinstance(node, ast.AugAssign) else _statement(r, node)
            evidence = f"`{r.src.quote(statement)}` divides by the length of a shard that " \
                       f"`{r.src.quote(shard.made)}` (line {shard.made.lineno}) pads with repeats"
            yield r.src.finding("padded-duplicates-counted", statement, evidence, PADDED)


def _statement(r: _Ranks, node: ast.AST) -> ast.AST:
    while not isinstance(node, ast.stmt) and node in r.steps.parent:
        node = r.steps.parent[node]
    return node


def check_padded_duplicates_counted(src: Source) -> list[Finding]:
    """Values of a padded shard summed or gathered across ranks, a division by a padded sampler's length."""
    r = _ranks(src)
    findings = _lightning_logs(src, True, "padded-duplicates-counted",
                               "sync_dist=True averages the ranks' values, padding repeats included", PADDED)
    return findings if r is None else findings + [*_padded_reductions(r), *_padded_lengths(r)]
