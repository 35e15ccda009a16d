"""Command line: ``python -m accumbug reproduce``, ``run``, ``audit`` and ``doctor``.

``reproduce`` is the incident in one command: one training run feeding the exact tracker,
the incident's two (``python`` and ``float16`` accumulators) and the symptom's four
(``lessons/symptom.py``). It prints first the incident's evidence reproduced -- console,
saved file and exact loss for the incident's code, the write-up's fix and the fix that
works -- then today's accumulator table, and writes each saved file as its code wrote it
(``incident-history-*.json``) beside the run's own files and ``divergence.png``. ``run`` is
any run. ``audit`` measures every claim of the write-up (``lessons/audit.py``) on the
recorded run that ships with the package, prints the table and writes ``claims.md`` (and,
with ``--incident``, the write-up annotated claim by claim). ``doctor PATH...`` checks a
user's own scripts, history files and console logs (``doctor/``): exit 0 when it finds
nothing, 1 when it finds something, 2 for a path it cannot use.
Nothing is written outside the current folder unless ``--out`` or ``--claims`` says so.

Bad arguments print one line naming the value and what is allowed, exit with code 2, and
write nothing: every value is checked before the run folder is made. ``run --resume DIR``
continues a run folder; ``--stop-on-nonfinite`` ends a run at its first NaN or infinite
batch loss with exit code 3, keeping the completed epochs; an epoch that cannot be committed
(a full disk, a read-only folder) ends it with exit code 4, and Ctrl-C or SIGTERM at the
next batch with 130 or 143, each in one line that says what was kept and how to resume; ``--eval-only`` measures the
seeded model without training.

Under ``torchrun --nproc-per-node N -m accumbug run ...`` every rank parses and checks the
arguments, joins the process group and trains its shard (``distributed.py``); the default
trackers are then the exact one and the three naive cross-rank ones. Rank 0 prints the
table and writes the run folder; an error on any rank is printed with its rank, and
torchrun ends the others.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from .config import AMP_MODES, SCHEDULES, TrainConfig, run_config
from .data import PRESETS
from .distributed import join, launched_by_torchrun, leave
from .doctor.examine import examine
from .doctor.findings import UnusableInput
from .doctor.formats import format_findings, format_findings_json
from .history import atomic_write_text
from .lessons.audit import claims_markdown, format_claims, incident_markdown, run_audit
from .lessons.plots import figure_png, plot_divergence
from .lessons.symptom import format_symptom, incident_files, symptom_rows, symptom_trackers
from .lessons.tables import divergence_rows, format_table
from .registry import NAIVE_RANK_KINDS, make_tracker, tracker_names_help
from .runfolder import CONFIG, CommitError, RunFolder
from .specimens.incident_log import IncidentLog
from .stopping import RunStopped
from .train import NonFiniteLossError, train

__all__ = ["DISTRIBUTED_TRACKERS", "REPRODUCE_TRACKERS", "main"]

REPRODUCE_TRACKERS = ("incident-broken:python", "incident-fixed:python", "incident-broken:float16",
                      "incident-fixed:float16", "exact")
DISTRIBUTED_TRACKERS = ("exact", *NAIVE_RANK_KINDS)


class UsageError(Exception):
    """A bad command-line value; reported in one line with exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of argparse's usage block
        raise UsageError(message)


