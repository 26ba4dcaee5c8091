"""The methods' search spaces (hypergradient descent, schedule-free): each valid, its knobs the
optimizer's, its corners trainable, convertible to every engine, and resolved for a tuning job."""

from __future__ import annotations

import importlib.util
import re
from typing import Any

import numpy as np
import pytest
import torch

from greedylr.backends._experiment import Experiment
from greedylr.schedulers import create_optimizer
from greedylr.schedulers import create_schedule
from greedylr.schedulers import list_optimizers
from greedylr.schedulers import list_schedules
from greedylr.schedulers import optimizer_defaults
from greedylr.schedulers import step_scheduler
from greedylr.searchers import CategoricalParam
from greedylr.searchers import FloatParam
from greedylr.searchers import IntParam
from greedylr.searchers import Param
from greedylr.searchers import get_method
from greedylr.searchers import list_methods
from greedylr.searchers import method_space
from greedylr.searchers import resolve_schedule
from greedylr.searchers import split_space
from greedylr.searchers import tunable_schedules
from greedylr.searchers import validate_space
from greedylr.tasks import list_tasks


METHODS = ["adam-hd", "adamw-schedulefree", "sgd-hd", "sgd-schedulefree"]
SCHEDULE_FREE = importlib.util.find_spec("schedulefree") is not None


def _needs_package(name: str) -> Any:
    """The method as a parameter, skipped when it needs the schedulefree extra and it is absent."""
    skip = pytest.mark.skipif(
        "schedulefree" in name and not SCHEDULE_FREE, reason="the schedulefree extra is missing"
    )
    return pytest.param(name, marks=skip)


BUILDABLE = [_needs_package(name) for name in METHODS]


def test_the_methods_are_optimizers_run_with_the_constant_schedule() -> None:
    assert list_methods() == METHODS
    for name in METHODS:
        info = get_method(name)
        assert (info.name, info.optimizer, info.schedule) == (name, name, "constant")
        assert info.optimizer in list_optimizers()
    assert tunable_schedules() == [*list_schedules(), *METHODS]  # no name taken twice
    assert len(set(tunable_schedules())) == len(tunable_schedules())


@pytest.mark.parametrize("name", METHODS)
def test_space_validates_and_its_knobs_are_the_optimizer_s(name: str) -> None:
    space = method_space(name)
    assert validate_space(space) == space
    params, constants = split_space(space)
    assert constants == {"schedule": "constant", "optimizer": name}
    assert "lr" in params
    assert isinstance(params["lr"], FloatParam)
    assert params["lr"].log
    defaults = optimizer_defaults(name)
    for knob, param in params.items():
        if knob != "lr":  # every default lies inside its range
            assert param.contains(defaults[knob]), (knob, defaults[knob], param)


def test_hypergradient_lrs_are_log_uniform_over_the_papers_scale() -> None:
    assert method_space("sgd-hd")["hypergrad_lr"] == FloatParam(1e-5, 1e-2, log=True)
    assert method_space("adam-hd")["hypergrad_lr"] == FloatParam(1e-9, 1e-5, log=True)
    assert method_space("sgd-schedulefree")["momentum"] == CategoricalParam((0.9, 0.95, 0.98))
    assert method_space("adamw-schedulefree")["warmup_steps"] == IntParam(0, 200)


def _corners(params: dict[str, Param]) -> list[dict[str, Any]]:
    low = {
        k: p.choices[0] if isinstance(p, CategoricalParam) else p.low for k, p in params.items()
    }
    high = {
        k: p.choices[-1] if isinstance(p, CategoricalParam) else p.high for k, p in params.items()
    }
    return [low, high]


@pytest.mark.parametrize("name", BUILDABLE)
def test_corner_configs_build_and_train(name: str) -> None:
    params, constants = split_space(method_space(name))
    for corner in _corners(params):
        model = torch.nn.Linear(2, 1)
        optimizer = create_optimizer(constants["optimizer"], model.parameters(), **corner)
        scheduler = create_schedule(constants["schedule"], optimizer, horizon=3)
        getattr(optimizer, "train", lambda: None)()
        for _ in range(3):
            optimizer.zero_grad()
            model(torch.ones(1, 2)).pow(2).sum().backward()
            optimizer.step()
            step_scheduler(scheduler, 1.0)
        assert torch.isfinite(model.weight).all()


