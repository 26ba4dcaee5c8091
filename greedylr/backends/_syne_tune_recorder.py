"""The Syne Tune backend's record of its trials: a Tuner callback that keeps a TrialResult each.

It sees what the Tuner sees: each trial's start, each epoch it reported (its history rows, with
the node and the GPUs it ran on), the scheduler's decisions (stopped early, paused, completed)
and the trials whose process failed. A failed trial that wrote ``outcome.json`` raised or
diverged; one that did not was killed (its process died): it fails as "its worker died" and
its config runs again, from its last checkpoint, as a new trial. The recorder is pickled with
the Tuner (``tuner.dill``), so a rerun continues from the same record as the scheduler.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

from syne_tune import Tuner
from syne_tune.backend.trial_status import Status
from syne_tune.backend.trial_status import Trial
from syne_tune.constants import ST_TUNER_DILL_FILENAME
from syne_tune.optimizer.scheduler import SchedulerDecision
from syne_tune.tuner_callback import TunerCallback

from greedylr.backends._backend import FAILURES_BEFORE_STOP
from greedylr.backends._backend import Census
from greedylr.backends._backend import census_of
from greedylr.backends._contract import CHECKPOINT_FILE
from greedylr.backends._contract import load_checkpoint
from greedylr.backends._results import TrialResult
from greedylr.backends._syne_tune_search import TIME_ATTR
from greedylr.backends._syne_tune_search import GreedyLRScheduler
from greedylr.backends._syne_tune_trial import OUTCOME_FILE
from greedylr.backends._syne_tune_trial import STOP_AFTER


INTERRUPTED = "stopped by Ctrl-C, SIGTERM or the tuner's end; it continues on the next run"
ENDED_WITH_STUDY = "stopped when the study stopped (the task kept failing)"
NOT_PROMOTED = "paused at a rung and not promoted"
SAVE_SECONDS = 1.0


@dataclass
class Record:
    """One Syne Tune trial as greedylr reports it (see :class:`TrialResult`)."""

    trial: int
    config: dict[str, Any]
    status: str = "running"
    reason: str = ""
    history: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""
    retry_of: int | None = None
    is_default: bool = False
    started: float = field(default_factory=time.time)
    ended: float | None = None
    task_error: bool = False  # it failed by the task's own error (raised or diverged)

    def result(self) -> TrialResult:
        end = self.ended if self.ended is not None else time.time()
        return TrialResult(
            trial=self.trial,
            status=self.status,  # type: ignore[arg-type]
            reason=self.reason,
            config=dict(self.config),
            history=[dict(row) for row in self.history],
            seconds=end - self.started,
            is_default=self.is_default,
            error=self.error,
            retry_of=self.retry_of,
        )


class TrialRecorder(TunerCallback):
    """Keeps a :class:`Record` of every trial; decides when the run must stop.

    Args:
        scheduler: The Tuner's scheduler (origins of trials, retries, the defaults).
        max_epochs: The epochs of a trial never stopped early.
        node: This machine's name, recorded in every history row.
    """

    def __init__(self, scheduler: GreedyLRScheduler, *, max_epochs: int, node: str) -> None:
        self.scheduler = scheduler
        self.max_epochs = max_epochs
        self.node = node
        self.records: dict[int, Record] = {}
        self.stop_requested: str | None = None  # "signal" or "task"
        self._failed: list[int] = []  # failed trials not yet looked at
        self._lock = threading.Lock()
        self.backend: Any = None
        self._tuner: Any = None
        self._changed = False
        self._saved = 0.0

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_lock"] = None
        state["_tuner"] = None
        state["stop_requested"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # Tuner callbacks ---------------------------------------------------------------------

    def on_tuning_start(self, tuner: Any) -> None:
        self.backend = tuner.trial_backend
        self._tuner = tuner

    def on_loop_start(self) -> None:
        """Save the Tuner within ``SAVE_SECONDS`` of any change (a trial's start included),
        so that a killed tuner loses little."""
        if self._changed and time.monotonic() - self._saved >= SAVE_SECONDS:
            self._changed = False
            self._saved = time.monotonic()
            self._tuner.save()

    def on_start_trial(self, trial: Trial) -> None:
        retry_of, checkpoint_of = self.scheduler.origin.get(trial.trial_id, (None, None))
        config = {key: value for key, value in trial.config.items() if key != STOP_AFTER}
        record = Record(trial.trial_id, config, retry_of=retry_of)
        record.is_default = self.scheduler.is_defaults(trial) and (
            retry_of is not None or not any(r.is_default for r in self.records.values())
        )
        if checkpoint_of is not None:  # it continues another trial's state: its history too
            record.history = self._checkpoint_history(trial.trial_id)
        self._changed = True
        with self._lock:
            self.records[trial.trial_id] = record
            if retry_of is not None and retry_of in self.records:
                original = self.records[retry_of]
                original.reason = f"{original.reason}; retried as trial {trial.trial_id}"

    def on_resume_trial(self, trial: Trial) -> None:
        with self._lock:
            record = self.records[trial.trial_id]
            record.status, record.reason, record.ended = "running", "", None

    def on_trial_result(
        self, trial: Trial, status: str, result: dict[str, Any], decision: str
    ) -> None:
        record = self.records[trial.trial_id]
        self._changed = True
        epoch = int(result[TIME_ATTR])
        row: dict[str, Any] = {
            name: value
            for name, value in result.items()
            if not name.startswith("st_") and isinstance(value, (int, float))
        }
        row["epoch"] = float(epoch)
        row["node"] = self.node
        row["devices"] = self.backend.devices_of(trial.trial_id) if self.backend else ""
        with self._lock:
            if not record.history or record.history[-1]["epoch"] < epoch:
                record.history.append(row)
            if decision == SchedulerDecision.STOP:
                self._end(record, "completed" if epoch >= self.max_epochs else "pruned")
                if record.status == "pruned":
                    record.reason = f"stopped early at epoch {epoch}"
            elif decision == SchedulerDecision.PAUSE:
                record.status, record.reason = "waiting", f"paused at epoch {epoch}"

    def on_trial_complete(self, trial: Trial, result: dict[str, Any]) -> None:
        with self._lock:
            record = self.records[trial.trial_id]
            if record.status == "running":
                self._end(record, "completed")

    def on_fetch_status_results(
        self, trial_status_dict: dict[int, tuple[Trial, str]], new_results: list[Any]
    ) -> None:
        for trial_id, (_, status) in trial_status_dict.items():
            if status == Status.failed:
                self._failed.append(trial_id)

    def on_loop_end(self) -> None:
        """Look at the trials that failed (after their last results were recorded)."""
        while self._failed:
            self._record_failure(self._failed.pop(0))
        if self.stop_requested is None and self._task_broken():
            self.stop_requested = "task"

    def on_tuning_end(self) -> None:
        """The Tuner stops (its running trials are killed next): they run again next time."""
        self.on_loop_end()
        self.interrupt_running(ENDED_WITH_STUDY if self.stop_requested == "task" else None)

    # The backend's questions -------------------------------------------------------------

    def should_stop(self, status: Any) -> bool:
        """The Tuner's stop criterion: a stop signal, or a task that keeps failing."""
        return self.stop_requested is not None

    def interrupt_running(self, reason: str | None = None) -> None:
        """Mark the running trials as interrupted; their configs run again (next run)."""
        with self._lock:
            for record in self.records.values():
                if record.status != "running":
                    continue
                self._end(record, "interrupted")
                record.reason = reason or INTERRUPTED
                if reason is None:
                    self.scheduler.retry(record.trial, record.config, self._checkpoint_of(record))

    def end_paused(self) -> None:
        """The study is over: a trial still paused was stopped early at its rung."""
        with self._lock:
            for record in self.records.values():
                if record.status == "waiting":
                    self._end(record, "pruned")
                    record.reason = NOT_PROMOTED

    def results(self) -> list[TrialResult]:
        with self._lock:
            return [self.records[trial].result() for trial in sorted(self.records)]

    def census(self) -> Census:
        census = census_of(self.results())
        queued = len(self.scheduler.retries)
        if not queued:
            return census
        return Census(**{**census.__dict__, "waiting": census.waiting + queued})

    def task_failed(self) -> Record | None:
        """The first failed trial, when the run stopped because the task kept failing."""
        if self.stop_requested != "task":
            return None
        return next(r for r in sorted(self.records.values(), key=lambda r: r.trial) if r.error)

    # Internals ---------------------------------------------------------------------------

    def _end(self, record: Record, status: str) -> None:
        record.status = status
        record.ended = time.time()

    def _record_failure(self, trial_id: int) -> None:
        record = self.records[trial_id]
        if record.status != "running":
            return
        folder = self.backend.trial_path(trial_id)
        outcome = folder / OUTCOME_FILE
        with self._lock:
            self._end(record, "failed")
            if outcome.is_file():
                failure = json.loads(outcome.read_text())
                record.reason = failure["reason"]
                record.error = failure.get("traceback", "")
                record.task_error = True
                if "row" in failure:
                    row = {**failure["row"], "node": self.node}
                    row["devices"] = self.backend.devices_of(trial_id)
                    record.history.append(row)
                return
            code = self.backend.exit_code(trial_id)
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
            record.reason = f"its worker died ({how})"
            self.scheduler.retry(record.trial, record.config, self._checkpoint_of(record))

    def _checkpoint_of(self, record: Record) -> int | None:
        """The trial whose checkpoint ``record``'s retry continues from (``None``: none)."""
        trial: int | None = record.trial
        while trial is not None:
            if (self.backend.checkpoint_trial_path(trial) / CHECKPOINT_FILE).is_file():
                return trial
            trial = self.records[trial].retry_of if trial in self.records else None
        return None

    def _checkpoint_history(self, trial_id: int) -> list[dict[str, Any]]:
        path = self.backend.checkpoint_trial_path(trial_id)
        if not (path / CHECKPOINT_FILE).is_file():
            return []
        rows = load_checkpoint(path)["history"]
        return [{**row, "node": self.node, "devices": ""} for row in rows]

    def _task_broken(self) -> bool:
        """The first ``FAILURES_BEFORE_STOP`` configs of the run all failed by the task."""
        originals = [r for r in sorted(self.records.values(), key=lambda r: r.trial)]
        originals = [r for r in originals if r.retry_of is None][:FAILURES_BEFORE_STOP]
        return len(originals) == FAILURES_BEFORE_STOP and all(r.task_error for r in originals)


class SavedTuner(Tuner):
    """Syne Tune's Tuner, saved as a whole or not at all.

    Syne Tune writes ``tuner.dill`` in place: a tuner killed mid-write left half a file, and
    the rerun that should continue the experiment failed to load it. This one writes it in a
    folder beside it, then moves it over the old one.
    """

    def save(self, folder: str | None = None) -> None:
        target = Path(folder if folder is not None else self.tuner_path)
        partial = target / f".saving-{os.getpid()}"
        partial.mkdir(exist_ok=True)
        super().save(folder=str(partial))
        os.replace(partial / ST_TUNER_DILL_FILENAME, target / ST_TUNER_DILL_FILENAME)
        partial.rmdir()
