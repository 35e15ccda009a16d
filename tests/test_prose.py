"""Every number the prose states is a number an output beside it shows.

Notebooks: each number in a markdown cell (decimals, and integers of 100 or more) must appear in the
notebook's stored outputs, or in the outputs of another notebook (or of its "section N", or of "the cell
with `...`") that the same paragraph names, or be a quote of the incident's write-up (the lines
``lessons/incident.py`` quotes), or be one of the named constants below, each taken from the package or
torch and listed with its reason. ``docs/incident.md``: every number, counts included, that a claim's
verdict and measurement quote appears in the stored output of the one notebook cell the claim cites.
README: every number appears in a source named in the same paragraph or table row (a notebook, one of its
sections or cells, or a file of the repository). Quick tier: these read JSON and text, and run nothing.

A prose number matches an output number with the same digits, or one with more decimals that rounds
(half up) to exactly it. A sign the prose writes must match; an unsigned number matches either sign.
Separators (136,312), percent signs and "x"/"×" after a number are not part of it. Not numbers: digits
inside names (``float16``, ``epoch-0001``, ``03_what_really_breaks``), versions (2.13.0,
``torch>=2.3``), numbers of standards (RFC 6901), years, and cell indices ("cell 12", "cells 22-24").
Cells are counted from 0, as in the notebook's JSON.
"""

from __future__ import annotations

import html
import json
import math
import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
import torch
from torch import nn

from accumbug.data import PRESETS
from accumbug.lessons import incident
from accumbug.lessons.exercises import EXACT_WITHIN
from accumbug.lessons.plots import ZOOM_BATCHES

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
NOTEBOOK_PATHS = sorted([*NOTEBOOKS.glob("*.ipynb"), *NOTEBOOKS.glob("exercises/*.ipynb"),
                         *NOTEBOOKS.glob("exercises/solutions/*.ipynb")])

# a number: optional sign, digits (with thousands separators), decimals, exponent; not part of a name, a path,
# a version string or a longer number
PROSE_NUMBER = re.compile(r"(?<![\w.,/\\#:-])([-+−±]?)(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?"
                          r"(e[-+]?\d+)?(?![\w/\\]|\.\d|,\d{3})")
OUTPUT_NUMBER = re.compile(r"([-+−]?)(\d{1,3}(?:,\d{3})+(?!\d)|\d+)(\.\d+)?(e[-+]?\d+)?")
# a version requirement or the number of a standard: a name, not a value
NAME_BEFORE = re.compile(r"(?:(?:[<>]=?|[=~!]=)|\b(?:Python|torch|version|RFC|PEP|IEEE|ISO)\s*[≥≤<>=]*\s*)$")
CELL_POINTER = re.compile(r"\bcells?\s+(?:\d+\s*(?:,|–|-|and|to|or)\s*)*$")
LINK_TARGET = re.compile(r"\]\([^)]*\)")
HTML_TAG = re.compile(r"<[^>]+>")
SENTENCE_END = re.compile(r"(?<=[.!?:])\s+(?=[A-Z`*(\[])|\n\s*\n|\n(?=\s*[*|#-])")


@dataclass(frozen=True)
class Number:
    """A number as written: its value, how many decimals it shows, whether it carries a sign, and where."""

    text: str
    value: Decimal
    decimals: int
    signed: bool
    start: int = 0

    def matches(self, other: Number) -> bool:
        """``other`` shows this number: the same digits, or more decimals that round (half up) to exactly it."""
        if other.decimals < self.decimals:
            return False
        shown = other.value if self.signed else abs(other.value)
        mine = self.value if self.signed else abs(self.value)
        if self.decimals == other.decimals:
            return shown == mine
        return shown.quantize(Decimal(1).scaleb(-self.decimals), rounding=ROUND_HALF_UP) == mine


def _number(match: re.Match) -> Number:
    sign, whole, fraction, exponent = match.groups()
    sign = "-" if sign in ("−", "-") else ("" if sign == "±" else sign)
    value = Decimal(f"{sign}{whole.replace(',', '')}{fraction or ''}{exponent or ''}")
    decimals = len(fraction) - 1 if fraction else 0
    if exponent:
        decimals = max(decimals - int(exponent[1:]), 0)
    return Number(match.group(0), value, decimals, bool(sign), match.start())


def output_numbers(text: str) -> list[Number]:
    """Every number in output text, leniently: digits next to letters count too (``loss=9.1621``, ``2.4x``)."""
    return [_number(match) for match in OUTPUT_NUMBER.finditer(text)]


def _is_year(number: Number) -> bool:
    return number.decimals == 0 and "," not in number.text and 1900 <= number.value <= 2099


