"""The backend interface: what an engine offers, and how ``greedylr.tune`` drives it.

An engine plugs in at the job level. It declares a :class:`BackendSpec` in
:mod:`greedylr.backends._registry` (its searchers, early-stopping rules, options and capabilities:
plain data, readable without importing the engine) and implements :class:`Backend`, which
``greedylr.tune`` drives the same way for every engine::

    backend = BackendClass(experiment, out, workers=..., resources=..., options=..., verbose=...)
    experiment = backend.prepare()  # create, or continue, the engine's own record of the job
    backend.run(lock)               # until every trial is done, or a stop signal
    backend.trials()                # -> [TrialResult]: the run folder's files and the summary
    backend.close()

The progress bar, the summary, the results files and the report only ever see
:class:`~greedylr.backends._results.TrialResult` and :class:`Census`.
"""

from __future__ import annotations

import math
import os
import sys
import threading
from abc import ABC
from abc import abstractmethod
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any
from typing import ClassVar


if TYPE_CHECKING:
    from greedylr.backends._contract import TaskFailedError
    from greedylr.backends._experiment import Experiment
    from greedylr.backends._results import TrialResult


EARLY_STOPPING_RULES = {
    "asha": "asynchronous successive halving: at each rung keep the best 1 in reduction-factor",
    "hyperband": "several successive-halving brackets with different first rungs",
    "median": "stop a trial worse than the median of the others at the same epoch",
    "pbt": "population-based training: bad trials continue from a good one's checkpoint, with "
    "perturbed hyperparameters (needs a task that checkpoints)",
    "none": "every trial runs all its epochs",
}
"""Every early-stopping rule greedylr knows, the same on every engine that offers it."""

EARLY_STOPPING_ALIASES = {"sha": "asha"}
"""Other names of a rule: ``sha`` (successive halving) is what greedylr once called ``asha``."""

SEARCHER_NAMES = {
    "random": "independent uniform samples",
    "tpe": "tree-structured Parzen estimator (Optuna's TPESampler)",
    "gp": "Gaussian-process Bayesian optimization",
    "cmaes": "CMA-ES evolution strategy",
    "qmc": "quasi-Monte Carlo (Sobol) samples",
    "bo": "Gaussian-process Bayesian optimization on each trial's last loss (Syne Tune's "
    "BoTorch searcher; needs botorch)",
    "bohb": "kernel-density Bayesian optimization on each trial's last loss, as in BOHB",
    "asha-bore": "Bayesian optimization by density-ratio estimation (BORE) on each trial's "
    "last loss",
    "asha-cqr": "conformal quantile regression (CQR) on each trial's last loss",
}
"""Every searcher greedylr knows, the same on every engine that offers it."""


