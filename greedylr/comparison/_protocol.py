"""Running a comparison: the tuning studies (an equal epoch budget each) and the retraining runs.

Each study is a ``greedylr.tune`` run folder, so an interrupted study continues by itself; a
finished one leaves ``study.json`` and is never run again; each retraining run leaves one JSON
file per (arm, study, seed). Rerunning the same comparison therefore continues where it stopped.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from greedylr.comparison._plan import Plan
from greedylr.comparison._plan import read_retrain_record
from greedylr.comparison._plan import write_json
from greedylr.comparison._stats import rungs


if TYPE_CHECKING:
    import pandas as pd


MAX_ROUNDS = 12
"""A study asks for more trials at most this many times to spend its budget."""
ASYNCHRONY = 1.5
"""Asynchronous ASHA promotes more trials than the synchronous rate: the first round's guess
of the epochs per trial is this many times the synchronous expectation (fewer trials asked;
later rounds add what the budget still allows)."""


def study_folder(out: Path, protocol: str, schedule: str, study: int) -> Path:
    """Where a study's files live: ``OUT/studies/PROTOCOL/SCHEDULE/study-N``."""
    return out / "studies" / protocol / schedule / f"study-{study}"


def retrain_file(out: Path, protocol: str, schedule: str, study: int, seed: int) -> Path:
    """Where a retraining run's record lives."""
    return out / "retrain" / protocol / schedule / f"study-{study}" / f"seed-{seed}.json"


