"""The doctor as a user meets it: ``python -m accumbug doctor`` on one script, and on 200 files, wall time.

The inputs are the test corpus (``tests/doctor_corpus/``: specimen and clean scripts of
every code, framework-shaped history files, console logs). Three measurements in one run:

* ``python -m accumbug doctor one.py`` (the corpus's first script) as a fresh process, the
  median of ``ROUNDS_ONE`` runs: what a pre-commit hook or an editor pays per call. Goal:
  under 0.5 s on a 2-core CPU;
* one ``python -m accumbug doctor FOLDER`` over 100 scripts and 100 history files (the
  corpus copied round-robin into a temporary folder; a file of zeros among them reads the
  gallery's stored diagnosis, ``doctor/mechanism_evidence.json``), the median of
  ``ROUNDS_FOLDER`` runs, with the process's peak resident memory (``LAUNCHER`` says how);
* ``examine`` on that folder inside this process, as before (goal: under 10 s).

Each process runs with ``PYTHONPATH`` at this tree's ``src``; with ``--baseline DIR`` (a
checkout of an earlier commit) the same commands also run with ``PYTHONPATH`` at ``DIR/src``,
in alternate rounds, and the result holds the ratios baseline / this tree.

    git worktree add --detach /tmp/doctor-base 01a7fd9
    cd benchmarks && python bench_doctor.py --baseline /tmp/doctor-base
"""

from __future__ import annotations

import argparse
import itertools
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from accumbug.doctor.examine import examine
from record import save

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "doctor_corpus"
SCRIPTS = (".py", ".ipynb")
HISTORIES = (".json", ".csv")
ROUNDS_ONE, ROUNDS_FOLDER = 9, 5
GOALS = {"one_script_seconds": 0.5, "examine_seconds": 10.0}


def _fill(folder: Path, suffixes: tuple[str, ...], count: int) -> int:
    """Copy corpus files with ``suffixes`` round-robin into ``folder`` until there are ``count``.

    Returns the pool size.
    """
    pool = sorted(p for p in CORPUS.rglob("*") if p.suffix in suffixes)
    for index, source in zip(range(count), itertools.cycle(pool)):
        shutil.copyfile(source, folder / f"{index:03d}-{source.name}")
    return len(pool)


# Starts the doctor and reports its wall time, peak memory and exit code on stderr. Linux keeps a process's
# memory high-water mark across fork and exec, so the doctor started from this process (torch imported) would
# report this process's peak; started from this small launcher, it reports its own.
LAUNCHER = """
import os, subprocess, sys, time
started = time.perf_counter()
child = subprocess.Popen(sys.argv[1:])
_, status, usage = os.wait4(child.pid, 0)
print(time.perf_counter() - started, usage.ru_maxrss, os.waitstatus_to_exitcode(status), file=sys.stderr)
"""


def _doctor(tree: Path, paths: list[Path]) -> tuple[float, float, str]:
    """``python -m accumbug doctor PATHS`` with ``tree/src`` first on the path: wall seconds, peak MB, last line."""
    environment = {**os.environ, "PYTHONPATH": str(tree / "src")}
    done = subprocess.run([sys.executable, "-c", LAUNCHER, sys.executable, "-m", "accumbug", "doctor",
                           *map(str, paths)], env=environment, capture_output=True, text=True, check=True)
    seconds, peak_kb, code = done.stderr.split()[-3:]
    if code not in ("0", "1"):
        raise RuntimeError(f"{tree}: the doctor exited {code} on {paths[0]}: {done.stderr[-2000:]}")
    return float(seconds), int(peak_kb) / 1024, done.stdout.strip().splitlines()[-1]


def _package_of(tree: Path) -> str:
    """Which ``accumbug`` a process with ``tree/src`` on ``PYTHONPATH`` imports (the baseline must not be this tree)."""
    done = subprocess.run([sys.executable, "-c", "import accumbug; print(accumbug.__file__)"], check=True,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(tree / "src")})
    package = Path(done.stdout.strip())
    if tree not in package.parents:
        raise RuntimeError(f"with PYTHONPATH={tree / 'src'}, accumbug comes from {package}, not from {tree}")
    return str(package.parent)


