"""Static checks of training code: the habits that make saved epoch metrics wrong, read from the source.

``check_python(text, path)`` parses a script with :mod:`ast` and ``check_notebook(text, path)``
does the same for a notebook's code cells, joined in order (IPython magics, lines starting
with ``%`` or ``!``, become ``pass`` lines, so line numbers hold; a cell magic such as
``%%bash`` blanks its whole cell). **Nothing is executed.** Each file is parsed once and
walked once; every check then reads the nodes of the kinds it needs.

Every check is a **heuristic**: it recognises a habit by the names and shapes it is usually
written with (a name containing ``loss``, a loop over something called ``*loader*``, ``if
rank == 0``). It can miss the habit spelled some other way, and it can flag code that is
right for a reason a static reader cannot see (a data set whose size is a multiple of the
batch size, a helper in another file that reduces across ranks). Each finding quotes the
code it is about, so a reader can judge. What each check looks for, and what it ignores:

``mean-of-batch-means``
    A batch loss added as it is (``total += loss.item()``, ``running_loss += loss``,
    ``self.loss_sum += loss``, ``batch_losses.append(loss.item())``: an expression that names
    a ``*loss*`` and multiplies by nothing), then divided by a batch count: ``len(<loader>)``,
    a counter the same function increments by 1 (``batches += 1``), an ``enumerate`` index of
    a loader loop (``i + 1``) or a name that counts ``*batches*``/``*steps*``; or a list of such
    losses averaged (``np.mean``, ``statistics.mean``, ``torch.stack(l).mean()``,
    ``sum(l) / len(l)``, or Lightning 1.x's ``torch.stack([o["loss"] for o in outputs]).mean()``
    over the step outputs an epoch hook receives).
    Ignored: a sum weighted by batch size (a ``*``, ``.sum()`` or ``reduction="sum"`` in the
    added value), a division by a sample count (``len(loader.dataset)``), and every sum in a
    file whose ``DataLoader`` calls all have ``drop_last=True`` (every batch is full). Not
    seen: ``AverageMeter.update(loss.item())`` without ``n=`` (the count lives in the call).
``half-precision-accumulator``
    A running sum (a name that is later ``+=``-ed or ``add_``-ed) created in half precision
    (``dtype=torch.float16``/``bfloat16``/``torch.half``, ``.half()``, ``.bfloat16()``), or a
    torchmetrics-style ``add_state`` with such a default; a sum made like the outputs
    (``torch.zeros_like(outputs[0, 0])``, ``logits.new_zeros(())``, ``dtype=logits.dtype``) in
    a file that uses autocast (``autocast``, ``GradScaler``, Lightning ``precision="16-mixed"``);
    the loss of a half model (``model.half()`` in the same function or at module level,
    ``precision="16-true"``) added without ``.item()``, ``float()`` or a cast to a Python
    number (``0.0``), which then becomes a half tensor.
    Ignored: autocast alone (its losses are float32) and sums created as float32/float64 tensors.
``lossy-serialiser``
    ``x if math.isfinite(x) else 0.0`` and its variants (``isnan``/``isinf`` in the test and
    any number in a branch; ``isinstance`` in the test and 0 in a branch); any ``nan_to_num``;
    ``json.dump(s)(..., default=lambda o: 0...)``; a function that tests ``isfinite``/``isnan``/
    ``isinf`` or ``isinstance(x, float)`` (``int``, ``Number``) and returns 0, or returns 0
    from the ``except`` of a ``try: float(x)``. Ignored: sanitisers that write ``None`` (lossy
    too, but they write no number), a check that raises, and ``allow_nan=False`` writers.
``aliased-state``
    A tensor or list zeroed in place (``.zero_()``, ``.fill_(0)``, ``.mul_(0)``, ``.clear()``,
    ``x[:] = []``, ``del x[:]``) somewhere in the file, and the same attribute or name either
    appended as it is to a history (``history["loss"].append(meter.avg)``, also inside a dict
    or tuple literal) or, for a tensor zeroed in place, handed out by a method (``return
    self.mean``, ``{"loss": self.mean}``). Ignored: appending ``float(x)``, ``x.item()``,
    ``x.clone()`` or any other call's result, returning a list or dict that is cleared (a
    cache, usually), and classes defined in other files (the zeroing must be visible).
``read-after-reset``
    In one block (a function, loop or branch body), ``X.reset()`` followed by a read of ``X``
    (``X.get_metrics()``, ``X.compute()``, ``X.avg``: an attribute named like a value, such as
    ``get_*``, ``compute*``, ``avg``, ``sum``, ``*loss*``, ``*acc*``) before anything calls
    ``X.update(...)`` or ``X(...)`` again. Ignored: a read in another method or a later loop
    iteration, assignments to ``X``'s attributes, and ``self.reset()`` (a class setting itself up).
``unreduced-across-ranks``
    A file that uses ``DistributedSampler``, ``DistributedDataParallel``/``DDP`` or
    ``init_process_group``, calls no ``all_reduce``/``all_gather``/``reduce``/``gather`` at
    all, and logs, prints, appends or saves something named like a metric (``loss``, ``acc``,
    ``history``...) under ``if rank == 0``, ``if dist.get_rank() == 0`` or ``is_main_process``;
    and Lightning: ``self.log``/``self.log_dict`` with ``on_epoch=True`` (explicit, or the
    default in ``validation_step``, ``test_step`` and epoch hooks) and no ``sync_dist=True``, in
    a file whose ``Trainer`` has a ``ddp`` strategy (one finding per file, counting the
    calls). Ignored: logging a bare ``self.<metric>`` object (torchmetrics objects sync
    themselves) and checkpoint saves that name no metric.
``padded-duplicates-counted``
    A ``DistributedSampler`` without ``drop_last=True`` in a file that adds sample counts
    (``total += labels.size(0)``, ``len(y)``, ``.shape[0]``, ``n``) and reduces across ranks,
    with no mask anywhere (no name or string containing ``mask`` or ``counted``); and
    Lightning's ``self.log(..., sync_dist=True)`` under a ``ddp`` Trainer or such a sampler.
    Ignored: a sampler with ``drop_last=True`` (no padding) and anything that masks.
``host-sync-per-step`` (info: a cost, not a wrong value)
    ``.item()`` or ``float(<tensor-looking expression>)`` in a per-batch body: a ``for`` loop
    over something named ``*loader*``/``dl``/``*batches*`` (also through ``enumerate`` or
    ``tqdm``), or a Lightning ``training_step``/``validation_step``/``test_step``; only in a
    file that shows a GPU (``cuda`` anywhere in its names or strings, ``accelerator="gpu"``).
    One finding per loop or step, at its first sync.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import replace

from .findings import Finding, UnusableInput

__all__ = ["CHECKS", "check_notebook", "check_python"]

QUOTE_CHARS = 100  # evidence quotes are trimmed to this many characters

_LOADERISH = re.compile(r"loader|(?<![a-z])dl\b|batches", re.IGNORECASE)
_LOSSISH = re.compile(r"loss|criterion", re.IGNORECASE)
_WEIGHTED = re.compile(r"\*|\.sum\(|reduction\s*=\s*['\"]sum")
_BATCH_COUNT_NAME = re.compile(r"batches|steps|iters\b", re.IGNORECASE)
_HALF = re.compile(r"float16|bfloat16|\bhalf\b")
_CAST = re.compile(r"\.item\(|float\(|\.double\(|\.float\(|\.to\(|\.tolist\(")
_OUTPUTISH = re.compile(r"out|logit|pred|y_?hat|score", re.IGNORECASE)
_MODELISH = re.compile(r"model|net|module|^self$", re.IGNORECASE)
_RANK_ZERO = re.compile(r"rank\b[^=]*==\s*0|\b0\s*==[^=]*rank|main_process|is_master|rank_zero|local_rank in")
_METRICISH = re.compile(r"loss|acc|metric|history|top1|top5|f1|score|avg", re.IGNORECASE)
_SIZEISH = re.compile(r"\.size\(0\)|\.shape\[0\]|len\(|numel\(\)|batch_size|^n$|^bs$")
_STEP_OUTPUTS = re.compile(r"outputs|results", re.IGNORECASE)  # what Lightning's *_epoch_end hooks receive
_MASKISH = re.compile(r"mask|counted", re.IGNORECASE)
_TENSORISH = re.compile(r"loss|acc|correct|out|logit|pred|\.sum\(\)|\.mean\(\)", re.IGNORECASE)

_NONFINITE_TESTS = {"isfinite", "isnan", "isinf"}
_ZEROING = {"zero_", "clear"}
_REDUCTIONS = {"all_reduce", "all_gather", "all_gather_object", "all_gather_into_tensor", "reduce", "gather",
               "gather_object", "reduce_scatter", "gather_for_metrics"}
_DISTRIBUTED = {"DistributedSampler", "DistributedDataParallel", "DDP", "init_process_group"}
_LOG_CALLS = {"print", "log", "info", "add_scalar", "add_scalars", "append", "dump", "save", "write", "log_metrics",
              "log_dict", "extend"}
_METRIC_READS = re.compile(r"get_\w+|compute\w*|results?|summary|avg|average|mean|val|value|sum|count|total|correct"
                           r"|\w*(loss|acc|metric|top\d)\w*", re.IGNORECASE)  # what a tracker's value is read by
_STEP_METHODS = {"training_step", "validation_step", "test_step"}
_AVERAGES = {"mean", "fmean", "nanmean", "average"}
_LIST_WRAPPERS = {"tensor", "stack", "array", "asarray", "Tensor", "FloatTensor", "list"}
_CELL_MAGICS_IN_PYTHON = {"time", "timeit", "capture", "prun", "debug"}

MEAN_OF_MEANS = ("the epoch loss is a mean of batch means: a last, partial batch (say 8 samples after batches "
                 "of 16) weighs as much as a full one, so the value is off whenever batch sizes differ")
HALF_SUM = ("the running sum is half precision: float16 (11 significant bits, largest 65,504) stops "
            "growing once each batch loss is below half its spacing, then overflows to inf; bfloat16 (8 bits) "
            "stalls far earlier. The epoch loss reads too low, or inf")
LOSSY = ("a non-finite (or non-float) epoch value is written as a number: a NaN or inf loss, or a tensor "
         "whose value is fine, is saved as 0.0 (or 1.8e308) and nothing records what it was")
ALIASED = ("the history holds the object itself, not its value: when it is zeroed in place after the "
           "console printed it, every saved epoch that shares it becomes 0.0 (or an empty list)")
AFTER_RESET = ("the value read is the emptied tracker's: 0.0 (or NaN, or a division by zero) for every epoch, "
               "whatever the console printed before the reset")
UNREDUCED = ("the epoch metric saved is rank 0's own shard (1/world_size of the data), not the whole "
             "epoch's: it differs from the true epoch value, and every rank holds a different one")
PADDED = ("DistributedSampler pads every rank's shard with repeated samples to equal length; summed "
          "across ranks they are counted twice, so the total exceeds the data set and the mean is "
          "weighted towards the repeats")
HOST_SYNC = ("costs time, not a wrong value: each .item()/float() waits for the GPU to finish the step "
             "(a host-device sync per batch), which stalls the queue of kernels; the value itself is right")


# -- the parsed file --------------------------------------------------------------------------------


class _Source:
    """One parsed file: its nodes grouped by type and the function each sits in (one walk), and quoting."""

    def __init__(self, text: str, path: str, tree: ast.Module):
        self.text, self.path, self.tree = text, path, tree
        self.nodes: dict[type, list] = {}
        self.scope: dict[ast.AST, ast.AST] = {}
        self._texts: dict[ast.AST, str] = {}
        stack = [(tree, tree)]
        while stack:
            node, scope = stack.pop()
            self.nodes.setdefault(type(node), []).append(node)
            self.scope[node] = scope
            inner = node if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) else scope
            stack.extend((child, inner) for child in ast.iter_child_nodes(node))
        self.words = set(self._identifiers())
        self.additions = list(self._additions())

    def of(self, *kinds) -> list:
        return [node for kind in kinds for node in self.nodes.get(kind, ())]

    def calls(self, *names: str) -> list[ast.Call]:
        return [call for call in self.of(ast.Call) if _called(call) in names]

    def unparse(self, node: ast.AST) -> str:
        if node not in self._texts:
            self._texts[node] = ast.unparse(node)
        return self._texts[node]

    def quote(self, node: ast.AST) -> str:
        """The node's source, on one line, trimmed to ``QUOTE_CHARS``."""
        text = " ".join((ast.get_source_segment(self.text, node) or self.unparse(node)).split())
        return text if len(text) <= QUOTE_CHARS else text[:QUOTE_CHARS - 3] + "..."

    def finding(self, code: str, node: ast.AST, evidence: str, consequence: str) -> Finding:
        return Finding(code, self.path, getattr(node, "lineno", None), evidence, consequence)

    def _identifiers(self) -> Iterator[str]:
        yield from (n.id for n in self.of(ast.Name))
        yield from (n.attr for n in self.of(ast.Attribute))
        yield from (k.arg for k in self.of(ast.keyword) if k.arg)
        yield from (n.value for n in self.of(ast.Constant) if isinstance(n.value, str) and len(n.value) < 80)

    def _additions(self) -> Iterator[tuple[str, ast.expr, ast.stmt]]:
        """``(key, added value, statement)`` for ``x += v``, ``x = x + v`` and ``x.add_(v)`` (no ``alpha=``)."""
        for node in self.of(ast.AugAssign):
            if isinstance(node.op, ast.Add):
                yield self.unparse(node.target), node.value, node
        for node in self.of(ast.Assign):
            value = node.value
            if len(node.targets) == 1 and isinstance(value, ast.BinOp) and isinstance(value.op, ast.Add) \
                    and self.unparse(value.left) == self.unparse(node.targets[0]):
                yield self.unparse(node.targets[0]), value.right, node
        for call in self.calls("add_"):
            if isinstance(call.func, ast.Attribute) and call.args and not _keyword(call, "alpha"):
                yield self.unparse(call.func.value), call.args[0], call

    def mentions(self, pattern: str) -> bool:
        return any(pattern in word.lower() for word in self.words)


