"""``--address ray://HOST:PORT``: the job runs on the cluster, the run folder stays here.

Ray Client runs a driver's tasks and actors on the cluster, but not the driver itself, and Tune's
driver (its controller, callbacks and storage) must be there. So greedylr connects with the
current directory as the job's ``working_dir`` (the user's task module travels with it, as with
``ray job submit --working-dir .``), ships the run folder's Tune experiment to an actor on the
cluster, which runs the job there as an ``--address auto`` driver
(:mod:`greedylr.backends._ray_client_job`), and brings back its output lines and the files that
changed every :data:`POLL_SECONDS`. The run folder here is always the newest copy: Ctrl-C here
stops the job there and brings the experiment back; a rerun after a lost connection or a killed
client ships it again and continues it (the cluster ends the job of a client gone for longer
than Ray Client's reconnect grace period, 30 s by default).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import signal
import socket
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING
from typing import Any

from greedylr import _signals
from greedylr.backends._backend import Census
from greedylr.backends._contract import TaskFailedError
from greedylr.backends._ray_client_job import CLIENT_FOLDER
from greedylr.backends._ray_client_job import OUTCOME
from greedylr.backends._ray_client_job import STATE
from greedylr.backends._ray_client_job import JobRunner
from greedylr.backends._ray_client_job import pack
from greedylr.backends._ray_client_job import run_folder
from greedylr.backends._ray_client_job import synced_files
from greedylr.backends._ray_client_job import unpack


if TYPE_CHECKING:
    from greedylr.backends._experiment import Experiment
    from greedylr.backends._ray import RayBackend
    from greedylr.backends._results import TrialResult


POLL_SECONDS = 0.5


class ClientJob:
    """One job run on a cluster through Ray Client, for :class:`RayBackend`.

    Args:
        backend: The backend whose experiment, run folder and options the job runs with; its
            session (attached to ``address``) is connected by :meth:`start`.
    """

    def __init__(self, backend: RayBackend) -> None:
        self.backend = backend
        self.out = backend.out
        self._runner: Any = None
        self._census = Census(0, 0, 0, 0, 0, 0, float("inf"), 0)
        self._trials: list[TrialResult] = []
        self._outcome: dict[str, Any] = {}

    def start(self) -> None:
        """Connect, ship the run folder and start the job on the cluster.

        Raises:
            ValueError: The cluster cannot be reached, or the task file lies outside the
                current directory (which is what travels to the cluster).
        """
        import ray

        backend = self.backend
        assert backend._session is not None
        spec = {
            "experiment": self._remote_experiment(backend.experiment).to_json(),
            "workers": backend.workers,
            "resources": dataclasses.asdict(backend.resources),
            "options": {k: v for k, v in backend.options.items() if k != "address"},
            "verbose": backend.verbose,
        }
        backend._session.attach(
            backend.options["address"],
            runtime_env={"working_dir": os.getcwd(), "excludes": self._excludes()},
        )
        (self.out / OUTCOME).unlink(missing_ok=True)  # a former run's
        tune_files = [
            name for name in synced_files(self.out) if not name.startswith(CLIENT_FOLDER)
        ]
        shipped = pack(self.out, tune_files)
        runner = ray.remote(num_cpus=0, max_restarts=0)(JobRunner)
        self._runner = runner.remote(_key(self.out), spec, shipped)
        self._poll(0)  # the actor started (or its error is raised here)

    def run(self) -> None:
        """Relay the job's output and files until it ends; Ctrl-C or SIGTERM stops it there.

        Raises:
            Interrupted: A stop signal here, or the job stopped by one there.
        """
        import ray

        signaled = threading.Event()
        in_main = threading.current_thread() is threading.main_thread()
        previous = {signum: signal.getsignal(signum) for signum in _signals.STOP_SIGNALS}

        def stop(signum: int, frame: FrameType | None) -> None:
            signaled.set()
            _signals.record_stop_signal(signum, frame)  # the third ends the process

        if in_main:
            for signum in _signals.STOP_SIGNALS:
                signal.signal(signum, stop)
        seen, asked_to_stop = 0, False
        try:
            while True:
                if (signaled.is_set() or _signals.stopping()) and not asked_to_stop:
                    ray.get(self._runner.interrupt.remote())
                    asked_to_stop = True
                lines, code = self._poll(seen)
                seen += len(lines)
                self._sync()
                if code is not None:
                    break
                signaled.wait(POLL_SECONDS)
        finally:
            if in_main:
                for signum, handler in previous.items():
                    signal.signal(signum, handler)
        if not (self.out / OUTCOME).exists():  # the job's process was killed
            raise RuntimeError(f"The job on the Ray cluster ended with exit code {code}.")
        self._outcome = json.loads((self.out / OUTCOME).read_text())
        ray.get(self._runner.remove.remote())
        kind = self._outcome["kind"]
        if kind == "interrupted" or signaled.is_set():
            raise _signals.interruption()
        if kind == "bad_input":
            raise ValueError(self._here(self._outcome["message"]))
        if kind == "error":
            raise RuntimeError(f"The job on the Ray cluster failed: {self._outcome['message']}")

    def census(self) -> Census:
        return self._census

    def trials(self) -> list[TrialResult]:
        return list(self._trials)

    def task_failure(self) -> TaskFailedError | None:
        if self._outcome.get("kind") != "task_failed":
            return None
        # The job's own message, naming the run folder here instead of its copy there.
        message = self._here(self._outcome["message"])
        return TaskFailedError(message, details=self._outcome.get("details", ""))

    # Internals ---------------------------------------------------------------------------

    def _poll(self, seen: int) -> tuple[list[str], int | None]:
        import ray

        lines, code = ray.get(self._runner.poll.remote(seen))
        for line in lines:
            print(self._here(line), file=sys.stderr, flush=True)
        return lines, code

    def _sync(self) -> None:
        """Bring the files that changed on the cluster here, and the job's census and trials."""
        import ray

        data, removed = ray.get(self._runner.changes.remote())
        written = unpack(data, self.out)
        for name in removed:
            (self.out / name).unlink(missing_ok=True)
        if STATE in written:
            self._census, self._trials = pickle.loads((self.out / STATE).read_bytes())  # noqa: S301

    def _here(self, text: str) -> str:
        """``text`` with the job's run folder on the cluster named as the one here."""
        return text.replace(str(run_folder(_key(self.out))), str(self.out))

    def _excludes(self) -> list[str]:
        """What of the current directory stays here: the run folder, git's and Python's."""
        excludes = [".git", "__pycache__", CLIENT_FOLDER]
        out, here = self.out.resolve(), Path.cwd().resolve()
        if out.is_relative_to(here):
            excludes.append("/" + out.relative_to(here).as_posix())
        return excludes

    @staticmethod
    def _remote_experiment(experiment: Experiment) -> Experiment:
        """The experiment as the cluster imports it: a task file named relative to the
        current directory (its copy there is the job's working directory).

        Raises:
            ValueError: The task file lies outside the current directory.
        """
        module, _, function = experiment.function.rpartition(":")
        if not module.endswith(".py"):
            return experiment
        file = Path(module).resolve()
        try:
            relative = file.relative_to(Path.cwd().resolve())
        except ValueError:
            raise ValueError(
                f"The task file {module!r} lies outside the current directory, which is what "
                "--address ray:// ships to the cluster; run greedylr from a folder that holds it."
            ) from None
        return dataclasses.replace(experiment, function=f"{relative.as_posix()}:{function}")


def _key(out: Path) -> str:
    """Names the job of run folder ``out`` of this machine on the cluster's nodes."""
    where = f"{socket.gethostname()}:{out.resolve()}"
    return hashlib.sha256(where.encode()).hexdigest()[:16]
