"""GreedyLR in a plain PyTorch loop: step it on the validation loss once per epoch.

Needs only greedylr itself. Run: ``python examples/plain_pytorch.py [--smoke]``.
"""

from __future__ import annotations

import argparse

import torch

from greedylr import GreedyLR


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few epochs, for CI")
    args = parser.parse_args(argv)
    epochs = 8 if args.smoke else 60

    generator = torch.Generator().manual_seed(0)
    features = torch.randn(512, 10, generator=generator)
    targets = features @ torch.randn(10, 1, generator=generator) + 0.1 * torch.randn(
        512, 1, generator=generator
    )
    train_x, val_x, train_y, val_y = features[:384], features[384:], targets[:384], targets[384:]
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scheduler = GreedyLR(optimizer, factor=0.9, patience=1, min_lr=1e-4, max_lr=0.2)

    for epoch in range(1, epochs + 1):
        for batch in torch.randperm(384, generator=generator).split(32):
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(model(train_x[batch]), train_y[batch]).backward()
            optimizer.step()
        with torch.no_grad():
            val_loss = torch.nn.functional.mse_loss(model(val_x), val_y)
        scheduler.step(val_loss)  # like ReduceLROnPlateau.step(metrics)
        lr = scheduler.get_last_lr()[0]
        print(f"epoch {epoch:3d}  val loss {float(val_loss):.5f}  lr {lr:.5f}")

    torch.save(scheduler.state_dict(), "/dev/null")  # plain values: weights_only loads it


if __name__ == "__main__":
    main()
