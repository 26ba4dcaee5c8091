from __future__ import annotations

import json
import math
from typing import Any

import pytest

from greedylr.searchers import CategoricalParam
from greedylr.searchers import FloatParam
from greedylr.searchers import IntParam
from greedylr.searchers import space_from_json
from greedylr.searchers import space_to_json
from greedylr.searchers import split_space
from greedylr.searchers import update_space
from greedylr.searchers import validate_space
from greedylr.searchers._space import Param
from greedylr.searchers._space import param_from_dict
from greedylr.searchers._space import param_to_dict


SPACE: dict[str, Any] = {
    "lr": FloatParam(1e-4, 1e-1, log=True),
    "momentum": FloatParam(0.0, 0.99),
    "dropout": FloatParam(0.0, 0.5, step=0.1),
    "patience": IntParam(1, 10),
    "batch_size": IntParam(16, 256, log=True),
    "warmup": IntParam(0, 6, step=3),
    "mode": CategoricalParam(("min", "max")),
    "mixed": CategoricalParam((None, True, 1, 1.5, "x")),
    "max_epochs": 20,
    "threshold": 1e-4,
    "name": "greedy",
    "verbose": False,
    "seed": None,
}

PARAM_TYPES = (FloatParam, IntParam, CategoricalParam)
PARAMS: list[Param] = [value for value in SPACE.values() if isinstance(value, PARAM_TYPES)]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"low": "0", "high": 1.0}, TypeError, "`low` must be a number"),
        ({"low": True, "high": 1.0}, TypeError, "`low` must be a number"),
        ({"low": 0.0, "high": math.inf}, ValueError, "`high` must be finite"),
        ({"low": 1.0, "high": 0.0}, ValueError, r"`low <= high` must hold, but got \(low=1.0"),
        ({"low": 0.0, "high": 1.0, "log": True}, ValueError, "`low > 0` must hold for `log=True`"),
        ({"low": 0.1, "high": 1.0, "log": True, "step": 0.1}, ValueError, "`step` is not"),
        ({"low": 0.0, "high": 1.0, "step": 0.0}, ValueError, "`step` must be > 0, but got step=0"),
        ({"low": 0.0, "high": 1.0, "step": 0.3}, ValueError, "must be a multiple of `step`"),
    ],
)
def test_float_param_rejects_invalid_arguments(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        FloatParam(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"low": 0.0, "high": 3}, TypeError, "`low` must be an int, but got 0.0"),
        ({"low": 0, "high": 3, "step": True}, TypeError, "`step` must be an int"),
        ({"low": 3, "high": 0}, ValueError, r"`low <= high` must hold, but got \(low=3, high=0\)"),
        ({"low": 0, "high": 3, "step": 0}, ValueError, "`step` must be >= 1, but got step=0"),
        ({"low": 0, "high": 3, "log": True}, ValueError, "`low >= 1` must hold for `log=True`"),
        ({"low": 1, "high": 5, "log": True, "step": 2}, ValueError, "`step` must be 1 with"),
        ({"low": 0, "high": 5, "step": 2}, ValueError, "must be a multiple of `step`"),
    ],
)
def test_int_param_rejects_invalid_arguments(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        IntParam(**kwargs)


@pytest.mark.parametrize(
    ("choices", "error", "match"),
    [
        ("ab", TypeError, "`choices` must be a sequence"),
        ((), ValueError, "`choices` must not be empty"),
        (([1],), TypeError, r"Each choice must be None, a bool, an int, a float or a str"),
        (("a", "a"), ValueError, "`choices` must not repeat a value"),
    ],
)
def test_categorical_param_rejects_invalid_choices(
    choices: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        CategoricalParam(choices)


def test_categorical_param_stores_a_list_as_tuple_and_keeps_true_apart_from_one() -> None:
    param = CategoricalParam([True, 1, 1.0])  # type: ignore[arg-type]
    assert param.choices == (True, 1, 1.0)
    found = [param.contains(value) for value in (True, 1, 1.0, False, 0)]
    assert found == [True, True, True, False, False]
    assert not CategoricalParam((1,)).contains(True)
    assert not CategoricalParam((True,)).contains(1)


def test_contains_checks_bounds_grid_and_type() -> None:
    grid = FloatParam(0.05, 0.95, step=0.1)
    inside = (0.05, 0.95, 0.05 + 3 * 0.1)
    outside = (0.1, 1.05, 0.0, "0.05", None)
    assert [grid.contains(value) for value in inside] == [True] * len(inside)
    assert [grid.contains(value) for value in outside] == [False] * len(outside)
    assert [FloatParam(0, 1).contains(value) for value in (1, 0.5, True)] == [True, True, False]
    ints = IntParam(1, 7, step=3)
    assert [value for value in range(-1, 10) if ints.contains(value)] == [1, 4, 7]
    assert [ints.contains(value) for value in (4.0, True, "4")] == [False, False, False]


def test_validate_space_rejects_bad_names_and_values() -> None:
    with pytest.raises(TypeError, match="A search space must be a mapping, but got list"):
        validate_space([("lr", 0.1)])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Parameter names must be non-empty strings"):
        validate_space({"": 1})
    with pytest.raises(TypeError, match="`lr` must be a FloatParam, IntParam, CategoricalParam"):
        validate_space({"lr": [0.1, 0.2]})  # type: ignore[dict-item]


def test_split_space_separates_params_from_constants() -> None:
    params, constants = split_space(SPACE)
    assert list(params.values()) == PARAMS
    assert list(params) == [name for name in SPACE if isinstance(SPACE[name], PARAM_TYPES)]
    assert constants == {
        "max_epochs": 20,
        "threshold": 1e-4,
        "name": "greedy",
        "verbose": False,
        "seed": None,
    }


def test_json_round_trip_keeps_params_and_constants() -> None:
    text = space_to_json(SPACE)
    data = json.loads(text)
    assert set(data) == {"params", "constants"}
    assert data["params"]["lr"] == {"type": "float", "low": 1e-4, "high": 0.1, "log": True}
    assert data["params"]["warmup"] == {"type": "int", "low": 0, "high": 6, "step": 3}
    assert data["constants"]["seed"] is None
    restored = space_from_json(text)
    assert restored == SPACE
    assert [type(restored[name]) for name in ("max_epochs", "verbose")] == [int, bool]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"params": {}, "extra": {}}', "must be an object with keys 'params' and 'constants'"),
        (
            '{"params": {"a": {"type": "int", "low": 0, "high": 1}}, "constants": {"a": 1}}',
            "`a` is both a parameter and a constant",
        ),
        ('{"params": {"a": {"type": "normal"}}}', "`type` must be 'float', 'int' or 'categ"),
        ('{"params": {"a": {"type": "int", "low": 0, "hi": 1}}}', "Invalid int parameter"),
    ],
)
def test_space_from_json_rejects_malformed_input(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        space_from_json(text)


@pytest.mark.parametrize("param", PARAMS)
def test_param_dict_round_trip(param: Param) -> None:
    assert param_from_dict(json.loads(json.dumps(param_to_dict(param)))) == param


@pytest.mark.parametrize("param", PARAMS)
def test_optuna_json_to_distribution_accepts_each_param_dict(param: Param) -> None:
    distributions = pytest.importorskip("optuna.distributions")
    from greedylr.searchers import to_optuna

    native = distributions.json_to_distribution(json.dumps(param_to_dict(param)))
    assert native == to_optuna({"x": param})["x"]


def test_update_space_narrows_fixes_replaces_and_drops() -> None:
    updated = update_space(
        SPACE,
        lr=(1e-3, 1e-2),
        dropout=(0.1, 0.3),
        mode=["min"],
        patience=5,
        momentum=None,
        nesterov=CategoricalParam((True, False)),
    )
    assert updated["lr"] == FloatParam(1e-3, 1e-2, log=True)
    assert updated["dropout"] == FloatParam(0.1, 0.3, step=0.1)
    assert updated["mode"] == CategoricalParam(("min",))
    assert updated["patience"] == 5
    assert "momentum" not in updated
    assert updated["nesterov"] == CategoricalParam((True, False))
    assert SPACE["lr"] == FloatParam(1e-4, 1e-1, log=True)  # the input is left alone


def test_update_space_rejects_unknown_dimensions_and_bad_bounds() -> None:
    with pytest.raises(ValueError, match=r"Unknown dimension `nope`; the space has \["):
        update_space(SPACE, nope=None)
    with pytest.raises(ValueError, match="Unknown dimension `nope`"):
        update_space(SPACE, nope=(0, 1))
    with pytest.raises(ValueError, match="A `\\(low, high\\)` override needs a float or int"):
        update_space(SPACE, mode=(0, 1))
    with pytest.raises(ValueError, match="A bounds override must be `\\(low, high\\)`"):
        update_space(SPACE, lr=(0.1, 0.2, 0.3))
    with pytest.raises(ValueError, match="`low <= high` must hold"):
        update_space(SPACE, patience=(5, 1))
