"""The Syne Tune backend: a ``syne_tune.Tuner`` running each trial as a process on this machine.

Syne Tune's experiment folder is the run folder's ``syne-tune/`` (``SYNETUNE_FOLDER`` points
there while the backend runs: nothing goes to ``~/syne-tune``): the pickled Tuner
(``tuner.dill``, saved every second while results come in), Syne Tune's own
``results.csv.zip``, and one folder per trial (its ``std.out``, ``std.err``, config and
checkpoints). Its ``LocalBackend`` starts :mod:`greedylr.backends._syne_tune_trial` for each
trial. Rerunning the same command after a crash, Ctrl-C or SIGTERM loads the Tuner and runs
again the trials that were running, from their last checkpoint. The searchers and rules are in
:mod:`greedylr.backends._syne_tune_search`, the trials' record in
:mod:`greedylr.backends._syne_tune_recorder`.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from greedylr import _signals
from greedylr.backends._backend import Backend
from greedylr.backends._backend import Census
from greedylr.backends._backend import note
from greedylr.backends._backend import task_failed_error
from greedylr.backends._contract import TaskFailedError
from greedylr.backends._experiment import Experiment
from greedylr.backends._gpus import gpu_slots
from greedylr.backends._gpus import listed_gpus
from greedylr.backends._registry import BACKENDS
from greedylr.backends._results import TrialResult
from greedylr.backends._results import read_experiment


EXPERIMENT_FOLDER = "syne-tune"
"""Syne Tune's experiment folder inside the run folder (its ``tuner_name``)."""
SPEC_FILE = "trial.json"
"""What every trial process of this run needs (the entry point's first argument)."""
SLEEP_SECONDS = 0.1  # the Tuner's poll when every worker is busy (Syne Tune's default: 5 s)
SAVE_SECONDS = 1.0  # tuner.dill at most this often while results come in (and on each change)
_ENVIRONMENT = ("SYNETUNE_FOLDER", "OMP_NUM_THREADS")


