"""The Optuna backend: one study in a storage, worked on by local (and remote) worker processes.

The study lives in a journal file in the run folder by default, or in an RDB such as PostgreSQL
that ``greedylr worker`` processes on other machines join. Each worker asks the study for a
config, trains it, and reports each epoch to the pruner.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from greedylr._signals import deferred_stop_signals
from greedylr.backends import _optuna
from greedylr.backends import _optuna_local
from greedylr.backends import _optuna_storage
from greedylr.backends import _optuna_worker
from greedylr.backends._backend import Backend
from greedylr.backends._backend import Census
from greedylr.backends._backend import cpu_count
from greedylr.backends._backend import note
from greedylr.backends._backend import task_failed_error
from greedylr.backends._contract import TaskFailedError
from greedylr.backends._experiment import Experiment
from greedylr.backends._registry import BACKENDS
from greedylr.backends._results import TrialResult


class OptunaBackend(Backend):
    """Optuna: a study in a journal file or an RDB, trials in forked worker processes.

    Options: ``storage`` (a journal file or an RDB URL; default ``OUT/study.log``), ``study``
    (default: the run folder's name), ``heartbeat`` (seconds, RDB storages only).
    """

    spec = BACKENDS["optuna"]

    def prepare(self) -> Experiment:
        gpus = int(self.resources.gpus_per_trial)
        if gpus:  # too many GPUs per trial is refused before the study is touched
            visible, source = _optuna_local.visible_gpus()
            slots = _optuna_local.gpu_slots(visible, self.workers, gpus, source=source)
            self.workers = min(self.workers, len(slots))
        if self.verbose:  # Optuna's own lines: each trial's end, the pruner's decisions
            optuna = _optuna_storage.optuna_module()
            optuna.logging.set_verbosity(optuna.logging.INFO)
        self._url = self.options.get("storage") or str(self.out / "study.log")
        self._name = self.options.get("study") or self.out.resolve().name
        self._journal = _optuna_storage.is_journal(self._url)  # a local file: no heartbeat
        heartbeat = self.options.get("heartbeat")
        storage = _optuna_storage.open_storage(self._url, heartbeat=heartbeat)
        with deferred_stop_signals():  # a study is created whole, with what it is
            study, resumed = _optuna.create_or_load_study(
                storage, self._name, self.experiment, heartbeat=heartbeat
            )
        self._heartbeat = _optuna.study_heartbeat(study)
        if resumed and not self._journal:  # every worker beats at the study's interval
            study = _optuna.load_study(self._url, self._name, heartbeat=self._heartbeat)
        self._study = study
        asked = self.experiment.n_trials
        self.experiment = _optuna.load_experiment(study)  # a rerun never lowers n_trials
        trials = study.get_trials(deepcopy=False)
        if resumed:
            # A local journal study has no worker left when its tuner starts again: a trial
            # that never recorded its worker was lost too.
            _optuna_worker.retry_dead_local_trials(study, ownerless=self._journal)
            _optuna_worker.retry_interrupted_trials(study)
            trials = study.get_trials(deepcopy=False)
            done = _optuna.census(trials).done
            total = self.experiment.n_trials
            more = f" (it asks for {total}, more than --trials {asked})"
            note(
                f"continuing the study {self._name!r}: {done} of {total} trials done"
                + (more if asked < total else "")
            )
        study.set_user_attr(_optuna.SESSION_ATTR, _optuna.next_trial(trials))
        left = self.experiment.n_trials - _optuna.census(trials).done
        self.workers = max(1, min(self.workers, left))  # never more workers than trials left
        cores = cpu_count()
        if self.workers > cores:
            note(
                f"{self.workers} workers on {cores} CPU cores: trials share the cores, so each "
                f"runs about {self.workers / cores:.1f}x slower"
            )
        return self.experiment

    def settings(self) -> dict[str, Any]:
        storage = {"storage": _optuna_storage.hide_password(self._url), "study": self._name}
        return {**storage, **super().settings()}

    def run(self, lock: threading.Lock) -> None:
        if self.workers == 1:
            with _optuna_local.torch_threads(self.threads()):
                _optuna_local.work(
                    self._study,
                    worker_index=0,
                    ownerless=True,
                    checkpoints=self._checkpoints,
                    gpus_per_trial=self.resources.gpus_per_trial,
                )
        else:
            _optuna_local.run_worker_processes(
                self._study,
                self._url,
                self._name,
                workers=self.workers,
                heartbeat=self._heartbeat,
                threads=self.threads(),
                lock=lock,
                checkpoints=self._checkpoints,
                gpus_per_trial=self.resources.gpus_per_trial,
            )

    @property
    def _checkpoints(self) -> Path:
        """Where the local workers keep each running trial's last checkpoint."""
        return self.out / "checkpoints"

    def census(self) -> Census:
        return _optuna.census(self._study.get_trials(deepcopy=False))

    def trials(self) -> list[TrialResult]:
        return _optuna.trial_results(self._study)

    def task_failure(self) -> TaskFailedError | None:
        failure = _optuna.first_task_failure(self._study)
        if failure is None:
            return None
        reason = failure.user_attrs.get("fail_reason", "error")
        return task_failed_error(self.out, reason, failure.user_attrs.get("traceback", ""))

    @classmethod
    def join(
        cls,
        options: dict[str, Any],
        *,
        worker_index: int,
        threads: int | None = None,
    ) -> None:
        """Work on an existing study until it is done (``greedylr worker``).

        Args:
            options: ``storage`` (required), ``study`` (required), ``heartbeat``.
            worker_index: Seeds this worker's sampler.
            threads: Torch threads (default: every CPU this process may use).

        Raises:
            ValueError: No such study, or a storage that cannot be opened.
        """
        url = options["storage"]
        if _optuna_storage.is_journal(url):  # a worker joins a study: it never creates one
            path = Path(url.removeprefix("journal:")).expanduser()
            if not path.is_file():
                raise ValueError(
                    f"No journal file at {str(path)!r} (--storage); a worker joins a study "
                    "that `greedylr tune` started."
                )
        _optuna_local.join(
            url,
            options["study"],
            worker_index=worker_index,
            threads=threads or cpu_count(),
            heartbeat=options.get("heartbeat"),
            poll_seconds=0.5,
        )
