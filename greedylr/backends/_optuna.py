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
HEARTBEAT_ATTR = "greedylr_heartbeat"
DEFAULT_HEARTBEAT = 10
MAX_RETRIES = 2  # a config whose worker dies three times is not run again
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


_SECRET_KEYS = ("password", "passfile", "sslpassword")


def secrets_of(url: str) -> list[str]:
    """The secrets in a storage URL: the password of its netloc and of its query string."""
    if "://" not in url:
        return []
    rest = url.split("://", 1)[1]
    netloc = rest.split("/", 1)[0].split("?", 1)[0]
    found = []
    if "@" in netloc:
        credentials = netloc.rsplit("@", 1)[0]
        if ":" in credentials:
            found.append(credentials.split(":", 1)[1])
    query = url.split("?", 1)[1] if "?" in url else ""
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if key.lower() in _SECRET_KEYS and value:
            found.append(value)
    return [secret for secret in found if secret]


def hide_password(url: str) -> str:
    """``url`` with every password (netloc or query string) replaced by ``***``."""
    if "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    path_start = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    netloc, tail = rest[:path_start], rest[path_start:]
    if "@" in netloc:
        credentials, host = netloc.rsplit("@", 1)
        if ":" in credentials:
            netloc = f"{credentials.split(':', 1)[0]}:***@{host}"
    if "?" in tail:
        path, query = tail.split("?", 1)
        pairs = []
        for pair in query.split("&"):
            key, equals, value = pair.partition("=")
            pairs.append(f"{key}=***" if key.lower() in _SECRET_KEYS and value else pair)
        tail = f"{path}?{'&'.join(pairs)}"
    return f"{scheme}://{netloc}{tail}"


def mask_secrets(text: str, url: str) -> str:
    """``text`` with the secrets of ``url`` replaced by ``***``."""
    for secret in sorted(secrets_of(url), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


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
        interval = heartbeat or DEFAULT_HEARTBEAT
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
        message = mask_secrets(message, url)
        raise StorageError(f"Cannot open storage {shown!r}: {message}") from None


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
    if previous.n_trials != experiment.n_trials:
        study.set_user_attr(EXPERIMENT_ATTR, experiment.to_json())
    return study, True


def load_study(url: str, study_name: str, *, heartbeat: int | None = None) -> Any:
    """Open ``url`` and load the study ``study_name`` from it.

    Raises:
        ValueError: There is no such study (or the storage cannot be opened).
    """
    optuna = optuna_module()
    storage = open_storage(url, heartbeat=heartbeat)
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


def worker_identity() -> dict[str, Any]:
    """Who runs a trial: this machine (host, boot, pid namespace), pid and process start."""
    return {"host": _machine(), "pid": os.getpid(), "started": _start_time(os.getpid())}


def _machine() -> str:
    """This host, its boot and its pid namespace: containers sharing a hostname differ."""
    parts = [socket.gethostname()]
    try:
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    except OSError:
        pass
    return "/".join(parts)


def _start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def owner_alive(owner: dict[str, Any]) -> bool:
    """Whether the worker process that owns a trial of this machine still runs it.

    The caller runs no trial itself, so a trial owned by its own pid (from before a restart)
    is dead; a pid reused by another process is told apart by its start time.
    """
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid == os.getpid() or not process_alive(pid):
        return False
    started = owner.get("started")
    return started is None or _start_time(pid) in (None, started)


def retry_trial(study: Any, trial: Any, reason: str) -> bool:
    """Fail a RUNNING trial whose worker is gone and enqueue its config again.

    A config is run again at most ``MAX_RETRIES`` times (a trial that kills its worker every
    time must not stop the study).

    Returns:
        Whether this call did it (another process may have been first).
    """
    optuna = optuna_module()
    retry = _retry_depth(study, trial) < MAX_RETRIES
    if not retry:
        reason = f"{reason}; not run again: its worker died {MAX_RETRIES + 1} times"
    try:
        optuna.trial.Trial(study, trial._trial_id).set_user_attr("fail_reason", reason)
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
    except (RuntimeError, ValueError):
        return False
    if retry:
        _enqueue_retry(study, trial)
    return True


def _retry_depth(study: Any, trial: Any) -> int:
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    depth = 0
    while "retry_of" in trial.user_attrs and trial.user_attrs["retry_of"] in by_number:
        trial = by_number[trial.user_attrs["retry_of"]]
        depth += 1
    return depth


def _retry_lost_trial(study: Any, trial: Any) -> None:
    """Optuna's callback for a trial failed by the heartbeat: run its config again."""
    if _retry_depth(study, trial) < MAX_RETRIES:
        _enqueue_retry(study, trial)


def _enqueue_retry(study: Any, trial: Any) -> None:
    # A trial that died before sampling has no params: its retry samples afresh.
    study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})


