"""``python _ray_watchdog.py FOLDER``: end what a private Ray instance leaves behind.

Started by the driver beside the private Ray instance whose temporary folder is ``FOLDER``, with
a pipe as its stdin. When the driver ends (normally, or killed with SIGKILL), the pipe closes;
the watchdog then ends every process but the driver that still has a file open under ``FOLDER``
(or its working directory there) -- Ray's agents and trial workers, which would otherwise
outlive a killed driver -- with SIGTERM, then SIGKILL, and removes the folder. It touches no
other process. It runs as a script, on the standard library only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time
from pathlib import Path


GRACE_SECONDS = 3.0


def holders(folder: Path, *, spare: int) -> set[int]:
    """The processes with a file, or their cwd, under ``folder``, but this one and ``spare``."""
    prefix = str(folder.resolve()) + os.sep
    found = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) in (os.getpid(), spare):
            continue
        try:
            links = [os.readlink(f"/proc/{entry.name}/cwd")]
            links += [
                os.readlink(f"/proc/{entry.name}/fd/{fd}")
                for fd in os.listdir(f"/proc/{entry.name}/fd")
            ]
        except OSError:  # gone, or not ours to read
            continue
        if any(link.startswith(prefix) for link in links):
            found.add(int(entry.name))
    return found


def end_processes(folder: Path, *, spare: int) -> None:
    """SIGTERM every holder of ``folder`` but ``spare`` (the driver); SIGKILL those left."""
    pids = holders(folder, spare=spare)
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS
    while pids and time.monotonic() < deadline:
        time.sleep(0.1)
        pids = {pid for pid in pids if _alive(pid)}
    for pid in holders(folder, spare=spare) | pids:
        _signal(pid, signal.SIGKILL)


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signum)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def main(argv: list[str]) -> int:
    """Wait for stdin to close, then clean up the folder ``argv[0]``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    folder, driver = Path(argv[0]), os.getppid()
    while sys.stdin.buffer.read(4096):  # until the driver's end of the pipe is closed
        pass
    end_processes(folder, spare=driver)
    shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
