"""What the README and docs/ say by hand, checked against the code that says it first.

A list kept by hand drifts: these tests tie each one to its registry or to the command that
prints it. The doctor's finding codes (docs/doctor.md) against the doctor's vocabulary; the
doctor's output on the incident's files against what it prints today; every row of the
bad-input table (docs/reliability.md, section 4) against the message its command prints;
every tracker name in the README and docs/ against the tracker registry; the README's
numbers from ``reproduce`` against its output; every relative link against the files and
headings it points to.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from test_bad_inputs import (  # the damage test_bad_inputs does, reused for the table's rows
    committed,
    corrupt_checkpoint,
    corrupt_commit,
    corrupt_config,
    edit_history,
    remove_checkpoint,
    remove_commit,
    snapshot,
    truncate_checkpoint,
    truncate_history,
)

from accumbug.cli import main
from accumbug.doctor.findings import FINDING_CODES
from accumbug.registry import TRACKER_KINDS, make_tracker

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PAGES = [README, ROOT / "data" / "README.md", *sorted(DOCS.glob("*.md"))]
ERROR = "accumbug: error: "


def section(path: Path, heading: str) -> str:
    """The text under the markdown heading ``heading`` (any level), up to the next heading of that level or above."""
    lines = path.read_text(encoding="utf-8").splitlines()
    fenced, inside = [], False  # a "# comment" in a code block is no heading
    for line in lines:
        inside ^= line.startswith("```")
        fenced.append(inside or line.startswith("```"))
    for start, line in enumerate(lines):
        match = re.match(r"(#+) (.*)", line)
        if match and not fenced[start] and match.group(2).strip() == heading:
            level = len(match.group(1))
            body = []
            for following, in_code in zip(lines[start + 1:], fenced[start + 1:]):
                other = re.match(r"(#+) ", following)
                if other and not in_code and len(other.group(1)) <= level:
                    break
                body.append(following)
            return "\n".join(body)
    raise AssertionError(f"{path.name}: no heading {heading!r}")


def outside_fences(text: str) -> str:
    """``text`` without its fenced code blocks."""
    return re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)


# --- the notebooks ---------------------------------------------------------------------------------


def test_the_readme_lists_every_notebook_and_only_those():
    """The README's notebooks table has one row per notebook in notebooks/, and each row's file exists."""
    table = section(README, "Notebooks")
    rows = re.findall(r"^\| `(notebooks/[^`]+)` \|", table, flags=re.MULTILINE)
    notebooks = sorted(f"notebooks/{p.name}" for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert [row for row in rows if row.endswith(".ipynb")] == notebooks
    assert all((ROOT / row).exists() for row in rows)


# --- the doctor ------------------------------------------------------------------------------------


def test_doctor_codes_listed_are_the_vocabulary():
    """docs/doctor.md lists every code, in the registry's order, with its severity and meaning."""
    text = section(DOCS / "doctor.md", "Finding codes")
    bullets = re.findall(r"^- `([^`]+)` \((\w+)\): (.*?)(?=^- |^\s*$|\Z)", text + "\n", flags=re.MULTILINE | re.DOTALL)
    listed = [(code, severity, " ".join(meaning.split())) for code, severity, meaning in bullets]
    assert listed == [(code, entry.severity, entry.meaning) for code, entry in FINDING_CODES.items()]


