"""What the Ray Tune driver records of each trial, as Tune runs them: a Tune callback.

Tune calls :class:`TrialRecorder` in the driver for every trial event and result, so the run's
trials, their histories and the census come from memory (reading each trial's ``result.json``
on every progress tick would not be cheap). Tune saves the recorder's state with each snapshot
of the experiment and hands it back when the experiment is restored; the recorder also reads
that state from the run folder before the restored experiment starts.

Trial ids are the trials' positions in Tune's list (the order the searcher sampled them, the
untuned defaults first). A trial whose worker died and that Ray ran again from its last
checkpoint appears twice, as Optuna's retries do: the run that died (failed, "its worker died;
retried as trial N") and the retry, numbered after the sampled trials (``retry_of`` says whose
config it runs again).
"""

from __future__ import annotations

import math
import pickle
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

from ray.tune import Callback
from ray.tune import Stopper

from greedylr.backends._backend import FAILURES_BEFORE_STOP
from greedylr.backends._backend import Census
from greedylr.backends._backend import census_of
from greedylr.backends._ray_search import trial_folder
from greedylr.backends._ray_trainable import ENDS_RUN_KEY
from greedylr.backends._ray_trainable import FAILURE_KEY
from greedylr.backends._ray_trainable import RETURNED_KEY
from greedylr.backends._ray_trainable import ROW_KEY
from greedylr.backends._results import Status
from greedylr.backends._results import TrialResult


STATE_KEY = "greedylr_trial_recorder"
INTERRUPTED = "stopped by Ctrl-C or SIGTERM; it continues on the next run"
ENDED_WITH_STUDY = "stopped when the study stopped (the task kept failing)"


@dataclass
class Attempt:
    """A run of a trial that ended when its worker died (Ray ran the trial again)."""

    rows: list[dict[str, Any]]
    reason: str
    retry: int


@dataclass
class Record:
    """One Ray trial as the driver saw it."""

    index: int
    trial_id: str
    config: dict[str, Any]
    ray_status: str = "PENDING"
    rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    started: bool = False
    returned: bool = False
    failure: dict[str, Any] | None = None
    crash: str = ""
    attempts: list[Attempt] = field(default_factory=list)
    ended_with_study: bool = False
    ended: bool = False  # Tune ended it (completed, stopped or failed), not a stop signal

    @property
    def last_epoch(self) -> int:
        return max(self.rows, default=0)

    def history(self) -> list[dict[str, Any]]:
        return [dict(self.rows[epoch]) for epoch in sorted(self.rows)]


