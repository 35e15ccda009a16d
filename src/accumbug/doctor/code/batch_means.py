"""The loss summed or listed per batch, then divided by a batch count: a mean of batch means.

A heuristic, like every code check (see ``accumbug.doctor.code``); values are recognised by
where they come from (``provenance.py``), not by their names. What it looks for, and what it ignores:

``mean-of-batch-means``
    A batch loss (whatever its name: ``l = loss_fn(net(X), y)``, ``outputs.loss``, the values
    of a dict of losses) added as it is to a running sum in the per-batch path (``total +=
    float(l)``, ``epoch_metrics[key] += value``, ``stats[0] += loss.item()``), then divided by a
    batch count (``len(loader)``, a ``+= 1`` counter, the loop's ``enumerate`` index, with or
    without ``+ 1``, or its ``range`` bound) or by a sample count (a sum of batch means over
    samples is off by the batch size); a list of such losses averaged (``np.mean``,
    ``sum(l) / len(l)``, ``torch.stack(l).mean()``, Lightning 1.x's mean over the step outputs
    an epoch hook receives); a meter updated once per batch with a batch loss and no weight:
    a same-file class whose ``update`` adds ``val`` and counts 1, or adds ``val * n`` with
    ``n=1`` by default and is called without ``n`` (``losses.update(loss.item())``), a
    keyword ``metric_logger.update(loss=...)``, or such an update of a meter class built from
    another file. The finding names the line that makes the wrong value: the division (the
    epoch's, rather than a running print inside the loop), the average, or the read of the
    meter's value after the loop; a running value printed every N steps (under ``if step %
    log_interval == 0``) is not one.
    Each function's own running sum is its own (``train`` and ``evaluate`` may both keep an
    ``epoch_loss``), and each division is matched to the sum of its function.
    Ignored: a sum weighted by the batch's own size (``* len(y)``, ``.sum()`` of per-sample
    losses, ``reduction="sum"``, a loss function of the file whose every return sums; a product
    with a setting such as ``BATCH_SIZE`` or the accumulation steps weighs every batch alike, and
    ``.sum()`` of a loss already reduced to its batch mean, ``nn.BCELoss()(p, y).sum()``, is the
    mean itself, so neither is a weight), a meter updated with ``n``, and loops
    whose batches are provably equal: ``drop_last=True``, or a data set size stated in the file
    (``TensorDataset(torch.randn(10000, ...))``, MNIST's 10,000 test images) that the batch
    size divides.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from ..findings import Finding
from .provenance import Provenance, provenance
from .source import Source, called, is_number, is_zero, keyword

_AVERAGES = {"mean", "fmean", "nanmean", "average"}
_LIST_WRAPPERS = {"tensor", "stack", "array", "asarray", "Tensor", "FloatTensor", "list", "cat"}
_MEANS = {"global_avg", "avg", "average", "mean", "value", "compute", "summary", "meters", "get_metrics", "result"}

MEAN_OF_MEANS = ("the epoch loss is a mean of batch means: a last, partial batch (say 8 samples after batches "
                 "of 16) weighs as much as a full one, so the value is off whenever batch sizes differ")
OVER_SAMPLES = ("the epoch loss is a sum of batch means divided by a number of samples: it is smaller than the "
                "mean loss by about the batch size, and a partial last batch is weighted like a full one")


def _a_setting(p: Provenance, node: ast.expr) -> bool:
    """A number the run is configured with, the same for every batch: a literal, a constant of the file, an
    argparse option (``args.gradient_accumulation_steps``)."""
    if is_number(node) or p.whole(node) is not None:
        return True
    while isinstance(node, ast.Attribute):
        node = node.value
    made = p.origin(node) if isinstance(node, ast.Name) else None
    return isinstance(made, ast.Call) and called(made) in ("parse_args", "parse_known_args")


def _weighted(p: Provenance, value: ast.expr) -> bool:
    """A loss multiplied by a weight that may differ per batch (a batch size; not a setting such as the
    accumulation steps), or summed over samples."""
    if p.is_summed(value):
        return True
    return any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.Mult)
               and any(not p.is_loss(side) and not _a_setting(p, side) for side in (n.left, n.right))
               for n in ast.walk(value))


def _unequal(p: Provenance, node: ast.AST) -> bool:
    """Whether the per-batch code ``node`` runs in may see batches of different sizes."""
    step = p.step_of(node)
    return not (p.equal_batches(step) if step in p.step_loops else p.equal_loaders())


def _per_batch_sums(p: Provenance) -> dict[str, list[ast.stmt]]:
    """Running sums fed an unweighted batch loss, by key (``running_loss``, ``stats[0]``, ``epoch_metrics[key]``):
    each key's additions, one per function that keeps such a sum (``train`` and ``evaluate`` both have their own
    ``epoch_loss``)."""
    sums: dict[str, list[ast.stmt]] = {}
    for key, value, stmt in p.src.additions:
        if p.is_loss(value) and not _weighted(p, value) and not p.is_sample_count(value) and _unequal(p, stmt):
            sums.setdefault(key, []).append(stmt)
            target = stmt.target if isinstance(stmt, ast.AugAssign) else None
            if isinstance(target, ast.Subscript) and not isinstance(target.slice, ast.Constant):
                sums.setdefault(p.src.unparse(target.value) + "[*]", []).append(stmt)  # a dict of sums, one per loss
    return sums


def _addition_divided(p: Provenance, additions: list[ast.stmt], division: ast.AST) -> ast.stmt:
    """The addition a division reads: the one in the division's own function, else the first of its key."""
    return next((stmt for stmt in additions if p.src.scope[stmt] is p.src.scope[division]), additions[0])


