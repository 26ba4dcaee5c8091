"""Convert a neutral search space to a Syne Tune ``config_space``.

Syne Tune's bounds are inclusive like the neutral space's (checked in syne-tune 0.16.0,
``syne_tune/config_space.py``): ``randint(low, high)`` draws ``randint(low, high + 1)`` from
NumPy, ``lograndint`` rounds ``exp(uniform(log(low), log(high)))`` to the nearest integer, and
``finrange(low, high, size)`` is the exact grid ``low + k * (high - low) / (size - 1)``, anchored
at ``low``. Only ``choice`` is narrower: every category must have the same type, and ``None`` is
not a valid category (sampling casts through ``type(categories[0])``).
"""

from __future__ import annotations

from typing import Any

from greedylr._imports import require
from greedylr.searchers._space import CategoricalParam
from greedylr.searchers._space import FloatParam
from greedylr.searchers._space import Param
from greedylr.searchers._space import SearchSpace
from greedylr.searchers._space import is_param
from greedylr.searchers._space import validate_space


def to_syne_tune(space: SearchSpace) -> dict[str, Any]:
    """Convert ``space`` to Syne Tune domains; constants pass through unchanged.

    ==========================================  ==================================================
    neutral (bounds inclusive)                  Syne Tune (bounds inclusive)
    ==========================================  ==================================================
    ``FloatParam(low, high)``                   ``uniform(low, high)``
    ``FloatParam(low, high, log=True)``         ``loguniform(low, high)``
    ``FloatParam(low, high, step=s)``           ``finrange(low, high, n)``, ``n`` grid values
    ``IntParam(low, high)``                     ``randint(low, high)``
    ``IntParam(low, high, log=True)``           ``lograndint(low, high)``
    ``IntParam(low, high, step=k)``, ``k > 1``  ``finrange(low, high, n, cast_int=True)``
    ``CategoricalParam(choices)``               ``choice(list(choices))``
    ==========================================  ==================================================

    A float with ``low == high`` becomes ``uniform(low, low)``, which returns ``low`` exactly;
    ``loguniform`` would return ``exp(log(low))``, often one ulp off.

    Args:
        space: The neutral search space.

    Returns:
        A dict ``name -> domain or constant``, ready for a Syne Tune ``config_space``.

    Raises:
        ValueError: A categorical mixes value types (``True`` and ``1``, ``1`` and ``1.5``) or
            contains ``None``, which Syne Tune's ``choice`` does not support.
        MissingDependencyError: Syne Tune is not installed.
    """
    config_space = require("syne_tune.config_space", extra="syne-tune", feature="to_syne_tune")
    return {
        name: _to_domain(config_space, name, value) if is_param(value) else value
        for name, value in validate_space(space).items()
    }


def _to_domain(config_space: Any, name: str, param: Param) -> Any:
    if isinstance(param, CategoricalParam):
        types = {type(choice) for choice in param.choices}
        if len(types) > 1 or type(None) in types:
            raise ValueError(
                f"`{name}` must have choices of one type and without None to convert to Syne "
                f"Tune's `choice`, but got choices={param.choices}. Encode the choices as "
                "strings and decode them in the trial function."
            )
        return config_space.choice(list(param.choices))
    if isinstance(param, FloatParam):
        if param.low == param.high:
            return config_space.uniform(param.low, param.high)
        if param.log:
            return config_space.loguniform(param.low, param.high)
        if param.step is None:
            return config_space.uniform(param.low, param.high)
        size = round((param.high - param.low) / param.step) + 1
        return config_space.finrange(param.low, param.high, size)
    if param.log:
        return config_space.lograndint(param.low, param.high)
    if param.step == 1:
        return config_space.randint(param.low, param.high)
    size = (param.high - param.low) // param.step + 1
    return config_space.finrange(param.low, param.high, size, cast_int=True)