def first_round_trials(plan: Plan, protocol: str) -> int:
    """The trials a study asks for first: the budget over the expected epochs per trial.

    Full fidelity: ``budget // max_epochs`` exactly. ASHA: the untuned defaults (never stopped)
    plus the rest of the budget over the expected epochs of a trial under synchronous
    successive halving, times :data:`ASYNCHRONY`.
    """
    if protocol == "full":
        return max(1, plan.budget_epochs // plan.max_epochs)
    expected, previous, kept = 0.0, 0, 1.0
    for rung in [*rungs(plan.min_epochs, plan.reduction_factor, plan.max_epochs), plan.max_epochs]:
        expected += (rung - previous) * kept
        previous, kept = rung, kept / plan.reduction_factor
    left = plan.budget_epochs - plan.max_epochs
    return 1 + max(1, math.floor(left / (expected * ASYNCHRONY)))


def run_study(
    plan: Plan,
    protocol: str,
    schedule: str,
    study: int,
    *,
    out: Path,
    workers: int,
    progress: bool,
    verbose: bool,
) -> dict[str, Any]:
    """Tune ``schedule`` until the study has spent its epoch budget; its record (cached).

    A study asks for :func:`first_round_trials`, then for more while it has spent less than
    the budget: each round reruns the study's run folder with a larger ``n_trials``.
    The study counts its finished trials in trial order while their epochs fit the budget:
    the best config is the completed trial with the lowest final validation loss among them.
    """
    from greedylr._tune import tune
    from greedylr.backends._results import read_result

    folder = study_folder(out, protocol, schedule, study)
    record_path = folder / "study.json"
    if record_path.is_file():
        return dict(json.loads(record_path.read_text()))
    searcher, early_stopping = (
        (plan.searcher, "asha") if protocol == "asha" else ("random", "none")
    )
    asked, rounds = first_round_trials(plan, protocol), 0
    while True:
        result = tune(
            plan.task,
            schedule=schedule,
            backend=plan.backend,
            n_trials=asked,
            max_epochs=plan.max_epochs,
            workers=workers,
            searcher=searcher,
            early_stopping=early_stopping,
            min_epochs=plan.min_epochs,
            reduction_factor=plan.reduction_factor,
            seed=plan.study_seeds[study],
            out=folder / "run",
            progress=progress,
            verbose=verbose,
        )
        rounds += 1
        spent, finished = result.epochs_run, len(result.finished)
        asked = max(asked, result.experiment.n_trials)
        if spent >= plan.budget_epochs or rounds >= MAX_ROUNDS or not finished:
            break
        asked += max(1, math.ceil((plan.budget_epochs - spent) / (spent / finished)))
    result = read_result(folder / "run")
    kept = within_budget(result.trials, plan.budget_epochs)
    best = _best_row(kept)
    note = "no trial within the budget completed" if best is None else ""
    record = {
        "protocol": protocol,
        "schedule": schedule,
        "study": study,
        "seed": plan.study_seeds[study],
        "searcher": searcher,
        "early_stopping": early_stopping,
        "trials_asked": asked,
        "rounds": rounds,
        "trials": len(kept),
        "epochs": int(kept["epochs"].sum()) if len(kept) else 0,
        "epochs_run": result.epochs_run,
        "best_trial": None if best is None else int(best["trial"]),
        "best_val_loss": math.nan if best is None else float(best["final_loss"]),
        "config": None if best is None else typed_config(best, result.experiment.search_space),
        "space": json.loads(result.experiment.space),
        "note": note,
    }
    write_json(record_path, record)
    return record


def within_budget(trials: pd.DataFrame, budget: int) -> pd.DataFrame:
    """The finished trials, in trial order, while their epochs add up to at most ``budget``:
    the study as it stood when it had spent its budget."""
    if not len(trials):
        return trials
    finished = trials[trials["status"].isin(["completed", "pruned", "failed", "interrupted"])]
    finished = finished.sort_values("trial")
    return finished[finished["epochs"].cumsum() <= budget]


def _best_row(trials: pd.DataFrame) -> pd.Series | None:
    if not len(trials):
        return None
    completed = trials[(trials["status"] == "completed") & trials["final_loss"].map(_finite)]
    if not len(completed):
        return None
    return completed.sort_values(["final_loss", "trial"]).iloc[0]


def typed_config(row: pd.Series, space: dict[str, Any]) -> dict[str, Any]:
    """A trial's config from its ``config.*`` columns, with the types its space gives (a table
    column holding a missing value turns ints into floats)."""
    from greedylr.searchers import CategoricalParam
    from greedylr.searchers import IntParam

    config: dict[str, Any] = {}
    for column, value in row.items():
        name = str(column)
        if not name.startswith("config.") or _missing(value):
            continue
        key = name.removeprefix("config.")
        value = value.item() if hasattr(value, "item") else value
        param = space.get(key)
        if isinstance(param, IntParam) or (key in ("epochs", "seed") and isinstance(value, float)):
            value = int(value)
        elif isinstance(param, CategoricalParam):
            value = next((choice for choice in param.choices if choice == value), value)
        config[key] = value
    return config


def defaults_config(plan: Plan, schedule: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The untuned defaults of ``schedule`` as its study's first trial runs them, and its space.

    A method's config names its schedule (``constant``) and its optimizer.
    """
    from greedylr.backends._experiment import Experiment
    from greedylr.searchers import resolve_schedule
    from greedylr.searchers import split_space

    registered, space = resolve_schedule(schedule)
    experiment = Experiment.create(
        plan.task,
        schedule=registered,
        space=space,
        n_trials=1,
        max_epochs=plan.max_epochs,
        backend=plan.backend,
        seed=plan.seed,
    )
    _, constants = split_space(experiment.search_space)
    return {**constants, **experiment.default_config()}, json.loads(experiment.space)


def retrain(plan: Plan, config: dict[str, Any], *, seed: int, path: Path) -> dict[str, Any]:
    """Train ``config`` for ``max_epochs`` with a fresh ``seed``; its record (cached in ``path``).

    The task's own function runs in this process with a reporter that records each epoch; a
    NaN or infinite loss ends the run as ``diverged``.

    Raises:
        ValueError: The task reports no ``test_`` metric at its last epoch.
    """
    from greedylr.backends._contract import TrialDiverged
    from greedylr.backends._contract import ValidatingReporter
    from greedylr.backends._contract import load_trial_function
    from greedylr.tasks import resolve_task

    if path.is_file():
        return read_retrain_record(path)
    function = load_trial_function(plan.function)
    run_config = {**config, "seed": seed, "epochs": plan.max_epochs}
    reporter = ValidatingReporter(max_epochs=plan.max_epochs)
    status = "completed"
    start = time.perf_counter()
    with _torch_threads(resolve_task(plan.task).threads):
        try:
            function(run_config, reporter)
        except TrialDiverged:
            status = "diverged"
    history = reporter.history
    if status == "completed" and (
        not history or not any(key.startswith("test_") for key in history[-1])
    ):
        reported = sorted(history[-1]) if history else []
        raise ValueError(
            f"The task {plan.task!r} must report a `test_` metric (test_loss, ...) at its last "
            f"epoch for `greedylr compare`, but its last report held {reported}."
        )
    record = {
        "config": run_config,
        "seed": seed,
        "status": status,
        "seconds": time.perf_counter() - start,
        "history": history,
    }
    write_json(path, record)
    return record


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Run with the task's torch threads (its declaration's), then restore them."""
    import torch

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def say(message: str, *, enabled: bool) -> None:
    """One progress line on stderr."""
    if enabled:
        print(f"greedylr compare: {message}", file=sys.stderr, flush=True)


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
