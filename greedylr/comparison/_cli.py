"""``greedylr compare``: its flags and what it prints."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any


_EPILOG = """\
What it writes (in --out):
  compare.csv  one row per (task, arm, protocol, study, seed): the schedule, the tuned config,
               the epochs spent tuning, the retrained run's test loss and test metric
  report.md    the answer, the tables (test metric with 95 % CIs, time to the target, win/tie/
               loss against each baseline, Kendall's tau of early rungs), the figures, and the
               command, seeds, spaces, budgets and versions to rerun it
  *.png        the test metric per arm, best-so-far curves, the winners' LR schedules and losses
  studies/     one `greedylr tune` run folder per study; retrain/ one record per retraining run
With --suite: OUT/TASK/ holds each task's comparison (the files above); OUT/report.md and
OUT/suite.csv hold GreedyLR against each baseline task by task and summed over the tasks.

Stopping and continuing:
  Ctrl-C stops it; the same command again continues it: finished studies and retraining runs
  are kept, an interrupted study continues.

Exit codes:
  0 done, 1 no retraining run completed, 2 bad input, 130 interrupted (Ctrl-C), 143 SIGTERM.
"""


def add_compare_parser(commands: Any) -> None:
    """Add the ``compare`` subcommand to the ``greedylr`` parser's subcommands."""
    from greedylr._cli_parser import _int_at_least
    from greedylr._cli_parser import _listed
    from greedylr._cli_parser import _number_above
    from greedylr._cli_parser import _one_of
    from greedylr.backends._backend import SEARCHER_NAMES
    from greedylr.backends._registry import BACKENDS
    from greedylr.comparison._compare import DEFAULT_SCHEDULES
    from greedylr.comparison._plan import PROTOCOL_CHOICES
    from greedylr.comparison._suite import SUITES
    from greedylr.searchers import list_methods

    parser = commands.add_parser(
        "compare",
        help="GreedyLR, tuned, against tuned baselines (test-split scores, win/tie/loss)",
        description="Tune every schedule the same way (same searcher, same epoch budget, same "
        "early stopping, its own space), retrain each study's best config on fresh seeds, "
        "score it on the test split, and judge GreedyLR against each baseline.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--task",
        help="a built-in task (see `greedylr tasks`) or package.module:function / "
        "file.py:function; it must report a test_ metric at its last epoch",
    )
    which.add_argument(
        "--suite",
        type=_one_of(list(SUITES)),
        metavar="NAME",
        help="instead of --task, every task of a suite, each with its own epochs and budget, "
        "and the verdict across them: "
        + "; ".join(f"{name}: {suite.description}" for name, suite in SUITES.items()),
    )
    parser.add_argument(
        "--schedules",
        metavar="A,B,...",
        help="the arms, greedylr among them: schedules, or methods that adapt or replace the "
        f"schedule ({_listed(list_methods())}), as `greedylr tune --schedule` takes them "
        f"(default: {', '.join(DEFAULT_SCHEDULES)}; with --suite, the suite's: those and "
        "the methods)",
    )
    parser.add_argument(
        "--backend",
        default="optuna",
        type=_one_of(list(BACKENDS)),
        metavar="NAME",
        help=f"the engine of every study: {_listed(list(BACKENDS))} (default: %(default)s)",
    )
    parser.add_argument(
        "--max-epochs",
        type=_int_at_least(1),
        metavar="N",
        help="the epochs of a full trial and of each retraining run (default: the task's)",
    )
    parser.add_argument(
        "--budget-epochs",
        type=_int_at_least(1),
        metavar="N",
        help="the epochs each study may spend tuning (default: 10 x --max-epochs)",
    )
    parser.add_argument(
        "--studies",
        type=_int_at_least(1),
        metavar="S",
        help="tuning studies per arm and protocol (default: 3; with --suite, the suite's)",
    )
    parser.add_argument(
        "--seeds",
        type=_int_at_least(1),
        metavar="K",
        help="fresh seeds each study's best config is retrained with (default: 5; with "
        "--suite, the suite's)",
    )
    parser.add_argument(
        "--protocol",
        type=_one_of(PROTOCOL_CHOICES),
        metavar="NAME",
        help="asha (the searcher with ASHA early stopping), full (random search, every trial "
        "to the end: no horizon bias) or both (default: both; with --suite, the suite's)",
    )
    parser.add_argument(
        "--workers",
        type=_int_at_least(1),
        default=2,
        metavar="N",
        help="trials at once in each study (default: %(default)s)",
    )
    parser.add_argument(
        "--searcher",
        type=_one_of(list(SEARCHER_NAMES)),
        metavar="NAME",
        help="the asha protocol's searcher (default: the backend's own)",
    )
    parser.add_argument(
        "--min-epochs",
        type=_int_at_least(1),
        default=1,
        metavar="N",
        help="ASHA's first rung (default: %(default)s)",
    )
    parser.add_argument(
        "--reduction-factor",
        type=_int_at_least(2),
        default=3,
        metavar="N",
        help="ASHA keeps 1 in N trials at each rung (default: %(default)s)",
    )
    parser.add_argument(
        "--seed", type=_int_at_least(0), default=0, metavar="N", help="the base seed (default: 0)"
    )
    parser.add_argument(
        "--out", type=Path, metavar="DIR", help="the folder (default: runs/compare-TASK)"
    )
    parser.add_argument(
        "--metric",
        metavar="NAME",
        help="the test metric (default: test_accuracy if the task reports it, else test_loss)",
    )
    parser.add_argument(
        "--metric-mode",
        type=_one_of(["min", "max"]),
        metavar="MODE",
        help="min or max: which way the metric is better (default: max for accuracy-like names)",
    )
    parser.add_argument(
        "--tolerance",
        type=_number_above(0, strict=False),
        metavar="X",
        help="the smallest difference of the metric that counts as a strict win or loss "
        "(default: the median seed-to-seed standard deviation within a study)",
    )
    parser.add_argument(
        "--target",
        type=float,
        metavar="LOSS",
        help="the validation loss of the time-to-target columns (default: the median final "
        "validation loss of the tuned runs)",
    )
    parser.add_argument("--no-progress", action="store_true", help="show no progress on stderr")
    parser.add_argument("--verbose", action="store_true", help="show the engines' own output")


_SUITE_SETS = ("max_epochs", "budget_epochs", "metric", "metric_mode", "tolerance", "target")
"""What ``--suite`` sets per task: refused beside it."""


def run_compare(args: argparse.Namespace) -> int:
    """Run ``greedylr compare``; print the summary; the exit code."""
    from greedylr.comparison._compare import compare

    given = {
        name: getattr(args, name)
        for name in ("schedules", "studies", "seeds", "protocol")
        if getattr(args, name) is not None
    }
    if args.suite is not None:
        return _run_suite(args, given)
    result = compare(
        args.task,
        **given,
        backend=args.backend,
        max_epochs=args.max_epochs,
        budget_epochs=args.budget_epochs,
        workers=args.workers,
        searcher=args.searcher,
        min_epochs=args.min_epochs,
        reduction_factor=args.reduction_factor,
        seed=args.seed,
        out=args.out,
        metric=args.metric,
        metric_mode=args.metric_mode,
        tolerance=args.tolerance,
        target=args.target,
        progress=not args.no_progress,
        verbose=args.verbose,
    )
    _print(result.text, result.notes, f"{result.out}/ (compare.csv, report.md, "
           f"{len(result.figures)} figures)")  # fmt: skip
    if not (result.runs["status"] == "completed").any():
        sys.stdout.flush()
        print("greedylr compare: failed: No retraining run completed.", file=sys.stderr)
        return 1
    return 0


def _run_suite(args: argparse.Namespace, given: dict[str, Any]) -> int:
    """``greedylr compare --suite``: every task of the suite, then the verdict across them."""
    from greedylr.comparison._suite import compare_suite

    for name in _SUITE_SETS:
        if getattr(args, name) is not None:
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"`{flag}` is set per task by --suite; leave it out.")
    result = compare_suite(
        args.suite,
        **given,
        backend=args.backend,
        workers=args.workers,
        searcher=args.searcher,
        seed=args.seed,
        out=args.out,
        progress=not args.no_progress,
        verbose=args.verbose,
    )
    _print(result.text, result.notes, f"{result.out}/ (report.md, suite.csv, one folder per task)")
    return 0


def _print(text: str, notes: list[str], results: str) -> None:
    """The summary, the notes, and where the results are."""
    print(text)
    for note in notes:
        print(f"Note: {note}")
    print(f"Results in {results}")


_FLAGS = (
    "budget_epochs",
    "max_epochs",
    "min_epochs",
    "reduction_factor",
    "metric_mode",
    "schedules",
    "studies",
    "seeds",
    "protocol",
    "searcher",
    "workers",
    "tolerance",
    "metric",
)


def compare_flags(message: str) -> str:
    """``message`` with ``compare()``'s parameter names, where they are code (in backticks or
    before ``=``), replaced by their flags."""
    names = "|".join(_FLAGS)
    pattern = rf"(?<=`)({names})(?=`)|\b({names})(?==)"
    return re.sub(pattern, lambda m: "--" + (m.group(1) or m.group(2)).replace("_", "-"), message)
