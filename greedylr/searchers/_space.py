"""The framework-neutral search space: frozen, validated parameter types.

A space is a mapping ``name -> parameter``, where a parameter is a :class:`FloatParam`, an
:class:`IntParam`, a :class:`CategoricalParam`, or a constant (``None``, ``bool``, ``int``,
``float`` or ``str``) that every sampled config carries unchanged. Bounds are inclusive
everywhere; the converters (``to_optuna``, ``to_ray``, ``to_syne_tune``) own each engine's
conventions.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import replace
from typing import Any
from typing import TypeGuard


Constant = None | bool | int | float | str
_CONSTANT_TYPES = (type(None), bool, int, float, str)
_GRID_TOLERANCE = 1e-9


@dataclass(frozen=True)
class FloatParam:
    """A float in ``[low, high]`` (both inclusive).

    Args:
        low: Lower bound, inclusive.
        high: Upper bound, inclusive.
        log: Sample uniformly in log space (needs ``low > 0``).
        step: If given, only ``low + k * step`` values are valid; ``high - low`` must be a multiple
            of ``step``. Not allowed together with ``log``.
    """

    low: float
    high: float
    log: bool = False
    step: float | None = None

    def __post_init__(self) -> None:
        low, high, log, step = self.low, self.high, self.log, self.step
        for name, value in (("low", low), ("high", high)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"`{name}` must be a number, but got {value!r}.")
            if not math.isfinite(value):
                raise ValueError(f"`{name}` must be finite, but got {name}={value}.")
        if low > high:
            raise ValueError(f"`low <= high` must hold, but got ({low=}, {high=}).")
        if log and low <= 0:
            raise ValueError(f"`low > 0` must hold for `log=True`, but got ({low=}, {high=}).")
        if step is not None:
            if log:
                raise ValueError(f"`step` is not supported with `log=True`, but got {step=}.")
            if not step > 0:
                raise ValueError(f"`step` must be > 0, but got {step=}.")
            if not _on_grid(high, low, step):
                raise ValueError(
                    "`high - low` must be a multiple of `step`, "
                    f"but got ({low=}, {high=}, {step=})."
                )
        object.__setattr__(self, "low", float(low))
        object.__setattr__(self, "high", float(high))
        if step is not None:
            object.__setattr__(self, "step", float(step))

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is a valid sample of this parameter."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if not self.low <= value <= self.high:
            return False
        return self.step is None or _on_grid(value, self.low, self.step)


@dataclass(frozen=True)
class IntParam:
    """An integer in ``[low, high]`` (both inclusive).

    Args:
        low: Lower bound, inclusive.
        high: Upper bound, inclusive.
        log: Sample uniformly in log space (needs ``low >= 1``).
        step: Only ``low + k * step`` values are valid; ``high - low`` must be a multiple of
            ``step``. Must be 1 with ``log``.
    """

    low: int
    high: int
    log: bool = False
    step: int = 1

    def __post_init__(self) -> None:
        low, high, log, step = self.low, self.high, self.log, self.step
        for name, value in (("low", low), ("high", high), ("step", step)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"`{name}` must be an int, but got {value!r}.")
        if low > high:
            raise ValueError(f"`low <= high` must hold, but got ({low=}, {high=}).")
        if step < 1:
            raise ValueError(f"`step` must be >= 1, but got {step=}.")
        if log and low < 1:
            raise ValueError(f"`low >= 1` must hold for `log=True`, but got ({low=}, {high=}).")
        if log and step != 1:
            raise ValueError(f"`step` must be 1 with `log=True`, but got {step=}.")
        if (high - low) % step:
            raise ValueError(
                f"`high - low` must be a multiple of `step`, but got ({low=}, {high=}, {step=})."
            )

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is a valid sample of this parameter."""
        if isinstance(value, bool) or not isinstance(value, int):
            return False
        return self.low <= value <= self.high and (value - self.low) % self.step == 0


