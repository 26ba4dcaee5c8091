"""Trial functions for the signal and failing-study tests.

The tests steer them through files: a task touches ``config["marker_dir"]/<event>`` when it
reaches a point the test waits for, and waits for a file the test (or another trial) writes.
Every wait gives up after ``WAIT_SECONDS`` so that no process hangs if a test fails.
"""

from __future__ import annotations

import math
import os
import signal
import time
from pathlib import Path
from typing import Any


WAIT_SECONDS = 120.0
DEFAULT_FACTOR = 0.95  # GreedyLR's default factor: the defaults trial has it


def _wait_until(condition: Any) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the test never sent the event this trial waits for")
        time.sleep(0.05)


def _loss(config: dict[str, Any], epoch: int) -> float:
    return (config["factor"] - 0.7) ** 2 + 1.0 / epoch


def blocks(config: dict[str, Any], reporter: Any) -> None:
    """Touches ``marker_dir/started-<pid>``, then runs an epoch every 0.05 s until told to stop.

    While ``marker_dir/release`` is absent, each epoch waits; the test interrupts it meanwhile.
    """
    folder = Path(config["marker_dir"])
    (folder / f"started-{os.getpid()}").touch()
    for epoch in range(1, config["epochs"] + 1):
        _wait_until((folder / "release").exists)
        reporter.report(epoch=epoch, loss=_loss(config, epoch))


def set_name_import(config: dict[str, Any], reporter: Any) -> None:
    """Interrupted inside a class's ``__set_name__``, as when Ctrl-C lands in ``import torch``.

    Python 3.11 wraps the ``KeyboardInterrupt`` into ``RuntimeError: Error calling
    __set_name__``; the trial must still end as interrupted, not failed. Once
    ``marker_dir/release`` exists it trains normally.
    """
    folder = Path(config["marker_dir"])
    if not (folder / "release").exists():

        class Slow:
            def __set_name__(self, owner: type, name: str) -> None:
                (folder / f"importing-{os.getpid()}").touch()
                _wait_until((folder / "release").exists)

        type("Holder", (), {"attribute": Slow()})
    for epoch in range(1, config["epochs"] + 1):
        reporter.report(epoch=epoch, loss=_loss(config, epoch))


def defaults_late(config: dict[str, Any], reporter: Any) -> None:
    """Every trial but the defaults one touches ``marker_dir/done-<factor>`` when it ends
    (completed or stopped early).

    The defaults trial waits until ``config["others"]`` trials ended, then reports a bad
    first epoch (loss 10) and the best last epoch: early stopping would stop it at epoch 1.
    """
    folder = Path(config["marker_dir"])
    if config["factor"] == DEFAULT_FACTOR:
        _wait_until(lambda: len(list(folder.glob("done-*"))) >= config["others"])
        for epoch in range(1, config["epochs"] + 1):
            reporter.report(epoch=epoch, loss=10.0 if epoch == 1 else 1.0 / (10 * epoch))
        return
    try:
        for epoch in range(1, config["epochs"] + 1):
            reporter.report(epoch=epoch, loss=_loss(config, epoch))
    finally:
        (folder / f"done-{config['factor']}").touch()


def always_raises(config: dict[str, Any], reporter: Any) -> None:
    """Raises at epoch 2 of every trial, with a message the test looks for, until the test
    "fixes" it by creating ``marker_dir/fixed``."""
    reporter.report(epoch=1, loss=_loss(config, 1))
    if not (Path(config["marker_dir"]) / "fixed").exists():
        raise ZeroDivisionError(f"the task's own bug (factor={config['factor']})")
    for epoch in range(2, config["epochs"] + 1):
        reporter.report(epoch=epoch, loss=_loss(config, epoch))


def reports_nan(config: dict[str, Any], reporter: Any) -> None:
    """Every trial's loss is NaN at epoch 1."""
    reporter.report(epoch=1, loss=math.nan)


def never_reports(config: dict[str, Any], reporter: Any) -> None:
    """Returns without reporting anything."""


def kills_worker(config: dict[str, Any], reporter: Any) -> None:
    """Appends to ``marker_dir/runs``, then SIGKILLs its own process: every trial."""
    with open(Path(config["marker_dir"]) / "runs", "a") as runs:
        runs.write(f"{os.getpid()}\n")
    os.kill(os.getpid(), signal.SIGKILL)


def quick(config: dict[str, Any], reporter: Any) -> None:
    """Reports every epoch at once."""
    for epoch in range(1, config["epochs"] + 1):
        reporter.report(epoch=epoch, loss=_loss(config, epoch))
