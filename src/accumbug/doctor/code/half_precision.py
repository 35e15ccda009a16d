"""A running sum kept in float16 or bfloat16, where it stops growing or overflows.

A heuristic, like every code check (see ``accumbug.doctor.code``). What it looks for, and what it ignores:

``half-precision-accumulator``
    A running sum (a name that is later ``+=``-ed or ``add_``-ed) created in half precision
    (``dtype=torch.float16``/``bfloat16``/``torch.half``, ``.half()``, ``.bfloat16()``), or a
    torchmetrics-style ``add_state`` with such a default; a sum made like the outputs
    (``torch.zeros_like(outputs[0, 0])``, ``logits.new_zeros(())``, ``dtype=logits.dtype``) in
    a file that uses autocast (``autocast``, ``GradScaler``, Lightning ``precision="16-mixed"``);
    the loss of a half model (``model.half()`` in the same function or at module level,
    ``precision="16-true"``) added without ``.item()``, ``float()`` or a cast to a Python
    number (``0.0``), which then becomes a half tensor; a loss is known by where it comes from
    (``provenance.py``: ``l = loss_fn(net(X), y)`` is one, whatever its name).
    Ignored: autocast alone (its losses are float32) and sums created as float32/float64 tensors.
"""

from __future__ import annotations

import ast
import re

from ..findings import Finding
from .provenance import Provenance, provenance
from .source import Source, called, keyword

_HALF = re.compile(r"float16|bfloat16|\bhalf\b")
_CAST = re.compile(r"\.item\(|float\(|\.double\(|\.float\(|\.to\(|\.tolist\(")
_OUTPUTISH = re.compile(r"out|logit|pred|y_?hat|score", re.IGNORECASE)
_MODELISH = re.compile(r"model|net|module|^self$", re.IGNORECASE)

HALF_SUM = ("the running sum is half precision: float16 (11 significant bits, largest 65,504) stops "
            "growing once each batch loss is below half its spacing, then overflows to inf; bfloat16 (8 bits) "
            "stalls far earlier. The epoch loss reads too low, or inf")


def _creations(src: Source) -> dict[str, list[ast.stmt]]:
    """Every plain assignment, by the text of its target."""
    made: dict[str, list[ast.stmt]] = {}
    for node in src.of(ast.Assign, ast.AnnAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if node.value is not None and len(targets) == 1:
            made.setdefault(src.unparse(targets[0]), []).append(node)
    return made


def _mixed_precision(src: Source) -> bool:
    if src.mentions("autocast") or src.mentions("gradscaler"):
        return True
    return any(re.match(r"(bf)?16", precision) for precision in _trainer_precisions(src))


def _trainer_precisions(src: Source) -> list[str]:
    """The ``precision`` each Lightning ``Trainer`` of the file is given, as text (``16-mixed``, ``bf16-true``)."""
    given = (keyword(call, "precision") for call in src.calls("Trainer"))
    return [str(getattr(precision, "value", "")) for precision in given if precision is not None]


def _like_outputs(p: Provenance, value: ast.expr) -> bool:
    """A buffer made with the outputs' dtype: ``zeros_like(outputs[0, 0])``, ``logits.new_zeros``, ``dtype=o.dtype``."""
    if not isinstance(value, ast.Call):
        return False
    src, name, func = p.src, called(value), value.func
    if name in ("zeros_like", "empty_like", "full_like", "ones_like") and value.args:
        source = value.args[0]
    elif name in ("new_zeros", "new_full", "new_tensor", "new_empty") and isinstance(func, ast.Attribute):
        source = func.value
    elif keyword(value, "dtype") is not None and src.unparse(keyword(value, "dtype")).endswith(".dtype"):
        source = keyword(value, "dtype")
    else:
        return False
    return bool(_OUTPUTISH.search(src.unparse(source))) and not p.is_loss(source)


def _a_model(src: Source, node: ast.expr) -> bool:
    """A model: named like one, or built right there by a class (``nn.Sequential(...)``, ``Net()``)."""
    built = isinstance(node, ast.Call) and (called(node) or "")[:1].isupper()
    return built or bool(_MODELISH.search(src.unparse(node)))


def _half_model_scopes(src: Source) -> set[ast.AST]:
    """Where a model runs in half precision: the functions that call ``model.half()`` or
    ``net.to(torch.bfloat16)``; the whole file (the module) for a module-level call or a Lightning
    ``Trainer(precision="16-true")``."""
    scopes = set()
    for call in src.calls("half", "bfloat16", "to"):
        if not isinstance(call.func, ast.Attribute) or not _a_model(src, call.func.value):
            continue
        if called(call) != "to" or _HALF.search(src.unparse(call)):
            scopes.add(src.scope[call])
    if any(precision.endswith("-true") for precision in _trainer_precisions(src)):
        scopes.add(src.tree)
    return scopes


def _half_loss_added(src: Source, made: dict[str, list[ast.stmt]]) -> list[Finding]:
    """A half model's loss added without a cast to a Python number or to a float32/float64 tensor sum."""
    scopes, findings = _half_model_scopes(src), []
    if not scopes:
        return findings
    p = provenance(src)
    for key, value, stmt in src.additions:
        if not p.is_loss(value) or _CAST.search(src.unparse(value)) or not {src.scope[stmt], src.tree} & scopes:
            continue
        if any(isinstance(assign.value, ast.Call) for assign in made.get(key, ())):
            continue  # a tensor sum keeps its own dtype when added to in place
        evidence = f"`{src.quote(stmt)}`: the loss of a half-precision model, added as a tensor"
        findings.append(src.finding("half-precision-accumulator", stmt, evidence, HALF_SUM))
    return findings


def check_half_precision_accumulator(src: Source) -> list[Finding]:
    """A running sum created in float16/bfloat16, made like autocast outputs, or fed a half model's loss."""
    made, findings = _creations(src), []
    mixed = _mixed_precision(src)
    for key in dict.fromkeys(key for key, _, _ in src.additions):
        for assign in made.get(key, ()):
            value = assign.value
            if isinstance(value, ast.Call) and _HALF.search(src.unparse(value)):
                evidence = f"`{src.quote(assign)}`: a running sum created in half precision"
            elif mixed and _like_outputs(provenance(src), value):
                evidence = f"`{src.quote(assign)}`: a running sum with the outputs' dtype, half under autocast"
            else:
                continue
            findings.append(src.finding("half-precision-accumulator", assign, evidence, HALF_SUM))
    for call in src.calls("add_state"):
        default = call.args[1] if len(call.args) > 1 else keyword(call, "default")
        if default is not None and _HALF.search(src.unparse(default)):
            evidence = f"`{src.quote(call)}`: a state summed in half precision"
            findings.append(src.finding("half-precision-accumulator", call, evidence, HALF_SUM))
    return findings + _half_loss_added(src, made)
