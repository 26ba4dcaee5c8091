"""``greedylr.tune``: everything ``greedylr tune`` does, as one Python call."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from greedylr._progress import Progress
from greedylr.backends._contract import function_path
from greedylr.backends._contract import load_trial_function
from greedylr.backends._experiment import Experiment
from greedylr.backends._results import TuneResult
from greedylr.backends._results import build_result
from greedylr.backends._results import write_experiment
from greedylr.backends._results import write_result
from greedylr.searchers import SearchSpace


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

    Running the same call again continues the study (after a crash or Ctrl-C) up to
    ``n_trials``; trials whose worker died are run again.

    Args:
        task: A built-in task name (``greedylr tasks``), ``package.module:function``, or a
            module-level function ``train(config, reporter)``.
        schedule: The LR schedule tuned: ``"greedylr"`` or a baseline's name.
        space: The search space (default: the schedule's own, e.g. ``greedylr_space()``).
        backend: The engine (``"optuna"``).
        n_trials: How many trials to run.
        max_epochs: The epochs of a trial never stopped early (default: the task's).
        workers: Worker processes on this machine (trials run in parallel).
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
            with ``low > high``, a storage that cannot be opened, ...).
    """
    task_name = task if isinstance(task, str) else function_path(task)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"`workers` must be an int >= 1, but got {workers=}.")
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
    name = task_name.replace(":", "-").replace("/", "-").replace(".", "-")
    out = Path(out) if out is not None else Path("runs") / f"{name}-{schedule}-seed{seed}"
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
    write_experiment(
        out,
        experiment,
        {"storage": _optuna.hide_password(url), "study": study_name, "workers": workers},
    )
    if resumed:
        # A local journal study has no worker left when its tuner starts again: a trial
        # that never recorded its worker was lost too.
        _optuna_worker.retry_dead_local_trials(optuna_study, ownerless=_optuna.is_journal(url))
        _optuna_worker.retry_interrupted_trials(optuna_study)
    monitor = Progress(experiment, lambda: optuna_study.get_trials(deepcopy=False), progress)
    try:
        with monitor:
            if workers == 1:
                with _torch_threads(os.cpu_count() or 1):
                    _optuna_worker.run_worker(optuna_study)
            else:
                _run_worker_processes(
                    optuna_study, url, study_name, workers=workers, heartbeat=heartbeat
                )
    finally:
        result = build_result(experiment, _optuna.trial_results(optuna_study), out)
        write_result(result)
    return result


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


def worker_command(
    study_name: str, *, worker_index: int, threads: int, heartbeat: int | None
) -> list[str]:
    """The command line of a local worker process (the storage URL goes by environment)."""
    command = [sys.executable, "-m", "greedylr", "worker", "--study", study_name]
    command += ["--worker-index", str(worker_index), "--threads", str(threads)]
    if heartbeat is not None:
        command += ["--heartbeat", str(heartbeat)]
    return command


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _run_worker_processes(
    study: Any, url: str, study_name: str, *, workers: int, heartbeat: int | None
) -> None:
    from greedylr.backends import _optuna
    from greedylr.backends import _optuna_worker

    experiment = _optuna.load_experiment(study)
    threads = max(1, (os.cpu_count() or 1) // workers)
    # Workers see what this process imports from (a task next to the user's script, say).
    paths = [os.path.abspath(path) if path else os.getcwd() for path in sys.path]
    env = {**os.environ, STORAGE_ENV: url, "PYTHONPATH": os.pathsep.join(paths)}

    def start(index: int) -> subprocess.Popen[bytes]:
        command = worker_command(
            study_name, worker_index=index, threads=threads, heartbeat=heartbeat
        )
        return subprocess.Popen(command, env=env, preexec_fn=_die_with_parent)

    processes = {index: start(index) for index in range(workers)}
    started = workers
    empty_deaths = 0  # workers that died without a trial: a broken setup, not a bad config
    try:
        while processes:
            time.sleep(0.2)
            for index, process in list(processes.items()):
                code = process.poll()
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
                if _optuna.census(study.get_trials(deepcopy=False)).done < experiment.n_trials:
                    processes[index] = start(started)
                    started += 1
    except BaseException as error:
        if not isinstance(error, KeyboardInterrupt):  # Ctrl-C already reached the workers
            for process in processes.values():
                process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 10
        for process in processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        _optuna_worker.retry_dead_local_trials(study, pids={p.pid for p in processes.values()})
        raise


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
    """Work on an existing study until it is done (``greedylr worker``)."""
    from greedylr.backends import _optuna
    from greedylr.backends import _optuna_worker

    study = _optuna.load_study(url, study_name, heartbeat=heartbeat)
    stored = _optuna.study_heartbeat(study)
    if stored != heartbeat and not _optuna.is_journal(url):
        study = _optuna.load_study(url, study_name, heartbeat=stored)
    with _torch_threads(threads or os.cpu_count() or 1):
        index = remote_worker_index() if worker_index is None else worker_index
        _optuna_worker.run_worker(study, worker_index=index)
