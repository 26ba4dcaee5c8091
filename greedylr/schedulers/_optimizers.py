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

from greedylr.schedulers._baselines import check_number


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


_OPTIMIZERS: dict[str, Callable[..., Optimizer]] = {
    "adam": _adam,
    "adamw": _adamw,
    "sgd": _sgd,
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
            ``weight_decay=0.0``) or ``"adamw"`` (the same, with ``weight_decay=0.01``).
        params: The model's parameters, or a list of param-group dicts (a group's own ``"lr"``
            overrides ``lr``).
        lr: The learning rate, > 0.
        **kwargs: The optimizer's parameters above.

    Raises:
        TypeError: A parameter has the wrong type.
        ValueError: An unknown name or parameter (the message lists the valid ones), or a
            value out of range, e.g. ``"`momentum` must be in [0, 1), but got momentum=1.5."``
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