def _called(call: ast.Call) -> str | None:
    func = call.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_true(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def _is_number(node: ast.AST | None) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        node = node.operand
    return isinstance(node, ast.Constant) and type(node.value) in (int, float)


def _is_zero(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) in (int, float) and node.value == 0


def _and_more(count: int, one: str, many: str) -> str:
    return "" if count < 1 else f" (and {count} more {one if count == 1 else many})"


def _key(src: _Source, node: ast.expr) -> str:
    """The thing a value is read from: ``x`` for ``x``, ``x.item()``, ``float(x)``, ``x.cpu()``, ``(x)``."""
    while isinstance(node, ast.Call):
        if isinstance(node.func, ast.Attribute) and node.func.attr in ("item", "cpu", "detach") and not node.args:
            node = node.func.value
        elif isinstance(node.func, ast.Name) and node.func.id == "float" and len(node.args) == 1:
            node = node.args[0]
        else:
            break
    return src.unparse(node)


def _function_name(src: _Source, node: ast.AST) -> str:
    scope = src.scope.get(node)
    return getattr(scope, "name", "")


# -- mean-of-batch-means ----------------------------------------------------------------------------


def _unweighted_loss(src: _Source, value: ast.expr) -> bool:
    """A batch loss added as it is: names a loss, multiplies by nothing, sums nothing."""
    text = src.unparse(value)
    return bool(_LOSSISH.search(text)) and not _WEIGHTED.search(text)


def _loader_indices(src: _Source) -> set[str]:
    """The ``i`` of every ``for i, batch in enumerate(<loader>)``."""
    indices = set()
    for loop in src.of(ast.For, ast.AsyncFor):
        iterated = loop.iter
        if isinstance(iterated, ast.Call) and _called(iterated) == "enumerate" and iterated.args \
                and _LOADERISH.search(src.unparse(iterated.args[0])) \
                and isinstance(loop.target, ast.Tuple) and loop.target.elts \
                and isinstance(loop.target.elts[0], ast.Name):
            indices.add(loop.target.elts[0].id)
    return indices


def _counts_batches(src: _Source, divisor: ast.expr, counters: set[str], indices: set[str]) -> bool:
    """Whether ``divisor`` is a number of batches: ``len(loader)``, a ``+= 1`` counter, ``i + 1``, ``num_batches``."""
    if isinstance(divisor, ast.Call) and _called(divisor) == "len" and divisor.args:
        inner = src.unparse(divisor.args[0])
        return bool(_LOADERISH.search(inner)) and "dataset" not in inner
    if isinstance(divisor, ast.BinOp) and isinstance(divisor.op, ast.Add):
        return src.unparse(divisor.left) in indices and _is_number(divisor.right)
    key = _key(src, divisor)
    return key in counters or bool(_BATCH_COUNT_NAME.search(key))


def _divisions(src: _Source) -> Iterator[tuple[str, ast.expr, ast.AST]]:
    """``(numerator key, divisor, node)`` for every ``a / b`` and ``a /= b``."""
    for node in src.of(ast.BinOp):
        if isinstance(node.op, ast.Div):
            yield _key(src, node.left), node.right, node
    for node in src.of(ast.AugAssign):
        if isinstance(node.op, ast.Div):
            yield src.unparse(node.target), node.value, node


def _all_batches_full(src: _Source) -> bool:
    loaders = src.calls("DataLoader")
    return bool(loaders) and all(_is_true(_keyword(call, "drop_last")) for call in loaders)


def _summed_per_batch(src: _Source) -> list[Finding]:
    """Sums of unweighted batch losses divided by a batch count."""
    sums: dict[str, list[ast.stmt]] = {}
    counters_by_scope: dict[ast.AST, set[str]] = {}
    for key, value, stmt in src.additions:
        if isinstance(value, ast.Constant) and type(value.value) is int and value.value == 1:
            counters_by_scope.setdefault(src.scope[stmt], set()).add(key)
        elif _unweighted_loss(src, value):
            sums.setdefault(key, []).append(stmt)
    indices, findings = _loader_indices(src), []
    for key, divisor, node in _divisions(src):
        if key not in sums:
            continue
        counters = {c for stmt in sums[key] for c in counters_by_scope.get(src.scope[stmt], ())}
        if _counts_batches(src, divisor, counters, indices):
            added = sums.pop(key)[0]
            evidence = f"`{src.quote(added)}` then divided by a batch count: `{src.quote(node)}` (line {node.lineno})"
            findings.append(src.finding("mean-of-batch-means", added, evidence, MEAN_OF_MEANS))
    return findings


def _averaged_list(src: _Source, node: ast.expr) -> ast.expr | None:
    """The list a mean is taken of: ``l`` in ``np.mean(l)``, ``torch.tensor(l).mean()``, ``sum(l) / len(l)``."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and isinstance(node.left, ast.Call) \
            and isinstance(node.right, ast.Call) and _called(node.left) == "sum" and _called(node.right) == "len" \
            and node.left.args and node.right.args \
            and src.unparse(node.left.args[0]) == src.unparse(node.right.args[0]):
        return node.left.args[0]
    if not isinstance(node, ast.Call) or _called(node) not in _AVERAGES or _keyword(node, "weights"):
        return None
    if node.args:
        averaged = node.args[0]
    elif isinstance(node.func, ast.Attribute):
        averaged = node.func.value
    else:
        return None
    while isinstance(averaged, ast.Call) and _called(averaged) in _LIST_WRAPPERS and averaged.args:
        averaged = averaged.args[0]
    return averaged


def _averaged_per_batch(src: _Source) -> list[Finding]:
    """Lists of unweighted batch losses (appended, or a comprehension over step outputs) averaged."""
    appended = {}
    for call in src.calls("append"):
        if isinstance(call.func, ast.Attribute) and len(call.args) == 1 and _unweighted_loss(src, call.args[0]):
            appended.setdefault(src.unparse(call.func.value), call)
    findings = []
    for node in src.of(ast.Call, ast.BinOp):
        averaged = _averaged_list(src, node)
        if averaged is None:
            continue
        if isinstance(averaged, (ast.ListComp, ast.GeneratorExp)) and _unweighted_loss(src, averaged.elt) \
                and _STEP_OUTPUTS.search(src.unparse(averaged.generators[0].iter)):
            evidence = f"`{src.quote(node)}`: a mean over per-step losses"
            findings.append(src.finding("mean-of-batch-means", node, evidence, MEAN_OF_MEANS))
        elif src.unparse(averaged) in appended:
            added = appended.pop(src.unparse(averaged))
            evidence = f"`{src.quote(added)}` then averaged per batch: `{src.quote(node)}` (line {node.lineno})"
            findings.append(src.finding("mean-of-batch-means", added, evidence, MEAN_OF_MEANS))
    return findings


def check_mean_of_batch_means(src: _Source) -> list[Finding]:
    """A loss summed or listed per batch, then divided by a batch count or averaged."""
    if _all_batches_full(src):
        return []
    return _summed_per_batch(src) + _averaged_per_batch(src)


# -- half-precision-accumulator ---------------------------------------------------------------------


def _creations(src: _Source) -> dict[str, list[ast.stmt]]:
    """Every plain assignment, by the text of its target."""
    made: dict[str, list[ast.stmt]] = {}
    for node in src.of(ast.Assign, ast.AnnAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if node.value is not None and len(targets) == 1:
            made.setdefault(src.unparse(targets[0]), []).append(node)
    return made


def _mixed_precision(src: _Source) -> bool:
    if src.mentions("autocast") or src.mentions("gradscaler"):
        return True
    precision = [_keyword(call, "precision") for call in src.calls("Trainer")]
    return any(p is not None and re.match(r"(bf)?16", str(getattr(p, "value", ""))) for p in precision)


def _like_outputs(src: _Source, value: ast.expr) -> bool:
    """A buffer made with the outputs' dtype: ``zeros_like(outputs[0, 0])``, ``logits.new_zeros``, ``dtype=o.dtype``."""
    if not isinstance(value, ast.Call):
        return False
    name, func = _called(value), value.func
    if name in ("zeros_like", "empty_like", "full_like", "ones_like") and value.args:
        source = src.unparse(value.args[0])
    elif name in ("new_zeros", "new_full", "new_tensor", "new_empty") and isinstance(func, ast.Attribute):
        source = src.unparse(func.value)
    elif _keyword(value, "dtype") is not None and src.unparse(_keyword(value, "dtype")).endswith(".dtype"):
        source = src.unparse(_keyword(value, "dtype"))
    else:
        return False
    return bool(_OUTPUTISH.search(source)) and not _LOSSISH.search(source)


def _half_model_scopes(src: _Source) -> set[ast.AST]:
    """Where a model runs in half precision: the functions that call ``model.half()`` or
    ``net.to(torch.bfloat16)``; the whole file (the module) for a module-level call or a Lightning
    ``Trainer(precision="16-true")``."""
    scopes = set()
    for call in src.calls("half", "bfloat16", "to"):
        if not isinstance(call.func, ast.Attribute) or not _MODELISH.search(src.unparse(call.func.value)):
            continue
        if _called(call) != "to" or _HALF.search(src.unparse(call)):
            scopes.add(src.scope[call])
    precision = [_keyword(call, "precision") for call in src.calls("Trainer")]
    if any(p is not None and str(getattr(p, "value", "")).endswith("-true") for p in precision):
        scopes.add(src.tree)
    return scopes


def _half_loss_added(src: _Source, made: dict[str, list[ast.stmt]]) -> list[Finding]:
    """A half model's loss added without a cast to a Python number or to a float32/float64 tensor sum."""
    scopes, findings = _half_model_scopes(src), []
    if not scopes:
        return findings
    for key, value, stmt in src.additions:
        text = src.unparse(value)
        if not _LOSSISH.search(text) or _CAST.search(text) or not {src.scope[stmt], src.tree} & scopes:
            continue
        if any(isinstance(assign.value, ast.Call) for assign in made.get(key, ())):
            continue  # a tensor sum keeps its own dtype when added to in place
        evidence = f"`{src.quote(stmt)}`: the loss of a half-precision model, added as a tensor"
        findings.append(src.finding("half-precision-accumulator", stmt, evidence, HALF_SUM))
    return findings


def check_half_precision_accumulator(src: _Source) -> list[Finding]:
    """A running sum created in float16/bfloat16, made like autocast outputs, or fed a half model's loss."""
    made, findings = _creations(src), []
    mixed = _mixed_precision(src)
    for key in dict.fromkeys(key for key, _, _ in src.additions):
        for assign in made.get(key, ()):
            value = assign.value
            if isinstance(value, ast.Call) and _HALF.search(src.unparse(value)):
                evidence = f"`{src.quote(assign)}`: a running sum created in half precision"
            elif mixed and _like_outputs(src, value):
                evidence = f"`{src.quote(assign)}`: a running sum with the outputs' dtype, half under autocast"
            else:
                continue
            findings.append(src.finding("half-precision-accumulator", assign, evidence, HALF_SUM))
    for call in src.calls("add_state"):
        default = call.args[1] if len(call.args) > 1 else _keyword(call, "default")
        if default is not None and _HALF.search(src.unparse(default)):
            evidence = f"`{src.quote(call)}`: a state summed in half precision"
            findings.append(src.finding("half-precision-accumulator", call, evidence, HALF_SUM))
    return findings + _half_loss_added(src, made)


# -- lossy-serialiser -------------------------------------------------------------------------------


def _tests_finiteness(test: ast.expr) -> bool:
    return any(isinstance(n, ast.Call) and _called(n) in _NONFINITE_TESTS for n in ast.walk(test))


def _tests_number_type(src: _Source, test: ast.expr) -> bool:
    """``isinstance(x, float)``, ``isinstance(x, (int, float))``, ``isinstance(x, numbers.Number)``."""
    return any(isinstance(n, ast.Call) and _called(n) == "isinstance" and len(n.args) == 2
               and re.search(r"\b(float|int|Number|Real)\b", src.unparse(n.args[1])) for n in ast.walk(test))


def _tests_a_type(test: ast.expr) -> bool:
    return any(isinstance(n, ast.Call) and _called(n) == "isinstance" for n in ast.walk(test))


def _replaces_with_number(src: _Source, node: ast.IfExp) -> bool:
    """``x if isfinite(x) else 0.0`` (any number in a branch), ``x if isinstance(x, float) else 0.0`` (a zero)."""
    if _tests_finiteness(node.test):
        return _is_number(node.body) or _is_number(node.orelse)
    return _tests_a_type(node.test) and (_is_zero(node.body) or _is_zero(node.orelse))


def _converting_handlers(src: _Source, nodes: list[ast.AST]) -> list[ast.AST]:
    """Everything inside the ``except`` blocks of ``try: float(x)``."""
    found = []
    for node in nodes:
        if isinstance(node, ast.Try) and any(isinstance(c, ast.Call) and _called(c) == "float"
                                             for stmt in node.body for c in ast.walk(stmt)):
            found += [inner for handler in node.handlers for inner in ast.walk(handler)]
    return found


def _guarded_zero(src: _Source, block: list[ast.stmt]) -> ast.Return | None:
    """In a block: ``if <type or finiteness test>:`` that returns 0 in a branch, or returns the value
    and is followed by ``return 0``."""
    for index, stmt in enumerate(block):
        if not (isinstance(stmt, ast.If) and (_tests_finiteness(stmt.test) or _tests_number_type(src, stmt.test))):
            continue
        zero = next((n for n in ast.walk(stmt) if isinstance(n, ast.Return) and _is_zero(n.value)), None)
        after = block[index + 1] if index + 1 < len(block) else None
        if zero is None and isinstance(stmt.body[-1], ast.Return) and isinstance(after, ast.Return) \
                and _is_zero(after.value):
            zero = after
        if zero is not None:
            return zero
    return None


def _zero_returning_sanitisers(src: _Source) -> list[Finding]:
    """Functions that test a value's number type or finiteness and return 0, or return 0 when ``float(x)`` fails."""
    findings = []
    for func in src.of(ast.FunctionDef):
        inner = list(ast.walk(func))
        blocks = [getattr(n, field) for n in inner for field in ("body", "orelse")
                  if isinstance(getattr(n, field, None), list)]
        zero = next((z for block in blocks if (z := _guarded_zero(src, block)) is not None), None)
        if zero is None:
            zero = next((n for n in _converting_handlers(src, inner)
                         if isinstance(n, ast.Return) and _is_zero(n.value)), None)
        if zero is not None:
            evidence = f"`{src.quote(zero)}` in `{func.name}`: a value it cannot write becomes 0"
            findings.append(src.finding("lossy-serialiser", zero, evidence, LOSSY))
    return findings


def _numbers_for_errors(src: _Source, call: ast.Call) -> bool:
    """``json.dump(s)(..., default=lambda o: 0)``: what JSON cannot write becomes a number."""
    default = _keyword(call, "default")
    if not isinstance(default, ast.Lambda):
        return False
    body = default.body
    return _is_number(body) or isinstance(body, ast.IfExp) and (_is_number(body.body) or _is_number(body.orelse))


def check_lossy_serialiser(src: _Source) -> list[Finding]:
    """A writer that turns non-finite or non-float values into numbers."""
    findings = []
    for node in src.of(ast.IfExp):
        if _replaces_with_number(src, node):
            evidence = f"`{src.quote(node)}`: a value that fails the test is written as a number"
            findings.append(src.finding("lossy-serialiser", node, evidence, LOSSY))
    for call in src.calls("nan_to_num"):
        findings.append(src.finding("lossy-serialiser", call, f"`{src.quote(call)}`: NaN becomes 0.0, "
                                    "inf the largest float", LOSSY))
    for call in src.calls("dump", "dumps"):
        if _numbers_for_errors(src, call):
            evidence = f"`{src.quote(call)}`: what JSON cannot write becomes a number"
            findings.append(src.finding("lossy-serialiser", call, evidence, LOSSY))
    return findings + _zero_returning_sanitisers(src)


# -- aliased-state ----------------------------------------------------------------------------------


def _zeroed_in_place(src: _Source) -> dict[str, ast.AST]:
    """What is zeroed or cleared in place, by key (``self.mean``) and by attribute name (``.mean``)."""
    zeroed: dict[str, ast.AST] = {}

    def add(target: ast.expr, node: ast.AST) -> None:
        zeroed.setdefault(src.unparse(target), node)
        if isinstance(target, ast.Attribute):
            zeroed.setdefault("." + target.attr, node)

    for call in src.of(ast.Call):
        func = call.func
        if not isinstance(func, ast.Attribute):
            continue
        if func.attr in _ZEROING and not call.args or func.attr in ("fill_", "mul_") and call.args \
                and _is_zero(call.args[0]):
            add(func.value, call)
    for node in src.of(ast.Assign, ast.Delete):
        for target in node.targets:
            if isinstance(target, ast.Subscript) and isinstance(target.slice, ast.Slice) \
                    and target.slice.lower is None and target.slice.upper is None:
                add(target.value, node)
    return zeroed


def _aliases(src: _Source, value: ast.expr, zeroed: dict[str, ast.AST]) -> ast.expr | None:
    """The zeroed object ``value`` is, or holds in a dict, list or tuple literal, as it is (not converted)."""
    parts = value.values if isinstance(value, ast.Dict) else value.elts if isinstance(value, (ast.List, ast.Tuple)) \
        else [value]
    for part in parts:
        if isinstance(part, ast.Name) and part.id in zeroed:
            return part
        if isinstance(part, ast.Attribute) and ("." + part.attr in zeroed or src.unparse(part) in zeroed):
            return part
    return None


def check_aliased_state(src: _Source) -> list[Finding]:
    """A tracker's tensor or list, zeroed in place somewhere, appended to a history or handed out as it is."""
    zeroed = _zeroed_in_place(src)
    if not zeroed:
        return []
    findings = []
    for call in src.calls("append"):
        held = _aliases(src, call.args[0], zeroed) if len(call.args) == 1 else None
        if held is not None:
            where = zeroed.get(src.unparse(held)) or zeroed.get("." + getattr(held, "attr", ""))
            evidence = f"`{src.quote(call)}` keeps `{src.unparse(held)}` itself; `{src.quote(where)}` " \
                       f"(line {where.lineno}) zeroes it in place"
            findings.append(src.finding("aliased-state", call, evidence, ALIASED))
    for node in src.of(ast.Return):
        held = _aliases(src, node.value, zeroed) if node.value is not None else None
        where = zeroed.get(src.unparse(held)) if held is not None and src.unparse(held).startswith("self.") else None
        if isinstance(where, ast.Call) and _called(where) in ("zero_", "fill_", "mul_"):  # a tensor, not a cache
            evidence = f"`{src.quote(node)}` hands out `{src.unparse(held)}` itself; `{src.quote(where)}` " \
                       f"(line {where.lineno}) zeroes it in place"
            findings.append(src.finding("aliased-state", node, evidence, ALIASED))
    return findings


# -- read-after-reset -------------------------------------------------------------------------------


def _reset_target(src: _Source, stmt: ast.stmt) -> str | None:
    call = stmt.value if isinstance(stmt, ast.Expr) else None
    if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) \
            and call.func.attr in ("reset", "reset_states") and not call.args:
        key = src.unparse(call.func.value)
        return None if key == "self" else key  # a class resetting itself, as __init__ often does
    return None


