"""Small user tasks for the comparison tests: ``file.py:function`` tasks, as users write them."""

from __future__ import annotations

from typing import Any

import torch

from greedylr.schedulers import create_optimizer
from greedylr.schedulers import create_schedule
from greedylr.schedulers import get_schedule_info
from greedylr.schedulers import step_scheduler


def _fit(config: dict[str, Any], reporter: Any, *, test_metric: bool) -> None:
    config = dict(config)
    epochs, lr, seed = config.pop("epochs"), config.pop("lr"), config.pop("seed", 0)
    schedule = config.pop("schedule", "greedylr")
    generator = torch.Generator().manual_seed(seed)
    weights = torch.nn.Parameter(torch.randn(4, generator=generator))
    knobs = {k: config.pop(k) for k in list(config) if k in get_schedule_info(schedule).defaults}
    optimizer = create_optimizer("sgd", [weights], lr=lr)
    scheduler = create_schedule(schedule, optimizer, horizon=epochs, **knobs)
    for epoch in range(1, epochs + 1):
        epoch_lr = optimizer.param_groups[0]["lr"]
        for _ in range(5):
            optimizer.zero_grad()
            noise = torch.randn(4, generator=generator)
            loss = ((weights - 1) ** 2).sum() + 0.1 * (noise * weights).sum()
            loss.backward()
            optimizer.step()
        val_loss = float(((weights.detach() - 1) ** 2).sum())
        step_scheduler(scheduler, val_loss)
        extra = {"test_loss": val_loss * 1.1} if test_metric and epoch == epochs else {}
        reporter.report(epoch=epoch, loss=val_loss, lr=epoch_lr, **extra)


def train(config: dict[str, Any], reporter: Any) -> None:
    """Noisy least squares; reports ``test_loss`` at the last epoch."""
    _fit(config, reporter, test_metric=True)


def train_without_test(config: dict[str, Any], reporter: Any) -> None:
    """The same, without any ``test_`` metric: ``greedylr compare`` refuses it."""
    _fit(config, reporter, test_metric=False)
