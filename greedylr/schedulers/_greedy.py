"""GreedyLR as a PyTorch learning-rate scheduler."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any
from typing import SupportsFloat

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import ReduceLROnPlateau

from greedylr.schedulers._greedy_functional import COUNTER_FIELDS
from greedylr.schedulers._greedy_functional import GreedyConfig
from greedylr.schedulers._greedy_functional import GreedyState
from greedylr.schedulers._greedy_functional import Mode
from greedylr.schedulers._greedy_functional import ThresholdMode
from greedylr.schedulers._greedy_functional import Variant
from greedylr.schedulers._greedy_functional import _move
from greedylr.schedulers._greedy_functional import _observe
from greedylr.schedulers._greedy_functional import initial_state


_CONFIG_KEYS = (
    "mode",
    "factor",
    "patience",
    "threshold",
    "threshold_mode",
    "cooldown",
    "warmup",
    "eps",
    "smooth",
    "window_size",
    "reset_start",
    "variant",
)
_COUNTER_KEYS = COUNTER_FIELDS  # best, the step counts, the cooldown/warmup/reset counters


# A ReduceLROnPlateau by type only (none of its __init__, state or methods is used): Lightning
# and the Hugging Face Trainer pass the monitored metric to `step` only for schedulers that are
# `isinstance(scheduler, ReduceLROnPlateau)`, so GreedyLR gets it there without extra flags.
class GreedyLR(ReduceLROnPlateau):
    """Raise the learning rate while the metric improves, lower it while it does not.

    GreedyLR is the two-sided sibling of :class:`torch.optim.lr_scheduler.ReduceLROnPlateau`
    (same parameter names, same ``step(metrics)``). After each ``step(metrics)`` a step is
    *good* when the (optionally smoothed) metric beats the best value seen so far by more than
    ``threshold``, and *bad* otherwise. When more than ``patience`` consecutive steps are good,
    every group's LR becomes ``min(lr / factor, max_lr)``; when more than ``patience``
    consecutive steps are bad, it becomes ``max(lr * factor, min_lr)``. A change smaller than
    ``eps`` is not applied.

    **variant="hf"** (default) reproduces ``transformers.optimization.GreedyLR`` step for step.
    With ``patience=2, cooldown=1, warmup=1`` and an improving loss at every step:

    - steps 1, 2, 3: good steps 1, 2, 3; at step 3, 3 > patience: the LR rises (``lr / factor``)
      and the warmup counter is set to 1;
    - step 4: in warmup; nothing is compared, ``best`` is frozen, both counters are zeroed;
    - steps 5, 6, 7: good steps 1, 2, 3: the LR rises again at step 7.

    With a flat loss after the first step, steps 2, 3, 4 are bad and the LR falls at step 4
    (``lr * factor``); step 5 is cooldown (ignored); steps 6, 7, 8 are bad; it falls at step 8.
    Each increase also restarts the reset counter at ``reset_start``. Each decrease that leaves
    every group at its ``min_lr`` counts it down; when it reaches 0 the scheduler resets: every
    LR returns to its initial value, ``best``, the counters and the window are cleared, and the
    cooldown that follows every decrease starts.

    **variant="paper"** is Algorithm 2 of the research code. Every step is compared (``best``
    keeps updating during cooldown and warmup); cooldown only zeroes the bad-step count and
    warmup only the good-step count, each for ``cooldown`` / ``warmup`` steps after a decrease
    / increase. With ``patience=2, cooldown=1`` and a flat loss: steps 2, 3, 4 are bad, the LR
    falls at step 4, step 5 is bad but zeroed by the cooldown, steps 6, 7, 8 are bad: it falls
    at step 8, as in "hf". The periodic reset clears ``best`` and the counters but keeps the
    LRs and the window, at the end of steps ``reset_start + 1``, ``2 * reset_start + 1``, ...
    (the research code counted only steps where all groups had one LR; here every step counts,
    which is the same for a single group).

    **NaN and inf.** A metric that is NaN or infinite never enters the smoothing window and
    never becomes ``best``: it counts as a bad step (in "hf" it is ignored during cooldown and
    warmup, like any other metric), so a diverging run gets its LR cut.

    **Smoothing.** With ``smooth=True`` the metric compared is the mean of the last
    ``window_size`` finite metrics (the current one included; early on, the mean of those
    seen so far). Each step costs O(1) whatever the window.

    Args:
        optimizer: The wrapped optimizer.
        mode: ``"min"`` for a loss, ``"max"`` for an accuracy.
        factor: The LR is multiplied by ``factor`` to decrease and divided by it to increase;
            in (0, 1).
        patience: The LR moves after more than ``patience`` consecutive good (or bad) steps.
        threshold: Margin by which the metric must beat ``best`` to count as good.
        threshold_mode: ``"abs"``: better if ``x < best - threshold``; ``"rel"``: better if
            ``x < best * (1 - threshold)`` (mirrored for ``mode="max"``).
        cooldown: Steps after a decrease during which bad steps are ignored.
        warmup: Steps after an increase during which good steps are ignored (this is not a
            linear LR warm-up).
        min_lr: Lower bound on the LR, a scalar or one value per param group.
        max_lr: Upper bound on the LR, a scalar or one value per param group.
        eps: A change of the LR smaller than ``eps`` is not applied.
        smooth: Compare a rolling mean of the metric instead of the raw value.
        window_size: Length of the rolling mean.
        reset_start: See the reset rules above; >= 1.
        variant: ``"hf"`` (transformers) or ``"paper"`` (the research code).

    Raises:
        TypeError: ``optimizer`` is not a :class:`torch.optim.Optimizer`.
        ValueError: A value is out of range, e.g.
            ``"`factor` must be in (0, 1), but got factor=1.5."``

    Warns:
        UserWarning: ``min_lr`` is at or above a group's initial LR, so that group's LR can
            never decrease (transformers' default ``min_lr=1e-3`` does this for most LRs).

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(2, 1)
        >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> scheduler = GreedyLR(optimizer, patience=0, min_lr=1e-4)
        >>> scheduler.step(1.0)  # first step: better than +inf, one good step > patience
        >>> round(scheduler.get_last_lr()[0], 6)
        0.105263
    """

    def __init__(
        self,
        optimizer: Optimizer,
        *,
        mode: Mode = "min",
        factor: float = 0.95,
        patience: int = 10,
        threshold: float = 1e-6,
        threshold_mode: ThresholdMode = "abs",
        cooldown: int = 0,
        warmup: int = 0,
        min_lr: float | Sequence[float] = 1e-3,
        max_lr: float | Sequence[float] = 1.0,
        eps: float = 1e-8,
        smooth: bool = False,
        window_size: int = 50,
        reset_start: int = 500,
        variant: Variant = "hf",
    ) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        initial_lrs = tuple(float(group["lr"]) for group in optimizer.param_groups)
        config = GreedyConfig(
            initial_lrs=initial_lrs,
            min_lrs=_per_group("min_lr", min_lr, len(initial_lrs)),
            max_lrs=_per_group("max_lr", max_lr, len(initial_lrs)),
            mode=mode,
            factor=factor,
            patience=patience,
            threshold=threshold,
            threshold_mode=threshold_mode,
            cooldown=cooldown,
            warmup=warmup,
            eps=eps,
            smooth=smooth,
            window_size=window_size,
            reset_start=reset_start,
            variant=variant,
        )
        for group, (lr, low) in enumerate(zip(initial_lrs, config.min_lrs)):
            if low >= lr:
                warnings.warn(
                    f"`min_lr` ({low}) >= the initial LR ({lr}) of param group {group}: its "
                    "LR can never decrease. Pass a smaller `min_lr`.",
                    UserWarning,
                    stacklevel=2,
                )
        self.optimizer = optimizer
        self.config = config
        self.greedy_state = initial_state(config)
        self.base_lrs = list(initial_lrs)
        self.last_epoch = 0

    def step(self, metrics: SupportsFloat) -> None:  # type: ignore[override]
        """See the metric (a loss, or a score with ``mode="max"``) and update the LRs."""
        event = _observe(self.greedy_state, float(metrics), self.config)
        self.last_epoch += 1
        if event:
            self._move_lrs(event)

    def _move_lrs(self, event: int) -> None:
        groups = self.optimizer.param_groups
        if len(groups) != len(self.config.initial_lrs):
            raise RuntimeError(
                f"The optimizer has {len(groups)} param groups but GreedyLR was built for "
                f"{len(self.config.initial_lrs)}; create the scheduler after the last "
                "`add_param_group` call."
            )
        state = self.greedy_state
        # Start from the optimizer's LRs, as transformers does: a user may have changed them.
        state.lrs = tuple(float(group["lr"]) for group in groups)
        _move(state, event, self.config)
        _set_lrs(groups, state.lrs)

    def get_last_lr(self) -> list[float]:  # type: ignore[override]
        """The LR of each param group (after the last step, unless changed since)."""
        return [float(group["lr"]) for group in self.optimizer.param_groups]

    @property  # ReduceLROnPlateau's `best` is an attribute; here it is read-only
    def best(self) -> float:  # type: ignore[override]
        """The best (smoothed) metric since the last reset."""
        return self.greedy_state.best

    def state_dict(self) -> dict[str, Any]:
        """The configuration, the counters and the window, as plain Python values.

        Loadable with ``torch.load(weights_only=True)``.
        """
        config, state = self.config, self.greedy_state
        return {
            **{key: getattr(config, key) for key in _CONFIG_KEYS},
            "initial_lrs": list(config.initial_lrs),
            "min_lrs": list(config.min_lrs),
            "max_lrs": list(config.max_lrs),
            "lrs": self.get_last_lr(),
            **{key: getattr(state, key) for key in _COUNTER_KEYS},
            "window_values": state.window_values(config.window_size),
            "window_sum": state.window_sum,
            "last_epoch": self.last_epoch,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the configuration and the counters; the optimizer's LRs are set to match.

        Besides its own states, a ``variant="hf"`` scheduler loads one saved by
        ``transformers.optimization.GreedyLR`` (the ``scheduler.pt`` of a Hugging Face Trainer
        checkpoint) and continues exactly as transformers would have, its smoothing window
        included. The argument is not mutated.

        Raises:
            ValueError: The state lacks keys (they are named), has another number of param
                groups than the optimizer, or is a transformers state and ``variant="paper"``.

        Warns:
            UserWarning: A transformers state whose smoothing window holds NaN or inf:
                greedylr drops them (it never lets them into the window), so from here on it
                does not follow transformers, whose window mean would stay NaN until a reset.
        """
        if "initial_lrs" not in state_dict and "_init_lrs" in state_dict:
            state_dict = _from_transformers(state_dict, self.config.variant)
        missing = [key for key in _STATE_KEYS if key not in state_dict]
        if missing:
            raise ValueError(
                "`state_dict` must come from the `state_dict()` of greedylr's or transformers' "
                f"GreedyLR, but it lacks the keys {missing} (or '_init_lrs' of transformers')."
            )
        config = GreedyConfig(
            initial_lrs=tuple(float(lr) for lr in state_dict["initial_lrs"]),
            min_lrs=tuple(float(lr) for lr in state_dict["min_lrs"]),
            max_lrs=tuple(float(lr) for lr in state_dict["max_lrs"]),
            **{key: state_dict[key] for key in _CONFIG_KEYS},
        )
        groups = self.optimizer.param_groups
        if len(groups) != len(config.initial_lrs):
            raise ValueError(
                f"The state has {len(config.initial_lrs)} param groups but the optimizer has "
                f"{len(groups)}."
            )
        lrs = tuple(float(lr) for lr in state_dict["lrs"])
        window = [float(value) for value in state_dict["window_values"]]
        self.config = config
        self.greedy_state = GreedyState(
            lrs=lrs,
            **{key: state_dict[key] for key in _COUNTER_KEYS},
            window_log=window,
            window_end=len(window),
            window_sum=float(state_dict["window_sum"]),
        )
        self.base_lrs = list(config.initial_lrs)
        self.last_epoch = int(state_dict["last_epoch"])
        _set_lrs(groups, lrs)


_STATE_KEYS = (
    *_CONFIG_KEYS,
    "initial_lrs",
    "min_lrs",
    "max_lrs",
    "lrs",
    *_COUNTER_KEYS,
    "window_values",
    "window_sum",
    "last_epoch",
)
# transformers.optimization.GreedyLR.state_dict() holds the same rule under other names:
# greedylr's key -> transformers' key where they differ. Its window is in "_streaming_avg"
# ({"values", "sum"}, when smooth=True); it has no "variant" (it is "hf").
_TRANSFORMERS_NAMES = {
    "initial_lrs": "_init_lrs",
    "lrs": "_last_lr",
    "num_good_steps": "num_good_epochs",
    "num_bad_steps": "num_bad_epochs",
    "reset_start": "reset_start_original",
    "reset_counter": "reset_start",
}
_NOT_IN_TRANSFORMERS = ("variant", "window_values", "window_sum")


def _from_transformers(state_dict: dict[str, Any], variant: str) -> dict[str, Any]:
    """A ``transformers.optimization.GreedyLR`` state as a greedylr state (a new dict)."""
    if variant != "hf":
        raise ValueError(
            "A transformers GreedyLR state continues only with `variant='hf'`, "
            f"but got {variant=}."
        )
    keys = {
        key: _TRANSFORMERS_NAMES.get(key, key)
        for key in _STATE_KEYS
        if key not in _NOT_IN_TRANSFORMERS
    }
    missing = [name for name in keys.values() if name not in state_dict]
    window: dict[str, Any] = {"values": [], "sum": 0.0}
    if state_dict.get("smooth"):
        window = state_dict.get("_streaming_avg", {})
        missing += [f"_streaming_avg[{key!r}]" for key in ("values", "sum") if key not in window]
    if missing:
        raise ValueError(
            "`state_dict` looks like a transformers GreedyLR state (it has '_init_lrs'), "
            f"but it lacks the keys {missing}."
        )
    values = [float(value) for value in window["values"]]
    total = float(window["sum"])
    if not all(math.isfinite(value) for value in (*values, total)):
        warnings.warn(
            "The transformers state's smoothing window holds NaN or inf "
            f"(values={values}, sum={total}): greedylr never lets them into the window, so "
            "it drops them and from here on does not follow transformers (whose window mean "
            "would stay NaN until a reset).",
            UserWarning,
            stacklevel=3,
        )
        values = [value for value in values if math.isfinite(value)]
        total = sum(values)
    return {
        **{key: state_dict[name] for key, name in keys.items()},
        "variant": "hf",
        "window_values": values,
        "window_sum": total,
    }


def _set_lrs(groups: list[dict[str, Any]], lrs: Sequence[float]) -> None:
    """Write ``lrs`` into the param groups (a tensor LR is updated in place)."""
    for group, lr in zip(groups, lrs):
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


def _per_group(name: str, value: float | Sequence[float], groups: int) -> tuple[float, ...]:
    if isinstance(value, (list, tuple)):
        if len(value) != groups:
            raise ValueError(
                f"`{name}` must have one value per param group ({groups}), "
                f"but got {name}={list(value)}."
            )
        return tuple(float(item) for item in value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{name}` must be a float or a list of floats, but got {value!r}.")
    if math.isnan(value):
        raise ValueError(f"`{name}` must not be NaN, but got {name}={value}.")
    return (float(value),) * groups
