"""Starting Ray for greedylr: a private local instance, or a cluster someone started.

A private instance lives in its own short temporary folder (Ray's unix sockets need paths under
108 characters) and dies with the driver: a watchdog process, started beside it, waits for the
driver to end (a pipe that closes when the driver exits, however it exits) and then ends every
process that still holds a file of that folder (Ray's agents, trial workers), and removes the
folder. ``ray.init()`` without an address would attach to a cluster recorded in Ray's temporary
folder or in ``RAY_ADDRESS``; greedylr passes ``address="local"`` unless told to attach.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from typing import TextIO


RAY_ENVIRONMENT = {
    # Tune warns about checkpointing "too often" when every epoch checkpoints.
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    # greedylr turns SIGINT and SIGTERM into Tune's own graceful stop (see RayBackend.run).
    "TUNE_DISABLE_SIGINT_HANDLER": "1",
    # One trial waits for resources at a time: trials start in the order the searcher sampled
    # them (the untuned defaults first), and the searcher samples as late as it can.
    "TUNE_MAX_PENDING_TRIALS_PG": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
}
"""Set while greedylr runs Ray; the processes of a private instance inherit them."""
QUIET_ENVIRONMENT = {
    "RAY_AIR_NEW_OUTPUT": "0",  # Tune's new output prints its table box even at verbose=0
    "RAY_BACKEND_LOG_LEVEL": "error",
}
"""Set as well unless ``verbose``."""


def ray_environment(*, verbose: bool, private: bool) -> dict[str, str]:
    """The environment variables greedylr sets while it runs Ray.

    A private instance without a token configured gets a fresh one in the environment: token
    authentication stays on, and Ray writes no ``~/.ray/auth_token``.
    """
    values = dict(RAY_ENVIRONMENT)
    if not verbose:
        values.update(QUIET_ENVIRONMENT)
    configured = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
    if private and not any(name in os.environ for name in configured):
        values["RAY_AUTH_TOKEN"] = secrets.token_hex(32)  # ray.init turns token mode on
    return values


QUIET_LOGGERS = ("ray", "ray.tune", "ray.train", "ray.air", "ray.data", "optuna")


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the block, then put back what was there."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class Quiet:
    """Hide Ray's (and OptunaSearch's) log lines and warnings unless ``verbose``."""

    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose
        self._levels: dict[str, int] = {}
        self._warnings: Any = None
        self._printer: Any = None

    def __enter__(self) -> Quiet:
        if not self.verbose:
            for name in QUIET_LOGGERS:
                logger = logging.getLogger(name)
                self._levels[name] = logger.level
                logger.setLevel(logging.CRITICAL)
            self._warnings = warnings.catch_warnings()
            self._warnings.__enter__()
            warnings.simplefilter("ignore")
            self._hide_raylet_messages()
        return self

    def _hide_raylet_messages(self) -> None:
        """The driver prints the raylet's messages ("A worker died ...") with no switch to
        turn them off: drop them while the run is quiet (they are in the session's logs)."""
        import ray._private.worker as ray_worker

        # A private function of Ray 2.60 (it prints what the driver receives from its
        # processes); a Ray without it only shows these lines again: nothing else breaks.
        printer = getattr(ray_worker, "print_to_stdstream", None)
        if not callable(printer):
            return
        self._printer = printer

        def print_but_raylet(data: dict[str, Any], ignore_prefix: bool) -> None:
            if data.get("pid") != "raylet":
                printer(data, ignore_prefix)

        ray_worker.print_to_stdstream = print_but_raylet

    def hide_optuna(self) -> None:
        """Import Optuna and hide its lines (it sets its logger's level when imported)."""
        if not self.verbose:
            import optuna  # noqa: F401 - its import sets the level hidden here

            logger = logging.getLogger("optuna")
            self._levels.setdefault("optuna", logger.level)
            logger.setLevel(logging.CRITICAL)

    @contextmanager
    def stderr_to(self, log: Path) -> Iterator[None]:
        """Send the process's stderr (file descriptor 2: Ray's C++ lines too) to ``log``."""
        if self.verbose:
            yield
            return
        sys.stderr.flush()
        saved = os.dup(2)
        with open(log, "ab") as target:
            os.dup2(target.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)

    def __exit__(self, *exc: object) -> None:
        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)
        self._levels.clear()
        if self._printer is not None:
            import ray._private.worker as ray_worker

            ray_worker.print_to_stdstream = self._printer
            self._printer = None
        if self._warnings is not None:
            self._warnings.__exit__(None, None, None)
            self._warnings = None


