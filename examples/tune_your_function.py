"""Tune GreedyLR for your own training function, from Python.

Your function is a plain ``train(config, reporter)`` at the top level of a module or script; it
reports the validation loss once per epoch, and the engine stops bad trials early. Needs the
``optuna`` extra. Run: ``python examples/tune_your_function.py [--smoke]``.
"""

from __future__ import annotations

import argparse
import tempfile
from typing import Any

import torch

import greedylr
from greedylr.schedulers import create_optimizer
from greedylr.schedulers import create_schedule
from greedylr.searchers import greedylr_space


def train(config: dict[str, Any], reporter: Any) -> None:
    """A small regression model; every GreedyLR knob comes from ``config``."""
    generator = torch.Generator().manual_seed(config["seed"])
    features = torch.randn(512, 10, generator=generator)
    targets = (features[:, :3].sin().sum(1, keepdim=True)) + 0.1 * torch.randn(
        512, 1, generator=generator
    )
    model = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    optimizer = create_optimizer("sgd", model.parameters(), lr=config["lr"], momentum=0.9)
    knobs = {k: v for k, v in config.items() if k not in ("lr", "schedule", "epochs", "seed")}
    scheduler = create_schedule("greedylr", optimizer, horizon=config["epochs"], **knobs)
    for epoch in range(1, config["epochs"] + 1):
        for batch in torch.randperm(384, generator=generator).split(32):
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(features[batch]), targets[batch])
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            val_loss = float(torch.nn.functional.mse_loss(model(features[384:]), targets[384:]))
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step(val_loss)
        reporter.report(epoch=epoch, loss=val_loss, lr=lr)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few trials, for CI")
    parser.add_argument("--out", help="run folder (default: a temporary one)")
    args = parser.parse_args(argv)
    out = args.out or tempfile.mkdtemp(prefix="greedylr-")
    result = greedylr.tune(
        train,
        space=greedylr_space(lr=(1e-3, 0.3), variant="hf"),  # narrow, fix: one call
        n_trials=6 if args.smoke else 60,
        max_epochs=6 if args.smoke else 30,
        workers=2,
        out=out,
    )
    print(result.trials[["trial", "status", "epochs", "final_loss"]].to_string(index=False))
    print(f"best loss {result.best_loss:.5f} with {result.best_config}")


if __name__ == "__main__":
    main()
