"""The Optuna backend: samplers, pruners, the study, where it stands, and its results.

Storages are in :mod:`greedylr.backends._optuna_storage`; the worker loop and the recovery of
lost trials in :mod:`greedylr.backends._optuna_worker`; worker processes in
:mod:`greedylr.backends._optuna_local`.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from greedylr._imports import require
from greedylr.backends._backend import FAILURES_BEFORE_STOP
from greedylr.backends._backend import Census
from greedylr.backends._experiment import Experiment
from greedylr.backends._optuna_storage import DEFAULT_HEARTBEAT
from greedylr.backends._optuna_storage import hide_password
from greedylr.backends._optuna_storage import open_storage
from greedylr.backends._optuna_storage import optuna_module
from greedylr.backends._results import Status
from greedylr.backends._results import TrialResult
from greedylr.searchers import split_space


EXPERIMENT_ATTR = "greedylr_experiment"
HEARTBEAT_ATTR = "greedylr_heartbeat"


def make_sampler(experiment: Experiment, seed: int) -> Any:
    """The sampler named by ``experiment.searcher``, seeded with ``seed``."""
    samplers = optuna_module().samplers
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if experiment.searcher == "tpe":
            return samplers.TPESampler(seed=seed, constant_liar=True)
        if experiment.searcher == "random":
            return samplers.RandomSampler(seed=seed)
        if experiment.searcher == "gp":
            return samplers.GPSampler(seed=seed, warn_independent_sampling=False)
        if experiment.searcher == "cmaes":
            require("cmaes", extra="optuna", feature="The cmaes searcher")
            return samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
        return samplers.QMCSampler(seed=seed, warn_independent_sampling=False)


def make_pruner(experiment: Experiment) -> Any:
    """The pruner named by ``experiment.early_stopping``, on the epoch as the resource."""
    pruners = optuna_module().pruners
    kind = experiment.early_stopping
    if kind == "hyperband":
        return pruners.HyperbandPruner(
            min_resource=experiment.min_epochs,
            max_resource=experiment.max_epochs,
            reduction_factor=experiment.reduction_factor,
        )
    if kind in ("asha", "sha"):
        return pruners.SuccessiveHalvingPruner(
            min_resource=experiment.min_epochs, reduction_factor=experiment.reduction_factor
        )
    if kind == "median":
        return pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=experiment.min_epochs)
    return pruners.NopPruner()


def pruner_epochs(experiment: Experiment) -> Callable[[int], bool]:
    """For one trial: whether the pruner reads the loss reported at this epoch.

    Only those epochs are stored as the trial goes (each is a write to the storage, the
    largest per-trial cost of a small task); the whole history is stored when the trial ends.
    Successive halving and Hyperband judge a trial at the first report at or past each rung
    ``min_epochs * reduction_factor**k`` (every bracket's rungs are among them), so that
    report is stored, whichever epochs the task reports; ``median`` reads every epoch;
    ``none``, none. Call it anew for each trial: it remembers the rungs passed.
    """
    if experiment.early_stopping == "none":
        return lambda epoch: False
    if experiment.early_stopping not in ("asha", "sha", "hyperband"):
        return lambda epoch: True
    rungs, rung = [], experiment.min_epochs
    while rung <= experiment.max_epochs:
        rungs.append(rung)
        rung *= experiment.reduction_factor
    passed = 0

    def read(epoch: int) -> bool:
        nonlocal passed
        if passed == len(rungs) or epoch < rungs[passed]:
            return False
        while passed < len(rungs) and rungs[passed] <= epoch:
            passed += 1
        return True

    return read


def worker_seed(run_seed: int, worker_index: int, trials_before: int) -> int:
    """A sampler seed per worker (equal seeds would duplicate configs), fresh on a resume."""
    state = np.random.SeedSequence([run_seed, worker_index, trials_before]).generate_state(1)
    return int(state[0])


def create_or_load_study(
    storage: Any, study_name: str, experiment: Experiment, *, heartbeat: int | None = None
) -> tuple[Any, bool]:
    """Create the study (and enqueue the untuned defaults), or load it to continue.

    Only the process that creates the study enqueues the defaults, so two tuners starting the
    same shared study at once run them once. ``heartbeat`` is stored with the study: every
    worker of an RDB study then uses the same interval.

    Returns:
        The study and whether it already existed.

    Raises:
        ValueError: The study exists and holds another experiment.
    """
    optuna = optuna_module()
    try:  # loading writes nothing: a refused rerun leaves the storage byte for byte
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        try:
            study = optuna.create_study(
                study_name=study_name, storage=storage, direction="minimize"
            )
        except optuna.exceptions.DuplicatedStudyError:
            study = optuna.load_study(study_name=study_name, storage=storage)
        else:
            study.set_user_attr(HEARTBEAT_ATTR, heartbeat or DEFAULT_HEARTBEAT)
            study.set_user_attr(EXPERIMENT_ATTR, experiment.to_json())
            defaults = experiment.default_config()
            if defaults:
                study.enqueue_trial(defaults, user_attrs={"defaults": True})
            return study, False
    previous = load_experiment(study, wait=10.0)
    if not previous.same_job(experiment):
        raise ValueError(
            f"The study {study_name!r} holds another experiment ({previous.task}, "
            f"{previous.schedule}, ...); use another --study or --out to start a new one."
        )
    if experiment.n_trials > previous.n_trials:  # a rerun may add trials, never drop any
        study.set_user_attr(EXPERIMENT_ATTR, experiment.to_json())
    return study, True


def load_study(url: str, study_name: str, *, heartbeat: int | None = None) -> Any:
    """Open ``url`` and load the study ``study_name`` from it.

    Raises:
        ValueError: There is no such study (or the storage cannot be opened).
    """
    optuna = optuna_module()
    storage = open_storage(url, heartbeat=heartbeat, create=False)
    try:
        return optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        raise ValueError(
            f"No study {study_name!r} in {hide_password(url)!r}; create it with "
            "`greedylr tune --storage URL --study NAME` first."
        ) from None


def study_heartbeat(study: Any) -> int:
    """The heartbeat interval every worker of this study uses (stored at creation)."""
    return int(study.user_attrs.get(HEARTBEAT_ATTR, DEFAULT_HEARTBEAT))


def load_experiment(study: Any, *, wait: float = 0.0) -> Experiment:
    """The experiment a study was created for (waiting up to ``wait`` s for its creator)."""
    deadline = time.monotonic() + wait
    stored = study.user_attrs.get(EXPERIMENT_ATTR)
    while stored is None and time.monotonic() < deadline:
        time.sleep(0.2)
        stored = study.user_attrs.get(EXPERIMENT_ATTR)
    if stored is None:
        raise ValueError(f"The study {study.study_name!r} was not created by greedylr.")
    return Experiment.from_json(stored)


def retries_of(trials: list[Any]) -> dict[int, int]:
    """Which trial ran each retried trial's config again: ``{retried number: retry number}``."""
    return {t.user_attrs["retry_of"]: t.number for t in trials if "retry_of" in t.user_attrs}


def is_original(trial: Any) -> bool:
    """A trial that counts toward ``n_trials``: neither a retry nor a surplus ask."""
    return "retry_of" not in trial.user_attrs and not trial.user_attrs.get("surplus")


def census(trials: list[Any]) -> Census:
    """Count a study's trials (surplus asks excluded; a retried trial counts by its retry)."""
    optuna = optuna_module()
    state = optuna.trial.TrialState
    retried = retries_of(trials)
    counts = {"completed": 0, "pruned": 0, "failed": 0, "running": 0, "waiting": 0}
    best, originals = math.inf, 0
    for trial in trials:
        if trial.user_attrs.get("surplus"):
            continue
        if is_original(trial):
            originals += 1
        if trial.number in retried:
            continue
        if trial.state == state.COMPLETE:
            counts["completed"] += 1
            if trial.value is not None and math.isfinite(trial.value):
                best = min(best, trial.value)
        elif trial.state == state.PRUNED:
            counts["pruned"] += 1
        elif trial.state == state.FAIL:
            counts["failed"] += 1
        elif trial.state == state.RUNNING:
            counts["running"] += 1
        else:
            counts["waiting"] += 1
    done = counts["completed"] + counts["pruned"] + counts["failed"]
    return Census(done=done, best_loss=best, originals=originals, **counts)


SESSION_ATTR = "greedylr_session_first_trial"
INTERRUPTED = "interrupted"


def next_trial(trials: list[Any]) -> int:
    """The number of the first trial still to run: a waiting one (enqueued), or a new one."""
    waiting = optuna_module().trial.TrialState.WAITING
    return min([t.number for t in trials if t.state == waiting], default=len(trials))


def raised_by_task(trial: Any) -> bool:
    """A trial that failed because the task raised or killed its worker (not NaN, not lost)."""
    reason = str(trial.user_attrs.get("fail_reason", ""))
    return "traceback" in trial.user_attrs or reason.startswith("worker ")


def first_task_failure(study: Any) -> Any | None:
    """The first failed trial, when the task looks broken in this run; else ``None``.

    A run starts when ``greedylr tune`` (re)starts the study. The task is broken when the
    first ``FAILURES_BEFORE_STOP`` configs the run asked all ended failed by an error the task
    raised or by killing their worker (each config counted once: a config whose worker dies
    is retried first, and only its last retry decides), and no trial of the run completed.
    NaN losses, pruning and interruptions are results, not a broken task.
    """
    verdict, first_failure = task_verdict(study)
    return first_failure if verdict == "broken" else None


def task_verdict_pending(study: Any) -> bool:
    """Whether the first configs of this run that ended all failed by the task while one of
    the first ``FAILURES_BEFORE_STOP`` still runs: a worker waits for it (rather than start
    another config, which a broken task would only fail again)."""
    return task_verdict(study)[0] == "pending"


def task_verdict(study: Any, trials: list[Any] | None = None) -> tuple[str, Any | None]:
    """``("broken", first failed trial)`` (see :func:`first_task_failure`), ``("pending",
    None)`` (see :func:`task_verdict_pending`) or ``("working", None)``.

    Args:
        trials: The study's trials, when the caller just read them (default: read them).
    """
    state = optuna_module().trial.TrialState
    first = study.user_attrs.get(SESSION_ATTR, 0)
    if trials is None:
        trials = study.get_trials(deepcopy=False)
    trials = [t for t in trials if t.number >= first]
    if any(t.state == state.COMPLETE for t in trials):
        return "working", None
    by_number = {t.number: t for t in trials}
    retried = retries_of(trials)
    originals = sorted(
        (t for t in trials if is_original(t) and t.user_attrs.get("fail_reason") != INTERRUPTED),
        key=lambda t: t.number,
    )[:FAILURES_BEFORE_STOP]
    running = False
    for trial in originals:
        last = trial
        while last.number in retried:  # a retry comes later: it is in this run too
            last = by_number[retried[last.number]]
        if last.state == state.RUNNING:
            running = True
        elif not (last.state == state.FAIL and raised_by_task(last)):  # a retry waiting too
            return "working", None
    if len(originals) < FAILURES_BEFORE_STOP:
        return "working", None
    return ("pending", None) if running else ("broken", originals[0])


def trial_results(study: Any) -> list[TrialResult]:
    """Every trial of the study in the engine-neutral model (surplus asks left out)."""
    optuna = optuna_module()
    state = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    retries = retries_of(trials)
    constants = split_space(load_experiment(study).search_space)[1]
    results = []
    for trial in trials:
        attrs = trial.user_attrs
        if attrs.get("surplus"):
            continue
        history = attrs.get("history")
        if history is None:
            history = [
                {"epoch": float(step), "loss": value}
                for step, value in sorted(trial.intermediate_values.items())
            ]
        status: Status
        if trial.state == state.COMPLETE:
            status, reason = "completed", ""
        elif trial.state == state.PRUNED:
            last = int(history[-1]["epoch"]) if history else 0
            status, reason = "pruned", f"stopped early at epoch {last}"
        elif trial.state == state.FAIL and attrs.get("fail_reason") == INTERRUPTED:
            status, reason = "interrupted", "stopped by Ctrl-C or SIGTERM; its config runs again"
        elif trial.state == state.FAIL:
            status, reason = "failed", attrs.get("fail_reason", "worker lost (heartbeat)")
        elif trial.state == state.RUNNING:
            status, reason = "running", ""
        else:
            status, reason = "waiting", "not started when the run stopped"
        if trial.number in retries:
            reason = f"{reason}; retried as trial {retries[trial.number]}"
        params = trial.params or trial.system_attrs.get("fixed_params", {})
        config = attrs.get("config") or {**constants, **params}
        seconds = (
            (trial.datetime_complete - trial.datetime_start).total_seconds()
            if trial.datetime_complete and trial.datetime_start
            else math.nan
        )
        results.append(
            TrialResult(
                trial.number,
                status,
                reason,
                config,
                history,
                seconds,
                is_default=bool(attrs.get("defaults")),
                error=attrs.get("traceback", "") if status == "failed" else "",
                retry_of=attrs.get("retry_of"),
            )
        )
    return results