class TrialRecorder(Callback):
    """Records Tune's trials for greedylr (see the module); thread-safe for the progress bar.

    Once Tune saved the experiment with a trial ended, the trial's checkpoints but the last
    are removed from ``checkpoints_in`` (no rerun restores an ended trial; the last one holds
    its final weights); not before: a rerun after a killed driver restores the trials from
    Tune's last save of the experiment. ``checkpoints_in=None`` keeps them all
    (population-based training may hand an ended trial's older checkpoint to another).

    Args:
        max_epochs: The epochs of a completed trial.
        n_trials: The configs the job samples (retries are numbered from here).
        has_defaults: The first trial runs the untuned defaults.
        checkpoints_in: Tune's experiment folder (trials in ``trial_<id>`` folders), or
            ``None``: keep every checkpoint while the experiment runs.
    """

    def __init__(
        self,
        *,
        max_epochs: int,
        n_trials: int,
        has_defaults: bool,
        checkpoints_in: Path | None = None,
    ) -> None:
        self.max_epochs = max_epochs
        self.n_trials = n_trials
        self.has_defaults = has_defaults
        self.checkpoints_in = checkpoints_in
        self._lock = threading.Lock()
        self._records: dict[str, Record] = {}
        self._next_retry = n_trials
        self._this_run: list[str] = []  # trials started by this driver, in order
        self._interrupted = False
        self.task_failed: Record | None = None
        self.ends_run: Record | None = None  # a failure that ends the run at once
        self._cleaned: set[str] = set()  # trials whose older checkpoints are gone
        self.max_failures: int | None = None
        """Set on a restored experiment: each trial's retries (Tune keeps the first run's in
        every trial it restores, as ``Trial.max_failures``)."""
        self.stop_tune: Callable[[], bool] | None = None
        """Tune's graceful stop: returns whether Tune took it (it listens only once its
        loop runs); set by the backend for :meth:`mark_interrupted`."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Tune pickles its callbacks into tuner.pkl; the driver gives Tune a live one on restore.
        return (
            _fresh_recorder,
            (self.max_epochs, self.n_trials, self.has_defaults, self.checkpoints_in),
        )

    # Tune's hooks (in the driver's loop) ---------------------------------------------------

    def on_step_begin(self, iteration: int, trials: list[Any], **info: Any) -> None:
        # A stop signal that came before Tune listened for its graceful stop (Tune installs
        # its handler late in tune.run, after restoring the experiment): pass it on now, at
        # each step until Tune leaves its loop.
        if self._interrupted and self.stop_tune is not None:
            self.stop_tune()
        if self.max_failures is not None:
            for trial in trials:
                trial.max_failures = self.max_failures
        with self._lock:
            for position, trial in enumerate(trials):
                record = self._record(position, trial)
                record.ray_status = trial.status
                record.config = dict(trial.config)  # PBT changes it

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        with self._lock:
            record = self._record(trials.index(trial), trial)
            record.started = True
            record.ray_status = "RUNNING"
            if trial.trial_id not in self._this_run:
                self._this_run.append(trial.trial_id)

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        payload = result.get(ROW_KEY)
        if not isinstance(payload, dict):
            return
        with self._lock:
            record = self._record(trials.index(trial), trial)
            record.started = True
            for row in payload.get("earlier", ()):  # after a restore: fill in what the
                record.rows.setdefault(int(row["epoch"]), dict(row))  # driver missed
            if "row" in payload:
                self._add_row(record, payload["row"])
            if payload.get(RETURNED_KEY):
                record.returned = True
            failure = payload.get(FAILURE_KEY)
            if failure is not None:
                for row in failure["rows"]:
                    self._add_row(record, row)
                record.failure = {"reason": failure["reason"], "traceback": failure["traceback"]}
                if failure.get(ENDS_RUN_KEY) and self.ends_run is None:
                    self.ends_run = record

    def on_trial_complete(
        self, iteration: int, trials: list[Any], trial: Any, **info: Any
    ) -> None:
        with self._lock:
            record = self._record(trials.index(trial), trial)
            record.ray_status = "TERMINATED"
            self._check_task_failure()
            # A trial that returned (or failed) by itself ended even when a stop signal came
            # while it finished; one that Tune stopped after the signal continues on a rerun.
            finished = record.returned or record.failure is not None
            record.ended = finished or not self._interrupted

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        with self._lock:
            record = self._record(trials.index(trial), trial)
            record.ray_status = "ERROR"
            if record.failure is None:
                record.crash = _crash_reason(trial, retried=False)
            self._check_task_failure()
            record.ended = not self._interrupted

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        with self._lock:
            record = self._record(trials.index(trial), trial)
            reason = _crash_reason(trial, retried=True)
            record.attempts.append(Attempt(record.history(), reason, self._next_retry))
            self._next_retry += 1

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        with self._lock:
            for position, trial in enumerate(trials):
                record = self._record(position, trial)
                if self._interrupted:
                    continue  # Tune stopped the trials; they continue on the next run
                if trial.status == "TERMINATED" and record.ray_status != "TERMINATED":
                    record.ended_with_study = True  # the study stopped (the task failed)
                record.ray_status = trial.status

    def get_state(self) -> dict[str, Any] | None:
        # Tune asks while it saves the experiment, right after it wrote the trials' states:
        # the trials that ended are stored as ended, so their older checkpoints can go.
        with self._lock:
            ended = [r.trial_id for r in self._records.values() if r.ended]
            state = {
                STATE_KEY: 1,
                "records": [_record_state(record) for record in self._records.values()],
                "next_retry": self._next_retry,
            }
        for trial_id in ended:
            self._keep_last_checkpoint(trial_id)
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict) or STATE_KEY not in state:
            return
        with self._lock:
            self._records = {}
            for saved in state["records"]:
                attempts = [Attempt(**attempt) for attempt in saved.pop("attempts")]
                rows = {int(epoch): row for epoch, row in saved.pop("rows").items()}
                record = Record(**saved, rows=rows, attempts=attempts)
                self._records[record.trial_id] = record
            self._next_retry = state["next_retry"]

    # What greedylr asks ------------------------------------------------------------------

    def mark_interrupted(self) -> None:
        """The run stops on a signal: its running trials are interrupted (no lock: it is
        called from a signal handler, which may run while this thread holds it), and Tune
        is told to stop (now if it listens, else at its next step)."""
        self._interrupted = True
        if self.stop_tune is not None:
            self.stop_tune()

    @property
    def interrupted(self) -> bool:
        """Whether the run stops on a signal."""
        return self._interrupted

    def should_stop(self) -> bool:
        """Whether the task looks broken (its first trials of this run all raised), or a
        trial failed in a way that ends the run (:data:`ENDS_RUN_KEY`)."""
        return self.task_failed is not None or self.ends_run is not None

    def results(self) -> list[TrialResult]:
        """Every trial that ran or waits to run, as greedylr's records."""
        with self._lock:
            records = sorted(self._records.values(), key=lambda r: r.index)
            results: list[TrialResult] = []
            for record in records:
                results.extend(self._results_of(record))
            return sorted(results, key=lambda r: r.trial)

    def all_finished(self) -> bool:
        """Whether every trial ended and none waits to continue (no restore needs them)."""
        with self._lock:
            return not self._interrupted and all(
                record.ray_status in ("TERMINATED", "ERROR") for record in self._records.values()
            )

    def census(self) -> Census:
        """Where the job stands (from memory)."""
        return census_of(self.results())

    # Internals ---------------------------------------------------------------------------

    def _record(self, position: int, trial: Any) -> Record:
        record = self._records.get(trial.trial_id)
        if record is None:
            record = Record(position, trial.trial_id, dict(trial.config))
            self._records[trial.trial_id] = record
        return record

    def _keep_last_checkpoint(self, trial_id: str) -> None:
        """Remove an ended trial's checkpoints but its last (see the class)."""
        if self.checkpoints_in is None or trial_id in self._cleaned:
            return
        self._cleaned.add(trial_id)
        folder = self.checkpoints_in / trial_folder(trial_id)
        for old in sorted(folder.glob("checkpoint_*"))[:-1]:
            shutil.rmtree(old, ignore_errors=True)

    @staticmethod
    def _add_row(record: Record, row: dict[str, Any]) -> None:
        epoch = int(row["epoch"])
        # Epochs strictly increase within a run of the trial: rows past this one are left
        # from a run that died, or from before PBT handed the trial another trial's state.
        for stale in [e for e in record.rows if e > epoch]:
            del record.rows[stale]
        record.rows[epoch] = dict(row)

    def _status(self, record: Record) -> tuple[Status, str] | None:
        """The status and reason of a record's last run; ``None``: it has not started."""
        if record.failure is not None and record.ray_status in ("ERROR", "TERMINATED"):
            return "failed", record.failure["reason"]
        if record.ray_status == "ERROR":
            return "failed", record.crash or "the trial failed in Ray"
        if record.ray_status == "TERMINATED":
            if record.returned or record.last_epoch >= self.max_epochs:
                return "completed", ""
            if record.ended_with_study:
                return "interrupted", ENDED_WITH_STUDY
            return "pruned", f"stopped early at epoch {record.last_epoch}"
        if not record.started and not record.rows:
            return None  # Tune made it ahead of time; it is a trial once it starts
        if self._interrupted and record.ray_status in ("RUNNING", "PENDING", "PAUSED"):
            return "interrupted", INTERRUPTED
        if record.ray_status == "RUNNING":
            return "running", ""
        return "waiting", "paused; it continues when its turn comes"

    def _results_of(self, record: Record) -> list[TrialResult]:
        status = self._status(record)
        if status is None:
            return []
        is_default = self.has_defaults and record.index == 0
        ids = [record.index] + [attempt.retry for attempt in record.attempts]
        results = []
        for number, attempt in enumerate(record.attempts):
            history = attempt.rows
            results.append(
                TrialResult(
                    ids[number],
                    "failed",
                    f"{attempt.reason}; retried as trial {attempt.retry}",
                    dict(record.config),
                    history,
                    _seconds(history),
                    is_default=is_default,
                    retry_of=ids[number - 1] if number else None,
                )
            )
        history = record.history()
        error = record.failure["traceback"] if record.failure and status[0] == "failed" else ""
        results.append(
            TrialResult(
                ids[-1],
                status[0],
                status[1],
                dict(record.config),
                history,
                _seconds(history),
                is_default=is_default,
                error=error,
                retry_of=ids[-2] if len(ids) > 1 else None,
            )
        )
        return results

    def _check_task_failure(self) -> None:
        """Stop the study when the first trials of this run all raised and none completed."""
        if self.task_failed is not None:
            return
        ran = [self._records[trial_id] for trial_id in self._this_run]
        if any(self._status(record) == ("completed", "") for record in ran):
            return
        first = ran[:FAILURES_BEFORE_STOP]
        if len(first) == FAILURES_BEFORE_STOP and all(_raised(record) for record in first):
            self.task_failed = first[0]


