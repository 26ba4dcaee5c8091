from __future__ import annotations

import re
from typing import Any

import pytest
import torch

from greedylr.schedulers import create_schedule
from greedylr.schedulers import get_schedule_info
from greedylr.schedulers import list_schedules
from greedylr.schedulers import step_scheduler
from greedylr.searchers._baseline_spaces import baseline_space
from greedylr.searchers._baseline_spaces import list_baseline_spaces
from greedylr.searchers._space import CategoricalParam
from greedylr.searchers._space import FloatParam
from greedylr.searchers._space import IntParam
from greedylr.searchers._space import Param
from greedylr.searchers._space import split_space
from greedylr.searchers._space import validate_space


HORIZONS = [1, 7, 100]
NAMES = list_baseline_spaces()
# Defaults the registry computes from the horizon (given as None there).
HORIZON_DEFAULTS = {
    "step_size": lambda horizon: max(1, horizon // 3),
    "T_0": lambda horizon: max(1, horizon // 4),
}


def test_every_registered_baseline_has_a_space() -> None:
    assert sorted(set(list_schedules()) - {"greedylr"}) == NAMES


@pytest.mark.parametrize("horizon", HORIZONS)
@pytest.mark.parametrize("name", NAMES)
def test_space_validates_and_names_its_schedule(name: str, horizon: int) -> None:
    space = baseline_space(name, horizon=horizon)
    assert validate_space(space) == space
    assert space["schedule"] == name
    assert space["lr"] == FloatParam(1e-4, 1.0, log=True)
    knobs = set(space) - {"schedule", "lr"}
    assert knobs <= set(get_schedule_info(name).defaults)


@pytest.mark.parametrize("horizon", HORIZONS)
@pytest.mark.parametrize("name", NAMES)
def test_registry_defaults_lie_inside_the_space(name: str, horizon: int) -> None:
    params, _ = split_space(baseline_space(name, horizon=horizon))
    defaults = get_schedule_info(name).defaults
    for knob, param in params.items():
        if knob == "lr":
            continue
        default = defaults[knob]
        if default is None:
            default = HORIZON_DEFAULTS[knob](horizon)
        assert param.contains(default), (knob, default, param)


def low(param: Param) -> Any:
    return param.choices[0] if isinstance(param, CategoricalParam) else param.low


def high(param: Param) -> Any:
    return param.choices[-1] if isinstance(param, CategoricalParam) else param.high


def build_and_run(config: dict[str, Any], horizon: int) -> None:
    config = dict(config)
    model = torch.nn.Linear(1, 1)
    optimizer = torch.optim.SGD(
        [{"params": [model.weight]}, {"params": [model.bias], "lr": config["lr"] / 10}],
        lr=config.pop("lr"),
    )
    scheduler = create_schedule(config.pop("schedule"), optimizer, horizon=horizon, **config)
    for step in range(horizon):
        optimizer.step()
        step_scheduler(scheduler, 1.0 / (step + 1))


@pytest.mark.parametrize("horizon", HORIZONS)
@pytest.mark.parametrize("name", NAMES)
def test_corner_configs_build_and_run(name: str, horizon: int) -> None:
    params, constants = split_space(baseline_space(name, horizon=horizon))
    for pick in (low, high):
        build_and_run({**constants, **{k: pick(p) for k, p in params.items()}}, horizon)
    for knob, param in params.items():  # every choice of every categorical knob
        if isinstance(param, CategoricalParam):
            for choice in param.choices:
                build_and_run(
                    {**constants, **{k: low(p) for k, p in params.items()}, knob: choice}, horizon
                )


def test_step_count_knobs_scale_with_the_horizon() -> None:
    assert baseline_space("step", horizon=30)["step_size"] == IntParam(1, 15)
    assert baseline_space("cosine_warm_restarts", horizon=1)["T_0"] == IntParam(1, 1)
    assert set(baseline_space("constant", horizon=5)) == {"schedule", "lr"}


def test_overrides_narrow_fix_and_drop() -> None:
    space = baseline_space("step", horizon=30, lr=(1e-3, 0.1), gamma=0.5, step_size=None)
    assert space == {"schedule": "step", "lr": FloatParam(1e-3, 0.1, log=True), "gamma": 0.5}
    space = baseline_space("onecycle", horizon=30, anneal_strategy=["cos"])
    assert space["anneal_strategy"] == CategoricalParam(("cos",))
    with pytest.raises(ValueError, match=re.escape("Unknown dimension `gama`")):
        baseline_space("step", horizon=30, gama=None)


def test_unknown_name_lists_valid_names() -> None:
    message = f"valid names are {NAMES}"
    with pytest.raises(
        ValueError, match=re.escape(f"No baseline space for 'greedylr'; {message}")
    ):
        baseline_space("greedylr", horizon=10)
    with pytest.raises(ValueError, match=re.escape(message)):
        baseline_space("cosine_annealing", horizon=10)


@pytest.mark.parametrize("horizon", [0, 2.5, True])
def test_invalid_horizon_raises(horizon: Any) -> None:
    with pytest.raises(ValueError, match="`horizon` must be an int >= 1, but got horizon="):
        baseline_space("step", horizon=horizon)