def _commit(tree: Path) -> str:
    """The checkout's commit, and whether its files differ from it (a tree being edited)."""
    def git(*arguments: str) -> str:
        return subprocess.run(["git", "-C", str(tree), *arguments], capture_output=True, text=True,
                              check=False).stdout.strip()

    changed = " with uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else ""
    return (git("rev-parse", "--short", "HEAD") or "unknown") + changed


def _timed(trees: dict[str, Path], one: Path, folder: Path) -> dict[str, dict]:
    """Each tree's medians over alternating rounds, so that a slow spell of a shared machine hits all alike."""
    rounds = {name: {"one": [], "folder": [], "peak_mb": [], "one_line": "", "folder_line": ""} for name in trees}
    for index in range(max(ROUNDS_ONE, ROUNDS_FOLDER)):
        for name, tree in trees.items():
            if index < ROUNDS_ONE:
                seconds, _, rounds[name]["one_line"] = _doctor(tree, [one])
                rounds[name]["one"].append(seconds)
            if index < ROUNDS_FOLDER:
                seconds, peak, rounds[name]["folder_line"] = _doctor(tree, [folder])
                rounds[name]["folder"].append(seconds)
                rounds[name]["peak_mb"].append(peak)
    return {name: {"commit": _commit(trees[name]), "package": _package_of(trees[name]),
                   "one_script_seconds": statistics.median(r["one"]), "one_script_rounds": r["one"],
                   "folder_seconds": statistics.median(r["folder"]), "folder_rounds": r["folder"],
                   "folder_peak_rss_mb": max(r["peak_mb"]), "one_script_report": r["one_line"],
                   "folder_report": r["folder_line"]} for name, r in rounds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, help="a checkout of an earlier commit to time beside this tree")
    args = parser.parse_args()
    trees = {"tree": ROOT, **({"baseline": args.baseline.resolve()} if args.baseline else {})}
    one = min((CORPUS / "code").rglob("*.py"))
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        pools = {"scripts": _fill(folder, SCRIPTS, 100), "histories": _fill(folder, HISTORIES, 100)}
        load = os.getloadavg()[0]  # other processes on the machine: the times below are theirs to share
        timed = _timed(trees, one, folder)
        started = time.perf_counter()
        examination = examine([folder])
        seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ratios = {key: timed["baseline"][key] / timed["tree"][key] for key in ("one_script_seconds", "folder_seconds")
              } if args.baseline else {}
    for name, result in timed.items():
        print(f"{name} ({result['commit']}, {result['package']}): doctor {one.relative_to(ROOT)} "
              f"{result['one_script_seconds']:.3f} s; doctor on 200 files {result['folder_seconds']:.3f} s, "
              f"peak {result['folder_peak_rss_mb']:.0f} MB ({result['folder_report']})")
    for key, ratio in ratios.items():
        print(f"baseline / tree, {key}: {ratio:.1f}")
    print(f"examine in this process: {seconds:.2f} s (goal: under 10 s); {len(examination.findings)} findings, "
          f"{len(examination.examined)} inputs read ({len(examination.skipped)} skipped) from pools of "
          f"{pools['scripts']} scripts and {pools['histories']} histories; peak {peak_mb:.0f} MB, torch included")
    print(f"load average over the last minute: {load:.1f} before, {os.getloadavg()[0]:.1f} after, on "
          f"{os.cpu_count()} cores")
    path = save("doctor", {"one_script": str(one.relative_to(ROOT)), "goals": GOALS, "processes": timed,
                           "load_average_1min": [load, os.getloadavg()[0]],
                           "ratios_baseline_over_tree": ratios, "inputs": len(examination.examined),
                           "skipped": len(examination.skipped), "pools": pools, "examine_seconds": seconds,
                           "findings": len(examination.findings), "peak_rss_mb": peak_mb})
    print(f"written to {path}")


if __name__ == "__main__":
    main()
