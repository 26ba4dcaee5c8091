"""Tiny trial functions for the backend tests: deterministic losses, failures, NaN, a kill."""

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


def selfkill(config: dict[str, Any], reporter: Any) -> None:
    """Like ``smooth``, but every trial with x > 0.5 SIGKILLs its worker at epoch 2."""
    for epoch in range(1, config["epochs"] + 1):
        if config["x"] > 0.5 and epoch == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        reporter.report(epoch=epoch, loss=_loss(config["x"], epoch))
