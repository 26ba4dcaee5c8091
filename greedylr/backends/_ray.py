"""The Ray Tune backend: a ``tune.Tuner`` on a private local Ray instance or a cluster.

Tune's storage is the run folder's ``ray/`` folder (nothing goes to ``~/ray_results``), so a
rerun of the same command after a crash, Ctrl-C or SIGTERM restores the experiment and finishes
its trials. The trials run in reused Ray actors (:mod:`greedylr.backends._ray_trainable`); the
driver records them through a Tune callback (:mod:`greedylr.backends._ray_recorder`); the
searchers and schedulers are in :mod:`greedylr.backends._ray_search`; starting Ray and cleaning
up after it in :mod:`greedylr.backends._ray_session`.
"""

from __future__ import annotations

import functools
import math
import shutil
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from greedylr import _signals
from greedylr.backends._backend import Backend
from greedylr.backends._backend import Census
from greedylr.backends._backend import cpu_count
from greedylr.backends._backend import note
from greedylr.backends._backend import task_failed_error
from greedylr.backends._contract import TaskFailedError
from greedylr.backends._experiment import Experiment
from greedylr.backends._ray_client import ClientJob
from greedylr.backends._ray_recorder import STATE_KEY
from greedylr.backends._ray_recorder import StopOnTaskFailure
from greedylr.backends._ray_recorder import TrialRecorder
from greedylr.backends._ray_search import METRIC
from greedylr.backends._ray_search import MODE
from greedylr.backends._ray_search import continue_search
from greedylr.backends._ray_search import make_scheduler
from greedylr.backends._ray_search import make_searcher
from greedylr.backends._ray_search import trial_dirname
from greedylr.backends._ray_session import Quiet
from greedylr.backends._ray_session import Session
from greedylr.backends._ray_session import environment
from greedylr.backends._ray_session import ray_environment
from greedylr.backends._ray_session import ray_version
from greedylr.backends._ray_trainable import CheckpointsNeededError
from greedylr.backends._ray_trainable import run_trial
from greedylr.backends._registry import BACKENDS
from greedylr.backends._results import TrialResult
from greedylr.backends._results import read_experiment


EXPERIMENT_FOLDER = "ray"
"""Tune's experiment folder inside the run folder."""
DEFAULT_MAX_FAILURES = 2


