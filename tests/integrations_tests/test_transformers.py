"""GreedyLR and the reporting adapter inside the real Hugging Face Trainer (CPU)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest


pytest.importorskip("transformers")
pytest.importorskip("accelerate")

import torch  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

import greedylr  # noqa: E402
from greedylr import GreedyLR  # noqa: E402
from greedylr.backends._contract import Checkpoint  # noqa: E402
from greedylr.backends._contract import ValidatingReporter  # noqa: E402
from greedylr.integrations.transformers import ReportCheckpointCallback  # noqa: E402
from greedylr.integrations.transformers import resume_folder  # noqa: E402
from greedylr.searchers import FloatParam  # noqa: E402
from tests.integrations_tests import hf_tasks  # noqa: E402


TASKS = Path(hf_tasks.__file__)


class _Recorder(TrainerCallback):  # type: ignore[misc]
    """Each evaluation's loss, and the LR after the Trainer stepped GreedyLR with it."""

    def __init__(self) -> None:
        self.val_losses: list[float] = []
        self.lrs: list[float] = []

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.val_losses.append(kwargs["metrics"]["eval_loss"])

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.lrs.append(kwargs["optimizer"].param_groups[0]["lr"])


def _hand_written(val_losses: list[float]) -> list[float]:
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.05)
    scheduler = GreedyLR(optimizer, factor=0.5, patience=0, min_lr=1e-5, max_lr=0.2)
    lrs = []
    for loss in val_losses:
        scheduler.step(loss)
        lrs.append(optimizer.param_groups[0]["lr"])
    return lrs


@pytest.mark.parametrize(
    "strategy", [{"eval_strategy": "epoch"}, {"eval_strategy": "steps", "eval_steps": 3}]
)
def test_the_trainer_steps_greedylr_like_a_hand_written_loop(
    strategy: dict[str, Any], tmp_path: Path
) -> None:
    recorder = _Recorder()
    saves = {"save_strategy": strategy["eval_strategy"], "save_steps": 3}
    run = hf_tasks.trainer(
        {"epochs": 4}, str(tmp_path), [recorder], metric_for_best_model="eval_loss",
        **strategy, **saves,
    )  # fmt: skip
    run.train()
    evaluations = 4 if strategy["eval_strategy"] == "epoch" else 16 // 3 + 1
    assert len(recorder.val_losses) == evaluations
    assert recorder.lrs == _hand_written(recorder.val_losses)
    assert len(set(recorder.lrs)) > 1


def test_the_callback_names_the_metric_the_trainer_steps_greedylr_with(tmp_path: Path) -> None:
    reporter = ValidatingReporter()
    run = hf_tasks.trainer({"epochs": 2}, str(tmp_path), [ReportCheckpointCallback(reporter)])
    assert run.args.metric_for_best_model == "eval_loss"
    run.train()
    assert [row["epoch"] for row in reporter.history] == [1.0, 2.0]


def test_the_callback_reports_every_evaluation_with_a_checkpoint(tmp_path: Path) -> None:
    recorder = _Recorder()
    reporter = ValidatingReporter()
    callbacks = [recorder, ReportCheckpointCallback(reporter, monitor="loss")]
    hf_tasks.trainer({"epochs": 3}, str(tmp_path), callbacks).train()
    assert [row["epoch"] for row in reporter.history] == [1.0, 2.0, 3.0]
    assert [row["loss"] for row in reporter.history] == recorder.val_losses
    assert not any(name.endswith("_runtime") for name in reporter.history[0])
    checkpoint = reporter.checkpoint()
    assert checkpoint is not None
    assert checkpoint.epoch == 3
    assert checkpoint.state["global_step"] == 12  # 4 batches per epoch
    assert {"scheduler.pt", "optimizer.pt", "trainer_state.json"} <= set(checkpoint.state["files"])
    saved = torch.load(tmp_path / "checkpoint-12" / "scheduler.pt", weights_only=True)
    assert saved["lrs"] == [recorder.lrs[-1]]  # saved after the Trainer stepped GreedyLR


def test_a_restored_run_continues_identically(tmp_path: Path) -> None:
    through = ValidatingReporter()
    hf_tasks.train({"epochs": 4}, through)
    first = ValidatingReporter()
    with pytest.raises(_Ended):  # the exception leaves trainer.train and the trial function
        hf_tasks.train({"epochs": 4}, _StopAfter(first, 2))
    saved = first.checkpoint()
    assert saved is not None
    assert saved.epoch == 2
    resumed = ValidatingReporter(restored=Checkpoint(saved.epoch, saved.state))
    hf_tasks.train({"epochs": 4}, resumed)
    assert [row["epoch"] for row in resumed.history] == [3.0, 4.0]
    assert [row["loss"] for row in resumed.history] == [row["loss"] for row in through.history[2:]]


class _StopAfter:
    """A reporter that ends the trial after ``epoch`` (as a killed worker would)."""

    def __init__(self, reporter: ValidatingReporter, epoch: int) -> None:
        self.reporter = reporter
        self.epoch = epoch

    def report(self, **kwargs: Any) -> None:
        self.reporter.report(**kwargs)
        if kwargs["epoch"] >= self.epoch:
            raise _Ended

    def checkpoint(self) -> Checkpoint | None:
        return self.reporter.checkpoint()


class _Ended(Exception):
    pass


def test_resume_folder_refuses_a_foreign_checkpoint(tmp_path: Path) -> None:
    assert resume_folder(ValidatingReporter(), tmp_path) is None
    reporter = ValidatingReporter(restored=Checkpoint(1, {"model": {}}))
    with pytest.raises(ValueError, match="must hold a state reported by ReportCheckpointCallback"):
        resume_folder(reporter, tmp_path)


def test_a_pruned_trial_ends_as_pruned_in_trials_csv(tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    greedylr.tune(
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
