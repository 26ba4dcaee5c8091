"""GreedyLR rejects bad arguments with one clear message, and warns about a useless min_lr."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch

from greedylr.schedulers import GreedyLR


def _optimizer(groups: int = 1, lr: float = 0.1) -> torch.optim.Optimizer:
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in range(groups)]
    return torch.optim.SGD([{"params": [p], "lr": lr} for p in params])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"factor": 1.5}, ValueError, r"^`factor` must be in \(0, 1\), but got factor=1.5.$"),
        ({"factor": 0.0}, ValueError, r"`factor` must be in \(0, 1\), but got factor=0.0"),
        ({"factor": 1.0}, ValueError, r"`factor` must be in \(0, 1\)"),
        ({"patience": -1}, ValueError, r"`patience` must be >= 0, but got patience=-1."),
        ({"cooldown": -2}, ValueError, r"`cooldown` must be >= 0, but got cooldown=-2."),
        ({"warmup": -1}, ValueError, r"`warmup` must be >= 0, but got warmup=-1."),
        ({"patience": 1.5}, TypeError, r"`patience` must be an int, but got patience=1.5."),
        ({"window_size": 0}, ValueError, r"`window_size` must be >= 1, but got window_size=0."),
        ({"reset_start": 0}, ValueError, r"`reset_start` must be >= 1"),
        ({"min_lr": 0.5, "max_lr": 0.2}, ValueError, r"`min_lr <= max_lr` must hold"),
        (
            {"min_lr": [0.01, 0.02]},
            ValueError,
            r"`min_lr` must have one value per param group \(1\)",
        ),
        ({"max_lr": []}, ValueError, r"`max_lr` must have one value per param group"),
        ({"min_lr": -0.1}, ValueError, r"`min_lr` must be finite and >= 0"),
        (
            {"mode": "maximize"},
            ValueError,
            r"`mode` must be one of \('min', 'max'\), but got mode='maximize'.",
        ),
        (
            {"threshold_mode": "pct"},
            ValueError,
            r"`threshold_mode` must be one of \('abs', 'rel'\)",
        ),
        (
            {"variant": "keras"},
            ValueError,
            r"`variant` must be one of \('hf', 'paper'\), but got variant='keras'.",
        ),
        ({"threshold": -1e-3}, ValueError, r"`threshold` must be a finite number >= 0"),
        ({"eps": float("nan")}, ValueError, r"`eps` must be a finite number >= 0"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        GreedyLR(_optimizer(), **{"min_lr": 1e-4, **kwargs})


def test_not_an_optimizer() -> None:
    with pytest.raises(TypeError, match="list is not an Optimizer"):
        GreedyLR([], min_lr=1e-4)  # type: ignore[arg-type]


def test_min_lr_at_or_above_an_initial_lr_warns() -> None:
    with pytest.warns(UserWarning, match=r"param group 1: its LR can never decrease"):
        GreedyLR(
            torch.optim.SGD(
                [
                    {"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.1},
                    {"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 1e-4},
                ]
            ),
            min_lr=1e-4,
        )
    with pytest.warns(UserWarning, match="can never decrease"):
        GreedyLR(_optimizer(lr=1e-4))  # transformers' default min_lr=1e-3


def test_a_valid_configuration_does_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GreedyLR(_optimizer(groups=2), min_lr=[1e-4, 1e-5], max_lr=[1.0, 0.5])