def retry_dead_local_trials(
    study: Any, *, pids: set[int] | None = None, ownerless: bool = False
) -> int:
    """Retry the RUNNING trials of this machine whose worker process is gone.

    Args:
        pids: Only trials of these (dead) worker pids; ``None``: every owner no longer alive.
        ownerless: Also retry RUNNING trials that never recorded an owner (a worker killed
            right after asking). Only safe when no worker of this study can be running: on a
            resume of a local (journal) study.
    """
    optuna = optuna_module()
    machine, count = _machine(), 0
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        owner = trial.user_attrs.get("worker")
        if owner is None:
            if ownerless and retry_trial(study, trial, "its worker died before it started"):
                count += 1
            continue
        if owner.get("host") != machine:
            continue
        pid = owner.get("pid")
        dead = pid in pids if pids is not None else not owner_alive(owner)
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
        try:
            study.optimize(objective, n_trials=1, catch=(_TrialFailed,), gc_after_trial=False)
        except ValueError as error:
            # Another process failed this trial (its heartbeat looked stale) and may have
            # retried it: Optuna cannot tell it again. The study goes on.
            if not str(error).startswith("Cannot tell a "):
                raise


class _Objective:
    def __init__(self, train: TrialFunction, space: dict[str, Any], experiment: Experiment):
        self._train = train
        self._space = space
        self._experiment = experiment

    def __call__(self, trial: Any) -> float:
        try:
            return self._run(trial)
        except KeyboardInterrupt:  # wherever it lands, the trial is marked for a retry
            trial.set_user_attr("fail_reason", "interrupted")
            raise

    def _run(self, trial: Any) -> float:
        optuna = optuna_module()
        trial.set_user_attr("worker", worker_identity())
        if "retry_of" not in trial.user_attrs and self._is_surplus(trial):
            trial.set_user_attr("surplus", True)
            raise _TrialFailed("surplus")
        config = suggest(trial, self._space)
        trial.set_user_attr("config", config)
        last_epoch = self._experiment.max_epochs

        def forward(epoch: int, loss: float, metrics: dict[str, float]) -> None:
            trial.report(loss, step=epoch)
            # Stopping after the last epoch saves nothing: the trial completes.
            if epoch < last_epoch and trial.should_prune():
                raise TrialStopped(f"pruned at epoch {epoch}")

        reporter = ValidatingReporter(forward, max_epochs=last_epoch)
        try:
            self._train(config, reporter)
        except TrialStopped as stop:
            trial.set_user_attr("history", reporter.history)
            raise optuna.TrialPruned(str(stop)) from None
        except TrialDiverged as diverged:
            self._fail(trial, reporter, str(diverged))
        except KeyboardInterrupt:
            trial.set_user_attr("history", reporter.history)
            raise
        except optuna.exceptions.UpdateFinishedTrialError:
            raise  # another process failed this trial: abandon it (see run_worker)
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
            last = int(history[-1]["epoch"]) if history else 0
            status, reason = "pruned", f"stopped early at epoch {last}"
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
        results.append(TrialResult(trial.number, status, reason, config, history, seconds))
    return results


def _constants(space: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in space.items() if not is_param(value)}
