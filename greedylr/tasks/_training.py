"""What every built-in task shares: reading a config, building the optimizer and the schedule."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from greedylr.schedulers import ScheduleInfo
from greedylr.schedulers import create_optimizer
from greedylr.schedulers import create_schedule
from greedylr.schedulers import get_schedule_info
from greedylr.schedulers import optimizer_defaults
from greedylr.schedulers import step_scheduler
from greedylr.tasks import RUN_KEYS
from greedylr.tasks import TaskInfo


@dataclass(frozen=True)
class RunSettings:
    """A config split into what builds the optimizer, the schedule and the task.

    Config keys: ``schedule`` (a registry name, default ``"greedylr"``), ``optimizer`` (default:
    the task's :attr:`TaskInfo.optimizer`, else SGD), ``lr``, ``epochs``, ``seed``; then the keys
    the schedule takes, then the keys the optimizer takes (a key both take, such as ``eps``, goes
    to the schedule); then the task's own :attr:`TaskInfo.config_keys`.
    """

    schedule: str
    schedule_params: dict[str, Any]
    optimizer: str
    optimizer_params: dict[str, Any]
    lr: float
    epochs: int
    seed: int
    task_params: dict[str, Any]

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any],
        *,
        task: TaskInfo,
        default_optimizer_params: Mapping[str, Any] | None = None,
    ) -> RunSettings:
        """Split ``config``; ``task`` gives the default epochs, LR and optimizer, and its keys.

        Args:
            config: A sampled config.
            task: The task's record.
            default_optimizer_params: The task's own defaults for optimizer keys the config
                does not set (``momentum=0.9``, say); keys the optimizer does not take are
                dropped.

        Raises:
            ValueError: An unknown key (the message names the valid ones), or no epochs or LR
                in the config nor in the task.
        """
        schedule = str(config.get("schedule", "greedylr"))
        info = get_schedule_info(schedule)
        optimizer = str(config.get("optimizer", task.optimizer or "sgd"))
        optimizer_keys = set(optimizer_defaults(optimizer))
        task_keys = set(task.config_keys or ())
        schedule_params: dict[str, Any] = {}
        optimizer_params = {
            k: v for k, v in (default_optimizer_params or {}).items() if k in optimizer_keys
        }
        task_params: dict[str, Any] = {}
        for key, value in config.items():
            if key in RUN_KEYS:
                continue
            if key in info.defaults:
                schedule_params[key] = value
            elif key in optimizer_keys:
                optimizer_params[key] = value
            elif key in task_keys:
                task_params[key] = value
            else:
                valid = sorted(task.valid_keys(schedule, optimizers=[optimizer]))
                raise ValueError(f"Unknown config key `{key}`; valid keys are {valid}.")
        epochs, lr = config.get("epochs", task.default_epochs), config.get("lr", task.default_lr)
        if epochs is None or lr is None:
            raise ValueError(f"The config of task {task.name!r} needs `epochs` and `lr`.")
        epochs = int(epochs)
        if epochs < 1:
            raise ValueError(f"`epochs` must be >= 1, but got {epochs=}.")
        return cls(
            schedule=schedule,
            schedule_params=schedule_params,
            optimizer=optimizer,
            optimizer_params=optimizer_params,
            lr=float(lr),
            epochs=epochs,
            seed=int(config.get("seed", 0)),
            task_params=task_params,
        )

    @property
    def schedule_info(self) -> ScheduleInfo:
        """The registry record of the schedule."""
        return get_schedule_info(self.schedule)

    def build(
        self, parameters: Iterable[torch.nn.Parameter], *, steps_per_epoch: int
    ) -> tuple[torch.optim.Optimizer, Any]:
        """The optimizer and the schedule; a per-batch schedule's horizon counts batches."""
        optimizer = create_optimizer(
            self.optimizer, parameters, lr=self.lr, **self.optimizer_params
        )
        per_batch = self.schedule_info.step_on == "batch"
        horizon = self.epochs * (steps_per_epoch if per_batch else 1)
        scheduler = create_schedule(
            self.schedule, optimizer, horizon=horizon, **self.schedule_params
        )
        return optimizer, scheduler


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    """The LR of the first param group."""
    return float(optimizer.param_groups[0]["lr"])


def train_loop(
    settings: RunSettings,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    reporter: Any,
    *,
    run_epoch: Callable[[Callable[[], None]], float],
    measure: Callable[[str], dict[str, float]],
) -> None:
    """Train for ``settings.epochs`` epochs, stepping any schedule the same way.

    Each epoch: ``run_epoch(after_batch)`` trains (calling ``after_batch()`` after every
    optimizer step, which steps a per-batch schedule) and returns the training loss;
    ``measure("val")`` returns the validation metrics with ``"loss"``; a per-epoch schedule is
    stepped on that loss; the epoch is reported with the LR it trained with. The last epoch
    also reports ``measure("test")``, prefixed ``test_``: a split tuning never sees.
    """
    per_batch = settings.schedule_info.step_on == "batch"

    def after_batch() -> None:
        if per_batch:
            step_scheduler(scheduler)

    for epoch in range(1, settings.epochs + 1):
        lr = current_lr(optimizer)
        train_loss = run_epoch(after_batch)
        metrics = measure("val")
        if not per_batch:
            step_scheduler(scheduler, metrics["loss"])
        if epoch == settings.epochs:
            metrics.update({f"test_{name}": value for name, value in measure("test").items()})
        reporter.report(epoch=epoch, lr=lr, train_loss=train_loss, **metrics)
