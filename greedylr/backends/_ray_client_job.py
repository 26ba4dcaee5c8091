"""The cluster side of ``--address ray://HOST:PORT``: the job, run next to the cluster's Tune.

Tune's driver (its controller, callbacks and storage) must run on the cluster; through Ray Client
only tasks and actors do. So :class:`JobRunner`, an actor the client starts (with the client's
current directory as its ``working_dir``, like ``ray job submit --working-dir .``), unpacks the
client's copy of the run folder, runs ``python -m greedylr.backends._ray_client_job`` on it (an
ordinary ``--address auto`` driver whose trials get the same ``working_dir``) and hands the
client its output lines and the files that changed. The driver writes :data:`STATE` (the census
and the trials) and :data:`OUTCOME` (how it ended) into :data:`CLIENT_FOLDER`.
"""

from __future__ import annotations

import ctypes
import io
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
from pathlib import Path
from typing import Any


CLIENT_FOLDER = ".ray-client"
"""In the run folder: the driver's state and outcome, for the client."""
SYNCED = ("ray", CLIENT_FOLDER)
"""The parts of the run folder that travel between the client and the cluster (Tune's
experiment, the state); the client writes the results files itself from the trials."""
STATE = f"{CLIENT_FOLDER}/state.pkl"
OUTCOME = f"{CLIENT_FOLDER}/outcome.json"
SPEC = f"{CLIENT_FOLDER}/spec.json"
STATE_EVERY = 0.5
"""Seconds between two looks of the driver at its census."""
_PR_SET_PDEATHSIG = 1


def pack(root: Path, names: list[str]) -> bytes:
    """A tar of the files ``names`` (relative to ``root``)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name in names:
            archive.add(root / name, arcname=name, recursive=False)
    return buffer.getvalue()


def unpack(data: bytes, root: Path) -> list[str]:
    """Write the files of the tar ``data`` under ``root``, each replaced at once (a reader never
    sees half a file); return their names."""
    if not data:
        return []
    names = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as archive:
        for member in archive.getmembers():
            if not member.isfile():
                continue
            source = archive.extractfile(member)
            assert source is not None
            target = root / member.name
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.partial")
            partial.write_bytes(source.read())
            os.replace(partial, target)
            names.append(member.name)
    return names


def synced_files(root: Path) -> dict[str, tuple[int, int]]:
    """The files of the synced parts of ``root``: relative name -> (size, mtime in ns)."""
    files: dict[str, tuple[int, int]] = {}
    for part in SYNCED:
        for path in (root / part).rglob("*"):
            try:
                stat = path.stat()
            except OSError:  # removed meanwhile
                continue
            if path.is_file() and not path.name.endswith(".partial"):
                files[path.relative_to(root).as_posix()] = (stat.st_size, stat.st_mtime_ns)
    return files


def run_folder(key: str) -> Path:
    """Where the job of the client's run folder ``key`` runs on a node."""
    return Path(tempfile.gettempdir()) / "greedylr-ray-client" / key


