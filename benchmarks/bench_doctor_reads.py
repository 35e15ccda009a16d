"""The doctor's readers and checks, each on its own: wall time against the goals its tests once asserted.

Four measurements, each the median of ``ROUNDS`` rounds:

* 100 scripts of the test corpus (``tests/doctor_corpus/code/``), round-robin, through
  ``check_python`` / ``check_notebook`` (goal: under 2.5 s);
* a sparse 200 MB file refused by ``read_histories``, ``read_console`` and ``read_text`` by its size,
  before reading (goal: under 0.5 s for the three);
* 100 history files of the corpus (``tests/doctor_corpus/files/``) read and checked (goal: under 5 s);
* a history of 200,000 NaN losses read (goal: under 5 s), and the same at a tenth of the length:
  their ratio is about 10 where reading is linear in the length, about 100 where it is quadratic.

The tests check what these inputs give (the findings, the refusals); only this script times them.

    cd benchmarks && python bench_doctor_reads.py
"""

from __future__ import annotations

import itertools
import json
import math
import shutil
import tempfile
import time
from pathlib import Path

from accumbug.doctor.code import check_notebook, check_python
from accumbug.doctor.consoles import read_console
from accumbug.doctor.findings import UnusableInput
from accumbug.doctor.history_files import check_history, read_histories, read_history, read_text
from record import best_of, save

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "doctor_corpus"
SCRIPTS = (".py", ".ipynb")
HISTORIES = (".json", ".csv")
ROUNDS = 5
NAN_LENGTH = 200_000
GOALS = {"scripts_100": 2.5, "refuse_200_mb": 0.5, "histories_100": 5.0, "nan_history": 5.0}


def _timed(work) -> float:
    """The median wall time of ``ROUNDS`` calls of ``work``."""
    rounds = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        work()
        rounds.append(time.perf_counter() - started)
    return best_of(rounds)


def _scripts() -> float:
    pool = [(p, p.read_text(encoding="utf-8")) for p in sorted((CORPUS / "code").rglob("*")) if p.suffix in SCRIPTS]

    def work():
        for path, text in itertools.islice(itertools.cycle(pool), 100):
            (check_notebook if path.suffix == ".ipynb" else check_python)(text, str(path))
    return _timed(work)


def _refusals(folder: Path) -> float:
    path = folder / "huge.json"
    with open(path, "wb") as handle:
        handle.truncate(200 * 1024 * 1024)  # sparse: no 200 MB written

    def work():
        for read in (read_histories, read_console, read_text):
            try:
                read(path)
            except UnusableInput:
                continue
            raise AssertionError(f"{read.__name__} read a 200 MB file")
    return _timed(work)


def _histories(folder: Path) -> float:
    pool = sorted(p for p in (CORPUS / "files").iterdir() if p.suffix in HISTORIES)
    copies = []
    for index, source in zip(range(100), itertools.cycle(pool)):
        copies.append(folder / f"h{index:03d}{source.suffix}")
        shutil.copyfile(source, copies[-1])
    return _timed(lambda: [check_history(h) for path in copies for h in read_histories(path)])


def _nan_history(folder: Path, length: int) -> float:
    path = folder / f"nan-{length}.json"
    path.write_text(json.dumps({"loss": [math.nan] * length, "accuracy": [0.5] * length}), encoding="utf-8")
    return _timed(lambda: read_history(path))


def main() -> None:
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        seconds = {"scripts_100": _scripts(), "refuse_200_mb": _refusals(folder),
                   "histories_100": _histories(folder), "nan_history": _nan_history(folder, NAN_LENGTH)}
        tenth = _nan_history(folder, NAN_LENGTH // 10)
    ratio = seconds["nan_history"] / tenth
    for name, value in seconds.items():
        verdict = "within" if value < GOALS[name] else "OVER"
        print(f"{name}: {value:.3f} s (goal: under {GOALS[name]} s; {verdict})")
    print(f"NaN history, {NAN_LENGTH:,} against {NAN_LENGTH // 10:,} values: {ratio:.1f}x the time "
          f"(linear: about 10x; quadratic: about 100x)")
    path = save("doctor-reads", {"rounds": ROUNDS, "seconds": seconds, "goals_seconds": GOALS,
                                 "nan_history_tenth_seconds": tenth, "nan_history_ratio": ratio})
    print(f"written to {path}")


if __name__ == "__main__":
    main()
