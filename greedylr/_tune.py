"""``greedylr.tune``: everything ``greedylr tune`` does, as one Python call."""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
import zlib
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from greedylr._progress import Progress
from greedylr._signals import ignore_stop_signals
from greedylr._signals import install_stop_handlers
from greedylr._signals import stop_on_signals
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


class WorkerError(RuntimeError):
    """Worker processes keep dying; the study so far is kept."""


_RESTARTS_PER_WORKER = 3


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
    for name, value in (("workers", workers), ("heartbeat", heartbeat)):
        if value is None:  # heartbeat: the storage's default
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be an int >= 1, but got {name}={value!r}.")
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
    study_name = study or out.resolve().name
    from greedylr.backends import _optuna
    from greedylr.backends import _optuna_worker

    url = storage or str(out / "study.log")
    optuna_storage = _optuna.open_storage(url, heartbeat=heartbeat)
    optuna_study, resumed = _optuna.create_or_load_study(
        optuna_storage, study_name, experiment, heartbeat=heartbeat
    )
    heartbeat = _optuna.study_heartbeat(optuna_study)
    if resumed and not _optuna.is_journal(url):  # every worker beats at the study's interval
        optuna_study = _optuna.load_study(url, study_name, heartbeat=heartbeat)
    asked = experiment.n_trials
    experiment = _optuna.load_experiment(optuna_study)  # a rerun never lowers n_trials
    write_experiment(
        out,
        experiment,
        {"storage": _optuna.hide_password(url), "study": study_name, "workers": workers},
    )
    trials = optuna_study.get_trials(deepcopy=False)
    if resumed:
        # A local journal study has no worker left when its tuner starts again: a trial
        # that never recorded its worker was lost too.
        _optuna_worker.retry_dead_local_trials(optuna_study, ownerless=_optuna.is_journal(url))
        _optuna_worker.retry_interrupted_trials(optuna_study)
        trials = optuna_study.get_trials(deepcopy=False)
        done = _optuna.census(trials).done
        _say(
            f"continuing the study {study_name!r}: {done} of {experiment.n_trials} trials done"
            + (
                f" (it asks for {experiment.n_trials}, more than --trials {asked})"
                if asked < experiment.n_trials
                else ""
            ),
        )
    optuna_study.set_user_attr(_optuna.SESSION_ATTR, _optuna.next_trial(trials))
    left = experiment.n_trials - _optuna.census(trials).done
    workers = max(1, min(workers, left))  # never more workers than trials left
    cores = os.cpu_count() or 1
    threads = resolve_task(task_name).threads  # torch threads a trial uses (None: all it gets)
    if workers > cores:
        _say(
            f"{workers} workers on {cores} CPU cores: trials share the cores, so each runs "
            f"about {workers / cores:.1f}x slower",
        )

    def snapshot() -> Census:
        return _optuna.census(optuna_study.get_trials(deepcopy=False))

    def save() -> None:
        write_result(build_result(experiment, _optuna.trial_results(optuna_study), out))

    monitor = Progress(experiment, snapshot, progress, on_change=save)
    with stop_on_signals():
        try:
            with monitor:
                if workers == 1:
                    with _torch_threads(threads or cores):
                        _run_local_worker(optuna_study, ownerless=_optuna.is_journal(url))
                else:
                    _run_worker_processes(
                        optuna_study,
                        url,
                        study_name,
                        workers=workers,
                        heartbeat=heartbeat,
                        threads=min(threads or cores, max(1, cores // workers)),
                        lock=monitor.lock,
                    )
        finally:
            with _no_interruption():  # a second Ctrl-C must not cut the files short
                result = build_result(experiment, _optuna.trial_results(optuna_study), out)
                write_result(result)
    failure = _optuna.first_task_failure(optuna_study)
    if failure is not None and result.best_config is None:
        raise TaskFailedError(
            f"The task failed in its first {_optuna.FAILURES_BEFORE_STOP} trials "
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


@contextlib.contextmanager
def _no_interruption() -> Iterator[None]:
    """Ignore further stop signals while the results are written."""
    ignore_stop_signals()
    yield


def _run_local_worker(study: Any, *, ownerless: bool) -> None:
    """Run trials in this process; an interruption marks its trial as interrupted."""
    from greedylr.backends import _optuna_worker

    try:
        _optuna_worker.run_worker(study)
    except KeyboardInterrupt:
        with _no_interruption():
            _optuna_worker.interrupt_trials(study, {os.getpid()}, ownerless=ownerless)
        raise


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """Run with ``threads`` torch threads, then restore the previous count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _local_worker_main(
    url: str, study_name: str, index: int, threads: int, heartbeat: int | None, parent: int
) -> None:  # pragma: no cover - runs in a forked worker process
    """A local worker: forked from the tuner, so torch, Optuna and the task are imported."""
    from greedylr.backends._optuna import is_journal

    _die_with_parent()
    if os.getppid() != parent:  # the tuner died before the line above
        os._exit(1)
    install_stop_handlers()
    try:
        # A journal file is cheap to poll: the run ends as soon as its last trial does.
        join_study(
            url,
            study_name,
            worker_index=index,
            threads=threads,
            heartbeat=heartbeat,
            poll_seconds=_LOCAL_POLL_SECONDS if is_journal(url) else 0.5,
        )
    except KeyboardInterrupt:
        os._exit(130)  # quietly: the tuner says "interrupted" once
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


_LOCAL_POLL_SECONDS = 0.05
_STOP_SECONDS = 1.0  # an interrupted worker has this long to mark its trial, then it is killed


def _run_worker_processes(
    study: Any,
    url: str,
    study_name: str,
    *,
    workers: int,
    heartbeat: int | None,
    threads: int,
    lock: threading.Lock,
) -> None:
    """Run ``workers`` local worker processes until the study is done; restart dead ones.

    Workers are forked from this process, which has imported torch, Optuna and the task, so a
    worker starts its first trial at once. ``lock`` is held by the progress thread while it
    reads the study or writes, so a fork never copies a half-taken lock.
    """
    from greedylr.backends import _optuna
    from greedylr.backends import _optuna_worker

    experiment = _optuna.load_experiment(study)
    context = multiprocessing.get_context("fork")
    # The first torch optimizer of a process imports torch._dynamo (over a second): once
    # here, not in every worker.
    import torch._dynamo  # noqa: F401

    def start(index: int) -> Any:
        process = context.Process(
            target=_local_worker_main,
            args=(url, study_name, index, threads, heartbeat, os.getpid()),
            name=f"greedylr-worker-{index}",
            daemon=False,
        )
        sys.stdout.flush()
        sys.stderr.flush()
        with lock:
            process.start()
        return process

    processes: dict[int, Any] = {}
    started = workers
    empty_deaths = 0  # workers that died without a trial: a broken setup, not a bad config
    try:
        for index in range(workers):
            processes[index] = start(index)
        while processes:
            multiprocessing.connection.wait([p.sentinel for p in processes.values()], 1.0)
            for index, process in list(processes.items()):
                code = process.exitcode
                if code is None:
                    continue
                del processes[index]
                if code == 0:
                    continue
                # A trial that killed its worker is retried (at most MAX_RETRIES times).
                if not _optuna_worker.retry_dead_local_trials(study, pids={process.pid}):
                    empty_deaths += 1
                    if empty_deaths > _RESTARTS_PER_WORKER * workers:
                        raise WorkerError(
                            f"Worker processes keep dying before running a trial (last exit "
                            f"code {code}); see their messages above."
                        )
                now = _optuna.census(study.get_trials(deepcopy=False))
                left = experiment.n_trials - now.done - len(processes)
                if left > 0 and _optuna.first_task_failure(study) is None:
                    processes[index] = start(started)
                    started += 1
    except BaseException:
        with _no_interruption():
            _stop_workers(list(processes.values()))
            pids = {p.pid for p in processes.values()}
            _optuna_worker.interrupt_trials(study, pids, ownerless=_optuna.is_journal(url))
        raise


def _stop_workers(processes: list[Any]) -> None:
    """SIGINT every live worker; SIGKILL those still running after ``_STOP_SECONDS``."""
    for process in processes:
        if process.exitcode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGINT)
    deadline = time.monotonic() + _STOP_SECONDS
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.exitcode is None:
            process.kill()
            process.join()


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
    poll_seconds: float = 0.5,
) -> None:
    """Work on an existing study until it is done (``greedylr worker``).

    Args:
        poll_seconds: How often a worker with nothing left to ask looks again (for trials of
            dead workers to retry, or the end of the study).
    """
    from greedylr.backends import _optuna
    from greedylr.backends import _optuna_worker

    study = _optuna.load_study(url, study_name, heartbeat=heartbeat)
    stored = _optuna.study_heartbeat(study)
    if stored != heartbeat and not _optuna.is_journal(url):
        study = _optuna.load_study(url, study_name, heartbeat=stored)
    index = remote_worker_index() if worker_index is None else worker_index
    with stop_on_signals(), _torch_threads(threads or os.cpu_count() or 1):
        try:
            _optuna_worker.run_worker(study, worker_index=index, poll_seconds=poll_seconds)
        except KeyboardInterrupt:
            with _no_interruption():
                _optuna_worker.interrupt_trials(study, {os.getpid()})
            raise
