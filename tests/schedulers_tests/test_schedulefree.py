"""Schedule-free SGD and AdamW from the optimizer registry, and the train loop's train/eval
switch: training at ``y``, measuring and checkpointing at ``x``, continuing exactly."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from greedylr._imports import MissingDependencyError
from greedylr.backends import Checkpoint
from greedylr.backends import TrialStopped
from greedylr.backends import ValidatingReporter
from greedylr.backends import load_checkpoint
from greedylr.backends import load_trial_function
from greedylr.backends import save_checkpoint
from greedylr.schedulers import create_optimizer
from greedylr.schedulers import optimizer_defaults
from greedylr.tasks import TaskInfo
from greedylr.tasks import resolve_task
from greedylr.tasks._training import RunSettings
from greedylr.tasks._training import restore_training
from greedylr.tasks._training import train_loop
from greedylr.tasks._training import training_state


needs_schedulefree = pytest.mark.skipif(
    importlib.util.find_spec("schedulefree") is None,
    reason="the schedulefree extra is not installed",
)
TOY = TaskInfo("toy", "toy:train", "a linear model", default_epochs=2, default_lr=0.1)


def _parameters() -> list[torch.nn.Parameter]:
    return list(torch.nn.Linear(2, 1).parameters())


@needs_schedulefree
def test_the_registry_builds_them_with_flat_parameters_in_eval_mode() -> None:
    import schedulefree

    sgd = create_optimizer("sgd-schedulefree", _parameters(), lr=1.0, warmup_steps=5, r=0.5)
    assert isinstance(sgd, schedulefree.SGDScheduleFree)
    group = sgd.param_groups[0]
    assert (group["lr"], group["momentum"], group["warmup_steps"], group["r"]) == (
        1.0,
        0.9,
        5,
        0.5,
    )
    assert (group["weight_decay"], group["weight_lr_power"], group["train_mode"]) == (
        0.0,
        2.0,
        False,
    )
    adamw = create_optimizer(
        "adamw-schedulefree", _parameters(), lr=0.0025, beta1=0.95, weight_decay=0.01
    )
    assert isinstance(adamw, schedulefree.AdamWScheduleFree)
    group = adamw.param_groups[0]
    assert (group["betas"], group["eps"], group["weight_decay"]) == ((0.95, 0.999), 1e-8, 0.01)
    assert set(optimizer_defaults("adamw-schedulefree")) == {
        "beta1",
        "beta2",
        "eps",
        "weight_decay",
        "warmup_steps",
        "r",
        "weight_lr_power",
    }


@needs_schedulefree
@pytest.mark.parametrize(
    ("name", "kwargs", "error", "message"),
    [
        ("sgd-schedulefree", {"momentum": 0.0}, ValueError, "`momentum` must be in (0, 1)"),
        ("sgd-schedulefree", {"warmup_steps": 2.5}, TypeError, "`warmup_steps` must be an int"),
        ("adamw-schedulefree", {"beta1": 1.0}, ValueError, "`beta1` must be in [0, 1)"),
        ("adamw-schedulefree", {"r": -1.0}, ValueError, "`r` must be >= 0, but got r=-1.0."),
        ("adamw-schedulefree", {"betas": (0.9, 0.99)}, ValueError, "Unknown parameter(s)"),
    ],
)
def test_bad_input_is_one_clear_error(
    name: str, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=re.escape(message)):
        create_optimizer(name, _parameters(), lr=0.1, **kwargs)


@pytest.mark.parametrize("name", ["sgd-schedulefree", "adamw-schedulefree"])
def test_a_missing_package_names_the_pip_command(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setitem(sys.modules, "schedulefree", None)  # as if it were not installed
    assert "momentum" in optimizer_defaults("sgd-schedulefree")  # listed without the package
    with pytest.raises(MissingDependencyError, match=re.escape(f"The {name!r} optimizer")) as e:
        create_optimizer(name, _parameters(), lr=0.1)
    assert "pip install greedylr[schedulefree]" in str(e.value)


def _toy_run(config: dict[str, Any]) -> tuple[RunSettings, torch.nn.Module, Any, Any]:
    settings = RunSettings.from_config(config, task=TOY)
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    optimizer, scheduler = settings.build(model.parameters(), steps_per_epoch=3)
    return settings, model, optimizer, scheduler


def _toy_epoch(model: torch.nn.Module, optimizer: Any, after_batch: Any) -> float:
    inputs, targets = torch.tensor([[1.0, 2.0], [3.0, -1.0]]), torch.tensor([[1.0], [0.0]])
    for _ in range(3):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(inputs), targets)
        loss.backward()
        optimizer.step()
        after_batch()
    return loss.item()


@needs_schedulefree
def test_the_train_loop_trains_in_train_mode_then_measures_and_saves_at_x() -> None:
    config = {"schedule": "constant", "optimizer": "sgd-schedulefree", "momentum": 0.5}
    settings, model, optimizer, scheduler = _toy_run(config)
    modes: list[tuple[str, bool]] = []
    trained_at: list[torch.Tensor] = []  # y, the point the gradients are taken at
    states: list[Any] = []

    def run_epoch(after_batch: Any) -> float:
        modes.append(("train", optimizer.param_groups[0]["train_mode"]))
        loss = _toy_epoch(model, optimizer, after_batch)
        trained_at.append(model.weight.detach().clone())
        return loss

    def measure(split: str) -> dict[str, float]:
        modes.append((split, optimizer.param_groups[0]["train_mode"]))
        return {"loss": model.weight.sum().item()}

    reporter = ValidatingReporter(lambda epoch, loss, metrics, state: states.append(state))
    train_loop(
        settings,
        optimizer,
        scheduler,
        reporter,
        run_epoch=run_epoch,
        measure=measure,
        model=model,
        generator=torch.Generator(),
    )
    assert modes == [("train", True), ("val", False), ("train", True), ("val", False)] + [
        ("test", False)
    ]
    for state, y in zip(states, trained_at):
        assert state["optimizer"]["param_groups"][0]["train_mode"] is False
        z = state["optimizer"]["state"][0]["z"]
        x = torch.lerp(y, z, 1 - 1 / 0.5)  # schedulefree's eval(): x from y and z
        assert torch.equal(state["model"]["weight"], x)
        assert not torch.equal(x, y)


def _train(task: str, config: dict[str, Any], reporter: Any) -> None:
    load_trial_function(resolve_task(task).function)(dict(config), reporter)


def _rows(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


@pytest.mark.parametrize(
    ("task", "optimizer"),
    [
        pytest.param("quadratic", "sgd-schedulefree", marks=needs_schedulefree),
        ("quadratic", "sgd-hd"),
        ("quadratic", "adam-hd"),
        pytest.param("nmf", "adamw-schedulefree", marks=needs_schedulefree),
    ],
)
def test_a_run_continued_from_its_checkpoint_reports_what_an_uninterrupted_run_does(
    task: str, optimizer: str, tmp_path: Path
) -> None:
    lr = {"sgd-schedulefree": 0.5, "sgd-hd": 0.1, "adam-hd": 0.01}.get(optimizer, 0.0025)
    config = {
        "schedule": "constant",
        "optimizer": optimizer,
        "lr": lr,
        "epochs": 4,
        "seed": 3,
        **({"hypergrad_lr": 1e-4} if optimizer.endswith("-hd") else {"warmup_steps": 10}),
    }
    uninterrupted = ValidatingReporter()
    _train(task, config, uninterrupted)

    def forward(epoch: int, loss: float, metrics: dict[str, float], state: Any) -> None:
        save_checkpoint({"epoch": epoch, "state": state}, tmp_path)
        if epoch == 2:
            raise TrialStopped("stopped")

    first = ValidatingReporter(forward)
    with pytest.raises(TrialStopped):
        _train(task, config, first)
    saved = load_checkpoint(tmp_path)  # through the file, as a retried trial gets it
    assert saved["state"]["optimizer"]["param_groups"][0].get("train_mode", False) is False
    second = ValidatingReporter(restored=Checkpoint(2, saved["state"]), history=first.history)
    _train(task, config, second)
    assert _rows(second.history) == _rows(uninterrupted.history)
    if optimizer.endswith("-hd"):
        assert len({row["lr"] for row in second.history}) == 4  # the adapted LR was restored


@needs_schedulefree
def test_another_config_keeps_the_donor_s_averaging_progress() -> None:
    # Population-based training: the donor's weights, z and step count; the new warmup.
    config = {"schedule": "constant", "optimizer": "sgd-schedulefree", "warmup_steps": 2}
    settings, model, optimizer, scheduler = _toy_run(config)
    optimizer.train()
    _toy_epoch(model, optimizer, lambda: None)
    optimizer.eval()
    state = training_state(settings, model, optimizer, scheduler, generator=torch.Generator())
    donor = optimizer.param_groups[0]

    new_settings, new_model, new_optimizer, new_scheduler = _toy_run({**config, "warmup_steps": 7})
    restore_training(
        state, new_settings, new_model, new_optimizer, new_scheduler, generator=torch.Generator()
    )
    group = new_optimizer.param_groups[0]
    assert (group["k"], group["weight_sum"], group["lr_max"]) == (
        3,
        donor["weight_sum"],
        donor["lr_max"],
    )
    assert (group["warmup_steps"], group["train_mode"]) == (7, False)
    assert torch.equal(
        new_optimizer.state[new_model.weight]["z"], state["optimizer"]["state"][0]["z"]
    )
