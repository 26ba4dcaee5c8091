"""Convert a neutral search space to Optuna distributions, or sample it with an Optuna trial.

Optuna's conventions match the neutral space one to one: bounds are inclusive, a ``step`` grid is
anchored at ``low``, and ``log`` means uniform in log space. Optuna has no constant distribution,
so :func:`to_optuna` returns the searchable parameters only, and :func:`suggest` merges the
constants into the config it returns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any

from greedylr._imports import require
from greedylr.searchers._space import CategoricalParam
from greedylr.searchers._space import FloatParam
from greedylr.searchers._space import IntParam
from greedylr.searchers._space import SearchSpace
from greedylr.searchers._space import split_space
from greedylr.searchers._space import validate_space


if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.trial import BaseTrial


def to_optuna(space: SearchSpace) -> dict[str, BaseDistribution]:
    """Convert the searchable parameters of ``space`` to Optuna distributions.

    ``FloatParam`` becomes ``FloatDistribution``, ``IntParam`` becomes ``IntDistribution`` and
    ``CategoricalParam`` becomes ``CategoricalDistribution``, with the same bounds (inclusive in
    both), ``log`` and ``step``. Constants are left out because Optuna has no constant
    distribution; :func:`suggest` adds them to each config, or take them from
    :func:`~greedylr.searchers.split_space`.

    Args:
        space: The neutral search space.

    Returns:
        A dict ``name -> distribution``, for use with ``study.ask(fixed_distributions=...)`` or
        ``optuna.distributions`` helpers.

    Raises:
        MissingDependencyError: Optuna is not installed.
    """
    require("optuna", extra="optuna", feature="to_optuna")
    from optuna.distributions import CategoricalDistribution
    from optuna.distributions import FloatDistribution
    from optuna.distributions import IntDistribution

    params, _ = split_space(space)
    distributions: dict[str, BaseDistribution] = {}
    for name, param in params.items():
        if isinstance(param, FloatParam):
            distributions[name] = FloatDistribution(
                param.low, param.high, log=param.log, step=param.step
            )
        elif isinstance(param, IntParam):
            distributions[name] = IntDistribution(
                param.low, param.high, log=param.log, step=param.step
            )
        else:
            distributions[name] = CategoricalDistribution(param.choices)
    return distributions


def suggest(trial: BaseTrial, space: SearchSpace) -> dict[str, Any]:
    """Sample one config from ``space`` with ``trial``, constants included.

    Every parameter is suggested in the order of ``space`` through the public
    ``trial.suggest_float``, ``trial.suggest_int`` and ``trial.suggest_categorical``, so the trial
    records the same distributions that :func:`to_optuna` returns. Constants are copied into the
    config unchanged, at their place in ``space``.

    Args:
        trial: An Optuna trial (``Trial``, ``FixedTrial`` or ``FrozenTrial``).
        space: The neutral search space.

    Returns:
        A config ``name -> value`` with one entry per name in ``space``.

    Raises:
        MissingDependencyError: Optuna is not installed.
    """
    require("optuna", extra="optuna", feature="suggest")
    config: dict[str, Any] = {}
    for name, value in validate_space(space).items():
        if isinstance(value, FloatParam):
            config[name] = trial.suggest_float(
                name, value.low, value.high, log=value.log, step=value.step
            )
        elif isinstance(value, IntParam):
            config[name] = trial.suggest_int(
                name, value.low, value.high, log=value.log, step=value.step
            )
        elif isinstance(value, CategoricalParam):
            config[name] = trial.suggest_categorical(name, value.choices)
        else:
            config[name] = value
    return config
