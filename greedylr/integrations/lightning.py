"""Tune a PyTorch Lightning run with greedylr: report each epoch from a Lightning ``Callback``.

The trial function builds its ``LightningModule`` and ``Trainer`` from ``config`` and adds
:class:`ReportCheckpointCallback`; the callback does the rest::

    def train(config, reporter):
        module = MyModule(config)  # configure_optimizers may return GreedyLR with a monitor
        trainer = pytorch_lightning.Trainer(
            max_epochs=config["epochs"],
            callbacks=[ReportCheckpointCallback(reporter, monitor="val_loss")],
            enable_checkpointing=False,
            logger=False,
        )
        trainer.fit(module, train_loader, val_loader)

Needs the ``lightning`` extra (``pip install greedylr[lightning]``, pytorch-lightning 2.6).
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from greedylr._imports import require
from greedylr.backends._contract import Reporter


require("pytorch_lightning", extra="lightning", feature="greedylr.integrations.lightning")

from pytorch_lightning import Callback  # noqa: E402
from pytorch_lightning import LightningModule  # noqa: E402
from pytorch_lightning import Trainer  # noqa: E402


_NOT_REPORTED = ("epoch", "step", "loss")  # Lightning's counters; `loss` is the monitor's


class ReportCheckpointCallback(Callback):
    """Report each validated epoch to greedylr's reporter, with a checkpoint; restore from it.

    In the spirit of Optuna's ``PyTorchLightningPruningCallback`` and Ray Tune's
    ``TuneReportCheckpointCallback``, for greedylr's trial contract (every engine):

    - **Report.** After each epoch that ran validation (not the sanity check), the value
      logged as ``monitor`` is reported as ``loss``, for epoch ``trainer.current_epoch + 1``,
      with every other scalar in ``trainer.callback_metrics`` (validation and epoch-level
      training metrics). The report is made once the epoch is over, after Lightning has
      stepped the epoch-interval schedulers with the metric (GreedyLR included), so the
      checkpoint holds the scheduler as the next epoch starts from it: at the start of the
      next training epoch, or at the end of training after the last one.
    - **Checkpoint.** The state reported is a copy of the module's, every optimizer's and
      every scheduler's state dict, the epoch, the global step and torch's RNG state.
    - **Restore.** When training starts, a ``reporter.checkpoint()`` (a retried trial, or
      population-based training handing another trial's state) is loaded: the module,
      optimizers, schedulers and RNG, and the run continues at the epoch after it.
    - **Stop.** When the engine stops the trial, the report raises (Optuna:
      :class:`~greedylr.backends.TrialStopped`; Ray Tune and Syne Tune: their own stop) and
      the exception leaves ``trainer.fit`` (Lightning tears the run down on the way), so the
      trial function ends as the engine expects and the trial is recorded as pruned. Do not
      catch it in the trial function.

    Args:
        reporter: The trial's reporter (the second argument of ``train(config, reporter)``).
        monitor: The logged metric reported as ``loss`` (the engine's objective); log it in
            ``validation_step`` or ``on_validation_epoch_end``.
        checkpoint: Hand a checkpoint with each report and restore from the reporter's.

    Raises:
        TypeError: ``monitor`` is not a string.
    """

    def __init__(self, reporter: Reporter, *, monitor: str = "val_loss", checkpoint: bool = True):
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f"`monitor` must be a metric name, but got {monitor=}.")
        self.reporter = reporter
        self.monitor = monitor
        self.checkpoint = checkpoint
        self._pending: tuple[int, dict[str, float]] | None = None

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Continue from ``reporter.checkpoint()``, when there is one."""
        self._pending = None
        restored = self.reporter.checkpoint() if self.checkpoint else None
        if restored is not None:
            restore_state(trainer, pl_module, restored.state)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Keep the epoch's validation metrics; they are reported when the epoch is over."""
        if trainer.sanity_checking:
            return
        metrics = _scalars(trainer.callback_metrics)
        if self.monitor not in metrics:
            raise ValueError(
                f"`monitor` must name a metric logged during validation, but got "
                f"monitor={self.monitor!r}; logged: {sorted(metrics)}."
            )
        self._pending = (trainer.current_epoch + 1, metrics)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Report the epoch before it (its schedulers have stepped)."""
        self._report(trainer, pl_module)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Report the last epoch."""
        self._report(trainer, pl_module)

    def _report(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._pending is None:
            return
        epoch, metrics = self._pending
        self._pending = None
        metrics.update(_scalars(trainer.callback_metrics))  # the epoch's training metrics too
        loss = metrics.pop(self.monitor)
        extra = {name: value for name, value in metrics.items() if name not in _NOT_REPORTED}
        state = capture_state(trainer, pl_module, epoch) if self.checkpoint else None
        self.reporter.report(epoch=epoch, loss=loss, checkpoint=state, **extra)


def capture_state(trainer: Trainer, pl_module: LightningModule, epoch: int) -> dict[str, Any]:
    """A copy of the run's state after ``epoch`` (1-based): what :func:`restore_state` loads."""
    return copy.deepcopy(
        {
            "epoch": epoch,
            "global_step": trainer.global_step,
            "module": pl_module.state_dict(),
            "optimizers": [optimizer.state_dict() for optimizer in trainer.optimizers],
            "lr_schedulers": [
                config.scheduler.state_dict() for config in trainer.lr_scheduler_configs
            ],
            "rng": torch.get_rng_state(),
        }
    )


def restore_state(trainer: Trainer, pl_module: LightningModule, state: dict[str, Any]) -> None:
    """Load a :func:`capture_state` state; training continues at the epoch after it.

    Call it once training has started (``on_train_start``): the optimizers and schedulers
    exist then, and the fit loop's epoch and step counters are set here.

    Raises:
        ValueError: The state has another number of optimizers or schedulers than the run.
    """
    optimizers, schedulers = trainer.optimizers, trainer.lr_scheduler_configs
    if len(state["optimizers"]) != len(optimizers) or len(state["lr_schedulers"]) != len(
        schedulers
    ):
        raise ValueError(
            f"The checkpoint has {len(state['optimizers'])} optimizers and "
            f"{len(state['lr_schedulers'])} schedulers, but the run has {len(optimizers)} "
            f"and {len(schedulers)}."
        )
    pl_module.load_state_dict(state["module"])
    for optimizer, saved in zip(optimizers, state["optimizers"]):
        optimizer.load_state_dict(saved)
    for config, saved in zip(schedulers, state["lr_schedulers"]):
        config.scheduler.load_state_dict(saved)
    torch.set_rng_state(state["rng"])
    loop = trainer.fit_loop
    _set_progress(loop.epoch_progress, int(state["epoch"]))
    steps = int(state["global_step"])
    _set_progress(loop.epoch_loop.automatic_optimization.optim_progress.optimizer.step, steps)
    _set_progress(loop.epoch_loop.manual_optimization.optim_step_progress, steps)
    loop.epoch_loop._batches_that_stepped = steps


def _set_progress(progress: Any, value: int) -> None:
    """Set every counter of a Lightning progress record (total and current) to ``value``."""
    for tracker in (progress.total, progress.current):
        for name in ("ready", "started", "processed", "completed"):
            if hasattr(tracker, name):
                setattr(tracker, name, value)


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """The float of every scalar metric (tensors with one element included)."""
    scalars = {}
    for name, value in metrics.items():
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                continue
            value = value.item()
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            scalars[name] = float(value)
    return scalars
