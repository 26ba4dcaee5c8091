"""What every built-in task shares: reading a config, building the optimizer and the schedule,
training on the trial's device, and checkpointing every epoch.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from greedylr.schedulers import GreedyLR
from greedylr.schedulers import ScheduleInfo
from greedylr.schedulers import create_optimizer
from greedylr.schedulers import create_schedule
from greedylr.schedulers import get_schedule_info
from greedylr.schedulers import optimizer_defaults
from greedylr.schedulers import step_scheduler
from greedylr.schedulers._greedy_functional import COUNTER_FIELDS
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


def training_device() -> torch.device:
    """Where a built-in task trains: the trial's GPU when it has one (``cuda``), else the CPU.

    ``cuda`` is the first GPU the process sees: the engine gives each trial its own through
    ``CUDA_VISIBLE_DEVICES``.
    """
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def train_loop(
    settings: RunSettings,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    reporter: Any,
    *,
    run_epoch: Callable[[Callable[[], None]], float],
    measure: Callable[[str], dict[str, float]],
    model: torch.nn.Module,
    generator: torch.Generator,
) -> None:
    """Train for ``settings.epochs`` epochs, stepping any schedule the same way.

    Each epoch: ``run_epoch(after_batch)`` trains (calling ``after_batch()`` after every
    optimizer step, which steps a per-batch schedule) and returns the training loss;
    ``measure("val")`` returns the validation metrics with ``"loss"``; a per-epoch schedule is
    stepped on that loss; the epoch is reported with the LR it trained with. The last epoch
    also reports ``measure("test")``, prefixed ``test_``: a split tuning never sees.

    An optimizer with ``train()`` and ``eval()`` methods (a schedule-free one: it trains at one
    point and is evaluated at another) is put in train mode before each epoch's training and
    in eval mode before measuring; it stays in eval mode while the epoch is checkpointed, as
    ``schedulefree`` asks.

    When the reporter has a ``checkpoint()`` method, every report carries the state
    (:func:`training_state`), and a trial given a checkpoint continues from it (see
    :func:`restore_training`) at the epoch after it; the epochs it then reports are exactly
    those of a run that was never stopped. A reporter without one (a user's, written before
    checkpoints) gets plain reports.

    Args:
        model: Everything trained (its ``state_dict`` is checkpointed).
        generator: The task's random generator (shuffling, noise), checkpointed too.
    """
    per_batch = settings.schedule_info.step_on == "batch"
    checkpoints = callable(getattr(reporter, "checkpoint", None))
    restored = reporter.checkpoint() if checkpoints else None
    start = 1
    if restored is not None:
        restore_training(
            restored.state, settings, model, optimizer, scheduler, generator=generator
        )
        start = restored.epoch + 1

    def after_batch() -> None:
        if per_batch:
            step_scheduler(scheduler)

    for epoch in range(start, settings.epochs + 1):
        lr = current_lr(optimizer)
        _set_mode(optimizer, "train")
        train_loss = run_epoch(after_batch)
        _set_mode(optimizer, "eval")  # measured, and checkpointed, where it is evaluated
        metrics = measure("val")
        if not per_batch:
            step_scheduler(scheduler, metrics["loss"])
        if epoch == settings.epochs:
            metrics.update({f"test_{name}": value for name, value in measure("test").items()})
        if checkpoints:
            state = training_state(settings, model, optimizer, scheduler, generator=generator)
            reporter.report(epoch=epoch, lr=lr, train_loss=train_loss, checkpoint=state, **metrics)
        else:
            reporter.report(epoch=epoch, lr=lr, train_loss=train_loss, **metrics)


def _set_mode(optimizer: torch.optim.Optimizer, mode: str) -> None:
    """Call the optimizer's ``train()`` or ``eval()`` (``mode``) when it has one."""
    switch = getattr(optimizer, mode, None)
    if callable(switch):
        switch()


def training_state(
    settings: RunSettings,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    *,
    generator: torch.Generator,
) -> dict[str, Any]:
    """Everything a built-in task needs to continue: a copy, on the CPU, that training leaves be.

    Keys: ``settings`` (the run settings as plain values), ``model``, ``optimizer`` and
    ``scheduler`` (their state dicts; GreedyLR's holds its counters, ``best`` and window),
    ``rng`` (``torch``: the global generator, ``cuda``: the GPU's when training on one,
    ``generator``: the task's own).
    """
    cuda = next(model.parameters()).is_cuda
    return {
        "settings": dataclasses.asdict(settings),
        "model": _on_cpu(model.state_dict()),
        "optimizer": _on_cpu(optimizer.state_dict()),
        "scheduler": copy.deepcopy(scheduler.state_dict()),
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state() if cuda else None,
            "generator": generator.get_state(),
        },
    }


