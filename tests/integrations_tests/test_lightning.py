"""GreedyLR and the reporting adapter inside the real PyTorch Lightning Trainer (CPU)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest


pl = pytest.importorskip("pytorch_lightning")

import torch  # noqa: E402

import greedylr  # noqa: E402
from greedylr import GreedyLR  # noqa: E402
from greedylr.backends._contract import Checkpoint  # noqa: E402
from greedylr.backends._contract import ValidatingReporter  # noqa: E402
from greedylr.integrations.lightning import ReportCheckpointCallback  # noqa: E402
from greedylr.searchers import FloatParam  # noqa: E402
from tests.integrations_tests import lightning_tasks  # noqa: E402


TASKS = Path(lightning_tasks.__file__)


class _Recorder(pl.Callback):
    """The LR of each epoch (and after the last one) and each epoch's validation loss."""

    def __init__(self) -> None:
        self.lrs: list[float] = []
        self.val_losses: list[float] = []

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.sanity_checking:
            self.val_losses.append(float(trainer.callback_metrics["val_loss"]))

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def _hand_written(val_losses: list[float], frequency: int) -> list[float]:
    """The LRs a plain loop gives, stepping GreedyLR with every ``frequency``-th epoch's loss."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.05)
    scheduler = GreedyLR(optimizer, factor=0.5, patience=0, min_lr=1e-5, max_lr=0.2)
    lrs = [optimizer.param_groups[0]["lr"]]
    for epoch, loss in enumerate(val_losses, start=1):
        if epoch % frequency == 0:
            scheduler.step(loss)
        lrs.append(optimizer.param_groups[0]["lr"])
    return lrs


def test_lightning_recognizes_greedylr_as_a_plateau_scheduler() -> None:
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_progress_bar=False)
    module = lightning_tasks.TinyRegressor({"epochs": 1})
    module.trainer = trainer
    from pytorch_lightning.core.optimizer import _init_optimizers_and_lr_schedulers

    _, configs = _init_optimizers_and_lr_schedulers(module)
    assert configs[0].reduce_on_plateau
    assert configs[0].monitor == "val_loss"


@pytest.mark.parametrize("frequency", [1, 2])
def test_lightning_steps_greedylr_like_a_hand_written_loop(frequency: int) -> None:
    recorder = _Recorder()
    lightning_tasks.fit({"epochs": 6, "frequency": frequency}, [recorder], sanity_steps=1)
    assert len(recorder.val_losses) == 6
    assert recorder.lrs == _hand_written(recorder.val_losses, frequency)
    assert len(set(recorder.lrs)) > 2  # GreedyLR moved the LR both ways or several times


def test_the_callback_reports_every_epoch_with_a_checkpoint() -> None:
    recorder = _Recorder()
    reporter = ValidatingReporter()
    callback = ReportCheckpointCallback(reporter, monitor="val_loss")
    lightning_tasks.fit({"epochs": 3}, [recorder, callback], sanity_steps=1)
    assert [row["epoch"] for row in reporter.history] == [1.0, 2.0, 3.0]
    assert [row["loss"] for row in reporter.history] == recorder.val_losses
    assert all(row["train_loss"] > 0 for row in reporter.history)
    checkpoint = reporter.checkpoint()
    assert checkpoint is not None
    assert checkpoint.epoch == 3
    assert checkpoint.state["global_step"] == 12  # 4 batches per epoch
    # The scheduler state is the one after epoch 3's step: the LR the next epoch would use.
    assert checkpoint.state["lr_schedulers"][0]["lrs"] == [recorder.lrs[-1]]


def test_a_restored_run_continues_identically() -> None:
    through = ValidatingReporter()
    lightning_tasks.train({"epochs": 5}, through)
    first = ValidatingReporter()
    lightning_tasks.train({"epochs": 2}, first)
    saved = first.checkpoint()
    assert saved is not None
    # What a retried trial gets: a fresh reporter holding the checkpoint (through torch.save).
    resumed = ValidatingReporter(restored=Checkpoint(saved.epoch, saved.state))
    lightning_tasks.train({"epochs": 5}, resumed)
    assert [row["epoch"] for row in resumed.history] == [3.0, 4.0, 5.0]
    for key in ("loss", "train_loss"):
        assert [row[key] for row in resumed.history] == [row[key] for row in through.history[2:]]
    assert (
        resumed.checkpoint().state["lr_schedulers"] == through.checkpoint().state["lr_schedulers"]
    )


def test_monitor_must_be_logged() -> None:
    callback = ReportCheckpointCallback(ValidatingReporter(), monitor="val_accuracy")
    with pytest.raises(ValueError, match="`monitor` must name a metric logged"):
        lightning_tasks.fit({"epochs": 1}, [callback])
    with pytest.raises(TypeError, match="`monitor` must be a metric name"):
        ReportCheckpointCallback(ValidatingReporter(), monitor=3)  # type: ignore[arg-type]


def test_a_pruned_trial_ends_as_pruned_in_trials_csv(tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    result = greedylr.tune(
        f"{TASKS}:train",
        space={"x": FloatParam(0.0, 1.0)},
        n_trials=6,
        max_epochs=4,
        seed=3,
        progress=False,
        out=tmp_path / "run",
    )
    trials = pd.read_csv(tmp_path / "run" / "trials.csv")
    assert set(trials["status"]) == {"completed", "pruned"}, trials
    assert (trials.loc[trials["status"] == "pruned", "epochs"] < 4).all()
    assert (trials.loc[trials["status"] == "completed", "epochs"] == 4).all()
    assert len(result.trials) == 6
