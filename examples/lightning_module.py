"""Tune GreedyLR inside PyTorch Lightning: ``configure_optimizers`` returns it with a monitor.

Lightning steps GreedyLR with the monitored ``val_loss`` after each validation, as it does
``ReduceLROnPlateau``; :class:`greedylr.integrations.lightning.ReportCheckpointCallback`
reports each epoch to the engine (which may stop the trial: it then ends as pruned) and
continues a retried trial from its checkpoint. Needs the ``optuna`` and ``lightning`` extras.
Run: ``python examples/lightning_module.py [--smoke] [--backend optuna|ray|syne-tune]``.
"""

from __future__ import annotations

import argparse
import tempfile
from typing import Any

import pytorch_lightning as pl
import torch

import greedylr
from greedylr.integrations.lightning import ReportCheckpointCallback
from greedylr.schedulers import create_schedule
from greedylr.searchers import greedylr_space


class Regressor(pl.LightningModule):
    """A small MLP on a regression task; every GreedyLR knob comes from ``config``."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = config
        self.net = torch.nn.Sequential(
            torch.nn.Linear(10, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1)
        )

    def training_step(self, batch: list[torch.Tensor], batch_index: int) -> torch.Tensor:
        features, targets = batch
        loss = torch.nn.functional.mse_loss(self.net(features), targets)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: list[torch.Tensor], batch_index: int) -> None:
        features, targets = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(features), targets))

    def configure_optimizers(self) -> dict[str, Any]:
        config = self.config
        optimizer = torch.optim.SGD(self.parameters(), lr=config["lr"], momentum=0.9)
        knobs = {k: v for k, v in config.items() if k not in ("lr", "schedule", "epochs", "seed")}
        scheduler = create_schedule("greedylr", optimizer, horizon=config["epochs"], **knobs)
        # Written exactly as for ReduceLROnPlateau: Lightning passes val_loss to step().
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": "val_loss"},  # a GreedyLR
        }


def loaders(seed: int) -> tuple[torch.utils.data.DataLoader, torch.utils.data.DataLoader]:
    """A fixed regression data set: 384 training rows (batches of 32), 128 validation rows."""
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(512, 10, generator=generator)
    targets = features[:, :3].sin().sum(1, keepdim=True) + 0.1 * torch.randn(
        512, 1, generator=generator
    )
    train = torch.utils.data.TensorDataset(features[:384], targets[:384])
    val = torch.utils.data.TensorDataset(features[384:], targets[384:])
    return (
        torch.utils.data.DataLoader(train, batch_size=32),
        torch.utils.data.DataLoader(val, batch_size=128),
    )


def train(config: dict[str, Any], reporter: Any) -> None:
    """One trial: fit the module for ``config["epochs"]`` epochs, reporting each one."""
    torch.manual_seed(config.get("seed", 0))
    train_loader, val_loader = loaders(config.get("seed", 0))
    trainer = pl.Trainer(
        max_epochs=config["epochs"],
        callbacks=[ReportCheckpointCallback(reporter, monitor="val_loss")],
        accelerator="cpu",
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(Regressor(config), train_loader, val_loader)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few trials, for CI")
    parser.add_argument("--backend", default="optuna", help="optuna, ray or syne-tune")
    parser.add_argument("--out", help="run folder (default: a temporary one)")
    args = parser.parse_args(argv)
    out = args.out or tempfile.mkdtemp(prefix="greedylr-")
    space = greedylr_space(lr=(1e-3, 0.3), variant="hf")
    result = greedylr.tune(
        train,
        space=space,
        backend=args.backend,
        n_trials=3 if args.smoke else 40,
        max_epochs=2 if args.smoke else 20,
        workers=1 if args.smoke else 2,
        out=out,
        progress=False,
    )
    print(result.trials[["trial", "status", "epochs", "final_loss"]].to_string(index=False))
    print(f"best loss {result.best_loss:.5f} with {result.best_config}")


if __name__ == "__main__":
    main()