def _numerator_key(p: Provenance, node: ast.expr, sums: dict[str, list[ast.stmt]]) -> str | None:
    """The sum a numerator reads: ``total``, ``float(total)``, ``sums[k]`` or ``v`` of ``for k, v in sums.items()``."""
    while isinstance(node, ast.Call) and (called(node) in ("item", "cpu", "detach", "float") and not node.args
                                          and isinstance(node.func, ast.Attribute)
                                          or called(node) == "float" and len(node.args) == 1):
        node = node.args[0] if node.args else node.func.value
    key = p.src.unparse(node)
    if key in sums:
        return key
    if isinstance(node, ast.Subscript) and p.src.unparse(node.value) + "[*]" in sums:
        return p.src.unparse(node.value) + "[*]"
    if isinstance(node, ast.Name):
        for loop in p.src.of(ast.comprehension, ast.For):
            holder = loop.iter.func.value if isinstance(loop.iter, ast.Call) and called(loop.iter) in (
                "items", "values") and isinstance(loop.iter.func, ast.Attribute) else None
            if holder is not None and node.id in {n.id for n in ast.walk(loop.target) if isinstance(n, ast.Name)} \
                    and p.src.unparse(holder) + "[*]" in sums:
                return p.src.unparse(holder) + "[*]"
    return None


def _divisions(p: Provenance, sums: dict[str, list[ast.stmt]]) -> Iterator[tuple[str, ast.expr, ast.AST]]:
    """``(sum key, divisor, node)`` for every ``a / b`` and ``a /= b`` whose ``a`` is a per-batch sum."""
    for node in p.src.of(ast.BinOp):
        if isinstance(node.op, ast.Div) and (key := _numerator_key(p, node.left, sums)):
            yield key, node.right, node
    for node in p.src.of(ast.AugAssign):
        if isinstance(node.op, ast.Div) and (key := _numerator_key(p, node.target, sums)):
            yield key, node.value, node


def _off_by_one(p: Provenance, divisor: ast.expr, node: ast.AST) -> str:
    """A note when the divisor is a bare ``enumerate`` index read after its loop: one less than the batches."""
    loop = p.loop_indices.get(p.src.unparse(divisor))
    start = loop.iter.args[1] if loop is not None and isinstance(loop.iter, ast.Call) and len(loop.iter.args) > 1 \
        else keyword(loop.iter, "start") if loop is not None and isinstance(loop.iter, ast.Call) else None
    if not isinstance(divisor, ast.Name) or loop is None or not isinstance(loop.iter, ast.Call) \
            or called(loop.iter) != "enumerate" or not (start is None or is_zero(start)) or p.step_of(node) is loop:
        return ""
    return f"; after the loop `{divisor.id}` is one less than the number of batches"


def _epoch_division(p: Provenance, found: list[tuple[ast.expr, ast.AST]], added: ast.stmt):
    """The division that makes the epoch's value: one outside the sum's own loop if there is one."""
    inside = p.step_of(added)
    outside = [(d, n) for d, n in found if inside is None or p.step_of(n) is not inside]
    return (outside or found)[0]


