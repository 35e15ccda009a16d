"""Static checks of training code: the habits that make saved epoch metrics wrong, read from the source.

``check_python(text, path)`` parses a script with :mod:`ast` and ``check_notebook(text, path)``
does the same for a notebook's code cells, joined in order (IPython magics, lines starting
with ``%`` or ``!``, become ``pass`` lines, so line numbers hold; a cell magic such as
``%%bash`` blanks its whole cell: ``notebooks.py``). **Nothing is executed.** Each file is
parsed once and walked once (``source.py``); every check then reads the nodes of the kinds it
needs. ``06_check_your_own_run.ipynb`` runs them on the package's specimens.

Every check is a **heuristic**: it recognises a habit by where its values come from
(``provenance.py``: a loss is what is backpropagated or what a loss function returns, the
per-batch loop is the one that takes the step, a batch count is told from a sample count),
not by their names, and by the shapes the habit is written with. It reads one file at a
time: it can miss a habit whose parts live in other files, and it can flag code that is
right for a reason a static reader cannot see (a data set whose size, not stated in the
file, is a multiple of the batch size). Each finding quotes the
code it is about, so a reader can judge. ``CHECKS`` lists them by finding code, in the order
they run; each module's docstring says what its checks look for, and what they ignore:

``mean-of-batch-means`` (``batch_means.py``)
    A batch loss summed or listed as it is, then divided by a batch count or averaged; a meter fed one without n.
``half-precision-accumulator`` (``half_precision.py``)
    A running sum created in float16/bfloat16, made like autocast outputs, or fed a half model's loss.
``lossy-serialiser`` (``serialisers.py``)
    A writer that turns a non-finite or non-float value into a number.
``aliased-state``, ``read-after-reset`` (``resets.py``)
    A tracker's state zeroed in place while a history holds it; a tracker read right after its reset.
``unreduced-across-ranks``, ``padded-duplicates-counted`` (``ranks.py``)
    Rank 0's own metric saved as the epoch's; sample counts summed across ranks, padding repeats included.
``host-sync-per-step`` (``host_sync.py``; info: a cost, not a wrong value)
    ``.item()`` or ``float(tensor)`` once per batch, in a file that may run on a GPU.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import replace

from ..findings import Finding
from .batch_means import check_mean_of_batch_means
from .half_precision import check_half_precision_accumulator
from .host_sync import check_host_sync_per_step
from .notebooks import joined_code
from .ranks import check_padded_duplicates_counted, check_unreduced_across_ranks
from .resets import check_aliased_state, check_read_after_reset
from .serialisers import check_lossy_serialiser
from .source import Source, parse

__all__ = ["CHECKS", "check_notebook", "check_python"]

CHECKS: dict[str, Callable[[Source], list[Finding]]] = {
    "mean-of-batch-means": check_mean_of_batch_means,
    "half-precision-accumulator": check_half_precision_accumulator,
    "lossy-serialiser": check_lossy_serialiser,
    "aliased-state": check_aliased_state,
    "read-after-reset": check_read_after_reset,
    "unreduced-across-ranks": check_unreduced_across_ranks,
    "padded-duplicates-counted": check_padded_duplicates_counted,
    "host-sync-per-step": check_host_sync_per_step,
}


def _run_checks(text: str, path: str, tree: ast.Module) -> list[Finding]:
    src = Source(text, path, tree)
    findings = [finding for check in CHECKS.values() for finding in check(src)]
    unique = {(f.code, f.line, f.evidence): f for f in findings}
    return sorted(unique.values(), key=lambda f: (f.line or 0, f.code))


def check_python(text: str, path: str) -> list[Finding]:
    """Every finding in a Python script, read statically (never executed), each with its 1-based line.

    A text that is not valid Python raises ``UnusableInput`` naming the error and its line.
    """
    text = text.removeprefix("\ufeff")  # a byte-order mark read as text
    return _run_checks(text, path, parse(text, path))


def check_notebook(text: str, path: str) -> list[Finding]:
    """Every finding in a notebook's code cells, joined in order; ``line`` counts in the joined code.

    Each finding's evidence starts with ``cell N`` (the 1-based index among code cells).
    IPython magics are read as ``pass``. Not nbformat 4 JSON, or not valid Python: ``UnusableInput``.
    """
    code, cell_of = joined_code(text, path)
    tree = parse(code, path, lambda line: f", cell {cell_of[min(line, len(cell_of)) - 1]}" if cell_of else "")
    return [replace(f, evidence=f"cell {cell_of[f.line - 1]}: {f.evidence}") if f.line else f
            for f in _run_checks(code, path, tree)]