def prose_numbers(text: str, smallest: int = 100) -> list[Number]:
    """The numbers a reader is told: decimals and integers of ``smallest`` or more, not years, not cell indices, not
    the digits of a link target."""
    text = LINK_TARGET.sub(lambda m: " " * len(m.group(0)), text)
    found = []
    for match in PROSE_NUMBER.finditer(text):
        number = _number(match)
        pointer = not number.decimals and CELL_POINTER.search(text[max(0, match.start() - 40):match.start()])
        name = NAME_BEFORE.search(text[max(0, match.start() - 10):match.start()])
        if pointer or name or _is_year(number):
            continue
        if number.decimals or "e" in number.text or abs(number.value) >= smallest:
            found.append(number)
    return found


def sentence(text: str, at: int) -> str:
    """The sentence (or table row, or list item) of ``text`` around position ``at``, on one line."""
    starts = [m.end() for m in SENTENCE_END.finditer(text, 0, at)]
    end = SENTENCE_END.search(text, at)
    words = " ".join(text[starts[-1] if starts else 0:end.start() if end else len(text)].split())
    return words if len(words) <= 200 else words[:197] + "..."


def cell_output_text(cell: dict) -> str:
    """What a code cell shows: stream text, text/plain, and text/html without its tags."""
    parts = []
    for output in cell.get("outputs", []):
        data = output.get("data", {})
        parts += [output.get("text", ""), data.get("text/plain", ""),
                  html.unescape(HTML_TAG.sub(" ", "".join(data.get("text/html", ""))))]
    return "\n".join("".join(part) if isinstance(part, list) else part for part in parts)


def load_cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _quoted_text() -> str:
    """Every line of the write-up that ``incident.py`` quotes."""
    lines = [*incident.INCIDENT_CONSOLE_LOG, incident.INCIDENT_SAVED_LINE, incident.INCIDENT_AFTER_LINE]
    return "\n".join(lines + [line for quote in incident.WRITE_UP_QUOTES.values() for line in quote])


WRITE_UP_NUMBERS = output_numbers(_quoted_text())


def _float16_limits() -> dict[float, str]:
    """float16's largest value, the sum that rounds to ``inf``, and the powers of two from 2,048 to 65,536, where its
    spacing doubles (an addend under half the spacing rounds away), from ``torch.finfo``."""
    largest = torch.finfo(torch.float16).max
    below = torch.nextafter(torch.tensor(largest, dtype=torch.float16), torch.tensor(0.0, dtype=torch.float16))
    limits = {largest: "float16's largest finite value (torch.finfo)",
              largest + (largest - below.item()) / 2: "float16's largest value plus half its spacing: rounds to inf"}
    for power in range(11, 17):
        spacing = 2.0 ** power * torch.finfo(torch.float16).eps
        limits[2.0 ** power] = f"2**{power}, where float16's spacing becomes {spacing:.0f}"
    return limits


def _constants() -> dict[float, str]:
    """Numbers prose may state without an output beside them, each taken from the package or torch, with its
    reason."""
    named = {**_float16_limits(),
             torch.finfo(torch.float32).eps: "float32's relative precision (torch.finfo)",
             nn.CrossEntropyLoss().ignore_index: "CrossEntropyLoss's ignore_index, the label of a padding token",
             math.log(incident.INCIDENT_CLASSES): "ln 7120: the loss of a uniform guess over the incident's classes",
             ZOOM_BATCHES: "the batches the trajectory figure's zoomed panel shows (lessons.plots.ZOOM_BATCHES)",
             EXACT_WITHIN: "what the exercises' checks call equal to the exact loss (lessons.exercises.EXACT_WITHIN)"}
    for name, spec in PRESETS.items():
        named.setdefault(spec.samples, f"the {name} preset's samples (accumbug.data.PRESETS)")
        named.setdefault(spec.classes, f"the {name} preset's classes")
        named.setdefault(spec.batches_per_epoch, f"the {name} preset's batches per epoch")
    whole_batches = incident.INCIDENT_SAMPLES // incident.INCIDENT_BATCH_SIZE
    named.setdefault(whole_batches * incident.INCIDENT_BATCH_SIZE, "the incident's samples in full batches of 16")
    return named


CONSTANTS = _constants()
CONSTANT_NUMBERS = output_numbers("\n".join(repr(float(value)) for value in CONSTANTS))


def unexplained(number: Number, shown: list[Number]) -> bool:
    """``number`` is in none of ``shown``, the write-up's quotes and the named constants."""
    return not any(number.matches(other) for other in (*shown, *WRITE_UP_NUMBERS, *CONSTANT_NUMBERS))


