"""The search space of GreedyLR's own hyperparameters, plus the optimizer's learning rate."""

from __future__ import annotations

from typing import Any

from greedylr.searchers._space import CategoricalParam
from greedylr.searchers._space import Constant
from greedylr.searchers._space import FloatParam
from greedylr.searchers._space import IntParam
from greedylr.searchers._space import Param
from greedylr.searchers._space import update_space


def greedylr_space(**overrides: Any) -> dict[str, Param | Constant]:
    """The GreedyLR search space, with any dimension narrowed, widened, fixed or dropped.

    ========================  ==========================================================
    key                       range
    ========================  ==========================================================
    ``schedule``              ``"greedylr"`` (constant: which schedule the config builds)
    ``lr``                    the optimizer's initial LR, [1e-4, 1], log
    ``factor``                [0.5, 0.99]
    ``patience``              {0, ..., 10}
    ``threshold``             [1e-8, 1e-2], log
    ``threshold_mode``        {"abs", "rel"}
    ``window_size``           {1 (smoothing off), 3, 5, 10, 20, 50}
    ``cooldown``              {0, ..., 5}
    ``warmup``                {0, ..., 5}
    ``min_lr_ratio``          ``min_lr / lr`` in [1e-4, 0.5], log
    ``max_lr_ratio``          ``max_lr / lr`` in [2, 100], log
    ``variant``               {"hf", "paper"}
    ========================  ==========================================================

    The bounds are ratios to the initial LR, so ``min_lr < lr < max_lr`` holds for every
    sampled config. Pass a config to ``create_schedule(config["schedule"], ...)`` with the
    schedule keys; ``window_size=1`` turns smoothing off.

    Args:
        **overrides: Changes to the space, as in
            :func:`greedylr.searchers.update_space`: a parameter replaces a dimension, a
            ``(low, high)`` tuple rebounds it, a list makes it categorical, a constant fixes it,
            ``None`` drops it.

    Example:
        >>> space = greedylr_space(patience=(2, 5), variant="hf", lr=(1e-3, 1e-1))
        >>> space["patience"], space["variant"]
        (IntParam(low=2, high=5, log=False, step=1), 'hf')
    """
    space: dict[str, Param | Constant] = {
        "schedule": "greedylr",
        "lr": FloatParam(1e-4, 1.0, log=True),
        "factor": FloatParam(0.5, 0.99),
        "patience": IntParam(0, 10),
        "threshold": FloatParam(1e-8, 1e-2, log=True),
        "threshold_mode": CategoricalParam(("abs", "rel")),
        "window_size": CategoricalParam((1, 3, 5, 10, 20, 50)),
        "cooldown": IntParam(0, 5),
        "warmup": IntParam(0, 5),
        "min_lr_ratio": FloatParam(1e-4, 0.5, log=True),
        "max_lr_ratio": FloatParam(2.0, 100.0, log=True),
        "variant": CategoricalParam(("hf", "paper")),
    }
    return update_space(space, **overrides)
