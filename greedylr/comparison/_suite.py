"""``greedylr compare --suite small|full``: one comparison per task of a fixed suite, and the
verdict across them.

Each task runs :func:`~greedylr.comparison.compare` in its own folder (``OUT/<task>/``, resumable
as any comparison), with the suite's epochs and budget for that task; ``OUT/report.md`` and
``OUT/suite.csv`` then pool GreedyLR against each baseline over the tasks.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from greedylr.comparison._compare import DEFAULT_SCHEDULES


if TYPE_CHECKING:
    import pandas as pd

    from greedylr.comparison._compare import CompareResult


METHODS = ("sgd-hd", "adam-hd", "sgd-schedulefree", "adamw-schedulefree")
"""The arms besides the schedules: hypergradient descent and schedule-free optimizers."""
ARTICLE_RATE = 0.867
"""The article's "as good or better" rate (86.7 % of 196 pairs)."""


@dataclass(frozen=True)
class SuiteTask:
    """A task of a suite: the epochs of its trials and its budget per study.

    Args:
        task: A built-in task.
        max_epochs: The epochs of a full trial and of each retraining run.
        budget_trials: The epoch budget of a study, in full trials' worth.
    """

    task: str
    max_epochs: int
    budget_trials: int

    @property
    def budget_epochs(self) -> int:
        """The epochs each study may spend tuning."""
        return self.budget_trials * self.max_epochs


@dataclass(frozen=True)
class Suite:
    """A fixed set of tasks, arms and protocol settings, compared task by task.

    Args:
        name: ``small`` or ``full``.
        tasks: The tasks, in the order they run.
        schedules: The arms, GreedyLR first.
        seeds: Retraining seeds per study's best config.
        studies: Tuning studies per arm and protocol.
        protocol: ``asha``, ``full`` or ``both``.
        description: One line.
    """

    name: str
    tasks: tuple[SuiteTask, ...]
    schedules: tuple[str, ...]
    seeds: int
    studies: int
    protocol: str
    description: str


_SMALL_TASKS = (  # epochs on one thread: digits, nmf, quadratic 5 ms; MNIST-1D 0.1 s;
    # Fashion-MNIST MLP 0.3 s (the first three cost their trials' start-up, not their epochs)
    SuiteTask("digits-mlp", max_epochs=50, budget_trials=20),
    SuiteTask("nmf", max_epochs=40, budget_trials=20),
    SuiteTask("quadratic", max_epochs=20, budget_trials=20),
    SuiteTask("mnist1d-cnn", max_epochs=30, budget_trials=12),
    SuiteTask("fashion-mnist-mlp", max_epochs=12, budget_trials=10),
)
SUITES = {
    "small": Suite(
        name="small",
        tasks=_SMALL_TASKS,
        schedules=(*DEFAULT_SCHEDULES, *METHODS),
        seeds=3,
        studies=1,
        protocol="asha",
        description="5 small tasks, 8 schedules + 4 methods, 1 study, 3 seeds: 20 minutes on "
        "2 CPU cores (measured)",
    ),
    "full": Suite(
        name="full",
        tasks=(
            SuiteTask("digits-mlp", max_epochs=50, budget_trials=10),
            SuiteTask("nmf", max_epochs=40, budget_trials=10),
            SuiteTask("quadratic", max_epochs=20, budget_trials=10),
            SuiteTask("mnist1d-cnn", max_epochs=30, budget_trials=10),
            SuiteTask("fashion-mnist-mlp", max_epochs=20, budget_trials=10),
            SuiteTask("fashion-mnist-cnn", max_epochs=20, budget_trials=10),
            SuiteTask("char-lm", max_epochs=20, budget_trials=10),
        ),
        schedules=(*DEFAULT_SCHEDULES, *METHODS),
        seeds=5,
        studies=3,
        protocol="both",
        description="7 tasks (the CNN and the char-LM too), 3 studies, 5 seeds, both "
        "protocols: hours to days on CPUs, meant for GPUs",
    ),
}
"""The suites ``--suite`` takes."""


@dataclass(frozen=True)
class SuiteResult:
    """What a suite found.

    Attributes:
        out: The suite's folder.
        suite: The suite run (with the arms, seeds, studies and protocol it ran with).
        results: Each task's comparison.
        versus: GreedyLR against each baseline, per task and protocol (``suite.csv``).
        totals: Per baseline and protocol, over the tasks: strict wins, ties and losses, and
            the paper-style pairs.
        as_good_or_better: The paper's rate over every pair of every task's tuned protocols.
        text: The summary printed on the terminal.
    """

    out: Path
    suite: Suite
    results: dict[str, CompareResult]
    versus: pd.DataFrame
    totals: pd.DataFrame
    as_good_or_better: float
    text: str
    notes: list[str] = field(default_factory=list)


