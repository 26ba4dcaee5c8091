"""The GreedyLR search space: its ranges, its overrides, and every corner builds a scheduler."""

from __future__ import annotations

import itertools
import warnings

import pytest
import torch

from greedylr.schedulers import GreedyLR
from greedylr.schedulers import create_schedule
from greedylr.searchers import CategoricalParam
from greedylr.searchers import FloatParam
from greedylr.searchers import IntParam
from greedylr.searchers import greedylr_space
from greedylr.searchers import split_space


def test_the_space_covers_what_the_issue_names() -> None:
    space = greedylr_space()
    assert space["schedule"] == "greedylr"
    assert space["lr"] == FloatParam(1e-4, 1.0, log=True)
    assert space["factor"] == FloatParam(0.5, 0.99)
    assert space["patience"] == IntParam(0, 10)
    assert isinstance(space["threshold"], FloatParam)
    assert space["threshold"].log
    assert space["threshold_mode"] == CategoricalParam(("abs", "rel"))
    assert space["window_size"] == CategoricalParam((1, 3, 5, 10, 20, 50))
    assert space["cooldown"] == IntParam(0, 5)
    assert space["warmup"] == IntParam(0, 5)
    assert space["variant"] == CategoricalParam(("hf", "paper"))
    ratios = space["min_lr_ratio"], space["max_lr_ratio"]
    assert isinstance(ratios[0], FloatParam)
    assert ratios[0].high < 1.0
    assert isinstance(ratios[1], FloatParam)
    assert ratios[1].low > 1.0


def test_narrow_widen_fix_and_drop_in_one_call() -> None:
    space = greedylr_space(
        patience=(2, 5), factor=(0.3, 0.999), variant="hf", warmup=None, lr=[0.01, 0.1]
    )
    assert space["patience"] == IntParam(2, 5)
    assert space["factor"] == FloatParam(0.3, 0.999)
    assert space["variant"] == "hf"
    assert "warmup" not in space
    assert space["lr"] == CategoricalParam((0.01, 0.1))
    with pytest.raises(ValueError, match="Unknown dimension `patiense`"):
        greedylr_space(patiense=None)
    with pytest.raises(ValueError, match=r"`low <= high` must hold"):
        greedylr_space(patience=(5, 2))


def _corners() -> list[dict[str, object]]:
    params, constants = split_space(greedylr_space())
    options = []
    for param in params.values():
        if isinstance(param, CategoricalParam):
            options.append(param.choices)
        else:
            options.append((param.low, param.high))  # type: ignore[union-attr]
    names = list(params)
    # Every value of every dimension appears with both ends of the others, in 40 configs.
    configs = []
    for index, combination in enumerate(itertools.product(*options)):
        if index % 997 == 0:
            configs.append({**constants, **dict(zip(names, combination))})
    return configs


@pytest.mark.parametrize("config", _corners())
def test_every_corner_builds_a_valid_scheduler_without_warnings(config: dict) -> None:
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=config["lr"])
    schedule_params = {
        key: value for key, value in config.items() if key not in ("lr", "schedule")
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scheduler = create_schedule(config["schedule"], optimizer, horizon=10, **schedule_params)
    assert isinstance(scheduler, GreedyLR)
    assert scheduler.config.smooth == (config["window_size"] > 1)
    low, high = scheduler.config.min_lrs[0], scheduler.config.max_lrs[0]
    assert low < config["lr"] < high
    for loss in [1.0, 0.5, 0.7, float("nan"), 0.2]:
        scheduler.step(loss)
        assert low <= scheduler.get_last_lr()[0] <= high
