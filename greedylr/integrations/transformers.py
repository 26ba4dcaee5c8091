"""Tune a Hugging Face ``Trainer`` run with greedylr: report each evaluation from a callback.

The trial function builds its model and ``Trainer`` from ``config``, adds
:class:`ReportCheckpointCallback` and continues from :func:`resume_folder`::

    def train(config, reporter):
        optimizer = torch.optim.SGD(model.parameters(), lr=config["lr"])
        args = TrainingArguments(output_dir, eval_strategy="epoch", save_strategy="epoch",
                                 metric_for_best_model="eval_loss", ...)
        trainer = Trainer(model, args, optimizers=(optimizer, GreedyLR(optimizer, ...)),
                          callbacks=[ReportCheckpointCallback(reporter)], ...)
        trainer.train(resume_from_checkpoint=resume_folder(reporter, output_dir))

Needs the ``transformers`` extra (``pip install greedylr[transformers]``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from greedylr._imports import require
from greedylr.backends._contract import Reporter


require("transformers", extra="transformers", feature="greedylr.integrations.transformers")

from transformers import TrainerCallback  # noqa: E402
from transformers import TrainerControl  # noqa: E402
from transformers import TrainerState  # noqa: E402
from transformers import TrainingArguments  # noqa: E402


_NOT_REPORTED = ("epoch", "loss")  # the Trainer's progress; `loss` is the monitor's
_SPEED = ("_runtime", "_per_second")  # timing metrics of the evaluation loop


class ReportCheckpointCallback(TrainerCallback):
    """Report each evaluation to greedylr's reporter, with the Trainer's checkpoint.

    In the spirit of Ray Tune's ``TuneReportCheckpointCallback`` and of the Trainer's own
    Optuna pruning, for greedylr's trial contract (every engine):

    - **Report.** Evaluation ``n`` of the run (1, 2, ...: each epoch with
      ``eval_strategy="epoch"``, every ``eval_steps`` steps with ``"steps"``) is reported as
      epoch ``n``: ``metrics[monitor]`` as ``loss``, with the other evaluation metrics (timings
      left out). The report is made after the Trainer has stepped its metric-driven scheduler
      (GreedyLR, ``ReduceLROnPlateau``) with the evaluation: at the ``on_save`` that follows it
      (``save_strategy`` equal to ``eval_strategy``), else at the next step or the end.
    - **Checkpoint.** With a save after the evaluation, the state reported is the checkpoint
      folder the Trainer just wrote (model, optimizer, scheduler, RNG and trainer state), as
      ``{"files": {relative path: bytes}, "global_step": step}``; :func:`resume_folder`
      writes it back for ``trainer.train(resume_from_checkpoint=...)``.
    - **Stop.** When the engine stops the trial, the report raises (Optuna:
      :class:`~greedylr.backends.TrialStopped`; Ray Tune and Syne Tune: their own stop) and
      the exception leaves ``trainer.train``: the trial ends as pruned. Do not catch it.

    The Trainer steps a metric-driven scheduler with ``metrics[args.metric_for_best_model]``
    and fails when that is unset; this callback sets it to ``monitor`` then.

    Args:
        reporter: The trial's reporter (the second argument of ``train(config, reporter)``).
        monitor: The evaluation metric reported as ``loss`` (the engine's objective).

    Raises:
        TypeError: ``monitor`` is not a string.
    """

    def __init__(self, reporter: Reporter, *, monitor: str = "eval_loss") -> None:
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f"`monitor` must be a metric name, but got {monitor=}.")
        self.reporter = reporter
        self.monitor = monitor if monitor.startswith("eval_") else f"eval_{monitor}"
        self._evaluations = 0
        self._training = False
        self._pending: tuple[int, dict[str, float]] | None = None

    def on_init_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any
    ) -> None:
        """Name the metric the Trainer steps GreedyLR with, when the arguments do not."""
        if args.metric_for_best_model is None:
            args.metric_for_best_model = self.monitor
            args.greater_is_better = not self.monitor.endswith("loss")

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any
    ) -> None:
        """Count evaluations from the checkpoint the trial continues from, if any."""
        restored = self.reporter.checkpoint()
        self._evaluations = restored.epoch if restored is not None else 0
        self._training = True
        self._pending = None

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict[str, Any] | None = None,
        **_: Any,
    ) -> None:
        """Keep the evaluation's metrics; they are reported once the scheduler has stepped."""
        if not self._training:  # `trainer.evaluate()` outside training
            return
        values = {
            name: float(value)
            for name, value in (metrics or {}).items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)
        }
        if self.monitor not in values:
            raise ValueError(
                f"`monitor` must name an evaluation metric, but got monitor={self.monitor!r}; "
                f"evaluated: {sorted(values)}."
            )
        self._evaluations += 1
        self._pending = (self._evaluations, values)

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any
    ) -> None:
        """Report the evaluation with the checkpoint the Trainer just wrote."""
        if self._pending is None:
            return
        folder = Path(str(args.output_dir)) / f"checkpoint-{state.global_step}"
        files = {
            str(path.relative_to(folder)): path.read_bytes()
            for path in sorted(folder.rglob("*"))
            if path.is_file()
        }
        self._report({"files": files, "global_step": state.global_step})

    def on_step_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any
    ) -> None:
        """Report an evaluation that no save followed."""
        self._report(None)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any
    ) -> None:
        """Report the last evaluation, if no save followed it."""
        self._report(None)
        self._training = False

    def _report(self, checkpoint: dict[str, Any] | None) -> None:
        if self._pending is None:
            return
        epoch, metrics = self._pending
        self._pending = None
        loss = metrics.pop(self.monitor)
        extra = {
            name: value
            for name, value in metrics.items()
            if name not in _NOT_REPORTED and not name.endswith(_SPEED)
        }
        self.reporter.report(epoch=epoch, loss=loss, checkpoint=checkpoint, **extra)


def resume_folder(reporter: Reporter, output_dir: str | os.PathLike[str]) -> str | None:
    """Write the reporter's checkpoint as a Trainer checkpoint folder; return its path.

    Pass the result to ``trainer.train(resume_from_checkpoint=...)``: ``None`` (no checkpoint:
    the trial starts at epoch 1) trains from the start.

    Args:
        reporter: The trial's reporter.
        output_dir: The Trainer's ``output_dir``; the folder is ``checkpoint-<global step>``
            inside it.

    Raises:
        ValueError: The checkpoint was not reported by :class:`ReportCheckpointCallback`.
    """
    restored = reporter.checkpoint()
    if restored is None:
        return None
    state = restored.state
    if not isinstance(state, dict) or not {"files", "global_step"} <= state.keys():
        raise ValueError(
            "`reporter.checkpoint()` must hold a state reported by ReportCheckpointCallback "
            f"({{'files': ..., 'global_step': ...}}), but got {type(state).__name__}."
        )
    folder = Path(output_dir) / f"checkpoint-{int(state['global_step'])}"
    for name, data in state["files"].items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return str(folder)
