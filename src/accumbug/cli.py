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
user's own scripts, history files and console logs (``doctor/``): each path it cannot use is
one line on stderr while the others are still examined; exit 0 when it finds nothing, 1 when
it finds something, 2 when a path could not be examined (2 wins over 1: the check was
incomplete) or an argument is bad. ``--format`` prints the report as text, JSON or GitHub
Actions annotations. The doctor imports neither torch nor the lessons: the training commands
import them inside their functions, so ``python -m accumbug doctor`` starts in a fraction of
a second. Nothing is written outside the current folder unless ``--out`` or ``--claims`` says so.

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
from typing import TYPE_CHECKING

from .doctor.examine import examine
from .doctor.formats import FORMATS, format_report

if TYPE_CHECKING:
    from .config import TrainConfig
    from .specimens.incident_log import IncidentLog

__all__ = ["REPRODUCE_TRACKERS", "distributed_trackers", "main"]

REPRODUCE_TRACKERS = ("incident-broken:python", "incident-fixed:python", "incident-broken:float16",
                      "incident-fixed:float16", "exact")


def distributed_trackers() -> tuple[str, ...]:
    """The default trackers under torchrun: the exact one and the naive cross-rank ones of the registry (read
    here, not at import: the registry imports torch, which ``doctor`` never needs)."""
    from .registry import NAIVE_RANK_KINDS

    return ("exact", *NAIVE_RANK_KINDS)


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


def _common_options(sub) -> None:
    """The options of both training commands (``reproduce`` and ``run``); the defaults shown are ``TrainConfig``'s."""
    from .config import TrainConfig
    from .data import PRESETS

    sub.add_argument("--preset", choices=list(PRESETS), help=f"data set size (default {TrainConfig.preset})")
    sub.add_argument("--epochs", type=_whole(1), help=f"epochs to train (default {TrainConfig.epochs})")
    sub.add_argument("--out", type=Path, help="run folder (default runs/<command>-<preset>-<time>)")
    sub.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    sub.add_argument("--seed", type=_whole(0), help="seed for data and weights (default 0)")
    sub.add_argument("--device", help="auto (CUDA when present; the default), cpu, cuda or cuda:N")
    sub.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def _run_options(run) -> None:
    """The ``run`` command's options."""
    from .config import AMP_MODES, SCHEDULES
    from .registry import tracker_names_help

    _common_options(run)
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


def _doctor_options(doctor) -> None:
    """The ``doctor`` command's options."""
    doctor.add_argument("paths", nargs="*", metavar="PATH",
                        help="scripts, notebooks, history files (JSON, Keras, HF trainer_state.json, Lightning "
                             "metrics.csv), run folders, console logs, or folders of them")
    doctor.add_argument("--format", choices=list(FORMATS), default="text",
                        help="text (the default), json (for tools) or github (GitHub Actions annotations)")
    doctor.add_argument("--json", dest="format", action="store_const", const="json", help="same as --format json")
    doctor.add_argument("--probe", action="append", metavar="FILE.py:CLASS",
                        help="RUNS your code: import CLASS (from a file, or module.path:CLASS), feed it streams whose "
                             "exact answers are known, report the measured errors; repeat for several (instead of "
                             "PATHs)")


def _audit_options(audit) -> None:
    """The ``audit`` command's options."""
    audit.add_argument("--reference", type=Path, help="a full run folder to read (default: the recorded run "
                                                       "that ships with the package)")
    audit.add_argument("--claims", type=Path, default=Path("claims.md"),
                       help="where to write the markdown table (default claims.md in the current folder)")
    audit.add_argument("--incident", type=Path, help="also write the write-up annotated claim by claim "
                                                     "(the repository's copy: docs/incident.md)")


COMMANDS = {  # name -> its help, its options, whether absent options stay absent (--resume sees what was given)
    "reproduce": ("the incident: its evidence reproduced, its trackers side by side", _common_options, True),
    "run": ("any training run", _run_options, True),
    "audit": ("measure the write-up's claims: print the table, write claims.md", _audit_options, False),
    "doctor": ("check your own training code, history files and console logs", _doctor_options, False),
}


