"""The registry of schedules GreedyLR is compared with, each built from a name and a horizon.

Every record is a frozen :class:`ScheduleInfo` (timm's ``OptimInfo`` pattern): its factory, the
parameters it takes with their defaults, whether it needs the metric and whether it is stepped per
epoch or per batch. Training code builds any of them with :func:`create_schedule` and steps any of
them with :func:`step_scheduler`, without an ``isinstance`` branch of its own::

    scheduler = create_schedule("cosine", optimizer, horizon=epochs, warmup_fraction=0.1)
    for epoch in range(epochs):
        val_loss = train_one_epoch()
        step_scheduler(scheduler, val_loss)

PyTorch's own classes are used wherever they exist; the warmup-then-decay shapes are a
``LambdaLR`` with a multiplier from :mod:`greedylr.schedulers._baselines`. Parameters given as a
ratio (``min_lr_ratio``, ``end_factor``) are fractions of the LR each param group has when the
schedule is created.
"""

from __future__ import annotations

import inspect
import math
import numbers
import types
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import Literal
from typing import SupportsFloat

from torch.optim import Optimizer
from torch.optim.lr_scheduler import ConstantLR
from torch.optim.lr_scheduler import CosineAnnealingWarmRestarts
from torch.optim.lr_scheduler import ExponentialLR
from torch.optim.lr_scheduler import LRScheduler
from torch.optim.lr_scheduler import MultiStepLR
from torch.optim.lr_scheduler import OneCycleLR
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torch.optim.lr_scheduler import StepLR

from greedylr.schedulers._baselines import check_choice
from greedylr.schedulers._baselines import check_number
from greedylr.schedulers._baselines import constant_with_warmup
from greedylr.schedulers._baselines import cosine
from greedylr.schedulers._baselines import initial_lrs
from greedylr.schedulers._baselines import linear
from greedylr.schedulers._baselines import plain
from greedylr.schedulers._baselines import polynomial
from greedylr.schedulers._baselines import warmup_stable_decay
from greedylr.schedulers._greedy import GreedyLR


StepOn = Literal["epoch", "batch"]
_METRIC_DRIVEN = (GreedyLR, ReduceLROnPlateau)


@dataclass(frozen=True)
class ScheduleInfo:
    """What the registry knows about one schedule.

    Args:
        name: The name :func:`create_schedule` takes.
        factory: ``factory(optimizer, *, horizon, **params)`` returns the scheduler.
        needs_metric: Whether ``step`` takes the metric (GreedyLR, ReduceLROnPlateau).
        step_on: ``"epoch"`` or ``"batch"``: how often a run usually calls ``step``; the
            horizon counts those calls.
        description: One line for listings.
        defaults: The valid parameters with their defaults (``None`` where the default depends
            on the horizon or on another parameter); stored read-only.
    """

    name: str
    factory: Callable[..., LRScheduler | ReduceLROnPlateau]
    needs_metric: bool
    step_on: StepOn
    description: str
    defaults: Mapping[str, Any] = field(hash=False)

    def __post_init__(self) -> None:
        check_choice("step_on", self.step_on, ("epoch", "batch"))
        object.__setattr__(self, "defaults", types.MappingProxyType(dict(self.defaults)))


def _gamma(value: Any) -> float:
    return float(check_number("gamma", value, low=0, high=1, low_open=True))


def _constant(optimizer: Optimizer, *, horizon: int) -> ConstantLR:
    """The LR never changes."""
    return ConstantLR(optimizer, factor=1.0, total_iters=0)


