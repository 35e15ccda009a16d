"""The distributed packages as training scripts spell them: who they are in a file, and what each collective reduces.

Recognised by origin, never by a method's name alone: ``torch.distributed`` under any alias
(``import torch.distributed as dist``, ``from torch import distributed``, ``torch.distributed.x``,
``from torch.distributed import all_reduce``), Horovod (``import horovod.torch as hvd``, and its
TensorFlow and Keras flavours) and an ``Accelerator()`` instance, whatever it is named (the
name it is assigned to, anywhere in the file, or a parameter annotated ``Accelerator``). So
``logp.gather(1, y[:, None])`` and ``functools.reduce`` are not collectives, and
``dist.gather`` is. A torchmetrics metric made in the file sums its states across ranks when
its ``compute()`` is called, so that call counts as one. Lightning's ``self.log(...,
sync_dist=...)`` and the Trainer that runs it on several devices are read here too. Used by
``ranks.py``; notebook 05 teaches why ranks must be combined.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from .source import Source, called, is_true, keyword

_TORCH_DIST = "torch.distributed"
# each collective: (kind, index of the argument that receives the result in place, or None when it is
# returned, index of the argument that is reduced)
_DIST_COLLECTIVES = {
    "all_reduce": ("sum", 0, 0), "reduce": ("sum", 0, 0), "all_gather": ("gather", 0, 1),
    "all_gather_object": ("gather", 0, 1), "all_gather_into_tensor": ("gather", 0, 1),
    "gather": ("gather", 1, 0), "gather_object": ("gather", 1, 0), "reduce_scatter": ("sum", 0, 1),
    "reduce_scatter_tensor": ("sum", 0, 1),
}
_HVD_COLLECTIVES = {"allreduce": ("mean", None, 0), "allreduce_": ("mean", 0, 0), "allgather": ("gather", None, 0),
                    "allgather_object": ("gather", None, 0), "grouped_allreduce": ("mean", None, 0)}
_ACCELERATE_COLLECTIVES = {"gather": ("gather", None, 0), "reduce": ("sum", None, 0),
                           "gather_for_metrics": ("deduplicated", None, 0), "pad_across_processes": (None, None, 0)}
MULTI_RANK_CALLS = {"DistributedSampler", "ElasticDistributedSampler", "DistributedDataParallel", "DDP",
                    "init_process_group", "FullyShardedDataParallel", "FSDP"}


def dotted(node: ast.AST) -> str | None:
    """``a.b.c`` for a chain of attributes on a name, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return ".".join([node.id, *reversed(parts)]) if isinstance(node, ast.Name) else None


class Collective:
    """One collective call: its kind (``sum``, ``mean``, ``gather``, ``deduplicated``), what it reduces, where to."""

    def __init__(self, call: ast.Call, kind: str, in_place: int | None, reduced: int):
        self.call, self.kind = call, kind
        arguments = list(call.args) + [k.value for k in call.keywords if k.arg in ("tensor", "input_tensor")]
        self.reduced = arguments[reduced] if len(arguments) > reduced else None
        self.result = call.args[in_place] if in_place is not None and len(call.args) > in_place else call
        options = [*call.args[1:], *(k.value for k in call.keywords)]
        if kind == "sum" and any(isinstance(o, ast.Attribute) and o.attr in ("AVG", "Average") for o in options):
            self.kind = "mean"


