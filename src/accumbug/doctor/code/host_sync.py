"""A read back to Python once per batch on a GPU (info: it costs time, the value is right).

A heuristic, like every code check (see ``accumbug.doctor.code``); the per-batch path comes from
``provenance.py``. What it looks for, and what it ignores:

``host-sync-per-step`` (info: a cost, not a wrong value)
    ``.item()``, ``.tolist()``, ``float(x)`` of a loss or of a tensor reduction (``.sum()``,
    ``.mean()``), or the old ``loss.data[0]``, in the code that runs once per batch: a step
    loop (whatever it iterates: a loader, ``tqdm``, ``range(max_iters)`` with ``get_batch()``),
    a same-file function that takes the step (``train_step``), or a Lightning
    ``training_step``/``validation_step``/``test_step``; only in a file that may run on a GPU:
    ``cuda``/``gpu``/``nccl``/``mps`` in its names or strings, ``torch.accelerator``, an
    ``Accelerator()``, or a model or batch moved ``.to(...)`` a device that is not stated to be
    the CPU (``.to(local_rank)``, a ``device`` passed in). One finding per loop or step, at its
    first sync. Ignored: files that only ever name the CPU, reads once per epoch, and reads every
    N steps (under ``if step % log_interval == 0``).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

from ..findings import Finding
from .provenance import Provenance, provenance
from .source import Source, and_more, called, keyword

_REDUCED = re.compile(r"\.(sum|mean|max|min|norm|std|var|count_nonzero)\(")
_GPU_WORDS = {"gpu", "mps", "xpu"}
_DTYPES = re.compile(r"float|half|double|bfloat|int\d|dtype|bool")

HOST_SYNC = ("costs time, not a wrong value: each .item()/float() waits for the GPU to finish the step "
             "(a host-device sync per batch), which stalls the queue of kernels; the value itself is right")


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


def _syncs(p: Provenance, node: ast.AST) -> bool:
    """``x.item()``, ``x.tolist()``, ``float(<loss or tensor reduction>)``, ``loss.data[0]``."""
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "data":
        return p.is_loss(node.value.value)
    if not isinstance(node, ast.Call):
        return False
    if isinstance(node.func, ast.Attribute) and node.func.attr in ("item", "tolist") and not node.args:
        return True
    return isinstance(node.func, ast.Name) and node.func.id == "float" and len(node.args) == 1 \
        and not isinstance(node.args[0], ast.Constant) \
        and (p.is_loss(node.args[0]) or bool(_REDUCED.search(p.src.unparse(node.args[0]))))


def _stated_cpu(p: Provenance, device: ast.expr) -> bool:
    """A device the file states is the CPU: ``"cpu"``, ``torch.device("cpu")``, a name assigned or defaulted so,
    an option whose default is (``parser.add_argument("--device", default="cpu")``, read as ``args.device``)."""
    values = [device, *p.assigned.get(p.src.unparse(device), [])]
    for func in p.src.of(ast.FunctionDef, ast.AsyncFunctionDef):
        names = [a.arg for a in func.args.args]
        values += [default for name, default in zip(reversed(names), reversed(func.args.defaults))
                   if isinstance(device, ast.Name) and name == device.id]
    if isinstance(device, ast.Attribute):
        values += [keyword(call, "default") for call in p.src.calls("add_argument") if keyword(call, "default")
                   and any(isinstance(a, ast.Constant) and str(a.value).lstrip("-").replace("-", "_") == device.attr
                           for a in call.args)]
    return any("cpu" in p.src.unparse(value) and "cuda" not in p.src.unparse(value) for value in values)


def _on_gpu(p: Provenance) -> bool:
    """Whether the file may run on a GPU: it names one, or moves things to a device it does not state is the CPU."""
    src = p.src
    if src.mentions("cuda") or src.mentions("nccl") or _GPU_WORDS & src.words or src.calls("Accelerator") \
            or any(src.unparse(node) == "torch.accelerator" for node in src.of(ast.Attribute)):
        return True
    for call in src.calls("to", "cuda"):
        device = call.args[0] if call.args else keyword(call, "device")
        if called(call) == "cuda" or device is not None and not _DTYPES.search(src.unparse(device)) \
                and not _stated_cpu(p, device):
            return True
    return False


def check_host_sync_per_step(src: Source) -> list[Finding]:
    """``.item()`` or ``float(tensor)`` once per batch, in a file that runs on a GPU (info: a cost)."""
    p = provenance(src)
    if not _on_gpu(p):
        return []
    findings, seen = [], set()
    for step in p.per_step_bodies():
        syncing = [stmt for stmt in _statements(step.body) if not p.periodic(stmt)
                   and any(_syncs(p, n) for part in _own_parts(stmt) for n in ast.walk(part))]
        if not syncing or syncing[0].lineno in seen:
            continue
        seen.add(syncing[0].lineno)
        more = and_more(len(syncing) - 1, "statement that syncs", "statements that sync")
        evidence = f"`{src.quote(syncing[0])}` in {p.describe(step)}{more}"
        findings.append(src.finding("host-sync-per-step", syncing[0], evidence, HOST_SYNC))
    return findings