NOTEBOOK_NAMED = re.compile(r"(?:notebooks/)?(?:exercises/(?:solutions/)?)?(\d\d)_\w+\.ipynb|\bnotebook\s+(\d\d)\b"
                            r"|`(\d\d)`")
SECTION_NAMED = re.compile(r"^[`,]?\s*,?\s*section\s+(\d+)")
CELL_NAMED = re.compile(r"the cell (?:that prints|with) `([^`]+)`")
FILE_NAMED = re.compile(r"`([\w./-]+\.\w+)`|\]\(([\w./-]+\.\w+)(?:#[\w-]*)?\)")


def _main_notebook(number: str) -> Path | None:
    return next((path for path in sorted(NOTEBOOKS.glob(f"{number}_*.ipynb"))), None)


def section_cells(cells: list[dict], section: str) -> list[dict]:
    """The cells from the heading "## N." (or "## N ") to the next heading of that level."""
    start = re.compile(rf"^##\s+{section}[.\s]")
    inside, found = False, []
    for cell in cells:
        heading = cell["cell_type"] == "markdown" and "".join(cell["source"]).lstrip().startswith("## ")
        if heading:
            inside = bool(start.match("".join(cell["source"]).lstrip()))
        if inside:
            found.append(cell)
    return found


def _notebook_sources(block: str) -> list[str]:
    """The output text of every notebook (or section of one, or cell of one) ``block`` names."""
    texts = []
    for match in NOTEBOOK_NAMED.finditer(block):
        path = NOTEBOOKS / match.group(0).removeprefix("notebooks/") if match.group(1) else \
            _main_notebook(match.group(2) or match.group(3))
        if path is None or not path.exists():
            continue
        cells = load_cells(path)
        section = SECTION_NAMED.match(block[match.end():])
        cited = CELL_NAMED.search(block[match.end():])
        if cited:
            cells = [cell for cell in cells if cited.group(1) in "".join(cell["source"])]
        elif section:
            cells = section_cells(cells, section.group(1))
        texts += [cell_output_text(cell) for cell in cells if cell["cell_type"] == "code"]
    return texts


def named_sources(block: str) -> list[Number]:
    """The numbers shown by the sources ``block`` names: notebooks' outputs, and files of the repository."""
    texts = _notebook_sources(block)
    for match in FILE_NAMED.finditer(block):
        path = ROOT / (match.group(1) or match.group(2))
        if path.is_file() and path.suffix != ".ipynb":
            texts.append(path.read_text(encoding="utf-8"))
    return output_numbers("\n".join(texts))


def blocks(text: str) -> list[tuple[int, str]]:
    """``text`` as paragraphs, list items and table rows, each with its offset: a source named in one covers the
    numbers in it."""
    found, offset = [], 0
    for part in re.split(r"(\n\s*\n|\n(?=\s*(?:[*|-]|\d+\.)\s))", text):
        if part.strip() and not re.fullmatch(r"\n\s*\n|\n", part):
            found.append((offset, part))
        offset += len(part)
    return found


def prose_violations(text: str, shown: list[Number]) -> list[tuple[Number, str]]:
    """Every number of ``text`` that neither ``shown`` nor a source its paragraph names shows, with its sentence."""
    found = []
    for offset, block in blocks(text):
        numbers = [number for number in prose_numbers(block) if unexplained(number, shown)]
        if numbers:
            sources = named_sources(block)
            found += [(number, sentence(text, offset + number.start)) for number in numbers
                      if unexplained(number, sources)]
    return found


def notebook_violations(path: Path) -> list[str]:
    """Every number in ``path``'s markdown that its outputs, the sources its paragraph names, the write-up and the
    constants do not show: ``cell N: number -- sentence``."""
    cells = load_cells(path)
    shown = output_numbers("\n".join(cell_output_text(cell) for cell in cells if cell["cell_type"] == "code"))
    return [f"cell {index}: {number.text.strip()} -- {words}"
            for index, cell in enumerate(cells) if cell["cell_type"] == "markdown"
            for number, words in prose_violations("".join(cell["source"]), shown)]


def _name(path: Path) -> str:
    return path.relative_to(NOTEBOOKS).as_posix()


@pytest.mark.parametrize("path", NOTEBOOK_PATHS, ids=_name)
def test_every_number_in_a_notebooks_prose_is_in_its_outputs(path):
    found = notebook_violations(path)
    assert not found, (f"notebooks/{_name(path)}: {len(found)} number(s) in the markdown that no stored output "
                       "shows (nor the write-up's quotes, nor a named constant):\n  " + "\n  ".join(found))