def _uses(src: _Source, stmt: ast.stmt, key: str) -> str | None:
    """``"update"`` if ``stmt`` feeds ``key`` a batch, ``"read"`` if it reads a value of it, else None."""
    read = None
    for node in ast.walk(stmt):
        if isinstance(node, ast.Call) and (src.unparse(node.func) == key or isinstance(node.func, ast.Attribute)
                                           and node.func.attr in ("update", "forward")
                                           and src.unparse(node.func.value) == key):
            return "update"
        if read is None and isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load) \
                and _METRIC_READS.fullmatch(node.attr) and src.unparse(node.value) == key:
            read = "read"
    return read


def _reads_after_reset(src: _Source, body: list[ast.stmt]) -> list[Finding]:
    pending: dict[str, ast.stmt] = {}
    findings = []
    for stmt in body:
        for key, reset in list(pending.items()):
            use = _uses(src, stmt, key)
            if use == "read":
                evidence = f"`{src.quote(stmt)}` reads `{key}` after `{src.quote(reset)}` (line {reset.lineno})"
                findings.append(src.finding("read-after-reset", stmt, evidence, AFTER_RESET))
            if use:
                del pending[key]
        key = _reset_target(src, stmt)
        if key:
            pending[key] = stmt
    return findings


def check_read_after_reset(src: _Source) -> list[Finding]:
    """``X.reset()`` then a read of ``X`` in the same block, before ``X`` is updated again."""
    findings = []
    for node in src.of(ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.For, ast.AsyncFor, ast.While, ast.If,
                       ast.With, ast.AsyncWith, ast.Try, ast.ExceptHandler):
        for field in ("body", "orelse", "finalbody"):
            body = getattr(node, field, None)
            if body:
                findings += _reads_after_reset(src, body)
    return findings


