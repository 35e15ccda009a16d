"""Which code of a file runs on rank 0 only: rank tests in their common spellings, and the regions they guard.

A rank test is read from what it compares: a rank (``dist.get_rank()``, ``hvd.rank()``,
``hvd.local_rank()``, ``accelerator.process_index``, ``os.environ["RANK"]``, a name assigned one
of them, or a name that says ``rank``: ``args.rank``, ``local_rank``, ``ddp_rank``) against 0
(``rank == 0``, ``not rank``, ``rank % ngpus == 0``, ``local_rank in [-1, 0]``); a flag assigned
such a test (nanoGPT's ``master_process``); ``accelerator.is_main_process``,
``trainer.is_global_zero``; a function of the same file whose body returns a rank test, or an
imported ``is_main_process()``. A region is the body of ``if <test>:``, the ``else`` of ``if rank
!= 0:``, what follows a guard clause (``if rank != 0: return``), a function decorated
``@rank_zero_only``, and a same-file function called only from such regions.
``accelerator.print`` and ``accelerator.log`` log on the main process wherever they are called.
Used by ``ranks.py``.
"""

from __future__ import annotations

import ast
import re

from .collectives import Distributed, dotted
from .source import Source, called, is_zero

_RANK_WORD = re.compile(r"rank$|rank_|_rank|^rank", re.IGNORECASE)
_MAIN_WORD = re.compile(r"main_process|is_master|master_process|rank_zero|is_primary|global_zero|is_main",
                        re.IGNORECASE)
_RANK_FUNCTIONS = {"get_rank", "rank", "local_rank", "get_local_rank", "cross_rank", "get_global_rank"}
_RANK_ATTRIBUTES = {"process_index", "local_process_index", "global_rank"}
RANK_ZERO_LOGGERS = {"print", "log"}  # accelerator.print, accelerator.log
_EXITS = (ast.Return, ast.Continue, ast.Raise)