class Distributed:
    """The file's distributed vocabulary: the aliases of torch.distributed and Horovod, the Accelerator instances."""

    def __init__(self, src: Source):
        self.src = src
        self.dist, self.dist_functions, self.hvd, self.torchmetrics = {_TORCH_DIST}, {}, set(), set()
        for node in src.of(ast.Import, ast.ImportFrom):
            self._read_import(node)
        bound = {alias.asname or alias.name for node in src.of(ast.Import, ast.ImportFrom) for alias in node.names}
        bound |= {node.id for node in src.of(ast.Name) if isinstance(node.ctx, ast.Store)}
        self.dist |= {"dist"} - bound  # a fragment (a cell, a snippet) that uses dist.* without importing it
        self.hvd |= {"hvd"} - bound if "hvd" in src.words else set()
        self.accelerators = {dotted(target) for node in src.of(ast.Assign)
                             if isinstance(node.value, ast.Call) and called(node.value) == "Accelerator"
                             for target in node.targets} - {None}
        self.accelerators |= {arg.arg for arg in src.of(ast.arg)
                              if arg.annotation is not None and "Accelerator" in ast.unparse(arg.annotation)}
        self.collectives = [found for found in map(self._collective, src.of(ast.Call)) if found is not None]
        self.synced_metrics = {dotted(target) for node in src.of(ast.Assign) if self._a_torchmetric(node.value)
                               for target in node.targets} - {None}

    def _read_import(self, node: ast.Import | ast.ImportFrom) -> None:
        for alias in node.names:
            full = f"{node.module}.{alias.name}" if isinstance(node, ast.ImportFrom) else alias.name
            local = alias.asname or (alias.name if isinstance(node, ast.ImportFrom) else None)
            if full == _TORCH_DIST and local:
                self.dist.add(local)
            elif full.startswith("horovod.") and local:
                self.hvd.add(local)
            elif isinstance(node, ast.ImportFrom) and node.module == _TORCH_DIST:
                self.dist_functions[local] = alias.name
            elif full.startswith("torchmetrics"):
                self.torchmetrics.add(local or full.split(".")[0])

    def package_of(self, call: ast.Call) -> tuple[str, str] | None:
        """``("dist" | "hvd" | "accelerator", function name)`` when the call is made on one of them."""
        func = call.func
        if isinstance(func, ast.Name) and func.id in self.dist_functions:
            return "dist", self.dist_functions[func.id]
        if not isinstance(func, ast.Attribute):
            return None
        owner = dotted(func.value)
        for package, names in (("dist", self.dist), ("hvd", self.hvd), ("accelerator", self.accelerators)):
            if owner in names:
                return package, func.attr
        return None

    def _collective(self, call: ast.Call) -> Collective | None:
        found = self.package_of(call)
        table = {"dist": _DIST_COLLECTIVES, "hvd": _HVD_COLLECTIVES, "accelerator": _ACCELERATE_COLLECTIVES}
        entry = table[found[0]].get(found[1]) if found else None
        if entry is None or entry[0] is None:
            return None
        kind = entry[0]
        if found == ("accelerator", "reduce"):
            how = keyword(call, "reduction") or (call.args[1] if len(call.args) > 1 else None)
            kind = "mean" if isinstance(how, ast.Constant) and how.value == "mean" else "sum"
        return Collective(call, kind, entry[1], entry[2])

    def _a_torchmetric(self, value: ast.expr) -> bool:
        """A torchmetrics metric made here (``torchmetrics.MeanMetric()``, ``Accuracy(...)`` imported from it)."""
        while isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute) \
                and isinstance(value.func.value, ast.Call):  # torchmetrics.MeanMetric().to(device)
            value = value.func.value
        name = dotted(value.func) if isinstance(value, ast.Call) else None
        return name is not None and (name in self.torchmetrics or name.split(".")[0] in self.torchmetrics)

    def syncs(self, call: ast.Call) -> bool:
        """``metric.compute()`` of a torchmetrics metric: it sums its states across ranks first."""
        func = call.func
        return isinstance(func, ast.Attribute) and func.attr == "compute" and dotted(func.value) in self.synced_metrics

    def multi_rank(self) -> bool:
        """The file runs on several ranks: a sampler, DDP or process group, a collective, Horovod, an Accelerator."""
        src = self.src
        return bool(src.calls(*MULTI_RANK_CALLS) or self.hvd or self.accelerators or self.collectives
                    or multi_device_trainer(src))


# -- Lightning --------------------------------------------------------------------------------------


def _several(node: ast.expr | None) -> bool:
    """A ``devices``/``gpus``/``num_nodes`` value that means more than one: an int > 1, -1, a longer list."""
    if isinstance(node, (ast.List, ast.Tuple)):
        return len(node.elts) > 1
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return True
    value = node.value if isinstance(node, ast.Constant) else None
    if isinstance(value, str):
        value = int(value) if value.strip().lstrip("-").isdigit() else (2 if "," in value else None)
    return type(value) is int and (value > 1 or value == -1)


def multi_device_trainer(src: Source) -> bool:
    """A Lightning ``Trainer`` on several devices: a ddp/fsdp/deepspeed strategy, or devices, gpus or nodes > 1."""
    if src.calls("DDPStrategy", "FSDPStrategy", "DeepSpeedStrategy"):
        return True
    for call in src.calls("Trainer"):
        strategy = keyword(call, "strategy")
        if isinstance(strategy, ast.Constant) and str(strategy.value).startswith(("ddp", "fsdp", "deepspeed")):
            return True
        if any(_several(keyword(call, name)) for name in ("devices", "gpus", "num_nodes")):
            return True
    return False


def epoch_logs(src: Source) -> Iterator[tuple[ast.Call, ast.expr | None]]:
    """Lightning ``self.log``/``self.log_dict`` calls that log at epoch level, with their ``sync_dist``.

    Epoch level: ``on_epoch=True``, or its default in ``validation_step``, ``test_step`` and the
    ``*epoch*`` hooks. A bare ``self.<metric>`` object (a torchmetrics metric, which syncs itself) is skipped.
    """
    for call in sorted(src.calls("log", "log_dict"), key=lambda c: (c.lineno, c.col_offset)):
        func = call.func
        if not (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "self"):
            continue
        method = getattr(src.scope.get(call), "name", "")
        on_epoch = keyword(call, "on_epoch")
        at_epoch = is_true(on_epoch) or on_epoch is None and (method in ("validation_step", "test_step")
                                                               or "epoch" in method)
        value = call.args[-1] if len(call.args) > (0 if func.attr == "log_dict" else 1) else None
        value = keyword(call, "value") or keyword(call, "dictionary") or value
        if at_epoch and not (isinstance(value, ast.Attribute) and src.unparse(value).startswith("self.")):
            yield call, keyword(call, "sync_dist")