class Session:
    """Ray for one run: :meth:`start` a private instance or :meth:`attach` to a cluster.

    Args:
        quiet: What hides Ray's output (nothing when verbose).
    """

    def __init__(self, *, quiet: Quiet) -> None:
        self.quiet = quiet
        self.verbose = quiet.verbose
        self.private = False
        self.initialized = False
        self.temp_dir: Path | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._pipe: TextIO | None = None

    def start(self, *, num_cpus: int, num_gpus: int | None = None) -> None:
        """Start a private Ray instance on this machine (never attach to another)."""

        _refuse_a_second_init()
        self.temp_dir = Path(tempfile.mkdtemp(prefix="greedylr-ray-", dir="/tmp"))
        self._start_watchdog(self.temp_dir)
        self.private = True
        with self.quiet.stderr_to(self.temp_dir / "greedylr-init.log"):
            self._init_private(num_cpus, num_gpus)

    def _init_private(self, num_cpus: int, num_gpus: int | None) -> None:
        import ray

        assert self.temp_dir is not None
        ray.init(
            address="local",
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            include_dashboard=False,
            _temp_dir=str(self.temp_dir),
            log_to_driver=self.verbose,
            logging_level=logging.INFO if self.verbose else logging.ERROR,
            configure_logging=self.verbose,
        )
        self.initialized = True

    def attach(self, address: str, *, runtime_env: dict[str, Any] | None = None) -> None:
        """Attach to the cluster at ``address`` (``auto``, ``HOST:PORT``, or ``ray://HOST:PORT``
        through Ray Client) with the job's ``runtime_env``.

        Raises:
            ValueError: The cluster cannot be reached.
        """
        import ray

        _refuse_a_second_init()
        log = Path(tempfile.gettempdir()) / f"greedylr-ray-attach-{os.getpid()}.log"
        try:
            with self.quiet.stderr_to(log):
                ray.init(
                    address=address,
                    runtime_env=runtime_env,
                    log_to_driver=self.verbose,
                    logging_level=logging.INFO if self.verbose else logging.ERROR,
                    configure_logging=self.verbose,
                )
            self.initialized = True
        except (ConnectionError, RuntimeError, ValueError) as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            raise ValueError(
                f"Cannot attach to the Ray cluster at address={address!r}: {first}"
            ) from None
        finally:
            log.unlink(missing_ok=True)

    def close(self) -> None:
        """Shut Ray down; for a private instance, end what is left of it and its folder."""
        import ray

        if self.initialized and ray.is_initialized():
            ray.shutdown()
        self.initialized = False
        if self._pipe is not None:
            self._pipe.close()  # the watchdog ends the leftovers and removes the folder
            self._pipe = None
        if self._watchdog is not None:
            try:
                self._watchdog.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._watchdog.kill()
            self._watchdog = None
        if self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
            self.temp_dir = None

    def _start_watchdog(self, folder: Path) -> None:
        self._watchdog = subprocess.Popen(  # noqa: S603 - our own module, no shell
            # Run as a script: importing greedylr (and torch) would only slow it down.
            [sys.executable, str(Path(__file__).with_name("_ray_watchdog.py")), str(folder)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL if not self.verbose else None,
            start_new_session=True,  # a Ctrl-C in the terminal is for the driver only
            close_fds=True,
        )
        assert self._watchdog.stdin is not None
        self._pipe = self._watchdog.stdin  # type: ignore[assignment]
        os.set_inheritable(self._watchdog.stdin.fileno(), False)  # Ray's processes must not
        # hold the write end, or the pipe would outlive the driver


def ray_version() -> str:
    """The installed Ray's version (for the errors that name it)."""
    import ray

    return str(ray.__version__)


def _refuse_a_second_init() -> None:
    import ray

    if ray.is_initialized():
        raise ValueError(
            "Ray is already running in this process (ray.init was called); greedylr starts its "
            "own Ray instance, or attaches with `address`: call ray.shutdown() first."
        )
