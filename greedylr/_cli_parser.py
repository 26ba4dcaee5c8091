"""The ``greedylr`` command's argument parser: every flag, its choices, its help, its checks.

Values are checked as they are parsed, so an error names the flag the user typed.
"""

from __future__ import annotations

import argparse
import re
import textwrap
from collections.abc import Callable
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from typing import NoReturn

from greedylr._version import __version__


class _HelpFormatter(argparse.HelpFormatter):
    """Help text wrapped at spaces only: ``digits-mlp`` and ``syne-tune`` stay whole."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage block)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


class UsageError(ValueError):
    """Bad input from the command line."""


def _int_at_least(low: int) -> Callable[[str], int]:
    """An argparse ``type`` for ints >= ``low``: argparse names the flag in the error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an int >= {low}, but got {text!r}.")
        return value

    return parse


def _one_of(
    choices: Sequence[str], *, why: Callable[[str], str] | None = None
) -> Callable[..., str]:
    """An argparse ``type`` for one of ``choices``; ``why(text)`` ends the error message."""

    def parse(text: str) -> str:
        if text not in choices:
            reason = why(text) if why is not None else ""
            raise argparse.ArgumentTypeError(
                f"must be one of {list(choices)}, but got {text!r}{reason}."
            )
        return text

    return parse


def _listed(names: Sequence[str]) -> str:
    """``"a, b or c"``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


# Parameter names that `Experiment` checks across fields, as the flags `greedylr tune` takes.
_TUNE_FLAGS = {
    "n_trials": "--trials",
    "max_epochs": "--max-epochs",
    "min_epochs": "--min-epochs",
    "reduction_factor": "--reduction-factor",
    "early_stopping": "--early-stopping",
}


def name_flags(message: str) -> str:
    """``message`` with the Python parameter names of ``tune()`` replaced by their flags."""
    pattern = r"\b(" + "|".join(_TUNE_FLAGS) + r")\b"
    return re.sub(pattern, lambda match: _TUNE_FLAGS[match.group(1)], message)


_TUNE_EPILOG = """\
Stopping and continuing:
  Ctrl-C, kill -INT or kill -TERM stops every worker within a second or two; their running
  trials are marked interrupted (not failed). Run the same command again to continue the study,
  also after kill -9 or a crash: interrupted and lost trials run again, finished ones are kept.
  A larger --trials extends the study; a smaller one never drops trials.

Failing tasks:
  When the first 3 trials all fail with an error raised by the task (or kill their worker),
  the study stops and shows the first traceback. Every failed trial's traceback is kept in
  OUT/failures/ and named in trials.csv. NaN losses end their trial as failed; the study goes on.

