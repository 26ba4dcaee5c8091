"""The warmup-then-decay schedules PyTorch lacks, and the checks every factory shares.

Each schedule here is a :class:`torch.optim.lr_scheduler.LambdaLR` with one of the multipliers
below. Each multiplier is a small frozen dataclass holding only ints, floats and strs:
``LambdaLR.state_dict()`` saves a callable object's ``__dict__`` (never a lambda's), so a schedule
built from them round-trips through ``torch.save`` and ``torch.load(weights_only=True)``.

All of them share one warmup rule. With ``warmup_steps = w``, the multiplier at step ``t`` (the
number of ``scheduler.step()`` calls so far) is ``(t + 1) / (w + 1)`` for ``t < w``: with
``w = 4`` the first steps train at 0.2, 0.4, 0.6 and 0.8 of the LR, never at 0, and step ``w``
at the full LR. The decay that follows reaches its end value at ``t = total_steps``, the step after
the last one a run of ``total_steps`` steps trains with (PyTorch's ``CosineAnnealingLR`` and
transformers' schedules count the same way), and stays there if the schedule is stepped further.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


DECAY_SHAPES: dict[str, Callable[[float], float]] = {
    "linear": lambda progress: 1.0 - progress,
    "cosine": lambda progress: 0.5 * (1.0 + math.cos(math.pi * progress)),
    "1-sqrt": lambda progress: 1.0 - math.sqrt(progress),
}


def _warmup(step: int, warmup_steps: int) -> float:
    return (step + 1) / (warmup_steps + 1)


def _progress(step: int, start: int, end: int) -> float:
    """How far ``step`` is through ``[start, end]``, clipped to [0, 1]; 1 once ``start >= end``."""
    if end <= start:
        return 1.0
    return min(1.0, max(0.0, (step - start) / (end - start)))


@dataclass(frozen=True)
class WarmupConstant:
    """Linear warmup over ``warmup_steps`` steps, then 1.

    Args:
        warmup_steps: Steps of warmup; 0 gives a constant multiplier of 1.
    """

    warmup_steps: int

    def __call__(self, step: int) -> float:
        return _warmup(step, self.warmup_steps) if step < self.warmup_steps else 1.0


@dataclass(frozen=True)
class WarmupCosine:
    """Linear warmup, then a half cosine from 1 down to ``min_lr_ratio`` at ``total_steps``.

    After warmup, ``min_lr_ratio + (1 - min_lr_ratio) * (1 + cos(pi * p)) / 2`` with
    ``p = (t - warmup_steps) / (total_steps - warmup_steps)``.

    Args:
        warmup_steps: Steps of warmup.
        total_steps: The step at which the multiplier reaches ``min_lr_ratio``.
        min_lr_ratio: The final multiplier, a fraction of each group's initial LR.
    """

    warmup_steps: int
    total_steps: int
    min_lr_ratio: float = 0.0

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return _warmup(step, self.warmup_steps)
        progress = _progress(step, self.warmup_steps, self.total_steps)
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * DECAY_SHAPES["cosine"](progress)


@dataclass(frozen=True)
class WarmupPolynomial:
    """Linear warmup, then ``end_factor + (1 - end_factor) * (1 - p) ** power``.

    ``p`` is the progress through the decay, as in :class:`WarmupCosine`; ``power=1`` is a linear
    decay.

    Args:
        warmup_steps: Steps of warmup.
        total_steps: The step at which the multiplier reaches ``end_factor``.
        power: The exponent of the decay, > 0.
        end_factor: The final multiplier.
    """

    warmup_steps: int
    total_steps: int
    power: float = 1.0
    end_factor: float = 0.0

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return _warmup(step, self.warmup_steps)
        remaining = 1.0 - _progress(step, self.warmup_steps, self.total_steps)
        return self.end_factor + (1.0 - self.end_factor) * remaining**self.power


@dataclass(frozen=True)
class WarmupStableDecay:
    """Warmup-stable-decay: linear warmup, a plateau at 1, then a decay to ``min_lr_ratio``.

    The decay starts at ``decay_start = max(warmup_steps, total_steps - decay_steps)`` and
    follows ``min_lr_ratio + (1 - min_lr_ratio) * shape(p)`` with
    ``p = (t - decay_start) / (total_steps - decay_start)``, where ``shape`` is ``1 - p``
    (``"linear"``), ``(1 + cos(pi * p)) / 2`` (``"cosine"``) or ``1 - sqrt(p)`` (``"1-sqrt"``).

    Args:
        warmup_steps: Steps of warmup.
        decay_steps: Steps of decay, at the end of the run.
        total_steps: The step at which the multiplier reaches ``min_lr_ratio``.
        decay_shape: ``"linear"``, ``"cosine"`` or ``"1-sqrt"``.
        min_lr_ratio: The final multiplier.
    """

    warmup_steps: int
    decay_steps: int
    total_steps: int
    decay_shape: str = "linear"
    min_lr_ratio: float = 0.0

    @property
    def decay_start(self) -> int:
        """The first step of the decay."""
        return max(self.warmup_steps, self.total_steps - self.decay_steps)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return _warmup(step, self.warmup_steps)
        if step < self.decay_start:
            return 1.0
        progress = _progress(step, self.decay_start, self.total_steps)
        shape = DECAY_SHAPES[self.decay_shape](progress)
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * shape


def check_number(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
) -> Any:
    """Check that ``value`` is a finite number in the given interval and return it as plain Python.

    NumPy scalars (what some engines sample) come back as ``int`` or ``float``, so they can go
    into a state dict loadable with ``torch.load(weights_only=True)``.

    Raises:
        TypeError: ``value`` is not a number (an int with ``integer=True``); a bool never is.
        ValueError: ``value`` is not finite or is out of range, e.g.
            ``"`gamma` must be in (0, 1], but got gamma=1.5."``
    """
    expected = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, expected):
        kind = "an int" if integer else "a number"
        raise TypeError(f"`{name}` must be {kind}, but got {name}={value!r}.")
    number: Any = value
    plain = int(number) if integer else float(number)
    if low is not None and high is not None:
        constraint = f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    elif low is not None:
        constraint = f"{'>' if low_open else '>='} {low}"
    else:
        constraint = f"{'<' if high_open else '<='} {high}"
    out_of_range = (
        not math.isfinite(plain)
        or (low is not None and (plain <= low if low_open else plain < low))
        or (high is not None and (plain >= high if high_open else plain > high))
    )
    if out_of_range:
        raise ValueError(f"`{name}` must be {constraint}, but got {name}={value!r}.")
    return plain


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> Any:
    """Check that ``value`` is one of ``choices`` and return it.

    Raises:
        ValueError: It is not, e.g. ``"`mode` must be one of ['min', 'max'], but got mode='x'."``
    """
    if isinstance(value, bool) or value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}, but got {name}={value!r}.")
    return value


def check_fraction(name: str, value: Any) -> float:
    """Check a fraction of the horizon (a warmup, for instance): a number in [0, 1)."""
    return float(check_number(name, value, low=0, high=1, high_open=True))


def plain(value: Any) -> Any:
    """NumPy scalars and 0-d tensors as Python numbers, tuples as lists; anything else as is."""
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if getattr(value, "shape", None) == () and hasattr(value, "item"):
        return value.item()
    return value


def initial_lrs(optimizer: Optimizer) -> list[float]:
    """The LR of each param group now, which ratios such as ``min_lr_ratio`` refer to."""
    return [float(group["lr"]) for group in optimizer.param_groups]


def steps_of(fraction: float, horizon: int) -> int:
    """``fraction`` of ``horizon``, rounded to the nearest step (half to even, as ``round``)."""
    return round(fraction * horizon)


def _ratio(name: str, value: Any) -> float:
    return float(check_number(name, value, low=0, high=1))


def constant_with_warmup(
    optimizer: Optimizer, *, horizon: int, warmup_fraction: float = 0.1
) -> LambdaLR:
    """Linear warmup over the first ``warmup_fraction`` of the horizon, then the constant LR.

    With ``w = round(warmup_fraction * horizon)``, step ``t`` trains at ``(t + 1) / (w + 1)``
    times the LR for ``t < w``, and at the full LR from step ``w`` on.

    Args:
        optimizer: The optimizer.
        horizon: Steps in the run.
        warmup_fraction: Fraction of the horizon spent in warmup, in [0, 1).
    """
    warmup = steps_of(check_fraction("warmup_fraction", warmup_fraction), horizon)
    return LambdaLR(optimizer, WarmupConstant(warmup))


def cosine(
    optimizer: Optimizer,
    *,
    horizon: int,
    warmup_fraction: float = 0.0,
    min_lr_ratio: float = 0.0,
) -> LambdaLR:
    """Linear warmup, then cosine decay to ``min_lr_ratio`` times each group's LR at the horizon.

    Args:
        optimizer: The optimizer.
        horizon: Steps in the run.
        warmup_fraction: Fraction of the horizon spent in warmup, in [0, 1).
        min_lr_ratio: The final LR as a fraction of each group's initial LR, in [0, 1].
    """
    warmup = steps_of(check_fraction("warmup_fraction", warmup_fraction), horizon)
    return LambdaLR(optimizer, WarmupCosine(warmup, horizon, _ratio("min_lr_ratio", min_lr_ratio)))


def linear(
    optimizer: Optimizer,
    *,
    horizon: int,
    warmup_fraction: float = 0.0,
    end_factor: float = 0.0,
) -> LambdaLR:
    """Linear warmup, then linear decay to ``end_factor`` times each group's LR at the horizon.

    Args:
        optimizer: The optimizer.
        horizon: Steps in the run.
        warmup_fraction: Fraction of the horizon spent in warmup, in [0, 1).
        end_factor: The final LR as a fraction of each group's initial LR, in [0, 1].
    """
    warmup = steps_of(check_fraction("warmup_fraction", warmup_fraction), horizon)
    return LambdaLR(
        optimizer, WarmupPolynomial(warmup, horizon, 1.0, _ratio("end_factor", end_factor))
    )


def polynomial(
    optimizer: Optimizer,
    *,
    horizon: int,
    warmup_fraction: float = 0.0,
    power: float = 1.0,
    end_factor: float = 0.0,
) -> LambdaLR:
    """Linear warmup, then polynomial decay ``(1 - progress) ** power`` down to ``end_factor``.

    Args:
        optimizer: The optimizer.
        horizon: Steps in the run.
        warmup_fraction: Fraction of the horizon spent in warmup, in [0, 1).
        power: Exponent of the decay, > 0 (1 is linear, 2 falls fast then flattens).
        end_factor: The final LR as a fraction of each group's initial LR, in [0, 1].
    """
    warmup = steps_of(check_fraction("warmup_fraction", warmup_fraction), horizon)
    power = float(check_number("power", power, low=0, low_open=True))
    return LambdaLR(
        optimizer, WarmupPolynomial(warmup, horizon, power, _ratio("end_factor", end_factor))
    )


def warmup_stable_decay(
    optimizer: Optimizer,
    *,
    horizon: int,
    warmup_fraction: float = 0.05,
    decay_fraction: float = 0.2,
    decay_shape: str = "linear",
    min_lr_ratio: float = 0.0,
) -> LambdaLR:
    """Warmup-stable-decay: warmup, a constant LR, then a decay over the end of the horizon.

    Args:
        optimizer: The optimizer.
        horizon: Steps in the run.
        warmup_fraction: Fraction of the horizon spent in warmup, in [0, 1).
        decay_fraction: Fraction of the horizon spent decaying, at its end, in [0, 1];
            ``warmup_fraction + decay_fraction <= 1``.
        decay_shape: ``"linear"``, ``"cosine"`` or ``"1-sqrt"``.
        min_lr_ratio: The final LR as a fraction of each group's initial LR, in [0, 1].
    """
    warmup_fraction = check_fraction("warmup_fraction", warmup_fraction)
    decay_fraction = float(check_number("decay_fraction", decay_fraction, low=0, high=1))
    if warmup_fraction + decay_fraction > 1:
        raise ValueError(
            "`warmup_fraction + decay_fraction <= 1` must hold, "
            f"but got ({warmup_fraction=}, {decay_fraction=})."
        )
    multiplier = WarmupStableDecay(
        warmup_steps=steps_of(warmup_fraction, horizon),
        decay_steps=steps_of(decay_fraction, horizon),
        total_steps=horizon,
        decay_shape=check_choice("decay_shape", decay_shape, list(DECAY_SHAPES)),
        min_lr_ratio=_ratio("min_lr_ratio", min_lr_ratio),
    )
    return LambdaLR(optimizer, multiplier)
