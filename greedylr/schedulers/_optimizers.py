"""An optimizer factory driven by the same kind of flat config as the schedules.

Every parameter is a flat scalar (``beta1`` and ``beta2``, not a ``betas`` tuple), so each one
can be a dimension of a search space::

    optimizer = create_optimizer("adamw", model.parameters(), lr=3e-4, beta2=0.98)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from collections.abc import Iterable
from typing import Any

import torch
from torch.optim import Optimizer

from greedylr._imports import require
from greedylr.schedulers._baselines import check_number
from greedylr.schedulers._hypergradient import SGDHD
from greedylr.schedulers._hypergradient import AdamHD


Params = Iterable[torch.Tensor] | Iterable[dict[str, Any]]


def _sgd(
    params: Params,
    *,
    lr: float,
    momentum: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    dampening: float = 0.0,
) -> torch.optim.SGD:
    """SGD, with optional (Nesterov) momentum."""
    momentum = check_number("momentum", momentum, low=0, high=1, high_open=True)
    dampening = check_number("dampening", dampening, low=0, high=1)
    if not isinstance(nesterov, bool):
        raise TypeError(f"`nesterov` must be a bool, but got {nesterov=}.")
    if nesterov and (momentum == 0 or dampening != 0):
        raise ValueError(
            "`nesterov=True` needs `momentum > 0` and `dampening == 0`, "
            f"but got ({momentum=}, {dampening=})."
        )
    return torch.optim.SGD(
        params,
        lr=lr,
        momentum=momentum,
        dampening=dampening,
        weight_decay=check_number("weight_decay", weight_decay, low=0),
        nesterov=nesterov,
    )


def _adam_kwargs(beta1: float, beta2: float, eps: float, weight_decay: float) -> dict[str, Any]:
    return {
        "betas": (
            check_number("beta1", beta1, low=0, high=1, high_open=True),
            check_number("beta2", beta2, low=0, high=1, high_open=True),
        ),
        "eps": check_number("eps", eps, low=0),
        "weight_decay": check_number("weight_decay", weight_decay, low=0),
    }


def _adam(
    params: Params,
    *,
    lr: float,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> torch.optim.Adam:
    """Adam; ``weight_decay`` is an L2 penalty added to the gradient."""
    return torch.optim.Adam(params, lr=lr, **_adam_kwargs(beta1, beta2, eps, weight_decay))


def _adamw(
    params: Params,
    *,
    lr: float,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.01,
) -> torch.optim.AdamW:
    """AdamW: Adam with decoupled weight decay."""
    return torch.optim.AdamW(params, lr=lr, **_adam_kwargs(beta1, beta2, eps, weight_decay))


def _sgd_hd(
    params: Params,
    *,
    lr: float,
    hypergrad_lr: float = 1e-3,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
) -> SGDHD:
    """SGD-HD: SGD whose LR follows its hypergradient (Nesterov momentum: SGDN-HD)."""
    return SGDHD(
        params, lr=lr, hypergrad_lr=hypergrad_lr, momentum=momentum, weight_decay=weight_decay
    )


def _adam_hd(
    params: Params,
    *,
    lr: float,
    hypergrad_lr: float = 1e-7,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> AdamHD:
    """Adam-HD: Adam whose LR follows its hypergradient."""
    return AdamHD(
        params,
        lr=lr,
        hypergrad_lr=hypergrad_lr,
        beta1=beta1,
        beta2=beta2,
        eps=eps,
        weight_decay=weight_decay,
    )


def _schedule_free_kwargs(warmup_steps: int, r: float, weight_lr_power: float) -> dict[str, Any]:
    return {
        "warmup_steps": check_number("warmup_steps", warmup_steps, low=0, integer=True),
        "r": check_number("r", r, low=0),
        "weight_lr_power": check_number("weight_lr_power", weight_lr_power, low=0),
    }


def _schedulefree(name: str) -> Any:
    """The ``schedulefree`` package, imported when a schedule-free optimizer is built."""
    return require("schedulefree", extra="schedulefree", feature=f"The {name!r} optimizer")


def _sgd_schedulefree(
    params: Params,
    *,
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    warmup_steps: int = 0,
    r: float = 0.0,
    weight_lr_power: float = 2.0,
) -> Optimizer:
    """Schedule-free SGD (``schedulefree.SGDScheduleFree``, its defaults)."""
    kwargs = _schedule_free_kwargs(warmup_steps, r, weight_lr_power)
    kwargs["momentum"] = check_number(
        "momentum", momentum, low=0, high=1, low_open=True, high_open=True
    )
    kwargs["weight_decay"] = check_number("weight_decay", weight_decay, low=0)
    module = _schedulefree("sgd-schedulefree")
    return module.SGDScheduleFree(params, lr=lr, **kwargs)


def _adamw_schedulefree(
    params: Params,
    *,
    lr: float,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    warmup_steps: int = 0,
    r: float = 0.0,
    weight_lr_power: float = 2.0,
) -> Optimizer:
    """Schedule-free AdamW (``schedulefree.AdamWScheduleFree``, its defaults)."""
    kwargs = _adam_kwargs(beta1, beta2, eps, weight_decay)
    kwargs.update(_schedule_free_kwargs(warmup_steps, r, weight_lr_power))
    module = _schedulefree("adamw-schedulefree")
    return module.AdamWScheduleFree(params, lr=lr, **kwargs)


_OPTIMIZERS: dict[str, Callable[..., Optimizer]] = {
    "adam": _adam,
    "adam-hd": _adam_hd,
    "adamw": _adamw,
    "adamw-schedulefree": _adamw_schedulefree,
    "sgd": _sgd,
    "sgd-hd": _sgd_hd,
    "sgd-schedulefree": _sgd_schedulefree,
}


def list_optimizers() -> list[str]:
    """The names :func:`create_optimizer` accepts, sorted."""
    return sorted(_OPTIMIZERS)


def optimizer_defaults(name: str) -> dict[str, Any]:
    """The parameters of optimizer ``name`` (besides ``lr``) with their defaults."""
    factory = _OPTIMIZERS.get(name) if isinstance(name, str) else None
    if factory is None:
        raise ValueError(f"Unknown optimizer {name!r}; valid names are {list_optimizers()}.")
    return {
        parameter.name: parameter.default
        for parameter in inspect.signature(factory).parameters.values()
        if parameter.kind is parameter.KEYWORD_ONLY and parameter.name != "lr"
    }


def create_optimizer(name: str, params: Params, *, lr: float, **kwargs: Any) -> Optimizer:
    """Build optimizer ``name`` over ``params``.

    Args:
        name: ``"sgd"`` (``momentum=0.0``, ``nesterov=False``, ``weight_decay=0.0``,
            ``dampening=0.0``), ``"adam"`` (``beta1=0.9``, ``beta2=0.999``, ``eps=1e-8``,
            ``weight_decay=0.0``) or ``"adamw"`` (the same, with ``weight_decay=0.01``);
            or an optimizer that adapts or replaces the LR schedule (run it with the
            ``constant`` schedule): ``"sgd-hd"`` (``hypergrad_lr=1e-3``, ``momentum=0.0``,
            ``weight_decay=0.0``) and ``"adam-hd"`` (``hypergrad_lr=1e-7`` and Adam's), see
            :class:`~greedylr.schedulers.SGDHD`; ``"sgd-schedulefree"`` (``momentum=0.9``,
            ``weight_decay=0.0``, ``warmup_steps=0``, ``r=0.0``, ``weight_lr_power=2.0``) and
            ``"adamw-schedulefree"`` (Adam's, ``weight_decay=0.0``, and the same three), from
            the ``schedulefree`` package (``pip install greedylr[schedulefree]``). A
            schedule-free optimizer is built in eval mode: call its ``train()`` before
            training and its ``eval()`` before evaluating or saving it (the built-in tasks do).
        params: The model's parameters, or a list of param-group dicts (a group's own ``"lr"``
            overrides ``lr``).
        lr: The learning rate, > 0.
        **kwargs: The optimizer's parameters above.

    Raises:
        TypeError: A parameter has the wrong type.
        ValueError: An unknown name or parameter (the message lists the valid ones), or a
            value out of range, e.g. ``"`momentum` must be in [0, 1), but got momentum=1.5."``
        MissingDependencyError: A schedule-free optimizer without the ``schedulefree``
            package (an ``ImportError`` naming the pip command).
    """
    defaults = optimizer_defaults(name)
    unknown = sorted(set(kwargs) - set(defaults))
    if unknown:
        raise ValueError(
            f"Unknown parameter(s) {unknown} for optimizer {name!r}; "
            f"valid parameters are {sorted(defaults)}."
        )
    lr = check_number("lr", lr, low=0, low_open=True)
    return _OPTIMIZERS[name](params, lr=lr, **kwargs)
