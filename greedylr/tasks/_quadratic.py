"""``quadratic``: the noisy quadratic model, where greedy LR adaptation is known to decay early.

Minimize ``L(x) = 1/2 sum_i h_i x_i^2`` with ``h_i = 1 / i`` from stochastic gradients
``h * x + e`` whose noise has covariance ``h / batch_size`` (Zhang et al. 2019; Wu et al. 2018).
The short-horizon bias: a rule that maximizes the next step's progress picks too small an LR.
The validation and test losses are ``1/2 sum_i h_i (x_i - z_i)^2`` for two fixed draws ``z`` of
the noise, like finite validation and test sets; ``expected_loss`` is ``L(x)`` itself.
"""

from __future__ import annotations

from typing import Any

import torch

from greedylr.tasks import builtin_task
from greedylr.tasks._training import RunSettings
from greedylr.tasks._training import train_loop
from greedylr.tasks._training import training_device


_TASK = builtin_task("quadratic")
STEPS_PER_EPOCH = 100
_DATA_SEED = 0


def train(config: dict[str, Any], reporter: Any) -> None:
    """Run SGD-style steps on the noisy quadratic.

    Config keys besides the schedule's and the optimizer's: ``dimension`` (100),
    ``batch_size`` (gradient noise variance ``h / batch_size``, 8), ``evaluation_size`` (the
    size of the validation and test "sets", 1000). An epoch is 100 steps; the start is
    ``x_i = 1``. Default optimizer: plain SGD. Runs on the GPU when there is one; checkpoints
    every epoch.
    """
    settings = RunSettings.from_config(config, task=_TASK)
    task = settings.task_params
    dimension = int(task.get("dimension", 100))
    batch_size = float(task.get("batch_size", 8))
    evaluation_size = float(task.get("evaluation_size", 1000))
    device = training_device()
    curvature = 1.0 / torch.arange(1, dimension + 1, dtype=torch.float64)
    data = torch.Generator().manual_seed(_DATA_SEED)
    offsets = {
        split: (
            torch.randn(dimension, generator=data, dtype=torch.float64)
            * (1.0 / (curvature * evaluation_size)).sqrt()
        ).to(device)
        for split in ("val", "test")
    }
    curvature = curvature.to(device)
    generator = torch.Generator().manual_seed(settings.seed)  # on the CPU on every device
    x = torch.nn.Parameter(torch.ones(dimension, dtype=torch.float64, device=device))
    optimizer, scheduler = settings.build([x], steps_per_epoch=STEPS_PER_EPOCH)
    noise_scale = (curvature / batch_size).sqrt()

    def run_epoch(after_batch: Any) -> float:
        total = 0.0
        for _ in range(STEPS_PER_EPOCH):
            optimizer.zero_grad(set_to_none=True)
            noise = torch.randn(dimension, generator=generator, dtype=torch.float64).to(device)
            with torch.no_grad():
                x.grad = curvature * x + noise_scale * noise
                total += float(0.5 * (curvature * x * x).sum())
            optimizer.step()
            after_batch()
        return total / STEPS_PER_EPOCH

    def measure(split: str) -> dict[str, float]:
        with torch.no_grad():
            loss = 0.5 * (curvature * (x - offsets[split]) ** 2).sum()
            expected = 0.5 * (curvature * x * x).sum()
        return {"loss": float(loss), "expected_loss": float(expected)}

    train_loop(
        settings,
        optimizer,
        scheduler,
        reporter,
        run_epoch=run_epoch,
        measure=measure,
        model=torch.nn.ParameterDict({"x": x}),
        generator=generator,
    )
