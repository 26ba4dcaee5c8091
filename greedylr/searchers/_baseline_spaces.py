"""A search space for each baseline schedule, so each can be tuned as hard as GreedyLR.

Every space holds the constant ``"schedule"`` (the registry name), the optimizer's ``"lr"`` and the
schedule's own knobs, named as :func:`greedylr.schedulers.create_schedule` takes them, so a sampled
config builds directly::

    config = dict(sampled_config)
    optimizer = create_optimizer("sgd", model.parameters(), lr=config.pop("lr"))
    scheduler = create_schedule(config.pop("schedule"), optimizer, horizon=epochs, **config)

Each knob's default in the registry lies inside its range. GreedyLR's own space lives elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from greedylr.searchers._space import CategoricalParam
from greedylr.searchers._space import Constant
from greedylr.searchers._space import FloatParam
from greedylr.searchers._space import IntParam
from greedylr.searchers._space import Param
from greedylr.searchers._space import update_space


Space = dict[str, Param | Constant]

_LR = FloatParam(1e-4, 1.0, log=True)
_GAMMA = FloatParam(0.05, 0.9, log=True)
_WARMUP_FRACTION = FloatParam(0.0, 0.2)
_MIN_LR_RATIO = FloatParam(0.0, 0.1)
_END_FACTOR = FloatParam(0.0, 0.1)


def _constant(horizon: int) -> Space:
    return {}


def _constant_with_warmup(horizon: int) -> Space:
    return {"warmup_fraction": _WARMUP_FRACTION}


def _step(horizon: int) -> Space:
    return {"step_size": IntParam(1, max(1, horizon // 2)), "gamma": _GAMMA}


def _multistep(horizon: int) -> Space:
    return {"num_milestones": IntParam(1, 3), "gamma": _GAMMA}


def _exponential(horizon: int) -> Space:
    return {"gamma": FloatParam(0.7, 0.999)}


def _cosine(horizon: int) -> Space:
    return {"warmup_fraction": _WARMUP_FRACTION, "min_lr_ratio": _MIN_LR_RATIO}


def _cosine_warm_restarts(horizon: int) -> Space:
    return {
        "T_0": IntParam(1, max(1, horizon // 2)),
        "T_mult": IntParam(1, 2),
        "min_lr_ratio": _MIN_LR_RATIO,
    }


def _linear(horizon: int) -> Space:
    return {"warmup_fraction": _WARMUP_FRACTION, "end_factor": _END_FACTOR}


def _polynomial(horizon: int) -> Space:
    return {
        "warmup_fraction": _WARMUP_FRACTION,
        "power": FloatParam(0.5, 3.0),
        "end_factor": _END_FACTOR,
    }


def _onecycle(horizon: int) -> Space:
    return {
        "pct_start": FloatParam(0.1, 0.5),
        "div_factor": FloatParam(5.0, 100.0, log=True),
        "final_div_factor": FloatParam(10.0, 1e4, log=True),
        "anneal_strategy": CategoricalParam(("cos", "linear")),
    }


def _plateau(horizon: int) -> Space:
    return {
        "factor": FloatParam(0.1, 0.9),
        "patience": IntParam(0, 10),
        "threshold": FloatParam(1e-6, 1e-2, log=True),
        "threshold_mode": CategoricalParam(("rel", "abs")),
        "cooldown": IntParam(0, 5),
        "min_lr_ratio": _MIN_LR_RATIO,
    }


def _wsd(horizon: int) -> Space:
    return {
        "warmup_fraction": FloatParam(0.0, 0.1),
        "decay_fraction": FloatParam(0.05, 0.5),
        "decay_shape": CategoricalParam(("linear", "cosine", "1-sqrt")),
        "min_lr_ratio": _MIN_LR_RATIO,
    }


_SPACES: dict[str, Callable[[int], Space]] = {
    "constant": _constant,
    "constant_with_warmup": _constant_with_warmup,
    "cosine": _cosine,
    "cosine_warm_restarts": _cosine_warm_restarts,
    "exponential": _exponential,
    "linear": _linear,
    "multistep": _multistep,
    "onecycle": _onecycle,
    "plateau": _plateau,
    "polynomial": _polynomial,
    "step": _step,
    "wsd": _wsd,
}


def list_baseline_spaces() -> list[str]:
    """The schedules :func:`baseline_space` has a space for, sorted (every registered one but
    ``"greedylr"``)."""
    return sorted(_SPACES)


def baseline_space(name: str, *, horizon: int, **overrides: Any) -> dict[str, Param | Constant]:
    """The search space of baseline schedule ``name``: its LR and its own knobs.

    Args:
        name: One of :func:`list_baseline_spaces`.
        horizon: The run's horizon, as :func:`greedylr.schedulers.create_schedule` takes it;
            step-count knobs (``step_size``, ``T_0``) range up to half of it.
        **overrides: Narrow, widen, fix or drop dimensions, as
            :func:`greedylr.searchers.update_space` does: ``lr=(1e-3, 0.1)`` narrows the LR,
            ``gamma=0.5`` fixes it, ``step_size=None`` drops it (the schedule's default is
            then used).

    Raises:
        ValueError: ``name`` has no space (the message lists those that do), ``horizon`` is
            not an int >= 1, or an override is invalid.

    Example:
        >>> space = baseline_space("step", horizon=30, gamma=0.5)
        >>> space["schedule"], space["gamma"], space["step_size"]
        ('step', 0.5, IntParam(low=1, high=15, log=False, step=1))
    """
    builder = _SPACES.get(name) if isinstance(name, str) else None
    if builder is None:
        raise ValueError(
            f"No baseline space for {name!r}; valid names are {list_baseline_spaces()}."
        )
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
        raise ValueError(f"`horizon` must be an int >= 1, but got {horizon=}.")
    space: Space = {"schedule": name, "lr": _LR, **builder(horizon)}
    return update_space(space, **overrides)