def _on_cpu(value: Any) -> Any:
    """A deep copy of nested dicts, lists and tuples with every tensor copied to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {key: _on_cpu(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_on_cpu(item) for item in value)
    return copy.deepcopy(value)


def restore_training(
    state: Mapping[str, Any],
    settings: RunSettings,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    *,
    generator: torch.Generator,
) -> None:
    """Load a :func:`training_state` into a run freshly built from ``settings``.

    The model, optimizer and scheduler must be built from ``settings`` (as ``train`` builds
    them) and not trained yet; tensors go to the model's device.

    **Same settings** (a retried or resumed trial): everything comes from the state: weights,
    optimizer state and param groups, scheduler state, RNG states. The run continues exactly
    as if it had never stopped.

    **Other settings** (population-based training: the donor's state, this trial's perturbed
    config). From the state (the donor): the weights; the RNG states (the data order goes on
    as the donor's); the current LR of every param group (hypergradient descent's adapted LR
    too); the optimizer's per-parameter state (momentum buffers, Adam moments) and a
    schedule-free optimizer's averaging progress (its step count, weight sum, mode) when both
    use the same optimizer (another optimizer starts with none); and the scheduler's progress,
    when both use the same schedule:

    - GreedyLR: the LRs, ``best``, the good/bad step counts, the cooldown, warmup and reset
      counters, the smoothing window and the step count. Counters longer than the new
      ``cooldown``, ``warmup`` or ``reset_start`` are cut to them; a window longer than the
      new ``window_size`` keeps its newest values (its sum recomputed); ``best`` starts over
      when ``mode`` changed.
    - ReduceLROnPlateau: ``best``, the bad-epoch count, the cooldown counter, the step count.
    - Every other schedule: its step count (``last_epoch``; ``T_cur``/``T_i`` of the cosine
      with restarts). A schedule whose LR is a formula of the step (cosine, linear, onecycle,
      ...) then sets the LR its new parameters give at the donor's step at its next step;
      one that multiplies the current LR (step, exponential) goes on from the donor's LR.

    From ``settings`` (the new config): every hyperparameter. GreedyLR's ``mode``,
    ``factor``, ``patience``, ``threshold``, ``threshold_mode``, ``cooldown``, ``warmup``,
    ``eps``, ``smooth``, ``window_size``, ``reset_start``, ``variant``, ``min_lr`` and
    ``max_lr`` and its initial LRs (the config's ``lr``: where a reset returns); the other
    schedules' parameters and base LRs; the optimizer's parameters (momentum, weight decay,
    betas, ...) in every param group. The donor's current LR may lie outside the new
    ``[min_lr, max_lr]``: GreedyLR's next move clamps it. Another schedule than the donor's
    starts afresh from the donor's current LR.

    Raises:
        ValueError: The state was not written by :func:`training_state`.
    """
    missing = [key for key in _STATE_KEYS if key not in state]
    if missing:
        raise ValueError(f"A built-in task's checkpoint lacks the keys {missing}.")
    model.load_state_dict(state["model"])
    donor = state["settings"]
    if donor == dataclasses.asdict(settings):
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
    else:
        _transplant(state, donor, settings, optimizer, scheduler)
    rng = state["rng"]
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] is not None and next(model.parameters()).is_cuda:
        torch.cuda.set_rng_state(rng["cuda"])
    generator.set_state(rng["generator"])


_STATE_KEYS = ("settings", "model", "optimizer", "scheduler", "rng")
_PROGRESS_KEYS = {  # what a scheduler's state holds besides its hyperparameters
    "last_epoch",
    "_step_count",
    "_last_lr",
    "_get_lr_called_within_step",
    "_is_initial",
    "T_cur",
    "T_i",
    "best",
    "num_bad_epochs",
    "cooldown_counter",
}


def _transplant(
    state: Mapping[str, Any],
    donor: Mapping[str, Any],
    settings: RunSettings,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
) -> None:
    """Restore into other settings (see :func:`restore_training`)."""
    fresh_groups = [
        {key: value for key, value in group.items() if key != "params"}
        for group in optimizer.param_groups
    ]
    donor_lrs = [float(group["lr"]) for group in state["optimizer"]["param_groups"]]
    same_optimizer = donor["optimizer"] == settings.optimizer
    if same_optimizer:
        optimizer.load_state_dict(state["optimizer"])
    for group, fresh, lr in zip(optimizer.param_groups, fresh_groups, donor_lrs):
        progress = {key: group[key] for key in _GROUP_PROGRESS_KEYS if key in group}
        group.update(fresh)
        group["lr"] = lr
        if same_optimizer:
            group.update(progress)
    if donor["schedule"] != settings.schedule:
        return
    donor_state, fresh_state = state["scheduler"], scheduler.state_dict()
    if isinstance(scheduler, GreedyLR):
        merged = _greedy_progress(donor_state, fresh_state)
    else:
        merged = {**fresh_state}
        merged.update({key: donor_state[key] for key in _PROGRESS_KEYS if key in donor_state})
    scheduler.load_state_dict(merged)


def _greedy_progress(donor: Mapping[str, Any], fresh: Mapping[str, Any]) -> dict[str, Any]:
    """GreedyLR's state: the donor's LRs, counters and window, the new hyperparameters."""
    merged = {**fresh}
    for key in ("lrs", *COUNTER_FIELDS, "window_values", "window_sum", "last_epoch"):
        merged[key] = copy.deepcopy(donor[key])
    for counter, bound in _GREEDY_BOUNDS.items():
        merged[counter] = min(merged[counter], fresh[bound])
    if fresh["mode"] != donor["mode"]:
        merged["best"] = fresh["best"]
    window = list(merged["window_values"])
    if len(window) > fresh["window_size"]:
        window = window[len(window) - fresh["window_size"] :]
        merged["window_values"], merged["window_sum"] = window, sum(window)
    return merged


_GROUP_PROGRESS_KEYS = (  # what a schedule-free optimizer's param group holds besides its settings
    "k",
    "weight_sum",
    "lr_max",
    "scheduled_lr",
    "train_mode",
)
_GREEDY_BOUNDS = {
    "cooldown_counter": "cooldown",
    "warmup_counter": "warmup",
    "reset_counter": "reset_start",
}
