"""docs/architecture.md names paths and names; each must exist where the page says.

The page is the map a maintainer reads before changing the code, so a wrong path on it
costs time. These tests read it as text:

* every file or folder in the layout block exists in the folder its section names;
* every path written in backticks elsewhere exists (relative to the checkout or to
  ``src/accumbug/``; ``<placeholder>`` parts match at least one file);
* every "``NAME`` in ``path``", "``NAME`` of ``path``" and "``path`` (``NAME``)" names
  something that the file defines or mentions.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "architecture.md"
PACKAGE = ROOT / "src" / "accumbug"
RECORDED = PACKAGE / "lessons" / "recorded" / "full-cpu"  # a run folder, the page's example of one
SUFFIXES = (".py", ".md", ".json", ".toml", ".cfg", ".ipynb", ".yml", ".png", ".pt", ".log")


def _text() -> str:
    return PAGE.read_text(encoding="utf-8")


def layout_entries(text: str) -> list[tuple[Path, str]]:
    """``(folder, name)`` for every name listed in the first fenced block of the page (the layout).

    A line that starts at column 0 with a path ending in ``/`` sets the folder; an indented
    ``name/`` line opens a subfolder for the lines indented deeper than it. Before the
    description (two or more spaces, then words), a line lists names separated by spaces.
    """
    block = text.split("```", 2)[1]
    found, folder, nested = [], None, []
    for line in block.splitlines()[1:]:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        names = re.split(r"\s{2,}", line.strip())
        if indent == 0:
            folder, nested = ROOT / names[0].split()[0], []
            found.append((folder.parent, folder.name))
            continue
        nested = [(depth, path) for depth, path in nested if depth < indent]
        base = nested[-1][1] if nested else folder
        listed = [n for n in (names[:-1] if len(names) > 1 else names) if re.fullmatch(r"[\w.*-]+/?", n)]
        for name in listed:
            found.append((base, name.rstrip("/")))
            if name.endswith("/"):
                nested.append((indent, base / name.rstrip("/")))
    return found


def _resolve(path: str) -> list[Path]:
    """Where a path written on the page may be: the checkout, the package, or (``run/...`` and the
    file names of the run folder) the recorded run; placeholders as globs."""
    pattern = re.sub(r"<[^>]+>", "*", path.rstrip("/")).removeprefix("run/")
    hits = []
    for base in (ROOT, PACKAGE, RECORDED, *RECORDED.glob("epoch-*")):
        hits += list(base.glob(pattern)) if "*" in pattern else [base / pattern] if (base / pattern).exists() else []
    pieces = [piece for piece in pattern.split("*") if piece]
    layout = (PACKAGE / "runfolder.py").read_text(encoding="utf-8")
    if not hits and pieces and all(f'"{piece}' in layout or f'{piece}"' in layout for piece in pieces):
        hits.append(PACKAGE / "runfolder.py")  # a name the run folder's layout spells (checkpoint.pt, .partial-<hex>)
    return hits


def backticked_paths(text: str) -> list[str]:
    """Backticked words that are paths: with a ``/`` and no space, or a file name with a known suffix."""
    found = []
    for word in re.findall(r"`([^`\s]+)`", text):
        if word.startswith(("-", "python", "http")) or "=" in word or "(" in word:
            continue
        if word.endswith(SUFFIXES) or ("/" in word and re.fullmatch(r"[\w./<>*-]+", word)):
            found.append(word)
    return found


def named_in(text: str) -> list[tuple[str, str]]:
    """``(name, path)`` pairs the page states: "`NAME` in `path`", "`NAME` of `path`", "`path` (`NAME`)"."""
    pairs = [(name, path) for name, path in re.findall(r"`(\w+)` (?:in|of) (?:the \S+ of )?`([\w./-]+\.\w+)`", text)]
    pairs += [(name, path) for path, name in re.findall(r"`([\w./-]+\.py)` \(`(\w+)`", text)]
    return pairs


def test_the_parsers_find_what_the_page_writes():
    text = "```\nsrc/x/   the x\n  a.py  b.py   two\n  sub/   more\n    c.py   three\n```\n" \
           "`lessons/plots.py` (`TRACKER_COLOURS`) and `WILD_MODULES` of `notebooks/conftest.py`; `--tracker`\n"
    assert layout_entries(text) == [(ROOT / "src", "x"), (ROOT / "src/x", "a.py"), (ROOT / "src/x", "b.py"),
                                    (ROOT / "src/x", "sub"), (ROOT / "src/x/sub", "c.py")]
    assert backticked_paths(text) == ["lessons/plots.py", "notebooks/conftest.py"]
    assert named_in(text) == [("WILD_MODULES", "notebooks/conftest.py"), ("TRACKER_COLOURS", "lessons/plots.py")]


@pytest.mark.parametrize("folder, name", layout_entries(_text()), ids=lambda v: str(v))
def test_every_file_of_the_layout_exists(folder, name):
    assert list(folder.glob(name)), f"docs/architecture.md lists {name} in {folder.relative_to(ROOT)}; it is not there"


@pytest.mark.parametrize("path", sorted(set(backticked_paths(_text()))))
def test_every_path_the_page_names_exists(path):
    assert _resolve(path), f"docs/architecture.md names `{path}`; no such file or folder"


@pytest.mark.parametrize("name, path", named_in(_text()), ids=lambda v: str(v))
def test_every_name_is_where_the_page_says(name, path):
    files = _resolve(path)
    assert files, f"docs/architecture.md names `{path}`; no such file"
    assert any(re.search(rf"\b{name}\b", f.read_text(encoding="utf-8")) for f in files), \
        f"docs/architecture.md says `{name}` is in `{path}`; it is not"
