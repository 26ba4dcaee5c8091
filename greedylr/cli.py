"""The ``greedylr`` command: ``tune``, ``worker``, ``report``, ``tasks`` and ``compare``.

Bad input ends with one line on stderr that names the flag, and exit code 2; nothing already
stored is lost. A run in which no trial completed exits with 1.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from typing import NoReturn

from greedylr._cli_parser import UsageError
from greedylr._cli_parser import build_parser
from greedylr._cli_parser import engine_options
from greedylr._cli_parser import name_flags


def run() -> NoReturn:
    """The ``greedylr`` program: :func:`main`, then exit.

    ``gc.freeze()`` first spares the exit a collection of the ~400k objects that torch, Optuna
    and pandas made (0.6-0.8 s of a core for every run). ``main`` itself leaves the collector
    alone, so calling it in-process changes nothing.
    """
    code = main()
    gc.freeze()
    sys.exit(code)


def main(argv: list[str] | None = None) -> int:
    """Run the command; return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command in ("tune", "worker", "compare"):
        _import_from_current_folder()
    try:
        if args.command == "tasks":
            return _tasks()
        if args.command == "tune":
            return _tune(args)
        if args.command == "worker":
            return _worker(args)
        if args.command == "compare":
            from greedylr.comparison._cli import run_compare

            return run_compare(args)
        return _report(args)
    except KeyboardInterrupt as interruption:  # Ctrl-C, kill -INT (130) or kill -TERM (143)
        from greedylr._signals import exit_code

        print("greedylr: interrupted; run the same command again to continue.", file=sys.stderr)
        return exit_code(interruption)
    except BrokenPipeError:  # `greedylr report RUN | head`: the reader left; so do we
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except (ValueError, ImportError) as error:
        message = _one_line(error)
        if args.command == "tune":
            message = name_flags(message)
        if args.command == "compare":
            from greedylr.comparison._cli import compare_flags

            message = compare_flags(message)
        print(f"greedylr {args.command}: error: {message}", file=sys.stderr)
        return 2
    except RuntimeError as error:  # the task keeps failing, worker processes keep dying, ...
        from greedylr.backends import TaskFailedError

        if isinstance(error, TaskFailedError) and error.details:
            print(error.details.rstrip("\n"), file=sys.stderr)  # the task's traceback
        print(f"greedylr {args.command}: failed: {_one_line(error)}", file=sys.stderr)
        return 1


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def _import_from_current_folder() -> None:
    """Find task modules in the current folder, as ``python -m`` and pytest do.

    The ``greedylr`` console script's ``sys.path`` starts with its own folder, not the current
    one; local worker processes inherit this ``sys.path``.
    """
    here = os.getcwd()
    if "" not in sys.path and here not in sys.path:
        sys.path.insert(0, here)


def _tasks() -> int:
    from greedylr.tasks import list_tasks

    tasks = list_tasks()
    width = max(len(info.name) for info in tasks)
    for info in tasks:
        print(f"{info.name:<{width}} {info.default_epochs:>3} epochs  {info.description}")
    return 0


def _tune(args: argparse.Namespace) -> int:
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
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        progress=not args.no_progress,
        verbose=args.verbose,
        **engine_options(args),
    )
    from greedylr._report import best_config_line  # pandas: after the workers started
    from greedylr._report import early_stopping_line
    from greedylr._report import tuning_gain_line

    if result.best_config is not None:
        print(f"Best loss {result.best_loss:.6g} (trial {result.best_trial})")
        print(best_config_line(result))
        print(tuning_gain_line(result))
    print(early_stopping_line(result))
    print(
        f"Results in {result.out}/ (trials.csv, history.csv, best.json); "
        f"figures: greedylr report {result.out}"
    )
    if result.best_config is None:
        sys.stdout.flush()
        print(
            "greedylr tune: failed: No trial completed; see trials.csv for why.", file=sys.stderr
        )
        return 1
    return 0


def _worker(args: argparse.Namespace) -> int:
    from greedylr._tune import STORAGE_ENV
    from greedylr._tune import join_study

    url = args.storage or os.environ.get(STORAGE_ENV)
    if not url:
        raise UsageError(f"Give --storage URL (or set ${STORAGE_ENV}).")
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

    shown = report(args.run, top=args.top)
    print(shown.text)
    for path in shown.figures:
        print(f"wrote {path}")
    if shown.figures_error:
        print(f"greedylr report: error: {shown.figures_error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    run()
