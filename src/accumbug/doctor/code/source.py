"""One parsed file, read by every code check: its nodes by type, the function each sits in, quoting.

A file is parsed once (``parse``) and walked once (``Source``); each check then reads the
nodes of the kinds it needs. The small helpers over nodes (``called``, ``keyword``,
``passed_arguments``, ``is_true``, ``is_number``, ``is_zero``) and the wording of "and N more"
(``and_more``) live here too.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator

from ..findings import Finding, UnusableInput

QUOTE_CHARS = 100  # evidence quotes are trimmed to this many characters


class Source:
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
        return [call for call in self.of(ast.Call) if called(call) in names]

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
            if isinstance(call.func, ast.Attribute) and call.args and not keyword(call, "alpha"):
                yield self.unparse(call.func.value), call.args[0], call

    def mentions(self, pattern: str) -> bool:
        return any(pattern in word.lower() for word in self.words)


def called(call: ast.Call) -> str | None:
    func = call.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None


def keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def passed_arguments(function: ast.AST, call: ast.Call) -> list[tuple[str | None, ast.expr]]:
    """``(parameter, value)`` for each argument ``call`` passes to the same-file ``function`` (``self`` skipped
    when it is called as a method; ``None`` for a ``**mapping``)."""
    params = [a.arg for a in function.args.args]
    if params[:1] == ["self"] and isinstance(call.func, ast.Attribute):
        params = params[1:]
    return [*zip(params, call.args), *((k.arg, k.value) for k in call.keywords)]


def is_true(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def is_number(node: ast.AST | None) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        node = node.operand
    return isinstance(node, ast.Constant) and type(node.value) in (int, float)


def is_zero(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) in (int, float) and node.value == 0


def and_more(count: int, one: str, many: str) -> str:
    return "" if count < 1 else f" (and {count} more {one if count == 1 else many})"


def parse(text: str, path: str, cell_of: Callable[[int], str] | None = None) -> ast.Module:
    """``text`` as a tree, never executed; ``UnusableInput`` naming the error, its line and, given ``cell_of``
    (a notebook, where top-level ``await`` is allowed), its cell."""
    flags = ast.PyCF_ONLY_AST | (ast.PyCF_ALLOW_TOP_LEVEL_AWAIT if cell_of else 0)
    try:
        return compile(text, path, "exec", flags=flags, dont_inherit=True)
    except SyntaxError as error:
        where = cell_of(error.lineno) if cell_of and error.lineno else ""
        raise UnusableInput(f"{path!r}: not valid Python ({error.msg}, line {error.lineno}{where})") from None
    except ValueError as error:  # source with NUL bytes
        raise UnusableInput(f"{path!r}: not valid Python ({error})") from None