def test_doctor_example_is_what_the_doctor_prints(capsys, monkeypatch):
    """The output shown in docs/doctor.md is what the doctor prints today for that command, byte for byte."""
    text = section(DOCS / "doctor.md", "The incident's own files")
    block = re.search(r"^```\n\$ python -m accumbug (.*?)\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    assert block, "docs/doctor.md: no ```$ python -m accumbug ...``` block"
    monkeypatch.chdir(ROOT)  # the command's paths are relative to the checkout, as shown
    assert main(block.group(1).split()) == 1  # 1: something was found
    assert capsys.readouterr().out == block.group(2)


# --- the bad-input table -----------------------------------------------------------------------------


def bad_input_rows() -> list[tuple[str, str]]:
    """(input, message) for each row of the table in docs/reliability.md, section 4."""
    rows = []
    for line in section(DOCS / "reliability.md", "4. Bad input").splitlines():
        cells = re.fullmatch(r"\| (.+?) \| `(.+)` \|", line)
        if cells and cells.group(1) != "input":
            rows.append((cells.group(1), cells.group(2)))
    return rows


def remove_history(out: Path):
    committed(out, "history-exact.json").unlink()


def edit_console(out: Path):
    path = committed(out, "console.log")
    path.write_text(path.read_text() + "edited\n")


RESUME_DAMAGE = {  # the table's "--resume <what>" rows: the damage, then the extra arguments
    "`--resume` corrupt checkpoint": (corrupt_checkpoint, []),
    "`--resume` truncated checkpoint": (truncate_checkpoint, []),
    "`--resume` checkpoint deleted": (remove_checkpoint, []),
    "`--resume` truncated history": (truncate_history, ["--epochs", "3"]),
    "`--resume` history deleted": (remove_history, ["--epochs", "3"]),
    "`--resume` history edited by hand": (edit_history, ["--epochs", "3"]),
    "`--resume` `console.log` edited by hand": (edit_console, ["--epochs", "3"]),
    "`--resume` without `commit.json` (no epoch committed)": (remove_commit, ["--epochs", "3"]),
    "`--resume` corrupt `commit.json`": (corrupt_commit, []),
    "`--resume` corrupt `config.json`": (corrupt_config, []),
}
TINY = ["--preset", "tiny", "--epochs", "1", "--no-progress", "--tracker", "exact"]


@pytest.fixture(scope="module")
def pristine_run(tmp_path_factory):
    """A finished 2-epoch tiny run with the exact tracker (the table's DIR)."""
    out = tmp_path_factory.mktemp("pristine") / "done"
    assert main(["run", *TINY, "--samples", "256", "--classes", "16", "--epochs", "2", "--out", str(out)]) == 0
    return out


def arguments(row: str, tmp: Path, pristine: Path) -> list[str]:
    """The command line for a row of the table, with its folder made under ``tmp`` (the table's TMP)."""
    done = tmp / "done"
    if row in RESUME_DAMAGE:
        damage, extra = RESUME_DAMAGE[row]
        shutil.copytree(pristine, done)
        damage(done)
        return ["run", "--no-progress", "--resume", str(done), *extra]
    if row == "`--resume` missing folder":
        return ["run", "--resume", str(tmp / "nowhere")]
    if row == "`--out` below a file (unwritable)":
        (tmp / "f").write_text("x")
        return ["run", *TINY, "--out", str(tmp / "f" / "run")]
    if row == "`--out` an existing run":
        shutil.copytree(pristine, done)
        return ["run", *TINY, "--out", str(done)]
    if row == "`audit --reference` a folder that is not a run":
        return ["audit", "--reference", str(tmp / "nowhere"), "--claims", str(tmp / "claims.md")]
    if row == "`audit --claims` a folder":
        return ["audit", "--claims", str(tmp)]
    resumed = re.fullmatch(r"`--resume DIR (.+)`(?: \(.*\))?", row)
    if resumed:
        shutil.copytree(pristine, done)
        return ["run", "--no-progress", "--resume", str(done), *resumed.group(1).split()]
    new_run = re.fullmatch(r"`(--[\w-]+ \S+)`(?: \(.*\))?", row)
    if new_run:
        return ["run", *TINY, "--out", str(tmp / "out"), *new_run.group(1).split()]
    raise AssertionError(f"docs/reliability.md: no command known for the row {row!r}; add one to tests/test_docs.py")


def as_pattern(message: str) -> str:
    """The table's message as a regex: ``...`` stands for any text."""
    return ".*".join(re.escape(part) for part in message.split("..."))


ROWS = bad_input_rows()


def test_the_bad_input_table_has_its_rows():
    inputs = [row for row, _ in ROWS]
    assert len(inputs) >= 30 and len(set(inputs)) == len(inputs)
    assert set(RESUME_DAMAGE) <= set(inputs)


@pytest.mark.parametrize("row, message", ROWS, ids=[row for row, _ in ROWS])
def test_bad_input_table_row_is_what_the_cli_prints(tmp_path, capsys, monkeypatch, pristine_run, row, message):
    """Each row's message is the line its command prints, word for word (``...`` for what varies)."""
    monkeypatch.chdir(tmp_path)
    command = arguments(row, tmp_path, pristine_run)
    before = snapshot(tmp_path)
    assert main(command) == 2
    err = capsys.readouterr().err
    assert err.startswith(ERROR) and err.count("\n") == 1, err
    printed = err[len(ERROR):-1].replace(str(tmp_path), "TMP")
    assert re.fullmatch(as_pattern(message), printed), f"the table says\n  {message}\nthe CLI prints\n  {printed}"
    assert snapshot(tmp_path) == before  # nothing written, nothing changed


# --- tracker names ---------------------------------------------------------------------------------

TRACKER_NAME = re.compile(r"(?:exact(?:-[a-z]+)?|incident-[a-z]+|naive-[a-z0-9-]+|in-place-mean[a-z-]*"
                          r"|tensor-loss[a-z-]*)(?::[A-Za-z0-9]+)?")
PLACEHOLDERS = (":ACC", ":ACCUMULATOR")


def tracker_names(path: Path) -> list[str]:
    """Every tracker name written in ``path``: code spans, table cells and ``--tracker X`` in code."""
    text = path.read_text(encoding="utf-8")
    if path.name == "reliability.md":  # its bad-input table names wrong trackers on purpose (tested above)
        text = text.replace(section(path, "4. Bad input"), "")
    names = re.findall(r"--tracker[ =]([^\s`\]]+)", text)
    prose = outside_fences(text)
    for span in re.findall(r"`([^`\n]+)`", prose):
        span = span.removeprefix("--tracker ").strip()
        if TRACKER_NAME.fullmatch(span):
            names.append(span)
    for line in prose.splitlines():
        if line.startswith("|"):
            names.extend(cell.strip() for cell in line.strip("|").split("|") if TRACKER_NAME.fullmatch(cell.strip()))
    return names


def test_every_tracker_name_in_the_docs_is_one_the_registry_makes():
    named = {}
    for page in PAGES:
        for name in tracker_names(page):
            named.setdefault(name, page.relative_to(ROOT))
    assert "exact" in named and "naive-padded" in named  # the scan finds names at all
    for name, page in named.items():
        kind = name.partition(":")[0]
        assert kind in TRACKER_KINDS, f"{page}: {name!r} is no tracker kind; the kinds: {', '.join(TRACKER_KINDS)}"
        if not name.endswith(PLACEHOLDERS):
            make_tracker(name)  # raises for an accumulator the kind does not take


def test_the_distributed_default_trackers_are_the_naive_kinds():
    """docs/distributed.md names the default trackers under torchrun: exact and every naive kind."""
    text = " ".join(section(DOCS / "distributed.md", "Several processes, GPUs or nodes (torchrun)").split())
    sentence = re.search(r"The default trackers are then (.*?)\. `exact` sums", text).group(1)
    naive = sorted(kind for kind in TRACKER_KINDS if kind.startswith("naive-"))
    assert sorted(set(re.findall(r"`(naive-[\w-]+)`", sentence))) == naive
    assert f"`exact` and {['one', 'two', 'three', 'four', 'five'][len(naive) - 1]} naive ones" in sentence


# --- numbers tied to the command that prints them ----------------------------------------------------


@pytest.mark.slow
def test_the_readmes_reproduce_figures_are_what_reproduce_prints(tmp_path, capsys, monkeypatch):
    """README: the fixed tracker's error in epochs 1-3; docs/running.md: how many trackers reproduce feeds."""
    monkeypatch.chdir(tmp_path)
    assert main(["reproduce", "--no-progress"]) == 0
    out = capsys.readouterr().out
    printed = [float(v) for v in re.findall(r"^incident-fixed:python\s+\d\s.*?(-?\d+\.\d+)%$", out, flags=re.MULTILINE)]
    readme = README.read_text(encoding="utf-8")
    row = re.search(r"\(the small run of `python -m accumbug reproduce`: (.*?) in epochs 1-3\)", readme).group(1)
    assert [float(v.replace(" %", "")) for v in row.split(", ")] == printed
    trackers = int(re.search(r"^(\d+) trackers, 3 epochs", out, flags=re.MULTILINE).group(1))
    words = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"]
    assert f"feeding one run's batches to {words[trackers - 1]} trackers" in (DOCS / "running.md").read_text()


# --- links -----------------------------------------------------------------------------------------


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = outside_fences(path.read_text(encoding="utf-8"))
    return {slug(m) for m in re.findall(r"^#+ (.*)$", text, flags=re.MULTILINE)}


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_relative_links_resolve(page):
    """Every relative link in the README and docs/ names a file that exists, and a heading that does."""
    text = outside_fences(page.read_text(encoding="utf-8"))
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        name, _, anchor = target.partition("#")
        path = (page.parent / name).resolve() if name else page
        assert path.exists(), f"{page.relative_to(ROOT)}: link to {target!r}: no such file"
        if anchor and path.suffix == ".md":
            assert anchor in anchors(path), f"{page.relative_to(ROOT)}: link to {target!r}: no such heading"