def _raised(record: Record) -> bool:
    """The trial failed because the task raised (not a NaN loss) or killed its worker."""
    if record.ray_status not in ("ERROR", "TERMINATED"):
        return False
    if record.failure is not None:
        return bool(record.failure["traceback"])
    return record.ray_status == "ERROR"


def _crash_reason(trial: Any, *, retried: bool) -> str:
    """Why Ray failed a trial that did not raise: its worker (or its node) died, most often."""
    if _worker_died(trial):
        what = "its worker died"
    else:
        error = _last_error(trial)
        lines = [line.strip() for line in error.splitlines() if line.strip()]
        what = lines[-1] if lines else "its worker died"
    failures = trial.run_metadata.num_failures
    if not retried and failures > 1:
        return f"{what} ({failures} times; not run again)"
    return what


def _worker_died(trial: Any) -> bool:
    """Whether the trial's last error is its actor's death (the process, or its node, lost)."""
    from ray.exceptions import NodeDiedError
    from ray.exceptions import RayActorError
    from ray.exceptions import RayTaskError
    from ray.exceptions import WorkerCrashedError

    died = (RayActorError, NodeDiedError, WorkerCrashedError)
    try:
        with open(trial.pickled_error_file, "rb") as file:
            error = pickle.load(file)  # noqa: S301 - written by this driver's Tune
    except Exception:  # noqa: BLE001 - no file, or one that cannot be read: judge the text
        text = _last_error(trial)
        return not text or any(name.__name__ in text for name in died)
    if isinstance(error, RayTaskError):
        error = error.as_instanceof_cause()
    return isinstance(error, died)