def _step(
    optimizer: Optimizer, *, horizon: int, step_size: int | None = None, gamma: float = 0.1
) -> StepLR:
    """Multiply the LR by ``gamma`` every ``step_size`` steps (default: a third of the horizon)."""
    if step_size is None:
        step_size = max(1, horizon // 3)
    step_size = check_number("step_size", step_size, low=1, integer=True)
    return StepLR(optimizer, step_size=step_size, gamma=_gamma(gamma))


def _multistep(
    optimizer: Optimizer,
    *,
    horizon: int,
    milestones: Sequence[int] | None = None,
    num_milestones: int = 2,
    gamma: float = 0.1,
) -> MultiStepLR:
    """Multiply the LR by ``gamma`` at each milestone (default: evenly spaced).

    Without ``milestones``, there are ``num_milestones`` of them, at
    ``max(1, round(k * horizon / (num_milestones + 1)))`` for ``k = 1, ..., num_milestones``:
    with a horizon of 90 and 2 milestones, at steps 30 and 60. ``num_milestones`` is ignored
    when ``milestones`` is given.
    """
    if milestones is None:
        count = check_number("num_milestones", num_milestones, low=1, integer=True)
        milestones = [max(1, round(k * horizon / (count + 1))) for k in range(1, count + 1)]
    elif isinstance(milestones, (list, tuple)):
        milestones = [
            check_number(f"milestones[{index}]", milestone, low=1, integer=True)
            for index, milestone in enumerate(milestones)
        ]
    else:
        raise TypeError(f"`milestones` must be a list of ints, but got {milestones=}.")
    return MultiStepLR(optimizer, milestones=milestones, gamma=_gamma(gamma))


def _exponential(optimizer: Optimizer, *, horizon: int, gamma: float = 0.95) -> ExponentialLR:
    """Multiply the LR by ``gamma`` at every step."""
    return ExponentialLR(optimizer, gamma=_gamma(gamma))


def _cosine_warm_restarts(
    optimizer: Optimizer,
    *,
    horizon: int,
    T_0: int | None = None,
    T_mult: int = 1,
    min_lr_ratio: float = 0.0,
) -> CosineAnnealingWarmRestarts:
    """Cosine decay restarted every ``T_0`` steps (default: a quarter of the horizon).

    Each cycle is ``T_mult`` times longer than the one before. ``min_lr_ratio`` is a fraction of
    the first param group's LR (``eta_min`` is one value for all groups).
    """
    if T_0 is None:
        T_0 = max(1, horizon // 4)
    T_0 = check_number("T_0", T_0, low=1, integer=True)
    T_mult = check_number("T_mult", T_mult, low=1, integer=True)
    ratio = check_number("min_lr_ratio", min_lr_ratio, low=0, high=1)
    eta_min = ratio * initial_lrs(optimizer)[0]
    return CosineAnnealingWarmRestarts(optimizer, T_0=T_0, T_mult=T_mult, eta_min=eta_min)


def _onecycle(
    optimizer: Optimizer,
    *,
    horizon: int,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    anneal_strategy: str = "cos",
    cycle_momentum: bool = False,
) -> OneCycleLR:
    """One cycle: up from ``lr / div_factor`` to each group's LR, then down to a tiny LR.

    Built with ``total_steps=horizon + 1``, so that, like every other decay here, it reaches its
    end (``lr / (div_factor * final_div_factor)``) at step ``horizon``, after the last step a run
    trains with (with ``total_steps=horizon`` the LR after the last step would overshoot, below
    zero with ``anneal_strategy="linear"``). The peak is at step
    ``pct_start * (horizon + 1) - 1``. ``cycle_momentum`` is off by default so that every
    baseline runs the optimizer as configured; turn it on for the classic 0.95 -> 0.85 cycle.
    OneCycleLR sets each group's LR to its starting value when it is created.
    """
    pct_start = float(check_number("pct_start", pct_start, low=0, high=1, high_open=True))
    total_steps = horizon + 1
    # OneCycleLR divides by zero when its first phase starts and ends at step 0
    # (pct_start * total_steps == 1); one ulp less puts the peak at step 0, as intended.
    while pct_start * total_steps - 1 == 0:
        pct_start = math.nextafter(pct_start, 0.0)
    if not isinstance(cycle_momentum, bool):
        raise TypeError(f"`cycle_momentum` must be a bool, but got {cycle_momentum=}.")
    return OneCycleLR(
        optimizer,
        max_lr=initial_lrs(optimizer),
        total_steps=total_steps,
        pct_start=pct_start,
        div_factor=check_number("div_factor", div_factor, low=0, low_open=True),
        final_div_factor=check_number("final_div_factor", final_div_factor, low=0, low_open=True),
        anneal_strategy=check_choice("anneal_strategy", anneal_strategy, ("cos", "linear")),
        cycle_momentum=cycle_momentum,
    )


def _plateau(
    optimizer: Optimizer,
    *,
    horizon: int,
    mode: str = "min",
    factor: float = 0.1,
    patience: int = 10,
    threshold: float = 1e-4,
    threshold_mode: str = "rel",
    cooldown: int = 0,
    min_lr_ratio: float = 0.0,
    eps: float = 1e-8,
) -> ReduceLROnPlateau:
    """Multiply the LR by ``factor`` when the metric stops improving (ReduceLROnPlateau).

    ``min_lr_ratio`` sets each group's ``min_lr`` to that fraction of its LR.
    """
    ratio = check_number("min_lr_ratio", min_lr_ratio, low=0, high=1)
    return ReduceLROnPlateau(
        optimizer,
        mode=check_choice("mode", mode, ("min", "max")),
        factor=check_number("factor", factor, low=0, high=1, low_open=True, high_open=True),
        patience=check_number("patience", patience, low=0, integer=True),
        threshold=check_number("threshold", threshold, low=0),
        threshold_mode=check_choice("threshold_mode", threshold_mode, ("rel", "abs")),
        cooldown=check_number("cooldown", cooldown, low=0, integer=True),
        min_lr=[ratio * lr for lr in initial_lrs(optimizer)],
        eps=check_number("eps", eps, low=0),
    )


def _greedylr(
    optimizer: Optimizer,
    *,
    horizon: int,
    mode: str = "min",
    factor: float = 0.95,
    patience: int = 10,
    threshold: float = 1e-6,
    threshold_mode: str = "abs",
    cooldown: int = 0,
    warmup: int = 0,
    min_lr: float | Sequence[float] | None = None,
    max_lr: float | Sequence[float] | None = None,
    eps: float = 1e-8,
    smooth: bool | None = None,
    window_size: int | None = None,
    reset_start: int = 500,
    variant: str = "hf",
    min_lr_ratio: float | None = None,
    max_lr_ratio: float | None = None,
) -> GreedyLR:
    """GreedyLR: raise the LR while the metric improves, lower it while it does not.

    The parameters are :class:`GreedyLR`'s, with three differences: ``smooth=None`` means
    ``window_size > 1`` (so ``window_size=1`` turns smoothing off; with neither given, the
    class defaults hold: no smoothing, window 50); ``min_lr_ratio`` / ``max_lr_ratio`` set each
    group's ``min_lr`` / ``max_lr`` to that multiple of its LR (give ``min_lr`` or
    ``min_lr_ratio``, not both); and ``min_lr=None`` / ``max_lr=None`` keep GreedyLR's defaults.
    """
    bounds: dict[str, Any] = {}
    for name, value, ratio in (("min_lr", min_lr, min_lr_ratio), ("max_lr", max_lr, max_lr_ratio)):
        if value is not None and ratio is not None:
            raise ValueError(
                f"Give `{name}` or `{name}_ratio`, not both, but got "
                f"({name}={value!r}, {name}_ratio={ratio!r})."
            )
        if ratio is not None:
            ratio = check_number(f"{name}_ratio", ratio, low=0, low_open=name == "max_lr")
            bounds[name] = [ratio * lr for lr in initial_lrs(optimizer)]
        elif value is not None:
            bounds[name] = value
    if smooth is None:
        smooth = window_size is not None and (
            check_number("window_size", window_size, low=1, integer=True) > 1
        )
    if window_size is None:
        window_size = 50
    return GreedyLR(
        optimizer,
        mode=mode,  # type: ignore[arg-type]
        factor=factor,
        patience=patience,
        threshold=threshold,
        threshold_mode=threshold_mode,  # type: ignore[arg-type]
        cooldown=cooldown,
        warmup=warmup,
        eps=eps,
        smooth=smooth,
        window_size=window_size,
        reset_start=reset_start,
        variant=variant,  # type: ignore[arg-type]
        **bounds,
    )


def _info(
    name: str,
    factory: Callable[..., LRScheduler | ReduceLROnPlateau],
    *,
    needs_metric: bool = False,
    step_on: StepOn = "epoch",
) -> ScheduleInfo:
    """A record whose defaults and description come from the factory's signature and docstring."""
    parameters = inspect.signature(factory).parameters.values()
    return ScheduleInfo(
        name=name,
        factory=factory,
        needs_metric=needs_metric,
        step_on=step_on,
        description=(inspect.getdoc(factory) or "").splitlines()[0],
        defaults={
            parameter.name: parameter.default
            for parameter in parameters
            if parameter.kind is parameter.KEYWORD_ONLY and parameter.name != "horizon"
        },
    )


_SCHEDULES: dict[str, ScheduleInfo] = {
    info.name: info
    for info in (
        _info("constant", _constant),
        _info("constant_with_warmup", constant_with_warmup),
        _info("step", _step),
        _info("multistep", _multistep),
        _info("exponential", _exponential),
        _info("cosine", cosine),
        _info("cosine_warm_restarts", _cosine_warm_restarts),
        _info("linear", linear),
        _info("polynomial", polynomial),
        _info("onecycle", _onecycle, step_on="batch"),
        _info("plateau", _plateau, needs_metric=True),
        _info("wsd", warmup_stable_decay),
        _info("greedylr", _greedylr, needs_metric=True),
    )
}


def list_schedules() -> list[str]:
    """The registered schedule names, sorted."""
    return sorted(_SCHEDULES)


def get_schedule_info(name: str) -> ScheduleInfo:
    """The record of schedule ``name``.

    Raises:
        ValueError: ``name`` is not registered; the message lists the valid names.
    """
    info = _SCHEDULES.get(name) if isinstance(name, str) else None
    if info is None:
        raise ValueError(f"Unknown schedule {name!r}; valid names are {list_schedules()}.")
    return info


def create_schedule(
    name: str, optimizer: Optimizer, *, horizon: int, **params: Any
) -> LRScheduler | ReduceLROnPlateau:
    """Build schedule ``name`` for ``optimizer``.

    Args:
        name: One of :func:`list_schedules`.
        optimizer: The optimizer whose param groups' LRs the schedule drives; each group's
            current LR is its starting (or peak) LR.
        horizon: How many times the run will call ``step``: the number of epochs for a
            schedule stepped per epoch, of batches for one stepped per batch (see
            :attr:`ScheduleInfo.step_on`). Decays end at the horizon. An int >= 1.
        **params: The schedule's own parameters; :attr:`ScheduleInfo.defaults` lists them.
            NumPy scalars are accepted and stored as Python numbers.

    Returns:
        The PyTorch scheduler (or :class:`GreedyLR`); step it with :func:`step_scheduler`.

    Raises:
        TypeError: ``optimizer`` is not an Optimizer, or a parameter has the wrong type.
        ValueError: An unknown name or parameter (the message lists the valid ones), or a
            value out of range, e.g. ``"`gamma` must be in (0, 1], but got gamma=1.5."``
    """
    info = get_schedule_info(name)
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
    if isinstance(horizon, bool) or not isinstance(horizon, numbers.Integral) or horizon < 1:
        raise ValueError(f"`horizon` must be an int >= 1, but got {horizon=}.")
    horizon = int(horizon)
    unknown = sorted(set(params) - set(info.defaults))
    if unknown:
        raise ValueError(
            f"Unknown parameter(s) {unknown} for schedule {name!r}; "
            f"valid parameters are {sorted(info.defaults)}."
        )
    return info.factory(optimizer, horizon=horizon, **{k: plain(v) for k, v in params.items()})


def step_scheduler(
    scheduler: LRScheduler | ReduceLROnPlateau, metric: SupportsFloat | None = None
) -> None:
    """Step any scheduler: with ``metric`` if it is metric-driven, without it otherwise.

    GreedyLR and ReduceLROnPlateau get ``scheduler.step(metric)``; every other scheduler gets
    ``scheduler.step()`` and ``metric`` is ignored, so a loop can always pass its metric.

    Raises:
        ValueError: ``metric`` is None for a metric-driven scheduler.
    """
    if isinstance(scheduler, _METRIC_DRIVEN):
        if metric is None:
            raise ValueError(
                f"`metric` is required to step {type(scheduler).__name__}, but got metric=None."
            )
        scheduler.step(metric)
    else:
        scheduler.step()
