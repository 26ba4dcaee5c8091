"""The built-in tasks: the contract, determinism, learning, and every kind of schedule."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from greedylr.backends import ValidatingReporter
from greedylr.backends import load_trial_function
from greedylr.tasks import list_tasks
from greedylr.tasks import resolve_task
from greedylr.tasks._training import RunSettings


# The comparison suite's tasks run this contract at tiny sizes in test_suite_tasks.py: their
# default runs take seconds to minutes each.
SUITE_TASKS = {"mnist1d-cnn", "fashion-mnist-mlp", "fashion-mnist-cnn", "char-lm"}
TASKS = [info.name for info in list_tasks() if info.name not in SUITE_TASKS]


def _run(task: str, **config: Any) -> list[dict[str, float]]:
    reporter = ValidatingReporter()
    load_trial_function(resolve_task(task).function)(config, reporter)
    return reporter.history


def _without_seconds(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


@pytest.mark.parametrize("task", TASKS)
def test_default_run_reports_every_epoch_and_test_metrics_at_the_end(task: str) -> None:
    info = resolve_task(task)
    history = _run(task)
    assert [row["epoch"] for row in history] == list(range(1, (info.default_epochs or 0) + 1))
    assert all(math.isfinite(row["loss"]) and row["lr"] > 0 for row in history)
    assert history[0]["lr"] == info.default_lr
    test_keys = [key for key in history[-1] if key.startswith("test_")]
    assert "test_loss" in test_keys
    assert all(not key.startswith("test_") for row in history[:-1] for key in row)
    assert history[-1]["loss"] < history[0]["loss"], "the default config did not learn"


@pytest.mark.parametrize("task", TASKS)
def test_the_same_seed_gives_the_same_run_and_another_seed_another(task: str) -> None:
    config = {"epochs": 3, "schedule": "greedylr", "patience": 0, "min_lr_ratio": 0.1}
    first = _without_seconds(_run(task, seed=1, **config))
    assert first == _without_seconds(_run(task, seed=1, **config))
    assert first != _without_seconds(_run(task, seed=2, **config))


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize(
    "schedule",
    [
        {"schedule": "greedylr", "patience": 0, "min_lr_ratio": 0.01, "window_size": 3},
        {"schedule": "plateau", "patience": 0, "factor": 0.5, "threshold": 0.9},
        {"schedule": "onecycle"},
        {"schedule": "cosine", "warmup_fraction": 0.25},
        {"schedule": "wsd", "decay_fraction": 0.5},
    ],
)
def test_every_kind_of_schedule_trains(task: str, schedule: dict[str, Any]) -> None:
    history = _run(task, epochs=4, **schedule)
    lrs = [row["lr"] for row in history]
    assert len(history) == 4
    assert len(set(lrs)) > 1, f"{schedule['schedule']} never moved the LR: {lrs}"
    if schedule["schedule"] == "onecycle":  # stepped per batch: the epoch LRs are mid-cycle
        assert lrs[0] < max(lrs)


@pytest.mark.parametrize("task", TASKS)
def test_optimizers_and_task_keys(task: str) -> None:
    history = _run(
        task, epochs=2, optimizer="adamw", lr=1e-3, weight_decay=0.0, schedule="constant"
    )
    assert [row["lr"] for row in history] == [1e-3, 1e-3]
    with pytest.raises(ValueError, match=r"Unknown config key `colour`; valid keys are \["):
        _run(task, epochs=1, colour="red")


@pytest.mark.parametrize("task", [info.name for info in list_tasks()])
def test_run_settings_take_the_task_s_declared_keys_and_optimizer(task: str) -> None:
    info = resolve_task(task)
    assert info.config_keys
    assert info.optimizer == "sgd"
    task_config = {key: 1 for key in info.config_keys}
    settings = RunSettings.from_config({"epochs": 1, "momentum": 0.5, **task_config}, task=info)
    assert settings.task_params == task_config
    assert (settings.optimizer, settings.optimizer_params["momentum"]) == ("sgd", 0.5)
    assert settings.lr == info.default_lr
    with pytest.raises(ValueError, match=r"Unknown config key `beta2`; valid keys are \["):
        RunSettings.from_config({"beta2": 0.9}, task=info)  # AdamW's, not SGD's


def test_digits_are_read_exactly_as_scikit_learn_loads_them() -> None:
    from sklearn.datasets import load_digits as sklearn_digits

    from greedylr.tasks._digits import load_digits

    features, labels = load_digits()
    expected_features, expected_labels = sklearn_digits(return_X_y=True)
    np.testing.assert_array_equal(features, expected_features)
    np.testing.assert_array_equal(labels, expected_labels)
    assert labels.dtype == expected_labels.dtype