# -- ranks: unreduced-across-ranks and padded-duplicates-counted ------------------------------------


def _reduces(src: _Source) -> list[ast.Call]:
    return src.calls(*_REDUCTIONS)


def _ddp_trainer(src: _Source) -> bool:
    """A Lightning ``Trainer`` with a ``ddp`` strategy (a ``"ddp..."`` string or ``DDPStrategy``)."""
    if src.calls("DDPStrategy"):
        return True
    strategies = [_keyword(call, "strategy") for call in src.calls("Trainer")]
    return any(isinstance(s, ast.Constant) and str(s.value).startswith("ddp") for s in strategies)


def _epoch_logs(src: _Source) -> Iterator[tuple[ast.Call, ast.expr | None]]:
    """Lightning ``self.log``/``self.log_dict`` calls that log at epoch level, with their ``sync_dist``."""
    for call in src.calls("log", "log_dict"):
        func = call.func
        if not (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "self"):
            continue
        method = _function_name(src, call)
        on_epoch = _keyword(call, "on_epoch")
        at_epoch = _is_true(on_epoch) or on_epoch is None and (method in ("validation_step", "test_step")
                                                               or "epoch" in method)
        value = call.args[-1] if len(call.args) > (0 if func.attr == "log_dict" else 1) else None
        value = _keyword(call, "value") or _keyword(call, "dictionary") or value
        if at_epoch and not (isinstance(value, ast.Attribute) and src.unparse(value).startswith("self.")):
            yield call, _keyword(call, "sync_dist")