def _parser(only: str | None = None) -> _Parser:
    """The command line. With ``only``, that command's options alone are built: the training commands' choices
    (presets, trackers) come from modules that import torch, which ``doctor`` must not wait for."""
    parser = _Parser(prog="python -m accumbug", description="Epoch metrics accumulated wrongly: reproduce and measure.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, (summary, options, quiet) in COMMANDS.items():
        sub = commands.add_parser(name, help=summary, **({"argument_default": argparse.SUPPRESS} if quiet else {}))
        if only in (None, name):
            options(sub)
    return parser


def _doctor(argv: list[str]) -> int:
    """Examine the paths: one line on stderr per path that cannot be examined, the report on stdout. Exit 2 when a
    path was not examined (whatever else was found: the check is incomplete), else 1 with findings, else 0."""
    try:
        args = _parser("doctor").parse_args(argv)
    except UsageError as error:
        _say(f"accumbug: error: {error}")
        return 2
    if args.probe or not args.paths:
        return _probe(args)
    examination = examine(args.paths, keep_going=True)
    for unusable in examination.unusable:
        _say(str(unusable))
    print(format_report(examination, args.format))
    return 2 if examination.unusable else 1 if examination.findings else 0


def _probe(args) -> int:
    """``doctor --probe``: import and run the user's tracker classes (``doctor/probe/``), torch imported only here."""
    from .doctor.findings import UnusableInput
    from .doctor.probe import run_probes

    if bool(args.probe) == bool(args.paths):
        _say("accumbug: error: give PATHs to read, or --probe FILE.py:CLASS to run a tracker"
             + (", not both" if args.paths else ""))
        return 2
    try:
        report, code = run_probes(args.probe, args.format)
    except UnusableInput as error:
        _say(f"accumbug: error: {error}")
        return 2
    print(report)
    return code


def _audit(args) -> int:
    """Check both paths, then measure every claim, print the table and write the markdown."""
    from .history import atomic_write_text
    from .lessons.audit import claims_markdown, format_claims, incident_markdown, run_audit
    from .runfolder import CONFIG

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
    from .config import TrainConfig, run_config
    from .distributed import launched_by_torchrun
    from .lessons.symptom import symptom_trackers
    from .registry import make_tracker
    from .runfolder import RunFolder

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
        names = given.get("trackers", distributed_trackers() if distributed else REPRODUCE_TRACKERS)
        out = given.get("out") or Path("runs") / f"{args.command}-{config.preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    trackers, log = [make_tracker(name) for name in names], None
    if args.command == "reproduce":
        symptom, log = symptom_trackers()
        trackers += symptom
    return config, trackers, out, resume is not None, log


def _who() -> str:
    """The message prefix: ``accumbug``, with the rank under torchrun."""
    from .distributed import launched_by_torchrun

    if launched_by_torchrun():
        return f"accumbug rank {os.environ['RANK']} of {os.environ['WORLD_SIZE']}"
    return "accumbug"


def _report(config: TrainConfig, result, log: IncidentLog | None) -> None:
    """Print the tables (the incident's evidence first, for reproduce) and write the files beside the run."""
    from .lessons.plots import figure_png, plot_divergence
    from .lessons.symptom import format_symptom, incident_files, symptom_rows
    from .lessons.tables import divergence_rows, format_table

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


def _say(line: str) -> None:
    """``line`` on stderr in one write: torchrun's ranks share the stream, and where Python writes through
    (``PYTHONUNBUFFERED=1``) ``print``'s separate writes of the text and its newline interleave across ranks."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _stopped(error: BaseException) -> int:
    """One line on stderr for a run that ended early, and its exit code: 3 for a non-finite loss, 4 for an epoch
    not committed, 130 for SIGINT or a second Ctrl-C, 143 for SIGTERM."""
    from .runfolder import CommitError
    from .stopping import RunStopped
    from .train import NonFiniteLossError

    if isinstance(error, KeyboardInterrupt):
        _say(f"{_who()}: stopped at once by a second interrupt; the run folder keeps the epochs committed before")
        return 130
    _say(f"{_who()}: stopped: {error}")
    if isinstance(error, RunStopped):
        return 143 if error.signal_name == "SIGTERM" else 130
    return {NonFiniteLossError: 3, CommitError: 4}[type(error)]


def main(argv: list[str] | None = None) -> int:
    """Run the command ``argv`` names (default: the process's arguments); its exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["doctor"]:
        return _doctor(argv)
    return _train_or_audit(argv)


def _train_or_audit(argv: list[str]) -> int:
    """``reproduce``, ``run`` and ``audit``: the commands that import torch and the lessons."""
    from .distributed import join, launched_by_torchrun, leave
    from .runfolder import CommitError
    from .stopping import RunStopped
    from .train import NonFiniteLossError, train

    ranks = None
    try:
        args = _parser(argv[0] if argv[:1] and argv[0] in COMMANDS else None).parse_args(argv)
        if args.command == "audit":
            return _audit(args)
        config, trackers, out, resume, log = _configure(args)
        if launched_by_torchrun():
            ranks, device = join(config.device)
            config = replace(config, device=device)
        started = time.perf_counter()
        result = train(config, trackers, out=out, overwrite=getattr(args, "overwrite", False), resume=resume,
                       ranks=ranks, epoch_hook=log)
    except (UsageError, ValueError) as error:
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
