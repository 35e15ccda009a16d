"""History writers that turn a non-finite or non-float value into a number (a lossy serialiser).

A heuristic, like every code check (see ``accumbug.doctor.code``). What it looks for, and what it ignores:

``lossy-serialiser``
    ``x if math.isfinite(x) else 0.0`` and its variants (``isnan``/``isinf`` in the test and
    any number in a branch; ``isinstance(x, ...)`` in the test, 0 in one branch and ``x`` in the
    other); a ``nan_to_num`` whose
    result reaches a metric or a writer: of a loss or a value derived from one
    (``provenance.py``), inside a writer's call (``json.dump``, ``writer.writerow``,
    ``wandb.log``, ``add_scalar``...), appended to a history that such a call writes, assigned
    to a name such a call then writes, or in a function that such a call is handed or that
    returns it for a loss;
    ``json.dump(s)(..., default=lambda o: 0...)``; a function that tests ``isfinite``/``isnan``/
    ``isinf`` or ``isinstance(x, float)`` (``int``, ``Number``) and returns 0, or returns 0
    from the ``except`` of a ``try: float(x)``. Ignored: sanitisers that write ``None`` (lossy
    too, but they write no number), a check that raises, ``allow_nan=False`` writers, and a
    ``nan_to_num`` that cleans inputs (features fed to a model, never written).
"""

from __future__ import annotations

import ast
import re

from ..findings import Finding
from .provenance import Provenance, provenance
from .source import Source, called, is_number, is_zero, keyword

_NONFINITE_TESTS = {"isfinite", "isnan", "isinf"}
_WRITERS = {"dump", "dumps", "write", "write_text", "writerow", "writerows", "log", "log_dict", "log_metrics",
            "add_scalar", "add_scalars", "save", "savetxt", "savez", "to_csv", "to_json"}
_KEEPERS = {"append", "extend", "update"}  # a list or dict that holds it: written if the holder is

LOSSY = ("a non-finite (or non-float) epoch value is written as a number: a NaN or inf loss, or a tensor "
         "whose value is fine, is saved as 0.0 (or 1.8e308) and nothing records what it was")


def _tests_finiteness(test: ast.expr) -> bool:
    return any(isinstance(n, ast.Call) and called(n) in _NONFINITE_TESTS for n in ast.walk(test))


def _tests_number_type(src: Source, test: ast.expr) -> bool:
    """``isinstance(x, float)``, ``isinstance(x, (int, float))``, ``isinstance(x, numbers.Number)``."""
    return any(isinstance(n, ast.Call) and called(n) == "isinstance" and len(n.args) == 2
               and re.search(r"\b(float|int|Number|Real)\b", src.unparse(n.args[1])) for n in ast.walk(test))


def _replaces_with_number(src: Source, node: ast.IfExp) -> bool:
    """``x if isfinite(x) else 0.0`` (any number in a branch), ``x if isinstance(x, float) else 0.0`` (a zero
    in place of the tested value, not ``x.dim() if isinstance(x, Tensor) else 0``)."""
    if _tests_finiteness(node.test):
        return is_number(node.body) or is_number(node.orelse)
    tested = {src.unparse(n.args[0]) for n in ast.walk(node.test)
              if isinstance(n, ast.Call) and called(n) == "isinstance" and n.args}
    kept = node.orelse if is_zero(node.body) else node.body if is_zero(node.orelse) else None
    while isinstance(kept, ast.Call) and called(kept) in ("float", "int") and len(kept.args) == 1:
        kept = kept.args[0]
    return kept is not None and src.unparse(kept) in tested


def _converting_handlers(src: Source, nodes: list[ast.AST]) -> list[ast.AST]:
    """Everything inside the ``except`` blocks of ``try: float(x)``."""
    found = []
    for node in nodes:
        if isinstance(node, ast.Try) and any(isinstance(c, ast.Call) and called(c) == "float"
                                             for stmt in node.body for c in ast.walk(stmt)):
            found += [inner for handler in node.handlers for inner in ast.walk(handler)]
    return found


def _guarded_zero(src: Source, block: list[ast.stmt]) -> ast.Return | None:
    """In a block: ``if <type or finiteness test>:`` that returns 0 in a branch, or returns the value
    and is followed by ``return 0``."""
    for index, stmt in enumerate(block):
        if not (isinstance(stmt, ast.If) and (_tests_finiteness(stmt.test) or _tests_number_type(src, stmt.test))):
            continue
        zero = next((n for n in ast.walk(stmt) if isinstance(n, ast.Return) and is_zero(n.value)), None)
        after = block[index + 1] if index + 1 < len(block) else None
        if zero is None and isinstance(stmt.body[-1], ast.Return) and isinstance(after, ast.Return) \
                and is_zero(after.value):
            zero = after
        if zero is not None:
            return zero
    return None