def _rank_zero_logs(src: _Source) -> Iterator[tuple[ast.If, ast.Call]]:
    """``if rank == 0:`` blocks and the first call in each that logs or saves a metric."""
    for branch in src.of(ast.If):
        if not _RANK_ZERO.search(src.unparse(branch.test)):
            continue
        for stmt in branch.body:
            call = next((n for n in ast.walk(stmt) if isinstance(n, ast.Call) and _called(n) in _LOG_CALLS
                         and _METRICISH.search(src.unparse(n))), None)
            if call is not None:
                yield branch, call
                break


def check_unreduced_across_ranks(src: _Source) -> list[Finding]:
    """Metrics logged from rank 0 of a multi-rank run that never reduces, or Lightning ddp without sync_dist."""
    if _reduces(src):
        return []
    findings = []
    if src.words & _DISTRIBUTED:
        for branch, call in _rank_zero_logs(src):
            evidence = f"`{src.quote(call)}` under `if {src.quote(branch.test)}`; nothing in the file reduces " \
                       "across ranks (no all_reduce, all_gather, reduce or gather)"
            findings.append(src.finding("unreduced-across-ranks", call, evidence, UNREDUCED))
    unsynced = [call for call, sync in _epoch_logs(src) if not _is_true(sync)] if _ddp_trainer(src) else []
    if unsynced:
        more = _and_more(len(unsynced) - 1, "call", "calls")
        evidence = f"`{src.quote(unsynced[0])}`{more}: epoch values under a ddp Trainer, without sync_dist=True"
        findings.append(src.finding("unreduced-across-ranks", unsynced[0], evidence, UNREDUCED))
    return findings


