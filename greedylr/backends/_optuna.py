"""The Optuna backend: a study on a shared storage, worked by any number of processes.

Each worker runs trials one at a time (``study.optimize(n_trials=1)``, which keeps an RDB
storage's heartbeat) until the study holds ``n_trials`` trials that are done. Trials are counted
without locks: a worker asks a trial, then counts the *original* trials numbered before it
(retries of lost trials and surplus asks not counted); when ``n_trials`` are already there, its
trial is told FAIL as surplus and never runs. Trials whose worker died are failed and retried
with the same config: by the process that launched the worker (it sees the death), on a resume
(the worker's pid is gone), or by the heartbeat of an RDB storage (workers on other machines).
"""

from __future__ import annotations

import math
import os
import socket
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from greedylr._imports import require
from greedylr.backends._contract import TrialDiverged
from greedylr.backends._contract import TrialFunction
from greedylr.backends._contract import TrialStopped
from greedylr.backends._contract import ValidatingReporter
from greedylr.backends._contract import load_trial_function
from greedylr.backends._experiment import Experiment
from greedylr.backends._results import Status
from greedylr.backends._results import TrialResult
from greedylr.searchers import is_param
from greedylr.searchers import suggest
from greedylr.searchers import to_optuna


EXPERIMENT_ATTR = "greedylr_experiment"
_JOURNAL_SUFFIXES = (".log", ".journal")


class StorageError(ValueError):
    """A storage URL that cannot be opened; the message never shows a password."""


class _TrialFailed(Exception):
    """Internal: the trial failed; its reason is already stored on the trial."""


def optuna_module() -> Any:
    """``optuna``, or an error naming ``pip install greedylr[optuna]``."""
    optuna = require("optuna", extra="optuna", feature="The Optuna backend")
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # greedylr reports failures itself
    return optuna


def hide_password(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    if "://" not in url:
        return url
    try:
        from sqlalchemy.engine import make_url

        return str(make_url(url).render_as_string(hide_password=True))
    except Exception:  # not an SQLAlchemy URL: hide anything between ':' and '@'
        scheme, _, rest = url.partition("://")
        credentials, at, host = rest.rpartition("@")
        if not at:
            return url
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"


def is_journal(url: str) -> bool:
    """Whether ``url`` names a journal file (``journal:PATH`` or a path ending .log/.journal)."""
    return url.startswith("journal:") or ("://" not in url and url.endswith(_JOURNAL_SUFFIXES))


def open_storage(url: str, *, heartbeat: int | None = None) -> Any:
    """An Optuna storage for ``url``: a journal file, or any RDB URL (with a heartbeat).

    Raises:
        StorageError: The URL cannot be opened (the message hides the password).
    """
    optuna = optuna_module()
    shown = hide_password(url)
    try:
        if is_journal(url):
            from optuna.storages.journal import JournalFileBackend
            from optuna.storages.journal import JournalStorage

            path = Path(url.removeprefix("journal:")).expanduser()
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path)))
        if "://" not in url:
            raise StorageError(
                f"Cannot open storage {shown!r}: give an Optuna URL (sqlite:///file.db, "
                "postgresql://user@host/db, ...) or a journal file ending in .log."
            )
        interval = heartbeat or 10
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url,
                heartbeat_interval=interval,
                grace_period=3 * interval,
                heartbeat_stale_trial_callback=_retry_lost_trial,
            )
    except StorageError:
        raise
    except Exception as error:  # SQLAlchemy and driver errors of every kind
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        password = _password(url)
        if password:
            message = message.replace(password, "***")
        raise StorageError(f"Cannot open storage {shown!r}: {message}") from None


def _password(url: str) -> str | None:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).password
    except Exception:
        return None


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
        return pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=experiment.min_epochs - 1)
    return pruners.NopPruner()


def worker_seed(run_seed: int, worker_index: int, trials_before: int) -> int:
    """A sampler seed per worker (equal seeds would duplicate configs), fresh on a resume."""
    state = np.random.SeedSequence([run_seed, worker_index, trials_before]).generate_state(1)
    return int(state[0])


