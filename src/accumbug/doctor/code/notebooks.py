"""A notebook's code cells, joined into one Python text whose line numbers say which cell they are in.

IPython magics (lines starting with ``%`` or ``!``) become ``pass`` lines, so line numbers
hold; a cell magic such as ``%%bash`` blanks its whole cell, while those that run Python
(``%%time``, ``%%capture``...) keep it.
"""

from __future__ import annotations

import json
import re

from ..findings import UnusableInput

_CELL_MAGICS_IN_PYTHON = {"time", "timeit", "capture", "prun", "debug"}


def _notebook_cells(text: str, path: str) -> list[str]:
    """The sources of a notebook's code cells, in order; ``UnusableInput`` if it is not nbformat 4 JSON."""
    try:
        notebook = json.loads(text)
    except ValueError as error:
        raise UnusableInput(f"{path!r}: not a Jupyter notebook (not JSON: {error})") from None
    cells = notebook.get("cells") if isinstance(notebook, dict) else None
    if not isinstance(cells, list) or notebook.get("nbformat") != 4:
        raise UnusableInput(f"{path!r}: not a Jupyter notebook (nbformat 4 JSON with a list of cells)")
    sources = []
    for index, cell in enumerate(cells):
        source = cell.get("source") if isinstance(cell, dict) else None
        if isinstance(source, list) and all(isinstance(line, str) for line in source):
            source = "".join(source)
        if not isinstance(source, str) or not isinstance(cell.get("cell_type"), str):
            raise UnusableInput(f"{path!r}: not a Jupyter notebook (cell {index + 1} has no cell_type or source)")
        if cell["cell_type"] == "code":
            sources.append(source)
    return sources


def _without_magics(source: str) -> list[str]:
    """A cell's lines with IPython magics as ``pass`` (same indentation); a non-Python cell magic blanks the cell."""
    lines = re.split(r"\r\n|\r|\n", source)  # Python's own line ends, not str.splitlines' (form feed...)
    if lines[-1] == "":
        lines.pop()
    if lines and lines[0].startswith("%%") and lines[0][2:].split(" ")[0] not in _CELL_MAGICS_IN_PYTHON:
        return [""] * len(lines)
    kept = []
    for line in lines:
        stripped = line.lstrip()
        kept.append(line[:len(line) - len(stripped)] + "pass" if stripped.startswith(("%", "!")) else line)
    return kept


def joined_code(text: str, path: str) -> tuple[str, list[int]]:
    """A notebook's code cells joined in order (magics as ``pass``), and the 1-based cell of each line."""
    lines: list[str] = []
    cell_of: list[int] = []
    for number, source in enumerate(_notebook_cells(text, path), start=1):
        cell_lines = _without_magics(source)
        lines += cell_lines
        cell_of += [number] * len(cell_lines)
    return "\n".join(lines) + "\n", cell_of