def get_suite(name: str) -> Suite:
    """The suite ``name``.

    Raises:
        ValueError: No such suite.
    """
    if name not in SUITES:
        raise ValueError(f"`suite` must be one of {sorted(SUITES)}, but got {name!r}.")
    return SUITES[name]


def compare_suite(
    suite: str | Suite,
    *,
    schedules: str | Sequence[str] | None = None,
    backend: str = "optuna",
    studies: int | None = None,
    seeds: int | None = None,
    protocol: str | None = None,
    workers: int = 1,
    searcher: str | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    progress: bool = True,
    verbose: bool = False,
) -> SuiteResult:
    """Compare GreedyLR with the baselines on every task of ``suite``, then across them.

    Each task is a :func:`~greedylr.comparison.compare` in ``OUT/<task>/`` with the suite's
    epochs and budget for it; the arms, seeds, studies and protocol are the suite's unless
    given. Rerunning the same call continues it (finished tasks, studies and retraining runs
    are kept).

    Args:
        suite: ``small`` or ``full`` (:data:`SUITES`), or a :class:`Suite` of your own.
        schedules: The arms (default: the suite's: 8 schedules and 4 methods).
        backend: The engine of every study.
        studies: Tuning studies per arm and protocol (default: the suite's).
        seeds: Retraining seeds (default: the suite's).
        protocol: ``asha``, ``full`` or ``both`` (default: the suite's).
        workers: Trials at once in each study.
        searcher: The asha protocol's searcher (default: the backend's own).
        seed: The base seed of every task's comparison.
        out: The folder (default ``runs/suite-<suite>``).
        progress: Show which task, arm and study runs on stderr.
        verbose: Show the engines' own output.

    Raises:
        ValueError: Bad input (an unknown suite, arm, backend ...), or a task's data missing
            (the message says what to install).
    """
    from dataclasses import replace

    from greedylr.comparison._compare import compare
    from greedylr.comparison._plan import parse_protocol
    from greedylr.comparison._plan import parse_schedules
    from greedylr.comparison._protocol import say

    chosen = suite if isinstance(suite, Suite) else get_suite(suite)
    chosen = replace(
        chosen,
        schedules=parse_schedules(schedules) if schedules is not None else chosen.schedules,
        studies=studies if studies is not None else chosen.studies,
        seeds=seeds if seeds is not None else chosen.seeds,
        protocol=protocol if protocol is not None else chosen.protocol,
    )
    parse_protocol(chosen.protocol)
    folder = Path(out) if out is not None else Path("runs") / f"suite-{chosen.name}"
    results: dict[str, CompareResult] = {}
    for index, item in enumerate(chosen.tasks, start=1):
        say(
            f"suite {chosen.name}: task {index}/{len(chosen.tasks)}: {item.task} "
            f"({item.max_epochs} epochs per trial, {item.budget_epochs} per study)",
            enabled=progress,
        )
        results[item.task] = compare(
            item.task,
            schedules=chosen.schedules,
            backend=backend,
            max_epochs=item.max_epochs,
            budget_epochs=item.budget_epochs,
            studies=chosen.studies,
            seeds=chosen.seeds,
            protocol=chosen.protocol,
            workers=workers,
            searcher=searcher,
            seed=seed,
            out=folder / item.task,
            progress=progress,
            verbose=verbose,
        )
    result = _pool(folder, chosen, results)
    command = suite_command(chosen, backend=backend, workers=workers, seed=seed, out=folder)
    (folder / "suite.csv").write_text(result.versus.to_csv(index=False))
    (folder / "report.md").write_text(markdown(result, command))
    return result


def _pool(out: Path, suite: Suite, results: dict[str, CompareResult]) -> SuiteResult:
    """GreedyLR against each baseline, task by task and over the tasks."""
    import pandas as pd

    from greedylr.comparison._plan import DEFAULTS_PROTOCOL

    frames = [
        result.versus.assign(task=task, metric=result.metric)
        for task, result in results.items()
        if len(result.versus)
    ]
    versus = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    totals = pd.DataFrame()
    rate = math.nan
    if len(versus):
        versus = versus[["task", "metric", *[c for c in versus if c not in ("task", "metric")]]]
        totals = (
            versus.assign(
                strict_wins=versus["strict"] == "win",
                strict_ties=versus["strict"] == "tie",
                strict_losses=versus["strict"] == "loss",
            )
            .groupby(["protocol", "baseline"], sort=False)[
                ["strict_wins", "strict_ties", "strict_losses", "pairs", "wins", "ties", "losses"]
            ]
            .sum()
            .reset_index()
        )
        totals["as_good_or_better"] = (totals["wins"] + totals["ties"]) / totals["pairs"]
        tuned = versus[versus["protocol"] != DEFAULTS_PROTOCOL]
        pairs = int(tuned["pairs"].sum())
        if pairs:
            rate = float((tuned["wins"].sum() + tuned["ties"].sum()) / pairs)
    notes = [f"{task}: {note}" for task, result in results.items() for note in result.notes]
    text = _summary(suite, versus, totals, rate)
    return SuiteResult(out, suite, results, versus, totals, rate, text, notes)