@dataclass(frozen=True)
class Option:
    """An engine's own option, as ``tune(**options)`` and the ``greedylr tune`` flags take it.

    Args:
        name: The keyword of ``greedylr.tune``; the flag is ``--name`` with ``-`` for ``_``.
        help: One line for ``--help``.
        parse: Turns the flag's text into the value (and raises ``ValueError`` on bad input);
            ``tune()`` checks its keyword the same way when given a ``str``.
        metavar: The value's name in ``--help``.
        worker: ``greedylr worker`` takes it too.
    """

    name: str
    help: str
    parse: Callable[[str], Any] = str
    metavar: str = "VALUE"
    worker: bool = False

    @property
    def flag(self) -> str:
        """The command-line flag: ``--max-failures``."""
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class BackendSpec:
    """What an engine offers, declared without importing it.

    Args:
        name: The name ``--backend`` takes.
        title: The engine's name for people ("Ray Tune").
        extra: The pip extra that installs it (``pip install "greedylr[EXTRA]"``).
        module: A module whose presence means the engine is installed (``"ray.tune"``).
        entry: The :class:`Backend` subclass, as ``package.module:Class``; imported on use.
        searchers: The searchers it offers (names of :data:`SEARCHER_NAMES`).
        early_stopping: The early-stopping rules it offers (names of
            :data:`EARLY_STOPPING_RULES`).
        default_early_stopping: The rule used when none is asked for.
        options: Its own options (Optuna: storage, study, heartbeat; Ray: address, ...).
        default_searcher: The searcher used when none is asked for.
        gpus: Trials can be given GPUs (``gpus_per_trial``); fractions allowed when
            ``gpu_fractions``.
        gpu_fractions: Several trials may share one GPU (``gpus_per_trial=0.5``).
        cpu_fractions: Several trials may share one core (``cpus_per_trial=0.5``); otherwise
            a trial gets whole cores (its torch threads).
        shared_storage: Workers on other machines may join a job (``greedylr worker``).
        clusters: Runs trials on a cluster of machines it attaches to (``address``).
    """

    name: str
    title: str
    extra: str
    module: str
    entry: str
    searchers: tuple[str, ...]
    early_stopping: tuple[str, ...]
    default_early_stopping: str
    options: tuple[Option, ...] = ()
    default_searcher: str = "tpe"
    gpus: bool = True
    gpu_fractions: bool = False
    cpu_fractions: bool = False
    shared_storage: bool = False
    clusters: bool = False

    def option(self, name: str) -> Option | None:
        """The option called ``name``, or ``None``."""
        return next((option for option in self.options if option.name == name), None)


@dataclass(frozen=True)
class Resources:
    """What one trial is given.

    Args:
        cpus_per_trial: CPU cores (torch threads) per trial; ``None``: the cores shared among
            the trials running at once (and the task's own ``threads``, if it declares them).
        gpus_per_trial: GPUs per trial: 0 (CPU only), a whole number, or (on engines that
            allow it) a fraction, so that several trials share one GPU.
    """

    cpus_per_trial: float | None = None
    gpus_per_trial: float = 0.0


@dataclass(frozen=True)
class Census:
    """Where a job stands, counting each config once (a retried trial counts by its retry).

    Attributes:
        done: Trials that ended (completed, pruned or failed).
        completed: Trials that ran every epoch.
        pruned: Trials stopped early by the early-stopping rule.
        failed: Trials that raised, diverged, or whose worker died (after their retries).
        running: Trials running now.
        waiting: Trials queued but not started (retries, for instance), and interrupted
            trials, which run again.
        best_loss: The best final loss of a completed trial (``inf``: none yet).
        originals: Configs the job sampled (retries not counted).
    """

    done: int
    completed: int
    pruned: int
    failed: int
    running: int
    waiting: int
    best_loss: float
    originals: int


def census_of(records: Sequence[TrialResult]) -> Census:
    """Count ``records``; a trial retried as another counts only by its retry."""
    retried = {record.retry_of for record in records if record.retry_of is not None}
    counts = {"completed": 0, "pruned": 0, "failed": 0, "running": 0, "waiting": 0}
    best = math.inf
    for record in records:
        if record.trial in retried:
            continue
        status = {"interrupted": "waiting"}.get(record.status, record.status)  # it runs again
        counts[status] += 1
        loss = record.final_loss
        if status == "completed" and loss is not None and math.isfinite(loss):
            best = min(best, loss)
    done = counts["completed"] + counts["pruned"] + counts["failed"]
    originals = sum(1 for record in records if record.retry_of is None)
    return Census(done=done, best_loss=best, originals=originals, **counts)


def cpu_count() -> int:
    """The CPUs this process may run on (its affinity; container limits that use it too)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


FAILURES_BEFORE_STOP = 3
"""A run whose first this-many configs all fail by the task's own error stops."""