def _padding_samplers(src: _Source) -> list[ast.Call]:
    return [call for call in src.calls("DistributedSampler") if not _is_true(_keyword(call, "drop_last"))]


def check_padded_duplicates_counted(src: _Source) -> list[Finding]:
    """Sample counts summed across ranks while DistributedSampler pads each shard, with nothing masked."""
    if any(_MASKISH.search(word) for word in src.words):
        return []
    samplers, findings = _padding_samplers(src), []
    counts = [stmt for _, value, stmt in src.additions
              if _SIZEISH.search(src.unparse(value)) and not _LOSSISH.search(src.unparse(value))]
    reduces = _reduces(src)
    if samplers and counts and reduces:
        evidence = f"`{src.quote(samplers[0])}` pads each shard; `{src.quote(counts[0])}` (line {counts[0].lineno}) " \
                   f"is summed across ranks by `{src.quote(reduces[0])}` (line {reduces[0].lineno})"
        findings.append(src.finding("padded-duplicates-counted", samplers[0], evidence, PADDED))
    if samplers or _ddp_trainer(src):
        synced = [call for call, sync in _epoch_logs(src) if _is_true(sync)]
        if synced:
            more = _and_more(len(synced) - 1, "call", "calls")
            evidence = f"`{src.quote(synced[0])}`{more}: sync_dist=True averages the ranks' values, " \
                       "padding repeats included"
            findings.append(src.finding("padded-duplicates-counted", synced[0], evidence, PADDED))
    return findings