class RayBackend(Backend):
    """Ray Tune: trials in reused Ray actors, on this machine or on a cluster.

    Options: ``address`` (``auto`` or ``HOST:PORT``: attach to a running cluster;
    ``ray://HOST:PORT``: run the job on the cluster through Ray Client, keeping the run folder
    here, see :mod:`greedylr.backends._ray_client`; default: start a private Ray instance), and
    ``max_failures`` (retries of a trial whose worker died, from its last checkpoint;
    default 2). A rerun continues the experiment with the ``workers`` and ``max_failures``
    it is given.
    """

    spec = BACKENDS["ray"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._session: Session | None = None
        self._recorder: TrialRecorder | None = None
        self._tuner: Any = None
        self._quiet = Quiet(self.verbose)
        self._environment: Any = None
        self._client: ClientJob | None = None  # --address ray://: the job runs on the cluster

    # Backend -----------------------------------------------------------------------------

    def prepare(self) -> Experiment:
        address = self.options.get("address")
        self.experiment = self._stored_job()
        self._environment = environment(
            ray_environment(verbose=self.verbose, private=address is None)
        )
        self._environment.__enter__()
        self._quiet.__enter__()
        self._session = Session(quiet=self._quiet)
        if address is not None and address.startswith("ray://"):
            self._client = ClientJob(self)
            self._client.start()
            return self.experiment
        if address is None:
            cores = cpu_count()
            self._session.start(num_cpus=max(cores, 1))
        else:
            self._session.attach(address)
        self._check_resources()
        self._recorder = TrialRecorder(
            max_epochs=self.experiment.max_epochs,
            n_trials=self.experiment.n_trials,
            has_defaults=bool(self.experiment.default_config()),
            # PBT may hand any trial's older checkpoint to another: keep them all until the end.
            checkpoints_in=None if self._is_pbt else self.experiment_path,
        )
        from ray import tune

        path = self.experiment_path
        if tune.Tuner.can_restore(str(path)):
            self._tuner = self._restore(path)
        else:
            self._tuner = self._create()
        return self.experiment

    def run(self, lock: threading.Lock) -> None:
        if self._client is not None:
            self._client.run()
            return
        assert self._tuner is not None
        assert self._recorder is not None
        signaled = threading.Event()
        previous = {signum: signal.getsignal(signum) for signum in _signals.STOP_SIGNALS}

        usr1_before = signal.getsignal(signal.SIGUSR1)
        recorder = self._recorder

        def stop_tune() -> bool:
            # Tune's graceful stop is its SIGUSR1 handler, which tune.run installs late
            # (after it built or restored the experiment); until then the recorder passes
            # the stop on at Tune's next step. It saves the experiment with the running
            # trials unfinished, so that a rerun continues them.
            handler = signal.getsignal(signal.SIGUSR1)
            if callable(handler) and handler is not usr1_before:
                handler(signal.SIGUSR1, None)
                return True
            return False

        def stop(signum: int, frame: FrameType | None) -> None:
            signaled.set()
            _signals.record_stop_signal(signum, frame)  # the third ends the process
            recorder.mark_interrupted()

        in_main = threading.current_thread() is threading.main_thread()
        if in_main:
            recorder.stop_tune = stop_tune
            for signum in _signals.STOP_SIGNALS:
                signal.signal(signum, stop)
        try:
            self._tuner.fit()
        finally:
            recorder.stop_tune = None
            if in_main:
                for signum, handler in previous.items():
                    signal.signal(signum, handler)
                if usr1_before is not None:  # None: not installed from Python
                    signal.signal(signal.SIGUSR1, usr1_before)
        if recorder.ends_run is not None and recorder.ends_run.failure is not None:
            raise CheckpointsNeededError(
                f"{recorder.ends_run.failure['reason']}; the study stopped at the first "
                "report without a checkpoint."
            )
        if signaled.is_set() or _signals.stopping():
            recorder.mark_interrupted()
            raise _signals.interruption()
        if recorder.all_finished():
            _keep_last_checkpoints(self.experiment_path)

    def trials(self) -> list[TrialResult]:
        if self._client is not None:
            return self._client.trials()
        if self._recorder is None:
            return []
        return self._recorder.results()

    def census(self) -> Census:
        if self._client is not None:
            return self._client.census()
        assert self._recorder is not None
        return self._recorder.census()

    def settings(self) -> dict[str, Any]:
        return {
            **super().settings(),
            "address": self.options.get("address"),
            "max_failures": self._max_failures,
            "ray_experiment": str(self.experiment_path),
        }

    def task_failure(self) -> TaskFailedError | None:
        if self._client is not None:
            return self._client.task_failure()
        failed = self._recorder.task_failed if self._recorder is not None else None
        if failed is None:
            return None
        reason = failed.failure["reason"] if failed.failure else failed.crash
        return task_failed_error(
            self.out, reason, failed.failure["traceback"] if failed.failure else ""
        )

    def close(self) -> None:
        try:
            if self._session is not None:
                self._session.close()
                self._session = None
        finally:
            self._quiet.__exit__(None, None, None)
            if self._environment is not None:
                self._environment.__exit__(None, None, None)
                self._environment = None

    # Internals ---------------------------------------------------------------------------

    def _check_resources(self) -> None:
        """Refuse a trial no node can ever hold (Tune would wait for it forever).

        Raises:
            ValueError: No node has ``gpus_per_trial`` GPUs or ``cpus_per_trial`` CPUs.
        """
        import ray

        nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
        where = "this machine" if self._session_private else "any node of the cluster"
        gpus = self.resources.gpus_per_trial
        most_gpus = max((node.get("GPU", 0.0) for node in nodes), default=0.0)
        if gpus > most_gpus:
            raise ValueError(
                f"`gpus_per_trial` must be at most the GPUs of one node, but got "
                f"gpus_per_trial={gpus:g} and {where} has {most_gpus:g}."
            )
        cpus = self.resources.cpus_per_trial
        most_cpus = max((node.get("CPU", 0.0) for node in nodes), default=0.0)
        if cpus is not None and cpus > most_cpus:
            raise ValueError(
                f"`cpus_per_trial` must be at most the CPUs of one node, but got "
                f"cpus_per_trial={cpus:g} and {where} has {most_cpus:g}."
            )

    @property
    def experiment_path(self) -> Path:
        """Tune's experiment folder (``OUT/ray``)."""
        return self.out.resolve() / EXPERIMENT_FOLDER

    @property
    def _is_pbt(self) -> bool:
        return self.experiment.early_stopping == "pbt"

    @property
    def _max_failures(self) -> int:
        return int(self.options.get("max_failures", DEFAULT_MAX_FAILURES))

    def _stored_job(self) -> Experiment:
        """The experiment to run: the asked one, or the stored one it continues.

        ``greedylr.tune`` refused a run folder of another job before the backend was made.
        """
        stored = read_experiment(self.out)
        if stored is None:
            return self.experiment
        if stored.n_trials > self.experiment.n_trials:  # a rerun never lowers n_trials
            return stored
        return self.experiment  # a larger n_trials grows Tune's experiment (continue_search)

    def _trainable(self) -> Any:
        from ray import tune

        threads = self.threads()
        function = functools.partial(
            run_trial,
            function=self.experiment.function,
            max_epochs=self.experiment.max_epochs,
            threads=threads,
            needs_checkpoints=self.experiment.early_stopping == "pbt",
        )
        function.__name__ = "greedylr_trial"  # type: ignore[attr-defined]  # Tune's name
        cpus = self.resources.cpus_per_trial
        if cpus is None and self._session_private:
            # The private instance's cores shared by the workers: no more than `workers`
            # trials fit at once, restored ones included (Tune's max_concurrent_trials only
            # holds back new trials of the searcher). Ray counts resources to 1e-4.
            cpus = math.floor(cpu_count() / self.workers * 10_000) / 10_000
        elif cpus is None:
            cpus = 1.0
        return tune.with_resources(function, {"cpu": cpus, "gpu": self.resources.gpus_per_trial})

    @property
    def _session_private(self) -> bool:
        return self._session is not None and self._session.private

    def _run_config(self) -> Any:
        from ray import tune

        assert self._recorder is not None
        return tune.RunConfig(
            name=EXPERIMENT_FOLDER,
            storage_path=str(self.out.resolve()),
            callbacks=[self._recorder],
            stop=StopOnTaskFailure(self._recorder),
            failure_config=tune.FailureConfig(max_failures=self._max_failures),
            # Tune keeps every checkpoint: its snapshot of the experiment that a killed driver
            # left may name a checkpoint older than the last few (num_to_keep=2 broke such
            # reruns), and PBT hands a trial another trial's checkpoint of some epochs ago.
            # The recorder removes an ended trial's older ones once Tune saved it as ended;
            # a finished experiment keeps each trial's last one (_keep_last_checkpoints).
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
            verbose=1 if self.verbose else 0,
            log_to_file=not self.verbose,  # trials' stdout/stderr go to their folders
        )

    def _create(self) -> Any:
        from ray import tune

        if self.experiment.searcher == "tpe":
            self._quiet.hide_optuna()
        searcher, param_space = make_searcher(self.experiment, workers=self.workers)
        tune_config = tune.TuneConfig(
            metric=METRIC,
            mode=MODE,
            num_samples=self.experiment.n_trials,
            search_alg=searcher,
            scheduler=make_scheduler(self.experiment),
            reuse_actors=True,
            trial_dirname_creator=trial_dirname,
        )
        return tune.Tuner(
            self._trainable(),
            param_space=param_space,
            tune_config=tune_config,
            run_config=self._run_config(),
        )

    def _restore(self, path: Path) -> Any:
        """Restore the experiment a killed or stopped driver left in the run folder."""
        from ray import tune

        assert self._recorder is not None
        tuner = tune.Tuner.restore(
            str(path),
            trainable=self._trainable(),
            resume_unfinished=True,
            # A trial that raised or diverged is a result; one whose worker died was retried
            # already: neither runs again.
            resume_errored=False,
        )
        # Tuner.restore brings back the Tuner's pickled settings (tuner.pkl); the rerun's own
        # are set on them through private attributes of Ray 2.60's Tuner (its TunerInternal,
        # `_local_tuner`: not Ray Client, which prepare() refuses) and TunerInternal's
        # `_tune_config`: checked first, so that a Ray that changed them fails clearly.
        internal: Any = getattr(tuner, "_local_tuner", None)
        tune_config: Any = getattr(internal, "_tune_config", None)
        if not hasattr(internal, "get_run_config") or not hasattr(tune_config, "search_alg"):
            raise RuntimeError(
                f"Cannot continue the Ray Tune experiment in {str(path)!r}: this Ray's "
                f"restored Tuner has no _local_tuner._tune_config (Ray {ray_version()}; "
                "greedylr was written for Ray 2.60)."
            )
        tune_config.num_samples = self.experiment.n_trials
        continue_search(
            tune_config.search_alg, n_trials=self.experiment.n_trials, workers=self.workers
        )
        run_config = internal.get_run_config()
        run_config.callbacks = [self._recorder]  # the live recorder, not tuner.pkl's copy
        run_config.stop = StopOnTaskFailure(self._recorder)
        run_config.failure_config = tune.FailureConfig(max_failures=self._max_failures)
        self._recorder.max_failures = self._max_failures  # the restored trials' own
        run_config.verbose = 1 if self.verbose else 0
        self._recorder.set_state(_saved_recorder_state(path))
        census = self._recorder.census()
        note(
            f"continuing the Ray Tune experiment in {str(path)!r}: {census.done} of "
            f"{self.experiment.n_trials} trials done"
        )
        return tuner


def _saved_recorder_state(path: Path) -> dict[str, Any]:
    """The recorder's state in Tune's last snapshot of the experiment ({} if none)."""
    import pickle

    snapshots = sorted(path.glob("callback-states-*.pkl"), key=lambda p: p.stat().st_mtime)
    for snapshot in reversed(snapshots):
        try:
            states = pickle.loads(snapshot.read_bytes())  # noqa: S301 - our own run folder
        except (OSError, pickle.UnpicklingError, EOFError):
            continue
        for state in (states or {}).values():
            if isinstance(state, dict) and STATE_KEY in state:
                return state
    return {}


def _keep_last_checkpoints(path: Path) -> None:
    """Remove every checkpoint of a finished experiment but each trial's last one."""
    for trial in path.glob("trial_*"):
        checkpoints = sorted(trial.glob("checkpoint_*"))
        for old in checkpoints[:-1]:
            shutil.rmtree(old, ignore_errors=True)
