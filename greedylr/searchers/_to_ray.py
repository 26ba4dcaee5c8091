"""Convert a neutral search space to a Ray Tune ``param_space``.

Ray Tune's integer domains do not share one convention for the upper bound (checked in ray
2.60.0, ``ray/tune/search/sample.py``):

- ``tune.randint(low, high)`` and ``tune.lograndint(low, high)`` exclude ``high``, so an
  inclusive ``IntParam(low, high)`` becomes ``tune.randint(low, high + 1)``.
- ``tune.qrandint(low, high, q)`` includes ``high`` for ``q > 1`` but excludes it for ``q == 1``,
  so ``qrandint`` is never used for step 1.
- ``tune.quniform`` and ``tune.qrandint`` round to multiples of ``q`` counted from zero, not from
  ``low`` (``quniform`` raises when ``low`` is not such a multiple). A grid anchored at any other
  ``low`` cannot be expressed with them; it becomes a ``tune.choice`` of the exact grid values,
  which samples the same values with equal weights but loses the ordering for model-based
  searchers.
- ``tune.quniform`` returns ``k * q``, which can overshoot: ``tune.quniform(0.0, 0.3, 0.1)``
  returns ``3 * 0.1 == 0.30000000000000004 > 0.3``. ``quniform`` is used only when ``low`` and
  ``high`` are exact floating-point multiples (``round(x / q) * q == x``); then every sample lies
  in ``[low, high]``, because ``k * q`` grows with ``k``.
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


def to_ray(space: SearchSpace) -> dict[str, Any]:
    """Convert ``space`` to Ray Tune domains; constants pass through unchanged.

    ============================================  ===============================================
    neutral (bounds inclusive)                    Ray Tune
    ============================================  ===============================================
    ``FloatParam(low, high)``                     ``tune.uniform(low, high)``
    ``FloatParam(low, high, log=True)``           ``tune.loguniform(low, high)``
    ``FloatParam(low, high, step=s)``             ``tune.quniform(low, high, s)`` if ``low`` and
                                                  ``high`` are exact multiples of ``s``, otherwise
                                                  ``tune.choice`` of the grid ``low + k * s``
    ``IntParam(low, high)``                       ``tune.randint(low, high + 1)``
    ``IntParam(low, high, log=True)``             ``tune.lograndint(low, high + 1)``
    ``IntParam(low, high, step=k)``, ``k > 1``    ``tune.qrandint(low, high, k)`` if
                                                  ``low % k == 0``, otherwise ``tune.choice`` of
                                                  ``range(low, high + 1, k)``
    ``CategoricalParam(choices)``                 ``tune.choice(list(choices))``
    ============================================  ===============================================

    A float with ``low == high`` becomes ``tune.uniform(low, low)``, which returns ``low``
    exactly; ``tune.loguniform`` would return ``exp(log(low))``, often one ulp off.

    ``tune.quniform`` gives the two endpoints of its grid half the weight of the inner points,
    because it rounds a uniform draw to the nearest grid value. Every grid value is reachable.

    Args:
        space: The neutral search space.

    Returns:
        A dict ``name -> domain or constant``, ready for ``tune.Tuner(param_space=...)``.

    Raises:
        MissingDependencyError: Ray Tune is not installed.
    """
    tune = require("ray.tune", extra="ray", feature="to_ray")
    return {
        name: _to_domain(tune, value) if is_param(value) else value
        for name, value in validate_space(space).items()
    }


def _to_domain(tune: Any, param: Param) -> Any:
    if isinstance(param, CategoricalParam):
        return tune.choice(list(param.choices))
    if isinstance(param, FloatParam):
        if param.low == param.high:
            return tune.uniform(param.low, param.high)
        if param.log:
            return tune.loguniform(param.low, param.high)
        if param.step is None:
            return tune.uniform(param.low, param.high)
        if _is_multiple(param.low, param.step) and _is_multiple(param.high, param.step):
            return tune.quniform(param.low, param.high, param.step)
        return tune.choice(_float_grid(param.low, param.high, param.step))
    if param.log:
        return tune.lograndint(param.low, param.high + 1)
    if param.step == 1:
        return tune.randint(param.low, param.high + 1)
    if param.low % param.step == 0:
        return tune.qrandint(param.low, param.high, param.step)
    return tune.choice(list(range(param.low, param.high + 1, param.step)))


def _is_multiple(value: float, step: float) -> bool:
    # Exact in floating point, so that Ray's ``round(value / step) * step`` gives back ``value``
    # and no sample can land outside ``[low, high]``.
    return round(value / step) * step == value


def _float_grid(low: float, high: float, step: float) -> list[float]:
    count = round((high - low) / step)
    return [*(min(low + index * step, high) for index in range(count)), high]
