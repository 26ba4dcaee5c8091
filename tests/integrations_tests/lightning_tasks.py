"""A tiny Lightning module and trial functions for the integration tests (real Lightning)."""

from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl
import torch

from greedylr import GreedyLR
from greedylr.integrations.lightning import ReportCheckpointCallback


logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)


class TinyRegressor(pl.LightningModule):
    """A linear model on fixed data, with GreedyLR monitoring ``val_loss``.

    With ``config["x"]`` the logged ``val_loss`` is ``((x - 0.3)^2 + 0.01) * (1 + 2 / epoch)``
    instead (the toy loss of the backend tests: which trials an engine stops is then known).
    """

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = config
        self.linear = torch.nn.Linear(4, 1)

    def training_step(self, batch: list[torch.Tensor], batch_index: int) -> torch.Tensor:
        features, targets = batch
        loss = torch.nn.functional.mse_loss(self.linear(features), targets)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: list[torch.Tensor], batch_index: int) -> None:
        features, targets = batch
        loss = torch.nn.functional.mse_loss(self.linear(features), targets)
        if "x" in self.config:
            epoch = self.current_epoch + 1
            loss = torch.tensor(((self.config["x"] - 0.3) ** 2 + 0.01) * (1 + 2 / epoch))
        self.log("val_loss", loss)

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = torch.optim.SGD(self.parameters(), lr=self.config.get("lr", 0.05))
        scheduler = GreedyLR(optimizer, factor=0.5, patience=0, min_lr=1e-5, max_lr=0.2)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": scheduler,
                "monitor": "val_loss",
                "interval": "epoch",
                "frequency": self.config.get("frequency", 1),
            },
        }


def loaders() -> tuple[torch.utils.data.DataLoader, torch.utils.data.DataLoader]:
    """64 training rows in batches of 16 (no shuffling), 32 validation rows."""
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(96, 4, generator=generator)
    targets = features @ torch.randn(4, 1, generator=generator) + 0.3 * torch.randn(
        96, 1, generator=generator
    )
    train = torch.utils.data.TensorDataset(features[:64], targets[:64])
    val = torch.utils.data.TensorDataset(features[64:], targets[64:])
    return (
        torch.utils.data.DataLoader(train, batch_size=16),
        torch.utils.data.DataLoader(val, batch_size=32),
    )


def fit(
    config: dict[str, Any], callbacks: list[pl.Callback], *, sanity_steps: int = 0
) -> TinyRegressor:
    """Fit a fresh module for ``config["epochs"]`` epochs with ``callbacks``; return it."""
    torch.manual_seed(0)
    module = TinyRegressor(config)
    trainer = pl.Trainer(
        max_epochs=config["epochs"],
        callbacks=callbacks,
        accelerator="cpu",
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        num_sanity_val_steps=sanity_steps,
    )
    trainer.fit(module, *loaders())
    return module


def train(config: dict[str, Any], reporter: Any) -> None:
    """The trial function: fit, reporting each epoch through the adapter."""
    fit(config, [ReportCheckpointCallback(reporter, monitor="val_loss")])