def create_or_load_study(
    storage: Any, study_name: str, experiment: Experiment
) -> tuple[Any, bool]:
    """Create the study (and enqueue the untuned defaults), or load it to continue.

    Returns:
        The study and whether it already existed.

    Raises:
        ValueError: The study exists and holds another experiment.
    """
    optuna = optuna_module()
    try:  # loading writes nothing: a refused rerun leaves the storage byte for byte
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        study = optuna.create_study(
            study_name=study_name, storage=storage, direction="minimize", load_if_exists=True
        )
    stored = study.user_attrs.get(EXPERIMENT_ATTR)
    if stored is not None:
        previous = Experiment.from_json(stored)
        if not previous.same_job(experiment):
            raise ValueError(
                f"The study {study_name!r} holds another experiment ({previous.task}, "
                f"{previous.schedule}, ...); use another --study or --out to start a new one."
            )
        if previous.n_trials != experiment.n_trials:
            study.set_user_attr(EXPERIMENT_ATTR, experiment.to_json())
        return study, True
    study.set_user_attr(EXPERIMENT_ATTR, experiment.to_json())
    defaults = experiment.default_config()
    if defaults:
        study.enqueue_trial(defaults, user_attrs={"defaults": True})
    return study, False


def load_experiment(study: Any) -> Experiment:
    """The experiment a study was created for."""
    stored = study.user_attrs.get(EXPERIMENT_ATTR)
    if stored is None:
        raise ValueError(f"The study {study.study_name!r} was not created by greedylr.")
    return Experiment.from_json(stored)


@dataclass(frozen=True)
class Census:
    """Where a study stands, counting each original trial once (whatever its retries)."""

    done: int
    completed: int
    pruned: int
    failed: int
    running: int
    waiting: int
    best_loss: float
    originals: int


def census(trials: list[Any]) -> Census:
    """Count a study's trials (surplus asks excluded; a retried trial counts by its retry)."""
    optuna = optuna_module()
    state = optuna.trial.TrialState
    retried = {t.user_attrs["retry_of"] for t in trials if "retry_of" in t.user_attrs}
    counts = {"completed": 0, "pruned": 0, "failed": 0, "running": 0, "waiting": 0}
    best, originals = math.inf, 0
    for trial in trials:
        if trial.user_attrs.get("surplus"):
            continue
        if "retry_of" not in trial.user_attrs:
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


def retry_trial(study: Any, trial: Any, reason: str) -> bool:
    """Fail a RUNNING trial whose worker is gone and enqueue its config again.

    Returns:
        Whether this call did it (another process may have been first).
    """
    optuna = optuna_module()
    try:
        optuna.trial.Trial(study, trial._trial_id).set_user_attr("fail_reason", reason)
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
    except (RuntimeError, ValueError):
        return False
    _enqueue_retry(study, trial)
    return True


def _retry_lost_trial(study: Any, trial: Any) -> None:
    """Optuna's callback for a trial failed by the heartbeat: run its config again."""
    _enqueue_retry(study, trial)


def _enqueue_retry(study: Any, trial: Any) -> None:
    # A trial that died before sampling has no params: its retry samples afresh.
    study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})


def retry_dead_local_trials(study: Any, *, pids: set[int] | None = None) -> int:
    """Retry the RUNNING trials of this machine whose worker process is gone.

    Args:
        pids: Only trials of these (dead) worker pids; ``None``: every pid no longer alive.
    """
    optuna = optuna_module()
    host, count = socket.gethostname(), 0
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        owner = trial.user_attrs.get("worker") or {}
        if owner.get("host") != host:
            continue
        pid = owner.get("pid")
        dead = pid in pids if pids is not None else not process_alive(pid)
        if dead and retry_trial(study, trial, f"worker {pid} died"):
            count += 1
    return count


def retry_interrupted_trials(study: Any) -> int:
    """Retry trials that failed because the run was interrupted (Ctrl-C) and never retried."""
    optuna = optuna_module()
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs["retry_of"] for t in trials if "retry_of" in t.user_attrs}
    count = 0
    for trial in trials:
        if (
            trial.state == optuna.trial.TrialState.FAIL
            and trial.user_attrs.get("fail_reason") == "interrupted"
            and trial.number not in retried
        ):
            _enqueue_retry(study, trial)
            count += 1
    return count


