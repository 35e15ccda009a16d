"""The doctor's code checks scored on their own corpus: per code, hits, misses and false alarms, now and at a baseline.

The corpus is ``tests/doctor_corpus/code/``: every script under ``<code>/`` should give that
code (at the line it marks with ``# finding: <code>``, where it marks one) and nothing else
but the codes its ``# also:`` comment declares; every script under ``clean/`` should give
nothing. Per code:

* **hits**: scripts of its folder where it is found (at the marked line, if one is marked);
* **misses**: scripts of its folder where it is not, or only on another line than the marked one
  (counted again in brackets: the code was found, at the wrong line);
* **false alarms**: scripts where it is found but not expected (another folder, undeclared, or ``clean/``).

Both trees score the same corpus (this tree's): the checks of this tree, and those of the
baseline commit, checked out once with ``git worktree add`` and imported through
``PYTHONPATH`` in a child process, so one run gives the before/after table.
``tests/test_doctor_code.py`` requires this tree to score every hit and no false alarm.

    cd benchmarks && python doctor_corpus_score.py [--baseline 01a7fd9] [--worktree /tmp/doctor-base-score]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

from record import save

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "doctor_corpus" / "code"
SCRIPTS = (".py", ".ipynb")
MARK = re.compile(r"#\s*finding:\s*([a-z-]+)")
ALSO = re.compile(r"#\s*also:\s*([a-z, -]+)")

# Run in a child with the tree's src first on the path: the checks as that tree has them (``doctor.code`` now,
# ``doctor.code_checks`` before the split), the findings of every corpus script as JSON.
CHILD = """
import json, sys
from pathlib import Path
try:
    from accumbug.doctor.code import check_notebook, check_python
except ImportError:
    from accumbug.doctor.code_checks import check_notebook, check_python
import accumbug
found = {"__package__": accumbug.__file__}
for name in sys.argv[2:]:
    path = Path(sys.argv[1]) / name
    check = check_notebook if path.suffix == ".ipynb" else check_python
    try:
        found[name] = [[f.code, f.line] for f in check(path.read_text(encoding="utf-8"), str(path))]
    except Exception as error:  # a crash is scored as nothing found, and shown
        found[name] = {"error": repr(error)}
print(json.dumps(found))
"""


def corpus_scripts() -> list[str]:
    return sorted(str(p.relative_to(CORPUS)) for p in CORPUS.glob("*/*") if p.suffix in SCRIPTS)


def expectations(name: str) -> tuple[str | None, set[tuple[str, int]], set[str]]:
    """A script's expected code (``None`` for ``clean/``), its marked ``(code, line)``s and its declared extras."""
    text = (CORPUS / name).read_text(encoding="utf-8")
    folder = Path(name).parent.name
    lines = text.splitlines() if Path(name).suffix == ".py" else []
    marks = {(m[1], number) for number, line in enumerate(lines, 1) if (m := MARK.search(line))}
    also = ALSO.search(text)
    return (None if folder == "clean" else folder), marks, {c.strip() for c in also[1].split(",")} if also else set()


def findings_of(tree: Path, names: list[str]) -> dict:
    """Every script's ``[code, line]`` findings under the checks of ``tree`` (a child process)."""
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    done = subprocess.run([sys.executable, "-c", CHILD, str(CORPUS), *names], env=env, capture_output=True,
                          text=True, check=True, cwd=tree)
    found = json.loads(done.stdout)
    package = Path(found.pop("__package__")).resolve()
    if not package.is_relative_to(tree.resolve()):
        raise RuntimeError(f"the child imported {package}, not the tree {tree}")
    return found


def score(found: dict) -> dict[str, Counter]:
    """Per code: hits, misses and false alarms over the corpus."""
    table: dict[str, Counter] = {}
    for name, findings in found.items():
        expected, marks, also = expectations(name)
        pairs = {tuple(pair) for pair in findings} if isinstance(findings, list) else set()
        codes = {code for code, _ in pairs}
        if expected is not None:
            wanted = {line for code, line in marks if code == expected}
            hit = bool(wanted <= {line for code, line in pairs if code == expected}) and expected in codes
            counts = table.setdefault(expected, Counter())
            counts["hits" if hit else "misses"] += 1
            counts["at another line"] += expected in codes and not hit
        for code in codes - {expected} - also:
            table.setdefault(code, Counter())["false alarms"] += 1
    return table


def baseline_tree(commit: str, worktree: Path) -> Path:
    if not (worktree / "src").is_dir():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree), commit], check=True,
                       capture_output=True)
    return worktree


def report(tables: dict[str, dict[str, Counter]]) -> list[str]:
    """The table as lines: one row per code, hits / misses / false alarms for each tree."""
    codes = sorted({code for table in tables.values() for code in table})
    width = 46
    lines = [f"{'code':28s}" + "".join(f"{label:>{width}s}" for label in tables),
             f"{'':28s}" + "".join(f"{'hits  misses (another line)  false alarms':>{width}s}" for _ in tables)]
    for code in [*codes, "all"]:
        cells = []
        for table in tables.values():
            counts = sum(table.values(), Counter()) if code == "all" else table.get(code, Counter())
            cells.append(f"{counts['hits']:>4d}{counts['misses']:>8d} ({counts['at another line']:d})"
                         f"{counts['false alarms']:>16d}")
        lines.append(f"{code:28s}" + "".join(f"{cell:>{width}s}" for cell in cells))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="01a7fd9", help="the commit to compare with (default: 01a7fd9)")
    parser.add_argument("--worktree", default="/tmp/doctor-base-score", type=Path,
                        help="where the baseline is checked out (created with git worktree add if missing)")
    args = parser.parse_args()
    names = corpus_scripts()
    found = {f"baseline {args.baseline}": findings_of(baseline_tree(args.baseline, args.worktree), names),
             "this tree": findings_of(ROOT, names)}
    tables = {label: score(found_here) for label, found_here in found.items()}
    lines = report(tables)
    print(f"{len(names)} corpus scripts ({sum(n.startswith('clean/') for n in names)} clean)")
    print("\n".join(lines))
    crashes = {label: sorted(name for name, f in found_here.items() if isinstance(f, dict))
               for label, found_here in found.items()}
    path = save("doctor-corpus-score", {"scripts": len(names), "table": lines,
                                        "scores": {label: {code: dict(c) for code, c in table.items()}
                                                   for label, table in tables.items()},
                                        "crashes": crashes})
    print(f"saved {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
