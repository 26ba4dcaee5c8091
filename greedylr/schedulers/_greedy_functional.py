"""The GreedyLR rule as a pure function: ``greedy_update(state, metric, config) -> (lrs, state)``.

:class:`greedylr.schedulers.GreedyLR` runs the same two private steps in place (``_observe``
updates the counters and the window and says whether the LR must move, ``_move`` moves it), so
the rule exists once; it only adds the exchange of LRs with the optimizer's param groups.
:func:`greedy_update` never mutates its inputs: calling it twice on the same state gives the
same answer, and every earlier state stays valid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from dataclasses import field
from typing import Literal


Mode = Literal["min", "max"]
ThresholdMode = Literal["abs", "rel"]
Variant = Literal["hf", "paper"]
_MODES = ("min", "max")
_THRESHOLD_MODES = ("abs", "rel")
_VARIANTS = ("hf", "paper")
_isfinite = math.isfinite


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
    _better: int = field(init=False, repr=False, compare=False)
    _rel_scale: float = field(init=False, repr=False, compare=False)
    _hf: bool = field(init=False, repr=False, compare=False)
    _compact_at: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_config(self)
        # is_better as one precomputed branch: 0 min/abs, 1 min/rel, 2 max/abs, 3 max/rel.
        better = (0 if self.mode == "min" else 2) + (self.threshold_mode == "rel")
        rel_scale = 1.0 - self.threshold if self.mode == "min" else 1.0 + self.threshold
        object.__setattr__(self, "_better", better)
        object.__setattr__(self, "_rel_scale", rel_scale)
        object.__setattr__(self, "_hf", self.variant == "hf")
        # The window's history is cut back to the live values once it holds this many.
        object.__setattr__(self, "_compact_at", 2 * self.window_size + 64)

    @property
    def worst(self) -> float:
        """The starting value of ``best``: +inf when minimizing, -inf when maximizing."""
        return math.inf if self.mode == "min" else -math.inf


def _check_config(config: GreedyConfig) -> None:
    factor, patience, cooldown, warmup = (
        config.factor,
        config.patience,
        config.cooldown,
        config.warmup,
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
            raise ValueError(
                f"`min_lr` must be finite and >= 0, but got min_lr={low} (group {group})."
            )
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


_NONE, _INCREASE, _DECREASE = 0, 1, -1
COUNTER_FIELDS = (
    "best",
    "num_good_steps",
    "num_bad_steps",
    "cooldown_counter",
    "warmup_counter",
    "reset_counter",
)
_STATE_FIELDS = ("lrs", *COUNTER_FIELDS, "window_log", "window_end", "window_sum")


class GreedyState:
    """Everything GreedyLR remembers between steps.

    Attributes:
        lrs: The current learning rate of each param group.
        best: The best (smoothed) metric seen since the last reset.
        num_good_steps: Consecutive steps that beat ``best`` by more than the threshold.
        num_bad_steps: Consecutive steps that did not.
        cooldown_counter: Steps left in the cooldown that follows a decrease.
        warmup_counter: Steps left in the warmup that follows an increase.
        reset_counter: Steps (or decreases at ``min_lr``) left before a reset; see
            :class:`GreedyLR` for each variant.
        window_log: The smoothing window's history: the window is the last ``window_size``
            values of ``window_log[:window_end]``. The list is shared between a state and the
            states made from it (appended to only by its newest owner), which makes a push O(1)
            without ever changing what an older state sees.
        window_end: How many values of ``window_log`` belong to this state.
        window_sum: The running sum of the window, updated exactly as transformers'
            ``StreamingAverage`` does (add the new value, then subtract the one leaving), so both
            give bit-identical means.
    """

    __slots__ = _STATE_FIELDS

    def __init__(
        self,
        *,
        lrs: tuple[float, ...],
        best: float,
        num_good_steps: int = 0,
        num_bad_steps: int = 0,
        cooldown_counter: int = 0,
        warmup_counter: int = 0,
        reset_counter: int,
        window_log: list[float] | None = None,
        window_end: int = 0,
        window_sum: float = 0.0,
    ) -> None:
        self.lrs = lrs
        self.best = best
        self.num_good_steps = num_good_steps
        self.num_bad_steps = num_bad_steps
        self.cooldown_counter = cooldown_counter
        self.warmup_counter = warmup_counter
        self.reset_counter = reset_counter
        self.window_log = [] if window_log is None else window_log
        self.window_end = window_end if window_log is not None else 0
        self.window_sum = window_sum

    def copy(self) -> GreedyState:
        """A new state with the same values; O(1) (the window history is shared safely)."""
        new = GreedyState.__new__(GreedyState)
        for name in _STATE_FIELDS:
            setattr(new, name, getattr(self, name))
        return new

    def window_values(self, window_size: int) -> list[float]:
        """The values in the smoothing window, oldest first."""
        return self.window_log[max(0, self.window_end - window_size) : self.window_end]

    def _key(self) -> tuple[object, ...]:
        return (
            *(getattr(self, name) for name in _STATE_FIELDS[:7]),
            self.window_log[: self.window_end],
            self.window_sum,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GreedyState) and self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in _STATE_FIELDS[:7])
        return f"GreedyState({fields}, window_end={self.window_end}, window_sum={self.window_sum})"


def initial_state(config: GreedyConfig) -> GreedyState:
    """The state before the first step."""
    return GreedyState(lrs=config.initial_lrs, best=config.worst, reset_counter=config.reset_start)


def greedy_update(
    state: GreedyState, metric: float, config: GreedyConfig
) -> tuple[tuple[float, ...], GreedyState]:
    """One GreedyLR step: see the metric, return the new learning rates and the new state.

    Args:
        state: The state after the previous step (:func:`initial_state` before the first).
            It is not changed.
        metric: The loss (``mode="min"``) or score (``mode="max"``) just observed. A NaN or
            infinite value counts as a bad step and never enters the window or ``best``.
        config: The hyperparameters.

    Returns:
        The learning rate of each param group after this step, and the new state.
    """
    new = state.copy()
    event = _observe(new, float(metric), config)
    if event:
        _move(new, event, config)
    return new.lrs, new


def _observe(state: GreedyState, value: float, config: GreedyConfig) -> int:
    """Update the counters, ``best`` and the window in place; say whether the LR must move."""
    finite = _isfinite(value)
    if finite and config.smooth:
        log, end, size = state.window_log, state.window_end, config.window_size
        if len(log) != end:  # an older state is pushed again: branch off a copy
            log = log[:end]
        if end >= config._compact_at:  # keep only the live values (amortized O(1))
            log = log[end - size :]
            end = size
        log.append(value)
        end += 1
        total = state.window_sum + value
        if end > size:
            total -= log[end - 1 - size]
        state.window_log, state.window_end, state.window_sum = log, end, total
        value = total / (end if end < size else size)
    # Better by more than the threshold (NaN never is); the same arithmetic as transformers.
    rule, best = config._better, state.best
    if not finite:
        better = False
    elif rule == 0:
        better = value < best - config.threshold
    elif rule == 1:
        better = value < best * config._rel_scale
    elif rule == 2:
        better = value > best + config.threshold
    else:
        better = value > best * config._rel_scale
    if not config._hf:
        return _observe_paper(state, value, better, config)
    # "hf": cooldown, then warmup, freeze the comparison.
    if state.cooldown_counter > 0:
        state.cooldown_counter -= 1
        state.num_good_steps = state.num_bad_steps = 0
        return _NONE
    if state.warmup_counter > 0:
        state.warmup_counter -= 1
        state.num_good_steps = state.num_bad_steps = 0
        return _NONE
    if better:
        state.best = value
        state.num_bad_steps = 0
        state.num_good_steps += 1
        if state.num_good_steps > config.patience:
            state.warmup_counter = config.warmup
            state.num_good_steps = 0
            return _INCREASE
        return _NONE
    state.num_good_steps = 0
    state.num_bad_steps += 1
    if state.num_bad_steps > config.patience:
        state.cooldown_counter = config.cooldown
        state.num_bad_steps = 0
        return _DECREASE
    return _NONE


def _observe_paper(state: GreedyState, value: float, better: bool, config: GreedyConfig) -> int:
    if better:
        state.best = value
        state.num_bad_steps = 0
        state.num_good_steps += 1
    else:
        state.num_good_steps = 0
        state.num_bad_steps += 1
    if state.cooldown_counter > 0:
        state.cooldown_counter -= 1
        state.num_bad_steps = 0
    if state.warmup_counter > 0:
        state.warmup_counter -= 1
        state.num_good_steps = 0
    event = _NONE
    if state.num_bad_steps > config.patience:
        state.cooldown_counter = config.cooldown
        state.num_bad_steps = 0
        event = _DECREASE
    elif state.num_good_steps > config.patience:
        state.warmup_counter = config.warmup
        state.num_good_steps = 0
        event = _INCREASE
    if state.reset_counter == 0:  # the periodic wipe; the LRs and the window are kept
        state.best = config.worst
        state.num_good_steps = state.num_bad_steps = 0
        state.cooldown_counter = state.warmup_counter = 0
        state.reset_counter = config.reset_start
    state.reset_counter -= 1
    return event


def _move(state: GreedyState, event: int, config: GreedyConfig) -> None:
    """Apply an increase or a decrease to ``state.lrs`` (and, in "hf", the reset rule)."""
    factor, eps = config.factor, config.eps
    new_lrs = []
    if event == _INCREASE:
        for lr, high in zip(state.lrs, config.max_lrs):
            candidate = min(lr / factor, high)
            new_lrs.append(candidate if candidate - lr > eps else lr)
        state.lrs = tuple(new_lrs)
        if config.variant == "hf":
            state.reset_counter = config.reset_start
        return
    for lr, low in zip(state.lrs, config.min_lrs):
        candidate = max(lr * factor, low)
        new_lrs.append(candidate if lr - candidate > eps else lr)
    state.lrs = tuple(new_lrs)
    if config.variant == "hf" and all(lr <= low for lr, low in zip(state.lrs, config.min_lrs)):
        state.reset_counter -= 1
        if state.reset_counter <= 0:  # back to the start; the cooldown still begins
            state.lrs = config.initial_lrs
            state.best = config.worst
            state.num_good_steps = state.num_bad_steps = state.warmup_counter = 0
            state.cooldown_counter = config.cooldown
            state.reset_counter = config.reset_start
            state.window_log, state.window_end, state.window_sum = [], 0, 0.0