def visible_gpus() -> tuple[list[str], str]:
    """The GPUs trials may be given, and where that list came from.

    ``CUDA_VISIBLE_DEVICES`` when it is set; else the GPUs ``nvidia-smi --list-gpus`` lists,
    as Syne Tune counts them (without its ``std.out`` file in the working directory).
    """
    listed = listed_gpus()
    if listed is not None:
        return listed
    try:
        listing = subprocess.run(
            ["nvidia-smi", "--list-gpus"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return [], "nvidia-smi: not found"
    lines = listing.stdout.splitlines() if listing.returncode == 0 else []
    count = sum(1 for line in lines if line.strip())
    return [str(index) for index in range(count)], f"nvidia-smi --list-gpus: {count}"


def _trial_processes(entry_point: Path, slots: list[str]) -> Any:
    """Syne Tune's ``LocalBackend`` with greedylr's GPU placement (see :class:`SlotBackend`)."""
    from syne_tune.backend import LocalBackend

    class SlotBackend(LocalBackend):
        """Each running trial gets a slot of its own (``CUDA_VISIBLE_DEVICES``), never shared:
        Syne Tune's own rotation does no accounting and may put two trials on one GPU."""

        def __init__(self, entry_point: Path, slots: list[str]) -> None:
            super().__init__(
                entry_point=str(entry_point),
                binary=f"{sys.executable} -m greedylr.backends._syne_tune_trial",
                pass_args_as_json=True,
                rotate_gpus=False,
            )
            self.slots = slots
            self.slot_of: dict[int, int] = {}
            self.devices: dict[int, str] = {}

        def _allocate_gpu(self, trial_id: int, env: dict[str, Any]) -> None:
            taken = set(self.slot_of.values())
            free = [index for index in range(len(self.slots)) if index not in taken]
            if not free:
                raise RuntimeError(f"No free GPU slot for trial {trial_id}: {self.slot_of}")
            self.slot_of[trial_id] = free[0]
            self.devices[trial_id] = self.slots[free[0]]
            env["CUDA_VISIBLE_DEVICES"] = self.slots[free[0]]

        def _deallocate_gpu(self, trial_id: int) -> None:
            self.slot_of.pop(trial_id, None)

        def devices_of(self, trial_id: int) -> str:
            return self.devices.get(trial_id, "")

        def exit_code(self, trial_id: int) -> int:
            code = self.trial_subprocess[trial_id].poll()
            return 0 if code is None else int(code)

    return SlotBackend(entry_point, slots)


class SyneTuneBackend(Backend):
    """Syne Tune: a Tuner on this machine, one process per trial.

    Options: ``asha_kind`` (``stopping``, the default: asha and hyperband stop a trial at a
    rung; ``promotion``: it pauses there, and the best continue from their checkpoint).
    """

    spec = BACKENDS["syne-tune"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tuner: Any = None
        self._recorder: Any = None
        self._saved_environment: dict[str, str | None] = {}
        self._log_level: int | None = None

    # Backend -----------------------------------------------------------------------------

    def prepare(self) -> Experiment:
        for path, what in ((Path(sys.executable), "Python"), (self.path, "run folder")):
            if " " in str(path):  # Syne Tune splits its trial command line on spaces
                raise ValueError(
                    f"The Syne Tune backend cannot run with a space in the path of its {what}, "
                    f"but got {str(path)!r}."
                )
        self.experiment = self._stored_job()
        slots = self._gpu_slots()
        if len(slots) < self.workers:
            note(
                f"{len(slots)} of {self.workers} workers: each trial takes "
                f"{self.resources.gpus_per_trial:g} of the GPUs visible"
            )
            self.workers = len(slots)
        self._enter_environment()
        from greedylr.backends._syne_tune_search import make_rule

        make_rule(  # a searcher or rule this experiment cannot have fails before anything
            self.experiment, asha_kind=self.asha_kind, defaults=None
        )
        self.path.mkdir(parents=True, exist_ok=True)
        spec = {
            "function": self.experiment.function,
            "max_epochs": self.experiment.max_epochs,
            "threads": self.threads(),
            "tuner_pid": os.getpid(),
            "needs_checkpoints": self._needs_checkpoints(),
        }
        (self.path / SPEC_FILE).write_text(json.dumps(spec))
        if (self.path / "tuner.dill").is_file():
            self._tuner = self._restore(slots)
        else:
            self._tuner = self._create(slots)
        return self.experiment

    def run(self, lock: threading.Lock) -> None:
        recorder = self._recorder
        previous = {signum: signal.getsignal(signum) for signum in _signals.STOP_SIGNALS}

        def stop(signum: int, frame: FrameType | None) -> None:
            _signals.record_stop_signal(signum, frame)  # the third ends the process
            recorder.stop_requested = "signal"  # the Tuner stops at its next step

        in_main = threading.current_thread() is threading.main_thread()
        if in_main:
            for signum in _signals.STOP_SIGNALS:
                signal.signal(signum, stop)
        quiet = contextlib.redirect_stdout(io.StringIO()) if not self.verbose else None
        try:
            with quiet or contextlib.nullcontext():
                while True:
                    self._tuner.run()
                    if recorder.stop_requested or not self._tuner.scheduler.has_work():
                        break
        finally:
            if in_main:
                for signum, handler in previous.items():
                    signal.signal(signum, handler)
        if recorder.stop_requested == "signal" or _signals.stopping():
            raise _signals.interruption()
        if recorder.stop_requested is None:
            recorder.end_paused()

    def trials(self) -> list[TrialResult]:
        if self._recorder is None:
            return []
        results: list[TrialResult] = self._recorder.results()
        return results

    def census(self) -> Census:
        if self._recorder is None:
            return super().census()
        census: Census = self._recorder.census()
        return census

    def settings(self) -> dict[str, Any]:
        return {
            **super().settings(),
            "asha_kind": self.asha_kind,
            "syne_tune_experiment": str(self.path),
        }

    def task_failure(self) -> TaskFailedError | None:
        failed = self._recorder.task_failed() if self._recorder is not None else None
        if failed is None:
            return None
        return task_failed_error(self.out, failed.reason, failed.error)

    def close(self) -> None:
        if self._log_level is not None:
            logging.getLogger("syne_tune").setLevel(self._log_level)
            self._log_level = None
        for name, value in self._saved_environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_environment = {}

    # Internals ---------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """Syne Tune's experiment folder (``OUT/syne-tune``)."""
        return self.out.resolve() / EXPERIMENT_FOLDER

    @property
    def asha_kind(self) -> str:
        return str(self.options.get("asha_kind", "stopping"))

    def _needs_checkpoints(self) -> str:
        if self.experiment.early_stopping == "pbt":
            return "early_stopping='pbt'"
        if self.asha_kind == "promotion":
            return "asha_kind='promotion'"
        return ""

    def _gpu_slots(self) -> list[str]:
        gpus = self.resources.gpus_per_trial
        if not gpus:
            return [""] * self.workers
        visible, source = visible_gpus()
        return gpu_slots(visible, self.workers, gpus, source=source, backend="syne-tune")

    def _enter_environment(self) -> None:
        """Point Syne Tune at the run folder; keep its import from setting OMP_NUM_THREADS
        in this process; hide its log lines unless verbose."""
        self._saved_environment = {name: os.environ.get(name) for name in _ENVIRONMENT}
        import syne_tune.backend.local_backend  # noqa: F401 - it sets OMP_NUM_THREADS once

        if self._saved_environment["OMP_NUM_THREADS"] is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        os.environ["SYNETUNE_FOLDER"] = str(self.out.resolve())
        syne_logger = logging.getLogger("syne_tune")
        self._log_level = syne_logger.level
        if not self.verbose:
            syne_logger.setLevel(logging.ERROR)

    def _stored_job(self) -> Experiment:
        """The asked experiment, or the stored one when it asks for more trials."""
        stored = read_experiment(self.out)
        if stored is not None and stored.n_trials > self.experiment.n_trials:
            return stored
        return self.experiment

    def _create(self, slots: list[str]) -> Any:
        from syne_tune.results_callback import StoreResultsCallback

        from greedylr.backends._syne_tune_recorder import SavedTuner
        from greedylr.backends._syne_tune_recorder import TrialRecorder
        from greedylr.backends._syne_tune_search import GreedyLRScheduler
        from greedylr.backends._syne_tune_search import make_rule

        defaults = self.experiment.default_config() or None
        rule = make_rule(self.experiment, asha_kind=self.asha_kind, defaults=defaults)
        scheduler = GreedyLRScheduler(
            rule,
            n_trials=self.experiment.n_trials,
            max_epochs=self.experiment.max_epochs,
            defaults=defaults,
        )
        self._recorder = TrialRecorder(
            scheduler, max_epochs=self.experiment.max_epochs, node=os.uname().nodename
        )
        return SavedTuner(
            trial_backend=_trial_processes(self.path / SPEC_FILE, slots),
            scheduler=scheduler,
            stop_criterion=self._recorder.should_stop,
            n_workers=self.workers,
            sleep_time=SLEEP_SECONDS,
            results_update_interval=SAVE_SECONDS,  # the recorder saves on each change too
            print_update_interval=3600.0,
            max_failures=2**31,  # a failed trial is a result; the recorder stops a broken task
            tuner_name=EXPERIMENT_FOLDER,
            suffix_tuner_name=False,
            callbacks=[self._recorder, StoreResultsCallback()],
        )

    def _restore(self, slots: list[str]) -> Any:
        """Load the Tuner a killed or stopped run left; its running trials run again."""
        from syne_tune import Tuner

        from greedylr.backends._syne_tune_recorder import TrialRecorder

        tuner = Tuner.load(str(self.path))
        self._recorder = next(c for c in tuner.callbacks if isinstance(c, TrialRecorder))
        self._recorder.backend = tuner.trial_backend
        known = set(tuner.trial_backend.trial_ids)
        for folder in self.path.iterdir():  # trials started after the Tuner was last saved
            if folder.name.isdigit() and int(folder.name) not in known:
                shutil.rmtree(folder, ignore_errors=True)
        self._recorder.interrupt_running()
        tuner.n_workers = self.workers
        tuner.trial_backend.slots = slots
        tuner.trial_backend.slot_of = {}
        tuner.scheduler.n_trials = self.experiment.n_trials
        tuner.stop_criterion = self._recorder.should_stop
        census = self._recorder.census()
        note(
            f"continuing the Syne Tune experiment in {str(self.path)!r}: {census.done} of "
            f"{self.experiment.n_trials} trials done"
        )
        return tuner