def _whole(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below the minimum of {minimum}")
        return value
    return parse


def _parser() -> _Parser:
    parser = _Parser(prog="python -m accumbug", description="Epoch metrics accumulated wrongly: reproduce and measure.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    quiet = {"argument_default": argparse.SUPPRESS}  # absent options stay absent: --resume sees what was given

    def common(sub, preset: str, epochs: int):
        sub.add_argument("--preset", choices=list(PRESETS), help=f"data set size (default {preset})")
        sub.add_argument("--epochs", type=_whole(1), help=f"epochs to train (default {epochs})")
        sub.add_argument("--out", type=Path, help="run folder (default runs/<command>-<preset>-<time>)")
        sub.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
        sub.add_argument("--seed", type=_whole(0), help="seed for data and weights (default 0)")
        sub.add_argument("--device", help="auto (CUDA when present; the default), cpu, cuda or cuda:N")
        sub.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")

    common(commands.add_parser("reproduce", help="the incident: its evidence reproduced, its trackers side by side",
                               **quiet), "small", 3)
    run = commands.add_parser("run", help="any training run", **quiet)
    common(run, "small", 3)
    run.add_argument("--tracker", action="append", dest="trackers", metavar="TRACKER",
                     help=f"one of {tracker_names_help()}; repeat for several "
                          "(default: the five of reproduce; under torchrun exact and the three naive ones)")
    run.add_argument("--lr", type=float, help="SGD learning rate after the warmup (default: the preset's: "
                     + ", ".join(f"{name} {schedule.lr}" for name, schedule in SCHEDULES.items()) + ")")
    run.add_argument("--amp", choices=list(AMP_MODES), help="autocast dtype (default off)")
    run.add_argument("--batch-size", type=int, help="samples per batch (default 16)")
    run.add_argument("--samples", type=int, help="data set size (default: the preset's)")
    run.add_argument("--classes", type=int, help="number of classes (default: the preset's)")
    run.add_argument("--stop-on-nonfinite", action="store_true", help="stop at the first NaN or infinite batch loss")
    run.add_argument("--eval-only", action="store_true",
                     help="no gradients or optimizer steps: every epoch measures the seeded model")
    run.add_argument("--resume", type=Path, metavar="DIR",
                     help="continue the run folder DIR from its last completed epoch (--epochs may extend it)")
    _add_audit(commands)
    doctor = commands.add_parser("doctor", help="check your own training code, history files and console logs")
    doctor.add_argument("paths", nargs="+", metavar="PATH",
                        help="scripts, notebooks, history files (JSON, Keras, HF trainer_state.json, Lightning "
                             "metrics.csv), run folders, console logs, or folders of them")
    doctor.add_argument("--json", action="store_true", help="print the findings as JSON on stdout")
    return parser


def _add_audit(commands) -> None:
    """The ``audit`` command's options."""
    audit = commands.add_parser("audit", help="measure the write-up's claims: print the table, write claims.md")
    audit.add_argument("--reference", type=Path, help="a full run folder to read (default: the recorded run "
                                                       "that ships with the package)")
    audit.add_argument("--claims", type=Path, default=Path("claims.md"),
                       help="where to write the markdown table (default claims.md in the current folder)")
    audit.add_argument("--incident", type=Path, help="also write the write-up annotated claim by claim "
                                                     "(the repository's copy: docs/incident.md)")


def _doctor(args) -> int:
    """Examine the paths and print the report: exit 0 when nothing is found, 1 when something is."""
    examination = examine(args.paths)  # UnusableInput: exit 2, in main
    print(format_findings_json(examination) if args.json else format_findings(examination))
    return 1 if examination.findings else 0


def _audit(args) -> int:
    """Check both paths, then measure every claim, print the table and write the markdown."""
    if args.reference is not None and not (args.reference / CONFIG).is_file():
        raise UsageError(f"reference={str(args.reference)!r}: not a run folder (no {CONFIG})")
    for name in ("claims", "incident"):
        path = getattr(args, name)
        if path is None:
            continue
        if path.is_dir():
            raise UsageError(f"{name}={str(path)!r}: is a folder; give a file name")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UsageError(f"{name}={str(path)!r}: cannot write there ({error.strerror})") from None
    started = time.perf_counter()
    rows = run_audit(args.reference)
    print(format_claims(rows))
    atomic_write_text(args.claims, claims_markdown(rows))
    if args.incident is not None:
        atomic_write_text(args.incident, incident_markdown(rows))
        print(f"the write-up, claim by claim: {args.incident}")
    print(f"{len(rows)} claims measured in {time.perf_counter() - started:.1f} s; table written to {args.claims}")
    return 0


CONFIG_OPTIONS = ("preset", "epochs", "seed", "device", "progress", "lr", "amp", "batch_size", "samples", "classes",
                  "stop_on_nonfinite", "eval_only")


def _configure(args: argparse.Namespace) -> tuple[TrainConfig, list, Path, bool, IncidentLog | None]:
    """Check every value and build the run's parts before anything is written."""
    given = vars(args)
    options = {key: given[key] for key in CONFIG_OPTIONS if key in given}
    options.setdefault("progress", True)  # bars on in a terminal unless --no-progress
    resume = given.get("resume")
    distributed = launched_by_torchrun()
    if resume is not None:
        for clash in ("out", "overwrite"):
            if clash in given:
                raise UsageError(f"--{clash} goes with a new run, not with --resume (the run folder is {resume})")
        folder = RunFolder(resume)
        config = replace(run_config(folder), **options)
        names = given.get("trackers", folder.trackers)
        out = resume
    else:
        config = TrainConfig(**options)
        names = given.get("trackers", DISTRIBUTED_TRACKERS if distributed else REPRODUCE_TRACKERS)
        out = given.get("out") or Path("runs") / f"{args.command}-{config.preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    trackers, log = [make_tracker(name) for name in names], None
    if args.command == "reproduce":
        symptom, log = symptom_trackers()
        trackers += symptom
    return config, trackers, out, resume is not None, log


def _who() -> str:
    """The message prefix: ``accumbug``, with the rank under torchrun."""
    if launched_by_torchrun():
        return f"accumbug rank {os.environ['RANK']} of {os.environ['WORLD_SIZE']}"
    return "accumbug"


def _report(config: TrainConfig, result, log: IncidentLog | None) -> None:
    """Print the tables (the incident's evidence first, for reproduce) and write the files beside the run."""
    if log is not None:
        print("\nThe incident's evidence, reproduced: loss per epoch on the console, in the saved file, exact")
        print(format_symptom(symptom_rows(result, log)))
        for name, content in incident_files(log).items():
            result.folder.write_file(name, content)
    rows = divergence_rows(result, names=[t for t in result.histories if log is None or t not in log.histories])
    print("\nThe accumulators: console, the incident's JSON, the strict file and the exact loss")
    print(format_table(rows))
    figure = plot_divergence(rows, f"{config.preset} preset, {config.epochs} epochs: console vs saved history")
    result.folder.write_file("divergence.png", figure_png(figure))


EXIT_CODES = {NonFiniteLossError: 3, CommitError: 4}  # and 130 for SIGINT or a second Ctrl-C, 143 for SIGTERM


def _say(line: str) -> None:
    """``line`` on stderr in one write: torchrun's ranks share the stream, and where Python writes through
    (``PYTHONUNBUFFERED=1``) ``print``'s separate writes of the text and its newline interleave across ranks."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _stopped(error: BaseException) -> int:
    """One line on stderr for a run that ended early, and its exit code."""
    if isinstance(error, KeyboardInterrupt):
        _say(f"{_who()}: stopped at once by a second interrupt; the run folder keeps the epochs committed before")
        return 130
    _say(f"{_who()}: stopped: {error}")
    if isinstance(error, RunStopped):
        return 143 if error.signal_name == "SIGTERM" else 130
    return EXIT_CODES[type(error)]


def main(argv: list[str] | None = None) -> int:
    ranks = None
    try:
        args = _parser().parse_args(argv)
        if args.command == "audit":
            return _audit(args)
        if args.command == "doctor":
            return _doctor(args)
        config, trackers, out, resume, log = _configure(args)
        if launched_by_torchrun():
            ranks, device = join(config.device)
            config = replace(config, device=device)
        started = time.perf_counter()
        result = train(config, trackers, out=out, overwrite=getattr(args, "overwrite", False), resume=resume,
                       ranks=ranks, epoch_hook=log)
    except (UsageError, ValueError, UnusableInput) as error:
        _say(f"{_who()}: error: {error}")
        return 2
    except (NonFiniteLossError, CommitError, RunStopped, KeyboardInterrupt) as error:
        return _stopped(error)
    finally:
        leave()
    if ranks is not None and not ranks.writes_files:
        return 0
    _report(config, result, log)
    seconds = time.perf_counter() - started
    epochs = ", ".join(f"{s:.1f}" for s in result.epoch_seconds)
    print(f"\n{len(trackers)} trackers, {config.epochs} epochs on {result.device} in {seconds:.1f} s "
          f"(per epoch: {epochs} s); run folder: {out}")
    print(f"figure: {out / 'divergence.png'}")
    return 0
