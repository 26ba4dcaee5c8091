"""The ``greedylr`` command's argument parser: every flag, its choices, its help, its checks.

Values are checked as they are parsed, so an error names the flag the user typed.
"""

from __future__ import annotations

import argparse
import math
import re
import textwrap
from collections.abc import Callable
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from typing import NoReturn

from greedylr._checks import int_parser
from greedylr._version import __version__
from greedylr.backends._backend import Option


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
    return _argparse_type(int_parser(low))


def _number_above(low: float, *, strict: bool) -> Callable[[str], float]:
    """An argparse ``type`` for numbers > ``low`` (``strict``) or >= ``low``."""
    sign = ">" if strict else ">="

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (value > low if strict else value >= low) or math.isinf(value):
            raise argparse.ArgumentTypeError(f"must be a number {sign} {low:g}, but got {text!r}.")
        return int(value) if value == int(value) else value

    return parse


def _argparse_type(parser: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse ``type`` from a parser that raises ``ValueError``: argparse then names the
    flag in the error, and the message is kept as it is."""

    def parse(text: str) -> Any:
        try:
            return parser(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error).rstrip(".") + ".") from None

    return parse


def _add_engine_options(parser: argparse.ArgumentParser, backends: dict[str, Any]) -> None:
    """A flag for each engine's own options; ``tune()`` refuses one the chosen engine lacks."""
    seen: dict[str, list[str]] = {}
    options: dict[str, Option] = {}
    for spec in backends.values():
        for option in spec.options:
            seen.setdefault(option.name, []).append(spec.title)
            options.setdefault(option.name, option)
    for name, option in options.items():
        parser.add_argument(
            option.flag,
            type=_argparse_type(option.parse),
            metavar=option.metavar,
            help=f"({' and '.join(seen[name])}) {option.help}",
        )


def engine_options(args: argparse.Namespace) -> dict[str, Any]:
    """The engine options given on the command line, by ``tune()`` keyword."""
    from greedylr.backends._registry import BACKENDS

    names = {option.name for spec in BACKENDS.values() for option in spec.options}
    return {name: getattr(args, name) for name in sorted(names) if getattr(args, name) is not None}


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
    """``message`` with the Python parameter names of ``tune()`` replaced by their flags.

    The names above anywhere; the other keywords (``searcher``, the engines' options, ...)
    where they are code: in backticks or before ``=``.
    """
    from greedylr.backends._registry import BACKENDS

    pattern = r"\b(" + "|".join(_TUNE_FLAGS) + r")\b"
    message = re.sub(pattern, lambda match: _TUNE_FLAGS[match.group(1)], message)
    names = {"searcher", "cpus_per_trial", "gpus_per_trial", "workers", "backend"}
    names |= {option.name for spec in BACKENDS.values() for option in spec.options}
    code = r"(?<=`)(" + "|".join(sorted(names)) + r")(?=`)|\b(" + "|".join(sorted(names))
    code += r")(?==)"
    return re.sub(code, lambda m: "--" + (m.group(1) or m.group(2)).replace("_", "-"), message)


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
    from greedylr._schedule_names import SCHEDULE_NAMES
    from greedylr._tune import STORAGE_ENV
    from greedylr.backends._backend import EARLY_STOPPING_ALIASES
    from greedylr.backends._backend import EARLY_STOPPING_RULES
    from greedylr.backends._backend import SEARCHER_NAMES
    from greedylr.backends._registry import BACKENDS
    from greedylr.searchers import list_methods
    from greedylr.searchers import tunable_schedules
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
    tune.add_argument(
        "--schedule",
        default="greedylr",
        type=_one_of(tunable_schedules()),
        metavar="NAME",
        help=f"the LR schedule to tune: {_listed(SCHEDULE_NAMES)}; or a method that adapts "
        f"or replaces the schedule (the constant schedule with its own optimizer): "
        f"{_listed(list_methods())} (default: %(default)s)",
    )
    backends = list(BACKENDS)
    tune.add_argument(
        "--backend",
        default="optuna",
        type=_one_of(backends),
        metavar="NAME",
        help=f"the engine: {_listed(backends)} (default: %(default)s); each needs its extra: "
        + ", ".join(f'pip install "greedylr[{spec.extra}]"' for spec in BACKENDS.values()),
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
        help="trials at once: worker processes on this machine, or trials at once on a cluster "
        "(default: %(default)s)",
    )
    tune.add_argument(
        "--cpus-per-trial",
        type=_number_above(0, strict=True),
        metavar="N",
        help="CPU cores (torch threads) per trial; "
        + _listed([spec.title for spec in BACKENDS.values() if spec.cpu_fractions])
        + " takes fractions (default: the cores shared among the trials that run at once)",
    )
    tune.add_argument(
        "--gpus-per-trial",
        type=_number_above(0, strict=False),
        default=0,
        metavar="N",
        help="GPUs per trial; each trial sees only its own through CUDA_VISIBLE_DEVICES. "
        + _listed([spec.title for spec in BACKENDS.values() if spec.gpu_fractions])
        + " takes fractions (0.5: two trials share a GPU) (default: %(default)s, no GPU)",
    )
    searchers = list(SEARCHER_NAMES)
    tune.add_argument(
        "--searcher",
        type=_one_of(searchers),
        metavar="NAME",
        help=f"how configs are sampled: {_listed(searchers)}, as the backend offers ("
        + "; ".join(
            f"{spec.title}: {_listed(spec.searchers)}, default {spec.default_searcher}"
            for spec in BACKENDS.values()
        )
        + ")",
    )
    rules = list(EARLY_STOPPING_RULES)
    tune.add_argument(
        "--early-stopping",
        type=_one_of([*rules, *EARLY_STOPPING_ALIASES]),
        metavar="RULE",
        help=f"how bad trials are stopped early: {_listed(rules)}, as the backend offers ("
        + "; ".join(
            f"{spec.title}: {_listed(spec.early_stopping)}, default {spec.default_early_stopping}"
            for spec in BACKENDS.values()
        )
        + ")",
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
        "--space",
        type=Path,
        metavar="FILE",
        help='a search space as JSON: {"params": {NAME: {"type": "float", "low": ..., '
        '"high": ..., "log": true}, ...}, "constants": {NAME: VALUE}} '
        "(default: the schedule's own space)",
    )
    _add_engine_options(tune, BACKENDS)
    tune.add_argument("--no-progress", action="store_true", help="show no progress bar on stderr")
    tune.add_argument(
        "--verbose", action="store_true", help="show the engine's own log lines and tables"
    )

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
    from greedylr.comparison._cli import add_compare_parser

    add_compare_parser(commands)
    return parser
