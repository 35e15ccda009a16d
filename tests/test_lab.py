"""``accumbug.lab`` holds what the notebooks use as ``lab.NAME``, each under the name of its definition.

The notebooks' code cells are read as JSON (never run here): a ``lab`` name that no notebook
uses, or a notebook's ``lab.NAME`` that ``lab`` does not have, fails. A markdown cell may
mention ``lab.NAME`` only for a name ``lab`` has.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
from pathlib import Path

import pytest

from accumbug import lab

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted([*(ROOT / "notebooks").glob("*.ipynb"),
                    *(ROOT / "notebooks" / "exercises").rglob("*.ipynb")])
LAB_NAME = re.compile(r"(?<![\w/])lab\.([A-Za-z_]\w*)")  # not src/accumbug/lab.py
LAZY = {"Explorer"}  # imported on first use (ipywidgets)


def lab_names_in(cell_type: str) -> dict[str, set[str]]:
    """Each ``lab.NAME`` in the notebooks' cells of ``cell_type``, with the notebooks that write it."""
    found: dict[str, set[str]] = {}
    for path in NOTEBOOKS:
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] != cell_type:
                continue
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            for name in LAB_NAME.findall(source):
                if name != "py":  # the file, lab.py
                    found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def test_the_notebooks_are_found():
    assert len(NOTEBOOKS) >= 15 and {p.name for p in NOTEBOOKS} >= {"01_side_by_side_small.ipynb",
                                                                     "02_choose_the_accumulator.ipynb"}


def test_every_lab_name_is_used_by_a_notebook():
    unused = sorted(set(lab.__all__) - set(lab_names_in("code")))
    assert not unused, f"in accumbug.lab but used by no notebook's code: {', '.join(unused)}"


def test_every_name_a_notebook_uses_is_in_lab():
    for cell_type in ("code", "markdown"):
        missing = {name: sorted(where) for name, where in lab_names_in(cell_type).items()
                   if name not in lab.__all__}
        assert not missing, f"notebooks' {cell_type} cells name lab names that lab.__all__ lacks: {missing}"


def test_every_lab_name_is_there():
    eager = [name for name in lab.__all__ if name not in LAZY]
    assert not [name for name in eager if not hasattr(lab, name)]
    assert len(lab.__all__) == len(set(lab.__all__))


def test_the_explorer_is_listed_and_loaded_on_first_use():
    assert LAZY <= set(lab.__all__)
    pytest.importorskip("ipywidgets")
    assert lab.Explorer.__name__ == "Explorer"


def test_lab_renames_nothing():
    """A notebook reads the name a function, class or constant has where defined: no ``import X as Y``."""
    tree = ast.parse(Path(lab.__file__).read_text(encoding="utf-8"))
    renamed = [f"{alias.name} as {alias.asname}" for node in ast.walk(tree)
               if isinstance(node, ast.ImportFrom)
               for alias in node.names if alias.asname and alias.asname != alias.name]
    assert not renamed, f"lab.py imports under other names: {renamed}"
    named = {name: getattr(lab, name) for name in lab.__all__ if name not in LAZY}
    differing = {name: obj.__name__ for name, obj in named.items()
                 if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__name__ != name}
    assert not differing, f"lab names that differ from their definitions: {differing}"
