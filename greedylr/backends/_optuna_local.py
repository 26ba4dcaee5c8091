"""The Optuna backend's workers on this machine: in the tuner's process, or forked from it.

Workers are forked after the tuner imported torch, Optuna and the task, so a worker starts its
first trial at once. Stop signals (:mod:`greedylr._signals`) end every worker within
``STOP_SECONDS``: each marks its trial as interrupted and queues it again; the tuner kills the
ones still running, then does the same for them.
"""

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
from collections.abc import Iterator
from typing import Any

from greedylr._signals import clean_up
from greedylr._signals import deferred_stop_signals
from greedylr._signals import install_stop_handlers
from greedylr._signals import release_stop_signals
from greedylr.backends import _optuna
from greedylr.backends import _optuna_storage
from greedylr.backends import _optuna_worker


STOP_SECONDS = 1.0  # an interrupted worker has this long to mark its trial, then it is killed
_JOURNAL_POLL_SECONDS = 0.05  # a journal file is cheap to read: the run ends with its last trial
_RESTARTS_PER_WORKER = 3


class WorkerError(RuntimeError):
    """Worker processes keep dying; the study so far is kept."""


def cpu_count() -> int:
    """The CPUs this process may run on (its affinity; container limits that use it too)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run with ``threads`` torch threads, then restore the previous count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def work(
    study: Any, *, worker_index: int, ownerless: bool = False, poll_seconds: float = 0.5
) -> None:
    """Run trials of ``study`` in this process until it is done.

    Interrupted, it marks its running trial as interrupted, queues it again and re-raises.

    Args:
        ownerless: The trials of no recorded worker are this process's too (nobody else
            works on the study).
    """
    try:
        _optuna_worker.run_worker(study, worker_index=worker_index, poll_seconds=poll_seconds)
    except KeyboardInterrupt:
        with clean_up():
            _optuna_worker.interrupt_trials(study, {os.getpid()}, ownerless=ownerless)
        raise


def join(
    url: str,
    study_name: str,
    *,
    worker_index: int,
    threads: int,
    heartbeat: int | None,
    poll_seconds: float,
) -> None:
    """Open the study and work on it (the body of ``greedylr worker``, without handlers)."""
    study = _optuna.load_study(url, study_name, heartbeat=heartbeat)
    stored = _optuna.study_heartbeat(study)
    if stored != heartbeat and not _optuna_storage.is_journal(url):
        study = _optuna.load_study(url, study_name, heartbeat=stored)
    with torch_threads(threads):
        work(study, worker_index=worker_index, poll_seconds=poll_seconds)


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _forked_worker(
    url: str, study_name: str, index: int, threads: int, heartbeat: int | None, parent: int
) -> None:  # pragma: no cover - runs in a forked worker process
    _die_with_parent()
    if os.getppid() != parent:  # the tuner died before the line above
        os._exit(1)
    install_stop_handlers()  # for good: the exit below must not meet the parent's handlers
    release_stop_signals()  # held back since before the fork
    code = 0
    try:
        poll = _JOURNAL_POLL_SECONDS if _optuna_storage.is_journal(url) else 0.5
        join(
            url,
            study_name,
            worker_index=index,
            threads=threads,
            heartbeat=heartbeat,
            poll_seconds=poll,
        )
    except KeyboardInterrupt:
        code = 130  # quietly: the tuner says "interrupted" once
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_worker_processes(
    study: Any,
    url: str,
    study_name: str,
    *,
    workers: int,
    heartbeat: int | None,
    threads: int,
    lock: threading.Lock,
) -> None:
    """Run ``workers`` forked worker processes until the study is done; restart dead ones.

    ``lock`` is held by the progress thread while it reads the study or writes, so a fork
    never copies a half-taken lock.

    Raises:
        WorkerError: Workers keep dying before they run a trial.
    """
    experiment = _optuna.load_experiment(study)
    context = multiprocessing.get_context("fork")
    # The first torch optimizer of a process imports torch._dynamo (about a second): once
    # here, not in every worker.
    import torch._dynamo  # noqa: F401

    processes: dict[int, Any] = {}

    def start(index: int) -> None:
        process = context.Process(
            target=_forked_worker,
            args=(url, study_name, index, threads, heartbeat, os.getpid()),
            name=f"greedylr-worker-{index}",
        )
        sys.stdout.flush()
        sys.stderr.flush()
        with lock, deferred_stop_signals():  # no stop signal between the fork and the record
            process.start()
            processes[index] = process

    started = workers
    empty_deaths = 0  # workers that died without a trial: a broken setup, not a bad config
    try:
        for index in range(workers):
            start(index)
        while processes:
            multiprocessing.connection.wait([p.sentinel for p in processes.values()], 1.0)
            for index, process in list(processes.items()):
                code = process.exitcode
                if code is None:
                    continue
                del processes[index]
                # A trial that killed its worker is retried (at most MAX_RETRIES times).
                lost = code != 0 and _optuna_worker.retry_dead_local_trials(
                    study, pids={process.pid}
                )
                if code != 0 and not lost:
                    empty_deaths += 1
                    if empty_deaths > _RESTARTS_PER_WORKER * workers:
                        raise WorkerError(
                            f"Worker processes keep dying before running a trial (last exit "
                            f"code {code}); see their messages above."
                        )
                now = _optuna.census(study.get_trials(deepcopy=False))
                left = experiment.n_trials - now.done - len(processes)
                if left > 0 and _optuna.first_task_failure(study) is None:
                    start(started)
                    started += 1
    except BaseException:
        with clean_up():
            stop_workers(list(processes.values()))
            pids = {p.pid for p in processes.values()}
            _optuna_worker.interrupt_trials(study, pids, ownerless=_optuna_storage.is_journal(url))
        raise


def stop_workers(processes: list[Any]) -> None:
    """SIGINT every live worker; SIGKILL those still running after ``STOP_SECONDS``."""
    for process in processes:
        if process.exitcode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGINT)
    deadline = time.monotonic() + STOP_SECONDS
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.exitcode is None:
            process.kill()
            process.join()
