"""GreedyLR state: weights-only checkpoints and resume equivalence."""

from __future__ import annotations

import io
import math
import random
from typing import Any

import pytest
import torch

from greedylr.schedulers import GreedyLR


def _optimizer(lrs: tuple[float, ...] = (0.1, 0.02)) -> torch.optim.Optimizer:
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in lrs]
    return torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, lrs)])


_CONFIGS: list[dict[str, Any]] = [
    {"patience": 1, "factor": 0.7, "min_lr": [0.01, 0.001], "max_lr": [0.5, 0.1]},
    {
        "patience": 2,
        "cooldown": 2,
        "warmup": 1,
        "smooth": True,
        "window_size": 7,
        "reset_start": 2,
        "min_lr": 0.001,
        "threshold_mode": "rel",
        "threshold": 1e-3,
    },
    {
        "variant": "paper",
        "patience": 0,
        "cooldown": 1,
        "warmup": 2,
        "reset_start": 5,
        "smooth": True,
        "window_size": 3,
        "min_lr": 0.001,
    },
    {"mode": "max", "patience": 1, "smooth": True, "window_size": 50, "min_lr": 1e-4},
]


def _metrics(length: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    values = [1.0 / (1 + 0.1 * step) + rng.gauss(0, 0.05) for step in range(length)]
    values[length // 3] = math.nan
    return values


def _weights_only_round_trip(state: dict[str, Any]) -> dict[str, Any]:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("config", _CONFIGS)
@pytest.mark.parametrize("stop_at", [0, 1, 13, 70])
def test_resume_from_a_weights_only_checkpoint_equals_an_uninterrupted_run(
    config: dict[str, Any], stop_at: int
) -> None:
    metrics = _metrics(120, seed=stop_at)
    optimizer = _optimizer()
    uninterrupted = GreedyLR(optimizer, **config)
    expected = []
    for metric in metrics:
        uninterrupted.step(metric)
        expected.append(uninterrupted.get_last_lr())

    first_optimizer = _optimizer()
    first = GreedyLR(first_optimizer, **config)
    for metric in metrics[:stop_at]:
        first.step(metric)
    checkpoint = _weights_only_round_trip(first.state_dict())

    # A fresh optimizer and a scheduler built with other arguments: the state carries the
    # configuration as well as the counters, and sets the optimizer's LRs.
    second_optimizer = _optimizer()
    second = GreedyLR(second_optimizer, patience=9, factor=0.5, min_lr=0.0, smooth=False)
    second.load_state_dict(checkpoint)
    assert second.state_dict() == first.state_dict()
    assert [g["lr"] for g in second_optimizer.param_groups] == first.get_last_lr()
    resumed = expected[:stop_at]
    for metric in metrics[stop_at:]:
        second.step(metric)
        resumed.append(second.get_last_lr())
    assert resumed == expected


def test_state_dict_is_plain_values_and_load_does_not_mutate_it() -> None:
    scheduler = GreedyLR(_optimizer(), smooth=True, window_size=4, min_lr=1e-4)
    for metric in [3.0, 2.0, 2.5, 1.0, 4.0, 0.5]:
        scheduler.step(metric)
    state = scheduler.state_dict()
    allowed = (bool, int, float, str, list)
    assert all(isinstance(value, allowed) for value in state.values()), state
    assert state["window_values"] == [2.5, 1.0, 4.0, 0.5]
    assert state["last_epoch"] == 6
    snapshot = {key: (list(v) if isinstance(v, list) else v) for key, v in state.items()}
    other = GreedyLR(_optimizer(), min_lr=1e-4)
    other.load_state_dict(state)
    other.step(0.1)
    assert state == snapshot


def test_load_rejects_a_state_for_another_number_of_param_groups() -> None:
    state = GreedyLR(_optimizer((0.1, 0.2)), min_lr=1e-4).state_dict()
    scheduler = GreedyLR(_optimizer((0.1,)), min_lr=1e-4)
    with pytest.raises(ValueError, match="2 param groups but the optimizer has 1"):
        scheduler.load_state_dict(state)


def test_step_after_add_param_group_raises_a_clear_error() -> None:
    optimizer = _optimizer((0.1,))
    scheduler = GreedyLR(optimizer, patience=0, min_lr=1e-4)
    optimizer.add_param_group({"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.1})
    with pytest.raises(RuntimeError, match="after the last `add_param_group`"):
        scheduler.step(1.0)


def test_an_lr_changed_by_the_user_between_steps_is_the_new_starting_point() -> None:
    optimizer = _optimizer((0.1,))
    scheduler = GreedyLR(optimizer, patience=0, factor=0.5, min_lr=1e-4)
    scheduler.step(1.0)  # good: 0.1 -> 0.2
    optimizer.param_groups[0]["lr"] = 0.05
    scheduler.step(0.5)  # good: 0.05 -> 0.1
    assert scheduler.get_last_lr() == [0.1]


def test_tensor_lr_is_updated_in_place() -> None:
    lr = torch.tensor(0.1)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = GreedyLR(optimizer, patience=0, factor=0.5, min_lr=1e-4)
    scheduler.step(1.0)
    assert isinstance(optimizer.param_groups[0]["lr"], torch.Tensor)
    assert float(optimizer.param_groups[0]["lr"]) == pytest.approx(0.2)
    assert scheduler.get_last_lr() == pytest.approx([0.2])


# Improving (increases, then warmup), flat (decreases, then cooldown, down to min_lr where the
# "hf" reset counter counts down to a reset), a NaN, improving again, flat again.
_PHASED_LOSSES = (
    [10.0, 9, 8, 7, 6, 5, 4, math.nan, 3, 2] + [5.0] * 24 + [1, 0.5, 0.25, 0.1] + [2.0] * 6
)
_PHASED_LRS = (0.1, 0.05)
_PHASED_COMMON: dict[str, Any] = {
    "patience": 1,
    "factor": 0.5,
    "cooldown": 2,
    "warmup": 2,
    "min_lr": 0.025,
    "max_lr": 0.4,
    "smooth": True,
    "window_size": 4,
}
_PHASED_CONFIGS: dict[str, dict[str, Any]] = {
    "hf": {**_PHASED_COMMON, "reset_start": 2},
    "paper": {**_PHASED_COMMON, "reset_start": 7, "variant": "paper"},
}
# The keys of a state that are configuration; every other key is a counter the stop points
# must cover (a counter added later is covered by the check below, or the test fails).
_CONFIGURATION_KEYS = {
    "mode",
    "factor",
    "patience",
    "threshold",
    "threshold_mode",
    "cooldown",
    "warmup",
    "eps",
    "smooth",
    "window_size",
    "reset_start",
    "variant",
    "initial_lrs",
    "min_lrs",
    "max_lrs",
}


@pytest.mark.parametrize("variant", list(_PHASED_CONFIGS))
def test_resume_at_every_step_covers_every_counter(variant: str, tmp_path: Any) -> None:
    config, losses = _PHASED_CONFIGS[variant], _PHASED_LOSSES
    uninterrupted = GreedyLR(_optimizer(_PHASED_LRS), **config)
    expected = []
    for loss in losses:
        uninterrupted.step(loss)
        expected.append((uninterrupted.get_last_lr(), uninterrupted.state_dict()))

    saved_states = []
    for stop_at in range(len(losses) + 1):
        first = GreedyLR(_optimizer(_PHASED_LRS), **config)
        for loss in losses[:stop_at]:
            first.step(loss)
        path = tmp_path / f"scheduler-{stop_at}.pt"
        torch.save(first.state_dict(), path)
        state = torch.load(path, weights_only=True)
        saved_states.append(state)
        optimizer = _optimizer((0.3, 0.3))
        second = GreedyLR(optimizer, patience=9, factor=0.9, min_lr=0.0, smooth=False)
        second.load_state_dict(state)
        for step, loss in enumerate(losses[stop_at:], start=stop_at):
            second.step(loss)
            assert (second.get_last_lr(), second.state_dict()) == expected[step], (
                f"stopped at {stop_at}, step {step + 1}"
            )

    fresh = saved_states[0]
    counters = set(fresh) - _CONFIGURATION_KEYS
    assert {"cooldown_counter", "warmup_counter", "num_bad_steps", "num_good_steps"} <= counters
    for key in sorted(counters):
        assert any(state[key] != fresh[key] for state in saved_states), f"{key} never moves"
    # Stopping in cooldown or warmup is where a lost counter changes the trajectory.
    for key in ("cooldown_counter", "warmup_counter", "num_bad_steps", "num_good_steps"):
        assert any(state[key] > 0 for state in saved_states), key
    assert any(state["reset_counter"] < config["reset_start"] for state in saved_states)
    assert any(math.isfinite(state["best"]) for state in saved_states)
    size = config["window_size"]
    assert any(0 < len(state["window_values"]) < size for state in saved_states)
    assert any(len(state["window_values"]) == size for state in saved_states)
