"""``greedylr.tune``: everything ``greedylr tune`` does, as one Python call."""

from __future__ import annotations

import os
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from greedylr._checks import check_int
from greedylr._progress import Progress
from greedylr._signals import clean_up
from greedylr._signals import deferred_stop_signals
from greedylr._signals import interruption
from greedylr._signals import stop_on_signals
from greedylr._signals import stopping
from greedylr.backends._contract import TaskFailedError
from greedylr.backends._contract import function_path
from greedylr.backends._contract import load_trial_function
from greedylr.backends._experiment import Experiment
from greedylr.backends._optuna import Census
from greedylr.backends._results import TuneResult
from greedylr.backends._results import build_result
from greedylr.backends._results import write_experiment
from greedylr.backends._results import write_result
from greedylr.searchers import SearchSpace
from greedylr.tasks import resolve_task
from greedylr.tasks import task_slug


STORAGE_ENV = "GREEDYLR_STORAGE"


def tune(
    task: str | Callable[..., Any],
    *,
    schedule: str = "greedylr",
    space: SearchSpace | None = None,
    backend: str = "optuna",
    n_trials: int = 300,
    max_epochs: int | None = None,
    workers: int = 1,
    searcher: str = "tpe",
    early_stopping: str = "hyperband",
    min_epochs: int = 1,
    reduction_factor: int = 3,
    seed: int = 0,
    out: str | Path | None = None,
    storage: str | None = None,
    study: str | None = None,
    heartbeat: int | None = None,
    progress: bool = True,
) -> TuneResult:
    """Tune ``schedule``'s hyperparameters on ``task``; stop bad trials early.

    Running the same call again continues the study (after a crash, Ctrl-C or SIGTERM) up to
    ``n_trials`` (never fewer than the study already asks for); trials that were interrupted
    or whose worker died are run again. The untuned defaults run first and are never stopped
    early. The run folder's files are rewritten every few seconds while the study runs.

    Args:
        task: A built-in task name (``greedylr tasks``), ``package.module:function``, or a
            module-level function ``train(config, reporter)``.
        schedule: The LR schedule tuned: ``"greedylr"`` or a baseline's name.
        space: The search space (default: the schedule's own, e.g. ``greedylr_space()``).
        backend: The engine (``"optuna"``).
        n_trials: How many trials to run.
        max_epochs: The epochs of a trial never stopped early (default: the task's).
        workers: Worker processes on this machine (trials run in parallel); at most as
            many start as trials are left. They are forked from this process.
        searcher: ``tpe``, ``random``, ``gp``, ``cmaes`` or ``qmc``.
        early_stopping: ``hyperband``, ``asha`` (= ``sha``), ``median`` or ``none``.
        min_epochs: The first epoch at which a trial may be stopped.
        reduction_factor: Keep 1 / this many trials at each rung.
        seed: The run seed (sampling, and the training seed of every trial).
        out: The run folder (default ``runs/<task>-<schedule>-seed<seed>``).
        storage: An Optuna storage URL (default: a journal file in the run folder).
        study: The study name (default: the run folder's name).
        heartbeat: Seconds between heartbeats of an RDB storage (a trial whose worker stops
            beating for 3 of them is failed and retried).
        progress: Show a progress bar on stderr.

    Returns:
        The trials and their per-epoch history as DataFrames, and the best config.

    Raises:
        ValueError: Bad input (an unknown task, schedule, backend, impossible budgets, a space
            with ``low > high`` or keys the task does not take, a storage that cannot be
            opened, a run folder that cannot be written, ...); nothing is stored then.
        TaskFailedError: The first trials all failed with an error raised by the task; the
            study stopped (``details`` holds the first traceback).
        KeyboardInterrupt: Ctrl-C or SIGTERM (:class:`greedylr._signals.Interrupted`); the
            running trials are marked interrupted and the results are written first.
    """
    task_name = task if isinstance(task, str) else function_path(task)
    check_int("workers", workers, minimum=1)
    if heartbeat is not None:  # None: the storage's default
        check_int("heartbeat", heartbeat, minimum=1)
    experiment = Experiment.create(
        task_name,
        schedule=schedule,
        space=space,
        n_trials=n_trials,
        max_epochs=max_epochs,
        min_epochs=min_epochs,
        reduction_factor=reduction_factor,
        searcher=searcher,
        early_stopping=early_stopping,
        seed=seed,
        backend=backend,
    )
    load_trial_function(experiment.function)  # a bad task fails here, before anything is stored
    slug = task_slug(task_name)
    out = Path(out) if out is not None else Path("runs") / f"{slug}-{schedule}-seed{seed}"
    _check_writable(out)
    with stop_on_signals():
        try:
            return _run(
                experiment,
                out,
                storage=storage,
                study=study,
                workers=workers,
                heartbeat=heartbeat,
                progress=progress,
                threads=resolve_task(task_name).threads,
            )
        except Exception as error:
            if stopping():  # a Ctrl-C that landed in an import surfaces as another error
                raise interruption() from error
            raise


