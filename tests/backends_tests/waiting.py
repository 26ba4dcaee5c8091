"""Waiting for what a test's subprocesses do: a condition to hold, a process to end."""

from __future__ import annotations

import subprocess
import time
from typing import Any


WAIT_SECONDS = 120.0


def wait_until(condition: Any, what: str, driver: subprocess.Popen[str] | None = None) -> None:
    """Poll ``condition``; past WAIT_SECONDS, or once ``driver`` ended without it, fail with
    the driver's output."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        ended = driver is not None and driver.poll() is not None
        if ended and condition():  # it came true as the driver ended
            return
        if ended or time.monotonic() > deadline:
            output = ""
            if driver is not None:
                driver.kill()
                output = f"; the driver (exit {driver.wait()}) printed:\n{driver.communicate()[0]}"
            raise AssertionError(f"waited for {what}{output}")
        time.sleep(0.05)


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
