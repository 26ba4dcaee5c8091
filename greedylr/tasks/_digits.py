"""``digits-mlp``: an MLP on scikit-learn's 8x8 digits (1797 images, shipped with scikit-learn)."""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional

from greedylr.tasks import builtin_task
from greedylr.tasks._training import RunSettings
from greedylr.tasks._training import train_loop
from greedylr.tasks._training import training_device


_TASK = builtin_task("digits-mlp")
_DATA_SEED = 0  # the split is the same for every trial; `seed` drives init and shuffling


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as ``load_digits(return_X_y=True)`` gives them, read from the CSV
    scikit-learn ships: importing ``sklearn.datasets`` costs every worker process about 0.9 s.

    Raises:
        ValueError: scikit-learn, or its digits file, is not installed.
    """
    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    files = [Path(folder, "datasets", "data", "digits.csv.gz") for folder in folders]
    found = next((file for file in files if file.is_file()), None)
    if found is None:
        raise ValueError(
            "The digits-mlp task reads scikit-learn's digits.csv.gz, but it is not installed; "
            "pip install scikit-learn."
        )
    data = np.loadtxt(found, delimiter=",")
    return data[:, :-1], data[:, -1].astype(np.int64)


@lru_cache(maxsize=1)
def _splits() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    features, labels = load_digits()
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(_DATA_SEED))
    x = torch.tensor(features, dtype=torch.float32)[order]
    y = torch.tensor(labels, dtype=torch.long)[order]
    train_end, val_end = int(0.6 * len(y)), int(0.8 * len(y))
    mean, std = x[:train_end].mean(0), x[:train_end].std(0).clamp_min(1e-3)
    x = (x - mean) / std
    return {
        "train": (x[:train_end], y[:train_end]),
        "val": (x[train_end:val_end], y[train_end:val_end]),
        "test": (x[val_end:], y[val_end:]),
    }


def train(config: dict[str, Any], reporter: Any) -> None:
    """Train a 64-128-10 ReLU MLP with cross-entropy, batch 64 (60/20/20 split).

    Config keys besides the schedule's and the optimizer's: ``hidden`` (128), ``batch_size``
    (64). Default optimizer: SGD with momentum 0.9. Reports the validation loss and accuracy;
    the last epoch adds ``test_loss`` and ``test_accuracy``. Trains on the GPU when there is
    one; checkpoints every epoch (see :func:`greedylr.tasks._training.train_loop`).
    """
    settings = RunSettings.from_config(
        config, task=_TASK, default_optimizer_params={"momentum": 0.9}
    )
    hidden = int(settings.task_params.get("hidden", 128))
    batch_size = int(settings.task_params.get("batch_size", 64))
    device = training_device()
    data = {split: (x.to(device), y.to(device)) for split, (x, y) in _splits().items()}
    generator = torch.Generator().manual_seed(settings.seed)  # on the CPU on every device
    torch.manual_seed(settings.seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10)
    ).to(device)
    train_x, train_y = data["train"]
    batches = -(-len(train_y) // batch_size)
    optimizer, scheduler = settings.build(model.parameters(), steps_per_epoch=batches)

    def run_epoch(after_batch: Any) -> float:
        model.train()
        total = 0.0
        order = torch.randperm(len(train_y), generator=generator).to(device)
        for index in order.split(batch_size):
            optimizer.zero_grad(set_to_none=True)
            loss = functional.cross_entropy(model(train_x[index]), train_y[index])
            loss.backward()
            optimizer.step()
            after_batch()
            total += loss.item() * len(index)
        return total / len(train_y)

    def measure(split: str) -> dict[str, float]:
        x, y = data[split]
        model.eval()
        with torch.no_grad():
            logits = model(x)
            return {
                "loss": float(functional.cross_entropy(logits, y)),
                "accuracy": float((logits.argmax(1) == y).float().mean()),
            }

    train_loop(
        settings,
        optimizer,
        scheduler,
        reporter,
        run_epoch=run_epoch,
        measure=measure,
        model=model,
        generator=generator,
    )
