"""``greedylr.compare``: is GreedyLR, tuned, better than the tuned baselines? As one call."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from greedylr._checks import check_int
from greedylr.comparison._plan import DEFAULTS_PROTOCOL
from greedylr.comparison._plan import Plan
from greedylr.comparison._plan import check_same_plan
from greedylr.comparison._plan import parse_protocol
from greedylr.comparison._plan import parse_schedules
from greedylr.comparison._plan import write_json


if TYPE_CHECKING:
    import pandas as pd


DEFAULT_SCHEDULES = (
    "greedylr",
    "cosine",
    "linear",
    "step",
    "constant",
    "onecycle",
    "plateau",
    "wsd",
)
BUDGET_TRIALS = 10
"""The default epoch budget of a study: this many full trials' worth."""


@dataclass(frozen=True)
class CompareResult:
    """What a comparison found.

    Attributes:
        out: The comparison's folder.
        runs: ``compare.csv``: one row per (task, arm, protocol, study, seed).
        arms: Per protocol and arm: the test metric (mean, 95 % CI), time to the target, ...
        versus: GreedyLR against each baseline: strict and paper-style outcomes.
        kendall: Per arm and early rung: Kendall's tau of the rung's ranking with the final one.
        anytime: Each study's best-so-far validation loss against the epochs spent.
        as_good_or_better: The paper's rate over every pair of the tuned protocols.
        metric: The test metric compared.
        mode: ``min`` or ``max``.
        tolerance: The strict rule's tolerance.
        target: The validation loss of the time-to-target columns.
        text: The summary printed on the terminal.
        figures: The PNG files written.
        notes: What did not go as planned (a study short of its budget, ...).
    """

    out: Path
    runs: pd.DataFrame
    arms: pd.DataFrame
    versus: pd.DataFrame
    kendall: pd.DataFrame
    anytime: pd.DataFrame
    as_good_or_better: float
    metric: str
    mode: str
    tolerance: float
    target: float
    text: str
    figures: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def compare(
    task: str | Callable[..., Any],
    *,
    schedules: str | Sequence[str] = DEFAULT_SCHEDULES,
    backend: str = "optuna",
    max_epochs: int | None = None,
    budget_epochs: int | None = None,
    studies: int = 3,
    seeds: int = 5,
    protocol: str = "both",
    workers: int = 1,
    searcher: str | None = None,
    min_epochs: int = 1,
    reduction_factor: int = 3,
    seed: int = 0,
    out: str | Path | None = None,
    metric: str | None = None,
    metric_mode: str | None = None,
    tolerance: float | None = None,
    target: float | None = None,
    progress: bool = True,
    verbose: bool = False,
) -> CompareResult:
    """Tune every schedule the same way, retrain each study's best on fresh seeds, and judge
    GreedyLR against each baseline on the test split.

    Every arm gets the same searcher, the same epoch budget per study (trials are counted in
    trial order while their epochs fit it), the same early-stopping settings and its own
    search space; an untuned-defaults arm per schedule runs too. Rerunning the same call on
    the same ``out`` continues it: finished studies and retraining runs are kept.

    Args:
        task: A built-in task, ``package.module:function``, or a module-level function. It must
            report a ``test_`` metric (``test_loss``, ...) at its last epoch.
        schedules: The arms (``"greedylr,cosine"`` or a sequence); ``greedylr`` among them.
            A method that adapts or replaces the schedule (``"sgd-hd"``, ...: see
            :func:`greedylr.searchers.list_methods`) is an arm too, with its own space.
        backend: The engine of every study (``optuna``, ``ray`` or ``syne-tune``).
        max_epochs: The epochs of a full trial and of each retraining run (default: the task's).
        budget_epochs: The epochs each study may spend (default: 10 full trials' worth).
        studies: Tuning studies per arm and protocol (different sampler seeds).
        seeds: Fresh training seeds each study's best config is retrained with.
        protocol: ``asha`` (the backend's searcher, ASHA early stopping), ``full`` (random
            search, no early stopping: no horizon bias) or ``both``.
        workers: Trials at once in each study.
        searcher: The ``asha`` protocol's searcher (default: the backend's own).
        min_epochs: ASHA's first rung.
        reduction_factor: ASHA keeps 1 in this many trials per rung.
        seed: The base seed (study ``s`` tunes with ``seed + s``; retraining uses
            ``seed + 1000 + k``).
        out: The folder (default ``runs/compare-<task>``).
        metric: The test metric (default ``test_accuracy`` if reported, else ``test_loss``).
        metric_mode: ``min`` or ``max`` (default: ``max`` for accuracy-like names).
        tolerance: The strict rule's tolerance on the metric (default: the median seed-to-seed
            standard deviation within a study).
        target: The validation loss of the time-to-target figures (default: the median final
            validation loss of the tuned runs).
        progress: Show which arm and study runs, and each study's progress bar, on stderr.
        verbose: Show the engines' own output.

    Raises:
        ValueError: Bad input (nothing is stored), another comparison in ``out``, or a task
            that reports no ``test_`` metric.
        KeyboardInterrupt: Ctrl-C (or SIGTERM while a study runs); rerun the same call to
            continue (a SIGTERM between studies ends the process; nothing is lost either way).
    """
    from greedylr._tune import _check_writable
    from greedylr.backends._contract import function_path
    from greedylr.backends._registry import backend_spec
    from greedylr.backends._registry import check_choice
    from greedylr.comparison._protocol import defaults_config
    from greedylr.tasks import resolve_task
    from greedylr.tasks import task_slug

    task_name = task if isinstance(task, str) else function_path(task)
    info = resolve_task(task_name)
    if max_epochs is None:
        if info.default_epochs is None:
            raise ValueError(f"The task {task_name!r} has no default epochs; give `max_epochs`.")
        max_epochs = info.default_epochs
    check_int("max_epochs", max_epochs, minimum=1)
    check_int("workers", workers, minimum=1)
    protocols = parse_protocol(protocol)
    spec = backend_spec(backend)
    searcher = searcher if searcher is not None else spec.default_searcher
    check_choice(spec, "searcher", searcher)
    if "asha" in protocols:
        check_choice(spec, "early_stopping", "asha")
    if "full" in protocols:
        check_choice(spec, "searcher", "random")
        check_choice(spec, "early_stopping", "none")
    plan = Plan(
        task=task_name,
        function=info.function,
        schedules=parse_schedules(schedules),
        backend=backend,
        max_epochs=max_epochs,
        budget_epochs=budget_epochs if budget_epochs is not None else BUDGET_TRIALS * max_epochs,
        studies=studies,
        seeds=seeds,
        protocols=protocols,
        searcher=searcher,
        min_epochs=min_epochs,
        reduction_factor=reduction_factor,
        seed=seed,
    )
    folder = Path(out) if out is not None else Path("runs") / f"compare-{task_slug(task_name)}"
    defaults = {schedule: defaults_config(plan, schedule) for schedule in plan.schedules}
    _check_writable(folder)
    check_same_plan(folder, plan)
    write_json(folder / "compare.json", {"plan": plan.to_dict(), **provenance(plan, folder)})
    _run(
        plan,
        folder,
        defaults,
        metric=metric,
        workers=workers,
        progress=progress,
        verbose=verbose,
    )
    from greedylr.comparison._report import analyse

    return analyse(
        plan,
        folder,
        metric=metric,
        metric_mode=metric_mode,
        tolerance=tolerance,
        target=target,
    )