def _same_weight(p: Provenance, stmt: ast.stmt) -> ast.expr | None:
    """The setting a per-batch sum multiplies every batch by (``loss.item() * batch_size``), if any."""
    value = stmt.value if isinstance(stmt, (ast.AugAssign, ast.Assign)) else None
    for node in ast.walk(value) if value is not None else ():
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
            weight = next((side for side in (node.left, node.right) if not is_number(side) and _a_setting(p, side)),
                          None)
            if weight is not None:
                return weight
    return None


def _evidence(p: Provenance, node: ast.AST, added: ast.stmt, divisor: ast.expr, by_batches: bool) -> tuple[str, str]:
    """What the finding says about a division of a per-batch sum, and its consequence."""
    src, weight = p.src, _same_weight(p, added)
    made = f"`{src.quote(node)}` divides `{src.quote(added)}` (line {added.lineno}), a sum of batch means"
    if by_batches:
        return f"{made}, by a batch count{_off_by_one(p, divisor, node)}", MEAN_OF_MEANS
    if weight is not None:
        return f"{made} each weighed by the same `{src.quote(weight)}`, by a sample count", MEAN_OF_MEANS
    return f"{made}, by a sample count", OVER_SAMPLES


def _summed_per_batch(p: Provenance) -> list[Finding]:
    """Sums of unweighted batch losses divided by a batch count or by a sample count."""
    sums = _per_batch_sums(p)
    by_sum: dict[ast.stmt, list[tuple[ast.expr, ast.AST, bool]]] = {}
    for key, divisor, node in _divisions(p, sums):
        if p.periodic(node):
            continue  # a running value printed every N steps, not the epoch's
        if p.is_batch_count(divisor) or p.is_sample_count(divisor):
            added = _addition_divided(p, sums[key], node)
            by_sum.setdefault(added, []).append((divisor, node, p.is_batch_count(divisor)))
    findings = []
    for added, found in by_sum.items():
        by_batches = [(d, n) for d, n, batches in found if batches]
        divisor, node = _epoch_division(p, by_batches or [(d, n) for d, n, _ in found], added)
        evidence, consequence = _evidence(p, node, added, divisor, bool(by_batches))
        findings.append(p.src.finding("mean-of-batch-means", node, evidence, consequence))
    return findings


def _averaged_list(src: Source, node: ast.expr) -> ast.expr | None:
    """The list a mean is taken of: ``l`` in ``np.mean(l)``, ``torch.tensor(l).mean()``, ``sum(l) / len(l)``."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and isinstance(node.left, ast.Call) \
            and isinstance(node.right, ast.Call) and called(node.left) == "sum" and called(node.right) == "len" \
            and node.left.args and node.right.args \
            and src.unparse(node.left.args[0]) == src.unparse(node.right.args[0]):
        return node.left.args[0]
    if not isinstance(node, ast.Call) or called(node) not in _AVERAGES or keyword(node, "weights"):
        return None
    if node.args:
        averaged = node.args[0]
    elif isinstance(node.func, ast.Attribute):
        averaged = node.func.value
    else:
        return None
    while isinstance(averaged, ast.Call) and called(averaged) in _LIST_WRAPPERS and averaged.args:
        averaged = averaged.args[0]
    return averaged


def _averaged_per_batch(p: Provenance) -> list[Finding]:
    """Lists of unweighted batch losses (appended per batch, or the step outputs an epoch hook gets) averaged."""
    src, appended = p.src, {}
    for call in src.calls("append"):
        if isinstance(call.func, ast.Attribute) and len(call.args) == 1 and p.is_loss(call.args[0]) \
                and not _weighted(p, call.args[0]) and p.step_of(call) is not None and _unequal(p, call):
            appended.setdefault(src.unparse(call.func.value), call)
    findings = []
    for node in src.of(ast.Call, ast.BinOp):
        averaged = _averaged_list(src, node)
        if averaged is None:
            continue
        if isinstance(averaged, (ast.ListComp, ast.GeneratorExp)) and p.is_loss(averaged.elt) \
                and not _weighted(p, averaged.elt) and src.unparse(averaged.generators[0].iter) in p.containers:
            evidence = f"`{src.quote(node)}`: a mean over per-step losses"
            findings.append(src.finding("mean-of-batch-means", node, evidence, MEAN_OF_MEANS))
        elif src.unparse(averaged) in appended:
            added = appended.pop(src.unparse(averaged))
            evidence = f"`{src.quote(node)}` averages `{src.quote(added)}` (line {added.lineno}): one value per batch"
            findings.append(src.finding("mean-of-batch-means", node, evidence, MEAN_OF_MEANS))
    return findings


def _loss_given(p: Provenance, call: ast.Call) -> ast.expr | None:
    """The batch loss an ``update`` call is given, unweighted: its one positional argument or a keyword's value."""
    values = call.args[:1] if call.args else [k.value for k in call.keywords if k.arg]
    return next((v for v in values if p.is_loss(v) and not _weighted(p, v)), None)