def process_alive(pid: Any) -> bool:
    """Whether process ``pid`` of this machine is running (a zombie is not)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust kill(0)
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def run_worker(
    study: Any,
    *,
    worker_index: int = 0,
    poll_seconds: float = 0.5,
) -> None:
    """Run trials of ``study`` until it holds its ``n_trials`` done trials."""
    optuna = optuna_module()
    experiment = load_experiment(study)
    train = load_trial_function(experiment.function)
    space = experiment.search_space
    to_optuna(space)  # fails early, with the engine's message, on a space Optuna cannot hold
    before = len(study.get_trials(deepcopy=False))
    study.sampler = make_sampler(experiment, worker_seed(experiment.seed, worker_index, before))
    study.pruner = make_pruner(experiment)
    objective = _Objective(train, space, experiment)
    while True:
        trials = study.get_trials(deepcopy=False)
        now = census(trials)
        if now.done >= experiment.n_trials:
            return
        if now.originals >= experiment.n_trials and now.waiting == 0:
            # Others are finishing. A trial whose worker dies now is retried: this machine's
            # by their pid, other machines' by the RDB heartbeat.
            time.sleep(poll_seconds)
            retry_dead_local_trials(study)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
            continue
        study.optimize(objective, n_trials=1, catch=(_TrialFailed,), gc_after_trial=False)


class _Objective:
    def __init__(self, train: TrialFunction, space: dict[str, Any], experiment: Experiment):
        self._train = train
        self._space = space
        self._experiment = experiment

    def __call__(self, trial: Any) -> float:
        optuna = optuna_module()
        if "retry_of" not in trial.user_attrs and self._is_surplus(trial):
            trial.set_user_attr("surplus", True)
            raise _TrialFailed("surplus")
        trial.set_user_attr("worker", {"host": socket.gethostname(), "pid": os.getpid()})
        config = suggest(trial, self._space)
        trial.set_user_attr("config", config)

        last_epoch = self._experiment.max_epochs

        def forward(epoch: int, loss: float, metrics: dict[str, float]) -> None:
            trial.report(loss, step=epoch)
            # Stopping after the last epoch saves nothing: the trial completes.
            if epoch < last_epoch and trial.should_prune():
                raise TrialStopped(f"pruned at epoch {epoch}")

        reporter = ValidatingReporter(forward, max_epochs=self._experiment.max_epochs)
        try:
            self._train(config, reporter)
        except TrialStopped as stop:
            trial.set_user_attr("history", reporter.history)
            raise optuna.TrialPruned(str(stop)) from None
        except TrialDiverged as diverged:
            self._fail(trial, reporter, str(diverged))
        except KeyboardInterrupt:
            trial.set_user_attr("history", reporter.history)
            trial.set_user_attr("fail_reason", "interrupted")
            raise
        except Exception as error:  # the user's code failed: the study goes on
            trial.set_user_attr("traceback", traceback.format_exc(limit=-8))
            self._fail(trial, reporter, f"{type(error).__name__}: {error}")
        trial.set_user_attr("history", reporter.history)
        if not reporter.history:
            self._fail(trial, reporter, "the trial reported no epoch")
        return reporter.history[-1]["loss"]

    def _fail(self, trial: Any, reporter: ValidatingReporter, reason: str) -> None:
        trial.set_user_attr("history", reporter.history)
        trial.set_user_attr("fail_reason", reason)
        raise _TrialFailed(reason)

    def _is_surplus(self, trial: Any) -> bool:
        earlier = 0
        for other in trial.study.get_trials(deepcopy=False):
            if other.number >= trial.number:
                continue
            attrs = other.user_attrs
            if "retry_of" not in attrs and not attrs.get("surplus"):
                earlier += 1
        return earlier >= self._experiment.n_trials


def trial_results(study: Any) -> list[TrialResult]:
    """Every trial of the study in the engine-neutral model (surplus asks left out)."""
    optuna = optuna_module()
    state = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    retries = {t.user_attrs["retry_of"]: t.number for t in trials if "retry_of" in t.user_attrs}
    constants = _constants(load_experiment(study).search_space)
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
            status, reason = "pruned", f"stopped early at epoch {len(history)}"
        elif trial.state == state.FAIL:
            status, reason = "failed", attrs.get("fail_reason", "worker lost (heartbeat)")
        else:
            status, reason = "running", ""
        if trial.number in retries:
            reason = f"{reason}; retried as trial {retries[trial.number]}"
        config = attrs.get("config") or {**constants, **trial.params}
        seconds = (
            (trial.datetime_complete - trial.datetime_start).total_seconds()
            if trial.datetime_complete and trial.datetime_start
            else math.nan
        )
        results.append(TrialResult(trial.number, status, reason, config, history, seconds))
    return results


def _constants(space: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in space.items() if not is_param(value)}
