"""Hypergradient descent: SGD and Adam that learn their own learning rate as they go.

Baydin et al. 2018, "Online Learning Rate Adaptation with Hypergradient Descent" (ICLR). Before
step ``t`` the learning rate ``alpha`` takes one gradient step of its own: the derivative of the
loss ``f(theta_{t-1})`` with respect to the ``alpha`` of the previous step is
``h_t = g_t . d(theta_{t-1}) / d(alpha) = -g_t . u_{t-1}``, where ``u_{t-1}`` is the direction
the previous step moved along (``theta_{t-1} = theta_{t-2} - alpha u_{t-1}``), so::

    alpha_t = alpha_{t-1} - hypergrad_lr * h_t = alpha_{t-1} + hypergrad_lr * g_t . u_{t-1}
    theta_t = theta_{t-1} - alpha_t * u_t

with ``u_0 = 0`` (the first step keeps the initial ``alpha``). As in the paper, ``alpha`` is
one number per param group (the dot product runs over every parameter of the group) and
nothing clips it. It lives in ``param_groups[i]["lr"]``, where any history of the LR finds it.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
from typing import Any

import torch
from torch.optim import Optimizer

from greedylr.schedulers._baselines import check_number


Params = Iterable[torch.Tensor] | Iterable[dict[str, Any]]


class SGDHD(Optimizer):
    """SGD-HD (and, with ``momentum > 0``, the paper's SGDN-HD: Nesterov momentum).

    Each step, with ``g_t`` the gradient (plus ``weight_decay * theta``, an L2 penalty: the
    hypergradient is then that of the penalised loss)::

        alpha_t = alpha_{t-1} + hypergrad_lr * g_t . u_{t-1}
        v_t = momentum * v_{t-1} + g_t                  (v_0 = 0)
        u_t = g_t + momentum * v_t                      (u_t = g_t without momentum)
        theta_t = theta_{t-1} - alpha_t * u_t

    Args:
        params: The parameters, or param-group dicts (each group adapts its own LR).
        lr: The initial learning rate ``alpha_0``, >= 0 (the paper shows 0 also works).
        hypergrad_lr: The hypergradient learning rate ``beta``, >= 0 (0: plain SGD). The
            paper uses 1e-3.
        momentum: Nesterov momentum, in [0, 1); 0 is the paper's SGD-HD.
        weight_decay: An L2 penalty added to the gradient, >= 0.

    Raises:
        TypeError: A parameter is not a number.
        ValueError: A parameter is out of range, e.g.
            ``"`momentum` must be in [0, 1), but got momentum=1.0."``
    """

    def __init__(
        self,
        params: Params,
        *,
        lr: float,
        hypergrad_lr: float = 1e-3,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
    ) -> None:
        defaults = {
            "lr": check_number("lr", lr, low=0),
            "hypergrad_lr": check_number("hypergrad_lr", hypergrad_lr, low=0),
            "momentum": check_number("momentum", momentum, low=0, high=1, high_open=True),
            "weight_decay": check_number("weight_decay", weight_decay, low=0),
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One step: adapt each group's LR, then move its parameters.

        Args:
            closure: Re-evaluates the model and returns the loss (optional).
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            momentum = group["momentum"]
            active, gradients = _gradients(self, group)
            previous = [self.state[p].get("previous_direction") for p in active]
            terms = [(g * u).sum() for g, u in zip(gradients, previous) if u is not None]
            alpha = group["lr"] + group["hypergrad_lr"] * _total(terms)
            group["lr"] = alpha
            for p, gradient in zip(active, gradients):
                state = self.state[p]
                if momentum:
                    buffer = state.get("momentum_buffer")
                    if buffer is None:
                        buffer = state["momentum_buffer"] = gradient.clone()
                    else:
                        buffer.mul_(momentum).add_(gradient)
                    direction = gradient.add(buffer, alpha=momentum)
                else:
                    direction = gradient.clone()
                p.sub_(direction, alpha=alpha)
                state["previous_direction"] = direction
        return loss


class AdamHD(Optimizer):
    """Adam-HD: Adam whose learning rate follows its hypergradient.

    Each step, with ``g_t`` the gradient (plus ``weight_decay * theta``, an L2 penalty as in
    ``torch.optim.Adam``; the hypergradient is then that of the penalised loss)::

        alpha_t = alpha_{t-1} + hypergrad_lr * g_t . u_{t-1}
        m_t = beta1 * m_{t-1} + (1 - beta1) * g_t
        v_t = beta2 * v_{t-1} + (1 - beta2) * g_t ** 2
        u_t = (m_t / (1 - beta1 ** t)) / (sqrt(v_t / (1 - beta2 ** t)) + eps)
        theta_t = theta_{t-1} - alpha_t * u_t

    ``u_{t-1}`` is recomputed from ``m`` and ``v`` (no extra buffer).

    Args:
        params: The parameters, or param-group dicts (each group adapts its own LR).
        lr: The initial learning rate ``alpha_0``, >= 0.
        hypergrad_lr: The hypergradient learning rate ``beta``, >= 0 (0: plain Adam). The
            paper uses 1e-7 (logistic regression, MLP) and 1e-8 (VGG).
        beta1: The first moment's decay, in [0, 1).
        beta2: The second moment's decay, in [0, 1).
        eps: Added to the denominator, >= 0.
        weight_decay: An L2 penalty added to the gradient, >= 0.

    Raises:
        TypeError: A parameter is not a number.
        ValueError: A parameter is out of range.
    """

    def __init__(
        self,
        params: Params,
        *,
        lr: float,
        hypergrad_lr: float = 1e-7,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        defaults = {
            "lr": check_number("lr", lr, low=0),
            "hypergrad_lr": check_number("hypergrad_lr", hypergrad_lr, low=0),
            "betas": (
                check_number("beta1", beta1, low=0, high=1, high_open=True),
                check_number("beta2", beta2, low=0, high=1, high_open=True),
            ),
            "eps": check_number("eps", eps, low=0),
            "weight_decay": check_number("weight_decay", weight_decay, low=0),
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One step: adapt each group's LR, then move its parameters.

        Args:
            closure: Re-evaluates the model and returns the loss (optional).
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            active, gradients = _gradients(self, group)
            terms = [
                (g * self._direction(self.state[p], group)).sum()
                for p, g in zip(active, gradients)
                if self.state[p].get("moved")
            ]
            alpha = group["lr"] + group["hypergrad_lr"] * _total(terms)
            group["lr"] = alpha
            for p, gradient in zip(active, gradients):
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                state["exp_avg"].mul_(beta1).add_(gradient, alpha=1 - beta1)
                state["exp_avg_sq"].mul_(beta2).addcmul_(gradient, gradient, value=1 - beta2)
                p.sub_(self._direction(state, group), alpha=alpha)
                state["moved"] = True
        return loss

    @staticmethod
    def _direction(state: dict[str, Any], group: dict[str, Any]) -> torch.Tensor:
        """``u`` of the parameter's last step: its bias-corrected Adam direction."""
        beta1, beta2 = group["betas"]
        step = state["step"]
        first = state["exp_avg"] / (1 - beta1**step)
        second = (state["exp_avg_sq"] / (1 - beta2**step)).sqrt_().add_(group["eps"])
        return first.div_(second)


def _gradients(
    optimizer: Optimizer, group: dict[str, Any]
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The group's parameters that have a gradient, and their gradients with weight decay.

    A parameter without a gradient does not move this step: its last direction is forgotten
    (its ``theta`` no longer depends on this step's ``alpha``).
    """
    weight_decay = group["weight_decay"]
    active, gradients = [], []
    for p in group["params"]:
        if p.grad is None:
            state = optimizer.state.get(p)
            if state:
                state.pop("previous_direction", None)  # SGD-HD
                if "moved" in state:  # Adam-HD
                    state["moved"] = False
            continue
        if p.grad.is_sparse:
            raise ValueError(f"{type(optimizer).__name__} does not support sparse gradients.")
        active.append(p)
        gradients.append(p.grad if weight_decay == 0 else p.grad.add(p, alpha=weight_decay))
    return active, gradients


def _total(terms: list[torch.Tensor]) -> float:
    """The sum of the hypergradient's terms, as a Python float (one device sync)."""
    return float(torch.stack(terms).sum()) if terms else 0.0
