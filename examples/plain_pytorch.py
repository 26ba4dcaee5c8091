"""GreedyLR in a plain PyTorch loop: step it on the validation loss once per epoch.

Halfway through, the model, optimizer, scheduler and data-order states are saved to a
checkpoint; the run goes on, and a second run is rebuilt from fresh objects loaded from the
checkpoint (``torch.load(weights_only=True)``: GreedyLR's state is plain values). From there
each line shows both runs side by side: the resumed one follows the same LR trajectory.

Needs only greedylr itself. Run: ``python examples/plain_pytorch.py [--smoke]``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from greedylr import GreedyLR


def _build() -> tuple[torch.nn.Module, torch.optim.Optimizer, GreedyLR]:
    model = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scheduler = GreedyLR(optimizer, factor=0.9, patience=1, min_lr=1e-4, max_lr=0.2)
    return model, optimizer, scheduler


def _epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: GreedyLR,
    data: tuple[torch.Tensor, ...],
    generator: torch.Generator,
) -> tuple[float, float]:
    """Train one epoch, step the scheduler on the validation loss; return it and the LR."""
    train_x, train_y, val_x, val_y = data
    for batch in torch.randperm(len(train_x), generator=generator).split(32):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(train_x[batch]), train_y[batch]).backward()
        optimizer.step()
    with torch.no_grad():
        val_loss = torch.nn.functional.mse_loss(model(val_x), val_y)
    scheduler.step(val_loss)  # like ReduceLROnPlateau.step(metrics)
    return float(val_loss), scheduler.get_last_lr()[0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few epochs, for CI")
    args = parser.parse_args(argv)
    epochs = 8 if args.smoke else 60
    checkpoint_epoch = epochs // 2

    generator = torch.Generator().manual_seed(0)
    features = torch.randn(512, 10, generator=generator)
    targets = features @ torch.randn(10, 1, generator=generator) + 0.1 * torch.randn(
        512, 1, generator=generator
    )
    data = (features[:384], targets[:384], features[384:], targets[384:])
    torch.manual_seed(0)
    model, optimizer, scheduler = _build()

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "checkpoint.pt"
        uninterrupted = []
        for epoch in range(1, epochs + 1):
            uninterrupted.append(_epoch(model, optimizer, scheduler, data, generator))
            if epoch == checkpoint_epoch:
                checkpoint = {
                    "epoch": epoch,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "data_order": generator.get_state(),
                }
                torch.save(checkpoint, path)

        # What a restarted process does: fresh objects, every state from the checkpoint.
        loaded = torch.load(path, weights_only=True)
    model, optimizer, scheduler = _build()
    model.load_state_dict(loaded["model"])
    optimizer.load_state_dict(loaded["optimizer"])
    scheduler.load_state_dict(loaded["scheduler"])
    generator = torch.Generator().set_state(loaded["data_order"])
    resumed = [
        _epoch(model, optimizer, scheduler, data, generator)
        for _ in range(loaded["epoch"], epochs)
    ]

    for epoch, (val_loss, lr) in enumerate(uninterrupted, start=1):
        line = f"epoch {epoch:3d}  val loss {val_loss:.5f}  lr {lr:.5f}"
        if epoch == checkpoint_epoch:
            line += "  (checkpoint saved)"
        elif epoch > checkpoint_epoch:
            resumed_loss, resumed_lr = resumed[epoch - checkpoint_epoch - 1]
            same = "same" if (resumed_loss, resumed_lr) == (val_loss, lr) else "DIFFERENT"
            line += f"  | resumed: val loss {resumed_loss:.5f}  lr {resumed_lr:.5f}  ({same})"
        print(line)
    if resumed != uninterrupted[checkpoint_epoch:]:
        raise SystemExit("The resumed run left the uninterrupted run's trajectory.")


if __name__ == "__main__":
    main()