def _summary(suite: Suite, versus: pd.DataFrame, totals: pd.DataFrame, rate: float) -> str:
    """The verdict over the tasks, in a few lines."""
    from greedylr.comparison._plan import DEFAULTS_PROTOCOL

    tasks = len(suite.tasks)
    lines = [f"Suite {suite.name}: {tasks} tasks, {len(suite.schedules)} arms."]
    for _, row in totals.iterrows():
        if row["protocol"] == DEFAULTS_PROTOCOL:
            continue
        lines.append(
            f"GreedyLR vs {row['baseline']}: strict {int(row['strict_wins'])} wins / "
            f"{int(row['strict_ties'])} ties / {int(row['strict_losses'])} losses over "
            f"{tasks} tasks; paper-style as good or better in {row['as_good_or_better']:.0%} "
            f"of {int(row['pairs'])} pairs."
        )
    if math.isfinite(rate):
        lines.append(
            f"Over every pair of the tuned protocols: as good or better in {rate:.1%} "
            f"(the article: {ARTICLE_RATE:.1%} of 196 pairs)."
        )
    return "\n".join(lines)


def suite_command(suite: Suite, *, backend: str, workers: int, seed: int, out: Path) -> str:
    """The ``greedylr compare --suite`` command that runs (or continues) this suite."""
    default = SUITES.get(suite.name)
    if default is None:  # a suite of the caller's own: it reruns as a call
        return f"greedylr.comparison.compare_suite({suite!r}, backend={backend!r}, ...)"
    parts = [f"greedylr compare --suite {suite.name} --backend {backend} --workers {workers}"]
    for flag, value, stock in (
        ("--schedules", ",".join(suite.schedules), ",".join(default.schedules)),
        ("--studies", suite.studies, default.studies),
        ("--seeds", suite.seeds, default.seeds),
        ("--protocol", suite.protocol, default.protocol),
    ):
        if value != stock:
            parts.append(f"{flag} {value}")
    parts.append(f"--seed {seed} --out {out}")
    return " ".join(parts)


def markdown(result: SuiteResult, command: str) -> str:
    """``report.md`` of the suite: the verdict, the tables, links to each task's report."""
    from greedylr.comparison._report import markdown_table

    suite = result.suite
    versions: dict[str, Any] = {}
    for task in result.results:
        stored = json.loads((result.out / task / "compare.json").read_text())
        versions = stored.get("versions", versions)
    import pandas as pd

    columns = ["task", "protocol", "arm", "test_metric", "ci_low", "ci_high", "test_loss"]
    arms = [
        compared.arms.assign(task=task)[columns]
        for task, compared in result.results.items()
        if len(compared.arms)
    ]

    sections = [
        f"# GreedyLR against tuned baselines: the {suite.name} suite",
        suite.description + ".",
        "## The verdict",
        result.text.replace("\n", "  \n"),
        "## Over the tasks: GreedyLR against each baseline",
        "`strict_*`: tasks where the 95 % bootstrap CI of the difference of mean test metric "
        "excludes 0 and exceeds the task's tolerance. `wins/ties/losses`: the paper's rule on "
        "paired test losses (a tie when |delta| < 0.1 or within 1 %), summed over the tasks.",
        markdown_table(result.totals) if len(result.totals) else "(no comparison finished)",
        "## Task by task",
        markdown_table(result.versus) if len(result.versus) else "(no comparison finished)",
        "## Test metric of every arm",
        markdown_table(pd.concat(arms, ignore_index=True)) if arms else "(none)",
        "Each task's own report (figures, studies, spaces): "
        + ", ".join(f"[{task}]({task}/report.md)" for task in result.results),
        *(["Notes:", *[f"- {note}" for note in result.notes]] if result.notes else []),
        "## How to rerun it",
        f"```\n{command}\n```",
        "Tasks, epochs per trial and budgets per study:",
        markdown_table(
            pd.DataFrame(
                [
                    {"task": t.task, "max_epochs": t.max_epochs, "budget_epochs": t.budget_epochs}
                    for t in suite.tasks
                ]
            )
        ),
        f"Arms: {', '.join(suite.schedules)}. Studies {suite.studies}, seeds {suite.seeds}, "
        f"protocol {suite.protocol}.",
        "Versions:",
        f"```json\n{json.dumps(versions, indent=2)}\n```",
    ]
    return "\n\n".join(sections) + "\n"
