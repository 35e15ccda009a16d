"""What each value of a file is made from, to say whether a cross-rank reduction reaches a metric.

A flow-insensitive graph over keys: a local name is keyed by its function (two functions'
``total`` are two keys), ``self.x`` by its text, anything else by the name it is rooted in
(``stats[2]`` and ``meter.avg`` are ``stats`` and ``meter``). A key is fed by what is assigned
or added to it, by the arguments of ``append``/``update``/``add_`` and of the file's own
methods called on it, by the iterable of a ``for`` over it, by the arguments a same-file
function is called with (its parameters) and by what it returns (its calls). Each collective
(``collectives.py``) is a key of its own, fed by what it reduces and feeding what receives its
result, so "the logged value is reduced" is "a collective is among what it is made from". A
call not defined in the file whose name says it reduces (``reduce_tensor``,
``synchronize_between_processes``) counts as one, since its body is in another file.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable

from .collectives import Collective, Distributed, dotted
from .source import Source, called, passed_arguments

Key = tuple

_MUTATORS = {"append", "extend", "update", "add_", "add", "add_batch", "insert", "copy_", "__setitem__"}
_REDUCING_HELPER = re.compile(r"reduce_|_reduce|all_?reduce|all_?gather|gather_|synchroni[sz]e_between|sync_",
                              re.IGNORECASE)
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


class RankFlow:
    """Which keys feed which, the collectives among them, and where each key accumulates per batch."""

    def __init__(self, src: Source, dist: Distributed):
        self.src, self.dist = src, dist
        self.functions = {f.name: f for f in src.of(ast.FunctionDef, ast.AsyncFunctionDef)}
        self.methods = {f.name for c in src.of(ast.ClassDef) for f in c.body
                        if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))}
        self.collectives: dict[int, Collective] = {id(c.call): c for c in dist.collectives}
        self.reducers = {id(call): call for call in src.of(ast.Call)
                         if id(call) in self.collectives or self._reducing_helper(call)}
        self.locals = self._locals()
        self._inner_reducers: dict[str, list[ast.Call]] = {}
        self.feeds: dict[Key, set[Key]] = {}
        self.additions: dict[Key, list[ast.AST]] = {}  # the statements that add to a key
        for node in src.of(ast.Assign, ast.AnnAssign, ast.AugAssign, ast.NamedExpr):
            self._assignment(node)
        for node in src.of(ast.For, ast.AsyncFor, ast.comprehension):
            self._feed(self.targets(node.target), self.keys(node.iter))
        for call in src.of(ast.Call):
            self._call(call)
        for node in src.of(ast.Return):
            function = src.scope.get(node)
            if node.value is not None and isinstance(function, _SCOPES[:2]):
                self._feed([("return", function.name)], self.keys(node.value))

    def _locals(self) -> dict[int, set[str]]:
        found: dict[int, set[str]] = {}
        for node in self.src.of(ast.Name):
            if isinstance(node.ctx, ast.Store):
                found.setdefault(id(self.src.scope[node]), set()).add(node.id)
        for arg in self.src.of(ast.arg):
            found.setdefault(id(self.src.scope[arg]), set()).add(arg.arg)
        return found

    def key(self, node: ast.AST) -> Key | None:
        """The key a name, ``self.x``, ``x.attr`` or ``x[i]`` is kept under (``None`` for anything else)."""
        text = dotted(node) if isinstance(node, ast.Attribute) else None
        if text and text.startswith("self."):
            return ("self", ".".join(text.split(".")[:2]))
        while isinstance(node, (ast.Attribute, ast.Subscript, ast.Starred)):
            node = node.value
        if not isinstance(node, ast.Name):
            return None
        scope = self.src.scope.get(node)
        while scope is not None and scope is not self.src.tree:  # the function that binds it, or an enclosing one
            if node.id in self.locals.get(id(scope), ()):
                return id(scope), node.id
            scope = self.src.scope.get(scope)
        return "module", node.id

    def targets(self, target: ast.AST) -> list[Key]:
        """The keys an assignment target binds: ``i, (x, y)`` binds three."""
        if isinstance(target, (ast.Tuple, ast.List)):
            return [key for element in target.elts for key in self.targets(element)]
        key = self.key(target)
        return [] if key is None else [key]

    def keys(self, expr: ast.AST | None) -> set[Key]:
        """The keys an expression reads; a collective or a same-file function's call is one key."""
        found, stack = set(), [expr] if expr is not None else []
        while stack:
            node = stack.pop()
            key = self.key(node) if isinstance(node, (ast.Name, ast.Attribute)) else None
            if key is not None:
                found.add(key)
            elif isinstance(node, ast.Call) and id(node) in self.reducers:
                found.add(("collective", id(node)))
            elif isinstance(node, ast.Call):
                found |= self._call_keys(node)
                stack.extend([*node.args, *(k.value for k in node.keywords)])
                if isinstance(node.func, ast.Attribute):
                    stack.append(node.func.value)
            elif not isinstance(node, (ast.Lambda, *_SCOPES)):
                stack.extend(ast.iter_child_nodes(node))
        return found

    def _call_keys(self, call: ast.Call) -> set[Key]:
        name = called(call)
        return {("return", name)} if name in self.functions else set()

    def _reducing_helper(self, call: ast.Call) -> bool:
        name = called(call) or ""
        return name not in self.functions and bool(_REDUCING_HELPER.search(name)) and not self.dist.package_of(call) \
            or self.dist.syncs(call)

    def _feed(self, targets: Iterable[Key], sources: set[Key]) -> None:
        for target in targets:
            self.feeds.setdefault(target, set()).update(sources - {target})

    def _assignment(self, node: ast.AST) -> None:
        if node.value is None:
            return
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        made = node.value
        if isinstance(made, ast.Call) and self.dist.package_of(made) == ("accelerator", "prepare"):
            made = ast.Tuple(made.args, ast.Load())  # each object prepared comes back in its place
        for target in targets:
            pairs = isinstance(target, ast.Tuple) and isinstance(made, ast.Tuple) and len(target.elts) == len(made.elts)
            for part, value in zip(target.elts, made.elts) if pairs else [(target, made)]:
                self._feed(self.targets(part), self.keys(value))
        if isinstance(node, ast.AugAssign) and isinstance(node.op, ast.Add) or isinstance(node, ast.Assign) \
                and isinstance(node.value, ast.BinOp) and isinstance(node.value.op, ast.Add) \
                and self.src.unparse(node.value.left) == self.src.unparse(targets[0]):
            self._added(targets[0], node)

    def _added(self, target: ast.AST, statement: ast.AST) -> None:
        key = self.key(target)
        if key is not None:
            self.additions.setdefault(key, []).append(statement)

    def _call(self, call: ast.Call) -> None:
        arguments = self.keys(ast.Tuple([*call.args, *(k.value for k in call.keywords)], ast.Load()))
        collective = self.collectives.get(id(call))
        if id(call) in self.reducers:
            reduced = collective.reduced if collective else (call.args or [None])[0]
            self._feed([("collective", id(call))], self.keys(reduced))
            if collective is not None and collective.result is not call:
                self._feed(self.targets(collective.result), {("collective", id(call))})
            elif isinstance(call.func, ast.Attribute) and not call.args:  # meter.synchronize_between_processes()
                self._feed(self.targets(call.func.value), {("collective", id(call))})
                self._feed([("collective", id(call))], set(self.targets(call.func.value)))
        name = called(call)
        if isinstance(call.func, ast.Attribute) and (name in _MUTATORS or name in self.functions) and call.args:
            self._feed(self.targets(call.func.value), arguments)
            self._added(call.func.value, call)
        if name in self.functions:
            self._parameters(self.functions[name], call)
            if isinstance(call.func, ast.Attribute) and name in self.methods:  # tracker.sync(): its state is reduced
                for inner in self._reducers_of(name):
                    self._feed([("collective", id(inner))], set(self.targets(call.func.value)))
                    self._feed(self.targets(call.func.value), {("collective", id(inner))})

    def _reducers_of(self, name: str) -> list[ast.Call]:
        if name not in self._inner_reducers:
            self._inner_reducers[name] = [n for n in ast.walk(self.functions[name]) if id(n) in self.reducers]
        return self._inner_reducers[name]

    def _parameters(self, function: ast.AST, call: ast.Call) -> None:
        for param, value in passed_arguments(function, call):
            self._feed([(id(function), param)], self.keys(value))

    def made_from(self, expr: ast.AST) -> set[Key]:
        """Every key ``expr`` is made from, directly or through others."""
        return self.made_from_key(*self.keys(expr))

    def made_from_key(self, *keys: Key) -> set[Key]:
        seen, stack = set(), list(keys)
        while stack:
            key = stack.pop()
            if key not in seen:
                seen.add(key)
                stack.extend(self.feeds.get(key, ()))
        return seen

    def reductions_in(self, keys: set[Key]) -> list[ast.Call]:
        """The collectives (and reducing helpers) among ``keys``, by line."""
        return sorted((self.reducers[k[1]] for k in keys if k[0] == "collective"), key=lambda c: c.lineno)