def _run(
    plan: Plan,
    out: Path,
    defaults: dict[str, tuple[dict[str, Any], dict[str, Any]]],
    *,
    metric: str | None,
    workers: int,
    progress: bool,
    verbose: bool,
) -> None:
    """The untuned defaults of every arm, then each protocol's studies and their retraining."""
    from greedylr.comparison._protocol import retrain
    from greedylr.comparison._protocol import retrain_file
    from greedylr.comparison._protocol import run_study
    from greedylr.comparison._protocol import say

    steps = len(plan.schedules) * (1 + len(plan.protocols) * plan.studies)
    step = 0
    for schedule in plan.schedules:
        step += 1
        config, _ = defaults[schedule]
        say(f"[{step}/{steps}] {schedule}: untuned defaults, {plan.seeds} seeds", enabled=progress)
        for seed in plan.retrain_seeds:
            path = retrain_file(out, DEFAULTS_PROTOCOL, schedule, 0, seed)
            record = retrain(plan, config, seed=seed, path=path)
            _check_metric(record, metric)
    for protocol in plan.protocols:
        for schedule in plan.schedules:
            for study in range(plan.studies):
                step += 1
                where = f"[{step}/{steps}] {protocol} {schedule} study {study + 1}/{plan.studies}"
                say(f"{where}: tuning ({plan.budget_epochs} epochs)", enabled=progress)
                record = run_study(
                    plan,
                    protocol,
                    schedule,
                    study,
                    out=out,
                    workers=workers,
                    progress=progress,
                    verbose=verbose,
                )
                best = record["best_val_loss"]
                say(
                    f"{where}: {record['trials']} trials, {record['epochs']} epochs, best val "
                    f"loss {best:.4g}; retraining on {plan.seeds} seeds"
                    if record["config"] is not None
                    else f"{where}: {record['note']}",
                    enabled=progress,
                )
                if record["config"] is None:
                    continue
                for seed in plan.retrain_seeds:
                    path = retrain_file(out, protocol, schedule, study, seed)
                    retrain(plan, record["config"], seed=seed, path=path)


def _check_metric(record: dict[str, Any], metric: str | None) -> None:
    """Refuse, after the first run and before any tuning, a metric the task does not report."""
    last = record["history"][-1] if record["history"] else {}
    reported = sorted(key for key in last if key.startswith("test_"))
    if metric is not None and reported and metric not in reported:
        raise ValueError(f"`metric` must be one the task reports, {reported}, but got {metric!r}.")


def provenance(plan: Plan, out: Path) -> dict[str, Any]:
    """What reruns the comparison: the command and the versions of everything involved."""
    import importlib.metadata
    import platform

    from greedylr._version import __version__
    from greedylr.backends._registry import backend_spec

    versions = {"greedylr": __version__, "python": platform.python_version()}
    engine = backend_spec(plan.backend).module.split(".")[0]
    distributions = importlib.metadata.packages_distributions()
    for module in ("torch", "numpy", "scipy", "pandas", engine):
        for name in distributions.get(module, [module])[:1]:
            try:
                versions[name] = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                versions[name] = "not installed"
    return {"command": command_line(plan, out), "versions": versions}


def command_line(plan: Plan, out: Path) -> str:
    """The ``greedylr compare`` command that runs (or continues) this plan."""
    parts = [
        "greedylr compare",
        f"--task {plan.task}",
        f"--schedules {','.join(plan.schedules)}",
        f"--backend {plan.backend}",
        f"--max-epochs {plan.max_epochs}",
        f"--budget-epochs {plan.budget_epochs}",
        f"--studies {plan.studies}",
        f"--seeds {plan.seeds}",
        f"--protocol {'both' if len(plan.protocols) == 2 else plan.protocols[0]}",
        f"--searcher {plan.searcher}",
        f"--min-epochs {plan.min_epochs}",
        f"--reduction-factor {plan.reduction_factor}",
        f"--seed {plan.seed}",
        f"--out {out}",
    ]
    return " ".join(parts)