def _run(
    experiment: Experiment,
    out: Path,
    *,
    storage: str | None,
    study: str | None,
    workers: int,
    heartbeat: int | None,
    progress: bool,
    threads: int | None,
) -> TuneResult:
    from greedylr.backends import _optuna
    from greedylr.backends import _optuna_local
    from greedylr.backends import _optuna_storage
    from greedylr.backends import _optuna_worker

    study_name = study or out.resolve().name
    url = storage or str(out / "study.log")
    journal = _optuna_storage.is_journal(url)  # a file on this machine: no heartbeat
    optuna_storage = _optuna_storage.open_storage(url, heartbeat=heartbeat)
    with deferred_stop_signals():  # a study is created whole, with what it is
        optuna_study, resumed = _optuna.create_or_load_study(
            optuna_storage, study_name, experiment, heartbeat=heartbeat
        )
    heartbeat = _optuna.study_heartbeat(optuna_study)
    if resumed and not journal:  # every worker beats at the study's interval
        optuna_study = _optuna.load_study(url, study_name, heartbeat=heartbeat)
    asked = experiment.n_trials
    experiment = _optuna.load_experiment(optuna_study)  # a rerun never lowers n_trials
    write_experiment(
        out,
        experiment,
        {"storage": _optuna_storage.hide_password(url), "study": study_name, "workers": workers},
    )
    trials = optuna_study.get_trials(deepcopy=False)
    if resumed:
        # A local journal study has no worker left when its tuner starts again: a trial
        # that never recorded its worker was lost too.
        _optuna_worker.retry_dead_local_trials(optuna_study, ownerless=journal)
        _optuna_worker.retry_interrupted_trials(optuna_study)
        trials = optuna_study.get_trials(deepcopy=False)
        done = _optuna.census(trials).done
        more = f" (it asks for {experiment.n_trials}, more than --trials {asked})"
        _say(
            f"continuing the study {study_name!r}: {done} of {experiment.n_trials} trials done"
            + (more if asked < experiment.n_trials else "")
        )
    optuna_study.set_user_attr(_optuna.SESSION_ATTR, _optuna.next_trial(trials))
    left = experiment.n_trials - _optuna.census(trials).done
    workers = max(1, min(workers, left))  # never more workers than trials left
    cores = _optuna_local.cpu_count()
    if workers > cores:
        _say(
            f"{workers} workers on {cores} CPU cores: trials share the cores, so each runs "
            f"about {workers / cores:.1f}x slower"
        )

    def snapshot() -> Census:
        return _optuna.census(optuna_study.get_trials(deepcopy=False))

    def save() -> None:
        write_result(build_result(experiment, _optuna.trial_results(optuna_study), out))

    monitor = Progress(experiment, snapshot, progress, on_change=save)
    try:
        with monitor:
            if workers == 1:
                with _optuna_local.torch_threads(threads or cores):
                    _optuna_local.work(optuna_study, worker_index=0, ownerless=True)
            else:
                _optuna_local.run_worker_processes(
                    optuna_study,
                    url,
                    study_name,
                    workers=workers,
                    heartbeat=heartbeat,
                    threads=min(threads or cores, max(1, cores // workers)),
                    lock=monitor.lock,
                )
    finally:
        with clean_up():  # a second Ctrl-C must not cut the files short
            monitor.close()  # its last save may not overlap this one
            result = build_result(experiment, _optuna.trial_results(optuna_study), out)
            write_result(result)
    failure = _optuna.first_task_failure(optuna_study)
    if failure is not None:
        raise TaskFailedError(
            f"The task failed in the first {_optuna.FAILURES_BEFORE_STOP} trials of this run "
            f"({failure.user_attrs.get('fail_reason', 'error')}); the study stopped. "
            f"Every traceback is in {out / 'failures'}/.",
            details=failure.user_attrs.get("traceback", ""),
        )
    return result


def _say(message: str) -> None:
    """A one-time note on stderr (shown with or without the progress bar)."""
    print(f"greedylr: {message}", file=sys.stderr, flush=True)


def _check_writable(out: Path) -> None:
    """Refuse a run folder that cannot be written, before anything is stored (creating none).

    An existing folder gets a probe file; a new one needs its nearest existing parent to be a
    folder this process may write into.
    """
    try:
        if out.exists():
            probe = out / f".greedylr-write-test-{os.getpid()}"
            probe.write_text("")
            probe.unlink()
            return
        parent = next(folder for folder in out.absolute().parents if folder.exists())
        if not parent.is_dir():
            raise NotADirectoryError(20, "Not a directory")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as error:
        raise ValueError(
            f"Cannot write the run folder {str(out)!r} (--out): {error.strerror or error}."
        ) from None


def remote_worker_index() -> int:
    """A worker index for ``greedylr worker`` on any machine: distinct per host and process."""
    return zlib.crc32(f"{os.uname().nodename}:{os.getpid()}".encode()) % 1_000_000 + 1000


def join_study(
    url: str,
    study_name: str,
    *,
    worker_index: int | None = None,
    threads: int | None = None,
    heartbeat: int | None = None,
) -> None:
    """Work on an existing study until it is done (``greedylr worker``).

    Ctrl-C or SIGTERM marks the running trial as interrupted and queues it again for the
    other workers, then raises ``KeyboardInterrupt``.

    Args:
        url: The study's storage URL.
        study_name: The study's name.
        worker_index: Seeds this worker's sampler (default: from the host and the pid).
        threads: Torch threads (default: every CPU this process may use).
        heartbeat: Seconds between RDB heartbeats (the study's own interval wins).

    Raises:
        ValueError: No such study, or a storage that cannot be opened.
    """
    from greedylr.backends import _optuna_local

    with stop_on_signals():
        _optuna_local.join(
            url,
            study_name,
            worker_index=remote_worker_index() if worker_index is None else worker_index,
            threads=threads or _optuna_local.cpu_count(),
            heartbeat=heartbeat,
            poll_seconds=0.5,
        )