@dataclass(frozen=True)
class CategoricalParam:
    """One of ``choices``, each ``None``, a bool, an int, a float or a str.

    Args:
        choices: The candidates, at least one, without duplicates. A list is stored as a tuple.
    """

    choices: tuple[Constant, ...]

    def __post_init__(self) -> None:
        choices = self.choices
        if isinstance(choices, (str, bytes)) or not isinstance(choices, Sequence):
            raise TypeError(f"`choices` must be a sequence, but got {choices!r}.")
        choices = tuple(choices)
        if not choices:
            raise ValueError("`choices` must not be empty, but got choices=().")
        for choice in choices:
            if not isinstance(choice, _CONSTANT_TYPES):
                raise TypeError(
                    "Each choice must be None, a bool, an int, a float or a str, "
                    f"but got {choice!r}."
                )
        if len({(type(c), c) for c in choices}) != len(choices):
            raise ValueError(f"`choices` must not repeat a value, but got {choices=}.")
        object.__setattr__(self, "choices", choices)

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is one of the choices (its type included: ``True`` is not ``1``)."""
        return any(type(value) is type(c) and value == c for c in self.choices)


Param = FloatParam | IntParam | CategoricalParam
_PARAM_TYPES = (FloatParam, IntParam, CategoricalParam)
SearchSpace = Mapping[str, Param | Constant]


def _on_grid(value: float, low: float, step: float) -> bool:
    position = (value - low) / step
    return abs(position - round(position)) <= _GRID_TOLERANCE * max(1.0, abs(position))


def is_param(value: Any) -> TypeGuard[Param]:
    """Whether ``value`` is a searchable parameter (not a constant)."""
    return isinstance(value, _PARAM_TYPES)


def validate_space(space: SearchSpace) -> dict[str, Param | Constant]:
    """Check ``space`` and return it as a plain dict.

    Raises:
        TypeError: A name is not a non-empty str, or a value is neither a parameter nor a
            constant.
    """
    if not isinstance(space, Mapping):
        raise TypeError(f"A search space must be a mapping, but got {type(space).__name__}.")
    checked: dict[str, Param | Constant] = {}
    for name, value in space.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"Parameter names must be non-empty strings, but got {name!r}.")
        if not isinstance(value, (*_PARAM_TYPES, *_CONSTANT_TYPES)):
            raise TypeError(
                f"`{name}` must be a FloatParam, IntParam, CategoricalParam or a constant "
                f"(None, bool, int, float, str), but got {value!r}."
            )
        checked[name] = value
    return checked


def split_space(space: SearchSpace) -> tuple[dict[str, Param], dict[str, Constant]]:
    """Split ``space`` into its searchable parameters and its constants."""
    params: dict[str, Param] = {}
    constants: dict[str, Constant] = {}
    for name, value in validate_space(space).items():
        if isinstance(value, _PARAM_TYPES):
            params[name] = value
        else:
            constants[name] = value
    return params, constants


def update_space(space: SearchSpace, **overrides: Any) -> dict[str, Param | Constant]:
    """Narrow, widen, fix, replace or drop dimensions of ``space`` in one call.

    Each override is one of:

    - a parameter (``FloatParam``, ``IntParam``, ``CategoricalParam``): replaces the dimension;
    - a ``(low, high)`` tuple: new bounds for an existing float or int dimension, keeping its
      ``log`` and ``step``;
    - a list: new choices for the dimension (it becomes categorical);
    - a constant (``bool``, ``int``, ``float``, ``str``): fixes the dimension to that value;
    - ``None``: removes the dimension.

    Raises:
        ValueError: An override names a dimension that ``space`` does not have (except when it
            adds a new parameter or constant), or gives bounds for a categorical dimension.
    """
    result = validate_space(space)
    for name, value in overrides.items():
        if value is None:
            if name not in result:
                raise ValueError(_unknown_dimension(name, result))
            del result[name]
        elif isinstance(value, tuple):
            current = result.get(name)
            if not isinstance(current, (FloatParam, IntParam)):
                raise ValueError(
                    f"A `(low, high)` override needs a float or int dimension, but `{name}` is "
                    f"{current!r}."
                    if name in result
                    else _unknown_dimension(name, result)
                )
            if len(value) != 2:
                raise ValueError(
                    f"A bounds override must be `(low, high)`, but got {name}={value}."
                )
            result[name] = replace(current, low=value[0], high=value[1])
        elif isinstance(value, list):
            result[name] = CategoricalParam(tuple(value))
        else:
            result[name] = value
    return validate_space(result)


def _unknown_dimension(name: str, space: Mapping[str, Any]) -> str:
    return f"Unknown dimension `{name}`; the space has {sorted(space)}."


def param_to_dict(param: Param) -> dict[str, Any]:
    """Optuna's short JSON schema: ``{"type": "float", "low": ..., "high": ..., ...}``."""
    if isinstance(param, FloatParam):
        data: dict[str, Any] = {"type": "float", "low": param.low, "high": param.high}
        if param.log:
            data["log"] = True
        if param.step is not None:
            data["step"] = param.step
        return data
    if isinstance(param, IntParam):
        data = {"type": "int", "low": param.low, "high": param.high}
        if param.log:
            data["log"] = True
        if param.step != 1:
            data["step"] = param.step
        return data
    return {"type": "categorical", "choices": list(param.choices)}


def param_from_dict(data: Mapping[str, Any]) -> Param:
    """Inverse of :func:`param_to_dict`."""
    kind = data.get("type")
    fields = {key: value for key, value in data.items() if key != "type"}
    try:
        if kind == "float":
            return FloatParam(**fields)
        if kind == "int":
            return IntParam(**fields)
        if kind == "categorical":
            return CategoricalParam(tuple(fields["choices"]))
    except (TypeError, KeyError) as error:
        raise ValueError(f"Invalid {kind} parameter {dict(data)}: {error}") from None
    raise ValueError(f"`type` must be 'float', 'int' or 'categorical', but got {kind!r}.")


def space_to_json(space: SearchSpace) -> str:
    """Serialize ``space`` as ``{"params": {...}, "constants": {...}}`` (Optuna's short schema)."""
    params, constants = split_space(space)
    return json.dumps(
        {
            "params": {name: param_to_dict(param) for name, param in params.items()},
            "constants": constants,
        },
        sort_keys=True,
    )


def space_from_json(text: str) -> dict[str, Param | Constant]:
    """Inverse of :func:`space_to_json`."""
    data = json.loads(text)
    if not isinstance(data, dict) or set(data) - {"params", "constants"}:
        raise ValueError("A space in JSON must be an object with keys 'params' and 'constants'.")
    space: dict[str, Param | Constant] = {
        name: param_from_dict(value) for name, value in data.get("params", {}).items()
    }
    for name, value in data.get("constants", {}).items():
        if name in space:
            raise ValueError(f"`{name}` is both a parameter and a constant.")
        space[name] = value
    return validate_space(space)