class RankZero:
    """The rank-0 regions of one file: for each node inside one, the test (or decorator) that guards it."""

    def __init__(self, src: Source, dist: Distributed):
        self.src, self.dist = src, dist
        self.functions = {f.name: f for f in src.of(ast.FunctionDef, ast.AsyncFunctionDef)}
        self.ranks = self._assigned(self.is_rank)
        self.helpers = {name for name, f in self.functions.items()
                        if any(isinstance(s, ast.Return) and s.value is not None and self.is_zero_test(s.value)
                               for s in f.body)}
        self.flags = self._assigned(self.is_zero_test)
        self.guards: dict[int, ast.AST] = {}
        for guard, statements in self._regions():
            self._mark(guard, statements)
        for name, guard in self._called_only_from_regions():
            self._mark(guard, self.functions[name].body)
        self.objects = self._rank_zero_objects()

    def _assigned(self, test) -> set[str]:
        return {dotted(target) for node in self.src.of(ast.Assign) if test(node.value)
                for target in node.targets} - {None}

    def is_rank(self, node: ast.AST) -> bool:
        for part in ast.walk(node):
            name = dotted(part) if isinstance(part, (ast.Name, ast.Attribute)) else None
            if name and (name in getattr(self, "ranks", ()) or _RANK_WORD.search(name.rsplit(".", 1)[-1])
                         or name.rsplit(".", 1)[-1] in _RANK_ATTRIBUTES):
                return True
            if isinstance(part, ast.Call) and (self.dist.package_of(part) or ("", ""))[1] in _RANK_FUNCTIONS:
                return True
            if isinstance(part, ast.Constant) and part.value in ("RANK", "LOCAL_RANK"):
                return True
        return False

    def is_zero_test(self, test: ast.AST) -> bool:
        """``rank == 0`` and its spellings: true on rank 0 only."""
        if isinstance(test, ast.BoolOp):
            return any(self.is_zero_test(value) for value in test.values)
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            return self.is_nonzero_test(test.operand) or self._names_rank(test.operand)
        if isinstance(test, ast.Compare) and len(test.ops) == 1:
            left, op, right = test.left, test.ops[0], test.comparators[0]
            if isinstance(op, (ast.Eq, ast.LtE)) and (is_zero(right) and self.is_rank(left)
                                                      or is_zero(left) and self.is_rank(right)):
                return True
            return isinstance(op, ast.In) and isinstance(right, (ast.List, ast.Tuple, ast.Set)) \
                and any(is_zero(e) for e in right.elts) and self.is_rank(left)
        if isinstance(test, (ast.Name, ast.Attribute)):
            name = dotted(test) or ""
            return name in getattr(self, "flags", ()) or bool(_MAIN_WORD.search(name.rsplit(".", 1)[-1]))
        if isinstance(test, ast.Call):
            name = called(test) or ""
            return name in getattr(self, "helpers", ()) or name not in self.functions and bool(_MAIN_WORD.search(name))
        return False

    def is_nonzero_test(self, test: ast.AST) -> bool:
        """``rank != 0``, ``rank > 0``, ``if rank:``, ``not is_main_process()``: true on every rank but 0."""
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            return self.is_zero_test(test.operand)
        if isinstance(test, ast.Compare) and len(test.ops) == 1 and self.is_rank(test.left):
            op, right = test.ops[0], test.comparators[0]
            return isinstance(op, (ast.NotEq, ast.Gt)) and is_zero(right)
        return self._names_rank(test)

    def _names_rank(self, node: ast.AST) -> bool:
        return isinstance(node, (ast.Name, ast.Attribute)) and self.is_rank(node)

    def _regions(self):
        """``(guard, statements)`` for every rank-0 region of the file."""
        for node in self.src.of(ast.If):
            if self.is_zero_test(node.test):
                yield node.test, node.body
            elif self.is_nonzero_test(node.test):
                yield node.test, node.orelse
        for block in self._blocks():
            for i, stmt in enumerate(block):
                if isinstance(stmt, ast.If) and not stmt.orelse and isinstance(stmt.body[-1], _EXITS) \
                        and self.is_nonzero_test(stmt.test):
                    yield stmt.test, block[i + 1:]
        for function in self.functions.values():
            marks = [d for d in function.decorator_list if _MAIN_WORD.search(self.src.unparse(d))]
            if marks:
                yield marks[0], function.body

    def _blocks(self):
        for node in self.src.of(ast.FunctionDef, ast.AsyncFunctionDef, ast.For, ast.While, ast.If, ast.With):
            yield node.body

    def _mark(self, guard: ast.AST, statements: list[ast.stmt]) -> None:
        for stmt in statements:
            for node in ast.walk(stmt):
                self.guards.setdefault(id(node), guard)

    def _called_only_from_regions(self):
        """Same-file functions every call of which sits in a rank-0 region, with the guard of the first call."""
        calls: dict[str, list[ast.Call]] = {}
        for call in self.src.of(ast.Call):
            if called(call) in self.functions:
                calls.setdefault(called(call), []).append(call)
        for name, sites in calls.items():
            if all(id(site) in self.guards for site in sites):
                yield name, self.guards[id(sites[0])]

    def _rank_zero_objects(self) -> dict[str, ast.AST]:
        """Objects made on rank 0 only, with their test: ``writer = SummaryWriter() if rank == 0 else None``, or
        made under a rank test and set to ``None`` elsewhere."""
        nothing = {dotted(t) for node in self.src.of(ast.Assign) if _is_none(node.value) for t in node.targets}
        found = {}
        for node in self.src.of(ast.Assign):
            value, guard = node.value, self.guards.get(id(node))
            if isinstance(value, ast.IfExp) and _is_none(value.orelse) and self.is_zero_test(value.test):
                guard = value.test
            for name in {dotted(t) for t in node.targets} - {None}:
                if guard is not None and (guard is not self.guards.get(id(node)) or name in nothing):
                    found[name] = guard
        return found

    def guard(self, node: ast.AST) -> ast.AST | None:
        """The test or decorator that keeps ``node`` on rank 0, or the call itself for ``accelerator.print/log``;
        a call on an object that only rank 0 makes (its writer) is guarded by the test it was made under."""
        owner = dotted(node.func.value) if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) else None
        if owner is not None and called(node) in RANK_ZERO_LOGGERS and owner in self.dist.accelerators:
            return node
        return self.guards.get(id(node)) or self.objects.get(owner)


def _is_none(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is None
