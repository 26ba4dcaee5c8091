"""Methods: optimizers that adapt or replace the LR schedule, each an arm with its own space.

A method is a schedule and an optimizer that run together: hypergradient descent (SGD-HD,
Adam-HD) adapts its LR itself and schedule-free SGD and AdamW need none, so each runs with the
``constant`` schedule. This module is the one place that knows the methods: ``greedylr tune
--schedule``, ``greedylr compare --schedules``, :func:`greedylr.tune` and
:func:`greedylr.compare` take their names wherever they take a schedule's
(:func:`tunable_schedules`)::

    space = method_space("sgd-hd")
    space["schedule"], space["optimizer"], space["hypergrad_lr"]
    # ('constant', 'sgd-hd', FloatParam(low=1e-05, high=0.01, log=True, step=None))

Every knob is named as :func:`greedylr.schedulers.create_optimizer` takes it, and its default
there lies inside its range.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from greedylr.searchers._space import CategoricalParam
from greedylr.searchers._space import Constant
from greedylr.searchers._space import FloatParam
from greedylr.searchers._space import IntParam
from greedylr.searchers._space import Param
from greedylr.searchers._space import SearchSpace
from greedylr.searchers._space import update_space


Space = dict[str, Param | Constant]

_ADAM_LR = FloatParam(1e-5, 1e-1, log=True)
_MOMENTUM = CategoricalParam((0.9, 0.95, 0.98))  # schedulefree's README: sensitive to it
_WARMUP_STEPS = IntParam(0, 200)  # optimizer steps; schedulefree's README: warmup helps


@dataclass(frozen=True)
class MethodInfo:
    """A method: the optimizer that adapts or replaces the schedule, and the schedule it runs
    with.

    Args:
        name: The name ``tune`` and ``compare`` take, as a schedule's.
        optimizer: The :func:`greedylr.schedulers.create_optimizer` name.
        schedule: The registry schedule it runs with.
        description: One line.
        knobs: The method's own dimensions (besides the constants ``schedule`` and
            ``optimizer``), ``lr`` among them.
    """

    name: str
    optimizer: str
    schedule: str
    description: str
    knobs: Callable[[], Space]


_METHODS = {
    info.name: info
    for info in (
        MethodInfo(
            name="sgd-hd",
            optimizer="sgd-hd",
            schedule="constant",
            description="SGD with hypergradient descent on its LR (Baydin et al. 2018)",
            knobs=lambda: {
                "lr": FloatParam(1e-4, 1.0, log=True),
                "hypergrad_lr": FloatParam(1e-5, 1e-2, log=True),
            },
        ),
        MethodInfo(
            name="adam-hd",
            optimizer="adam-hd",
            schedule="constant",
            description="Adam with hypergradient descent on its LR (Baydin et al. 2018)",
            knobs=lambda: {"lr": _ADAM_LR, "hypergrad_lr": FloatParam(1e-9, 1e-5, log=True)},
        ),
        MethodInfo(
            name="sgd-schedulefree",
            optimizer="sgd-schedulefree",
            schedule="constant",
            description="schedule-free SGD (Defazio et al. 2024, package schedulefree)",
            knobs=lambda: {
                "lr": FloatParam(1e-3, 10.0, log=True),
                "momentum": _MOMENTUM,
                "warmup_steps": _WARMUP_STEPS,
            },
        ),
        MethodInfo(
            name="adamw-schedulefree",
            optimizer="adamw-schedulefree",
            schedule="constant",
            description="schedule-free AdamW (Defazio et al. 2024, package schedulefree)",
            knobs=lambda: {"lr": _ADAM_LR, "beta1": _MOMENTUM, "warmup_steps": _WARMUP_STEPS},
        ),
    )
}


def list_methods() -> list[str]:
    """The methods' names, sorted."""
    return sorted(_METHODS)


