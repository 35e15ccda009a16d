"""A tracker's state emptied while something still holds or reads it: aliased state, a read after a reset.

A heuristic, like every code check (see ``accumbug.doctor.code``). What it looks for, and what it ignores:

``aliased-state``
    A tensor or list zeroed in place (``.zero_()``, ``.fill_(0)``, ``.mul_(0)``, ``.clear()``,
    ``x[:] = []``, ``del x[:]``) somewhere in the file, and the same attribute or name either
    appended as it is to a history (``history["loss"].append(meter.avg)``, also inside a dict
    or tuple literal) or, for a tensor zeroed in place, handed out by a method (``return
    self.mean``, ``{"loss": self.mean}``). Ignored: appending ``float(x)``, ``x.item()``,
    ``x.clone()`` or any other call's result, returning a list or dict that is cleared (a
    cache, usually), classes defined in other files (the zeroing must be visible), and an
    object built from a class of the file that does not zero that attribute itself (another
    class's ``.avg.zero_()`` is not its own).
``read-after-reset``
    In one block (a function, loop or branch body), ``X.reset()`` followed by a read of ``X``
    (``X.get_metrics()``, ``X.compute()``, ``X.avg``: an attribute named like a value, such as
    ``get_*``, ``compute*``, ``avg``, ``sum``, ``*loss*``, ``*acc*``) before anything calls
    ``X.update(...)`` or ``X(...)`` again. Ignored: a read in another method or a later loop
    iteration, assignments to ``X``'s attributes, and ``self.reset()`` (a class setting itself up).
"""

from __future__ import annotations

import ast
import re

from ..findings import Finding
from .provenance import provenance
from .source import Source, called, is_zero

_ZEROING = {"zero_", "clear"}
_METRIC_READS = re.compile(r"get_\w+|compute\w*|results?|summary|avg|average|mean|val|value|sum|count|total|correct"
                           r"|\w*(loss|acc|metric|top\d)\w*", re.IGNORECASE)  # what a tracker's value is read by

ALIASED = ("the history holds the object itself, not its value: when it is zeroed in place after the "
           "console printed it, every saved epoch that shares it becomes 0.0 (or an empty list)")
AFTER_RESET = ("the value read is the emptied tracker's: 0.0 (or NaN, or a division by zero) for every epoch, "
               "whatever the console printed before the reset")


# -- aliased-state ----------------------------------------------------------------------------------


def _zeroed_in_place(src: Source) -> dict[str, ast.AST]:
    """What is zeroed or cleared in place, by key (``self.mean``) and by attribute name (``.mean``)."""
    zeroed: dict[str, ast.AST] = {}

    def add(target: ast.expr, node: ast.AST) -> None:
        zeroed.setdefault(src.unparse(target), node)
        if isinstance(target, ast.Attribute):
            zeroed.setdefault("." + target.attr, node)
            for cls in src.of(ast.ClassDef):  # and by class: ``Meter.avg``
                if cls.lineno <= node.lineno <= cls.end_lineno:
                    zeroed.setdefault(f"{cls.name}.{target.attr}", node)

    for call in src.of(ast.Call):
        func = call.func
        if not isinstance(func, ast.Attribute):
            continue
        if func.attr in _ZEROING and not call.args or func.attr in ("fill_", "mul_") and call.args \
                and is_zero(call.args[0]):
            add(func.value, call)
    for node in src.of(ast.Assign, ast.Delete):
        for target in node.targets:
            if isinstance(target, ast.Subscript) and isinstance(target.slice, ast.Slice) \
                    and target.slice.lower is None and target.slice.upper is None:
                add(target.value, node)
    return zeroed


def _zeroed_by_its_class(src: Source, part: ast.Attribute, zeroed: dict[str, ast.AST]) -> bool:
    """Whether ``meter.avg``'s zeroing may be its own: the object is built from a class of the file that (or
    whose same-file base) zeroes that attribute, or from a class the file does not define."""
    made = provenance(src).origin(part.value)
    name = called(made) if isinstance(made, ast.Call) else None
    classes = {cls.name: cls for cls in src.of(ast.ClassDef)}
    if name not in classes:
        return True
    family, stack = set(), [name]
    while stack:
        member = stack.pop()
        family.add(member)
        stack += [b.id for b in classes[member].bases if isinstance(b, ast.Name) and b.id in classes
                  and b.id not in family]
    return any(f"{member}.{part.attr}" in zeroed for member in family)


def _aliases(src: Source, value: ast.expr, zeroed: dict[str, ast.AST]) -> ast.expr | None:
    """The zeroed object ``value`` is, or holds in a dict, list or tuple literal, as it is (not converted)."""
    parts = value.values if isinstance(value, ast.Dict) else value.elts if isinstance(value, (ast.List, ast.Tuple)) \
        else [value]
    for part in parts:
        if isinstance(part, ast.Name) and part.id in zeroed:
            return part
        if isinstance(part, ast.Attribute) and (src.unparse(part) in zeroed or "." + part.attr in zeroed
                                                and _zeroed_by_its_class(src, part, zeroed)):
            return part
    return None


def check_aliased_state(src: Source) -> list[Finding]:
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
        if isinstance(where, ast.Call) and called(where) in ("zero_", "fill_", "mul_"):  # a tensor, not a cache
            evidence = f"`{src.quote(node)}` hands out `{src.unparse(held)}` itself; `{src.quote(where)}` " \
                       f"(line {where.lineno}) zeroes it in place"
            findings.append(src.finding("aliased-state", node, evidence, ALIASED))
    return findings


# -- read-after-reset -------------------------------------------------------------------------------


def _reset_target(src: Source, stmt: ast.stmt) -> str | None:
    call = stmt.value if isinstance(stmt, ast.Expr) else None
    if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) \
            and call.func.attr in ("reset", "reset_states") and not call.args:
        key = src.unparse(call.func.value)
        return None if key == "self" else key  # a class resetting itself, as __init__ often does
    return None


def _uses(src: Source, stmt: ast.stmt, key: str) -> str | None:
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


def _reads_after_reset(src: Source, body: list[ast.stmt]) -> list[Finding]:
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


def check_read_after_reset(src: Source) -> list[Finding]:
    """``X.reset()`` then a read of ``X`` in the same block, before ``X`` is updated again."""
    findings = []
    for node in src.of(ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.For, ast.AsyncFor, ast.While, ast.If,
                       ast.With, ast.AsyncWith, ast.Try, ast.ExceptHandler):
        for field in ("body", "orelse", "finalbody"):
            body = getattr(node, field, None)
            if body:
                findings += _reads_after_reset(src, body)
    return findings