def _zero_returning_sanitisers(src: Source) -> list[Finding]:
    """Functions that test a value's number type or finiteness and return 0, or return 0 when ``float(x)`` fails."""
    findings = []
    for func in src.of(ast.FunctionDef):
        inner = list(ast.walk(func))
        blocks = [getattr(n, field) for n in inner for field in ("body", "orelse")
                  if isinstance(getattr(n, field, None), list)]
        zero = next((z for block in blocks if (z := _guarded_zero(src, block)) is not None), None)
        if zero is None:
            zero = next((n for n in _converting_handlers(src, inner)
                         if isinstance(n, ast.Return) and is_zero(n.value)), None)
        if zero is not None:
            evidence = f"`{src.quote(zero)}` in `{func.name}`: a value it cannot write becomes 0"
            findings.append(src.finding("lossy-serialiser", zero, evidence, LOSSY))
    return findings


def _numbers_for_errors(src: Source, call: ast.Call) -> bool:
    """``json.dump(s)(..., default=lambda o: 0)``: what JSON cannot write becomes a number."""
    default = keyword(call, "default")
    if not isinstance(default, ast.Lambda):
        return False
    body = default.body
    return is_number(body) or isinstance(body, ast.IfExp) and (is_number(body.body) or is_number(body.orelse))


def _in_writer(p: Provenance, node: ast.AST, seen: frozenset = frozenset()) -> bool:
    """Whether ``node`` sits in the arguments of a call that writes or logs a value, or of an ``append`` to a
    history that one writes."""
    while node in p.parent:
        node = p.parent[node]
        if isinstance(node, ast.Call) and called(node) in _WRITERS:
            return True
        if isinstance(node, ast.Call) and called(node) in _KEEPERS and isinstance(node.func, ast.Attribute):
            return _written(p, p.src.unparse(_base(node.func.value)), seen)
        if isinstance(node, (ast.stmt, ast.Lambda)):
            return False
    return False


def _written(p: Provenance, key: str, seen: frozenset = frozenset()) -> bool:
    """Whether a name (a variable, a function) is read inside a writer's call anywhere in the file."""
    return key not in seen and any(_in_writer(p, node, seen | {key}) for node in p.src.of(ast.Name, ast.Attribute)
                                   if p.src.unparse(node) == key)


def _base(target: ast.expr) -> ast.expr:
    """``row`` for ``row[name]``, ``history`` for ``history["loss"]``: the object filled."""
    while isinstance(target, ast.Subscript):
        target = target.value
    return target


def _reaches_a_writer(p: Provenance, call: ast.Call) -> bool:
    """A ``nan_to_num`` of a loss, written directly, assigned to what is written, or in a function that is."""
    if any(p.is_loss(arg) for arg in call.args) or _in_writer(p, call):
        return True
    statement = call
    while statement in p.parent and not isinstance(statement, ast.stmt):
        statement = p.parent[statement]
    if isinstance(statement, ast.Assign) and any(_written(p, p.src.unparse(_base(t))) for t in statement.targets):
        return True
    func = p.src.scope.get(call)
    return isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)) and (
        _written(p, func.name) or any(p.is_loss(arg) for c in p.src.calls(func.name) for arg in c.args))


def check_lossy_serialiser(src: Source) -> list[Finding]:
    """A writer that turns non-finite or non-float values into numbers."""
    findings = []
    for node in src.of(ast.IfExp):
        if _replaces_with_number(src, node):
            evidence = f"`{src.quote(node)}`: a value that fails the test is written as a number"
            findings.append(src.finding("lossy-serialiser", node, evidence, LOSSY))
    p = provenance(src)
    for call in (c for c in src.calls("nan_to_num") if _reaches_a_writer(p, c)):
        findings.append(src.finding("lossy-serialiser", call, f"`{src.quote(call)}`: NaN becomes 0.0, "
                                    "inf the largest float", LOSSY))
    for call in src.calls("dump", "dumps"):
        if _numbers_for_errors(src, call):
            evidence = f"`{src.quote(call)}`: what JSON cannot write becomes a number"
            findings.append(src.finding("lossy-serialiser", call, evidence, LOSSY))
    return findings + _zero_returning_sanitisers(src)
