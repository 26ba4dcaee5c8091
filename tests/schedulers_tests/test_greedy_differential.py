"""GreedyLR(variant="hf") equals transformers' GreedyLR step for step."""

from __future__ import annotations

import math
import random
import warnings
from typing import Any

import pytest
import torch

from greedylr.schedulers import GreedyLR


transformers_optimization = pytest.importorskip("transformers.optimization")


def _random_config(rng: random.Random, groups: int) -> dict[str, Any]:
    initial = [10 ** rng.uniform(-4, -0.5) for _ in range(groups)]
    per_group = rng.random() < 0.5
    min_lr: Any = [lr * rng.choice([0.0, 0.01, 0.3, 0.9]) for lr in initial]
    max_lr: Any = [lr * rng.choice([1.0, 1.5, 4.0, 100.0]) for lr in initial]
    if not per_group:
        min_lr, max_lr = min(min_lr), max(max_lr)
    smooth = rng.random() < 0.5
    return {
        "initial": initial,
        "mode": rng.choice(["min", "max"]),
        "factor": rng.choice([0.5, 0.8, 0.95, 0.99, rng.uniform(0.01, 0.999)]),
        "patience": rng.randint(0, 5),
        "threshold": rng.choice([0.0, 1e-6, 1e-3, 0.05]),
        "threshold_mode": rng.choice(["abs", "rel"]),
        "cooldown": rng.randint(0, 3),
        "warmup": rng.randint(0, 3),
        "min_lr": min_lr,
        "max_lr": max_lr,
        "eps": rng.choice([0.0, 1e-8, 1e-5]),
        "smooth": smooth,
        "window_size": rng.randint(1, 12),
        "reset_start": rng.randint(1, 6),
    }


def _random_metrics(rng: random.Random, length: int, *, mode: str, non_finite: bool) -> list:
    kind = rng.choice(["walk", "plateau", "monotone", "spikes", "alternating", "noise"])
    sign = 1.0 if mode == "min" else -1.0
    value, metrics = rng.uniform(-2, 5), []
    for step in range(length):
        if kind == "walk":
            value += rng.gauss(0, 0.1)
        elif kind == "plateau":
            value = value if rng.random() < 0.8 else value + rng.choice([-1, 1]) * 1e-3
        elif kind == "monotone":
            value -= sign * abs(rng.gauss(0.01, 0.01)) * (1 if step < length // 2 else -1)
        elif kind == "spikes":
            value = rng.uniform(0, 1) if rng.random() > 0.1 else rng.uniform(1e3, 1e6)
        elif kind == "alternating":
            value = 1.0 if step % 2 else 2.0
        else:
            value = rng.gauss(1, 1)
        metric = value
        if non_finite and rng.random() < 0.1:
            # The values both implementations treat alike: NaN, and inf in the bad direction.
            metric = rng.choice([math.nan, sign * math.inf])
        metrics.append(metric)
    return metrics


def _run_both(config: dict[str, Any], metrics: list) -> tuple[list, list]:
    kwargs = {key: value for key, value in config.items() if key != "initial"}
    trajectories = []
    for build in (
        lambda opt: GreedyLR(opt, **kwargs),
        lambda opt: transformers_optimization.GreedyLR(opt, **kwargs),
    ):
        params = [torch.nn.Parameter(torch.zeros(1)) for _ in config["initial"]]
        optimizer = torch.optim.SGD(
            [{"params": [p], "lr": lr} for p, lr in zip(params, config["initial"])]
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ours warns when min_lr >= an initial LR
            scheduler = build(optimizer)
        trajectory = []
        for metric in metrics:
            scheduler.step(metric)
            trajectory.append(
                (list(scheduler.get_last_lr()), [g["lr"] for g in optimizer.param_groups])
            )
        trajectories.append(trajectory)
    return trajectories[0], trajectories[1]


@pytest.mark.parametrize("seed", range(40))
def test_trajectory_equals_transformers(seed: int) -> None:
    rng = random.Random(seed)
    for case in range(10):
        config = _random_config(rng, groups=rng.randint(1, 3))
        non_finite = not config["smooth"]  # transformers' window keeps NaN forever; ours skips it
        metrics = _random_metrics(
            rng, rng.randint(20, 300), mode=config["mode"], non_finite=non_finite
        )
        ours, theirs = _run_both(config, metrics)
        for step, (got, want) in enumerate(zip(ours, theirs), start=1):
            assert got == want, f"case {case} step {step}: {config}"


def test_long_smoothed_run_with_resets_equals_transformers() -> None:
    rng = random.Random(1234)
    config = {
        "initial": [0.1, 0.01],
        "mode": "min",
        "factor": 0.9,
        "patience": 2,
        "threshold": 1e-4,
        "threshold_mode": "rel",
        "cooldown": 1,
        "warmup": 1,
        "min_lr": [0.05, 0.001],
        "max_lr": [0.5, 0.02],
        "eps": 1e-8,
        "smooth": True,
        "window_size": 50,
        "reset_start": 3,
    }
    metrics = [1.0 / (1 + step) + rng.gauss(0, 0.05) for step in range(5000)]
    ours, theirs = _run_both(config, metrics)
    assert ours == theirs
    assert len({tuple(lrs) for lrs, _ in ours}) > 10  # the run did move the LRs around