def _foreign_meter(p: Provenance, receiver: ast.expr, call: ast.Call) -> bool:
    """A meter built from a class of another file (``AverageMeter()``, ``utils.MetricLogger()``), updated with
    one value and no weight: ``update(v)`` or ``update(loss=v)``."""
    made = p.origin(receiver)
    name = called(made) if isinstance(made, ast.Call) else None
    weightless = len(call.args) == 1 and not call.keywords or not call.args and all(
        k.arg and k.arg not in ("n", "weight", "count") for k in call.keywords)
    return bool(name and name[0].isupper() and name not in p.meters) and weightless


def _value_read(p: Provenance, receiver: str, update: ast.Call) -> ast.AST:
    """Where the meter's value is read once the per-batch updates are done (``losses.avg``), else the update."""
    step = p.step_of(update)
    scope = p.src.scope[update]
    reads = sorted((node for node in p.src.of(ast.Attribute) if node.attr in _MEANS and node.lineno > update.lineno
                    and p.src.scope[node] is scope and p.src.unparse(node.value) == receiver
                    and p.step_of(node) is not step),
                   key=lambda node: (node.lineno, node.col_offset))
    if not reads:
        return update
    return p.parent[reads[0]] if isinstance(p.parent.get(reads[0]), ast.Call) else reads[0]


def _how_it_counts(meter, call: ast.Call) -> str:
    """Why a meter's update weighs a batch as one: how the class adds, or the missing weight."""
    if meter is None:
        return "no weight `n` is given"
    if meter.forwards:
        return f"`{meter.name}.update` hands each value on without a weight"
    if meter.weighted and (len(call.args) > 1 or keyword(call, meter.count) is not None):
        return f"`{meter.name}.update` is given a weight `{meter.count}` of 1"
    if meter.weighted:
        return f"`{meter.name}.update` is given no `{meter.count}`, which defaults to 1"
    return f"`{meter.name}.update` adds each value and counts one"


def _meters_per_batch(p: Provenance, divided: set[ast.ClassDef]) -> list[Finding]:
    """Meters updated once per batch with a batch loss, weighing every batch as one."""
    findings, seen = [], set()
    for call in p.src.calls("update"):
        loss = _loss_given(p, call) if isinstance(call.func, ast.Attribute) else None
        if loss is None or p.step_of(call) is None or not _unequal(p, call):
            continue
        receiver = call.func.value
        meter = p.meter_of(receiver)
        if meter is not None and (meter.node in divided or not meter.counts_batches(call)):
            continue
        if meter is None and not _foreign_meter(p, receiver, call):
            continue
        key = p.src.unparse(receiver)
        if (key, p.src.scope[call]) in seen:
            continue
        seen.add((key, p.src.scope[call]))
        read = _value_read(p, key, call)
        evidence = (f"`{p.src.quote(read)}` reads a mean of batch means: `{p.src.quote(call)}` (line {call.lineno}) "
                    f"once per batch, {_how_it_counts(meter, call)}")
        findings.append(p.src.finding("mean-of-batch-means", read, evidence, MEAN_OF_MEANS))
    return findings


def check_mean_of_batch_means(src: Source) -> list[Finding]:
    """A loss summed or listed per batch, then divided by a batch count or averaged; a meter fed batch means."""
    p = provenance(src)
    summed = _summed_per_batch(p)
    divided = {node for f in summed for node in p.src.of(ast.ClassDef)
               if node.lineno <= (f.line or 0) <= node.end_lineno}
    return summed + _averaged_per_batch(p) + _meters_per_batch(p, divided)