def test_overrides_narrow_fix_and_drop() -> None:
    space = method_space("sgd-hd", lr=(1e-3, 0.1), hypergrad_lr=1e-3)
    assert space == {
        "schedule": "constant",
        "optimizer": "sgd-hd",
        "lr": FloatParam(1e-3, 0.1, log=True),
        "hypergrad_lr": 1e-3,
    }
    assert "warmup_steps" not in method_space("adamw-schedulefree", warmup_steps=None)
    with pytest.raises(ValueError, match=re.escape("Unknown dimension `hypergrad`")):
        method_space("sgd-hd", hypergrad=None)


def test_unknown_method_lists_the_methods() -> None:
    message = f"Unknown method 'cosine'; valid names are {METHODS}."
    with pytest.raises(ValueError, match=re.escape(message)):
        method_space("cosine")


def test_resolve_schedule_turns_a_method_into_the_constant_schedule_and_its_space() -> None:
    assert resolve_schedule("cosine") == ("cosine", None)
    custom = {"lr": FloatParam(0.01, 0.1)}
    assert resolve_schedule("greedylr", custom) == ("greedylr", custom)
    assert resolve_schedule("adam-hd") == ("constant", method_space("adam-hd"))
    schedule, space = resolve_schedule("sgd-hd", custom)
    assert (schedule, space) == ("constant", {**custom, "optimizer": "sgd-hd"})
    with pytest.raises(ValueError, match=re.escape("must run optimizer 'sgd-hd', but its `opt")):
        resolve_schedule("sgd-hd", {**custom, "optimizer": "adam"})
    with pytest.raises(ValueError, match=re.escape("Unknown schedule 'sgd_hd'; valid names are")):
        resolve_schedule("sgd_hd")
    with pytest.raises(ValueError, match=re.escape("'sgd-schedulefree']")):
        resolve_schedule("nope")  # the message lists the methods too


@pytest.mark.parametrize("task", [info.name for info in list_tasks()])
@pytest.mark.parametrize("name", METHODS)
def test_every_task_takes_every_method_s_space(task: str, name: str) -> None:
    schedule, space = resolve_schedule(name)
    experiment = Experiment.create(task, schedule=schedule, space=space, n_trials=2, max_epochs=2)
    assert experiment.search_space["optimizer"] == name


def _check(space: dict[str, Any], configs: list[dict[str, Any]]) -> None:
    params, constants = split_space(space)
    for config in configs:
        for key, param in params.items():
            assert param.contains(config[key]), (key, config[key])
        assert {key: config[key] for key in constants if key in config} == {
            key: value for key, value in constants.items() if key in config
        }


@pytest.mark.parametrize("name", METHODS)
def test_converts_to_optuna(name: str) -> None:
    optuna = pytest.importorskip("optuna")
    from greedylr.searchers import suggest

    space = method_space(name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    configs = [suggest(study.ask(), space) for _ in range(30)]
    _check(space, configs)
    assert all(config["optimizer"] == name for config in configs)


@pytest.mark.parametrize("name", METHODS)
def test_converts_to_ray(name: str) -> None:
    pytest.importorskip("ray.tune")
    from ray.tune.search import sample

    from greedylr.searchers import to_ray

    space = method_space(name)
    converted = to_ray(space)
    rng = np.random.default_rng(0)
    configs = [
        {k: v.sample(random_state=rng) if isinstance(v, sample.Domain) else v
         for k, v in converted.items()}
        for _ in range(30)
    ]  # fmt: skip
    _check(space, configs)


@pytest.mark.parametrize("name", METHODS)
def test_converts_to_syne_tune(name: str) -> None:
    config_space = pytest.importorskip("syne_tune.config_space")
    from greedylr.searchers import to_syne_tune

    space = method_space(name)
    converted = to_syne_tune(space)
    rng = np.random.RandomState(0)
    configs = [
        {k: v.sample(random_state=rng) if isinstance(v, config_space.Domain) else v
         for k, v in converted.items()}
        for _ in range(30)
    ]  # fmt: skip
    _check(space, configs)
