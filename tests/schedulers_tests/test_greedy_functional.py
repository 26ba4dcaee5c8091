"""The pure core ``greedy_update`` against the class, and its persistence guarantees."""

from __future__ import annotations

import math
import random

import pytest
import torch

from greedylr.schedulers import GreedyConfig
from greedylr.schedulers import GreedyLR
from greedylr.schedulers import greedy_update
from greedylr.schedulers import initial_state


def _metrics(length: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    values = [abs(rng.gauss(1.0 / (1 + step), 0.2)) for step in range(length)]
    for index in rng.sample(range(length), k=length // 20):
        values[index] = rng.choice([math.nan, math.inf])
    return values


@pytest.mark.parametrize("variant", ["hf", "paper"])
@pytest.mark.parametrize("smooth", [False, True])
def test_functional_core_equals_the_class(variant: str, smooth: bool) -> None:
    lrs = (0.1, 0.03)
    kwargs = {
        "mode": "min",
        "factor": 0.8,
        "patience": 1,
        "cooldown": 1,
        "warmup": 2,
        "smooth": smooth,
        "window_size": 5,
        "reset_start": 3,
        "variant": variant,
    }
    optimizer = torch.optim.SGD(
        [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs]
    )
    scheduler = GreedyLR(optimizer, min_lr=[0.01, 0.001], max_lr=[0.4, 0.1], **kwargs)
    config = GreedyConfig(initial_lrs=lrs, min_lrs=(0.01, 0.001), max_lrs=(0.4, 0.1), **kwargs)
    state = initial_state(config)
    for metric in _metrics(400, seed=7):
        scheduler.step(metric)
        new_lrs, state = greedy_update(state, metric, config)
        assert list(new_lrs) == scheduler.get_last_lr()
        assert state == scheduler.greedy_state


def test_greedy_update_does_not_mutate_its_input_state() -> None:
    config = GreedyConfig(
        initial_lrs=(0.1,),
        min_lrs=(0.0,),
        max_lrs=(1.0,),
        smooth=True,
        window_size=3,
        patience=0,
    )
    state = initial_state(config)
    for metric in [5.0, 4.0, 3.0, 6.0]:
        _, state = greedy_update(state, metric, config)
    before = state.window_values(3)
    first = greedy_update(state, 1.0, config)
    second = greedy_update(state, 10.0, config)  # branch from the same state
    third = greedy_update(state, 1.0, config)
    assert first == third
    assert first[1].window_values(3) == [3.0, 6.0, 1.0]
    assert second[1].window_values(3) == [3.0, 6.0, 10.0]
    assert state.window_values(3) == before == [4.0, 3.0, 6.0]


def test_smoothing_memory_stays_bounded_by_the_window() -> None:
    # O(1) per step: the window's storage never grows past 2 * window + 65 values.
    config = GreedyConfig(
        initial_lrs=(0.1,), min_lrs=(0.0,), max_lrs=(1.0,), smooth=True, window_size=10
    )
    state = initial_state(config)
    values = [float(step % 7) for step in range(1000)]
    for value in values:
        _, state = greedy_update(state, value, config)
        assert len(state.window_log) <= 2 * config.window_size + 65
    assert state.window_values(10) == values[-10:]
    assert state.window_sum == pytest.approx(sum(values[-10:]))


def test_config_validation_is_shared_with_the_class() -> None:
    with pytest.raises(ValueError, match=r"`factor` must be in \(0, 1\), but got factor=2.0."):
        GreedyConfig(initial_lrs=(0.1,), min_lrs=(0.0,), max_lrs=(1.0,), factor=2.0)
    with pytest.raises(ValueError, match="`min_lrs` must have one value per param group"):
        GreedyConfig(initial_lrs=(0.1,), min_lrs=(), max_lrs=(1.0,))
