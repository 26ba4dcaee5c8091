"""The ``greedylr`` command: ``tune``, ``worker``, ``report`` and ``tasks``.

Bad input ends with one line on stderr and exit code 2; nothing already stored is lost.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import NoReturn

from greedylr._version import __version__


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage block)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


class UsageError(ValueError):
    """Bad input from the command line."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``greedylr`` command."""
    parser = _Parser(
        prog="greedylr",
        description="Tune the GreedyLR learning-rate scheduler with Optuna, Ray Tune, Syne Tune.",
    )
    parser.add_argument("--version", action="version", version=f"greedylr {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    tune = commands.add_parser("tune", help="tune a schedule's hyperparameters on a task")
    tune.add_argument("--task", required=True, help="a built-in task or package.module:function")
    tune.add_argument("--schedule", default="greedylr", help="the LR schedule to tune")
    tune.add_argument("--backend", default="optuna", help="the engine (default: optuna)")
    tune.add_argument("--trials", type=int, default=300, help="how many trials (default 300)")
    tune.add_argument("--max-epochs", type=int, help="epochs of a full trial (task default)")
    tune.add_argument("--min-epochs", type=int, default=1, help="first epoch a trial may stop")
    tune.add_argument("--reduction-factor", type=int, default=3)
    tune.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    tune.add_argument("--searcher", default="tpe", help="tpe, random, gp, cmaes or qmc")
    tune.add_argument(
        "--early-stopping", default="hyperband", help="hyperband, asha, sha, median or none"
    )
    tune.add_argument("--seed", type=int, default=0)
    tune.add_argument("--out", type=Path, help="run folder (default runs/TASK-SCHEDULE-seedS)")
    tune.add_argument("--storage", help="an Optuna storage URL (default: a journal file)")
    tune.add_argument("--study", help="the study name (default: the run folder's name)")
    tune.add_argument("--space", type=Path, help="a search space as JSON (space_to_json)")
    tune.add_argument("--heartbeat", type=int, help="RDB heartbeat seconds (default 10)")
    tune.add_argument("--no-progress", action="store_true", help="no progress bar")

    worker = commands.add_parser("worker", help="join a study on a shared storage")
    worker.add_argument("--storage", help="the study's storage URL (or $GREEDYLR_STORAGE)")
    worker.add_argument("--study", required=True)
    worker.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    worker.add_argument("--heartbeat", type=int)
    worker.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)

    report = commands.add_parser("report", help="a run's summary table and PNG figures")
    report.add_argument("run", type=Path, help="the run folder")
    report.add_argument("--top", type=int, default=5, help="trials in the figures (default 5)")

    commands.add_parser("tasks", help="list the built-in tasks")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command; return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        if args.command == "tasks":
            return _tasks()
        if args.command == "tune":
            return _tune(args)
        if args.command == "worker":
            return _worker(args)
        return _report(args)
    except KeyboardInterrupt:
        print("greedylr: interrupted; run the same command again to continue.", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `greedylr report RUN | head`: the reader left; so do we
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except (ValueError, ImportError) as error:
        message = " ".join(str(error).split())
        print(f"greedylr {args.command}: error: {message}", file=sys.stderr)
        return 2
    except RuntimeError as error:  # e.g. worker processes that keep dying
        message = " ".join(str(error).split())
        print(f"greedylr {args.command}: failed: {message}", file=sys.stderr)
        return 1


def _tasks() -> int:
    from greedylr.tasks import list_tasks

    for info in list_tasks():
        print(f"{info.name:<12} {info.default_epochs:>3} epochs  {info.description}")
    return 0


def _tune(args: argparse.Namespace) -> int:
    from greedylr._report import best_config_line
    from greedylr._report import early_stopping_line
    from greedylr._tune import tune
    from greedylr.searchers import space_from_json

    space = None
    if args.space is not None:
        try:
            text = args.space.read_text()
        except OSError as error:
            raise UsageError(
                f"Cannot read --space {str(args.space)!r}: {error.strerror}."
            ) from None
        try:
            space = space_from_json(text)
        except (TypeError, ValueError) as error:
            raise UsageError(f"Invalid --space {str(args.space)!r}: {error}") from None
    result = tune(
        args.task,
        schedule=args.schedule,
        space=space,
        backend=args.backend,
        n_trials=args.trials,
        max_epochs=args.max_epochs,
        workers=args.workers,
        searcher=args.searcher,
        early_stopping=args.early_stopping,
        min_epochs=args.min_epochs,
        reduction_factor=args.reduction_factor,
        seed=args.seed,
        out=args.out,
        storage=args.storage,
        study=args.study,
        heartbeat=args.heartbeat,
        progress=not args.no_progress,
    )
    if result.best_config is None:
        print("No trial completed; see trials.csv for why.")
    else:
        print(f"Best loss {result.best_loss:.6g} (trial {result.best_trial})")
        print(best_config_line(result))
    print(early_stopping_line(result))
    print(
        f"Results in {result.out}/ (trials.csv, history.csv, best.json); "
        f"figures: greedylr report {result.out}"
    )
    return 0


def _worker(args: argparse.Namespace) -> int:
    from greedylr._tune import STORAGE_ENV
    from greedylr._tune import join_study

    url = args.storage or os.environ.get(STORAGE_ENV)
    if not url:
        raise UsageError(f"Give --storage URL (or set ${STORAGE_ENV}).")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"`--threads` must be >= 1, but got {args.threads}.")
    join_study(
        url,
        args.study,
        worker_index=args.worker_index,
        threads=args.threads,
        heartbeat=args.heartbeat,
    )
    return 0


def _report(args: argparse.Namespace) -> int:
    from greedylr._report import report

    text, figures = report(args.run, top=args.top)
    print(text)
    for path in figures:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
