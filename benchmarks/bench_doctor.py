"""The doctor on 100 scripts and 100 history files: wall time and peak memory.

The inputs are the test corpus (``tests/doctor_corpus/``: specimen and clean scripts of
every code, framework-shaped history files, console logs), copied round-robin into a
temporary folder until there are 100 scripts and 100 history files, then examined in one
``examine`` call, as ``python -m accumbug doctor FOLDER`` would (a file of zeros among them
reads the gallery's stored diagnosis, ``doctor/mechanism_evidence.json``, once). Goal: under
10 s on a 2-core CPU.

    cd benchmarks && python bench_doctor.py
"""

from __future__ import annotations

import itertools
import resource
import shutil
import tempfile
import time
from pathlib import Path

from accumbug.doctor.examine import examine
from record import save

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "doctor_corpus"
SCRIPTS = (".py", ".ipynb")
HISTORIES = (".json", ".csv")


def _fill(folder: Path, suffixes: tuple[str, ...], count: int) -> int:
    """Copy corpus files with ``suffixes`` round-robin into ``folder`` until there are ``count``.

    Returns the pool size.
    """
    pool = sorted(p for p in CORPUS.rglob("*") if p.suffix in suffixes)
    for index, source in zip(range(count), itertools.cycle(pool)):
        shutil.copyfile(source, folder / f"{index:03d}-{source.name}")
    return len(pool)


def main() -> None:
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        pools = {"scripts": _fill(folder, SCRIPTS, 100), "histories": _fill(folder, HISTORIES, 100)}
        started = time.perf_counter()
        examination = examine([folder])
        seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{len(examination.examined)} inputs read ({len(examination.skipped)} skipped) from pools of "
          f"{pools['scripts']} scripts and {pools['histories']} histories")
    print(f"examine: {seconds:.2f} s (goal: under 10 s); {len(examination.findings)} findings")
    print(f"peak resident memory of the process: {peak_mb:.0f} MB")
    path = save("doctor", {"inputs": len(examination.examined), "skipped": len(examination.skipped),
                           "pools": pools, "examine_seconds": seconds,
                           "findings": len(examination.findings), "peak_rss_mb": peak_mb})
    print(f"written to {path}")


if __name__ == "__main__":
    main()
