"""The space every converter test samples, and the checks its samples must pass."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from greedylr.searchers import CategoricalParam
from greedylr.searchers import FloatParam
from greedylr.searchers import IntParam


SAMPLES = 2_000
CONSTANTS = {"max_epochs": 20, "mode": "min", "seed": None}

# Discrete parameters and every value they can take, written out by hand.
DISCRETE: dict[str, tuple[Any, list[Any]]] = {
    "int": (IntParam(0, 3), [0, 1, 2, 3]),
    "log_int": (IntParam(1, 4, log=True), [1, 2, 3, 4]),
    "step_int": (IntParam(0, 6, step=3), [0, 3, 6]),
    "offset_step_int": (IntParam(1, 7, step=3), [1, 4, 7]),
    "step_float": (FloatParam(0.0, 1.0, step=0.25), [0.0, 0.25, 0.5, 0.75, 1.0]),
    "tenth_float": (FloatParam(0.0, 0.3, step=0.1), [0.0, 0.1, 0.2, 0.3]),
    "offset_step_float": (FloatParam(0.05, 0.25, step=0.1), [0.05, 0.15, 0.25]),
    "fixed_log_float": (FloatParam(0.1, 0.1, log=True), [0.1]),
    "categorical": (CategoricalParam(("a", "b", "c")), ["a", "b", "c"]),
}
# Optuna and Ray hold a categorical of mixed types; Syne Tune cannot.
MIXED: dict[str, tuple[Any, list[Any]]] = {
    "mixed": (CategoricalParam((None, True, 1, 1.5, "x")), [None, True, 1, 1.5, "x"]),
}


def space_of(discrete: Mapping[str, tuple[Any, list[Any]]]) -> dict[str, Any]:
    """Two continuous floats, the discrete parameters, and constants around them."""
    return {
        "float": FloatParam(-1.0, 1.0),
        "max_epochs": 20,
        "log_float": FloatParam(1e-4, 1e-1, log=True),
        **{name: param for name, (param, _) in discrete.items()},
        "mode": "min",
        "seed": None,
    }


def rounded(value: Any) -> Any:
    return round(value, 9) if type(value) is float else (type(value), value)


def check_samples(
    space: Mapping[str, Any],
    discrete: Mapping[str, tuple[Any, list[Any]]],
    configs: list[dict[str, Any]],
) -> None:
    """Every sample lies inside its parameter, with the right type; constants pass unchanged
    (when present); every value of every discrete parameter is reached."""
    for name, param in space.items():
        if name not in configs[0]:
            continue
        values = [config[name] for config in configs]
        if not isinstance(param, (FloatParam, IntParam, CategoricalParam)):
            assert values == [param] * len(configs)
            continue
        outside = [value for value in values if not param.contains(value)]
        assert not outside, f"{name}: {outside[:5]}"
        if isinstance(param, IntParam):
            assert {type(value) for value in values} == {int}, name
        if isinstance(param, FloatParam):
            assert {type(value) for value in values} == {float}, name
    for name, (_, expected) in discrete.items():
        reached = {rounded(config[name]) for config in configs}
        assert reached == {rounded(value) for value in expected}, name