# -- host-sync-per-step -----------------------------------------------------------------------------


def _statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Every statement in ``body``, nested blocks included, nested functions and classes not."""
    for stmt in body:
        yield stmt
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for field in ("body", "orelse", "finalbody"):
            yield from _statements(getattr(stmt, field, []))
        for handler in getattr(stmt, "handlers", []):
            yield from _statements(handler.body)


def _own_parts(stmt: ast.stmt) -> list[ast.AST]:
    """What a statement evaluates itself, without its nested blocks."""
    if isinstance(stmt, (ast.If, ast.While)):
        return [stmt.test]
    if isinstance(stmt, (ast.For, ast.AsyncFor)):
        return [stmt.iter]
    if isinstance(stmt, (ast.With, ast.AsyncWith)):
        return [item.context_expr for item in stmt.items]
    if isinstance(stmt, (ast.Try, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return []
    return [stmt]


def _syncs(src: _Source, node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    if isinstance(node.func, ast.Attribute) and node.func.attr == "item" and not node.args:
        return True
    return isinstance(node.func, ast.Name) and node.func.id == "float" and len(node.args) == 1 \
        and not isinstance(node.args[0], ast.Constant) and bool(_TENSORISH.search(src.unparse(node.args[0])))


def _per_batch_bodies(src: _Source) -> Iterator[tuple[str, list[ast.stmt]]]:
    for loop in src.of(ast.For, ast.AsyncFor):
        if _LOADERISH.search(src.unparse(loop.iter)):
            yield f"the per-batch loop over `{src.quote(loop.iter)}`", loop.body
    for func in src.of(ast.FunctionDef):
        if func.name in _STEP_METHODS:
            yield f"`{func.name}`", func.body


def check_host_sync_per_step(src: _Source) -> list[Finding]:
    """``.item()`` or ``float(tensor)`` once per batch, in a file that runs on a GPU (info: a cost)."""
    if not (src.mentions("cuda") or "gpu" in src.words):
        return []
    findings, seen = [], set()
    for where, body in _per_batch_bodies(src):
        syncing = [stmt for stmt in _statements(body)
                   if any(_syncs(src, n) for part in _own_parts(stmt) for n in ast.walk(part))]
        if not syncing or syncing[0].lineno in seen:
            continue
        seen.add(syncing[0].lineno)
        more = _and_more(len(syncing) - 1, "statement that syncs", "statements that sync")
        evidence = f"`{src.quote(syncing[0])}` in {where}{more}"
        findings.append(src.finding("host-sync-per-step", syncing[0], evidence, HOST_SYNC))
    return findings


# -- entry points -----------------------------------------------------------------------------------

CHECKS: dict[str, Callable[[_Source], list[Finding]]] = {
    "mean-of-batch-means": check_mean_of_batch_means,
    "half-precision-accumulator": check_half_precision_accumulator,
    "lossy-serialiser": check_lossy_serialiser,
    "aliased-state": check_aliased_state,
    "read-after-reset": check_read_after_reset,
    "unreduced-across-ranks": check_unreduced_across_ranks,
    "padded-duplicates-counted": check_padded_duplicates_counted,
    "host-sync-per-step": check_host_sync_per_step,
}


def _parse(text: str, path: str, cell_of: Callable[[int], str] | None = None) -> ast.Module:
    flags = ast.PyCF_ONLY_AST | (ast.PyCF_ALLOW_TOP_LEVEL_AWAIT if cell_of else 0)
    try:
        return compile(text, path, "exec", flags=flags, dont_inherit=True)
    except SyntaxError as error:
        where = cell_of(error.lineno) if cell_of and error.lineno else ""
        raise UnusableInput(f"{path!r}: not valid Python ({error.msg}, line {error.lineno}{where})") from None
    except ValueError as error:  # source with NUL bytes
        raise UnusableInput(f"{path!r}: not valid Python ({error})") from None


def _run_checks(text: str, path: str, tree: ast.Module) -> list[Finding]:
    src = _Source(text, path, tree)
    findings = [finding for check in CHECKS.values() for finding in check(src)]
    unique = {(f.code, f.line, f.evidence): f for f in findings}
    return sorted(unique.values(), key=lambda f: (f.line or 0, f.code))


def check_python(text: str, path: str) -> list[Finding]:
    """Every finding in a Python script, read statically (never executed), each with its 1-based line.

    A text that is not valid Python raises ``UnusableInput`` naming the error and its line.
    """
    text = text.removeprefix("\ufeff")  # a byte-order mark read as text
    return _run_checks(text, path, _parse(text, path))


def _notebook_cells(text: str, path: str) -> list[str]:
    """The sources of a notebook's code cells, in order; ``UnusableInput`` if it is not nbformat 4 JSON."""
    try:
        notebook = json.loads(text)
    except ValueError as error:
        raise UnusableInput(f"{path!r}: not a Jupyter notebook (not JSON: {error})") from None
    cells = notebook.get("cells") if isinstance(notebook, dict) else None
    if not isinstance(cells, list) or notebook.get("nbformat") != 4:
        raise UnusableInput(f"{path!r}: not a Jupyter notebook (nbformat 4 JSON with a list of cells)")
    sources = []
    for index, cell in enumerate(cells):
        source = cell.get("source") if isinstance(cell, dict) else None
        if isinstance(source, list) and all(isinstance(line, str) for line in source):
            source = "".join(source)
        if not isinstance(source, str) or not isinstance(cell.get("cell_type"), str):
            raise UnusableInput(f"{path!r}: not a Jupyter notebook (cell {index + 1} has no cell_type or source)")
        if cell["cell_type"] == "code":
            sources.append(source)
    return sources


