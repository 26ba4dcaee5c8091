"""The Optuna backend's workers: a study on a shared storage, worked by any number of processes.

Each worker runs trials one at a time (``study.optimize(n_trials=1)``, which keeps an RDB
storage's heartbeat) until the study holds ``n_trials`` trials that are done. Trials are counted
without locks: a worker asks a trial, then counts the *original* trials numbered before it
(retries of lost trials and surplus asks not counted); when ``n_trials`` are already there, its
trial is told FAIL as surplus and never runs. Trials whose worker died are failed and retried
with the same config: by the process that launched the worker (it sees the death), on a resume
(the worker's pid is gone), or by the heartbeat of an RDB storage (workers on other machines).

Given a ``checkpoints`` folder, a retried trial continues from the last checkpoint of the trial
it retries (:mod:`greedylr.backends._optuna_checkpoints`).
"""

from __future__ import annotations

import datetime
import functools
import os
import socket
import time
import traceback
import warnings
from collections.abc import Callable
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from greedylr._signals import clean_up
from greedylr._signals import stopping
from greedylr.backends import _optuna_checkpoints
from greedylr.backends._contract import Checkpoint
from greedylr.backends._contract import TrialDiverged
from greedylr.backends._contract import TrialFunction
from greedylr.backends._contract import TrialStopped
from greedylr.backends._contract import ValidatingReporter
from greedylr.backends._contract import load_trial_function
from greedylr.backends._experiment import Experiment
from greedylr.backends._optuna import INTERRUPTED
from greedylr.backends._optuna import census
from greedylr.backends._optuna import is_original
from greedylr.backends._optuna import load_experiment
from greedylr.backends._optuna import make_pruner
from greedylr.backends._optuna import make_sampler
from greedylr.backends._optuna import pruner_epochs
from greedylr.backends._optuna import retries_of
from greedylr.backends._optuna import task_verdict
from greedylr.backends._optuna import worker_seed
from greedylr.backends._optuna_storage import optuna_module
from greedylr.searchers import suggest
from greedylr.searchers import to_optuna


MAX_RETRIES = 2  # a config whose worker dies three times is not run again
# A running trial's history is stored when it ends, and every this many seconds before: what
# `greedylr report` shows of it, and what is left of it if its worker is killed.
HISTORY_SECONDS = 5.0
ORPHAN_SECONDS = 60.0  # a trial with no recorded worker this long after it started is lost


class _TrialFailed(Exception):
    """Internal: the trial failed; its reason is already stored on the trial."""


def worker_identity() -> dict[str, Any]:
    """Who runs a trial: this machine (host, boot, pid namespace), pid and process start."""
    return {"host": _machine(), "pid": os.getpid(), "started": _start_time(os.getpid())}


@functools.cache
def _machine() -> str:
    """This host, its boot and its pid namespace: containers sharing a hostname differ."""
    parts = [socket.gethostname()]
    try:
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    except OSError:
        pass
    return "/".join(parts)


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state first), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def _start_time(pid: int) -> int | None:
    fields = _proc_stat(pid)
    return None if fields is None else int(fields[19])


def owner_alive(owner: dict[str, Any]) -> bool:
    """Whether the worker process that owns a trial of this machine still runs it.

    The caller runs no trial itself, so a trial owned by its own pid (from before a restart)
    is dead; a pid reused by another process is told apart by its start time.
    """
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid == os.getpid() or not process_alive(pid):
        return False
    started = owner.get("started")
    return started is None or _start_time(pid) in (None, started)


def retry_trial(study: Any, trial: Any, reason: str) -> bool:
    """Fail a RUNNING trial whose worker is gone and enqueue its config again.

    A config is run again at most ``MAX_RETRIES`` times (a trial that kills its worker every
    time must not stop the study).

    Returns:
        Whether this call did it (another process may have been first).
    """
    retry = _retry_depth(study, trial) < MAX_RETRIES
    if not retry:
        reason = f"{reason}; not run again: its worker died {MAX_RETRIES + 1} times"
    if not _tell_failed(study, trial, reason):
        return False
    if retry:
        _enqueue_retry(study, trial)
    return True


