"""Which data a loop of a multi-rank script reads: the whole data set, a shard, or a shard padded with repeats.

``DistributedSampler`` (and torchelastic's ``ElasticDistributedSampler``) pads every rank's
shard to equal length with repeated samples unless it is made with ``drop_last=True``; a
``drop_last`` the file does not state (``drop_last=args.drop_last``) is not taken as padding.
Horovod's scripts use the same sampler, with ``hvd.size()`` and ``hvd.rank()``. A loader
prepared by an ``Accelerator`` is padded the same way (its ``even_batches``), unless the
Accelerator is made with ``even_batches=False``; a ``DataLoader`` without a distributed
sampler gives every rank the whole data. A loop is tied to its sampler through what it
iterates (``enumerate``, ``tqdm``, ``pbar = tqdm(loader)``), the names and attributes that
hold the loader (also one built with ``DataLoader`` and then unpacked from
``accelerator.prepare(model, loader)``), the helper that returns it and the parameter it is
passed as. Used by ``ranks.py``; ``accumbug.distributed.rank_shard`` shows the padding.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from .collectives import Distributed
from .rank_flow import Key, RankFlow
from .source import Source, called, keyword, passed_arguments

_WRAPPERS = {"enumerate", "tqdm", "iter", "zip", "trange", "islice", "cycle", "track"}
SAMPLERS = {"DistributedSampler", "ElasticDistributedSampler"}
_KINDS = ("padded", "shard", "whole")
_DEPTH = 8  # how many names, parameters and returns a loader is followed through


@dataclass(frozen=True)
class Shard:
    """What one rank's loop reads: ``padded`` (a shard with repeats), ``shard`` (no repeats) or ``whole``."""

    kind: str
    made: ast.AST  # the sampler, prepare() or DataLoader call that decides it


class Shards:
    """The loaders of one file, each traced to the sampler that shards it."""

    def __init__(self, src: Source, dist: Distributed, flow: RankFlow):
        self.src, self.dist, self.flow = src, dist, flow
        self.made: dict[Key, list[ast.expr]] = {}
        self._known: dict[object, Shard | None] = {}
        for node in src.of(ast.Assign):
            for target in node.targets:
                self._made(target, node.value)
        for call in src.of(ast.Call):
            function = flow.functions.get(called(call))
            for param, value in passed_arguments(function, call) if function is not None else ():
                self.made.setdefault((id(function), param), []).append(value)
        evened = [keyword(call, "even_batches") for call in src.calls("Accelerator", "DataLoaderConfiguration")]
        self.even = not any(isinstance(e, ast.Constant) and e.value is False for e in evened)

    def _made(self, target: ast.AST, value: ast.expr) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            values = value.elts if isinstance(value, ast.Tuple) and len(value.elts) == len(target.elts) else None
            for i, part in enumerate(target.elts):
                self._made(part, values[i] if values else value)
            return
        key = self.flow.key(target) if isinstance(target, (ast.Name, ast.Attribute)) else None
        if key is not None:
            self.made.setdefault(key, []).append(value)

    def of(self, node: ast.AST | None, depth: int = 0) -> Shard | None:
        """The shard a loader expression reads, or ``None`` when the file does not say."""
        if node is None or depth > _DEPTH:
            return None
        if isinstance(node, ast.Constant) and node.value is None:
            return Shard("whole", node)
        if isinstance(node, ast.IfExp):
            return _first_padded([self.of(node.body, depth + 1), self.of(node.orelse, depth + 1)])
        if isinstance(node, ast.Call):
            return self._of_call(node, depth)
        key = self.flow.key(node) if isinstance(node, (ast.Name, ast.Attribute)) else None
        return self._remembered(key, self.made.get(key, ()), depth)

    def _remembered(self, key: object, values, depth: int) -> Shard | None:
        """The shard of any of ``values``, worked out once per name or function (and ``None`` inside a cycle)."""
        if key is None or not values:
            return None
        if key not in self._known:
            self._known[key] = None
            self._known[key] = _first_padded([self.of(value, depth + 1) for value in values])
        return self._known[key]

    def _of_call(self, call: ast.Call, depth: int) -> Shard | None:
        name = called(call)
        if name in SAMPLERS:
            drop = keyword(call, "drop_last")
            return Shard("padded" if drop is None or _is_false(drop) else "shard", call)
        if name == "DataLoader":
            sampler = keyword(call, "sampler") or keyword(call, "batch_sampler")
            return self.of(sampler, depth + 1) if sampler is not None else Shard("whole", call)
        if self.dist.package_of(call) in (("accelerator", "prepare"), ("accelerator", "prepare_data_loader")):
            return Shard("padded" if self.even else "shard", call)
        if name in _WRAPPERS and call.args:
            return self.of(call.args[0], depth + 1)
        function = self.flow.functions.get(name)
        if function is None:
            return None
        returns = [n.value for n in ast.walk(function) if isinstance(n, ast.Return) and n.value is not None]
        return self._remembered(("return", name), returns, depth)


def _is_false(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is False


def _first_padded(shards: list[Shard | None]) -> Shard | None:
    """Of the loaders a name may hold, the one that pads, else one that shards, else any."""
    known = sorted((shard for shard in shards if shard is not None), key=lambda s: _KINDS.index(s.kind))
    return known[0] if known else None
