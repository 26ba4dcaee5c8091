"""What the image and signal classification tasks share: a size check, the subset of the
training split a trial trains on, and the training loop of a classifier with cross-entropy.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional

from greedylr.tasks._training import RunSettings
from greedylr.tasks._training import train_loop


Split = tuple[torch.Tensor, torch.Tensor]
EVALUATION_CHUNK = 250  # examples per forward pass when measuring: a CNN's fastest on a CPU


def size_param(settings: RunSettings, name: str, default: int, *, maximum: int) -> int:
    """The task's config key ``name`` as an int in ``[1, maximum]`` (``default`` when unset).

    Raises:
        ValueError: The value is not a whole number in ``[1, maximum]``.
    """
    value = settings.task_params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise ValueError(f"`{name}` must be a whole number, but got {name}={value!r}.")
    value = int(value)
    if not 1 <= value <= maximum:
        raise ValueError(f"`{name}` must be in [1, {maximum}], but got {name}={value!r}.")
    return value


def cache_folder() -> Path:
    """greedylr's folder in the user's cache: ``$XDG_CACHE_HOME/greedylr`` or
    ``~/.cache/greedylr`` (a relative ``XDG_CACHE_HOME`` is ignored, as the XDG spec says).
    """
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".cache"
    return root / "greedylr"


def train_classifier(
    settings: RunSettings,
    reporter: Any,
    *,
    model: torch.nn.Module,
    splits: dict[str, Split],
    batch_size: int,
) -> None:
    """Train ``model`` with cross-entropy on ``splits["train"]`` in shuffled batches.

    Each epoch reports the validation ``loss`` and ``accuracy``; the last adds ``test_loss``
    and ``test_accuracy`` (see :func:`greedylr.tasks._training.train_loop`, which also
    checkpoints every epoch). ``seed`` drives the batch order.

    Args:
        settings: The trial's settings.
        reporter: The trial's reporter.
        model: The classifier, built after ``torch.manual_seed(settings.seed)``, on the device
            of the splits.
        splits: ``"train"``, ``"val"`` and ``"test"``: inputs and class labels.
        batch_size: Examples per optimizer step.
    """
    device = next(model.parameters()).device
    train_x, train_y = splits["train"]
    generator = torch.Generator().manual_seed(settings.seed)  # on the CPU on every device
    batches = -(-len(train_y) // batch_size)
    optimizer, scheduler = settings.build(model.parameters(), steps_per_epoch=batches)

    def run_epoch(after_batch: Any) -> float:
        model.train()
        total = torch.zeros((), device=device)
        order = torch.randperm(len(train_y), generator=generator).to(device)
        for index in order.split(batch_size):
            optimizer.zero_grad(set_to_none=True)
            loss = functional.cross_entropy(model(train_x[index]), train_y[index])
            loss.backward()
            optimizer.step()
            after_batch()
            total += loss.detach() * len(index)
        return float(total) / len(train_y)

    def measure(split: str) -> dict[str, float]:
        x, y = splits[split]
        model.eval()
        loss, correct = torch.zeros((), device=device), torch.zeros((), device=device)
        with torch.no_grad():
            for inputs, labels in zip(x.split(EVALUATION_CHUNK), y.split(EVALUATION_CHUNK)):
                logits = model(inputs)
                loss += functional.cross_entropy(logits, labels, reduction="sum")
                correct += (logits.argmax(1) == labels).sum()
        return {"loss": float(loss) / len(y), "accuracy": float(correct) / len(y)}

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