def _tell_failed(study: Any, trial: Any, reason: str) -> bool:
    """Fail a RUNNING trial with ``reason``; False if another process ended it first."""
    optuna = optuna_module()
    try:
        optuna.trial.Trial(study, trial._trial_id).set_user_attr("fail_reason", reason)
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
    except (RuntimeError, ValueError):
        return False
    return True


def _retry_depth(study: Any, trial: Any) -> int:
    """How often the config died before ``trial`` ran it (interruptions are not its fault)."""
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    depth = 0
    while "retry_of" in trial.user_attrs and trial.user_attrs["retry_of"] in by_number:
        trial = by_number[trial.user_attrs["retry_of"]]
        depth += trial.user_attrs.get("fail_reason") != INTERRUPTED
    return depth


def retry_lost_trial(study: Any, trial: Any) -> None:
    """Optuna's callback for a trial failed by the heartbeat: run its config again."""
    if _retry_depth(study, trial) < MAX_RETRIES:
        _enqueue_retry(study, trial)


def _enqueue_retry(study: Any, trial: Any) -> None:
    # A trial that died before sampling has no params: a retry's config is still in its
    # enqueued fixed_params; an original that died so early is sampled afresh.
    params = trial.params or trial.system_attrs.get("fixed_params", {})
    attrs: dict[str, Any] = {"retry_of": trial.number}
    if trial.user_attrs.get("defaults"):
        attrs["defaults"] = True  # the retry is the defaults trial: never stopped early
    study.enqueue_trial(params, user_attrs=attrs)


def interrupt_trials(study: Any, pids: set[int], *, ownerless: bool = False) -> int:
    """Mark the trials of these stopped local workers as interrupted and queue them again.

    An interrupted trial is not a failure of its config: its retry runs first when the study
    goes on (at once on a shared study that other workers still work on; on a rerun
    otherwise), and it does not count toward ``MAX_RETRIES``.

    Args:
        pids: The workers stopped by the interruption (their RUNNING trials, and those that
            already ended as interrupted, are queued again).
        ownerless: Also RUNNING trials that never recorded a worker (asked just before the
            interruption): only safe when no other worker of this study runs.

    Returns:
        How many trials were queued again.
    """
    optuna = optuna_module()
    state = optuna.trial.TrialState
    machine, marked = _machine(), set()

    def stopped_here(trial: Any) -> bool:
        owner = trial.user_attrs.get("worker")
        if owner is None:
            return ownerless and trial.state == state.RUNNING
        return owner.get("host") == machine and owner.get("pid") in pids

    for trial in study.get_trials(deepcopy=False, states=(state.RUNNING,)):
        if stopped_here(trial) and _tell_failed(study, trial, INTERRUPTED):
            marked.add(trial.number)
    return retry_interrupted_trials(study, only=lambda t: t.number in marked or stopped_here(t))


def retry_dead_local_trials(
    study: Any,
    *,
    pids: set[int] | None = None,
    ownerless: bool = False,
    ownerless_after: float | None = None,
) -> int:
    """Retry the RUNNING trials of this machine whose worker process is gone.

    Args:
        pids: Only trials of these (dead) worker pids; ``None``: every owner no longer alive.
        ownerless: Also retry RUNNING trials that never recorded an owner (a worker killed
            right after asking). Only safe when no worker of this study can be running: on a
            resume of a local (journal) study.
        ownerless_after: Also retry RUNNING trials, of any machine, that recorded no owner
            this many seconds after they started: a worker records itself milliseconds after
            it asks, so such a trial's worker died in between (no heartbeat finds it: it never
            beat).
    """
    optuna = optuna_module()
    machine, count = _machine(), 0
    now = datetime.datetime.now()
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        owner = trial.user_attrs.get("worker")
        if owner is None:
            started = trial.datetime_start or now
            orphan = ownerless_after is not None and (now - started).total_seconds() > (
                ownerless_after
            )
            if (ownerless or orphan) and retry_trial(
                study, trial, "its worker died before it started"
            ):
                count += 1
            continue
        if owner.get("host") != machine:
            continue
        pid = owner.get("pid")
        dead = pid in pids if pids is not None else not owner_alive(owner)
        if dead and retry_trial(study, trial, f"worker {pid} died"):
            count += 1
    return count