def get_method(name: str) -> MethodInfo:
    """The record of method ``name``.

    Raises:
        ValueError: ``name`` is no method (the message lists them).
    """
    info = _METHODS.get(name) if isinstance(name, str) else None
    if info is None:
        raise ValueError(f"Unknown method {name!r}; valid names are {list_methods()}.")
    return info


def method_space(name: str, **overrides: Any) -> dict[str, Param | Constant]:
    """The search space of method ``name``: its schedule and optimizer, its LR and knobs.

    ========================  ==============================================================
    method                    dimensions besides ``schedule="constant"`` and ``optimizer``
    ========================  ==============================================================
    ``sgd-hd``                ``lr`` [1e-4, 1], ``hypergrad_lr`` [1e-5, 1e-2], both log
    ``adam-hd``               ``lr`` [1e-5, 0.1], ``hypergrad_lr`` [1e-9, 1e-5], both log
    ``sgd-schedulefree``      ``lr`` [1e-3, 10] log, ``momentum`` {0.9, 0.95, 0.98},
                              ``warmup_steps`` {0, ..., 200}
    ``adamw-schedulefree``    ``lr`` [1e-5, 0.1] log, ``beta1`` {0.9, 0.95, 0.98},
                              ``warmup_steps`` {0, ..., 200}
    ========================  ==============================================================

    The optimizer's other parameters keep their defaults, or the task's (a built-in task's
    SGD momentum 0.9 also reaches SGD-HD, which makes it the paper's SGDN-HD).

    Args:
        name: One of :func:`list_methods`.
        **overrides: Narrow, widen, fix or drop dimensions, as
            :func:`greedylr.searchers.update_space` does: ``warmup_steps=(0, 1000)`` suits a
            longer run, ``hypergrad_lr=1e-3`` fixes it.

    Raises:
        ValueError: ``name`` is no method, or an override is invalid.

    Example:
        >>> space = method_space("adam-hd", lr=(1e-4, 1e-2))
        >>> space["schedule"], space["optimizer"], space["lr"]
        ('constant', 'adam-hd', FloatParam(low=0.0001, high=0.01, log=True, step=None))
    """
    info = get_method(name)
    space: Space = {"schedule": info.schedule, "optimizer": info.optimizer, **info.knobs()}
    return update_space(space, **overrides)


def method_running(schedule: str, optimizer: Any) -> str | None:
    """The method whose job runs ``schedule`` with ``optimizer`` (``None``: no method)."""
    for info in _METHODS.values():
        if info.schedule == schedule and info.optimizer == optimizer:
            return info.name
    return None


def tunable_schedules() -> list[str]:
    """Every name ``tune`` and ``compare`` take as a schedule: the registered schedules, then
    the methods."""
    from greedylr._schedule_names import SCHEDULE_NAMES  # not the registry: no torch

    return [*SCHEDULE_NAMES, *list_methods()]


def resolve_schedule(
    name: str, space: SearchSpace | None = None
) -> tuple[str, SearchSpace | None]:
    """The registry schedule a tuning job of ``name`` runs, and its space.

    A registered schedule comes back as it is, with ``space``. A method comes back as its
    schedule (``constant``), with its :func:`method_space` when ``space`` is ``None``, else
    ``space`` with the method's ``optimizer`` (the one the method is).

    Raises:
        ValueError: ``name`` is neither a schedule nor a method (the message lists them all),
            or ``space`` names another optimizer than the method's.
    """
    names = tunable_schedules()
    if not isinstance(name, str) or name not in names:
        raise ValueError(f"Unknown schedule {name!r}; valid names are {names}.")
    if name not in _METHODS:
        return name, space
    info = _METHODS[name]
    if space is None:
        return info.schedule, method_space(name)
    chosen = space.get("optimizer", info.optimizer)
    if chosen != info.optimizer:
        raise ValueError(
            f"The space of method {name!r} must run optimizer {info.optimizer!r}, but its "
            f"`optimizer` is {chosen!r}."
        )
    return info.schedule, {**space, "optimizer": info.optimizer}