def _without_magics(source: str) -> list[str]:
    """A cell's lines with IPython magics as ``pass`` (same indentation); a non-Python cell magic blanks the cell."""
    lines = re.split(r"\r\n|\r|\n", source)  # Python's own line ends, not str.splitlines' (form feed...)
    if lines[-1] == "":
        lines.pop()
    if lines and lines[0].startswith("%%") and lines[0][2:].split(" ")[0] not in _CELL_MAGICS_IN_PYTHON:
        return [""] * len(lines)
    kept = []
    for line in lines:
        stripped = line.lstrip()
        kept.append(line[:len(line) - len(stripped)] + "pass" if stripped.startswith(("%", "!")) else line)
    return kept


def check_notebook(text: str, path: str) -> list[Finding]:
    """Every finding in a notebook's code cells, joined in order; ``line`` counts in the joined code.

    Each finding's evidence starts with ``cell N`` (the 1-based index among code cells).
    IPython magics are read as ``pass``. Not nbformat 4 JSON, or not valid Python: ``UnusableInput``.
    """
    lines: list[str] = []
    cell_of: list[int] = []
    for number, source in enumerate(_notebook_cells(text, path), start=1):
        cell_lines = _without_magics(source)
        lines += cell_lines
        cell_of += [number] * len(cell_lines)
    code = "\n".join(lines) + "\n"
    tree = _parse(code, path, lambda line: f", cell {cell_of[min(line, len(cell_of)) - 1]}" if cell_of else "")
    return [replace(f, evidence=f"cell {cell_of[f.line - 1]}: {f.evidence}") if f.line else f
            for f in _run_checks(code, path, tree)]