def retry_interrupted_trials(study: Any, *, only: Callable[[Any], bool] | None = None) -> int:
    """Queue again the trials that were interrupted (Ctrl-C, SIGTERM) and are not yet.

    Args:
        only: Just the interrupted trials this accepts (default: every one).

    Returns:
        How many trials were queued again.
    """
    optuna = optuna_module()
    trials = study.get_trials(deepcopy=False)
    retried = retries_of(trials)
    count = 0
    for trial in trials:
        if (
            trial.state == optuna.trial.TrialState.FAIL
            and trial.user_attrs.get("fail_reason") == INTERRUPTED
            and trial.number not in retried
            and (only is None or only(trial))
        ):
            _enqueue_retry(study, trial)
            count += 1
    return count


def process_alive(pid: Any) -> bool:
    """Whether process ``pid`` of this machine is running (a zombie is not)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _proc_stat(pid)
    return fields is None or fields[0] not in ("Z", "X")  # no /proc: trust kill(0)


def run_worker(
    study: Any,
    *,
    worker_index: int = 0,
    poll_seconds: float = 0.5,
    checkpoints: Path | None = None,
    devices: str | None = None,
) -> None:
    """Run trials of ``study`` until it holds its ``n_trials`` done trials.

    Stops early when the task is broken (:func:`first_task_failure`), and raises
    ``KeyboardInterrupt`` once the process got a stop signal, whatever the trial made of it.

    Args:
        checkpoints: The folder of the trials' checkpoints (``None``: trials are not
            checkpointed, and a retry starts at epoch 1).
        devices: The GPUs this worker was pinned to (its ``CUDA_VISIBLE_DEVICES``): recorded
            in every history row as ``devices`` (``None``: no such column).
    """
    optuna = optuna_module()
    experiment = load_experiment(study)
    train = load_trial_function(experiment.function)
    space = experiment.search_space
    to_optuna(space)  # fails early, with the engine's message, on a space Optuna cannot hold
    before = len(study.get_trials(deepcopy=False))
    study.sampler = make_sampler(experiment, worker_seed(experiment.seed, worker_index, before))
    study.pruner = make_pruner(experiment)
    tags = {"node": os.uname().nodename, "devices": os.environ.get("CUDA_VISIBLE_DEVICES", "")}
    if devices is not None:
        tags["devices"] = devices
    objective = _Objective(train, space, experiment, checkpoints=checkpoints, tags=tags)
    while True:
        if stopping():
            raise KeyboardInterrupt
        trials = study.get_trials(deepcopy=False)
        now = census(trials)
        verdict = task_verdict(study, trials)[0] if now.failed else "working"
        if now.done >= experiment.n_trials or verdict == "broken":
            # Done, or the task is broken: the tuner shows the error; running more trials
            # would only repeat it.
            if checkpoints is not None:
                _optuna_checkpoints.drop_stale(study, checkpoints)
            return
        finishing = now.originals >= experiment.n_trials and now.waiting == 0
        if finishing or verdict == "pending":
            # Others are finishing; or the configs of this run that ended all failed by the
            # task and one of its first few still runs (another worker's): wait for it to tell
            # a broken task from a working one, rather than start configs a broken task would
            # only fail. A trial whose worker dies now is retried: this machine's by their
            # pid, other machines' by the RDB heartbeat.
            time.sleep(poll_seconds)
            retry_dead_local_trials(study, ownerless_after=ORPHAN_SECONDS)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
            continue
        try:
            study.optimize(objective, n_trials=1, catch=(_TrialFailed,), gc_after_trial=False)
        except ValueError as error:
            # Another process failed this trial (its heartbeat looked stale) and may have
            # retried it: Optuna cannot tell it again. The study goes on.
            if not str(error).startswith("Cannot tell a "):
                raise


class _Objective:
    def __init__(
        self,
        train: TrialFunction,
        space: dict[str, Any],
        experiment: Experiment,
        *,
        checkpoints: Path | None = None,
        tags: Mapping[str, str] | None = None,
    ):
        self._train = train
        self._space = space
        self._experiment = experiment
        self._checkpoints = checkpoints
        self._tags = dict(tags or {})

    def __call__(self, trial: Any) -> float:
        optuna = optuna_module()
        try:
            value = self._run(trial)
        except KeyboardInterrupt:  # wherever it lands, the trial is marked for a retry
            trial.set_user_attr("fail_reason", INTERRUPTED)
            raise
        except (optuna.TrialPruned, _TrialFailed):
            self._drop_checkpoints(trial)  # it is not run again
            raise
        self._drop_checkpoints(trial)
        return value

    def _drop_checkpoints(self, trial: Any) -> None:
        if self._checkpoints is not None:
            _optuna_checkpoints.drop_ended(trial, self._checkpoints)

    def _run(self, trial: Any) -> float:
        optuna = optuna_module()
        trial.set_user_attr("worker", worker_identity())
        if "retry_of" not in trial.user_attrs and self._is_surplus(trial):
            trial.set_user_attr("surplus", True)
            raise _TrialFailed("surplus")
        config = suggest(trial, self._space)
        trial.set_user_attr("config", config)
        last_epoch = self._experiment.max_epochs

        # The defaults trial always runs to the end: tuning never ends worse than not tuning.
        exempt = bool(trial.user_attrs.get("defaults"))

        read = pruner_epochs(self._experiment)
        saved = time.monotonic()
        kept: _optuna_checkpoints.TrialCheckpoints | None = None
        restored: Checkpoint | None = None
        history: list[dict[str, Any]] = []
        if self._checkpoints is not None:
            folder = _optuna_checkpoints.folder_of(self._checkpoints, trial.number)
            kept = _optuna_checkpoints.TrialCheckpoints(folder)
            restored, history = _optuna_checkpoints.continue_retry(trial, self._checkpoints)
        for row in history:  # the retried trial's epochs: the pruner sees them as it did
            if read(int(row["epoch"])):
                trial.report(float(row["loss"]), step=int(row["epoch"]))

        def forward(epoch: int, loss: float, metrics: dict[str, float], checkpoint: Any) -> None:
            nonlocal saved
            if checkpoint is not None and kept is not None:
                kept.offer(epoch, checkpoint, reporter.history)
            if time.monotonic() - saved > HISTORY_SECONDS:  # a long trial shows its progress
                trial.set_user_attr("history", reporter.history)
                saved = time.monotonic()
            if not read(epoch):
                return
            trial.report(loss, step=epoch)
            # Stopping after the last epoch saves nothing: the trial completes.
            if epoch < last_epoch and not exempt and trial.should_prune():
                raise TrialStopped(f"pruned at epoch {epoch}")

        reporter = ValidatingReporter(
            forward, max_epochs=last_epoch, restored=restored, history=history, tags=self._tags
        )
        try:
            self._train(config, reporter)
        except TrialStopped as stop:
            trial.set_user_attr("history", reporter.history)
            raise optuna.TrialPruned(str(stop)) from None
        except TrialDiverged as diverged:
            self._fail(trial, reporter, str(diverged))
        except KeyboardInterrupt:
            self._interrupted(trial, reporter, kept)
            raise
        except optuna.exceptions.UpdateFinishedTrialError:
            raise  # another process failed this trial: abandon it (see run_worker)
        except Exception as error:  # the user's code failed: the study goes on
            if stopping():  # a Ctrl-C that landed in an import surfaces as another error
                self._interrupted(trial, reporter, kept)
                raise KeyboardInterrupt from error
            trial.set_user_attr("traceback", traceback.format_exc())
            self._fail(trial, reporter, f"{type(error).__name__}: {error}")
        trial.set_user_attr("history", reporter.history)
        if not reporter.history:
            self._fail(trial, reporter, "the trial reported no epoch")
        return float(reporter.history[-1]["loss"])

    def _interrupted(
        self,
        trial: Any,
        reporter: ValidatingReporter,
        kept: _optuna_checkpoints.TrialCheckpoints | None,
    ) -> None:
        """Store what an interrupted trial did: its retry continues after its last report."""
        trial.set_user_attr("history", reporter.history)
        if kept is not None:
            with clean_up():
                kept.flush()

    def _fail(self, trial: Any, reporter: ValidatingReporter, reason: str) -> None:
        trial.set_user_attr("history", reporter.history)
        trial.set_user_attr("fail_reason", reason)
        raise _TrialFailed(reason)

    def _is_surplus(self, trial: Any) -> bool:
        trials = trial.study.get_trials(deepcopy=False)
        earlier = sum(1 for t in trials if t.number < trial.number and is_original(t))
        return earlier >= self._experiment.n_trials
