"""The Optuna backend's workers on this machine: in the tuner's process, or forked from it.

Workers are forked after the tuner imported torch, Optuna and the task, so a worker starts its
first trial at once. Stop signals (:mod:`greedylr._signals`) end every worker within
``STOP_SECONDS``: each marks its trial as interrupted and queues it again; the tuner kills the
ones still running, then does the same for them.

GPUs: with ``gpus_per_trial`` = g > 0, worker i sees only its own g GPUs through
``CUDA_VISIBLE_DEVICES`` (set before anything in it touches CUDA), taken in turn from the GPUs
the tuner sees (:func:`gpu_slots`); no two workers share one. With g = 0 the forked workers
see none and train on the CPU (the single worker in the tuner's own process leaves
``CUDA_VISIBLE_DEVICES`` alone: see :func:`work`).
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
from pathlib import Path
from typing import Any

from greedylr._signals import clean_up
from greedylr._signals import deferred_stop_signals
from greedylr._signals import install_stop_handlers
from greedylr._signals import release_stop_signals
from greedylr.backends import _optuna
from greedylr.backends import _optuna_storage
from greedylr.backends import _optuna_worker
from greedylr.backends._gpus import gpu_slots
from greedylr.backends._gpus import listed_gpus


STOP_SECONDS = 1.0  # an interrupted worker has this long to mark its trial, then it is killed
_JOURNAL_POLL_SECONDS = 0.05  # a journal file is cheap to read: the run ends with its last trial
_RESTARTS_PER_WORKER = 3


class WorkerError(RuntimeError):
    """Worker processes keep dying; the study so far is kept."""


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


def visible_gpus() -> tuple[list[str], str]:
    """The GPUs this process may hand to its workers, and where that list came from.

    ``CUDA_VISIBLE_DEVICES`` when it is set (its entries, in order); else every GPU
    ``torch.cuda.device_count()`` counts (through NVML: CUDA itself is not started, so
    workers forked afterwards can still use it).
    """
    listed = listed_gpus()
    if listed is not None:
        return listed
    import torch

    count = torch.cuda.device_count()
    return [str(index) for index in range(count)], f"torch.cuda.device_count()={count}"


def _worker_gpus(workers: int, gpus_per_trial: float) -> tuple[list[str], int]:
    """:func:`gpu_slots` over :func:`visible_gpus`, and how many GPUs are visible."""
    visible, source = visible_gpus() if gpus_per_trial else ([], "")
    return gpu_slots(visible, workers, gpus_per_trial, source=source), len(visible)


@contextlib.contextmanager
def visible_devices(devices: str) -> Iterator[None]:
    """Run with ``CUDA_VISIBLE_DEVICES=devices``, then restore it.

    It only narrows the GPUs while CUDA is not started in this process.
    """
    before = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = devices
    try:
        yield
    finally:
        if before is None:
            del os.environ["CUDA_VISIBLE_DEVICES"]
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = before


def work(
    study: Any,
    *,
    worker_index: int,
    ownerless: bool = False,
    poll_seconds: float = 0.5,
    checkpoints: Path | None = None,
    gpus_per_trial: float = 0,
) -> None:
    """Run trials of ``study`` in this process until it is done.

    Interrupted, it marks its running trial as interrupted, queues it again and re-raises.

    Args:
        ownerless: The trials of no recorded worker are this process's too (nobody else
            works on the study).
        checkpoints: The folder of the trials' checkpoints (``None``: none are kept, and a
            retried trial starts at epoch 1).
        gpus_per_trial: The GPUs the trials run on: the first ones visible, through
            ``CUDA_VISIBLE_DEVICES`` while this runs. 0 leaves ``CUDA_VISIBLE_DEVICES`` as it
            is: hiding every GPU here would hide them from the rest of this process for good
            (CUDA reads the variable once, when a trial first touches it), and this process
            is the caller's own.

    Raises:
        ValueError: ``gpus_per_trial`` asks for more GPUs than are visible.
    """
    devices = _worker_gpus(1, gpus_per_trial)[0][0] if gpus_per_trial else None
    with visible_devices(devices) if devices is not None else contextlib.nullcontext():
        _work(
            study,
            worker_index=worker_index,
            ownerless=ownerless,
            poll_seconds=poll_seconds,
            checkpoints=checkpoints,
            devices=devices,
        )


def _work(
    study: Any,
    *,
    worker_index: int,
    ownerless: bool,
    poll_seconds: float,
    checkpoints: Path | None,
    devices: str | None,
) -> None:
    try:
        _optuna_worker.run_worker(
            study,
            worker_index=worker_index,
            poll_seconds=poll_seconds,
            checkpoints=checkpoints,
            devices=devices,
        )
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
    checkpoints: Path | None = None,
    devices: str | None = None,
) -> None:
    """Open the study and work on it (the body of ``greedylr worker``, without handlers).

    Args:
        checkpoints: The folder of the trials' checkpoints, shared with the tuner (``None``:
            none; a worker on another machine has no access to the run folder).
        devices: The GPUs this process was pinned to, recorded in the history (``None``: it
            was not pinned; its ``CUDA_VISIBLE_DEVICES``, if any, is the user's).
    """
    study = _optuna.load_study(url, study_name, heartbeat=heartbeat)
    stored = _optuna.study_heartbeat(study)
    if stored != heartbeat and not _optuna_storage.is_journal(url):
        study = _optuna.load_study(url, study_name, heartbeat=stored)
    with torch_threads(threads):
        _work(
            study,
            worker_index=worker_index,
            ownerless=False,
            poll_seconds=poll_seconds,
            checkpoints=checkpoints,
            devices=devices,
        )


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _forked_worker(
    url: str,
    study_name: str,
    index: int,
    threads: int,
    heartbeat: int | None,
    parent: int,
    checkpoints: Path | None,
    devices: str,
    gpus: bool,
) -> None:  # pragma: no cover - runs in a forked worker process
    _die_with_parent()
    if os.getppid() != parent:  # the tuner died before the line above
        os._exit(1)
    install_stop_handlers()  # for good: the exit below must not meet the parent's handlers
    release_stop_signals()  # held back since before the fork
    os.environ["CUDA_VISIBLE_DEVICES"] = devices  # before anything here touches CUDA
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
            checkpoints=checkpoints,
            devices=devices if gpus else None,
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
    checkpoints: Path | None = None,
    gpus_per_trial: float = 0,
) -> None:
    """Run ``workers`` forked worker processes until the study is done; restart dead ones.

    ``lock`` is held by the progress thread while it reads the study or writes, so a fork
    never copies a half-taken lock.

    Args:
        checkpoints: The folder of the trials' checkpoints (``None``: none are kept, and a
            retried trial starts at epoch 1).
        gpus_per_trial: The GPUs each worker gets for its own (see :func:`gpu_slots`); fewer
            workers start when the GPUs run out (a note on stderr says so). 0: no GPU.

    Raises:
        ValueError: ``gpus_per_trial`` asks for more GPUs than are visible.
        WorkerError: Workers keep dying before they run a trial.
    """
    experiment = _optuna.load_experiment(study)
    slots, visible = _worker_gpus(workers, gpus_per_trial)
    if len(slots) < workers:
        print(
            f"greedylr: {len(slots)} of {workers} workers start: each takes {gpus_per_trial} "
            f"of the {visible} GPUs visible",
            file=sys.stderr,
            flush=True,
        )
        workers = len(slots)
    context = multiprocessing.get_context("fork")
    # The first torch optimizer of a process imports torch._dynamo (about a second): once
    # here, not in every worker.
    import torch._dynamo  # noqa: F401

    processes: dict[int, Any] = {}
    slot_of: dict[int, str] = {}  # a restarted worker takes the GPUs of the one it replaces

    def start(index: int, devices: str) -> None:
        process = context.Process(
            target=_forked_worker,
            args=(
                url,
                study_name,
                index,
                threads,
                heartbeat,
                os.getpid(),
                checkpoints,
                devices,
                gpus_per_trial > 0,
            ),
            name=f"greedylr-worker-{index}",
        )
        sys.stdout.flush()
        sys.stderr.flush()
        with lock, deferred_stop_signals():  # no stop signal between the fork and the record
            process.start()
            processes[index] = process
            slot_of[index] = devices

    started = workers
    empty_deaths = 0  # workers that died without a trial: a broken setup, not a bad config
    try:
        for index in range(workers):
            start(index, slots[index])
        while processes:
            multiprocessing.connection.wait([p.sentinel for p in processes.values()], 1.0)
            for index, process in list(processes.items()):
                code = process.exitcode
                if code is None:
                    continue
                del processes[index]
                freed = slot_of.pop(index)
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
                    start(started, freed)
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
