"""The built-in tasks' checkpoints: a stopped run continues exactly, a changed config takes over.

Every expected value is derived by hand in the test (or is the uninterrupted run itself).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from greedylr.backends import Checkpoint
from greedylr.backends import TrialContractError
from greedylr.backends import TrialStopped
from greedylr.backends import ValidatingReporter
from greedylr.backends import load_checkpoint
from greedylr.backends import load_trial_function
from greedylr.backends import save_checkpoint
from greedylr.schedulers import step_scheduler
from greedylr.tasks import builtin_task
from greedylr.tasks import resolve_task
from greedylr.tasks._training import RunSettings
from greedylr.tasks._training import restore_training
from greedylr.tasks._training import training_state


TASKS = ["digits-mlp", "nmf", "quadratic"]
SCHEDULES = [
    {"schedule": "greedylr", "patience": 0, "min_lr_ratio": 0.01, "window_size": 3},
    {"schedule": "onecycle"},  # stepped per batch
    {"schedule": "cosine_warm_restarts", "T_0": 2},
    {"schedule": "plateau", "patience": 0, "factor": 0.5, "threshold": 0.9},
]


def _train(task: str, config: dict[str, Any], reporter: Any) -> None:
    load_trial_function(resolve_task(task).function)(dict(config), reporter)


def _rows(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def _stopped_after(
    task: str, config: dict[str, Any], epoch: int, folder: Path
) -> ValidatingReporter:
    """Run until ``epoch``, saving each checkpoint to ``folder`` as an engine would; then stop."""

    def forward(reported: int, loss: float, metrics: dict[str, float], state: Any) -> None:
        assert state is not None, "a built-in task reports a checkpoint every epoch"
        save_checkpoint({"epoch": reported, "state": state}, folder)
        if reported == epoch:
            raise TrialStopped("stopped")

    reporter = ValidatingReporter(forward)
    with pytest.raises(TrialStopped):
        _train(task, config, reporter)
    return reporter


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: s["schedule"])
def test_a_run_continued_from_its_checkpoint_reports_what_an_uninterrupted_run_does(
    task: str, schedule: dict[str, Any], tmp_path: Path
) -> None:
    config = {"epochs": 5, "seed": 3, **schedule}
    uninterrupted = ValidatingReporter()
    _train(task, config, uninterrupted)
    first = _stopped_after(task, config, 2, tmp_path)
    saved = load_checkpoint(tmp_path)  # through the file, as a retried trial gets it
    assert saved["epoch"] == 2
    second = ValidatingReporter(restored=Checkpoint(2, saved["state"]), history=first.history)
    _train(task, config, second)
    assert [row["epoch"] for row in second.history] == [1, 2, 3, 4, 5]
    assert _rows(second.history) == _rows(uninterrupted.history)
    assert len({row["lr"] for row in second.history}) > 1  # the LR moved: its state mattered


def test_every_part_of_the_state_is_needed_to_continue_exactly(tmp_path: Path) -> None:
    # Without the task's generator (the batch order) the continued run drifts: the test above
    # would see a partial restore.
    config = {"epochs": 4, "seed": 3, **SCHEDULES[0]}
    uninterrupted = ValidatingReporter()
    _train("digits-mlp", config, uninterrupted)
    _stopped_after("digits-mlp", config, 2, tmp_path)
    state = load_checkpoint(tmp_path)["state"]
    state["rng"]["generator"] = torch.Generator().manual_seed(99).get_state()
    drifted = ValidatingReporter(restored=Checkpoint(2, state))
    _train("digits-mlp", config, drifted)
    assert drifted.history[0]["lr"] == uninterrupted.history[2]["lr"]  # the LR is restored
    assert drifted.history[0]["loss"] != uninterrupted.history[2]["loss"]


def test_the_checkpoint_holds_greedylr_counters_best_and_window(tmp_path: Path) -> None:
    config = {"epochs": 4, "seed": 0, "patience": 5, "window_size": 3}
    reporter = _stopped_after("quadratic", config, 3, tmp_path)
    scheduler = load_checkpoint(tmp_path)["state"]["scheduler"]
    losses = [row["loss"] for row in reporter.history]
    # GreedyLR stepped on each validation loss; with patience 5 the LR never moved. The
    # smoothed metric is the mean of the losses so far; a step is good when it beats `best`
    # by more than the threshold (1e-6), and then becomes `best`.
    best, good, bad = float("inf"), 0, 0
    for step in range(1, 4):
        mean = sum(losses[:step]) / step
        if mean < best - 1e-6:
            best, good, bad = mean, good + 1, 0
        else:
            good, bad = 0, bad + 1
    assert scheduler["last_epoch"] == 3
    assert scheduler["window_values"] == losses
    assert scheduler["window_sum"] == pytest.approx(sum(losses))
    assert (scheduler["best"], scheduler["num_good_steps"], scheduler["num_bad_steps"]) == (
        pytest.approx(best),
        good,
        bad,
    )
    assert scheduler["lrs"] == [0.5]


def test_a_reporter_without_checkpoint_gets_plain_reports() -> None:
    class OldReporter:  # a user's reporter from before checkpoints
        def __init__(self) -> None:
            self.rows: list[dict[str, float]] = []

        def report(self, *, epoch: int, loss: float, **metrics: Any) -> None:
            self.rows.append({"epoch": epoch, "loss": loss, **metrics})

    reporter = OldReporter()
    _train("quadratic", {"epochs": 2}, reporter)
    assert [row["epoch"] for row in reporter.rows] == [1, 2]
    assert all(isinstance(value, float) for row in reporter.rows for value in row.values()
               if not isinstance(value, int))  # fmt: skip
    assert all("checkpoint" not in row for row in reporter.rows)


def test_a_task_that_restarts_at_epoch_one_after_a_restore_is_told_how_to_continue() -> None:
    reporter = ValidatingReporter(restored=Checkpoint(3, {"anything": 1}))

    def restarts(config: dict[str, Any], reporter: Any) -> None:
        reporter.report(epoch=1, loss=1.0)

    with pytest.raises(TrialContractError, match=r"start at reporter.checkpoint\(\).epoch \+ 1"):
        restarts({}, reporter)


# A changed config (population-based training): the donor's progress, the new hyperparameters.


def _build(config: dict[str, Any]) -> tuple[RunSettings, torch.nn.Module, Any, Any, Any]:
    settings = RunSettings.from_config(config, task=builtin_task("quadratic"))
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    optimizer, scheduler = settings.build(model.parameters(), steps_per_epoch=1)
    return settings, model, optimizer, scheduler, torch.Generator().manual_seed(0)


def test_greedylr_restored_into_another_config_keeps_its_counters_takes_new_hyperparameters() -> (
    None
):
    donor_config = {
        "epochs": 20, "lr": 0.5, "momentum": 0.9, "patience": 2, "factor": 0.5, "cooldown": 3,
        "min_lr": 0.001, "max_lr": 2.0,
    }  # fmt: skip
    settings, model, optimizer, scheduler, generator = _build(donor_config)
    model(torch.ones(1, 2)).sum().backward()
    optimizer.step()  # a momentum buffer to carry over
    # Step 1 (1.0): good, best = 1.0. Steps 2-4 (2.0): bad 1, 2, 3 > patience 2: the LR
    # halves, 0.5 -> 0.25, and a cooldown of 3 steps starts.
    for metric in (1.0, 2.0, 2.0, 2.0):
        step_scheduler(scheduler, metric)
    assert optimizer.param_groups[0]["lr"] == 0.25
    state = training_state(settings, model, optimizer, scheduler, generator=generator)
    buffers = [optimizer.state[p]["momentum_buffer"].clone() for p in model.parameters()]
    weights = [p.detach().clone() for p in model.parameters()]

    new_config = {
        **donor_config, "lr": 0.1, "momentum": 0.5, "patience": 1, "factor": 0.8,
        "cooldown": 1, "min_lr": 0.01, "max_lr": 1.0,
    }  # fmt: skip
    settings, model, optimizer, scheduler, generator = _build(new_config)
    restore_training(state, settings, model, optimizer, scheduler, generator=generator)
    # From the donor: the weights, the momentum buffers, the current LR, the counters.
    assert all(torch.equal(p, w) for p, w in zip(model.parameters(), weights))
    assert all(
        torch.equal(optimizer.state[p]["momentum_buffer"], b)
        for p, b in zip(model.parameters(), buffers)
    )
    assert optimizer.param_groups[0]["lr"] == 0.25
    assert scheduler.best == 1.0
    assert scheduler.last_epoch == 4
    # The cooldown left (3) is cut to the new cooldown (1).
    assert scheduler.greedy_state.cooldown_counter == 1
    # From the new config: every hyperparameter, the optimizer's too.
    assert optimizer.param_groups[0]["momentum"] == 0.5
    config = scheduler.config
    assert (config.factor, config.patience, config.cooldown) == (0.8, 1, 1)
    assert (config.min_lrs, config.max_lrs, config.initial_lrs) == ((0.01,), (1.0,), (0.1,))
    # Going on with 2.0: the cooldown step is ignored; then bad 1, bad 2 > patience 1: the LR
    # falls by the new factor, 0.25 * 0.8 = 0.2. (A fresh GreedyLR would take the first 2.0
    # as a good step: best = +inf.)
    lrs = []
    for _ in range(3):
        step_scheduler(scheduler, 2.0)
        lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs == [0.25, 0.25, pytest.approx(0.2)]


def test_greedylr_restored_into_a_smaller_window_keeps_the_newest_values() -> None:
    donor_config = {"epochs": 20, "lr": 0.5, "window_size": 4, "patience": 10}
    settings, model, optimizer, scheduler, generator = _build(donor_config)
    for metric in (4.0, 3.0, 2.0, 1.0):
        step_scheduler(scheduler, metric)
    state = training_state(settings, model, optimizer, scheduler, generator=generator)
    settings, model, optimizer, scheduler, generator = _build({**donor_config, "window_size": 2})
    restore_training(state, settings, model, optimizer, scheduler, generator=generator)
    restored = scheduler.state_dict()
    assert restored["window_values"] == [2.0, 1.0]
    assert restored["window_sum"] == 3.0
    assert restored["best"] == (4.0 + 3.0 + 2.0 + 1.0) / 4  # the donor's smoothed best
    step_scheduler(scheduler, 0.0)  # the mean of the last two: (1 + 0) / 2
    assert scheduler.best == 0.5


def test_a_step_schedule_restored_into_another_gamma_keeps_its_step_count() -> None:
    donor_config = {"epochs": 6, "lr": 1.0, "schedule": "step", "step_size": 2, "gamma": 0.5}
    settings, model, optimizer, scheduler, generator = _build(donor_config)
    for _ in range(3):  # the LR halves after step 2: 1.0 -> 0.5
        optimizer.step()
        step_scheduler(scheduler)
    state = training_state(settings, model, optimizer, scheduler, generator=generator)
    settings, model, optimizer, scheduler, generator = _build({**donor_config, "gamma": 0.1})
    restore_training(state, settings, model, optimizer, scheduler, generator=generator)
    assert optimizer.param_groups[0]["lr"] == 0.5
    optimizer.step()
    step_scheduler(scheduler)  # step 4: the new gamma on the donor's LR, 0.5 * 0.1
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05)


def test_a_task_restored_into_another_greedylr_config_reports_the_donor_s_lr_first(
    tmp_path: Path,
) -> None:
    donor = {"epochs": 6, "seed": 1, "patience": 0, "factor": 0.9, "min_lr_ratio": 0.01}
    uninterrupted = ValidatingReporter()
    _train("digits-mlp", donor, uninterrupted)
    _stopped_after("digits-mlp", donor, 3, tmp_path)
    state = load_checkpoint(tmp_path)["state"]
    changed = {**donor, "factor": 0.5}
    continued = ValidatingReporter(restored=Checkpoint(3, state))
    _train("digits-mlp", changed, continued)
    assert [row["epoch"] for row in continued.history] == [4, 5, 6]
    # Epoch 4 trains with the LR the donor had after epoch 3's step, and from the donor's
    # weights: the same as the donor's own epoch 4.
    assert continued.history[0]["lr"] == uninterrupted.history[3]["lr"]
    assert continued.history[0]["loss"] == uninterrupted.history[3]["loss"]
    # With patience 0 every step moves the LR, now by 0.5 instead of 0.9 (or 1 / 0.5 up).
    donor_ratio = uninterrupted.history[4]["lr"] / uninterrupted.history[3]["lr"]
    ratio = continued.history[1]["lr"] / continued.history[0]["lr"]
    assert donor_ratio == pytest.approx(0.9) or donor_ratio == pytest.approx(1 / 0.9)
    assert ratio == pytest.approx(0.5) or ratio == pytest.approx(1 / 0.5)


def test_another_optimizer_or_schedule_starts_afresh_from_the_donor_s_lr() -> None:
    donor_config = {"epochs": 6, "lr": 0.5, "momentum": 0.9, "patience": 0, "factor": 0.5}
    settings, model, optimizer, scheduler, generator = _build(donor_config)
    model(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    step_scheduler(scheduler, 1.0)  # good, > patience 0: the LR rises, 0.5 / 0.5 = 1.0
    state = training_state(settings, model, optimizer, scheduler, generator=generator)
    weights = [p.detach().clone() for p in model.parameters()]
    new_config = {"epochs": 6, "lr": 0.1, "optimizer": "adam", "schedule": "cosine"}
    settings, model, optimizer, scheduler, generator = _build(new_config)
    restore_training(state, settings, model, optimizer, scheduler, generator=generator)
    assert all(torch.equal(p, w) for p, w in zip(model.parameters(), weights))
    assert optimizer.param_groups[0]["lr"] == 1.0
    assert not optimizer.state  # SGD's momentum means nothing to Adam
    assert scheduler.last_epoch == 0  # the cosine starts at its beginning
    assert scheduler.base_lrs == [0.1]
