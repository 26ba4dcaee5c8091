"""Tiny trial functions for the backend tests: deterministic losses, failures, NaN, kills.

Some let the test control their progress: they wait for a file the test writes, or for enough
workers to arrive, and give up with an error after ``WAIT_SECONDS`` so no process hangs.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any


def _loss(x: float, epoch: int) -> float:
    return ((x - 0.3) ** 2 + 0.01) * (1.0 + 2.0 / epoch)


def smooth(config: dict[str, Any], reporter: Any) -> None:
    """Loss ((x - 0.3)^2 + 0.01) * (1 + 2 / epoch): decreasing in the epoch, best at x = 0.3."""
    for epoch in range(1, config["epochs"] + 1):
        if config.get("sleep"):
            time.sleep(config["sleep"])
        reporter.report(epoch=epoch, loss=_loss(config["x"], epoch), lr=config["x"])


def troubled(config: dict[str, Any], reporter: Any) -> None:
    """Like ``smooth``, but x > 0.8 raises at epoch 2 and x < 0.1 reports NaN at epoch 3."""
    for epoch in range(1, config["epochs"] + 1):
        if config["x"] > 0.8 and epoch == 2:
            raise RuntimeError(f"boom at x={config['x']:.3f}")
        loss = float("nan") if config["x"] < 0.1 and epoch == 3 else _loss(config["x"], epoch)
        reporter.report(epoch=epoch, loss=loss)


def killer(config: dict[str, Any], reporter: Any) -> None:
    """Like ``smooth``, but the first trial with x > 0.5 SIGKILLs its own worker at epoch 2."""
    marker = Path(config["marker"])
    for epoch in range(1, config["epochs"] + 1):
        if config["x"] > 0.5 and epoch == 2 and not marker.exists():
            marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        if config.get("sleep"):
            time.sleep(config["sleep"])
        reporter.report(epoch=epoch, loss=_loss(config["x"], epoch))


def threads(config: dict[str, Any], reporter: Any) -> None:
    """Reports the torch threads the trial runs with."""
    import torch

    for epoch in range(1, config["epochs"] + 1):
        reporter.report(
            epoch=epoch, loss=_loss(config["x"], epoch), threads=torch.get_num_threads()
        )


def first_config_dies(config: dict[str, Any], reporter: Any) -> None:
    """Appends its x to the file ``config["runs_file"]`` at each start; then, like ``smooth``.

    The config that started first SIGKILLs its worker at every run, once two other configs have
    started: the other worker, which runs one trial at a time, has then completed one, so the
    study is not taken for a broken task (its first trials all failing).
    """
    runs_file, me = Path(config["runs_file"]), repr(config["x"])
    with runs_file.open("a") as runs:  # one short append: whole lines from any process
        runs.write(f"{me}\n")

    def started() -> list[str]:
        return runs_file.read_text().splitlines()

    if started()[0] == me:
        _wait_until(lambda: len(set(started()) - {me}) >= 2, "two other configs to start")
        os.kill(os.getpid(), signal.SIGKILL)
    for epoch in range(1, config["epochs"] + 1):
        reporter.report(epoch=epoch, loss=_loss(config["x"], epoch))


WAIT_SECONDS = 120


def _wait_until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"waited {WAIT_SECONDS} s for {what}")
        time.sleep(0.05)


def gated(config: dict[str, Any], reporter: Any) -> None:
    """Like ``smooth``, but after epoch 2 it waits for the file ``config["gate"]``.

    While waiting, the file ``config["waiting"]/PID`` tells the test this worker is held there.
    """
    gate, waiting = Path(config["gate"]), Path(config["waiting"])
    for epoch in range(1, config["epochs"] + 1):
        if epoch == 3 and not gate.exists():
            waiting.mkdir(exist_ok=True)
            (waiting / str(os.getpid())).touch()
            _wait_until(gate.exists, f"the gate {gate}")
        reporter.report(epoch=epoch, loss=_loss(config["x"], epoch))


def rendezvous(config: dict[str, Any], reporter: Any) -> None:
    """Like ``smooth``, once ``config["quorum"]`` distinct workers have started a trial.

    Each worker leaves its pid in the folder ``config["arrived"]``.
    """
    arrived = Path(config["arrived"])
    arrived.mkdir(exist_ok=True)
    (arrived / str(os.getpid())).touch()
    quorum = config["quorum"]
    _wait_until(lambda: len(list(arrived.iterdir())) >= quorum, f"{quorum} workers")
    for epoch in range(1, config["epochs"] + 1):
        reporter.report(epoch=epoch, loss=_loss(config["x"], epoch))
