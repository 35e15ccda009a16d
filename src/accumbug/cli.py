"""Command line: ``python -m accumbug reproduce``, ``run`` and ``audit``.

``reproduce`` is the seed incident in one command: one training run feeding five trackers
(seed-broken and seed-fixed with the ``python`` accumulator, the same two with ``float16``,
and exact), then the console-vs-file table and ``divergence.png``. ``run`` is any run.
``audit`` measures every claim of the write-up (``audit.py``), prints the table and writes
``docs/claims.md``.

Bad arguments print one line naming the value and what is allowed, exit with code 2, and
write nothing: every value is checked before the run folder is made.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .audit import REFERENCE_DIR, claims_markdown, format_claims, run_audit
from .data import PRESETS
from .history import atomic_write_text
from .plots import plot_divergence, save_figure
from .report import divergence_rows, format_table
from .train import AMP_MODES, TrainConfig, train
from .trackers import make_tracker

__all__ = ["REPRODUCE_TRACKERS", "main"]

REPRODUCE_TRACKERS = ("seed-broken:python", "seed-fixed:python", "seed-broken:float16", "seed-fixed:float16", "exact")


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

    def common(sub, preset: str, epochs: int):
        sub.add_argument("--preset", default=preset, choices=list(PRESETS), help=f"data set size (default {preset})")
        sub.add_argument("--epochs", type=_whole(1), default=epochs, help=f"epochs to train (default {epochs})")
        sub.add_argument("--out", type=Path, help="run folder (default runs/<command>-<preset>-<time>)")
        sub.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
        sub.add_argument("--seed", type=_whole(0), default=0, help="seed for data and weights (default 0)")
        sub.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
        sub.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")

    common(commands.add_parser("reproduce", help="the seed incident: five trackers side by side"), "small", 3)
    run = commands.add_parser("run", help="any training run")
    common(run, "small", 3)
    run.add_argument("--tracker", action="append", dest="trackers", metavar="TRACKER",
                     help="exact, seed-broken[:ACC] or seed-fixed[:ACC]; repeat for several "
                          "(default: the five of reproduce)")
    run.add_argument("--lr", type=float, default=TrainConfig.lr, help=f"SGD learning rate (default {TrainConfig.lr})")
    run.add_argument("--amp", default="off", choices=list(AMP_MODES), help="autocast dtype (default off)")
    audit = commands.add_parser("audit", help="measure the write-up's claims: print the table, write docs/claims.md")
    audit.add_argument("--reference", type=Path, help=f"the recorded full run (default {REFERENCE_DIR})")
    audit.add_argument("--claims", type=Path, default=Path("docs/claims.md"),
                       help="where to write the markdown table (default docs/claims.md)")
    return parser


def _audit(args) -> int:
    """Check both paths, then measure every claim, print the table and write the markdown."""
    if args.reference is not None and not (args.reference / "config.json").is_file():
        raise UsageError(f"reference={str(args.reference)!r}: not a run folder (no config.json)")
    try:
        args.claims.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"claims={str(args.claims)!r}: cannot write there ({error.strerror})") from None
    if args.claims.is_dir():
        raise UsageError(f"claims={str(args.claims)!r}: is a folder; give a file name")
    started = time.perf_counter()
    rows = run_audit(args.reference or REFERENCE_DIR)
    print(format_claims(rows))
    atomic_write_text(args.claims, claims_markdown(rows))
    print(f"{len(rows)} claims measured in {time.perf_counter() - started:.1f} s; table written to {args.claims}")
    return 0


def _configure(args) -> tuple[TrainConfig, list, Path]:
    """Check every value and build the run's parts before anything is written."""
    extra = {"lr": args.lr, "amp": args.amp} if args.command == "run" else {}
    config = TrainConfig(preset=args.preset, epochs=args.epochs, seed=args.seed, device=args.device,
                         progress=args.progress, **extra)
    names = (args.trackers if args.command == "run" and args.trackers else REPRODUCE_TRACKERS)
    trackers = [make_tracker(name) for name in names]
    out = args.out or Path("runs") / f"{args.command}-{args.preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    return config, trackers, out


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        if args.command == "audit":
            return _audit(args)
        config, trackers, out = _configure(args)
        started = time.perf_counter()
        result = train(config, trackers, out=out, overwrite=args.overwrite)
    except (UsageError, ValueError) as error:
        print(f"accumbug: error: {error}", file=sys.stderr)
        return 2
    rows = divergence_rows(result)
    print()
    print(format_table(rows))
    figure = save_figure(plot_divergence(rows, f"{config.preset} preset, {config.epochs} epochs: console vs saved history"),
                         out / "divergence.png")
    seconds = time.perf_counter() - started
    epochs = ", ".join(f"{s:.1f}" for s in result.epoch_seconds)
    print(f"\n{len(trackers)} trackers, {config.epochs} epochs on {result.device} in {seconds:.1f} s "
          f"(per epoch: {epochs} s); run folder: {out}")
    print(f"figure: {figure}")
    return 0
