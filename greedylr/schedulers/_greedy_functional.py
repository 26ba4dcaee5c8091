"""The GreedyLR rule as a pure function: ``greedy_update(state, metric, config) -> (lrs, state)``.

:class:`greedylr.schedulers.GreedyLR` only moves values between this core and the optimizer's
param groups, so the rule can be tested (and reused in loops without a torch optimizer) on its
own. Nothing here mutates its inputs: calling :func:`greedy_update` twice on the same state gives
the same answer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from typing import NamedTuple


Mode = Literal["min", "max"]
ThresholdMode = Literal["abs", "rel"]
Variant = Literal["hf", "paper"]
_MODES = ("min", "max")
_THRESHOLD_MODES = ("abs", "rel")
_VARIANTS = ("hf", "paper")


@dataclass(frozen=True)
class GreedyConfig:
    """The hyperparameters of GreedyLR, validated once; see :class:`GreedyLR` for each one.

    ``initial_lrs``, ``min_lrs`` and ``max_lrs`` hold one value per param group.
    """

    initial_lrs: tuple[float, ...]
    min_lrs: tuple[float, ...]
    max_lrs: tuple[float, ...]
    mode: Mode = "min"
    factor: float = 0.95
    patience: int = 10
    threshold: float = 1e-6
    threshold_mode: ThresholdMode = "abs"
    cooldown: int = 0
    warmup: int = 0
    eps: float = 1e-8
    smooth: bool = False
    window_size: int = 50
    reset_start: int = 500
    variant: Variant = "hf"

    def __post_init__(self) -> None:
        _check_config(self)

    @property
    def worst(self) -> float:
        """The starting value of ``best``: +inf when minimizing, -inf when maximizing."""
        return math.inf if self.mode == "min" else -math.inf


def _check_config(config: GreedyConfig) -> None:
    factor, patience, cooldown, warmup = (
        config.factor, config.patience, config.cooldown, config.warmup
    )
    if config.mode not in _MODES:
        raise ValueError(f"`mode` must be one of {_MODES}, but got mode={config.mode!r}.")
    if config.threshold_mode not in _THRESHOLD_MODES:
        raise ValueError(
            f"`threshold_mode` must be one of {_THRESHOLD_MODES}, "
            f"but got threshold_mode={config.threshold_mode!r}."
        )
    if config.variant not in _VARIANTS:
        raise ValueError(
            f"`variant` must be one of {_VARIANTS}, but got variant={config.variant!r}."
        )
    if not 0.0 < factor < 1.0:
        raise ValueError(f"`factor` must be in (0, 1), but got {factor=}.")
    for name, value in (("patience", patience), ("cooldown", cooldown), ("warmup", warmup)):
        _check_int(name, value, minimum=0)
    _check_int("window_size", config.window_size, minimum=1)
    _check_int("reset_start", config.reset_start, minimum=1)
    threshold, eps = config.threshold, config.eps
    if not (math.isfinite(threshold) and threshold >= 0.0):
        raise ValueError(f"`threshold` must be a finite number >= 0, but got {threshold=}.")
    if not (math.isfinite(eps) and eps >= 0.0):
        raise ValueError(f"`eps` must be a finite number >= 0, but got {eps=}.")
    groups = len(config.initial_lrs)
    for name in ("min_lrs", "max_lrs"):
        if len(getattr(config, name)) != groups:
            raise ValueError(
                f"`{name}` must have one value per param group ({groups}), "
                f"but got {name}={list(getattr(config, name))}."
            )
    for group, (low, high) in enumerate(zip(config.min_lrs, config.max_lrs)):
        if not (math.isfinite(low) and low >= 0.0):
            raise ValueError(f"`min_lr` must be finite and >= 0, but got min_lr={low} (group {group}).")
        if not math.isfinite(high):
            raise ValueError(f"`max_lr` must be finite, but got max_lr={high} (group {group}).")
        if low > high:
            raise ValueError(
                f"`min_lr <= max_lr` must hold, but got (min_lr={low}, max_lr={high}) "
                f"for param group {group}."
            )


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{name}` must be an int, but got {name}={value!r}.")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, but got {name}={value}.")


class RollingWindow(NamedTuple):
    """The smoothing window as a persistent value: O(1) per push, never mutated in place.

    ``log[:end]`` is this window's history since the last reset (or compaction); the window is
    its last ``min(end, window_size)`` values and ``total`` their running sum. Pushing appends
    to the shared ``log`` only when this window is its newest owner (``len(log) == end``); an
    older window that is pushed again copies first, so every earlier state stays valid. The
    sum is updated exactly as transformers' ``StreamingAverage`` does (add the new value, then
    subtract the one leaving), so both give bit-identical means.
    """

    log: list[float]
    end: int
    total: float

    @classmethod
    def empty(cls) -> RollingWindow:
        """A window with no values."""
        return cls([], 0, 0.0)

    @classmethod
    def from_values(cls, values: Sequence[float], total: float) -> RollingWindow:
        """Rebuild a window from its values (oldest first) and its running sum."""
        return cls([float(value) for value in values], len(values), float(total))

    def values(self, window_size: int) -> list[float]:
        """The values in the window, oldest first."""
        return self.log[max(0, self.end - window_size) : self.end]

    def push(self, value: float, window_size: int) -> tuple[float, RollingWindow]:
        """Add ``value``; return the mean of the window and the new window."""
        log, end = self.log, self.end
        if len(log) != end:  # an older state is being pushed again: branch off a copy
            log = log[:end]
        if end >= 2 * window_size:  # compact: keep only the live values (amortized O(1))
            log = log[end - window_size :]
            end = window_size
        log.append(value)
        end += 1
        total = self.total + value
        if end > window_size:
            total -= log[end - 1 - window_size]
        return total / min(end, window_size), RollingWindow(log, end, total)


class GreedyState(NamedTuple):
    """Everything GreedyLR remembers between steps.

    Attributes:
        lrs: The current learning rate of each param group.
        best: The best (smoothed) metric seen since the last reset.
        num_good_steps: Consecutive steps that beat ``best`` by more than the threshold.
        num_bad_steps: Consecutive steps that did not.
        cooldown_counter: Steps left in the cooldown that follows a decrease.
        warmup_counter: Steps left in the warmup that follows an increase.
        reset_counter: Steps left before a reset (see :class:`GreedyLR` for each variant).
        window: The smoothing window.
    """

    lrs: tuple[float, ...]
    best: float
    num_good_steps: int
    num_bad_steps: int
    cooldown_counter: int
    warmup_counter: int
    reset_counter: int
    window: RollingWindow


def initial_state(config: GreedyConfig) -> GreedyState:
    """The state before the first step."""
    return GreedyState(
        lrs=config.initial_lrs,
        best=config.worst,
        num_good_steps=0,
        num_bad_steps=0,
        cooldown_counter=0,
        warmup_counter=0,
        reset_counter=config.reset_start,
        window=RollingWindow.empty(),
    )


def is_better(value: float, best: float, config: GreedyConfig) -> bool:
    """Whether ``value`` beats ``best`` by more than the threshold. NaN never does."""
    if config.mode == "min":
        if config.threshold_mode == "rel":
            return value < best * (1.0 - config.threshold)
        return value < best - config.threshold
    if config.threshold_mode == "rel":
        return value > best * (1.0 + config.threshold)
    return value > best + config.threshold


def _increase(lrs: tuple[float, ...], config: GreedyConfig) -> tuple[float, ...]:
    factor, eps = config.factor, config.eps
    new_lrs = []
    for lr, high in zip(lrs, config.max_lrs):
        candidate = min(lr / factor, high)
        new_lrs.append(candidate if candidate - lr > eps else lr)
    return tuple(new_lrs)


def _decrease(lrs: tuple[float, ...], config: GreedyConfig) -> tuple[float, ...]:
    factor, eps = config.factor, config.eps
    new_lrs = []
    for lr, low in zip(lrs, config.min_lrs):
        candidate = max(lr * factor, low)
        new_lrs.append(candidate if lr - candidate > eps else lr)
    return tuple(new_lrs)


def greedy_update(
    state: GreedyState, metric: float, config: GreedyConfig
) -> tuple[tuple[float, ...], GreedyState]:
    """One GreedyLR step: see the metric, return the new learning rates and the new state.

    Args:
        state: The state after the previous step (:func:`initial_state` before the first).
        metric: The loss (``mode="min"``) or score (``mode="max"``) just observed. A NaN or
            infinite value counts as a bad step and never enters the window or ``best``.
        config: The hyperparameters.

    Returns:
        The learning rate of each param group after this step, and the new state.
    """
    value = float(metric)
    finite = math.isfinite(value)
    window = state.window
    if config.smooth and finite:
        value, window = window.push(value, config.window_size)
    if config.variant == "hf":
        return _hf_update(state._replace(window=window), value, finite, config)
    return _paper_update(state._replace(window=window), value, finite, config)


def _hf_update(
    state: GreedyState, value: float, finite: bool, config: GreedyConfig
) -> tuple[tuple[float, ...], GreedyState]:
    lrs, best, good, bad, cooldown, warmup, reset_counter, window = state
    if cooldown > 0:
        cooldown, good, bad = cooldown - 1, 0, 0
    elif warmup > 0:
        warmup, good, bad = warmup - 1, 0, 0
    else:
        if finite and is_better(value, best, config):
            best, good, bad = value, good + 1, 0
        else:
            good, bad = 0, bad + 1
        if good > config.patience:
            lrs = _increase(lrs, config)
            warmup, good, reset_counter = config.warmup, 0, config.reset_start
        elif bad > config.patience:
            lrs = _decrease(lrs, config)
            cooldown, bad = config.cooldown, 0
            if all(lr <= low for lr, low in zip(lrs, config.min_lrs)):
                reset_counter -= 1
                if reset_counter <= 0:  # the cooldown still starts, as in transformers
                    reset = initial_state(config)._replace(cooldown_counter=config.cooldown)
                    return reset.lrs, reset
    new_state = GreedyState(lrs, best, good, bad, cooldown, warmup, reset_counter, window)
    return lrs, new_state


def _paper_update(
    state: GreedyState, value: float, finite: bool, config: GreedyConfig
) -> tuple[tuple[float, ...], GreedyState]:
    lrs, best, good, bad, cooldown, warmup, reset_counter, window = state
    if finite and is_better(value, best, config):
        best, good, bad = value, good + 1, 0
    else:
        good, bad = 0, bad + 1
    if cooldown > 0:
        cooldown, bad = cooldown - 1, 0
    if warmup > 0:
        warmup, good = warmup - 1, 0
    if bad > config.patience:
        lrs = _decrease(lrs, config)
        cooldown, bad = config.cooldown, 0
    if good > config.patience:
        lrs = _increase(lrs, config)
        warmup, good = config.warmup, 0
    if reset_counter == 0:
        best, good, bad, cooldown, warmup = config.worst, 0, 0, 0, 0
        reset_counter = config.reset_start
    new_state = GreedyState(lrs, best, good, bad, cooldown, warmup, reset_counter - 1, window)
    return lrs, new_state
