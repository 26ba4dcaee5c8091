"""Trial functions for the Syne Tune backend's own tests: checkpoints, GPUs, a log of starts."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


def _loss(x: float, epoch: int) -> float:
    return ((x - 0.3) ** 2 + 0.01) * (1.0 + 2.0 / epoch)


def checkpointed(config: dict[str, Any], reporter: Any) -> None:
    """Like ``smooth``, with a checkpoint each epoch; appends ``{x, first}`` to the file
    ``config["log"]`` at each start (``first``: the epoch it starts at)."""
    restored = reporter.checkpoint()
    first = 1 if restored is None else restored.epoch + 1
    with Path(config["log"]).open("a") as log:
        log.write(json.dumps({"x": config["x"], "first": first}) + "\n")
    for epoch in range(first, config["epochs"] + 1):
        reporter.report(epoch=epoch, loss=_loss(config["x"], epoch), checkpoint={"epoch": epoch})


def placed(config: dict[str, Any], reporter: Any) -> None:
    """Appends ``{devices, start, end}`` (its ``CUDA_VISIBLE_DEVICES`` and wall times) to the
    file ``config["log"]`` when it ends; runs ``config["epochs"]`` epochs of 0.2 s."""
    start = time.time()
    for epoch in range(1, config["epochs"] + 1):
        time.sleep(0.2)
        reporter.report(epoch=epoch, loss=_loss(config["x"], epoch))
    devices = os.environ.get("CUDA_VISIBLE_DEVICES")
    with Path(config["log"]).open("a") as log:
        log.write(json.dumps({"devices": devices, "start": start, "end": time.time()}) + "\n")