def _claims(markdown: str) -> dict[str, str]:
    """``docs/incident.md`` per claim: ``{"Claim N": its section}``."""
    return {part.split(":", 1)[0]: part for part in re.split(r"\n## (?=Claim \d+:)", markdown)[1:]}


def _claim_line(section: str, label: str) -> str:
    return next((line for line in section.splitlines() if line.startswith(f"- **{label}")), "")


def incident_violations(markdown: str) -> list[str]:
    """Every number, counts of any size included, that a claim's verdict and measurement quote in
    ``docs/incident.md`` and the stored output of the notebook cell it cites does not show: a measurement is
    quoted whole, so neither the write-up's quotes nor the named constants excuse a number here."""
    found = []
    for claim, section in _claims(markdown).items():
        pointer = _claim_line(section, "Notebook:")
        shown = output_numbers("\n".join(_notebook_sources(pointer)))
        for label in ("Verdict:", "Measured:"):
            line = _claim_line(section, label)
            found += [f"{claim}: {number.text.strip()} -- {sentence(line, number.start)}"
                      for number in prose_numbers(line, smallest=0) if not any(map(number.matches, shown))]
    return found


def test_every_number_incident_md_quotes_is_in_the_cell_it_cites():
    found = incident_violations((ROOT / "docs" / "incident.md").read_text(encoding="utf-8"))
    assert not found, ("docs/incident.md: numbers its claims quote that the cited notebook cell's stored output "
                       "does not show (write the page with `python -m accumbug audit`; the pointers are in "
                       "src/accumbug/lessons/audit.py):\n  " + "\n  ".join(found))


def cited_cells(pointer: str) -> list[tuple[str, int]]:
    """The (notebook, index) of every code cell a "Notebook:" line's "the cell with `...`" finds."""
    name, cited = NOTEBOOK_NAMED.search(pointer), CELL_NAMED.search(pointer)
    path = NOTEBOOKS / name.group(0).removeprefix("notebooks/")
    return [(path.name, index) for index, cell in enumerate(load_cells(path))
            if cell["cell_type"] == "code" and cited.group(1) in "".join(cell["source"])]


def test_every_claim_in_incident_md_cites_exactly_one_notebook_cell():
    claims = _claims((ROOT / "docs" / "incident.md").read_text(encoding="utf-8"))
    assert len(claims) == 13
    for claim, section in claims.items():
        pointer = _claim_line(section, "Notebook:")
        assert NOTEBOOK_NAMED.search(pointer) and CELL_NAMED.search(pointer), (claim, pointer)
        assert len(cited_cells(pointer)) == 1, (claim, pointer, cited_cells(pointer))


def readme_violations(markdown: str) -> list[str]:
    """Every number in the README that no source named in its paragraph or table row shows."""
    return [f"{number.text.strip()} -- {words}" for number, words in prose_violations(markdown, [])]


def test_every_number_in_the_readme_is_in_a_source_it_names():
    found = readme_violations((ROOT / "README.md").read_text(encoding="utf-8"))
    assert not found, ("README.md: numbers that no source named beside them shows (name the notebook, its section "
                       "or cell, or the recorded file in the same paragraph or table row):\n  " + "\n  ".join(found))


@pytest.mark.parametrize("text, numbers", [
    ("loss=9.1621 after 8,520 batches (-0.22 %) in 2026", ["9.1621", "8,520", "-0.22"]),
    ("`float16` overflows at 65,504; `epoch-0001` of `03_what_really_breaks`", ["65,504"]),
    ("torch 2.13.0, 03 cell 17 and cells 22–24, cell 104, 2.4× and 1e-12", ["2.4", "1e-12"]),
    ("[link](docs/figures/x-100.png) at 99 and 100", ["100"]),
    ("Python ≥ 3.10 and `torch>=2.3,<3` at 0.5; RFC 6901 and IEEE 754", ["0.5"]),
])
def test_prose_numbers_are_read_as_a_reader_reads_them(text, numbers):
    assert [number.text.strip() for number in prose_numbers(text)] == numbers


@pytest.mark.parametrize("prose, output, shown", [
    ("9.16", "loss=9.1624", True),
    ("9.163", "loss=9.1624", False),
    ("9.1624", "9.16", False),  # fewer decimals in the output than in the prose
    ("-0.22 %", "-0.22%", True),
    ("+0.22", "-0.22", False),
    ("0.22", "-0.22", True),
    ("136,312", "samples=136312", True),
    ("2.4×", "ratio 2.4x", True),
    ("1,248,942", "loss_sum= 1,248,941.9", True),
])
def test_a_prose_number_matches_an_output_only_with_the_same_digits(prose, output, shown):
    assert (not unexplained(prose_numbers(prose)[0], output_numbers(output))) is shown