class JobRunner:
    """The Ray actor that runs one client's job on the cluster.

    Args:
        key: Names the run folder on the node (the client's host and run folder).
        spec: What :func:`main` runs (the experiment, workers, resources, options).
        shipped: The synced parts of the client's run folder, as a tar.
    """

    def __init__(self, key: str, spec: dict[str, Any], shipped: bytes) -> None:
        import ray

        self.out = run_folder(key)
        shutil.rmtree(self.out, ignore_errors=True)  # the client's copy is the newest
        (self.out / CLIENT_FOLDER).mkdir(parents=True)
        unpack(shipped, self.out)
        (self.out / SPEC).write_text(json.dumps(spec))
        self._sent = synced_files(self.out)  # the client has these already
        context = ray.get_runtime_context()
        environment = {
            **os.environ,
            # An ordinary driver of the cluster whose trials get this actor's working_dir, as
            # `ray job submit` does for its entry point.
            "RAY_JOB_CONFIG_JSON_ENV_VAR": json.dumps(
                {"runtime_env": context.runtime_env, "metadata": {}}
            ),
            "RAY_ADDRESS": context.gcs_address,
            "PYTHONUNBUFFERED": "1",
        }
        for name in ("RAY_JOB_ID", "RAY_RAYLET_PID", "RAY_CLIENT_MODE"):
            environment.pop(name, None)
        self._process = subprocess.Popen(  # noqa: S603 - our own module, no shell
            [sys.executable, "-m", "greedylr.backends._ray_client_job", str(self.out)],
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=_end_with_parent,  # noqa: PLW1509 - only prctl, async-signal-safe
        )
        self._lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._lines.append(line.rstrip("\n"))

    def poll(self, seen: int) -> tuple[list[str], int | None]:
        """The output lines after the first ``seen``, and the exit code once it ended."""
        self._reader.join(timeout=0 if self._process.poll() is None else 10)
        ended = self._process.poll() if not self._reader.is_alive() else None
        return self._lines[seen:], ended

    def changes(self) -> tuple[bytes, list[str]]:
        """The synced files that changed since the last call (a tar), and those removed."""
        now = synced_files(self.out)
        changed = [name for name, signature in now.items() if self._sent.get(name) != signature]
        removed = [name for name in self._sent if name not in now]
        data = pack(self.out, changed)
        self._sent = now
        return data, removed

    def interrupt(self) -> None:
        """Stop the job as Ctrl-C would: the running trials are saved for a rerun."""
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)

    def remove(self) -> None:
        """Remove the run folder on the node (the client has everything)."""
        shutil.rmtree(self.out, ignore_errors=True)


def _end_with_parent() -> None:
    """In the job's process: receive SIGTERM when the actor dies (a killed or vanished client
    makes Ray end its actor), so that the job stops as after Ctrl-C."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _write_atomic(path: Path, data: bytes) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def main(out: Path) -> int:
    """Run the job in ``out`` (``SPEC``) on the cluster this process belongs to.

    Returns:
        The exit code: 0 done, 130 stopped by a signal, 1 otherwise (:data:`OUTCOME` says why).
    """
    from greedylr._signals import stop_on_signals
    from greedylr._tune import _run
    from greedylr.backends._backend import Resources
    from greedylr.backends._contract import TaskFailedError
    from greedylr.backends._experiment import Experiment
    from greedylr.backends._ray import RayBackend

    # A Ray worker (the actor) blocks and ignores signals that its child inherits.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    spec = json.loads((out / SPEC).read_text())
    engine = RayBackend(
        Experiment.from_json(spec["experiment"]),
        out,
        workers=spec["workers"],
        resources=Resources(**spec["resources"]),
        options={**spec["options"], "address": "auto"},
        verbose=spec["verbose"],
    )
    running = threading.Event()
    last: list[Any] = [None]

    def write_state() -> None:
        if engine._recorder is None:  # not prepared yet
            return
        census = engine.census()
        if census != last[0]:
            _write_atomic(out / STATE, pickle.dumps((census, engine.trials())))
            last[0] = census

    def keep_state() -> None:
        while not running.wait(STATE_EVERY):
            try:
                write_state()
            except Exception:  # noqa: S112 - a look at a moving study; the next one counts
                continue

    watcher = threading.Thread(target=keep_state, daemon=True)
    watcher.start()
    outcome: dict[str, Any] = {"kind": "done"}
    code = 0
    with stop_on_signals():
        try:
            _run(engine, out, progress=False)
        except KeyboardInterrupt:
            outcome, code = {"kind": "interrupted"}, 130
        except TaskFailedError as error:
            outcome, code = {"kind": "task_failed", "message": str(error)}, 1
            outcome["details"] = error.details
        except ValueError as error:
            outcome, code = {"kind": "bad_input", "message": str(error)}, 1
        except Exception as error:  # shown on the client with the job's output
            outcome, code = {"kind": "error", "message": f"{type(error).__name__}: {error}"}, 1
        finally:
            running.set()
            watcher.join()
            last[0] = None
            write_state()
            _write_atomic(out / OUTCOME, json.dumps(outcome).encode())
    return code


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
