"""``greedylr.tune``: everything ``greedylr tune`` does, as one Python call."""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from greedylr._checks import check_int
from greedylr._progress import Progress
from greedylr._signals import clean_up
from greedylr._signals import interruption
from greedylr._signals import stop_on_signals
from greedylr._signals import stopping
from greedylr.backends._backend import Backend
from greedylr.backends._backend import BackendSpec
from greedylr.backends._backend import Resources
from greedylr.backends._contract import function_path
from greedylr.backends._contract import load_trial_function
from greedylr.backends._experiment import Experiment
from greedylr.backends._registry import BACKENDS
from greedylr.backends._registry import backend_spec
from greedylr.backends._registry import check_options
from greedylr.backends._registry import load_backend
from greedylr.backends._results import TuneResult
from greedylr.backends._results import build_result
from greedylr.backends._results import read_experiment
from greedylr.backends._results import write_experiment
from greedylr.backends._results import write_result
from greedylr.searchers import SearchSpace
from greedylr.searchers import resolve_schedule
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
    searcher: str | None = None,
    early_stopping: str | None = None,
    min_epochs: int = 1,
    reduction_factor: int = 3,
    seed: int = 0,
    out: str | Path | None = None,
    cpus_per_trial: float | None = None,
    gpus_per_trial: float = 0,
    progress: bool = True,
    verbose: bool = False,
    **options: Any,
) -> TuneResult:
    """Tune ``schedule``'s hyperparameters on ``task``; stop bad trials early.

    Running the same call again continues the job (after a crash, Ctrl-C or SIGTERM) up to
    ``n_trials`` (never fewer than the job already asks for); trials that were interrupted
    or whose worker died are run again, from their last checkpoint when the task keeps them.
    The untuned defaults run first. The run folder's files are rewritten every few seconds
    while the job runs.

    Args:
        task: A built-in task name (``greedylr tasks``), ``package.module:function``, or a
            module-level function ``train(config, reporter)``.
        schedule: The LR schedule tuned: ``"greedylr"``, a baseline's name, or a method that
            adapts or replaces the schedule (``"sgd-hd"``, ``"adam-hd"``,
            ``"sgd-schedulefree"``, ``"adamw-schedulefree"``: the ``constant`` schedule with
            that optimizer; see :func:`greedylr.searchers.tunable_schedules`).
        space: The search space (default: the schedule's own, e.g. ``greedylr_space()``,
            or the method's, :func:`greedylr.searchers.method_space`; a method's optimizer
            is set in a space given here).
        backend: The engine: ``"optuna"``, ``"ray"`` or ``"syne-tune"``
            (:func:`greedylr.backends.backend_spec` tells what each offers).
        n_trials: How many trials to run.
        max_epochs: The epochs of a trial never stopped early (default: the task's).
        workers: Trials at once (Optuna: worker processes forked from this one; at most as
            many start as trials are left).
        searcher: ``tpe``, ``random``, ``gp``, ``cmaes``, ``qmc``, ``bo``, ``bohb``,
            ``asha-bore`` or ``asha-cqr``, as the backend offers (default: the backend's own,
            Optuna and Ray ``tpe``, Syne Tune ``bohb``).
        early_stopping: ``asha``, ``hyperband``, ``median``, ``pbt`` or ``none``, as the backend
            offers (default: the backend's own, Optuna ``hyperband``, Ray and Syne Tune
            ``asha``).
        min_epochs: The first epoch at which a trial may be stopped.
        reduction_factor: Keep 1 / this many trials at each rung.
        seed: The run seed (sampling, and the training seed of every trial).
        out: The run folder (default ``runs/<task>-<schedule>-seed<seed>``, with the name
            given as ``schedule``, a method's included).
        cpus_per_trial: CPU cores (torch threads) per trial (default: the cores shared among
            the trials that run at once).
        gpus_per_trial: GPUs per trial (0: CPU only); each trial sees only its own through
            ``CUDA_VISIBLE_DEVICES``. Ray allows fractions (trials sharing a GPU).
        progress: Show a progress bar on stderr.
        verbose: Show the engine's own log lines and tables.
        **options: The backend's own options: Optuna ``storage`` (a journal file or an RDB URL;
            default: a journal file in the run folder), ``study`` (default: the run folder's
            name), ``heartbeat`` (seconds, RDB storages); Ray ``address`` (a running cluster:
            ``auto``, ``HOST:PORT``, or ``ray://HOST:PORT`` to run the job there through Ray
            Client; default: a private local instance),
            ``max_failures`` (retries of a crashed trial); Syne Tune ``asha_kind``
            (``stopping`` or ``promotion``: paused trials continue from their checkpoint).

    Returns:
        The trials and their per-epoch history as DataFrames, and the best config.

    Raises:
        ValueError: Bad input (an unknown task, schedule, backend, impossible budgets, a
            searcher, rule or option the backend does not offer, a space with ``low > high``
            or keys the task does not take, a storage or cluster that cannot be reached, a
            run folder that cannot be written, ...); nothing is stored then.
        MissingDependencyError: The backend's engine is not installed (an ``ImportError``
            naming ``pip install "greedylr[EXTRA]"``).
        TaskFailedError: The first trials all failed with an error raised by the task; the
            job stopped (``details`` holds the first traceback).
        KeyboardInterrupt: Ctrl-C or SIGTERM (:class:`greedylr._signals.Interrupted`); the
            running trials are marked interrupted and the results are written first.
    """
    task_name = task if isinstance(task, str) else function_path(task)
    check_int("workers", workers, minimum=1)
    spec = backend_spec(backend)
    engine_options = check_options(spec, options)
    resources = _resources(spec, cpus_per_trial, gpus_per_trial)
    registered, space = resolve_schedule(schedule, space)  # a method: `constant` + its optimizer
    experiment = Experiment.create(
        task_name,
        schedule=registered,
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
    _check_same_job(out, experiment)
    engine = load_backend(backend)(
        experiment,
        out,
        workers=workers,
        resources=resources,
        options=engine_options,
        verbose=verbose,
    )
    with stop_on_signals():
        try:
            return _run(engine, out, progress=progress)
        except Exception as error:
            if stopping():  # a Ctrl-C that landed in an import surfaces as another error
                raise interruption() from error
            raise


def _resources(spec: BackendSpec, cpus: float | None, gpus: float) -> Resources:
    """Check what a trial is given against what the engine can give."""
    if cpus is not None and not (_is_number(cpus) and cpus > 0):
        raise ValueError(f"`cpus_per_trial` must be > 0, but got cpus_per_trial={cpus!r}.")
    if not (_is_number(gpus) and gpus >= 0):
        raise ValueError(f"`gpus_per_trial` must be >= 0, but got gpus_per_trial={gpus!r}.")
    if gpus and not spec.gpus:
        raise ValueError(f"The {spec.title} backend cannot give trials GPUs (`gpus_per_trial`).")
    for name, value, shares in (
        ("gpus", gpus, spec.gpu_fractions),
        ("cpus", cpus, spec.cpu_fractions),
    ):
        if value is not None and value != int(value) and not shares:
            sharing = [
                other.title
                for other in BACKENDS.values()
                if getattr(other, f"{name[:3]}_fractions")
            ]
            what = "GPU" if name == "gpus" else "core"
            raise ValueError(
                f"The {spec.title} backend gives each trial whole {what}s, but got "
                f"{name}_per_trial={value}; {' and '.join(sharing)} can share a {what} among "
                "trials."
            )
    return Resources(cpus_per_trial=cpus, gpus_per_trial=float(gpus))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _run(engine: Backend, out: Path, *, progress: bool) -> TuneResult:
    """Prepare, run and close ``engine``; write the run folder's files as the trials end."""
    try:
        experiment = engine.prepare()
        write_experiment(out, experiment, engine.settings())

        def save() -> None:
            write_result(build_result(experiment, engine.trials(), out))

        monitor = Progress(experiment, engine.census, progress, on_change=save)
        try:
            with monitor:
                engine.run(monitor.lock)
        finally:
            with clean_up():  # a second Ctrl-C must not cut the files short
                monitor.close()  # its last save may not overlap this one
                result = build_result(experiment, engine.trials(), out)
                write_result(result)
        failure = engine.task_failure()
        if failure is not None:
            raise failure
        return result
    finally:
        with clean_up():
            engine.close()


def _check_same_job(out: Path, experiment: Experiment) -> None:
    """Refuse a run folder that holds another job (another engine's, say): nothing is lost.

    A rerun of the same job (only ``n_trials`` may differ) continues it.
    """
    stored = read_experiment(out)
    if stored is not None and not stored.same_job(experiment):
        raise ValueError(
            f"The run folder {str(out)!r} (--out) holds another experiment ({stored.task}, "
            f"{stored.schedule}, backend {stored.backend}, seed {stored.seed}, ...); give "
            "another --out to start a new one."
        )


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
    backend: str = "optuna",
) -> None:
    """Work on an existing job in a shared storage until it is done (``greedylr worker``).

    Ctrl-C or SIGTERM marks the running trial as interrupted and queues it again for the
    other workers, then raises ``KeyboardInterrupt``.

    Args:
        url: The job's storage URL.
        study_name: The study's name.
        worker_index: Seeds this worker's sampler (default: from the host and the pid).
        threads: Torch threads (default: every CPU this process may use).
        heartbeat: Seconds between RDB heartbeats (the study's own interval wins).
        backend: The engine; one whose spec has ``shared_storage``.

    Raises:
        ValueError: No such study, a storage that cannot be opened, or a backend whose
            workers cannot join from other machines.
    """
    spec = backend_spec(backend)
    options = check_options(spec, {"storage": url, "study": study_name, "heartbeat": heartbeat})
    engine = load_backend(backend)
    with stop_on_signals():
        engine.join(
            options,
            worker_index=remote_worker_index() if worker_index is None else worker_index,
            threads=threads,
        )