def task_failed_error(out: Path, reason: str, traceback: str) -> TaskFailedError:
    """The error a backend's :meth:`Backend.task_failure` returns when the task kept failing."""
    from greedylr.backends._contract import TaskFailedError

    return TaskFailedError(
        f"The task failed in the first {FAILURES_BEFORE_STOP} trials of this run ({reason}); "
        f"the study stopped. Every traceback is in {out / 'failures'}/.",
        details=traceback,
    )


def note(message: str) -> None:
    """A one-time note on stderr, ``greedylr: message`` (shown with or without the bar)."""
    print(f"greedylr: {message}", file=sys.stderr, flush=True)


class Backend(ABC):
    """One engine running one experiment (see the module's docstring for the call order).

    The base class keeps the arguments; a subclass sets :attr:`spec` and implements the
    abstract methods. Nothing may be written before :meth:`prepare`, and input errors found
    there raise ``ValueError`` before anything is stored.

    Args:
        experiment: The job, already checked against :attr:`spec`.
        out: The run folder (it may not exist yet).
        workers: Trials at once.
        resources: What each trial is given.
        options: The engine's own options (names of ``spec.options``), already parsed.
        verbose: Show the engine's own log lines and tables.
    """

    spec: ClassVar[BackendSpec]

    def __init__(
        self,
        experiment: Experiment,
        out: Path,
        *,
        workers: int,
        resources: Resources,
        options: dict[str, Any],
        verbose: bool = False,
    ) -> None:
        self.experiment = experiment
        self.out = out
        self.workers = workers
        self.resources = resources
        self.options = options
        self.verbose = verbose

    @abstractmethod
    def prepare(self) -> Experiment:
        """Create the engine's record of the job, or continue the one in the run folder.

        Returns:
            The experiment as the engine stored it: a rerun continues the stored job and never
            lowers its ``n_trials``.

        Raises:
            ValueError: The options cannot be used (a storage that cannot be opened, a
                cluster that cannot be reached, a stored job that is another experiment).
        """

    @abstractmethod
    def run(self, lock: threading.Lock) -> None:
        """Run trials until the job is done.

        Args:
            lock: Held by the progress thread while it reads :meth:`census` and writes the
                results; hold it while forking a worker process.

        Raises:
            KeyboardInterrupt: A stop signal (:class:`greedylr._signals.Interrupted`); the
                running trials are recorded as interrupted first, so a rerun runs them again.
        """

    @abstractmethod
    def trials(self) -> list[TrialResult]:
        """Every trial so far (running ones included), ordered by trial number."""

    def census(self) -> Census:
        """Where the job stands now; cheap enough to call every second."""
        return census_of(self.trials())

    def settings(self) -> dict[str, Any]:
        """What ``experiment.json`` records besides the experiment (no secrets)."""
        return {
            "workers": self.workers,
            "cpus_per_trial": self.resources.cpus_per_trial,
            "gpus_per_trial": self.resources.gpus_per_trial,
        }

    def threads(self) -> int:
        """Torch threads per trial: the cores asked for (at least 1), else the task's own,
        else this machine's cores shared among the trials that run at once."""
        from greedylr.tasks import resolve_task

        if self.resources.cpus_per_trial is not None:
            return max(1, int(self.resources.cpus_per_trial))
        cores = cpu_count()
        threads = resolve_task(self.experiment.task).threads or cores
        return threads if self.workers == 1 else min(threads, max(1, cores // self.workers))

    @classmethod
    def join(
        cls, options: dict[str, Any], *, worker_index: int, threads: int | None = None
    ) -> None:
        """Work on a job in a shared storage until it is done (``greedylr worker``).

        Only engines whose spec has ``shared_storage`` implement it.

        Raises:
            ValueError: This engine's workers cannot join from other machines.
        """
        raise ValueError(f"Workers cannot join a {cls.spec.title} job from other machines.")

    def task_failure(self) -> TaskFailedError | None:
        """The error to raise when the task kept failing and the job stopped early."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what :meth:`prepare` and :meth:`run` took (a private cluster, say)."""