Exit codes:
  0 done, 1 no trial completed or the task kept failing, 2 bad input (nothing stored),
  130 interrupted (Ctrl-C, SIGINT), 143 terminated (SIGTERM).
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``greedylr`` command."""
    from greedylr._tune import STORAGE_ENV
    from greedylr.backends._experiment import BACKENDS
    from greedylr.backends._experiment import EARLY_STOPPING
    from greedylr.backends._experiment import PLANNED_BACKENDS
    from greedylr.backends._experiment import SEARCHERS
    from greedylr.backends._experiment import unavailable_backend
    from greedylr.schedulers import list_schedules
    from greedylr.tasks import list_tasks

    parser = _Parser(
        prog="greedylr",
        description="Tune the GreedyLR learning-rate scheduler (and baseline schedules).",
    )
    parser.add_argument("--version", action="version", version=f"greedylr {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    tune = commands.add_parser(
        "tune",
        help="tune a schedule's hyperparameters on a task",
        description="Tune a schedule's hyperparameters on a task; stop bad trials early.",
        epilog=_TUNE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tasks = [info.name for info in list_tasks()]
    tune.add_argument(
        "--task",
        required=True,
        help=f"a built-in task ({_listed(tasks)}; see `greedylr tasks`) or your own trial "
        "function as package.module:function or file.py:function (a module in the current "
        "folder is found)",
    )
    schedules = list_schedules()
    tune.add_argument(
        "--schedule",
        default="greedylr",
        type=_one_of(schedules),
        metavar="NAME",
        help=f"the LR schedule to tune: {_listed(schedules)} (default: %(default)s)",
    )
    planned = sorted({name.replace("_", "-") for name in PLANNED_BACKENDS})
    tune.add_argument(
        "--backend",
        default="optuna",
        type=_one_of(BACKENDS, why=unavailable_backend),
        metavar="NAME",
        help=f"the engine: {_listed(BACKENDS)} (default: %(default)s); the "
        f"{' and '.join(planned)} backends come next and are not available yet",
    )
    tune.add_argument(
        "--trials",
        type=_int_at_least(1),
        default=300,
        metavar="N",
        help="how many trials to run (default: %(default)s)",
    )
    tune.add_argument(
        "--max-epochs",
        type=_int_at_least(1),
        metavar="N",
        help="the epochs of a trial that is never stopped early (default: the task's; "
        "required for a task that declares none)",
    )
    tune.add_argument(
        "--min-epochs",
        type=_int_at_least(1),
        default=1,
        metavar="N",
        help="the first epoch at which early stopping may stop a trial (default: %(default)s)",
    )
    tune.add_argument(
        "--reduction-factor",
        type=_int_at_least(2),
        default=3,
        metavar="N",
        help="early stopping keeps 1 in N trials at each rung (default: %(default)s)",
    )
    tune.add_argument(
        "--workers",
        type=_int_at_least(1),
        default=2,
        metavar="N",
        help="worker processes on this machine, running trials in parallel (default: %(default)s)",
    )
    tune.add_argument(
        "--searcher",
        default="tpe",
        type=_one_of(SEARCHERS),
        metavar="NAME",
        help=f"how configs are sampled: {_listed(SEARCHERS)} (default: %(default)s)",
    )
    tune.add_argument(
        "--early-stopping",
        default="hyperband",
        type=_one_of(EARLY_STOPPING),
        metavar="RULE",
        help=f"how bad trials are stopped early: {_listed(EARLY_STOPPING)} "
        "(sha is asha; default: %(default)s)",
    )
    tune.add_argument(
        "--seed",
        type=_int_at_least(0),
        default=0,
        metavar="N",
        help="the run seed: the samplers' and every trial's (default: %(default)s)",
    )
    tune.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="the run folder (default: runs/TASK-SCHEDULE-seedSEED)",
    )
    tune.add_argument(
        "--storage",
        metavar="URL",
        help="an Optuna storage: a journal file (PATH.log or journal:PATH) or an RDB URL such "
        "as postgresql://user@host/db (default: OUT/study.log)",
    )
    tune.add_argument(
        "--study",
        metavar="NAME",
        help="the study name (default: the run folder's name)",
    )
    tune.add_argument(
        "--space",
        type=Path,
        metavar="FILE",
        help='a search space as JSON: {"params": {NAME: {"type": "float", "low": ..., '
        '"high": ..., "log": true}, ...}, "constants": {NAME: VALUE}} '
        "(default: the schedule's own space)",
    )
    tune.add_argument(
        "--heartbeat",
        type=_int_at_least(1),
        metavar="SECONDS",
        help="seconds between the heartbeats of trials on an RDB storage (default: 10)",
    )
    tune.add_argument("--no-progress", action="store_true", help="show no progress bar on stderr")

    worker = commands.add_parser("worker", help="join a study on a shared storage")
    worker.add_argument(
        "--storage",
        metavar="URL",
        help=f"the study's storage URL (default: ${STORAGE_ENV})",
    )
    worker.add_argument(
        "--study", required=True, metavar="NAME", help="the name of the study to join"
    )
    worker.add_argument(
        "--threads",
        type=_int_at_least(1),
        metavar="N",
        help="torch threads of the trials (default: all cores)",
    )
    worker.add_argument(
        "--heartbeat",
        type=_int_at_least(1),
        metavar="SECONDS",
        help="seconds between the heartbeats of trials on an RDB storage (default: the study's)",
    )
    worker.add_argument("--worker-index", type=_int_at_least(0), help=argparse.SUPPRESS)

    report = commands.add_parser("report", help="a run's summary table and PNG figures")
    report.add_argument("run", type=Path, help="the run folder (what `greedylr tune` wrote)")
    report.add_argument(
        "--top",
        type=_int_at_least(1),
        default=5,
        metavar="N",
        help="how many of the best trials the figures draw (default: %(default)s)",
    )

    commands.add_parser("tasks", help="list the built-in tasks")
    return parser
