"""``nmf``: stochastic non-negative matrix factorization with projected SGD and noisy gradients.

The first GreedyLR paper's testbed, in its spirit: a synthetic rank-``r`` non-negative matrix
``V = W* H*`` plus noise, fitted by ``W H`` with ``W, H >= 0`` (projected after every step) on
80 % of the entries, with Gaussian noise added to every gradient. The validation and test losses
are the mean squared errors on two disjoint 10 % sets of held-out entries.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch

from greedylr.tasks import builtin_task
from greedylr.tasks._training import RunSettings
from greedylr.tasks._training import train_loop
from greedylr.tasks._training import training_device


_TASK = builtin_task("nmf")
STEPS_PER_EPOCH = 50
_DATA_SEED = 0


@lru_cache(maxsize=4)
def _problem(rows: int, columns: int, rank: int, noise: float) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(_DATA_SEED)
    clean = torch.rand(rows, rank, generator=generator) @ torch.rand(
        rank, columns, generator=generator
    )
    observed = (clean + noise * torch.randn(rows, columns, generator=generator)).clamp_min(0.0)
    split = torch.rand(rows, columns, generator=generator)
    return {
        "observed": observed,
        "train": split < 0.8,
        "val": (split >= 0.8) & (split < 0.9),
        "test": split >= 0.9,
    }


def train(config: dict[str, Any], reporter: Any) -> None:
    """Fit ``W H`` to the training entries with projected (stochastic) gradient steps.

    Config keys besides the schedule's and the optimizer's: ``rows`` (100), ``columns`` (80),
    ``rank`` (5), ``noise`` (data noise, 0.1), ``gradient_noise`` (std of the noise added to
    every gradient entry, 0.5). An epoch is 50 steps. Default optimizer: plain SGD. Trains on
    the GPU when there is one; checkpoints every epoch.
    """
    settings = RunSettings.from_config(config, task=_TASK)
    task = settings.task_params
    rows, columns = int(task.get("rows", 100)), int(task.get("columns", 80))
    rank = int(task.get("rank", 5))
    gradient_noise = float(task.get("gradient_noise", 0.5))
    device = training_device()
    problem = {
        name: value.to(device)
        for name, value in _problem(rows, columns, rank, float(task.get("noise", 0.1))).items()
    }
    observed = problem["observed"]
    generator = torch.Generator().manual_seed(settings.seed)  # on the CPU on every device
    scale = (observed.mean() / rank) ** 0.5
    left = torch.nn.Parameter(scale * torch.rand(rows, rank, generator=generator).to(device))
    right = torch.nn.Parameter(scale * torch.rand(rank, columns, generator=generator).to(device))
    factors = torch.nn.ParameterDict({"left": left, "right": right})
    optimizer, scheduler = settings.build([left, right], steps_per_epoch=STEPS_PER_EPOCH)
    train_mask = problem["train"]
    entries_per_row = float(train_mask.sum()) / rows  # the loss is per row: 1/2 SSE / row

    def run_epoch(after_batch: Any) -> float:
        total = 0.0
        for _ in range(STEPS_PER_EPOCH):
            optimizer.zero_grad(set_to_none=True)
            residual = (left @ right - observed) * train_mask
            loss = 0.5 * (residual**2).sum() / entries_per_row
            loss.backward()
            with torch.no_grad():
                for parameter in (left, right):
                    noise = torch.randn(parameter.shape, generator=generator).to(device)
                    parameter.grad.add_(gradient_noise * noise)  # type: ignore[union-attr]
            optimizer.step()
            with torch.no_grad():
                left.clamp_(min=0.0)
                right.clamp_(min=0.0)
            after_batch()
            total += loss.item()
        return total / STEPS_PER_EPOCH

    def measure(split: str) -> dict[str, float]:
        mask = problem[split]
        with torch.no_grad():
            error = ((left @ right - observed)[mask] ** 2).mean()
            relative = error.sqrt() / observed[mask].pow(2).mean().sqrt()
        return {"loss": float(error), "relative_error": float(relative)}

    train_loop(
        settings,
        optimizer,
        scheduler,
        reporter,
        run_epoch=run_epoch,
        measure=measure,
        model=factors,
        generator=generator,
    )