def _last_error(trial: Any) -> str:
    """The last failure Tune wrote to the trial's ``error.txt`` in the driver ("" if none)."""
    try:
        text = Path(trial.error_file).read_text() if trial.error_file else ""
    except (OSError, TypeError):
        return ""
    return text.rsplit("Failure # ", 1)[-1].split("\n", 1)[-1] if text else ""


def _seconds(history: list[dict[str, Any]]) -> float:
    if not history:
        return math.nan
    return float(history[-1].get("seconds", math.nan))


def _record_state(record: Record) -> dict[str, Any]:
    return {
        "index": record.index,
        "trial_id": record.trial_id,
        "config": record.config,
        "ray_status": record.ray_status,
        "rows": dict(record.rows),
        "started": record.started,
        "returned": record.returned,
        "failure": record.failure,
        "crash": record.crash,
        "attempts": [vars(attempt) for attempt in record.attempts],
        "ended_with_study": record.ended_with_study,
        "ended": record.ended,
    }


def _fresh_recorder(
    max_epochs: int, n_trials: int, has_defaults: bool, checkpoints_in: Path | None = None
) -> TrialRecorder:
    return TrialRecorder(
        max_epochs=max_epochs,
        n_trials=n_trials,
        has_defaults=has_defaults,
        checkpoints_in=checkpoints_in,
    )


class StopOnTaskFailure(Stopper):
    """Ends the experiment when the recorder finds the task broken.

    Not on a stop signal: Tune's ``stop_all`` marks every trial TERMINATED and the searcher
    finished, so a rerun would continue none of them (the recorder passes a signal to
    Tune's graceful stop instead).
    """

    def __init__(self, recorder: TrialRecorder) -> None:
        self.recorder = recorder

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.recorder.should_stop()
